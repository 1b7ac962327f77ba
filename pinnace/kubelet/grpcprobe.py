"""The kubelet's gRPC probe: grpc.health.v1.Health/Check over plaintext
HTTP/2 (h2c, prior knowledge), with the h2 library for the framing and the
two tiny protobuf messages encoded by hand (grpcio would be a heavy
dependency for one call). Messages are worded as pkg/probe/grpc words them.
"""

from __future__ import annotations

import asyncio
import gzip
import http
import logging
import random
import urllib.parse
import zlib
from typing import Any

import h2.config
import h2.connection
import h2.events
import h2.exceptions

from pinnace.api.protowire import read_varint, varint

log = logging.getLogger("pinnace.kubelet.probes")

Obj = dict[str, Any]


async def health_check(spec: Obj, pod_ip: str, timeout: float) -> tuple[bool, str]:
    """The kubelet's gRPC probe (pkg/probe/grpc): grpc.health.v1.Health/Check
    for the probe's ``service`` over plaintext HTTP/2 (prior knowledge), the
    dial and the call both within the probe's timeout. Never raises; the
    messages are the kubelet's."""
    service = str(spec.get("service") or "")
    port = int(spec.get("port") or 0)
    addr = _join_host_port(pod_ip, port)
    within = _go_duration(timeout)
    deadline = asyncio.get_running_loop().time() + timeout
    try:
        async with asyncio.timeout_at(deadline):
            client = await _h2_dial(pod_ip, port)
    except TimeoutError:
        # grpc.WithBlock: refused or failed handshakes are retried with
        # backoff until the deadline, so every dial failure ends here.
        return (False, f"timeout: failed to connect service {_go_quote(addr)} within {within}: "
                             "context deadline exceeded")
    try:
        try:
            async with asyncio.timeout_at(deadline):
                status = await client.health_check(service, addr, deadline)
        except TimeoutError:
            raise _RPCError(_DEADLINE_EXCEEDED, "context deadline exceeded") from None
    except _RPCError as e:
        if e.code == _UNIMPLEMENTED:
            return (False, "error: this server does not implement the grpc health protocol "
                                 f"(grpc.health.v1.Health): {e.message}")
        if e.code == _DEADLINE_EXCEEDED:
            return (False, f"timeout: health rpc did not complete within {within}")
        return (False, f"error: health rpc probe failed: {e}")
    finally:
        client.close()
    if status != _SERVING:
        return (False, f"service unhealthy (responded with {_go_quote(_health_status_name(status))})")
    return (True, "service healthy")


# gRPC status codes (google.golang.org/grpc/codes), named as Go prints them.
_GRPC_CODE_NAMES = ("OK", "Canceled", "Unknown", "InvalidArgument", "DeadlineExceeded", "NotFound",
                    "AlreadyExists", "PermissionDenied", "ResourceExhausted", "FailedPrecondition",
                    "Aborted", "OutOfRange", "Unimplemented", "Internal", "Unavailable", "DataLoss",
                    "Unauthenticated")
_UNKNOWN, _DEADLINE_EXCEEDED, _UNIMPLEMENTED, _INTERNAL, _UNAVAILABLE = 2, 4, 12, 13, 14
# grpc.health.v1.HealthCheckResponse.ServingStatus
_HEALTH_STATUS_NAMES = ("UNKNOWN", "SERVING", "NOT_SERVING", "SERVICE_UNKNOWN")
_SERVING = 1
# grpc-go's conversions (internal/transport/http_util.go).
_HTTP_STATUS_TO_GRPC = {400: _INTERNAL, 401: 16, 403: 7, 404: _UNIMPLEMENTED, 429: _UNAVAILABLE,
                        502: _UNAVAILABLE, 503: _UNAVAILABLE, 504: _UNAVAILABLE}
_H2_ERROR_TO_GRPC = {3: 8, 7: _UNAVAILABLE, 8: 1, 11: 8, 12: 7}   # the rest: Internal
_GRPC_MAX_RECV = 4 * 1024 * 1024     # grpc-go's default largest received message
_GRPC_USER_AGENT = "kube-probe/1.37"
_HEALTH_CHECK_PATH = "/grpc.health.v1.Health/Check"


