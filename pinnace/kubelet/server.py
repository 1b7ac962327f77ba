"""The kubelet's HTTPS API (port 10250): what the API server calls for
`kubectl logs`, `kubectl exec` and `kubectl port-forward`.

  GET  /healthz                                   "ok" (no client certificate needed)
  GET  /containerLogs/{ns}/{pod}/{container}      follow, previous, tailLines, sinceSeconds,
                                                  sinceTime, timestamps, limitBytes, stream
  GET|POST /exec/{ns}/{pod}/{container}           WebSocket: command=..&stdin=1&stdout=1&stderr=1&tty=1
  GET|POST /attach/{ns}/{pod}/{container}         WebSocket: stdin=1&stdout=1&stderr=1&tty=1
  GET|POST /portForward/{ns}/{pod}                WebSocket, SPDY/3.1+portforward.k8s.io (portforward.py)
  GET  /stats/summary                             the runtime's stats
  GET  /metrics/resource                          the same as Prometheus metrics

Clients authenticate with a TLS client certificate signed by the cluster CA;
only the API server's (user kube-apiserver-kubelet-client or
system:kube-apiserver) and members of system:masters are let in. Errors are
plain text, as the kubelet writes them; the API server words them for kubectl.

Exec and attach speak the channel protocols of k8s.io/apimachinery remotecommand over
WebSocket: v5.channel.k8s.io (which adds the CLOSE signal, so stdin can end),
v4.channel.k8s.io (exit codes as a Status on the error channel), and the
older channel.k8s.io / base64.channel.k8s.io. Each message starts with its
channel: 0 stdin, 1 stdout, 2 stderr, 3 error, 4 resize, 255 close (v5).

Port-forward speaks what kubectl 1.31 and later send: SPDY/3.1 tunneled in
the WebSocket's binary messages; it connects to the pod's localhost ports
from inside the pod's network namespace (portforward.py).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import errno
import fcntl
import functools
import json
import logging
import os
import signal
import socket
import ssl
import struct
import termios
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from aiohttp import WSMsgType, web

from pinnace.servertls import HTTP_LIMITS, TLSSite, server_context

from . import crilog, portforward, servingcert

log = logging.getLogger("pinnace.kubelet.server")

# The API server's client certificate users, and the group allowed everything.
ALLOWED_USERS = frozenset({"kube-apiserver-kubelet-client", "system:kube-apiserver"})
ALLOWED_GROUP = "system:masters"

V5, V4 = "v5.channel.k8s.io", "v4.channel.k8s.io"
V4_BASE64, V1, V1_BASE64 = "v4.base64.channel.k8s.io", "channel.k8s.io", "base64.channel.k8s.io"
PROTOCOLS = (V5, V4, V4_BASE64, V1, V1_BASE64)
STDIN, STDOUT, STDERR, ERROR, RESIZE, CLOSE = 0, 1, 2, 3, 4, 255

_DRAIN_IDLE = 2.0  # seconds of silence after the command ended before its output is closed
_TRUE = ("1", "t", "T", "TRUE", "true", "True")  # Go's strconv.ParseBool
_FALSE = ("0", "f", "F", "FALSE", "false", "False")


class Runtime(Protocol):
    """What the server needs from the node agent."""

    def log_path(self, namespace: str, pod: str, container: str,
                 previous: bool) -> tuple[Path, Callable[[], bool]]:
        """The container's CRI log file and "is it still being written"
        (the container runs). KeyError(message) when there is no such pod
        or container (404); LookupError(message) when there is no log to
        give, e.g. no previous container (400)."""
        ...

    def exec_argv(self, namespace: str, pod: str, container: str, command: list[str],
                  tty: bool) -> list[str]:
        """The host command that runs ``command`` in the container (for
        example ``runc exec [-t] ID cmd...``); KeyError / LookupError as above."""
        ...

    def attach_socket(self, namespace: str, pod: str, container: str
                      ) -> tuple[Path, Path | None]:
        """conmon's attach socket for the running container (SOCK_SEQPACKET:
        output arrives as packets whose first byte names the pipe, 2 stdout
        or 3 stderr; packets sent are its stdin), and its control fifo when
        the container has a terminal, else None; KeyError / LookupError as above."""
        ...

    def netns_path(self, namespace: str, pod: str) -> str:
        """The path of the pod's network namespace (/run/netns/...), or ""
        when the pod uses the host's network (the agent's own namespace);
        KeyError(message) when there is no such pod."""
        ...

    def stats_summary(self) -> dict[str, Any]:
        """The /stats/summary body."""
        ...


class BadRequest(Exception):
    def __init__(self, code: int, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


class NotRunning(LookupError):
    """exec or attach to a container with no running process (waiting,
    exited): the kubelet refuses to upgrade with "container not found",
    which the API server hands on as an internal error."""

    def __init__(self, container: str):
        super().__init__(f'container not found ("{container}")')


def _not_running(e: NotRunning) -> dict[str, Any]:
    return _status_failure(500, "InternalError",
                           f"Internal error occurred: unable to upgrade connection: {e.args[0]}")


class KubeletServer:
    """The HTTPS server. ``serving_cert`` (cert, key) when given, else a
    self-signed certificate for the node kept in ``tls_dir`` (as the kubelet
    makes one when it has none). ``port`` 0 picks a free port; ``port`` tells
    which after ``start``."""

    def __init__(self, runtime: Runtime, *, host: str, port: int, tls_dir: Path,
                 client_ca: Path, node_name: str,
                 serving_cert: tuple[Path, Path] | None = None):
        self.runtime = runtime
        self.host = host
        self.port = port
        self.tls_dir = tls_dir
        self.client_ca = client_ca
        self.node_name = node_name
        self.serving_cert = serving_cert
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        if self.serving_cert is None:
            self.serving_cert = await asyncio.to_thread(
                servingcert.ensure, self.tls_dir, self.node_name, self.host)
        app = web.Application(middlewares=[self._authorize])
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/containerLogs/{ns}/{pod}/{container}", self._logs)
        for verb in ("GET", "POST"):
            app.router.add_route(verb, "/exec/{ns}/{pod}/{container}", self._exec)
            app.router.add_route(verb, "/attach/{ns}/{pod}/{container}", self._attach)
            app.router.add_route(verb, "/portForward/{ns}/{pod}", self._port_forward)
        app.router.add_get("/stats/summary", self._stats)
        app.router.add_get("/metrics/resource", self._resource_metrics)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False,
                                     shutdown_timeout=1.0, **HTTP_LIMITS)
        await self._runner.setup()
        site = TLSSite(self._runner, self.host, self.port, ssl_context=self._ssl_context())
        await site.start()
        self.port = site.port
        log.info("kubelet API on https://%s:%d", self.host, self.port)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def _ssl_context(self) -> ssl.SSLContext:
        assert self.serving_cert is not None
        return server_context(*self.serving_cert, self.client_ca)

    # -- authentication and authorization ---------------------------------

    @web.middleware
    async def _authorize(self, request: web.Request,
                         handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                         ) -> web.StreamResponse:
        if request.path == "/healthz":
            return await handler(request)
        user, groups = _peer(request)
        if not user:
            return web.Response(status=401, text="Unauthorized")
        if user not in ALLOWED_USERS and ALLOWED_GROUP not in groups:
            verb = "create" if request.method == "POST" else "get"
            sub = "stats" if request.path.startswith("/stats") else "proxy"
            return web.Response(status=403, text=f"Forbidden (user={user}, verb={verb}, "
                                                 f"resource=nodes, subresource={sub})")
        return await handler(request)

    # -- endpoints ------------------------------------------------------------

    async def _healthz(self, request: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def _stats(self, request: web.Request) -> web.Response:
        return web.json_response(self.runtime.stats_summary())

    async def _resource_metrics(self, request: web.Request) -> web.Response:
        """The kubelet's resource metrics, as metrics-server used to scrape them."""
        from .stats import resource_metrics

        try:
            summary: dict[str, Any] | None = self.runtime.stats_summary()
        except Exception:
            log.exception("stats for /metrics/resource")
            summary = None
        return web.Response(text=resource_metrics(summary),
                            headers={"Content-Type": "text/plain; version=0.0.4; charset=utf-8"})

    async def _attach(self, request: web.Request) -> web.StreamResponse:
        """The container's own stdin and output, through conmon's attach
        socket. Whether it is a terminal is the container's (as the kubelet
        takes tty from the pod spec); a terminal has no stderr."""
        m = request.match_info
        try:
            stdin, stdout, stderr, _ = (_flag(request.query, k) for k in (
                "stdin", "stdout", "stderr", "tty"))  # tty is the container's, not the client's
        except BadRequest as e:
            return web.Response(status=e.code, text=e.message)
        if not (stdin or stdout or stderr):
            return web.Response(status=400,
                                text="you must specify at least 1 of stdin, stdout, stderr")
        if request.headers.get("Upgrade", "").lower() != "websocket":
            return web.Response(status=400, text="this kubelet serves attach over WebSocket "
                                                 f"only ({', '.join(PROTOCOLS)})")
        failure: dict[str, Any] = {}
        conn: _Attached | None = None
        try:
            path, ctl = self.runtime.attach_socket(m["ns"], m["pod"], m["container"])
            conn = await _Attached.connect(path, ctl)
        except NotRunning as e:
            failure = _not_running(e)
        except KeyError as e:
            failure = _status_failure(404, "NotFound", _message(e))
        except LookupError as e:
            failure = _status_failure(400, "BadRequest", _message(e))
        except OSError as e:
            failure = _status_failure(500, "InternalError", "Internal error occurred: error "
                                                            f"attaching to container: {e}")
        ws = web.WebSocketResponse(protocols=PROTOCOLS, max_msg_size=0)
        try:
            await ws.prepare(request)
            chans = Channels(ws, ws.ws_protocol or "")
            if conn is None:
                await chans.status(failure)
            else:
                stderr = stderr and not conn.terminal
                await chans.send(STDOUT if stdout else STDERR if stderr else ERROR, b"")
                outcome = await _attach_session(chans, conn, stdin, stdout, stderr)
                if outcome is not None:
                    await chans.status(outcome)
        finally:
            if conn is not None:
                conn.close()
            await ws.close()
        return ws

    async def _port_forward(self, request: web.Request) -> web.StreamResponse:
        m = request.match_info
        try:
            netns = self.runtime.netns_path(m["ns"], m["pod"])
        except KeyError as e:
            return web.Response(status=404, text=_message(e))
        if request.headers.get("Upgrade", "").lower() != "websocket":
            return web.Response(status=400, text="this kubelet serves port-forward over "
                                                 f"WebSocket only ({portforward.TUNNEL_PROTOCOL})")
        ws = web.WebSocketResponse(protocols=(portforward.TUNNEL_PROTOCOL,), max_msg_size=0)
        if not ws.can_prepare(request).protocol:
            return web.Response(status=400, text="unable to upgrade: no tunneling spdy "
                                                 "protocols provided")
        await ws.prepare(request)
        where = Path(netns).name if netns else "host"

        def dial(port: int) -> Awaitable[portforward.Stream]:
            return portforward.connect(netns, port, where)

        try:
            await portforward.Tunnel(ws, dial, m["pod"]).run()
        finally:
            await ws.close()
        return ws

    async def _logs(self, request: web.Request) -> web.StreamResponse:
        m = request.match_info
        try:
            opts = LogOptions.parse(request.query)
            path, running = self.runtime.log_path(m["ns"], m["pod"], m["container"],
                                                  opts.previous)
        except BadRequest as e:
            return web.Response(status=e.code, text=e.message)
        except KeyError as e:
            return web.Response(status=404, text=_message(e))
        except LookupError as e:
            return web.Response(status=400, text=_message(e))
        resp = web.StreamResponse(headers={"Content-Type": "text/plain; charset=utf-8"})
        await resp.prepare(request)
        left = opts.limit_bytes
        if opts.follow:
            def gone() -> bool:
                return request.transport is None or request.transport.is_closing()

            chunks = crilog.follow(path, running, tail=opts.tail, since=opts.since,
                                   timestamps=opts.timestamps, stream=opts.stream, stop=gone)
            try:
                async for chunk in chunks:
                    left = await _write_limited(resp, chunk, left)
                    if left == 0:
                        break
            except ConnectionError:
                return resp
            finally:
                await chunks.aclose()
        else:
            for chunk in await asyncio.to_thread(crilog.read_lines, path, opts.tail, opts.since,
                                                 opts.timestamps, opts.stream):
                left = await _write_limited(resp, chunk, left)
                if left == 0:
                    break
        with contextlib.suppress(ConnectionError):
            await resp.write_eof()
        return resp

    async def _exec(self, request: web.Request) -> web.StreamResponse:
        m = request.match_info
        q = request.query
        try:
            stdin, stdout, stderr, tty = (_flag(q, k) for k in ("stdin", "stdout", "stderr",
                                                                "tty"))
        except BadRequest as e:
            return web.Response(status=e.code, text=e.message)
        stderr = stderr and not tty  # a terminal has one output; the kubelet drops stderr too
        command = q.getall("command", [])
        if not (stdin or stdout or stderr):
            return web.Response(status=400,
                                text="you must specify at least 1 of stdin, stdout, stderr")
        if not command:
            return web.Response(status=400, text="you must specify at least 1 command")
        if request.headers.get("Upgrade", "").lower() != "websocket":
            return web.Response(status=400, text="this kubelet serves exec over WebSocket only "
                                                 f"({', '.join(PROTOCOLS)})")
        failure: dict[str, Any] | None = None
        argv: list[str] = []
        try:
            argv = self.runtime.exec_argv(m["ns"], m["pod"], m["container"], command, tty)
        except NotRunning as e:
            failure = _not_running(e)
        except KeyError as e:
            failure = _status_failure(404, "NotFound", _message(e))
        except LookupError as e:
            failure = _status_failure(400, "BadRequest", _message(e))
        ws = web.WebSocketResponse(protocols=PROTOCOLS, max_msg_size=0)
        await ws.prepare(request)
        chans = Channels(ws, ws.ws_protocol or "")
        try:
            if failure is not None:
                await chans.status(failure)
            else:
                # Tell the client the streams are up, as the kubelet does.
                await chans.send(STDOUT if stdout else STDERR if stderr else ERROR, b"")
                await chans.status(await _run(chans, argv, stdin, stdout, stderr, tty))
        finally:
            await ws.close()
        return ws


