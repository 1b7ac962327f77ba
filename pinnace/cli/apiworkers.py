"""`pinnace apiserver --workers N`: N API server processes on one port and
one datastore, so the API uses more than one core.

Python runs one thread of Python at a time, so one process serves at most
one core's worth of requests. Here a small parent process (this module)
prepares what must exist exactly once (certificates, the service-account
signing key, the port, the components' Unix socket), then runs N ordinary
API servers as children. Each listens on the same port with SO_REUSEPORT,
so the kernel spreads incoming connections over them, and takes
connections from the one socket; they share the datastore (SQLite in
shared mode, or etcd) and follow each other's writes through it, as
several API servers on one etcd do. Worker 0 owns the datastore (its
lock, compaction) and does the bootstrap writes; a worker that dies is
restarted, and the others keep serving meanwhile. Metrics are kept in
files every worker writes and any worker reads (prometheus_client's
multiprocess mode).
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import signal
import socket
import sys
from typing import Any

from pinnace.apiserver.config import Config

from .supervisor import Child

log = logging.getLogger("pinnace.apiserver.workers")

READY_TIMEOUT = 60.0  # seconds for a worker to start listening
READY = "pinnace-apiserver-worker-ready"  # a worker's last start-up line (not relayed)


def prepare(config: Config) -> None:
    """What all workers read and none may create on its own."""
    from pinnace.apiserver.certs import ensure_pki
    from pinnace.apiserver.localsocket import ensure_tokens
    from pinnace.apiserver.tokens import load_or_create_key

    config.data_dir.mkdir(parents=True, exist_ok=True)
    ensure_pki(config.data_dir / "tls", config.host, config.serving_sans)
    load_or_create_key(config.data_dir / "tls" / "service-account.key")
    ensure_tokens(config.data_dir / "tls")


def reserve_port(host: str) -> socket.socket:
    """Bind (without listening) a port the workers can share: the port is
    ours while the socket is open, and never receives a connection."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, 0))
    return sock


async def _ready_lines(child: Child) -> list[str]:
    """The start-up lines a worker prints before READY; [] if it exits first."""
    assert child.proc is not None and child.proc.stdout is not None
    lines: list[str] = []
    while True:
        raw = await child.proc.stdout.readline()
        if not raw:
            return []
        line = raw.decode()
        if line.strip() == READY:
            return lines
        lines.append(line)


def _started(task: asyncio.Task[list[str]]) -> bool:
    return task.done() and not task.cancelled() and bool(task.result())


async def run_workers(config: Config, worker_args: list[str], verbosity: list[str]) -> int:
    """Run ``config.workers`` API server processes until SIGINT/SIGTERM.
    ``worker_args``: the `pinnace apiserver` flags every worker gets (all
    but --listen, --workers and --worker-index)."""
    from pinnace.apiserver.localsocket import listen, socket_path

    await asyncio.to_thread(prepare, config)
    reserved: socket.socket | None = None
    port = config.port
    if port == 0:
        reserved = reserve_port(config.host)
        port = reserved.getsockname()[1]
    metrics_dir = config.data_dir / "run" / "metrics"
    shutil.rmtree(metrics_dir, ignore_errors=True)
    metrics_dir.mkdir(parents=True)
    host = f"[{config.host}]" if ":" in config.host else config.host
    # One listening socket for the components, which every worker takes
    # connections from (a worker being restarted leaves them to the others).
    components = listen(config.data_dir)
    shared = ["--socket-fd", str(components.fileno())] if components is not None else []
    children = [
        Child(f"apiserver-{i}", [*verbosity, "apiserver", *worker_args,
                                 "--listen", f"{host}:{port}", "--workers", str(config.workers),
                                 "--worker-index", str(i), *shared],
              env={"PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)}, capture=True,
              pass_fds=(components.fileno(),) if components is not None else ())
        for i in range(config.workers)]
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    stopping = False

    def forget(pid: int) -> None:
        # A dead worker's live gauges (its watchers) must not count any more.
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid, str(metrics_dir))

    try:
        for c in children:
            await c.start()
        starts = [asyncio.create_task(_ready_lines(c)) for c in children]
        waiting: set[asyncio.Future[Any]] = {asyncio.ensure_future(stop.wait()),
                                             asyncio.gather(*starts)}
        await asyncio.wait(waiting, timeout=READY_TIMEOUT, return_when=asyncio.FIRST_COMPLETED)
        for w in waiting:
            w.cancel()
        if stop.is_set():
            return 0
        if not _started(starts[0]):
            log.error("the first API server worker did not start")
            return 1
        for i, task in enumerate(starts[1:], 1):
            if not _started(task):
                log.error("API server worker %d did not start; it will be restarted", i)
        if reserved is not None:
            reserved.close()  # every worker holds the port now
            reserved = None
        sys.stdout.write("".join(starts[0].result()))
        sys.stdout.flush()
        tasks = [asyncio.create_task(c.drain()) for c in children]
        tasks += [asyncio.create_task(c.keep(lambda: stopping, on_exit=forget))
                  for c in children]
        await stop.wait()
        stopping = True
        for t in tasks:
            t.cancel()
        return 0
    finally:
        stopping = True
        if reserved is not None:
            reserved.close()
        await asyncio.gather(*(c.terminate() for c in children))
        if components is not None:
            components.close()
            path = socket_path(config.data_dir)
            if path is not None:
                path.unlink(missing_ok=True)
