"""pods/log, pods/exec, pods/attach and pods/portforward: the API server
hands them to the kubelet of the pod's node, as upstream's pod REST does
(pkg/registry/core/pod/strategy.go: LogLocation, ExecLocation); and
nodes/NAME/proxy/PATH, any request to the kubelet's own API passed through.

The pod must exist and name the container (or have only one); the node's
kubelet is reached at its first address among InternalIP, InternalDNS,
Hostname, ExternalIP, ExternalDNS and at status.daemonEndpoints
.kubeletEndpoint.Port (10250 when unset), over HTTPS with the API server's
own client certificate (apiserver-kubelet-client.crt in the PKI directory:
CN kube-apiserver-kubelet-client, O system:masters). Like an upstream API
server given no --kubelet-certificate-authority, it does not verify the
kubelet's serving certificate (kubelets make their own, self-signed).

Logs are a plain GET whose body is copied through as it comes (`-f` too).
Exec and attach are WebSocket only (kubectl 1.30 and later speak
v5.channel.k8s.io): the client's WebSocket is accepted, one to the kubelet
opened in the same subprotocol, and messages copied both ways; failing to
reach the kubelet is reported on the error channel, as upstream's stream
translator does. A SPDY upgrade is refused with a Status (kubectl then
reports it). Port-forward is a WebSocket whose binary messages carry SPDY
(subprotocol SPDY/3.1+portforward.k8s.io, what kubectl 1.31 and later
send): it is relayed unchanged to the kubelet, which speaks SPDY itself;
the kubelet is reached before the client is answered, so that failing to
reach it is a Status. Simulated nodes (`pinnace sim`) run no kubelet: the
answer is the one an unreachable kubelet gets, at once.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import fcntl
import json
import logging
import ssl
from http import HTTPStatus
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

import aiohttp
from aiohttp import WSMsgType, web

from pinnace.api import field
from pinnace.certfiles import PKI, write_pem

from . import status
from .certs import issue_client_cert
from .registry import ResourceTable
from .rest import Registry
from .status import APIError

if TYPE_CHECKING:
    from .handlers import Target

log = logging.getLogger("pinnace.apiserver.nodeproxy")

KUBELET_CLIENT_USER = "kube-apiserver-kubelet-client"
KUBELET_CLIENT_GROUPS = ["system:masters"]
DEFAULT_KUBELET_PORT = 10250
ADDRESS_TYPES = ("InternalIP", "InternalDNS", "Hostname", "ExternalIP", "ExternalDNS")
# The remote command subprotocols relayed (pinnace's kubelet speaks them all).
PROTOCOLS = ("v5.channel.k8s.io", "v4.channel.k8s.io", "v4.base64.channel.k8s.io",
             "channel.k8s.io", "base64.channel.k8s.io")
# What kubectl 1.31 and later ask for pods/portforward: SPDY in a WebSocket.
TUNNEL_PREFIX = "SPDY/3.1+"
PORT_FORWARD_PROTOCOL = TUNNEL_PREFIX + "portforward.k8s.io"
SIM_RUNTIME_PREFIX = "sim://"  # nodeInfo.containerRuntimeVersion of `pinnace sim` nodes
CONNECT_TIMEOUT = 10.0
_STATUSES = {int(s) for s in HTTPStatus}

_TRUE = ("1", "t", "T", "TRUE", "true", "True")  # Go's strconv.ParseBool
_FALSE = ("0", "f", "F", "FALSE", "false", "False")


def ensure_kubelet_client_cert(pki: PKI) -> tuple[Path, Path]:
    """The API server's client certificate for kubelets, made once (under a
    lock, so that API server workers starting together make one)."""
    cert = pki.dir / "apiserver-kubelet-client.crt"
    key = pki.dir / "apiserver-kubelet-client.key"
    if cert.exists() and key.exists():
        return cert, key
    with open(pki.dir / ".apiserver-kubelet-client.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (cert.exists() and key.exists()):
            cert_pem, key_pem = issue_client_cert(pki, KUBELET_CLIENT_USER,
                                                  KUBELET_CLIENT_GROUPS)
            write_pem(key, key_pem, private=True)
            write_pem(cert, cert_pem)
    return cert, key


class NodeProxy:
    """Serves the pod subresources that live on nodes; ``pki_dir`` is the
    API server's PKI directory (its CA signs the client certificate)."""

    def __init__(self, registry: Registry, table: ResourceTable, pki_dir: Path):
        self.registry = registry
        self.table = table
        self.pki = PKI(pki_dir)
        self._session: aiohttp.ClientSession | None = None

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def handle(self, request: web.Request, t: Target) -> web.StreamResponse:
        assert t.name is not None
        if t.subresource == "log":
            if request.method != "GET":
                raise status.method_not_allowed()
            return await self.log(request, t.namespace or "", t.name)
        if t.subresource in ("exec", "attach"):
            if request.method not in ("GET", "POST"):
                raise status.method_not_allowed()
            return await self.stream(request, t.namespace or "", t.name, t.subresource)
        if t.subresource == "portforward":
            if request.method not in ("GET", "POST"):
                raise status.method_not_allowed()
            return await self.port_forward(request, t.namespace or "", t.name)
        raise status.method_not_allowed()

    # -- logs ----------------------------------------------------------------

    async def log(self, request: web.Request, ns: str, name: str) -> web.StreamResponse:
        q = request.query
        params = _log_params(q, name)
        pod = await self._pod(ns, name)
        container = _container(pod, q.get("container", ""))
        node = (pod.get("spec") or {}).get("nodeName")
        if not node:
            # Upstream answers an unscheduled pod's log request with nothing.
            return web.Response(body=b"", content_type="text/plain")
        base, sim = await self._kubelet(node)
        url = f"{base}/containerLogs/{ns}/{name}/{container}"
        if params:
            url += "?" + urlencode(params)
        if sim:
            raise _unreachable(f'Get "{url}": {_sim_error(node)}')
        session = await self._client()
        try:
            kresp = await session.get(url)
        except (aiohttp.ClientError, OSError, asyncio.TimeoutError) as e:
            raise _unreachable(f'Get "{url}": {_dial_error(base, e)}') from None
        try:
            if not 200 <= kresp.status <= 206:
                raise _kubelet_error(kresp.status, (await kresp.text()).strip(), name)
            return await _pass_back(request, kresp,
                                    web.StreamResponse(headers={"Content-Type": "text/plain"}))
        finally:
            kresp.close()

    # -- nodes/NAME/proxy/PATH ------------------------------------------------

    async def node(self, request: web.Request, name: str, path: str) -> web.StreamResponse:
        """The request passed to the node's kubelet as it came (method,
        query, body, content type) and its answer passed back as it comes
        (status, content type, body), as upstream's node proxy does: what
        `kubectl get --raw /api/v1/nodes/N/proxy/stats/summary` and
        monitoring agents use. NAME may carry a port (``node:10250``)."""
        node_name, _, port = name.partition(":")
        base, sim = await self._kubelet(node_name)
        if port:
            base = f"{base.rsplit(':', 1)[0]}:{port}"
        url = f"{base}/{path}"
        if request.query_string:
            url += f"?{request.query_string}"
        if sim:
            raise _unreachable_service(_sim_error(node_name))
        session = await self._client()
        if upgrade(request) == "websocket":
            try:
                return await relay_websocket(request, session, url, {})
            except aiohttp.WSServerHandshakeError as e:
                return web.Response(status=e.status, text=e.message)
            except (aiohttp.ClientError, OSError, asyncio.TimeoutError) as e:
                raise _unreachable_service(_dial_error(base, e)) from None
        headers = {k: v for k in ("Accept", "Content-Type") if (v := request.headers.get(k))}
        body = await request.read() if request.can_read_body else None
        try:
            kresp = await session.request(request.method, url, data=body, headers=headers,
                                          allow_redirects=False)
        except (aiohttp.ClientError, OSError, asyncio.TimeoutError) as e:
            raise _unreachable_service(_dial_error(base, e)) from None
        try:
            return await _pass_back(request, kresp, web.StreamResponse(
                status=kresp.status, headers={k: v for k in ("Content-Type", "Content-Encoding")
                                              if (v := kresp.headers.get(k))}))
        finally:
            kresp.close()

    # -- exec and attach -----------------------------------------------------

    async def stream(self, request: web.Request, ns: str, name: str,
                     kind: str) -> web.StreamResponse:
        q = request.query
        pod = await self._pod(ns, name)
        container = _container(pod, q.get("container", ""))
        node = _node_name(pod, name)
        params: list[tuple[str, str]] = [(k, "1") for k in ("stdin", "stdout", "stderr", "tty")
                                         if _flag(q, k)]
        if kind == "exec":
            params.extend(("command", c) for c in q.getall("command", []))
        base, sim = await self._kubelet(node)
        upgrade = request.headers.get("Upgrade", "").lower()
        if upgrade != "websocket":
            if upgrade:
                raise status.bad_request(
                    f"pinnace serves pods/{kind} over WebSocket only ({', '.join(PROTOCOLS)}); "
                    f"this client asked to upgrade to {request.headers.get('Upgrade')}")
            raise status.bad_request("Upgrade request required")
        url = f"{base}/{kind}/{ns}/{name}/{container}?{urlencode(params)}"
        ws = web.WebSocketResponse(protocols=PROTOCOLS, max_msg_size=0)
        await ws.prepare(request)
        protocol = ws.ws_protocol or ""
        try:
            if sim:
                await _write_failure(ws, protocol, f"error dialing backend: {_sim_error(node)}")
                return ws
            session = await self._client()
            try:
                kws = await session.ws_connect(url, protocols=[protocol] if protocol else (),
                                               max_msg_size=0, autoclose=False)
            except aiohttp.WSServerHandshakeError as e:
                phrase = HTTPStatus(e.status).phrase if e.status in _STATUSES else ""
                await _write_failure(ws, protocol, f"unable to upgrade connection to the "
                                                   f"kubelet: {e.status} {phrase}".rstrip())
                return ws
            except (aiohttp.ClientError, OSError, asyncio.TimeoutError) as e:
                await _write_failure(ws, protocol,
                                     f"error dialing backend: {_dial_error(base, e)}")
                return ws
            try:
                await _relay(ws, kws)
            finally:
                await kws.close()
        except Exception:  # the response is a WebSocket now: no Status can follow
            log.exception("pods/%s %s/%s failed", kind, ns, name)
        finally:
            await ws.close()
        return ws

    # -- port-forward ------------------------------------------------------------

    async def port_forward(self, request: web.Request, ns: str, name: str) -> web.StreamResponse:
        """kubectl's SPDY-in-WebSocket session, relayed to the kubelet as it
        comes (the kubelet speaks SPDY itself). The kubelet is reached before
        the client's upgrade is answered, so failures are Status answers;
        kubectl then retries with plain SPDY, which gets the same answer
        (and, if the kubelet was reachable after all, a refusal)."""
        pod = await self._pod(ns, name)
        node = _node_name(pod, name)
        base, sim = await self._kubelet(node)
        upgrade = request.headers.get("Upgrade", "").lower()
        if not upgrade:
            raise status.bad_request("Upgrade request required")
        offered = [p.strip() for p in request.headers.get("Sec-WebSocket-Protocol", "").split(",")]
        tunneled = [p for p in offered if p.startswith(TUNNEL_PREFIX) and p.endswith(".k8s.io")]
        if upgrade == "websocket" and not tunneled:
            raise status.bad_request("unable to upgrade: no tunneling spdy protocols provided")
        url = f"{base}/portForward/{ns}/{name}"
        if sim:
            raise _unreachable(f"error dialing backend: {_sim_error(node)}")
        session = await self._client()
        try:
            kws = await session.ws_connect(url, protocols=tunneled or [PORT_FORWARD_PROTOCOL],
                                           max_msg_size=0, autoclose=False)
        except aiohttp.WSServerHandshakeError as e:
            raise await self._refusal(session, url, e.status, name) from None
        except (aiohttp.ClientError, OSError, asyncio.TimeoutError) as e:
            raise _unreachable(f"error dialing backend: {_dial_error(base, e)}") from None
        try:
            if upgrade != "websocket":
                raise status.bad_request(
                    f"pinnace serves pods/portforward over WebSocket only "
                    f"({PORT_FORWARD_PROTOCOL}); this client asked to upgrade to "
                    f"{request.headers.get('Upgrade')}")
            ws = web.WebSocketResponse(protocols=[kws.protocol or PORT_FORWARD_PROTOCOL],
                                       max_msg_size=0)
            await ws.prepare(request)
            try:
                await _relay(ws, kws)
            except Exception:  # the response is a WebSocket now: no Status can follow
                log.exception("pods/portforward %s/%s failed", ns, name)
            finally:
                await ws.close()
            return ws
        finally:
            await kws.close()

    async def _refusal(self, session: aiohttp.ClientSession, url: str, code: int,
                       name: str) -> APIError:
        """The kubelet refused the upgrade: ask again without one to read why."""
        body = ""
        with contextlib.suppress(aiohttp.ClientError, OSError, asyncio.TimeoutError):
            async with session.get(url) as resp:
                if resp.status == code:
                    body = (await resp.text()).strip()
        if not body:
            phrase = HTTPStatus(code).phrase if code in _STATUSES else ""
            body = f"unable to upgrade connection to the kubelet: {code} {phrase}".rstrip()
        return _kubelet_error(code, body, name)

    # -- helpers ---------------------------------------------------------------

    async def _pod(self, ns: str, name: str) -> dict[str, Any]:
        pods = self.table.lookup("", "v1", "pods")
        assert pods is not None
        return await self.registry.get(pods, ns, name)

    async def _kubelet(self, node_name: str) -> tuple[str, bool]:
        """The kubelet's base URL, and whether the node is simulated."""
        nodes = self.table.lookup("", "v1", "nodes")
        assert nodes is not None
        node = await self.registry.get(nodes, None, node_name)
        st = node.get("status") or {}
        addresses = st.get("addresses") or []
        host = ""
        for kind in ADDRESS_TYPES:
            host = next((a.get("address", "") for a in addresses
                         if a.get("type") == kind and a.get("address")), "")
            if host:
                break
        if not host:
            raise _unreachable(f"no preferred addresses found; known addresses: "
                               f"{json.dumps(addresses)}")
        port = ((st.get("daemonEndpoints") or {}).get("kubeletEndpoint") or {}).get("Port")
        if not isinstance(port, int) or port <= 0:
            port = DEFAULT_KUBELET_PORT
        return f"https://{f'[{host}]' if ':' in host else host}:{port}", is_simulated(node)

    async def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            cert, key = await asyncio.to_thread(ensure_kubelet_client_cert, self.pki)
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE  # kubelets serve self-signed certificates
            ctx.load_cert_chain(cert, key)
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(ssl=ctx, limit=0),
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=CONNECT_TIMEOUT,
                                              connect=CONNECT_TIMEOUT),
                auto_decompress=False)
        return self._session