@dataclass
class LogOptions:
    follow: bool = False
    previous: bool = False
    timestamps: bool = False
    tail: int | None = None
    since: int | None = None  # nanoseconds since the epoch
    limit_bytes: int | None = None
    stream: str = "All"

    @classmethod
    def parse(cls, q: Any) -> LogOptions:
        o = cls(follow=_flag(q, "follow"), previous=_flag(q, "previous"),
                timestamps=_flag(q, "timestamps"), stream=q.get("stream") or "All")
        o.tail = _int(q, "tailLines", 0)
        o.limit_bytes = _int(q, "limitBytes", 1)
        seconds = _int(q, "sinceSeconds", 1)
        since_time = q.get("sinceTime")
        if seconds is not None and since_time:
            raise BadRequest(400, "at most one of `sinceTime` or `sinceSeconds` may be specified")
        if seconds is not None:
            o.since = time.time_ns() - seconds * 1_000_000_000
        elif since_time:
            try:
                o.since = crilog.parse_time(since_time)
            except ValueError:
                raise BadRequest(400, f'sinceTime: invalid time "{since_time}"') from None
        if o.stream not in ("All", "Stdout", "Stderr"):
            raise BadRequest(400, f'stream: Unsupported value: "{o.stream}": supported values: '
                                  '"All", "Stderr", "Stdout"')
        return o


