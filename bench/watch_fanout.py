"""Watch fan-out: W watchers on one namespace's configmaps while a writer
creates configmaps at R/s; per-event delivery latency and events lost.

    python bench/watch_fanout.py                  # 1,000 watchers x 1,000 creates/s for 10 s
    python bench/watch_fanout.py -w 300 -r 500 -d 5 --procs 1
    python bench/watch_fanout.py --quick          # 100 watchers x 200/s for 3 s (< 20 s)

Watchers are raw aiohttp streams (``?watch=true&resourceVersion=<rv>``),
each on its own keep-alive connection, spread over ``--procs`` reader
processes. The writer runs in this process, sends creates on a fixed
schedule (at most 64 in flight) and puts its send time (``time.time()``)
into each configmap's data. ``--measure`` watchers parse every event and
record now - ts; the others read the raw TLS stream and only count event
ends, so the readers spend as little CPU as they can. Every watcher counts events; a watcher whose stream ends
before the run does is reported as dropped. The server's RSS is sampled
during the load. Target: p99 <= 200 ms at 1,000 watchers x 1,000 creates/s.
"""

from __future__ import annotations

import argparse
import array
import asyncio
import multiprocessing as mp
import time
from pathlib import Path
from typing import Any

import orjson
from _common import (
    RSSSampler,
    client_session,
    console,
    ensure_namespace,
    machine_note,
    own_cpu_seconds,
    percentile,
    print_table,
    progress,
    py_spy,
    running_server,
    ssl_context,
    verdict,
)

NAMESPACE = "bench-watch"
PAD = "x" * 200  # configmaps of a few hundred bytes, like small real ones


# ------------------------------------------------------------------ readers

def _reader(url: str, data_dir: str, rv: str, watchers: int, measuring: int, timeout_s: int,
            slot: int, received: Any, connected: Any, go: Any, stop: Any, expected: Any,
            results: Any) -> None:
    try:  # its TLS is in C; asyncio's own is in Python
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    results.put(asyncio.run(_reader_async(url, Path(data_dir), rv, watchers, measuring,
                                          timeout_s, slot, received, connected, go, stop,
                                          expected)))


class _Counter(asyncio.Protocol):
    """A watch stream read as raw TLS bytes that only counts events: each
    event line ends in ``}\\n``, which neither chunk framing (``\\r\\n``) nor
    JSON text (newlines are escaped in strings) contains otherwise. Far
    cheaper than an HTTP client, so the readers leave the CPU to the server."""

    def __init__(self, request: bytes, on_events: Any):
        self.request = request
        self.on_events = on_events
        self.last = b""
        self.headers_done = False
        self.status = 0
        self.closed = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: Any) -> None:
        transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        if not self.headers_done:
            head, sep, data = (self.last + data).partition(b"\r\n\r\n")
            if not sep:
                self.last = head
                return
            self.headers_done = True
            self.status = int(head.split(b" ", 2)[1])
            self.last = b""
        n = data.count(b"}\n")
        if self.last == b"}" and data[:1] == b"\n":
            n += 1
        self.last = data[-1:]
        if n:
            self.on_events(n)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(None)