def is_simulated(node: dict[str, Any]) -> bool:
    """A `pinnace sim` node: it runs no kubelet, and its pods' addresses exist nowhere."""
    info = (node.get("status") or {}).get("nodeInfo") or {}
    return str(info.get("containerRuntimeVersion", "")).startswith(SIM_RUNTIME_PREFIX)


def _flag(q: Any, name: str) -> bool:
    v = q.get(name)
    if v is None or v == "":
        return False
    if v in _TRUE:
        return True
    if v in _FALSE:
        return False
    raise status.bad_request(f'{name}: invalid value "{v}": strconv.ParseBool: parsing '
                             f'"{v}": invalid syntax')


def _int(q: Any, name: str) -> int | None:
    v = q.get(name)
    if v is None or v == "":
        return None
    try:
        return int(v)
    except ValueError:
        raise status.bad_request(f'{name}: invalid value "{v}": strconv.ParseInt: parsing '
                                 f'"{v}": invalid syntax') from None


def _log_params(q: Any, name: str) -> list[tuple[str, str]]:
    """The kubelet's query for a PodLogOptions query, validated as upstream's
    ValidatePodLogOptions does."""
    tail, limit, since_s = _int(q, "tailLines"), _int(q, "limitBytes"), _int(q, "sinceSeconds")
    since_t = q.get("sinceTime") or None
    _flag(q, "insecureSkipTLSVerifyBackend")  # valid or refused; kubelets are not verified
    errors: list[field.FieldError] = []
    if tail is not None and tail < 0:
        errors.append(field.invalid("tailLines", tail, "must be greater than or equal to 0"))
    if limit is not None and limit < 1:
        errors.append(field.invalid("limitBytes", limit, "must be greater than 0"))
    if since_s is not None and since_t is not None:
        errors.append(field.forbidden("", "at most one of `sinceTime` or `sinceSeconds` may be "
                                          "specified"))
    elif since_s is not None and since_s < 1:
        errors.append(field.invalid("sinceSeconds", since_s, "must be greater than 0"))
    stream = q.get("stream") or None
    if stream is not None and stream not in ("All", "Stdout", "Stderr"):
        errors.append(field.not_supported("stream", stream, ["All", "Stderr", "Stdout"]))
    if stream is not None and stream != "All" and tail is not None:
        errors.append(field.forbidden("", "`tailLines` and specific `stream` are mutually "
                                          "exclusive for now"))
    if errors:
        raise status.invalid("PodLogOptions", "", name, errors)
    params: list[tuple[str, str]] = [(k, "true") for k in ("follow", "previous", "timestamps")
                                     if _flag(q, k)]
    for key, value in (("sinceSeconds", since_s), ("sinceTime", since_t), ("tailLines", tail),
                       ("limitBytes", limit), ("stream", stream)):
        if value is not None:
            params.append((key, str(value)))
    return params


