"""Port-forward: a pod's localhost ports, reached from inside its network
namespace, for `kubectl port-forward`.

kubectl 1.31 and later open a WebSocket with subprotocol
``SPDY/3.1+portforward.k8s.io`` and speak SPDY inside it (spdy.py). For each
local connection kubectl opens two streams carrying the same ``requestID``
header and the ``port``: an "error" stream, which it closes at once and
reads until the kubelet closes it (any text is the failure it reports, after
which it gives up the whole session), and a "data" stream with the bytes
both ways. The kubelet answers each stream (SYN_REPLY), and once a pair is
whole connects to localhost:<port> inside the pod's network namespace, as
containerd does: IPv4 first, then IPv6. When the pod's side ends, the data
stream and then the error stream are closed; when kubectl's side ends, the
pod's socket is shut for writing and its answer still flows back.

Sockets are made inside the namespace by a short-lived thread that has
joined it (setns); a socket stays in the namespace it was made in, so the
event loop uses it from then on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from aiohttp import WSMsgType, web

from . import libc, spdy

log = logging.getLogger("pinnace.kubelet.portforward")

TUNNEL_PROTOCOL = "SPDY/3.1+portforward.k8s.io"
CONNECT_TIMEOUT = 10.0
STREAM_CREATION_TIMEOUT = 30.0  # as the kubelet's: both streams of a pair by then
_CHUNK = 1 << 15

Stream = tuple[asyncio.StreamReader, asyncio.StreamWriter]


class ConnectError(Exception):
    """Nothing listens on the port (worded as containerd words it)."""


# -- connecting inside a network namespace -------------------------------------


async def connect(netns: str, port: int, name: str,
                  timeout: float = CONNECT_TIMEOUT) -> Stream:
    """A connection to localhost:``port`` in the network namespace at path
    ``netns`` ("" for this process's own); ``name`` names the namespace in
    errors."""
    socks = await _sockets_in(netns) if netns else _sockets()
    loop = asyncio.get_running_loop()
    errors = []
    try:
        for family, host, net in ((socket.AF_INET, "127.0.0.1", "tcp4"),
                                  (socket.AF_INET6, "[::1]", "tcp6")):
            sock = socks.pop(family, None)
            if isinstance(sock, OSError) or sock is None:
                errors.append(f"dial {net} {host}:{port}: socket: {_reason(sock)}")
                continue
            try:
                sock.setblocking(False)
                await asyncio.wait_for(loop.sock_connect(sock, (host.strip("[]"), port)),
                                       timeout)
            except (OSError, asyncio.TimeoutError) as e:
                sock.close()
                errors.append(f"dial {net} {host}:{port}: connect: {_reason(e)}")
                continue
            return await asyncio.open_connection(sock=sock)
    finally:
        for s in socks.values():
            if isinstance(s, socket.socket):
                s.close()
    raise ConnectError(f'failed to connect to localhost:{port} inside namespace "{name}", '
                       f"IPv4: {errors[0]} IPv6 {errors[1]} ")


def _sockets() -> dict[int, socket.socket | OSError]:
    """An IPv4 and an IPv6 TCP socket (or why there is none), made here."""
    out: dict[int, socket.socket | OSError] = {}
    for family in (socket.AF_INET, socket.AF_INET6):
        try:
            out[family] = socket.socket(family, socket.SOCK_STREAM)
        except OSError as e:
            out[family] = e
    return out


async def _sockets_in(netns: str) -> dict[int, socket.socket | OSError]:
    """``_sockets()`` made inside the namespace at ``netns``, on a thread of
    its own that joins the namespace and then ends (so no other work ever
    runs in it)."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[dict[int, socket.socket | OSError]] = loop.create_future()

    def deliver(result: dict[int, socket.socket | OSError] | BaseException) -> None:
        if done.cancelled():
            if isinstance(result, dict):
                for s in result.values():
                    if isinstance(s, socket.socket):
                        s.close()
        elif isinstance(result, BaseException):
            done.set_exception(result)
        else:
            done.set_result(result)

    def work() -> None:
        result: dict[int, socket.socket | OSError] | BaseException
        try:
            fd = os.open(netns, os.O_RDONLY | os.O_CLOEXEC)
            try:
                libc.setns(fd, libc.CLONE_NEWNET, netns)
            finally:
                os.close(fd)
            result = _sockets()
        except OSError as e:
            result = ConnectError(f"cannot enter network namespace {netns}: {_reason(e)}")
        loop.call_soon_threadsafe(deliver, result)

    threading.Thread(target=work, name="pinnace-netns", daemon=True).start()
    return await done



def _reason(e: BaseException | None) -> str:
    """Go's wording of a dial error's cause."""
    if isinstance(e, asyncio.TimeoutError) or isinstance(e, TimeoutError):
        return "i/o timeout"
    if isinstance(e, OSError) and e.errno:
        return os.strerror(e.errno).lower()  # asyncio's own strerror names the address
    return str(e) or type(e).__name__


# -- SPDY over WebSocket -------------------------------------------------------


@dataclass
class _Pair:
    """One forwarded connection: its two streams and the pod's socket."""

    request_id: str
    port: int
    data: int = 0  # stream ids
    error: int = 0
    writer: asyncio.StreamWriter | None = None
    pending: list[bytes] = field(default_factory=list)  # from kubectl before the socket
    client_done: bool = False  # kubectl finished sending
    reset: bool = False  # kubectl tore the data stream down
    task: asyncio.Task[None] | None = None
    timer: asyncio.TimerHandle | None = None

    def stop(self) -> None:
        self.reset = True
        if self.writer is not None:
            self.writer.close()


class Tunnel:
    """One `kubectl port-forward` session: SPDY streams in a WebSocket.
    ``dial(port)`` connects to the pod (ConnectError when it cannot);
    ``pod`` names the pod in errors."""

    def __init__(self, ws: web.WebSocketResponse, dial: Callable[[int], Awaitable[Stream]],
                 pod: str, uid: str = ""):
        self.ws = ws
        self.dial = dial
        self.pod = pod
        self.uid = uid
        self.codec = spdy.Codec()
        self.pairs: dict[str, _Pair] = {}
        self.streams: dict[int, tuple[_Pair, str]] = {}
        self.going_away = False
        self._lock = asyncio.Lock()

    async def run(self) -> None:
        """Serve until the client closes the WebSocket."""
        try:
            async for msg in self.ws:
                if msg.type != WSMsgType.BINARY:
                    continue
                for frame in self.codec.feed(msg.data):
                    await self._frame(frame)
        except spdy.ProtocolError as e:
            log.info("port-forward to %s: %s", self.pod, e)
            await self._send(spdy.goaway(0, 1))
        finally:
            pairs = list(self.pairs.values())
            for p in pairs:
                p.stop()
                if p.timer is not None:
                    p.timer.cancel()
            tasks = [p.task for p in pairs if p.task is not None]
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _send(self, frame: bytes | Callable[[], bytes]) -> None:
        """One frame out; a callable is encoded under the lock, so header
        blocks leave in the order they were compressed."""
        async with self._lock:
            if self.ws.closed:
                return
            with contextlib.suppress(ConnectionError):
                await self.ws.send_bytes(frame() if callable(frame) else frame)

    async def _frame(self, f: spdy.Frame) -> None:
        if f.kind == spdy.SYN_STREAM:
            await self._new_stream(f)
        elif f.kind == spdy.DATA:
            found = self.streams.get(f.stream_id)
            if found is None or found[1] != "data":
                return  # the error stream carries nothing from kubectl; gone streams
            pair = found[0]
            if f.data and not pair.reset:
                await self._to_pod(pair, f.data)
            if f.fin:
                pair.client_done = True
                if pair.writer is not None and pair.writer.can_write_eof():
                    with contextlib.suppress(OSError):
                        pair.writer.write_eof()
        elif f.kind == spdy.RST_STREAM:
            found = self.streams.pop(f.stream_id, None)
            if found is not None and found[1] == "data":
                found[0].stop()
        elif f.kind == spdy.PING:
            if f.ping_id & 1:  # the client's; ours would be even
                await self._send(spdy.ping(f.ping_id))
        elif f.kind == spdy.GOAWAY:
            self.going_away = True

    async def _new_stream(self, f: spdy.Frame) -> None:
        sid, kind, port_s = f.stream_id, f.header("streamtype"), f.header("port")
        problem = ""
        if not port_s:
            problem = '"port" header is required'
        elif not port_s.isdigit() or not 0 < int(port_s) < 65536:
            problem = f'unable to parse "{port_s}" as a port' if not port_s.isdigit() \
                else f'port "{port_s}" must be > 0'
        elif not kind:
            problem = '"streamType" header is required'
        elif kind not in ("data", "error"):
            problem = f'invalid stream type "{kind}"'
        if problem or self.going_away:
            log.info("port-forward to %s: stream %d rejected: %s", self.pod, sid, problem)
            await self._send(spdy.rst_stream(sid, spdy.REFUSED_STREAM if self.going_away
                                             else spdy.CANCEL))
            return
        rid = f.header("requestid") or str(sid if kind == "error" else sid - 2)  # old clients
        await self._send(lambda: self.codec.syn_reply(sid))
        pair = self.pairs.get(rid)
        if pair is None:
            pair = self.pairs[rid] = _Pair(rid, int(port_s))
            pair.timer = asyncio.get_running_loop().call_later(
                STREAM_CREATION_TIMEOUT, lambda: asyncio.ensure_future(self._incomplete(pair)))
        if getattr(pair, kind):
            await self._fail(pair, f"error processing stream for request {rid}: "
                                   f"{kind} stream already assigned")
            await self._send(spdy.rst_stream(sid, spdy.CANCEL))
            return
        setattr(pair, kind, sid)
        self.streams[sid] = (pair, kind)
        if pair.data and pair.error:
            if pair.timer is not None:
                pair.timer.cancel()
            pair.task = asyncio.create_task(self._forward(pair))

    async def _incomplete(self, pair: _Pair) -> None:
        if pair.task is None and self.pairs.get(pair.request_id) is pair:
            await self._fail(pair, f"(conn={self.pod}, request={pair.request_id}) timed out "
                                   "waiting for streams")
            for sid in (pair.data, pair.error):
                if sid:
                    await self._send(spdy.data(sid, b"", fin=True))
            self._drop(pair)

    async def _fail(self, pair: _Pair, message: str) -> None:
        if pair.error:
            await self._send(spdy.data(pair.error, message.encode()))

    async def _to_pod(self, pair: _Pair, chunk: bytes) -> None:
        if pair.writer is None:
            pair.pending.append(chunk)
            return
        try:
            pair.writer.write(chunk)
            await pair.writer.drain()
        except (ConnectionError, OSError):
            pass  # the pod's side ended; the forward ends with it

    async def _forward(self, pair: _Pair) -> None:
        """Copy between the pod's port and the data stream, then close both streams."""
        try:
            try:
                reader, writer = await self.dial(pair.port)
            except ConnectError as e:
                await self._fail(pair, f"error forwarding port {pair.port} to pod {self.pod}, "
                                       f"uid {self.uid}: {e}")
                return
            pair.writer = writer
            try:
                for chunk in pair.pending:  # no await in between: order is kept
                    writer.write(chunk)
                pair.pending.clear()
                if pair.client_done and writer.can_write_eof():
                    writer.write_eof()
                while not pair.reset:
                    chunk = await reader.read(_CHUNK)
                    if not chunk:
                        break
                    await self._send(spdy.data(pair.data, chunk))
            except (ConnectionError, OSError) as e:
                log.debug("port-forward to %s port %d: %s", self.pod, pair.port, e)
            finally:
                writer.close()
        finally:
            if not pair.reset:
                await self._send(spdy.data(pair.data, b"", fin=True))
            await self._send(spdy.data(pair.error, b"", fin=True))
            self._drop(pair)

    def _drop(self, pair: _Pair) -> None:
        if self.pairs.get(pair.request_id) is pair:
            del self.pairs[pair.request_id]
        for sid in (pair.data, pair.error):
            if sid and self.streams.get(sid, (None,))[0] is pair:
                del self.streams[sid]


__all__ = ["ConnectError", "TUNNEL_PROTOCOL", "Tunnel", "connect"]
