"""The TLS and HTTP limits of a pinnace server (API server, kubelet API):
what a Go server has by default, since clients and scanners compare us with
kube-apiserver and the kubelet.

TLS 1.2 and 1.3 only; for TLS 1.2 only Go's default suites (ECDHE with
AES-GCM, ChaCha20-Poly1305, or AES-CBC with SHA-1; none of OpenSSL's
SHA-256/384 CBC suites); no renegotiation. A client certificate is asked
for but optional: a request without one is authenticated otherwise (or
gets a 401 it can read), while one the CA did not sign fails the handshake.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
import ssl
from pathlib import Path
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import BadHttpMethod, LineTooLong
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest

log = logging.getLogger(__name__)

# Go's http.Server reads up to 1 MiB of request line and headers
# (DefaultMaxHeaderBytes): long bearer tokens and impersonation headers
# fit, as they do with kube-apiserver. aiohttp's own limit is 8 KiB a line.
HTTP_LIMITS: dict[str, Any] = {"max_line_size": 1 << 20, "max_field_size": 1 << 20,
                               "max_headers": 1024}

# crypto/tls's defaults for TLS 1.2, in its order, by their OpenSSL names.
GO_TLS12_CIPHERS = ":".join((
    "ECDHE-ECDSA-AES128-GCM-SHA256", "ECDHE-RSA-AES128-GCM-SHA256",
    "ECDHE-ECDSA-AES256-GCM-SHA384", "ECDHE-RSA-AES256-GCM-SHA384",
    "ECDHE-ECDSA-CHACHA20-POLY1305", "ECDHE-RSA-CHACHA20-POLY1305",
    "ECDHE-ECDSA-AES128-SHA", "ECDHE-RSA-AES128-SHA",
    "ECDHE-ECDSA-AES256-SHA", "ECDHE-RSA-AES256-SHA"))


def server_context(cert: str | Path, key: str | Path, client_ca: str | Path) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_ciphers(GO_TLS12_CIPHERS)
    ctx.options |= ssl.OP_NO_RENEGOTIATION | ssl.OP_CIPHER_SERVER_PREFERENCE
    ctx.load_cert_chain(str(cert), str(key))
    ctx.load_verify_locations(cafile=str(client_ca))
    ctx.verify_mode = ssl.CERT_OPTIONAL
    ctx.set_alpn_protocols(["http/1.1"])
    return ctx


# -- HTTP framing as Go's net/http answers it ----------------------------------

# What net/http writes when a TLS port's first bytes are plain HTTP.
PLAIN_HTTP_ANSWER = (b"HTTP/1.0 400 Bad Request\r\n\r\n"
                     b"Client sent an HTTP request to an HTTPS server.\n")
HANDSHAKE_TIMEOUT = 60.0  # asyncio's default for a TLS handshake


class _GoFramingHandler(RequestHandler):
    """aiohttp's request handler, answering what its parser refuses as Go's
    server does: a request line or header past the limit is a 431, a method
    the parser does not know a 405 Status (Go reads any token as a method,
    and kube-apiserver refuses it with a Status)."""

    __slots__ = ()  # so a handler aiohttp made can take this class

    def handle_error(self, request: BaseRequest, status: int = 500,
                     exc: BaseException | None = None,
                     message: str | None = None) -> web.StreamResponse:
        if isinstance(exc, LineTooLong):
            resp = web.Response(status=431, text="431 Request Header Fields Too Large")
        elif isinstance(exc, BadHttpMethod):
            resp = web.Response(status=405, content_type="application/json", text=json.dumps({
                "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                "message": "the server does not allow this method on the requested resource",
                "reason": "MethodNotAllowed", "code": 405, "details": {}}, separators=(",", ":")))
        else:
            return super().handle_error(request, status, exc, message)
        log.debug("refused a request from %s: %s", request.remote, exc)
        resp.force_close()
        return resp


class _Listener:
    """The listening sockets of a TLSSite and their accept loops, in the shape
    of the asyncio.Server aiohttp's site and runner expect (close, sockets)."""

    def __init__(self, sockets: list[socket.socket], accept: Any) -> None:
        self.sockets = sockets
        self._tasks = [asyncio.ensure_future(accept(s)) for s in sockets]

    def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for sock in self.sockets:
            sock.close()

    async def wait_closed(self) -> None:
        await asyncio.gather(*self._tasks, return_exceptions=True)