def _flag(q: Any, name: str) -> bool:
    v = q.get(name)
    if v is None or v == "":
        return False
    if v in _TRUE:
        return True
    if v in _FALSE:
        return False
    raise BadRequest(400, f'{name}: invalid value "{v}": not a boolean')


def _int(q: Any, name: str, least: int) -> int | None:
    v = q.get(name)
    if v is None or v == "":
        return None
    try:
        n = int(v)
    except ValueError:
        raise BadRequest(400, f'{name}: invalid value "{v}": not an integer') from None
    if n < least:
        raise BadRequest(400, f"{name}: must be greater than or equal to {least}")
    return n


async def _write_limited(resp: web.StreamResponse, chunk: bytes, left: int | None) -> int | None:
    if left is not None:
        chunk = chunk[:left]
        left -= len(chunk)
    await resp.write(chunk)
    return left


def _message(e: LookupError) -> str:
    return str(e.args[0]) if e.args else str(e)


def _peer(request: web.Request) -> tuple[str, list[str]]:
    """The user (CN) and groups (O) of the verified client certificate."""
    transport = request.transport
    cert = transport.get_extra_info("peercert") if transport is not None else None
    if not cert:
        return "", []
    cn, orgs = "", []
    for rdn in cert.get("subject", ()):
        for key, value in rdn:
            if key == "commonName":
                cn = value
            elif key == "organizationName":
                orgs.append(value)
    return cn, orgs