async def _reader_async(url: str, data_dir: Path, rv: str, watchers: int, measuring: int,
                        timeout_s: int, slot: int, received: Any, connected: Any, go: Any,
                        stop: Any, expected: Any) -> dict[str, Any]:
    path = (f"{url}/api/v1/namespaces/{NAMESPACE}/configmaps?watch=true"
            f"&resourceVersion={rv}&timeoutSeconds={timeout_s}")
    counts = [0] * watchers
    ended_early = [False] * watchers
    latencies = array.array("d")
    errors: list[str] = []
    handshakes = asyncio.Semaphore(64)  # stay inside the server's listen backlog
    loop = asyncio.get_running_loop()

    host, port = url.split("//", 1)[1].rsplit(":", 1)
    query = path.split(url, 1)[1]
    request = (f"GET {query} HTTP/1.1\r\nHost: {host}:{port}\r\n"
               "Accept: application/json\r\n\r\n").encode()
    tls = ssl_context(data_dir)

    async def counter(i: int) -> None:
        def on_events(n: int) -> None:
            counts[i] += n

        async with handshakes:
            transport, proto = await loop.create_connection(
                lambda: _Counter(request, on_events), host, int(port), ssl=tls)
        with connected.get_lock():
            connected.value += 1
        try:
            while True:
                want = expected.value
                if want and counts[i] >= want:
                    return
                try:
                    await asyncio.wait_for(asyncio.shield(proto.closed), 0.5)
                except asyncio.TimeoutError:
                    continue
                if not (want and counts[i] >= want):
                    ended_early[i] = True  # the server closed the stream before we were done
                    if proto.status != 200 and len(errors) < 5:
                        errors.append(f"watch answered {proto.status}")
                return
        finally:
            transport.close()

    async def watcher(i: int, session: Any) -> None:
        if i >= measuring:
            return await counter(i)
        async with handshakes:
            resp = await session.get(path)
        try:
            if resp.status != 200:
                errors.append(f"{resp.status} {(await resp.text())[:200]}")
                ended_early[i] = True
                return
            with connected.get_lock():
                connected.value += 1
            measure = i < measuring
            partial = b""
            async for chunk in resp.content.iter_any():
                now = time.time()
                counts[i] += chunk.count(b"\n")
                if measure:
                    lines = (partial + chunk).split(b"\n")
                    partial = lines.pop()
                    for line in lines:
                        event = orjson.loads(line)
                        if event["type"] == "ADDED":
                            latencies.append(now - float(event["object"]["data"]["ts"]))
                        elif event["type"] != "BOOKMARK" and len(errors) < 5:
                            errors.append(line[:300].decode(errors="replace"))
                want = expected.value
                if want and counts[i] >= want:
                    return
            ended_early[i] = True  # the server closed the stream before we were done
        finally:
            resp.release()

    async with client_session(data_dir) as session:
        tasks = [asyncio.create_task(watcher(i, session)) for i in range(watchers)]
        await loop.run_in_executor(None, go.wait)
        cpu0 = own_cpu_seconds()
        while not stop.is_set() and not all(t.done() for t in tasks):
            received[slot] = sum(counts)
            await asyncio.sleep(0.1)
        received[slot] = sum(counts)
        cpu = own_cpu_seconds() - cpu0
        for t in tasks:
            t.cancel()
        outcomes = await asyncio.gather(*tasks, return_exceptions=True)
    for o in outcomes:
        if isinstance(o, Exception) and not isinstance(o, asyncio.CancelledError) \
                and len(errors) < 5:
            errors.append(repr(o))
    return {"counts": counts, "latencies": latencies.tobytes(), "cpu": cpu, "errors": errors,
            "dropped": sum(ended_early)}


# ------------------------------------------------------------------- writer

async def write(url: str, data_dir: Path, rate: float, seconds: float) -> dict[str, Any]:
    """Create rate*seconds configmaps on a fixed schedule; returns counts and
    the writer's own latencies. An overloaded server slows the writer down,
    so it stops sending after twice the planned time to keep the run bounded."""
    total = int(rate * seconds)
    in_flight = asyncio.Semaphore(64)
    latencies: list[float] = []
    errors: list[str] = []
    headers = {"Content-Type": "application/json"}
    target = f"{url}/api/v1/namespaces/{NAMESPACE}/configmaps"

    async def one(i: int, session: Any) -> None:
        try:
            body = orjson.dumps({"apiVersion": "v1", "kind": "ConfigMap",
                                 "metadata": {"name": f"cm-{i:07d}"},
                                 "data": {"ts": repr(time.time()), "pad": PAD}})
            t0 = time.perf_counter()
            async with session.post(target, data=body, headers=headers) as r:
                await r.read()
                if r.status == 201:
                    latencies.append(time.perf_counter() - t0)
                elif len(errors) < 5:
                    errors.append(f"{r.status} {(await r.text())[:200]}")
        finally:
            in_flight.release()

    async with client_session(data_dir) as session:
        tasks = []
        started = time.monotonic()
        with progress() as bar:
            task = bar.add_task(f"writing {rate:.0f}/s", total=total)
            for i in range(total):
                if time.monotonic() - started > 2 * seconds:
                    break
                delay = started + i / rate - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                await in_flight.acquire()
                tasks.append(asyncio.create_task(one(i, session)))
                if i % 50 == 0:
                    bar.update(task, completed=i)
            await asyncio.gather(*tasks)
        elapsed = time.monotonic() - started
    latencies.sort()
    return {"ok": len(latencies), "total": len(tasks), "seconds": elapsed, "errors": errors,
            "p99_ms": percentile(latencies, 0.99) * 1000}


# --------------------------------------------------------------------- main

