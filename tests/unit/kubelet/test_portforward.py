"""Port-forward's pieces: the SPDY/3 codec, a whole SPDY session against a
fake WebSocket, and connecting inside a network namespace (root only)."""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
import subprocess
import sys
from typing import Any

import pytest
from aiohttp import WSMsgType

from pinnace.kubelet import portforward, spdy

# sha256 of the 1423-byte dictionary as found in kubectl 1.37's binary
# (moby/spdystream's headerDictionary).
DICTIONARY_SHA256 = "51d27341373f923f3cd88e1eb7162aeaa3723d7585ff2399201dc06498407f02"


def test_dictionary() -> None:
    assert len(spdy.DICTIONARY) == 1423
    assert hashlib.sha256(spdy.DICTIONARY).hexdigest() == DICTIONARY_SHA256


def test_codec_reads_frames_cut_anywhere() -> None:
    client, server = spdy.Codec(), spdy.Codec()
    wire = (client.syn_stream(1, {"streamType": "error", "port": "80", "requestID": "0"})
            + spdy.data(1, b"", fin=True)
            + client.syn_stream(3, {"streamType": "data", "port": "80", "requestID": "0"})
            + spdy.data(3, b"GET / HTTP/1.0\r\n\r\n") + spdy.ping(1) + spdy.rst_stream(3, 5))
    frames = []
    for i in range(len(wire)):  # one byte at a time, as Go's framer may write fields
        frames += server.feed(wire[i:i + 1])
    kinds = [(f.kind, f.stream_id) for f in frames]
    assert kinds == [(spdy.SYN_STREAM, 1), (spdy.DATA, 1), (spdy.SYN_STREAM, 3),
                     (spdy.DATA, 3), (spdy.PING, 0), (spdy.RST_STREAM, 3)]
    assert frames[0].headers == {"streamtype": ["error"], "port": ["80"], "requestid": ["0"]}
    assert frames[2].header("streamType") == "data"  # one zlib stream across frames
    assert frames[1].fin and not frames[3].fin
    assert frames[3].data == b"GET / HTTP/1.0\r\n\r\n"
    assert frames[4].ping_id == 1 and frames[5].status == spdy.CANCEL
    replies = client.feed(server.syn_reply(1) + server.syn_reply(3))
    assert [(f.kind, f.stream_id, f.headers) for f in replies] == \
        [(spdy.SYN_REPLY, 1, {}), (spdy.SYN_REPLY, 3, {})]


def test_codec_refuses_other_versions() -> None:
    with pytest.raises(spdy.ProtocolError):
        spdy.Codec().feed(b"\x80\x02\x00\x06\x00\x00\x00\x04\x00\x00\x00\x01")


class FakeWS:
    """The kubelet's side of a WebSocket: the test puts client bytes in, and
    reads frames (decoded with a client codec) out."""

    def __init__(self) -> None:
        self.inbox: asyncio.Queue[bytes | None] = asyncio.Queue()
        self.sent: asyncio.Queue[spdy.Frame] = asyncio.Queue()
        self.client = spdy.Codec()
        self.closed = False

    def __aiter__(self) -> FakeWS:
        return self

    async def __anext__(self) -> Any:
        data = await self.inbox.get()
        if data is None:
            self.closed = True
            raise StopAsyncIteration
        return type("Msg", (), {"type": WSMsgType.BINARY, "data": data})()

    async def send_bytes(self, data: bytes) -> None:
        for f in self.client.feed(data):
            await self.sent.put(f)

    async def next(self) -> spdy.Frame:
        return await asyncio.wait_for(self.sent.get(), 10)


async def _echo_server() -> tuple[asyncio.Server, int]:
    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"you said: " + await reader.read())  # until kubectl's FIN
        await writer.drain()
        writer.close()

    srv = await asyncio.start_server(echo, "127.0.0.1", 0)
    return srv, srv.sockets[0].getsockname()[1]


