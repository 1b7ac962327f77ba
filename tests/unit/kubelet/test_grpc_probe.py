"""The grpc probe: grpc.health.v1.Health/Check over plaintext HTTP/2 against
a small h2 server on loopback, with the kubelet's messages."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import h2.config
import h2.connection
import h2.events
import pytest

from pinnace.kubelet import grpcprobe, probes
from pinnace.kubelet.grpcprobe import _decode_health_check_response, _encode_health_check_request, _go_duration

pytestmark = pytest.mark.timeout(30)

HEALTH_CHECK = "/grpc.health.v1.Health/Check"
# service name -> HealthCheckResponse.status (an unknown number included)
STATUSES = {"": 1, "up": 1, "down": 2, "unknown": 0, "gone": 3, "future": 7}


# --- the server -------------------------------------------------------------

def _varint(data: bytes, i: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        b = data[i]
        i += 1
        value |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return value, i


def parse_request(body: bytes) -> str:
    """The service of a framed HealthCheckRequest (the test's own decoder)."""
    assert body[0] == 0, "compressed request"
    size = int.from_bytes(body[1:5], "big")
    msg = body[5:5 + size]
    assert len(msg) == size and len(body) == 5 + size
    service, i = "", 0
    while i < len(msg):
        key, i = _varint(msg, i)
        assert key == 0x0A, f"unexpected field key {key}"
        n, i = _varint(msg, i)
        service = msg[i:i + n].decode()
        i += n
    return service


def frame_response(status: int, extra: bytes = b"") -> bytes:
    msg = (b"\x08" + bytes([status]) if status else b"") + extra
    return b"\x00" + len(msg).to_bytes(4, "big") + msg


class Server:
    """An h2c server. mode: "health" (Health/Check answered from STATUSES,
    other paths UNIMPLEMENTED), "nohealth" (everything UNIMPLEMENTED, as a
    gRPC server without the health service), "silent" (accepts, never says
    a word), "mute" (HTTP/2 settings, but no answer to calls), "http404"
    (a plain HTTP/2 web server)."""

    def __init__(self, mode: str):
        self.mode = mode
        self.requests: list[dict[str, Any]] = []
        self.writers: list[asyncio.StreamWriter] = []
        self.handlers: list[asyncio.Task[Any]] = []
        self.server: asyncio.AbstractServer | None = None
        self.port = 0

    async def start(self) -> None:
        self.server = await asyncio.start_server(self.handle, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        assert self.server
        self.server.close()
        for w in self.writers:
            w.close()
        await asyncio.wait_for(asyncio.gather(*self.handlers, return_exceptions=True), 5)
        await self.server.wait_closed()

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.writers.append(writer)
        task = asyncio.current_task()
        assert task
        self.handlers.append(task)
        if self.mode == "silent":
            await reader.read()          # until the client hangs up
            writer.close()
            return
        conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False, header_encoding="utf-8"))
        conn.initiate_connection()
        writer.write(conn.data_to_send())
        headers: dict[int, dict[str, str]] = {}
        bodies: dict[int, bytes] = {}
        try:
            while data := await reader.read(65536):
                for ev in conn.receive_data(data):
                    if isinstance(ev, h2.events.RequestReceived):
                        headers[ev.stream_id] = dict(ev.headers)  # type: ignore[arg-type]
                        bodies[ev.stream_id] = b""
                    elif isinstance(ev, h2.events.DataReceived):
                        bodies[ev.stream_id] += ev.data
                        conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
                    elif isinstance(ev, h2.events.StreamEnded):
                        self.requests.append({"headers": headers[ev.stream_id], "body": bodies[ev.stream_id]})
                        if self.mode != "mute":
                            self.respond(conn, ev.stream_id, headers[ev.stream_id], bodies[ev.stream_id])
                writer.write(conn.data_to_send())
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()

    def respond(self, conn: h2.connection.H2Connection, sid: int, req: dict[str, str], body: bytes) -> None:
        if self.mode == "http404":
            conn.send_headers(sid, [(":status", "404"), ("content-type", "text/plain")])
            conn.send_data(sid, b"404 page not found\n", end_stream=True)
            return
        if self.mode == "nohealth" or req[":path"] != HEALTH_CHECK:
            service = req[":path"].lstrip("/").rsplit("/", 1)[0]
            conn.send_headers(sid, [(":status", "200"), ("content-type", "application/grpc"),
                                    ("grpc-status", "12"), ("grpc-message", f"unknown service {service}")],
                              end_stream=True)
            return
        service = parse_request(body)
        conn.send_headers(sid, [(":status", "200"), ("content-type", "application/grpc")])
        if service == "broken":
            conn.send_headers(sid, [("grpc-status", "14"), ("grpc-message", "backend%20is%20gone%3A 50%25")],
                              end_stream=True)
            return
        if service == "reset":
            conn.reset_stream(sid, error_code=8)       # CANCEL
            return
        if service not in STATUSES:
            conn.send_headers(sid, [("grpc-status", "5"), ("grpc-message", "unknown service")], end_stream=True)
            return
        # an unknown field (15, string) before the status, to be skipped
        conn.send_data(sid, frame_response(STATUSES[service], b"\x7a\x02hi"))
        conn.send_headers(sid, [("grpc-status", "0")], end_stream=True)


