"""A load generator that creates objects through the HTTP API from one or
more client processes, so the Python client is less likely to be what limits
the server's measured rate.

Each process opens its keep-alive connections and pre-encodes its bodies
before the start signal, then runs ``concurrency`` callers that each await
their own POST in a loop. The parent shows progress and merges the results.
"""

from __future__ import annotations

import asyncio
import multiprocessing as mp
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from _common import client_session, own_cpu_seconds, percentile, progress

# (namespace, name, index) -> object; must be importable by a spawned child.
BodyFactory = Callable[[str, str, int], dict[str, Any]]


@dataclass
class LoadResult:
    n_ok: int
    n_err: int
    seconds: float
    latencies: list[float]  # seconds, sorted
    client_cpu_s: float  # CPU used by all client processes while loading
    procs: int
    first_error: str

    @property
    def per_s(self) -> float:
        return self.n_ok / self.seconds if self.seconds else 0.0

    @property
    def p50_ms(self) -> float:
        return percentile(self.latencies, 0.50) * 1000

    @property
    def p99_ms(self) -> float:
        return percentile(self.latencies, 0.99) * 1000

    @property
    def client_cores(self) -> float:
        return self.client_cpu_s / self.seconds if self.seconds else 0.0


def _child(url: str, data_dir: str, path: str, namespace: str, indices: range,
           concurrency: int, factory: BodyFactory, counter: Any, ready: Any, go: Any,
           results: Any) -> None:
    results.put(asyncio.run(_child_async(url, Path(data_dir), path, namespace, indices,
                                         concurrency, factory, counter, ready, go)))


async def _child_async(url: str, data_dir: Path, path: str, namespace: str, indices: range,
                       concurrency: int, factory: BodyFactory, counter: Any, ready: Any,
                       go: Any) -> dict[str, Any]:
    bodies = [orjson.dumps(factory(namespace, f"bench-{i:07d}", i)) for i in indices]
    headers = {"Content-Type": "application/json", "Accept": "application/json"}
    if os.environ.get("PINNACE_BENCH_AS"):  # the admin impersonates a user RBAC decides for
        headers["Impersonate-User"] = os.environ["PINNACE_BENCH_AS"]
    latencies: list[float] = []
    errors: list[str] = []
    n_err = 0
    async with client_session(data_dir) as session:
        # Open every keep-alive connection now, so TLS handshakes are not timed.
        async def warm() -> None:
            async with session.get(f"{url}/readyz") as r:
                await r.read()
        await asyncio.gather(*(warm() for _ in range(concurrency)))
        ready.release()
        await asyncio.get_running_loop().run_in_executor(None, go.wait)
        cpu0 = own_cpu_seconds()
        started = time.monotonic()
        todo = iter(bodies)
        done_since_report = 0

        async def caller() -> None:
            nonlocal done_since_report, n_err
            for body in todo:
                t0 = time.perf_counter()
                async with session.post(url + path, data=body, headers=headers) as r:
                    await r.read()
                    if r.status == 201:
                        latencies.append(time.perf_counter() - t0)
                    else:
                        n_err += 1
                        if not errors:
                            errors.append(f"{r.status} {(await r.text())[:300]}")
                done_since_report += 1
                if done_since_report >= 50:
                    with counter.get_lock():
                        counter.value += done_since_report
                    done_since_report = 0

        await asyncio.gather(*(caller() for _ in range(concurrency)))
        ended = time.monotonic()
        cpu = own_cpu_seconds() - cpu0
        with counter.get_lock():
            counter.value += done_since_report
    return {"latencies": latencies, "errors": errors, "started": started, "ended": ended,
            "cpu": cpu, "n_err": n_err}


def create_objects(url: str, data_dir: Path, path: str, namespace: str, factory: BodyFactory,
                   n: int, concurrency: int, procs: int = 1, label: str = "creating",
                   on_start: Callable[[], None] | None = None) -> LoadResult:
    """POST ``n`` objects built by ``factory`` to ``url + path`` with
    ``concurrency`` callers in total, spread over ``procs`` processes.
    ``on_start`` runs right before the start signal (e.g. to start a profiler)."""
    ctx = mp.get_context("spawn")
    counter = ctx.Value("l", 0)
    ready = ctx.Semaphore(0)
    go = ctx.Event()
    results = ctx.Queue()
    share, extra = divmod(n, procs)
    cshare, cextra = divmod(concurrency, procs)
    children, lo = [], 0
    for p in range(procs):
        hi = lo + share + (1 if p < extra else 0)
        c = max(1, cshare + (1 if p < cextra else 0))
        children.append(ctx.Process(target=_child, daemon=True, args=(
            url, str(data_dir), path, namespace, range(lo, hi), c, factory, counter, ready, go,
            results)))
        lo = hi
    for child in children:
        child.start()
    outs: list[dict[str, Any]] = []
    try:
        for _ in children:
            if not ready.acquire(timeout=120):
                raise RuntimeError("a client process did not get ready")
        if on_start:
            on_start()
        go.set()
        with progress() as bar:
            task = bar.add_task(label, total=n)
            while len(outs) < procs:
                try:
                    outs.append(results.get(timeout=0.1))
                except Exception:  # queue.Empty: keep drawing progress
                    if not any(c.is_alive() for c in children) and results.empty():
                        raise RuntimeError("client processes died") from None
                bar.update(task, completed=counter.value)
    finally:
        for child in children:
            child.join(timeout=10)
            if child.is_alive():
                child.kill()
    latencies = sorted(x for o in outs for x in o["latencies"])
    errors = [e for o in outs for e in o["errors"]]
    seconds = max(o["ended"] for o in outs) - min(o["started"] for o in outs)
    return LoadResult(n_ok=len(latencies), n_err=sum(o["n_err"] for o in outs), seconds=seconds,
                      latencies=latencies, client_cpu_s=sum(o["cpu"] for o in outs),
                      procs=procs, first_error=errors[0] if errors else "")