class _RPCError(Exception):
    """A failed call, as a gRPC status."""

    def __init__(self, code: int, message: str):
        super().__init__(code, message)
        self.code, self.message = code, message

    def __str__(self) -> str:
        name = _GRPC_CODE_NAMES[self.code] if 0 <= self.code < len(_GRPC_CODE_NAMES) else f"Code({self.code})"
        return f"rpc error: code = {name} desc = {self.message}"


def _health_status_name(value: int) -> str:
    # protobuf-go prints an enum number it does not know as the number.
    return _HEALTH_STATUS_NAMES[value] if 0 <= value < len(_HEALTH_STATUS_NAMES) else str(value)


def _join_host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _go_quote(s: str) -> str:
    """Go's %q for the plain strings used here (addresses, enum names)."""
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _go_duration(seconds: float) -> str:
    """A time.Duration as Go's String() prints it: 1s, 500ms, 1m30s, 1h0m0s."""
    ns = round(seconds * 1e9)
    if ns == 0:
        return "0s"
    sign, ns = ("-", -ns) if ns < 0 else ("", ns)

    def frac(value: int, scale: int) -> str:
        whole, rest = divmod(value, scale)
        digits = str(rest).rjust(len(str(scale)) - 1, "0").rstrip("0")
        return f"{whole}.{digits}" if digits else str(whole)

    if ns < 1_000:
        return f"{sign}{ns}ns"
    if ns < 1_000_000:
        return f"{sign}{frac(ns, 1_000)}\u00b5s"
    if ns < 1_000_000_000:
        return f"{sign}{frac(ns, 1_000_000)}ms"
    hours, ns = divmod(ns, 3600 * 10**9)
    minutes, ns = divmod(ns, 60 * 10**9)
    secs = frac(ns, 10**9) + "s"
    if hours:
        return f"{sign}{hours}h{minutes}m{secs}"
    if minutes:
        return f"{sign}{minutes}m{secs}"
    return sign + secs