# -- the channel protocol ----------------------------------------------------


class Channels:
    """One exec session's WebSocket, in its negotiated channel protocol."""

    def __init__(self, ws: web.WebSocketResponse, protocol: str):
        self.ws = ws
        self.protocol = protocol
        self.base64 = "base64" in protocol
        self.version = 5 if protocol == V5 else 4 if protocol.startswith("v4.") else 1

    async def send(self, channel: int, data: bytes) -> None:
        if self.ws.closed:
            return
        with contextlib.suppress(ConnectionError):
            if self.base64:
                await self.ws.send_str(chr(48 + channel) + base64.b64encode(data).decode())
            else:
                await self.ws.send_bytes(bytes((channel,)) + data)

    def decode(self, msg: Any) -> tuple[int, bytes] | None:
        if msg.type == WSMsgType.BINARY and not self.base64 and msg.data:
            return msg.data[0], msg.data[1:]
        if msg.type == WSMsgType.TEXT and self.base64 and msg.data:
            try:
                return ord(msg.data[0]) - 48, base64.b64decode(msg.data[1:])
            except ValueError:
                return None
        return None

    async def status(self, st: dict[str, Any]) -> None:
        """The outcome on the error channel: a Status (v4 and later), or
        the message of a failure (earlier versions)."""
        if self.version >= 4:
            await self.send(ERROR, json.dumps(st).encode())
        elif st.get("status") != "Success":
            await self.send(ERROR, st.get("message", "").encode())