def _container(pod: dict[str, Any], container: str) -> str:
    """The container a request means, as upstream's validateContainer finds it."""
    spec = pod.get("spec") or {}
    name = pod["metadata"]["name"]
    containers = spec.get("containers") or []
    if not container:
        if len(containers) == 1:
            return str(containers[0].get("name", ""))
        if not containers:
            raise status.bad_request(f"a container name must be specified for pod {name}")
        every = [c.get("name", "") for key in ("initContainers", "containers",
                                               "ephemeralContainers")
                 for c in spec.get(key) or []]
        raise status.bad_request(f"a container name must be specified for pod {name}, "
                                 f"choose one of: [{' '.join(every)}]")
    for key in ("initContainers", "containers", "ephemeralContainers"):
        if any(c.get("name") == container for c in spec.get(key) or []):
            return container
    raise status.bad_request(f"container {container} is not valid for pod {name}")


def _node_name(pod: dict[str, Any], name: str) -> str:
    node = (pod.get("spec") or {}).get("nodeName")
    if not node:
        raise status.bad_request(f"pod {name} does not have a host assigned")
    return str(node)


def _unreachable(message: str) -> APIError:
    """Upstream answers an error that is not a Status (the kubelet could not
    be reached) as a 500 of unknown reason; kubectl prints `Error from server: ...`."""
    return APIError(500, "", message)