@pytest.fixture
async def serve() -> AsyncIterator[Callable[[str], Awaitable[Server]]]:
    servers: list[Server] = []

    async def start(mode: str = "health") -> Server:
        s = Server(mode)
        await s.start()
        servers.append(s)
        return s

    yield start
    for s in servers:
        await s.stop()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def probe(port: int, service: str | None = None, timeout: float = 2.0) -> probes.Result:
    spec: dict[str, Any] = {"port": port}
    if service is not None:
        spec["service"] = service
    return await probes.run_handler({"grpc": spec}, container={}, pod_ip="127.0.0.1",
                                    exec_argv=lambda argv: argv, timeout=timeout)


# --- the probe ---------------------------------------------------------------

async def test_serving_default_service(serve: Any) -> None:
    srv = await serve()
    r = await probe(srv.port)
    assert (r.ok, r.message) == (True, "service healthy")
    [req] = srv.requests
    h = req["headers"]
    assert h[":method"] == "POST" and h[":scheme"] == "http" and h[":path"] == HEALTH_CHECK
    assert h[":authority"] == f"127.0.0.1:{srv.port}"
    assert h["content-type"] == "application/grpc" and h["te"] == "trailers"
    assert h["user-agent"].startswith("kube-probe/")
    timeout = h["grpc-timeout"]
    assert timeout[-1] in "numSMH" and 0 < len(timeout) <= 9
    assert req["body"] == b"\x00\x00\x00\x00\x00"        # an empty HealthCheckRequest
    assert parse_request(req["body"]) == ""


async def test_serving_named_service(serve: Any) -> None:
    srv = await serve()
    r = await probe(srv.port, "up")
    assert r.ok, r.message
    assert parse_request(srv.requests[0]["body"]) == "up"


@pytest.mark.parametrize("service,shown", [("down", "NOT_SERVING"), ("unknown", "UNKNOWN"),
                                           ("gone", "SERVICE_UNKNOWN"), ("future", "7")])
async def test_not_serving(serve: Any, service: str, shown: str) -> None:
    srv = await serve()
    r = await probe(srv.port, service)
    assert not r.ok
    assert r.message == f'service unhealthy (responded with "{shown}")'


async def test_rpc_errors(serve: Any) -> None:
    srv = await serve()
    r = await probe(srv.port, "nope")
    assert (r.ok, r.message) == (False, "error: health rpc probe failed: rpc error: code = NotFound desc = unknown service")
    r = await probe(srv.port, "broken")       # grpc-message is percent-decoded
    assert r.message == "error: health rpc probe failed: rpc error: code = Unavailable desc = backend is gone: 50%"
    r = await probe(srv.port, "reset")
    assert r.message == ("error: health rpc probe failed: rpc error: code = Canceled "
                         "desc = stream terminated by RST_STREAM with error code: CANCEL")


async def test_unimplemented(serve: Any) -> None:
    srv = await serve("nohealth")
    r = await probe(srv.port)
    assert not r.ok
    assert r.message == ("error: this server does not implement the grpc health protocol "
                         "(grpc.health.v1.Health): unknown service grpc.health.v1.Health")


async def test_plain_http2_server(serve: Any) -> None:
    srv = await serve("http404")
    r = await probe(srv.port)
    assert not r.ok
    assert r.message == ("error: this server does not implement the grpc health protocol (grpc.health.v1.Health): "
                         "unexpected HTTP status code received from server: 404 (Not Found); "
                         'transport: received unexpected content-type "text/plain"')


async def test_closed_port_waits_out_the_timeout() -> None:
    port = free_port()
    r = await probe(port, timeout=0.5)
    assert not r.ok
    assert r.message == f'timeout: failed to connect service "127.0.0.1:{port}" within 500ms: context deadline exceeded'


async def test_silent_server_is_a_connect_timeout(serve: Any) -> None:
    srv = await serve("silent")
    r = await probe(srv.port, timeout=0.5)
    assert r.message == (f'timeout: failed to connect service "127.0.0.1:{srv.port}" within 500ms: '
                         "context deadline exceeded")