def _status_success() -> dict[str, Any]:
    return {"metadata": {}, "status": "Success"}


def _status_exit(code: int) -> dict[str, Any]:
    return {"metadata": {}, "status": "Failure",
            "message": f"command terminated with non-zero exit code: exit status {code}",
            "reason": "NonZeroExitCode",
            "details": {"causes": [{"reason": "ExitCode", "message": str(code)}]}}


def _status_failure(code: int, reason: str, message: str) -> dict[str, Any]:
    return {"metadata": {}, "status": "Failure", "message": message, "reason": reason,
            "details": {"causes": [{"message": message}]}, "code": code}


# -- running the command -----------------------------------------------------


async def _run(chans: Channels, argv: list[str], stdin: bool, stdout: bool, stderr: bool,
               tty: bool) -> dict[str, Any]:
    """Run ``argv`` wired to the session until it ends; its Status. The
    command is killed if the client goes away first."""
    try:
        proc = _TTYProcess(argv) if tty else _PipeProcess(argv, stdin, stdout, stderr)
        await proc.start()
    except OSError as e:
        msg = f"error executing command in container: {e}"
        return _status_failure(500, "InternalError", f"Internal error occurred: {msg}")
    activity = [time.monotonic()]
    pumps = [asyncio.create_task(_pump(read, chans, ch, activity))
             for ch, read in proc.outputs()]
    inbound = asyncio.create_task(_inbound(chans, proc, stdin, tty))
    waiting = asyncio.create_task(proc.wait())
    tasks = (*pumps, inbound, waiting)
    try:
        done, _ = await asyncio.wait({waiting, inbound}, return_when=asyncio.FIRST_COMPLETED)
        if inbound in done and not waiting.done():
            proc.kill()  # the client went away
        code = await waiting
        # What the command wrote before it ended still goes out, but a
        # background child that keeps its output open does not keep us here.
        pending = set(pumps)
        while pending:
            _, pending = await asyncio.wait(pending, timeout=0.5)
            if time.monotonic() - activity[0] > _DRAIN_IDLE:
                break
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        proc.close()
    return _status_success() if code == 0 else _status_exit(code)