def _unreachable_service(message: str) -> APIError:
    """A proxied request that could not reach its backend, in the words of
    upstream's proxy transport (a 503 ServiceUnavailable)."""
    return APIError(503, "ServiceUnavailable", f"error trying to reach service: {message}")


def _sim_error(node: str) -> str:
    return f'node "{node}" is simulated (pinnace sim) and runs no kubelet'


def _dial_error(base: str, e: BaseException) -> str:
    hostport = base.removeprefix("https://")
    cause: BaseException = getattr(e, "os_error", None) or e
    if isinstance(e, aiohttp.ClientSSLError):
        return f"remote error: tls: {cause}"
    if isinstance(cause, ConnectionRefusedError):
        what = "connect: connection refused"
    elif isinstance(e, (asyncio.TimeoutError, aiohttp.ServerTimeoutError)) or isinstance(
            cause, TimeoutError):
        what = "i/o timeout"
    elif isinstance(cause, OSError) and cause.strerror:
        what = f"connect: {cause.strerror.lower()}"
    else:
        what = str(cause) or type(cause).__name__
    return f"dial tcp {hostport}: {what}"


def _kubelet_error(code: int, body: str, name: str) -> APIError:
    """A kubelet's refusal, as upstream's GenericHttpResponseChecker words it
    (except that a 404 keeps the kubelet's message, which says what is missing)."""
    details = {"name": name, "kind": "pods/log",
               "causes": [{"reason": "UnexpectedServerResponse", "message": body}]}
    if code == 400:
        return APIError(400, "BadRequest", body)
    if code == 404:
        return APIError(404, "NotFound", body or "the server could not find the requested "
                                                  f"resource ( pods/log {name})", details)
    if code == 403:
        return APIError(403, "Forbidden", body, details)
    if code == 401:
        return APIError(401, "Unauthorized", "the server has asked for the client to provide "
                                             f"credentials ( pods/log {name})", details)
    if code == 500:
        return APIError(500, "InternalError", f"Internal error occurred: {body}",
                        {"causes": [{"message": body}]})
    if code > 500:
        return APIError(code, "InternalError", f'an error on the server ("{body}") has '
                                               "prevented the request from succeeding "
                                               f"( pods/log {name})", details)
    return APIError(code, "", f"the server responded with the status code {code} but did not "
                              f"return more information ( pods/log {name})", details)