async def current_rv(url: str, data_dir: Path) -> str:
    async with client_session(data_dir) as s:
        await ensure_namespace(s, url, NAMESPACE)
        async with s.get(f"{url}/api/v1/namespaces/{NAMESPACE}/configmaps") as r:
            return str((await r.json())["metadata"]["resourceVersion"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-w", type=int, default=1_000, help="watchers")
    parser.add_argument("-r", type=float, default=1_000, help="creates per second")
    parser.add_argument("-d", type=float, default=10, help="seconds of writing")
    parser.add_argument("--procs", type=int, default=0,
                        help="reader processes (default: 1 up to 200 watchers, else 2)")
    parser.add_argument("--measure", type=int, default=100,
                        help="watchers that parse every event to record its latency")
    parser.add_argument("--grace", type=float, default=10,
                        help="seconds to wait for stragglers after the writer ends")
    parser.add_argument("--datastore", default="sqlite")
    parser.add_argument("--workers", type=int, default=1, help="API server worker processes")
    parser.add_argument("--py-spy", default="", metavar="OUT",
                        help="record the server with py-spy while writing (see api_create.py)")
    parser.add_argument("--quick", action="store_true", help="100 watchers x 200/s for 3 s")
    args = parser.parse_args()
    if args.quick:
        args.w, args.r, args.d, args.grace = 100, 200, 3, 3
    procs = args.procs or (1 if args.w <= 200 else 2)
    console.print(f"[bold]watch_fanout[/]: {args.w:,} watchers x {args.r:.0f} creates/s for "
                  f"{args.d:.0f} s, {procs} reader procs ({machine_note()})")

    ctx = mp.get_context("spawn")
    received = ctx.Array("q", procs, lock=False)
    connected = ctx.Value("l", 0)
    go, stop = ctx.Event(), ctx.Event()
    expected = ctx.Value("l", 0, lock=False)
    results = ctx.Queue()
    with running_server(args.datastore, workers=args.workers) as server:
        rv = asyncio.run(current_rv(server.url, server.data_dir))
        timeout_s = int(args.d + args.grace + 120)
        children = []
        for p in range(procs):
            w = args.w // procs + (1 if p < args.w % procs else 0)
            m = args.measure // procs + (1 if p < args.measure % procs else 0)
            children.append(ctx.Process(target=_reader, daemon=True, args=(
                server.url, str(server.data_dir), rv, w, min(m, w), timeout_s, p, received,
                connected, go, stop, expected, results)))
        outs: list[dict[str, Any]] = []
        try:
            for c in children:
                c.start()
            with progress() as bar:
                task = bar.add_task("connecting watchers", total=args.w)
                deadline = time.monotonic() + 120
                while connected.value < args.w:
                    if time.monotonic() > deadline or not all(c.is_alive() for c in children):
                        raise SystemExit(f"only {connected.value} of {args.w} watchers connected")
                    bar.update(task, completed=connected.value)
                    time.sleep(0.1)
            rss_idle = server.rss_mb()
            with RSSSampler(server.pid) as rss, py_spy(server.pid, args.py_spy):
                go.set()
                cpu0, own0 = server.cpu_seconds(), own_cpu_seconds()
                wrote = asyncio.run(write(server.url, server.data_dir, args.r, args.d))
                server_cores = (server.cpu_seconds() - cpu0) / wrote["seconds"]
                writer_cores = (own_cpu_seconds() - own0) / wrote["seconds"]
                expected.value = wrote["ok"]
                want = wrote["ok"] * args.w
                with progress() as bar:
                    task = bar.add_task("draining", total=want)
                    deadline = time.monotonic() + args.grace
                    while sum(received) < want and time.monotonic() < deadline:
                        bar.update(task, completed=sum(received))
                        time.sleep(0.1)
                stop.set()
                for _ in children:
                    outs.append(results.get(timeout=60))
        finally:
            stop.set()
            for c in children:
                c.join(timeout=10)
                if c.is_alive():
                    c.kill()

    got = sum(sum(o["counts"]) for o in outs)
    lat = array.array("d")
    for o in outs:
        lat.frombytes(o["latencies"])
    lats = sorted(lat)
    dropped = sum(o["dropped"] for o in outs)
    reader_cores = sum(o["cpu"] for o in outs) / wrote["seconds"]
    errors = [e for o in outs for e in o["errors"]] + wrote["errors"]
    p50, p99 = percentile(lats, 0.5) * 1000, percentile(lats, 0.99) * 1000
    print_table(
        f"Watch fan-out: {args.w:,} watchers x {args.r:.0f}/s for {args.d:.0f} s",
        ["metric", "value"],
        [["creates sent / ok", f"{wrote['total']:,} / {wrote['ok']:,}"],
         ["achieved write rate /s", wrote["ok"] / wrote["seconds"]],
         ["writer create p99 ms", wrote["p99_ms"]],
         ["events expected", want], ["events received", got],
         ["delivered", f"{got / want:.1%}" if want else "-"],
         ["watch streams ended early", dropped],
         ["latency samples", len(lats)],
         ["delivery p50 ms", p50], ["delivery p99 ms", p99],
         ["delivery max ms", (lats[-1] * 1000) if lats else float("nan")],
         ["server RSS idle (watchers open) MB", rss_idle],
         ["server RSS peak under load MB", rss.peak],
         ["server cores while writing", server_cores],
         ["reader cores (all procs)", reader_cores], ["writer cores", writer_cores]])
    for e in errors[:5]:
        console.print(f"[red]error:[/] {e}")
    console.print(f"target: p99 <= 200 ms {verdict(p99 <= 200)}, all delivered "
                  f"{verdict(got >= want)}")


if __name__ == "__main__":
    t0 = time.monotonic()
    main()
    console.print(f"[dim]total {time.monotonic() - t0:.1f} s[/]")