async def _pump(read: Callable[[], Awaitable[bytes]], chans: Channels, channel: int,
                activity: list[float]) -> None:
    while data := await read():
        activity[0] = time.monotonic()
        await chans.send(channel, data)


async def _inbound(chans: Channels, proc: _Input, stdin: bool, tty: bool) -> None:
    """The client's messages: stdin, terminal size, CLOSE. Ends when the
    client closes the connection."""
    async for msg in chans.ws:
        got = chans.decode(msg)
        if got is None:
            continue
        channel, data = got
        if channel == STDIN and stdin:
            await proc.write(data)
        elif channel == RESIZE and tty:
            try:
                size = json.loads(data)
                proc.resize(int(size.get("Width", 0)), int(size.get("Height", 0)))
            except (ValueError, TypeError, AttributeError):
                log.debug("bad resize message %r", data)
        elif channel == CLOSE and chans.version >= 5 and data[:1] == bytes((STDIN,)):
            await proc.close_stdin()


class _Input(Protocol):
    async def write(self, data: bytes) -> None: ...
    async def close_stdin(self) -> None: ...
    def resize(self, width: int, height: int) -> None: ...


class _Process(_Input, Protocol):
    async def start(self) -> None: ...
    def outputs(self) -> list[tuple[int, Callable[[], Awaitable[bytes]]]]: ...
    async def wait(self) -> int: ...
    def kill(self) -> None: ...
    def close(self) -> None: ...


def _exit_code(returncode: int) -> int:
    return 128 - returncode if returncode < 0 else returncode  # killed by a signal: 128+n


class _Command:
    """What both kinds of exec share: the process, in a session of its own
    so that killing it takes its children too."""

    proc: asyncio.subprocess.Process | None = None

    async def wait(self) -> int:
        assert self.proc is not None
        return _exit_code(await self.proc.wait())

    def kill(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, signal.SIGKILL)

    def close(self) -> None:
        self.kill()


class _PipeProcess(_Command):
    def __init__(self, argv: list[str], stdin: bool, stdout: bool, stderr: bool):
        self.argv, self.stdin, self.stdout, self.stderr = argv, stdin, stdout, stderr

    async def start(self) -> None:
        pipe, null = asyncio.subprocess.PIPE, asyncio.subprocess.DEVNULL
        self.proc = await asyncio.create_subprocess_exec(
            *self.argv, stdin=pipe if self.stdin else null,
            stdout=pipe if self.stdout else null, stderr=pipe if self.stderr else null,
            start_new_session=True)

    def outputs(self) -> list[tuple[int, Callable[[], Awaitable[bytes]]]]:
        assert self.proc is not None
        out: list[tuple[int, Callable[[], Awaitable[bytes]]]] = []
        for channel, stream in ((STDOUT, self.proc.stdout), (STDERR, self.proc.stderr)):
            if stream is not None:
                out.append((channel, functools.partial(stream.read, 1 << 16)))
        return out

    async def write(self, data: bytes) -> None:
        assert self.proc is not None
        if self.proc.stdin is None or self.proc.stdin.is_closing():
            return
        with contextlib.suppress(ConnectionError):
            self.proc.stdin.write(data)
            await self.proc.stdin.drain()

    async def close_stdin(self) -> None:
        assert self.proc is not None
        if self.proc.stdin is not None and not self.proc.stdin.is_closing():
            self.proc.stdin.close()

    def resize(self, width: int, height: int) -> None:
        pass