async def test_unanswered_call_is_an_rpc_timeout(serve: Any) -> None:
    srv = await serve("mute")
    r = await probe(srv.port, "up", timeout=0.5)
    assert (r.ok, r.message) == (False, "timeout: health rpc did not complete within 500ms")
    assert len(srv.requests) == 1


async def test_prober_loop_reports_the_failure(serve: Any) -> None:
    """A readiness probe through the Prober: ready on SERVING, and an
    Unhealthy event with the kubelet's message on NOT_SERVING."""
    srv = await serve()
    changes: list[str] = []
    events: list[tuple[str, str, str, str]] = []
    prober = probes.Prober(changes.append, lambda *e: events.append(e))
    good = {"name": "c", "readinessProbe": {"grpc": {"port": srv.port}, "periodSeconds": 1}}
    bad = {"name": "d", "readinessProbe": {"grpc": {"port": srv.port, "service": "down"}, "periodSeconds": 1}}
    st_good = prober.start("c1", "ns/p", good, "127.0.0.1", lambda a: a, time.time())
    st_bad = prober.start("c2", "ns/p", bad, "127.0.0.1", lambda a: a, time.time())
    try:
        for _ in range(100):
            if st_good.ready and events:
                break
            await asyncio.sleep(0.05)
        assert st_good.ready and not st_bad.ready
        assert ("ns/p", "d", "Unhealthy",
                'Readiness probe failed: service unhealthy (responded with "NOT_SERVING")') in events
    finally:
        prober.stop("c1")
        prober.stop("c2")


# --- helpers -------------------------------------------------------------------

def test_request_encoding() -> None:
    assert _encode_health_check_request("") == b""
    assert _encode_health_check_request("svc") == b"\x0a\x03svc"
    long = "s" * 200
    assert _encode_health_check_request(long) == b"\x0a\xc8\x01" + long.encode()


def test_response_decoding() -> None:
    assert _decode_health_check_response(b"") == 0
    assert _decode_health_check_response(b"\x08\x01") == 1
    assert _decode_health_check_response(b"\x08\x02") == 2
    # unknown fields of every wire type are skipped; the last status wins
    msg = b"\x10\x05" + b"\x19" + b"\0" * 8 + b"\x22\x02ab" + b"\x2d" + b"\0" * 4 + b"\x08\x03\x08\x01"
    assert _decode_health_check_response(msg) == 1
    assert _decode_health_check_response(b"\x08" + b"\xff" * 9 + b"\x01") == -1   # int32 enum
    for bad in (b"\x08", b"\x0a\x05ab", b"\x0b", b"\x00\x01", b"\x08" + b"\x80" * 10 + b"\x01"):
        with pytest.raises(ValueError):
            _decode_health_check_response(bad)


@pytest.mark.parametrize("seconds,text", [(1, "1s"), (10, "10s"), (60, "1m0s"), (90, "1m30s"),
                                          (3600, "1h0m0s"), (0.5, "500ms"), (1.5, "1.5s"), (0, "0s")])
def test_go_duration(seconds: float, text: str) -> None:
    assert _go_duration(seconds) == text


def test_grpc_timeout_header() -> None:
    assert grpcprobe._grpc_timeout(0.5) == "500000u"
    assert grpcprobe._grpc_timeout(1) == "1000000u"
    assert grpcprobe._grpc_timeout(200) == "200000m"
    assert grpcprobe._grpc_timeout(0) == "0n"


async def test_against_grpcio_if_installed() -> None:
    grpc_aio = pytest.importorskip("grpc.aio")
    health = pytest.importorskip("grpc_health.v1.health")
    health_pb2 = pytest.importorskip("grpc_health.v1.health_pb2")
    health_pb2_grpc = pytest.importorskip("grpc_health.v1.health_pb2_grpc")
    server = grpc_aio.server()
    servicer = health.aio.HealthServicer() if hasattr(health, "aio") else health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        for name, st in (("", health_pb2.HealthCheckResponse.SERVING),
                         ("down", health_pb2.HealthCheckResponse.NOT_SERVING)):
            res = servicer.set(name, st)
            if asyncio.iscoroutine(res):
                await res
        assert (await probe(port)).ok
        r = await probe(port, "down")
        assert r.message == 'service unhealthy (responded with "NOT_SERVING")'
        r = await probe(port, "nope")
        assert r.message == "error: health rpc probe failed: rpc error: code = NotFound desc = unknown service"
    finally:
        await server.stop(None)
