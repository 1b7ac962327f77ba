"""Memory of the whole control plane against the bytes written to it.

    python bench/memory_growth.py                 # 200 MiB of 32 KiB ConfigMaps, 8 clients, <= 30 s
    python bench/memory_growth.py --quick         # 48 MiB (< 30 s in all; no last phase)
    python bench/memory_growth.py --mib 600 --seconds 30   # the robustness issue's run
    python bench/memory_growth.py --delete namespace       # delete the namespace instead

Starts ``pinnace server`` (API server, controller manager, scheduler; no
node agent, no DNS) on a fresh sqlite data dir, waits for it to settle and
takes the baseline: RSS summed over every process of its tree (VmRSS from
/proc), and per process. Then C clients write ConfigMaps of ``--size`` KiB
(incompressible data) into one namespace until ``--mib`` MiB are written or
``--seconds`` pass, while a sampler records RSS every 200 ms. It waits a
few seconds (the controller manager's informers catch up), deletes every
ConfigMap it wrote (one DELETE each, same clients; or the namespace), and
samples until RSS settles; and once more after the watch cache's events
have aged out (FRESH_SECONDS, 75 s, plus 10).

Reports the peak RSS growth over the baseline divided by the bytes written
(the ratio; target <= 2.5) and where RSS settles after the deletion, per
process and in total, so one sees where memory lives.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import os
import signal
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import orjson
from _common import (
    Server,
    _processes,
    client_session,
    console,
    ensure_namespace,
    machine_note,
    print_table,
    progress,
    rss_mb,
    start_server,
    verdict,
    wait_ready,
)

from pinnace.apiserver.watchcache import FRESH_SECONDS

NAMESPACE = "bench-mem"
MIB = 1024 * 1024


# ------------------------------------------------------------------ processes

def named_tree(root: int) -> dict[int, str]:
    """Every process under ``pinnace server`` by a readable name: the
    supervisor, its components (apiserver, controller-manager, scheduler,
    ...) and their children (API server workers)."""
    procs = _processes()
    children: dict[int, list[tuple[int, list[str]]]] = {}
    for pid, ppid, argv in procs:
        children.setdefault(ppid, []).append((pid, argv))
    names = {root: "supervisor"}
    todo = [(root, "")]
    while todo:
        parent, parent_name = todo.pop()
        for pid, argv in children.get(parent, ()):
            if "--worker-index" in argv:
                name = f"apiserver worker {argv[argv.index('--worker-index') + 1]}"
            elif "pinnace.cli.main" in argv:
                rest = [a for a in argv[argv.index("pinnace.cli.main") + 1:]
                        if not a.startswith("-")]
                name = rest[0] if rest else "pinnace"
            else:
                name = f"{parent_name or 'child'}: {os.path.basename(argv[0]) or pid}"
            if name in names.values():
                name = f"{name} ({pid})"
            names[pid] = name
            todo.append((pid, name))
    return names


class Sampler:
    """RSS of every process of the tree every ``interval`` seconds, per
    process name and in total, with peaks since the last ``reset_peaks``."""

    def __init__(self, root: int, interval: float = 0.2):
        self.root, self.interval = root, interval
        self.names: dict[int, str] = named_tree(root)
        self.last: dict[str, float] = {}
        self.peak: dict[str, float] = {}
        self.total_peak = 0.0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._ticks = 0

    def sample(self) -> dict[str, float]:
        if self._ticks % 10 == 0:  # processes may come (workers) or go
            self.names = named_tree(self.root)
        self._ticks += 1
        now = {name: rss_mb(pid) for pid, name in self.names.items()}
        total = sum(now.values())
        with self._lock:
            self.last = now
            for name, mb in now.items():
                self.peak[name] = max(self.peak.get(name, 0.0), mb)
            self.total_peak = max(self.total_peak, total)
        return now

    def reset_peaks(self) -> None:
        with self._lock:
            self.peak = dict(self.last)
            self.total_peak = sum(self.last.values())

    def _run(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.interval)

    def __enter__(self) -> Sampler:
        self.sample()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def snapshot(self) -> dict[str, float]:
        with self._lock:
            return dict(self.last)


def dump_heaps(sampler: Sampler) -> None:
    for pid in sampler.names:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGUSR2)
    time.sleep(2)  # a snapshot of a few hundred MB takes a moment to write


def settle(sampler: Sampler, seconds: float, tolerance_mb: float = 5.0) -> dict[str, float]:
    """Wait up to ``seconds`` for the total RSS to stop moving (three samples
    a second apart within ``tolerance_mb``); the last sample."""
    deadline = time.monotonic() + seconds
    history: list[float] = []
    while time.monotonic() < deadline:
        time.sleep(1.0)
        history.append(sum(sampler.snapshot().values()))
        if len(history) >= 3 and max(history[-3:]) - min(history[-3:]) <= tolerance_mb:
            break
    return sampler.snapshot()


# ---------------------------------------------------------------------- load

def configmap(name: str, size: int) -> bytes:
    # Incompressible text: base64 of random bytes, exactly ``size`` characters.
    blob = base64.b64encode(os.urandom(size)).decode()[:size]
    return orjson.dumps({"apiVersion": "v1", "kind": "ConfigMap",
                         "metadata": {"name": name, "labels": {"bench": "memory"}},
                         "data": {"blob": blob}})


async def write(server: Server, clients: int, size: int, limit_bytes: int,
                seconds: float) -> tuple[list[str], int, float]:
    """POST ConfigMaps from ``clients`` callers until ``limit_bytes`` of
    bodies are written or ``seconds`` pass: (names, bytes, seconds)."""
    path = f"{server.url}/api/v1/namespaces/{NAMESPACE}/configmaps"
    names: list[str] = []
    written = 0
    count = 0
    t0 = time.monotonic()
    deadline = t0 + seconds
    headers = {"Content-Type": "application/json"}
    async with client_session(server.data_dir, limit=clients) as s:
        with progress() as bar:
            task = bar.add_task("writing ConfigMaps (MiB)", total=limit_bytes // MIB)

            async def one() -> None:
                nonlocal written, count
                while written < limit_bytes and time.monotonic() < deadline:
                    name = f"cm-{count:07d}"
                    count += 1
                    body = configmap(name, size)
                    written += len(body)  # claimed before the await: the limit holds
                    async with s.post(path, data=body, headers=headers) as r:
                        if r.status != 201:
                            written -= len(body)
                            raise RuntimeError(f"POST {name}: {r.status} "
                                               f"{(await r.text())[:300]}")
                        await r.read()
                    names.append(name)
                    bar.update(task, completed=written // MIB)

            await asyncio.gather(*(one() for _ in range(clients)))
    return names, written, time.monotonic() - t0


async def delete(server: Server, names: list[str], clients: int, how: str) -> float:
    t0 = time.monotonic()
    async with client_session(server.data_dir, limit=clients) as s:
        if how == "namespace":
            async with s.delete(f"{server.url}/api/v1/namespaces/{NAMESPACE}") as r:
                await r.read()
            while True:  # gone once the namespace controller emptied it
                async with s.get(f"{server.url}/api/v1/namespaces/{NAMESPACE}") as r:
                    await r.read()
                    if r.status == 404:
                        break
                if time.monotonic() - t0 > 60:
                    raise RuntimeError("namespace not gone after 60 s")
                await asyncio.sleep(0.2)
            return time.monotonic() - t0
        todo = list(names)
        base = f"{server.url}/api/v1/namespaces/{NAMESPACE}/configmaps/"

        async def one() -> None:
            while todo:
                name = todo.pop()
                async with s.delete(base + name) as r:
                    await r.read()
                    if r.status not in (200, 404):
                        raise RuntimeError(f"DELETE {name}: {r.status}")

        await asyncio.gather(*(one() for _ in range(clients)))
    return time.monotonic() - t0


# ---------------------------------------------------------------------- main

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=float, default=200, help="MiB of ConfigMaps to write")
    parser.add_argument("--seconds", type=float, default=30, help="stop writing after this")
    parser.add_argument("--size", type=int, default=32, help="KiB per ConfigMap")
    parser.add_argument("-c", "--clients", type=int, default=8, help="concurrent writers")
    parser.add_argument("--workers", type=int, default=1, help="API server worker processes")
    parser.add_argument("--watch-cache-bytes", type=int, default=0, metavar="BYTES",
                        help="pass --watch-cache-bytes to the server (0: its default)")
    parser.add_argument("--delete", choices=["objects", "namespace"], default="objects",
                        help="delete each ConfigMap (default) or the whole namespace")
    parser.add_argument("--settle", type=float, default=10,
                        help="at most this many seconds for RSS to settle after each phase")
    parser.add_argument("--quick", action="store_true", help="48 MiB, 15 s")
    parser.add_argument("--dump-heaps", action="store_true",
                        help="send SIGUSR2 to every process after the baseline and after each "
                             "phase, for bench/heapdump/sitecustomize.py's snapshots (see there; "
                             "without it SIGUSR2 kills them)")
    parser.add_argument("--keep", action="store_true",
                        help="leave the server running at the end (prints its data dir)")
    parser.add_argument("--no-later", dest="later", action="store_false",
                        help=f"skip the last phase ({FRESH_SECONDS + 10:.0f} s after deleting)")
    args = parser.parse_args()
    if args.quick:
        args.mib, args.seconds, args.settle, args.later = 48, 15, 6, False
    size = args.size * 1024
    console.print(f"[bold]memory_growth[/]: up to {args.mib:g} MiB of {args.size} KiB ConfigMaps "
                  f"in <= {args.seconds:g} s, {args.clients} clients, {args.workers} API "
                  f"worker(s) ({machine_note()})")

    with contextlib.ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="pinnace-bench-mem-"))) \
            if not args.keep else Path(tempfile.mkdtemp(prefix="pinnace-bench-mem-"))
        server = start_server(tmp / "data", "--datastore", "sqlite", "--disable-agent",
                              "--disable-dns", "--workers", str(args.workers),
                              *(["--watch-cache-bytes", str(args.watch_cache_bytes)]
                                if args.watch_cache_bytes else []),
                              command="server", timeout=60)
        if not args.keep:
            stack.callback(server.stop)
        wait_ready(server)

        async def prepare() -> None:
            async with client_session(server.data_dir) as s:
                await ensure_namespace(s, server.url, NAMESPACE)
        asyncio.run(prepare())
        time.sleep(3)  # the controller manager's informers sync, the namespace's CA lands
        sampler = stack.enter_context(Sampler(server.pid))
        with console.status("baseline"):
            base = settle(sampler, args.settle)
        sampler.reset_peaks()
        dump = (lambda: dump_heaps(sampler)) if args.dump_heaps else (lambda: None)
        dump()

        names, written, secs = asyncio.run(
            write(server, args.clients, size, int(args.mib * MIB), args.seconds))
        with console.status("after writing: settling"):
            after_write = settle(sampler, args.settle)
        dump()
        write_peak = sampler.total_peak
        dsecs = asyncio.run(delete(server, names, args.clients, args.delete))
        with console.status("after deleting: settling"):
            time.sleep(2)
            after_delete = settle(sampler, args.settle)
        dump()
        # The watch cache lets events go once they are FRESH_SECONDS old.
        later = after_delete
        if args.later:
            with console.status(f"{FRESH_SECONDS + 10:.0f} s later: the window ages out"):
                time.sleep(FRESH_SECONDS + 10)
                later = settle(sampler, args.settle)
        peak = dict(sampler.peak)
        total_peak = sampler.total_peak

    if args.keep:
        console.print(f"server left running: pid {server.pid}, data dir {server.data_dir}")
    wmib = written / MIB
    b_total = sum(base.values())
    rows: list[list[Any]] = []
    for name in sorted(set(base) | set(peak) | set(after_delete), key=lambda n: -peak.get(n, 0)):
        b = base.get(name, 0.0)
        rows.append([name, b, peak.get(name, 0.0), peak.get(name, 0.0) - b,
                     after_write.get(name, 0.0), after_delete.get(name, 0.0),
                     after_delete.get(name, 0.0) - b, later.get(name, 0.0) - b])
    growth = total_peak - b_total
    left = sum(after_delete.values()) - b_total
    left_later = sum(later.values()) - b_total
    rows.append(["total (peak of the sum)", b_total, total_peak, growth, sum(after_write.values()),
                 sum(after_delete.values()), left, left_later])
    print_table(f"RSS MB: {len(names):,} ConfigMaps of {args.size} KiB = {wmib:,.0f} MiB written "
                f"in {secs:.1f} s ({wmib / secs:.1f} MiB/s), deleted in {dsecs:.1f} s "
                f"({args.delete})",
                ["process", "baseline", "peak", "peak growth", "after write", "after delete",
                 "left after delete", f"left {FRESH_SECONDS + 10:.0f} s later"], rows)
    ratio = growth / wmib if wmib else float("nan")
    console.print(f"peak while writing: {write_peak:,.0f} MB (growth / bytes written "
                  f"{(write_peak - b_total) / wmib:.2f}); peak is over writing and deleting")
    console.print(f"peak RSS growth / bytes written: [bold]{ratio:.2f}[/]   "
                  f"left after delete / bytes written: [bold]{left / wmib:.2f}[/], "
                  f"later: [bold]{left_later / wmib:.2f}[/]")
    after_write_total = sum(after_write.values())
    console.print(f"targets: ratio <= 2.5 {verdict(ratio <= 2.5)}; deleting adds nothing "
                  f"(after delete <= after write + 5 %) "
                  f"{verdict(sum(after_delete.values()) <= after_write_total * 1.05)}; back "
                  f"near the baseline once the window ages out (left later <= 0.1 x written) "
                  f"{verdict(left_later <= 0.1 * wmib)}")
    console.print("[dim]Right after the deletions the API server still holds its watch cache "
                  "window (up to --watch-cache-bytes of values per resource, the deletions' "
                  f"included); events leave it {FRESH_SECONDS:.0f} s old.[/]")

if __name__ == "__main__":
    t0 = time.monotonic()
    main()
    console.print(f"[dim]total {time.monotonic() - t0:.1f} s[/]")