class TLSSite(web.TCPSite):
    """An HTTPS site that first peeks at each connection: a client speaking
    plain HTTP gets net/http's 400 answer instead of a failed handshake and a
    closed connection (curl and browsers show the reason). Everything else
    goes to TLS as with TCPSite; connections are handled by a request
    handler answering framing errors as Go does."""

    __slots__ = ("_peeking",)

    def __init__(self, runner: web.BaseRunner, host: str, port: int, *,
                 ssl_context: ssl.SSLContext, backlog: int = 1024,
                 reuse_port: bool = False) -> None:
        super().__init__(runner, host, port, ssl_context=ssl_context, backlog=backlog,
                         reuse_address=True, reuse_port=reuse_port)
        self._peeking: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        await web.BaseSite.start(self)  # registers the site with the runner
        sockets = []
        for family, type_, proto, _, addr in socket.getaddrinfo(
                self._host, self._port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE):
            sock = socket.socket(family, type_, proto)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if self._reuse_port:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(addr)
            sock.listen(self._backlog)
            sock.setblocking(False)
            sockets.append(sock)
        self._server = _Listener(sockets, self._accept)  # type: ignore[assignment]
        self._bound_port = sockets[0].getsockname()[1]

    async def stop(self) -> None:
        for task in self._peeking:
            task.cancel()
        await super().stop()

    async def _accept(self, listening: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                conn, _ = await loop.sock_accept(listening)
            except OSError as e:  # EMFILE and the like: wait, as asyncio's server does
                log.warning("accepting a connection: %s", e)
                await asyncio.sleep(1.0)
                continue
            task = asyncio.create_task(self._serve(conn))
            self._peeking.add(task)
            task.add_done_callback(self._peeking.discard)

    async def _serve(self, conn: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(HANDSHAKE_TIMEOUT):
                first = await _peek(loop, conn)
            if first and first[0] != 0x16 and first.split(b" ", 1)[0].isalpha():
                # Not a TLS record but letters and a space: an HTTP method.
                await loop.sock_sendall(conn, PLAIN_HTTP_ANSWER)
                _drain_and_close(conn)
                return
            server = self._runner.server
            assert server is not None
            await loop.connect_accepted_socket(
                lambda: _go_framing(server()), conn, ssl=self._ssl_context,
                ssl_handshake_timeout=HANDSHAKE_TIMEOUT)
        except (OSError, ssl.SSLError, TimeoutError) as e:
            log.debug("a connection ended before its handshake: %s", e)
            conn.close()
        except BaseException:
            conn.close()
            raise


def _drain_and_close(conn: socket.socket) -> None:
    """Close after reading what the client sent: closing with unread bytes
    would reset the connection, and the client might lose our answer."""
    conn.shutdown(socket.SHUT_WR)
    with contextlib.suppress(OSError):
        while conn.recv(65536):
            pass
    conn.close()


def _go_framing(handler: RequestHandler) -> RequestHandler:
    handler.__class__ = _GoFramingHandler
    return handler


async def _peek(loop: asyncio.AbstractEventLoop, conn: socket.socket) -> bytes:
    """The first bytes the client sent, left in the socket for TLS to read."""
    readable: asyncio.Future[None] = loop.create_future()

    def ready() -> None:
        if not readable.done():
            readable.set_result(None)

    loop.add_reader(conn.fileno(), ready)
    try:
        await readable
    finally:
        loop.remove_reader(conn.fileno())
    return conn.recv(8, socket.MSG_PEEK)