async def _pass_back(request: web.Request, kresp: aiohttp.ClientResponse,
                     resp: web.StreamResponse) -> web.StreamResponse:
    """The kubelet's body, as it comes, in ``resp`` (a followed log too)."""
    await resp.prepare(request)
    await _until_gone(request, _copy(kresp, resp))
    with contextlib.suppress(ConnectionError):
        await resp.write_eof()
    return resp


async def _copy(kresp: aiohttp.ClientResponse, resp: web.StreamResponse) -> None:
    async for chunk in kresp.content.iter_any():
        await resp.write(chunk)


async def _until_gone(request: web.Request, work: Any) -> None:
    """Run ``work`` until it ends or the client goes away (a followed log
    that stays quiet would not notice otherwise)."""
    task = asyncio.ensure_future(work)
    try:
        while not task.done():
            await asyncio.wait({task}, timeout=1.0)
            if not task.done() and (request.transport is None or
                                    request.transport.is_closing()):
                task.cancel()
        with contextlib.suppress(asyncio.CancelledError, ConnectionError,
                                 aiohttp.ClientPayloadError):
            await task
    finally:
        task.cancel()


async def _write_failure(ws: web.WebSocketResponse, protocol: str, message: str) -> None:
    """An InternalError Status on the error channel (3), in ``protocol``."""
    st = {"metadata": {}, "status": "Failure", "message": f"Internal error occurred: {message}",
          "reason": "InternalError", "details": {"causes": [{"message": message}]}, "code": 500}
    data = json.dumps(st).encode() if protocol.startswith(("v4.", "v5.")) else \
        f"Internal error occurred: {message}".encode()
    with contextlib.suppress(ConnectionError):
        if "base64" in protocol:
            await ws.send_str("3" + base64.b64encode(data).decode())
        else:
            await ws.send_bytes(b"\x03" + data)