def _grpc_timeout(seconds: float) -> str:
    """The grpc-timeout header for what is left of the deadline: at most 8
    digits and a unit, rounded up, as grpc-go encodes it."""
    ns = max(int(seconds * 1e9), 0)
    if ns == 0:
        return "0n"
    for unit, size in (("n", 1), ("u", 10**3), ("m", 10**6), ("S", 10**9), ("M", 60 * 10**9)):
        value = -(-ns // size)
        if value <= 99_999_999:
            return f"{value}{unit}"
    return f"{-(-ns // (3600 * 10**9))}H"


def _encode_health_check_request(service: str) -> bytes:
    """HealthCheckRequest{service = 1 (string)}; proto3 leaves out ""."""
    if not service:
        return b""
    raw = service.encode()
    return b"\x0a" + varint(len(raw)) + raw


def _decode_health_check_response(data: bytes) -> int:
    """HealthCheckResponse{status = 1 (enum)}: the status, UNKNOWN (0) when
    absent; other fields are skipped. Raises ValueError on bad wire data."""
    try:
        return _health_status(data)
    except IndexError:  # a varint cut short
        raise ValueError("unexpected end of message") from None


def _health_status(data: bytes) -> int:
    status, i = 0, 0
    while i < len(data):
        key, i = read_varint(data, i)
        field_no, wire = key >> 3, key & 7
        if field_no == 0:
            raise ValueError("invalid field number 0")
        if wire == 0:
            value, i = read_varint(data, i)
            if field_no == 1:
                value &= 0xFFFFFFFF                      # an enum is an int32
                status = value - (1 << 32) if value & 0x80000000 else value
        elif wire == 1:
            i += 8
        elif wire == 2:
            size, i = read_varint(data, i)
            i += size
        elif wire == 5:
            i += 4
        else:
            raise ValueError(f"unsupported wire type {wire}")
        if i > len(data):
            raise ValueError("unexpected end of message")
    return status


async def _h2_dial(host: str, port: int) -> _H2Client:
    """Connect and exchange HTTP/2 prefaces (the connection is ready once the
    server's SETTINGS arrive), retrying as grpc-go's dial with its default
    backoff (1s, x1.6, 20% jitter); the caller bounds it with the deadline."""
    backoff = 1.0
    while True:
        try:
            reader, writer = await asyncio.open_connection(host, port)
        except OSError as e:
            log.debug("grpc probe: dial %s:%s: %s", host, port, e)
        else:
            client = _H2Client(reader, writer)
            try:
                await client.handshake()
                return client
            except (OSError, EOFError, h2.exceptions.ProtocolError) as e:
                log.debug("grpc probe: handshake with %s:%s: %s", host, port, e)
                client.close()
            except BaseException:
                client.close()
                raise
        await asyncio.sleep(backoff * random.uniform(0.8, 1.2))
        backoff = min(backoff * 1.6, 120.0)


class _H2Client:
    """One plaintext HTTP/2 connection for one unary gRPC call."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.reader, self.writer = reader, writer
        self.conn = h2.connection.H2Connection(config=h2.config.H2Configuration(
            client_side=True, header_encoding="utf-8"))

    def close(self) -> None:
        self.writer.close()

    async def _flush(self) -> None:
        data = self.conn.data_to_send()
        if data:
            self.writer.write(data)
            await self.writer.drain()

    async def _receive(self) -> list[h2.events.Event]:
        data = await self.reader.read(65536)
        if not data:
            raise EOFError("EOF")
        events = self.conn.receive_data(data)
        await self._flush()      # SETTINGS and PING acks, WINDOW_UPDATEs
        return events

    async def handshake(self) -> None:
        self.conn.initiate_connection()
        await self._flush()
        while True:
            for ev in await self._receive():
                if isinstance(ev, h2.events.RemoteSettingsChanged):
                    return
                if isinstance(ev, h2.events.ConnectionTerminated):
                    raise EOFError("GOAWAY before the server's SETTINGS")

    async def health_check(self, service: str, authority: str, deadline: float) -> int:
        """Health/Check; the response's status, or _RPCError."""
        try:
            return await self._health_check(service, authority, deadline)
        except (OSError, EOFError) as e:
            raise _RPCError(_UNAVAILABLE, f"error reading from server: {e}") from None
        except h2.exceptions.ProtocolError as e:
            raise _RPCError(_INTERNAL, f"transport: {e or type(e).__name__}") from None

    async def _health_check(self, service: str, authority: str, deadline: float) -> int:
        left = deadline - asyncio.get_running_loop().time()
        sid = self.conn.get_next_available_stream_id()
        self.conn.send_headers(sid, [
            (":method", "POST"), (":scheme", "http"), (":path", _HEALTH_CHECK_PATH),
            (":authority", authority), ("content-type", "application/grpc"),
            ("user-agent", _GRPC_USER_AGENT), ("te", "trailers"), ("grpc-timeout", _grpc_timeout(left)),
        ])
        msg = _encode_health_check_request(service)
        self.conn.send_data(sid, b"\x00" + len(msg).to_bytes(4, "big") + msg, end_stream=True)
        await self._flush()

        headers: dict[str, str] | None = None
        trailers: dict[str, str] | None = None
        body = bytearray()
        while True:
            for ev in await self._receive():
                if getattr(ev, "stream_id", sid) != sid:
                    continue
                if isinstance(ev, h2.events.ResponseReceived):
                    headers = _header_dict(ev.headers)
                    _check_response_headers(headers)
                    if ev.stream_ended:                 # trailers-only response
                        trailers = headers
                elif isinstance(ev, h2.events.TrailersReceived):
                    trailers = _header_dict(ev.headers)
                elif isinstance(ev, h2.events.DataReceived):
                    self.conn.acknowledge_received_data(ev.flow_controlled_length, sid)
                    body += ev.data
                    if len(body) > _GRPC_MAX_RECV + 5:
                        raise _RPCError(8, f"grpc: received message larger than max "
                                           f"({len(body) - 5} vs. {_GRPC_MAX_RECV})")
                elif isinstance(ev, h2.events.StreamReset):
                    code = int(ev.error_code)
                    name = getattr(ev.error_code, "name", str(code))
                    raise _RPCError(_H2_ERROR_TO_GRPC.get(code, _INTERNAL),
                                    f"stream terminated by RST_STREAM with error code: {name}")
                elif isinstance(ev, h2.events.ConnectionTerminated):
                    if ev.last_stream_id is None or ev.last_stream_id < sid:
                        raise _RPCError(_UNAVAILABLE, "the connection is draining due to the server "
                                                      "sending GOAWAY")
                    raise _RPCError(_UNAVAILABLE, "error reading from server: EOF")
                elif isinstance(ev, h2.events.StreamEnded):
                    if trailers is None:
                        raise _RPCError(_INTERNAL, "server closed the stream without sending trailers")
                    await self._flush()
                    return _finish_call(headers or {}, trailers, bytes(body))
            await self._flush()


def _header_dict(fields: Any) -> dict[str, str]:
    return {(k.decode() if isinstance(k, bytes) else k): (v.decode(errors="replace") if isinstance(v, bytes) else v)
            for k, v in fields or []}


def _check_response_headers(headers: dict[str, str]) -> None:
    """A non-gRPC answer fails the call, its code from the HTTP status."""
    status = headers.get(":status", "")
    ctype = headers.get("content-type", "")
    errs = []
    if status != "200":
        if status.isdigit():
            try:
                text = http.HTTPStatus(int(status)).phrase
            except ValueError:
                text = ""
            errs.append(f"unexpected HTTP status code received from server: {int(status)} ({text})")
        else:
            errs.append(f"malformed http-status: {status!r}" if status else "malformed header: missing HTTP status")
    grpc_ct = ctype == "application/grpc" or ctype.startswith(("application/grpc+", "application/grpc;"))
    if not grpc_ct:
        errs.append(f"transport: received unexpected content-type {_go_quote(ctype)}" if ctype
                    else "malformed header: missing HTTP content-type")
    if errs:
        code = _HTTP_STATUS_TO_GRPC.get(int(status), _UNKNOWN) if status.isdigit() else _INTERNAL
        raise _RPCError(code, "; ".join(errs))


def _finish_call(headers: dict[str, str], trailers: dict[str, str], body: bytes) -> int:
    raw_status = trailers.get("grpc-status")
    if raw_status is None:
        code = _UNKNOWN
    else:
        try:
            code = int(raw_status)
        except ValueError:
            raise _RPCError(_INTERNAL, f"transport: malformed grpc-status: {raw_status!r}") from None
    if code != 0:
        raise _RPCError(code, urllib.parse.unquote(trailers.get("grpc-message", ""), errors="replace"))
    messages = []
    i = 0
    while i < len(body):
        if len(body) - i < 5:
            raise _RPCError(_INTERNAL, "grpc: failed to receive the message: unexpected EOF")
        flag, size = body[i], int.from_bytes(body[i + 1:i + 5], "big")
        payload = body[i + 5:i + 5 + size]
        if len(payload) < size:
            raise _RPCError(_INTERNAL, "grpc: failed to receive the message: unexpected EOF")
        if flag & 1:
            encoding = headers.get("grpc-encoding", "identity")
            if encoding == "identity":
                raise _RPCError(_INTERNAL, "grpc: compressed flag set with identity or empty encoding")
            if encoding != "gzip":
                raise _RPCError(_UNIMPLEMENTED, f"grpc: Decompressor is not installed for grpc-encoding "
                                                f"{_go_quote(encoding)}")
            try:
                payload = gzip.decompress(payload)
            except (OSError, EOFError, zlib.error) as e:
                raise _RPCError(_INTERNAL, f"grpc: failed to decompress the received message: {e}") from None
        messages.append(payload)
        i += 5 + size
    if not messages:
        raise _RPCError(_INTERNAL, "cardinality violation: received no response message from "
                                   "non-streaming RPC")
    if len(messages) > 1:
        raise _RPCError(_INTERNAL, "cardinality violation: expected <EOF> for non server-streaming "
                                   "RPCs, but received another message")
    try:
        return _decode_health_check_response(messages[0])
    except ValueError as e:
        raise _RPCError(_INTERNAL, f"grpc: failed to unmarshal the received message: {e}") from None
