"""runtime.small_tls_buffers: TLS connections on asyncio's own loop (the
agent's) read into 32 KiB buffers instead of 256 KiB, and a response far
larger than that still arrives whole."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from pinnace.apiserver.certs import ensure_pki

CODE = """
import asyncio, hashlib, ssl, sys
from pinnace.runtime import TLS_READ_BUFFER, small_tls_buffers

small_tls_buffers()
tls = sys.argv[1]
payload = bytes(range(256)) * 4096 * 4  # 4 MiB

async def main():
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(f"{tls}/server.crt", f"{tls}/server.key")

    async def serve(reader, writer):
        await reader.readline()
        writer.write(payload)
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0, ssl=server_ctx)
    port = server.sockets[0].getsockname()[1]
    client_ctx = ssl.create_default_context(cafile=f"{tls}/ca.crt")
    reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=client_ctx,
                                                   server_hostname="127.0.0.1")
    assert len(writer.transport._ssl_protocol._ssl_buffer) == TLS_READ_BUFFER == 32 * 1024
    writer.write(b"go\\n")
    got = await reader.read()
    assert hashlib.sha256(got).digest() == hashlib.sha256(payload).digest(), len(got)
    writer.close()
    server.close()

asyncio.run(main())
print("ok")
"""


def test_small_buffers_still_read_a_large_response_whole(tmp_path: Path) -> None:
    pki = ensure_pki(tmp_path, "127.0.0.1")
    run = subprocess.run([sys.executable, "-c", CODE, str(pki.dir)], capture_output=True,
                         text=True, timeout=60)
    assert run.returncode == 0 and run.stdout.strip() == "ok", run.stderr