def test_tunnel_session() -> None:
    async def main() -> None:
        srv, port = await _echo_server()
        ws = FakeWS()
        fake: Any = ws
        tunnel = portforward.Tunnel(fake, lambda p: portforward.connect("", p, "host"), "p")
        run = asyncio.create_task(tunnel.run())
        c = ws.client
        headers = {"streamType": "error", "port": str(port), "requestID": "0"}
        await ws.inbox.put(c.syn_stream(1, headers) + spdy.data(1, b"", fin=True))
        assert (await ws.next()).kind == spdy.SYN_REPLY
        # Data sent at once, before the kubelet has connected, is kept.
        await ws.inbox.put(c.syn_stream(3, {**headers, "streamType": "data"})
                           + spdy.data(3, b"hello") + spdy.data(3, b"", fin=True))
        assert (await ws.next()).kind == spdy.SYN_REPLY
        await ws.inbox.put(spdy.ping(7))
        got, fins = b"", list[int]()
        while len(fins) < 2:
            f = await ws.next()
            if f.kind == spdy.PING:
                assert f.ping_id == 7
            elif f.kind == spdy.DATA:
                got += f.data if f.stream_id == 3 else b""
                assert f.stream_id == 3 or not f.data  # nothing on the error stream
                if f.fin:
                    fins.append(f.stream_id)
        assert got == b"you said: hello"
        assert fins == [3, 1]  # data first, then error: kubectl waits on the error stream
        # A refused port: the failure on the error stream, then both closed.
        srv.close()
        await srv.wait_closed()
        await ws.inbox.put(c.syn_stream(5, {**headers, "requestID": "1"})
                           + c.syn_stream(7, {**headers, "requestID": "1",
                                              "streamType": "data"}))
        message, fins = b"", []
        while len(fins) < 2:
            f = await ws.next()
            if f.kind == spdy.DATA:
                message += f.data
                if f.fin:
                    fins.append(f.stream_id)
        assert message.decode().startswith(
            f"error forwarding port {port} to pod p, uid : failed to connect to "
            f'localhost:{port} inside namespace "host", IPv4: dial tcp4 127.0.0.1:{port}: '
            "connect: connection refused IPv6 dial tcp6 [::1]:")
        # A stream without a port is torn down.
        await ws.inbox.put(c.syn_stream(9, {"streamType": "data"}))
        f = await ws.next()
        assert (f.kind, f.stream_id, f.status) == (spdy.RST_STREAM, 9, spdy.CANCEL)
        await ws.inbox.put(None)
        await asyncio.wait_for(run, 10)
        assert not tunnel.pairs and not tunnel.streams

    asyncio.run(main())


SERVE = """
import socket, sys
s = socket.socket()
s.bind(("127.0.0.1", 0))
s.listen()
print(s.getsockname()[1], flush=True)
c, _ = s.accept()
c.sendall(b"from inside " + c.recv(100))
c.close()
"""


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("ip") is None,
                    reason="needs root and iproute2")
def test_connect_inside_a_network_namespace() -> None:
    name = f"pinnace-pftest-{os.getpid()}"
    subprocess.run(["ip", "netns", "add", name], check=True, timeout=10)
    proc = None
    try:
        subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True, timeout=10)
        proc = subprocess.Popen(["ip", "netns", "exec", name, sys.executable, "-c", SERVE],
                                stdout=subprocess.PIPE, text=True)
        assert proc.stdout is not None
        port = int(proc.stdout.readline())

        async def main() -> bytes:
            with pytest.raises(portforward.ConnectError, match="cannot enter"):
                await portforward.connect(f"/nonexistent/{name}", port, name)
            reader, writer = await portforward.connect(f"/run/netns/{name}", port, name)
            writer.write(b"hi")
            data = await asyncio.wait_for(reader.read(), 10)
            writer.close()
            return data

        assert asyncio.run(main()) == b"from inside hi"
        assert proc.wait(10) == 0
    finally:
        if proc is not None:
            proc.kill()
            proc.wait(10)
        subprocess.run(["ip", "netns", "del", name], timeout=10)