class _TTYProcess(_Command):
    """The command on a new terminal it has as its controlling terminal."""

    def __init__(self, argv: list[str]):
        self.argv = argv
        self.master = -1

    async def start(self) -> None:
        master, slave = os.openpty()
        try:
            self.proc = await asyncio.create_subprocess_exec(
                *self.argv, stdin=slave, stdout=slave, stderr=slave, start_new_session=True,
                preexec_fn=_take_terminal)
        except BaseException:
            os.close(master)
            raise
        finally:
            os.close(slave)
        os.set_blocking(master, False)
        self.master = master

    def outputs(self) -> list[tuple[int, Callable[[], Awaitable[bytes]]]]:
        return [(STDOUT, self._read)]

    async def _read(self) -> bytes:
        while self.master >= 0:
            try:
                return os.read(self.master, 1 << 16)
            except BlockingIOError:
                await _ready(self.master, write=False)
            except OSError as e:
                if e.errno == errno.EIO:  # every holder of the terminal closed it
                    return b""
                raise
        return b""

    async def write(self, data: bytes) -> None:
        while data and self.master >= 0:
            try:
                data = data[os.write(self.master, data):]
            except BlockingIOError:
                await _ready(self.master, write=True)
            except OSError:
                return

    async def close_stdin(self) -> None:
        await self.write(b"\x04")  # end of input, as a terminal says it

    def resize(self, width: int, height: int) -> None:
        if self.master >= 0 and width > 0 and height > 0:
            fcntl.ioctl(self.master, termios.TIOCSWINSZ, struct.pack("HHHH", height, width, 0, 0))

    def close(self) -> None:
        super().close()
        if self.master >= 0:
            os.close(self.master)
            self.master = -1


# -- attaching to a container ---------------------------------------------------

_ATTACH_READ = 8192 + 1  # conmon reads its pipes 8 KiB at a time (STDIO_BUF_SIZE), plus the pipe byte
_ATTACH_WRITE = 8192  # stdin per packet; conmon reads at most 32 KiB of one and drops the rest
_UNIX_PATH_MAX = 107  # bytes of sun_path before the terminating NUL
_RESIZE_EVENT = 1  # conmon's ctl fifo: "1 HEIGHT WIDTH\n"
_RESIZE_GAP = 0.05  # seconds between two resizes: see _Attached._resizes
_PIPES = {2: STDOUT, 3: STDERR}  # conmon's stdpipe_t (src/utils.h): 1 would be stdin, unused