def upgrade(request: web.Request) -> str:
    """The protocol the client asks to upgrade to ("" for none), lower case."""
    if "upgrade" not in request.headers.get("Connection", "").lower():
        return ""
    return request.headers.get("Upgrade", "").strip().lower()


async def relay_websocket(request: web.Request, session: aiohttp.ClientSession, url: Any,
                          headers: Any) -> web.WebSocketResponse:
    """The client's WebSocket relayed to ``url``: the backend's handshake
    first, in a subprotocol the client offered, then the client's accepted
    in the one the backend chose, and messages copied both ways until
    either side ends. Failing to reach the backend raises aiohttp's error
    before the client is answered, for the caller to word."""
    offered = [p.strip() for p in request.headers.get("Sec-WebSocket-Protocol", "").split(",")
               if p.strip()]
    backend = await session.ws_connect(url, protocols=offered, headers=headers, max_msg_size=0,
                                       autoclose=False)
    try:
        ws = web.WebSocketResponse(protocols=[backend.protocol] if backend.protocol else (),
                                   max_msg_size=0)
        await ws.prepare(request)
        try:
            await _relay(ws, backend)
        except Exception:  # the response is a WebSocket now: no Status can follow
            log.exception("WebSocket to %s failed", url)
        finally:
            await ws.close()
        return ws
    finally:
        await backend.close()


async def _relay(client: web.WebSocketResponse, kubelet: aiohttp.ClientWebSocketResponse) -> None:
    """Copy messages both ways until either side ends."""

    async def up() -> None:
        async for msg in client:
            if msg.type == WSMsgType.BINARY:
                await kubelet.send_bytes(msg.data)
            elif msg.type == WSMsgType.TEXT:
                await kubelet.send_str(msg.data)

    async def down() -> None:
        async for msg in kubelet:
            if msg.type == WSMsgType.BINARY:
                await client.send_bytes(msg.data)
            elif msg.type == WSMsgType.TEXT:
                await client.send_str(msg.data)
            elif msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED):
                break

    ups, downs = asyncio.create_task(up()), asyncio.create_task(down())
    try:
        done, _ = await asyncio.wait({ups, downs}, return_when=asyncio.FIRST_COMPLETED)
        if downs in done:
            await client.close()  # the kubelet is done: so is the client
        else:
            await kubelet.close()  # the client went away: end the command
    finally:
        for t in (ups, downs):
            t.cancel()
        await asyncio.gather(ups, downs, return_exceptions=True)


__all__ = ["NodeProxy", "ensure_kubelet_client_cert", "is_simulated", "relay_websocket",
           "upgrade"]