class _Attached:
    """A connection to conmon's attach socket (conmon/src/conn_sock.c); the
    control fifo, when the container has a terminal, takes its size."""

    def __init__(self, sock: socket.socket, ctl: Path | None):
        self.sock = sock
        self.terminal = ctl is not None
        self.ctl = -1
        self._size: tuple[int, int] | None = None  # the newest size not written yet
        self._resizer: asyncio.Task[None] | None = None
        if ctl is not None:
            with contextlib.suppress(OSError):  # conmon holds the fifo's read end
                self.ctl = os.open(ctl, os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)

    @classmethod
    async def connect(cls, path: Path, ctl: Path | None) -> _Attached:
        def dial() -> socket.socket:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
            try:
                sock.settimeout(10)
                if len(os.fsencode(path)) <= _UNIX_PATH_MAX:
                    sock.connect(str(path))
                else:  # too long for an address: through the directory's descriptor
                    fd = os.open(path.parent, os.O_PATH | os.O_CLOEXEC)
                    try:
                        sock.connect(f"/proc/self/fd/{fd}/{path.name}")
                    finally:
                        os.close(fd)
                sock.setblocking(False)
                return sock
            except BaseException:
                sock.close()
                raise

        return cls(await asyncio.to_thread(dial), ctl)

    async def read(self) -> bytes:
        """One packet (pipe byte, then output); b"" when conmon hangs up."""
        try:
            return await asyncio.get_running_loop().sock_recv(self.sock, _ATTACH_READ)
        except OSError:
            return b""

    async def write(self, data: bytes) -> None:
        loop = asyncio.get_running_loop()
        for i in range(0, len(data), _ATTACH_WRITE):
            try:
                await loop.sock_sendall(self.sock, data[i:i + _ATTACH_WRITE])
            except OSError:
                return

    async def close_stdin(self) -> None:
        """conmon closes the container's stdin unless told to leave it open."""
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_WR)

    def resize(self, width: int, height: int) -> None:
        if self.ctl >= 0 and width > 0 and height > 0:
            self._size = (width, height)
            if self._resizer is None or self._resizer.done():
                self._write_size()
                self._resizer = asyncio.get_running_loop().create_task(self._resizes())

    async def _resizes(self) -> None:
        """One line at a time, apart: conmon before 2.2.0 acts on the first
        line of what it reads at once as many times as it got lines, so of
        kubectl's two sizes on attach (one cell larger, then the real one,
        to make the program redraw) only the larger would stay. Sizes that
        come meanwhile are skipped for the newest."""
        await asyncio.sleep(_RESIZE_GAP)
        while self._size is not None and self.ctl >= 0:
            self._write_size()
            await asyncio.sleep(_RESIZE_GAP)

    def _write_size(self) -> None:
        assert self._size is not None
        width, height = self._size
        self._size = None
        with contextlib.suppress(OSError):
            os.write(self.ctl, f"{_RESIZE_EVENT} {height} {width}\n".encode())

    def close(self) -> None:
        if self._resizer is not None:
            self._resizer.cancel()
        self.sock.close()
        if self.ctl >= 0:
            os.close(self.ctl)
            self.ctl = -1


async def _attach_session(chans: Channels, conn: _Attached, stdin: bool, stdout: bool,
                          stderr: bool) -> dict[str, Any] | None:
    """Copy both ways until the container's output ends (Success) or the
    client goes away (None: nobody to tell)."""
    wanted = {STDOUT: stdout, STDERR: stderr}

    async def outbound() -> None:
        while packet := await conn.read():
            channel = _PIPES.get(packet[0], -1)
            if wanted.get(channel) and len(packet) > 1:
                await chans.send(channel, packet[1:])

    out = asyncio.create_task(outbound())
    inbound = asyncio.create_task(_inbound(chans, conn, stdin, conn.terminal))
    try:
        done, _ = await asyncio.wait({out, inbound}, return_when=asyncio.FIRST_COMPLETED)
        return _status_success() if out in done else None
    finally:
        for t in (out, inbound):
            t.cancel()
        await asyncio.gather(out, inbound, return_exceptions=True)


def _take_terminal() -> None:
    """In the child, after setsid: stdin's terminal becomes the controlling one."""
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


async def _ready(fd: int, write: bool) -> None:
    loop = asyncio.get_running_loop()
    fut: asyncio.Future[None] = loop.create_future()

    def wake() -> None:
        if not fut.done():
            fut.set_result(None)

    (loop.add_writer if write else loop.add_reader)(fd, wake)
    try:
        await fut
    finally:
        (loop.remove_writer if write else loop.remove_reader)(fd)


# -- the serving certificate ---------------------------------------------------


__all__ = ["KubeletServer", "LogOptions", "PROTOCOLS", "Runtime"]
