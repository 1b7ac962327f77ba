"""Scale target: N simulated nodes and P pods on this machine, with API latency.

    python bench/scale.py                         # 5,000 nodes, 150,000 pods, sqlite, <= 30 min
    python bench/scale.py --quick                 # 200 nodes, 2,000 pods (< 60 s)
    python bench/scale.py --nodes 1000 --pods 20000 --max-seconds 900

Starts ``pinnace server`` (API server, controller manager, scheduler as
processes) and one ``pinnace sim --nodes N``, waits for every node to be
Ready, then creates P pods through Deployments of ``--replicas`` each (the
deployment and ReplicaSet controllers create the pods, the scheduler binds
them, the simulator runs them), one Deployment every ``replicas/rate``
seconds and never more than ``--max-pending`` pods asked for but not yet
Ready. The pods stay: the cluster only grows.

While it runs, a probe in its own process measures API latency: one mutating
call every ``--probe-interval`` (create, merge-patch, delete of a small
ConfigMap in turn, in a separate namespace) and one read every interval (GET
of a single ConfigMap, LIST of the pods of that small namespace, in turn).
Kubernetes' SLOs, as 99th percentiles: mutating calls <= 1 s, GET of one
object <= 1 s, LIST in a namespace <= 5 s.

Reports pods Ready/Running and the time until all were, latency p50/p99/max
per call and per class before, during and after the load, CPU and RSS of each
process and the machine's available memory.

It stops by itself: at ``--max-seconds`` (everything included), when a
process's RSS exceeds ``--max-rss-gb``, when available memory falls below
``--min-free-gb``, or when a process dies; every process it started is
stopped on the way out (also on Ctrl-C and SIGTERM).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from _common import (
    REPO,
    ProcUsage,
    console,
    cpu_seconds,
    deployment_manifest,
    machine_note,
    mem_available_mb,
    percentile,
    print_table,
    process_alive,
    progress,
    rss_mb,
    running_cluster,
    stop_process,
    verdict,
)

from pinnace.client import Client, load_kubeconfig
from pinnace.client.rest import ApiError

NAMESPACE = "scale"
PROBE_NAMESPACE = "scale-probe"
PROBE_STATIC = "probe-static"  # the ConfigMap the probe GETs
PROBE_PODS = 5  # pods of the small Deployment whose namespace the probe LISTs
CALL_TIMEOUT = 30.0
MUTATING = ("create", "patch", "delete")
# Kubernetes' API call latency SLOs (p99): single-object mutating and GET 1 s,
# namespace-scoped LIST 5 s.
SLO = {"mutating": 1.0, "get": 1.0, "list": 5.0}


# ---------------------------------------------------------------- the probe
#
# Runs as `scale.py --probe-worker KUBECONFIG OUT` in its own process, so the
# latency it sees is the server's, not this process's event loop's. It appends
# "time op seconds ok" lines to OUT (flushed every second, so a killed probe
# still leaves its samples) until SIGTERM.

async def _timed(out: list[str], op: str, coro: Any) -> None:
    t0 = time.monotonic()
    ok = 1
    try:
        await asyncio.wait_for(coro, CALL_TIMEOUT)
    except Exception:  # noqa: BLE001 - any failure is a failed call; the probe must not die
        ok = 0
    out.append(f"{time.time():.3f} {op} {time.monotonic() - t0:.6f} {ok}\n")


async def _every(interval: float, stop: asyncio.Event, step: Any) -> None:
    """Call ``step(i)`` once per interval; a slow call delays the next one
    instead of piling calls up (the probe must stay a bounded load)."""
    t0, i, n = time.monotonic(), 0, 0
    while not stop.is_set():
        await step(n)  # n never restarts: the ConfigMap names stay unique
        i += 1
        n += 1
        due = t0 + i * interval
        now = time.monotonic()
        if due < now:  # fell behind: restart the schedule, no burst
            t0, i, due = now, 0, now
        try:
            await asyncio.wait_for(stop.wait(), max(0.0, due - now))
        except asyncio.TimeoutError:
            pass


async def probe_worker(kubeconfig: str, out_path: str, interval: float) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    lines: list[str] = []
    client = Client(load_kubeconfig(kubeconfig), max_connections=4)
    cms = client.resource("v1", "configmaps")
    pods = client.resource("v1", "pods")
    with open(out_path, "a") as out:
        async def flush() -> None:
            while not stop.is_set():
                await asyncio.sleep(1.0)
                out.writelines(lines)
                lines.clear()
                out.flush()

        async def mutate(i: int) -> None:
            name = f"probe-{i // 3}"
            op = MUTATING[i % 3]
            if op == "create":
                body = {"apiVersion": "v1", "kind": "ConfigMap",
                        "metadata": {"name": name, "namespace": PROBE_NAMESPACE},
                        "data": {"n": str(i)}}
                await _timed(lines, op, cms.create(body))
            elif op == "patch":
                await _timed(lines, op, cms.patch(name, {"data": {"n": str(i)}},
                                                  PROBE_NAMESPACE))
            else:
                await _timed(lines, op, cms.delete(name, PROBE_NAMESPACE))

        async def read(i: int) -> None:
            if i % 2 == 0:
                await _timed(lines, "get", cms.get(PROBE_STATIC, PROBE_NAMESPACE))
            else:
                await _timed(lines, "list", pods.list(PROBE_NAMESPACE))

        try:
            await asyncio.gather(_every(interval, stop, mutate), _every(interval, stop, read),
                                 flush())
        finally:
            out.writelines(lines)
            await client.close()


def start_probe(kubeconfig: Path, out: Path, interval: float) -> subprocess.Popen[bytes]:
    with (out.parent / "probe.log").open("w") as log:
        return subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), "--probe-worker", str(kubeconfig),
             str(out), "--probe-interval", str(interval)],
            stdout=log, stderr=subprocess.STDOUT, cwd=REPO, start_new_session=True)


@dataclass
class Sample:
    t: float  # time.time() when the call ended
    op: str
    seconds: float
    ok: bool

    @property
    def cls(self) -> str:
        return "mutating" if self.op in MUTATING else self.op


class ProbeReader:
    """Reads the probe's samples as they are flushed."""

    def __init__(self, path: Path):
        self.path, self.offset = path, 0
        self.samples: list[Sample] = []
        self._tail = ""

    def poll(self) -> None:
        try:
            with self.path.open() as f:
                f.seek(self.offset)
                text = f.read()
                self.offset = f.tell()
        except OSError:
            return
        text, self._tail = self._tail + text, ""
        lines = text.split("\n")
        self._tail = lines.pop()  # a partial last line waits for the next poll
        for line in lines:
            t, op, sec, ok = line.split()
            self.samples.append(Sample(float(t), op, float(sec), ok == "1"))

    def p99(self, cls: str, since: float = 0.0) -> float:
        v = sorted(s.seconds for s in self.samples if s.cls == cls and s.t >= since)
        return percentile(v, 0.99)


# ------------------------------------------------------------- the run


@dataclass
class Run:
    args: argparse.Namespace
    t_start: float  # time.monotonic() at start
    deadline: float  # time.monotonic() when everything must be over
    stop_reason: str = ""
    nodes_ready_s: float = float("nan")
    mem_start: float = 0.0
    mem_min: float = float("inf")
    mem_end: float = 0.0
    t_baseline: float = 0.0  # time.time(): probe started
    t_load: float = 0.0  # time.time(): first Deployment POST
    t_load_end: float = 0.0  # time.time(): load finished or stopped
    t_end: float = 0.0
    deployments: int = 0
    requested: int = 0  # pods asked for by the Deployments POSTed so far
    created: int = 0  # Deployment status.replicas summed
    ready: int = 0  # Deployment status.readyReplicas summed
    all_created_s: float = float("nan")
    all_ready_s: float = float("nan")
    post_errors: int = 0
    running_exact: int = -1  # phase Running from a final paged LIST (-1: not done)
    phases: dict[str, int] = field(default_factory=dict)
    peak_rss: dict[str, float] = field(default_factory=dict)
    cpu_total: dict[str, float] = field(default_factory=dict)  # CPU s since each started
    over: str = ""  # why the run aborted on a resource limit (skip heavy work then)
    timeline: list[tuple[float, int, int, float]] = field(default_factory=list)

    def stop(self, reason: str) -> None:
        if not self.stop_reason:
            self.stop_reason = reason

    def remaining(self) -> float:
        return self.deadline - time.monotonic()


async def guard(run: Run, pids: dict[str, int], reader: ProbeReader) -> None:
    """Once a second: stop the run on the time limit, a memory limit or a
    dead process; keep the peak RSS and the lowest available memory."""
    limit_mb = run.args.max_rss_gb * 1024
    floor_mb = run.args.min_free_gb * 1024
    while True:
        for name, pid in pids.items():
            if not process_alive(pid):
                why = f"{name} (pid {pid}) exited"
                log = reader.path.parent / ("probe.log" if name == "probe" else "")
                if name == "probe" and log.exists():
                    why += ": " + log.read_text()[-500:]
                run.over = run.over or why
                run.stop(run.over)
                continue
            try:
                rss = rss_mb(pid)
            except OSError:
                continue
            run.peak_rss[name] = max(run.peak_rss.get(name, 0.0), rss)
            if rss > limit_mb:
                run.over = run.over or f"{name} RSS {rss:,.0f} MB > {limit_mb:,.0f} MB"
                run.stop(run.over)
        avail = mem_available_mb()
        run.mem_min = min(run.mem_min, avail)
        if avail < floor_mb:
            run.over = run.over or f"available memory {avail:,.0f} MB < {floor_mb:,.0f} MB"
            run.stop(run.over)
        if run.remaining() <= run.args.reserve:
            run.stop(f"time limit ({run.args.max_seconds:g} s)")
        reader.poll()
        await asyncio.sleep(1.0)


async def wait_nodes(client: Client, run: Run, n: int) -> int:
    """Nodes Ready, polled at a pace that keeps a 5,000-node LIST cheap;
    gives up when the run is stopped."""
    nodes_rc = client.resource("v1", "nodes")
    t0 = time.monotonic()
    ready = 0
    with progress() as bar:
        task = bar.add_task("nodes Ready", total=n)
        while not run.stop_reason:
            items = (await nodes_rc.list(limit=1000))["items"]
            ready = sum(1 for node in items if any(
                c.get("type") == "Ready" and c.get("status") == "True"
                for c in (node.get("status") or {}).get("conditions") or []))
            bar.update(task, completed=ready)
            if ready >= n:
                run.nodes_ready_s = time.monotonic() - t0
                break
            await asyncio.sleep(max(0.5, n / 2000))
    return ready


async def ensure(rc: Any, obj: dict[str, Any]) -> None:
    try:
        await rc.create(obj)
    except ApiError as e:
        if not e.conflict:
            raise


async def poll_deployments(client: Client, run: Run) -> None:
    """Pods created and Ready, from the Deployments' status (what the
    controllers report; a LIST of every pod would be the heavier way)."""
    deps = client.resource("apps/v1", "deployments")
    created = ready = 0
    for d in (await deps.list(NAMESPACE, limit=500))["items"]:
        st = d.get("status") or {}
        created += st.get("replicas", 0)
        ready += st.get("readyReplicas", 0)
    run.created, run.ready = created, ready
    elapsed = time.time() - run.t_load
    if math.isnan(run.all_created_s) and created >= run.args.pods:
        run.all_created_s = elapsed
    if math.isnan(run.all_ready_s) and ready >= run.args.pods:
        run.all_ready_s = elapsed
    run.timeline.append((elapsed, created, ready, mem_available_mb()))


async def load(client: Client, run: Run, reader: ProbeReader) -> None:
    """Create the Deployments at the bounded rate until every pod is Ready
    or the run is stopped."""
    a = run.args
    deps = client.resource("apps/v1", "deployments")
    count = math.ceil(a.pods / a.replicas)
    interval = a.replicas / a.rate
    next_poll = next_line = 0.0
    t0 = time.monotonic()
    run.t_load = time.time()
    with progress() as bar:
        req_t = bar.add_task("pods requested", total=a.pods)
        made_t = bar.add_task("pods created", total=a.pods)
        ready_t = bar.add_task("pods Ready", total=a.pods)
        while not run.stop_reason:
            now = time.monotonic()
            if now >= next_poll:
                try:
                    await asyncio.wait_for(poll_deployments(client, run), CALL_TIMEOUT)
                except (ApiError, OSError, asyncio.TimeoutError):
                    pass
                next_poll = time.monotonic() + a.poll
                p99 = reader.p99("mutating", time.time() - 60)
                bar.update(ready_t, completed=run.ready,
                           description=f"pods Ready (mutating p99 last min {p99 * 1000:,.0f} ms)")
                bar.update(made_t, completed=run.created)
                if not console.is_terminal and time.monotonic() >= next_line:
                    # No live bars in a log file: a status line now and then.
                    next_line = time.monotonic() + 30
                    console.print(f"{time.time() - run.t_load:6.0f} s: requested "
                                  f"{run.requested:,}, created {run.created:,}, Ready "
                                  f"{run.ready:,}, mutating p99 last min {p99 * 1000:,.0f} ms, "
                                  f"available {mem_available_mb():,.0f} MB")
                if run.ready >= a.pods:
                    break
            i = run.deployments
            if i < count and now >= t0 + i * interval and \
                    run.requested - run.ready + a.replicas <= a.max_pending:
                replicas = min(a.replicas, a.pods - i * a.replicas)
                try:
                    await asyncio.wait_for(
                        deps.create(deployment_manifest(NAMESPACE, f"d-{i:05d}", replicas, "scale")), CALL_TIMEOUT)
                except (ApiError, OSError, asyncio.TimeoutError) as e:
                    run.post_errors += 1
                    if not (isinstance(e, ApiError) and e.conflict):
                        await asyncio.sleep(1.0)  # back off; the same name is retried
                        continue
                run.deployments += 1
                run.requested += replicas
                bar.update(req_t, completed=run.requested)
                continue
            await asyncio.sleep(0.05)
    if not run.stop_reason:
        run.stop("all pods Ready")
    run.t_load_end = time.time()


async def count_pods(client: Client, run: Run) -> None:
    """Exact phases of every pod in the namespace, one page at a time so
    nothing large is held."""
    path = client.resource("v1", "pods").path(NAMESPACE)
    params: dict[str, Any] = {"limit": 500}
    phases: dict[str, int] = {}
    while True:
        page = await client.request("GET", path, params=params, timeout=CALL_TIMEOUT)
        for p in page.get("items") or []:
            ph = (p.get("status") or {}).get("phase") or "?"
            phases[ph] = phases.get(ph, 0) + 1
        cont = (page.get("metadata") or {}).get("continue")
        if not cont:
            break
        params = {"limit": 500, "continue": cont}
    run.phases = phases
    run.running_exact = phases.get("Running", 0)


async def bench(run: Run, kubeconfig: Path, pids: dict[str, int], workdir: Path
                ) -> tuple[ProbeReader, ProcUsage | None]:
    a = run.args
    probe_out = workdir / "probe.txt"
    probe_out.touch()
    reader = ProbeReader(probe_out)
    watched = dict(pids, bench=os.getpid())
    guard_task = asyncio.create_task(guard(run, watched, reader))
    client = Client(load_kubeconfig(kubeconfig), max_connections=16)
    probe: subprocess.Popen[bytes] | None = None
    usage: ProcUsage | None = None
    try:
        ready = await wait_nodes(client, run, a.nodes)
        if run.stop_reason:
            console.print(f"[red]stopped while waiting for nodes ({ready:,} of {a.nodes:,} "
                          f"Ready):[/] {run.stop_reason}")
            return reader, None
        console.print(f"{a.nodes:,} nodes Ready after {run.nodes_ready_s:.1f} s")
        ns_rc = client.resource("v1", "namespaces")
        for ns in (NAMESPACE, PROBE_NAMESPACE):
            await ensure(ns_rc, {"apiVersion": "v1", "kind": "Namespace",
                                 "metadata": {"name": ns}})
        await asyncio.sleep(0.5)  # the namespaces' default ServiceAccounts
        await ensure(client.resource("v1", "configmaps"), {
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": PROBE_STATIC, "namespace": PROBE_NAMESPACE},
            "data": {"probe": "static"}})
        await ensure(client.resource("apps/v1", "deployments"),
                     deployment_manifest(PROBE_NAMESPACE, "probe-small", PROBE_PODS, "scale"))
        probe = start_probe(kubeconfig, probe_out, a.probe_interval)
        watched["probe"] = probe.pid
        run.t_baseline = time.time()
        # A few seconds of latency with the nodes only, to compare against.
        while time.time() - run.t_baseline < a.baseline and not run.stop_reason:
            await asyncio.sleep(0.2)
        with ProcUsage({n: p for n, p in watched.items() if n != "bench"}) as usage:
            if not run.stop_reason:
                await load(client, run, reader)
            run.t_load_end = run.t_load_end or time.time()
            # Hold at full size (heartbeats only) unless stopped for a limit.
            if run.stop_reason == "all pods Ready":
                t_hold = time.monotonic()
                while time.monotonic() - t_hold < a.hold and run.remaining() > a.reserve / 2 \
                        and not run.over:
                    await asyncio.sleep(0.5)
                await asyncio.wait_for(poll_deployments(client, run), CALL_TIMEOUT)
        run.mem_end = mem_available_mb()
        run.t_end = time.time()
        for name, pid in watched.items():
            with contextlib.suppress(OSError):
                run.cpu_total[name] = cpu_seconds(pid)
        if probe is not None:
            stop_process(probe)
            probe = None
        reader.poll()
        # The exact count pages through every pod: skip it if memory is the
        # problem or there is no time left for it.
        if not run.over and run.remaining() > 10:
            try:
                await asyncio.wait_for(count_pods(client, run), max(10.0, run.remaining()))
            except (ApiError, OSError, asyncio.TimeoutError) as e:
                console.print(f"[yellow]final pod count skipped: {e!r}[/]")
        return reader, usage
    finally:
        if probe is not None:
            stop_process(probe)
        guard_task.cancel()
        try:
            await guard_task
        except asyncio.CancelledError:
            pass
        await client.close()


# ------------------------------------------------------------------ report

def _ms(v: float) -> str:
    return "-" if math.isnan(v) else f"{v * 1000:,.0f}"


def _latency_rows(samples: Iterable[Sample], keys: Iterable[str], by_class: bool
                  ) -> list[tuple[str, ...]]:
    rows: list[tuple[str, ...]] = []
    samples = list(samples)
    for key in keys:
        sel = [s for s in samples if (s.cls if by_class else s.op) == key]
        v = sorted(s.seconds for s in sel)
        errs = sum(1 for s in sel if not s.ok)
        rows.append((key, f"{len(v):,}", f"{errs:,}", _ms(percentile(v, 0.5)),
                     _ms(percentile(v, 0.99)), _ms(v[-1] if v else float("nan"))))
    return rows


def _worst_window(samples: list[Sample], cls: str, window: float) -> float:
    """Highest p99 of ``cls`` over consecutive windows (Kubernetes' SLO is
    a 5-minute window; a short run uses its whole length)."""
    sel = sorted((s for s in samples if s.cls == cls), key=lambda s: s.t)
    if not sel:
        return float("nan")
    worst, start = 0.0, sel[0].t
    while start <= sel[-1].t:
        v = sorted(s.seconds for s in sel if start <= s.t < start + window)
        if v:
            worst = max(worst, percentile(v, 0.99))
        start += window
    return worst


def report(run: Run, reader: ProbeReader, usage: ProcUsage | None) -> None:
    a = run.args
    title = (f"scale: {a.nodes:,} nodes, {a.pods:,} pods in Deployments of {a.replicas} at "
             f"<= {a.rate:g} pods/s, <= {a.max_pending:,} pending, {a.datastore} "
             f"({machine_note()})")
    rows: list[tuple[str, str]] = [
        ("nodes Ready after", f"{run.nodes_ready_s:.1f} s"),
        ("stopped because", run.stop_reason or "-"),
        ("Deployments POSTed / pods requested",
         f"{run.deployments:,} / {run.requested:,} (POST errors {run.post_errors})"),
        ("pods created / Ready (Deployment status)", f"{run.created:,} / {run.ready:,}"),
        ("pods Running (final LIST)", f"{run.running_exact:,}  {run.phases}"
         if run.running_exact >= 0 else "not counted"),
        ("first POST -> all pods created", f"{run.all_created_s:.1f} s"),
        ("first POST -> all pods Ready", f"{run.all_ready_s:.1f} s"
         + (f"  ({a.pods / run.all_ready_s:,.0f} pods/s)" if run.all_ready_s > 0 else "")),
        ("available memory: start / lowest / end",
         f"{run.mem_start:,.0f} / {run.mem_min:,.0f} / {run.mem_end:,.0f} MB"),
    ]
    print_table(title, ["", ""], rows)
    if run.timeline:
        step = max(1, len(run.timeline) // 12)
        pts = run.timeline[::step] + ([run.timeline[-1]] if (len(run.timeline) - 1) % step else [])
        console.print("progress (s since first POST: created / Ready): " + ", ".join(
            f"{t:.0f}: {c:,}/{r:,}" for t, c, r, _ in pts))

    samples = reader.samples
    phases = [("nodes only (baseline)", run.t_baseline, run.t_load or run.t_end),
              ("during the load", run.t_load, run.t_load_end),
              ("at full size (hold)", run.t_load_end, run.t_end)]
    for label, t0, t1 in phases:
        sel = [s for s in samples if t0 and t0 <= s.t < t1]
        if not sel:
            continue
        print_table(f"API latency, {label}: {t1 - t0:,.0f} s, one mutating and one read call "
                    f"every {a.probe_interval * 1000:.0f} ms",
                    ["call", "n", "errors", "p50 ms", "p99 ms", "max ms"],
                    _latency_rows(sel, ("mutating", "get", "list"), True)
                    + _latency_rows(sel, MUTATING, False))
    loaded = [s for s in samples if run.t_load and run.t_load <= s.t < run.t_end]
    verdicts = []
    for cls, target in SLO.items():
        v = sorted(s.seconds for s in loaded if s.cls == cls)
        p99 = percentile(v, 0.99)
        worst = _worst_window(loaded, cls, 300.0)
        verdicts.append(f"{cls} p99 {_ms(p99)} ms (worst 5-min window {_ms(worst)} ms) "
                        f"<= {target:g} s {verdict(p99 <= target and worst <= target)}")
    console.print("SLO over load + hold: " + "; ".join(verdicts))

    if usage is not None:
        rows2 = []
        for name, cores, peak, end in usage.rows():
            total = f"{run.cpu_total[name]:,.0f}" if name in run.cpu_total else "-"
            rows2.append((name, f"{cores:.2f}", total,
                          f"{max(peak, run.peak_rss.get(name, 0.0)):,.0f}", f"{end:,.0f}"))
        print_table(f"processes over the {usage.t1 - usage.t0:,.0f} s load + hold "
                    f"(peak RSS includes node start-up)",
                    ["process", "CPU cores", "CPU s total", "peak RSS MB", "end RSS MB"], rows2)
    elif run.peak_rss:
        print_table("peak RSS before the load", ["process", "peak RSS MB"],
                    [(n, f"{v:,.0f}") for n, v in run.peak_rss.items()])


# -------------------------------------------------------------------- main

def _raise_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nodes", type=int, default=5000)
    ap.add_argument("--pods", type=int, default=150_000)
    ap.add_argument("--replicas", type=int, default=100, help="pods per Deployment")
    ap.add_argument("--rate", type=float, default=150.0, help="max pods asked for per second")
    ap.add_argument("--max-pending", type=int, default=3000,
                    help="max pods asked for but not yet Ready")
    ap.add_argument("--datastore", default="sqlite", choices=["memory", "sqlite"])
    ap.add_argument("--max-seconds", type=float, default=1800.0,
                    help="global time limit, start-up and shutdown included")
    ap.add_argument("--reserve", type=float, default=0.0,
                    help="seconds kept for the final count and shutdown (default: 5%% of "
                         "--max-seconds, 10-60 s)")
    ap.add_argument("--max-rss-gb", type=float, default=8.0, help="per-process RSS limit")
    ap.add_argument("--min-free-gb", type=float, default=2.0,
                    help="stop when the machine's available memory falls below this")
    ap.add_argument("--probe-interval", type=float, default=0.1)
    ap.add_argument("--baseline", type=float, default=10.0,
                    help="seconds of probing with the nodes only, before the load")
    ap.add_argument("--hold", type=float, default=30.0,
                    help="seconds of probing at full size after every pod is Ready")
    ap.add_argument("--poll", type=float, default=2.0,
                    help="seconds between reads of the Deployments' status")
    ap.add_argument("--quick", action="store_true", help="200 nodes, 2,000 pods (< 60 s)")
    ap.add_argument("--shared-components", action="store_true",
                    help="controller manager, scheduler and DNS in the server's own process, "
                         "as `pinnace server` runs them by default (else a process each)")
    ap.add_argument("--probe-worker", nargs=2, metavar=("KUBECONFIG", "OUT"),
                    help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.probe_worker:
        asyncio.run(probe_worker(args.probe_worker[0], args.probe_worker[1],
                                 args.probe_interval))
        return
    if args.quick:
        args.nodes, args.pods, args.rate = 200, 2000, 200.0
        args.baseline, args.hold, args.poll = 3.0, 5.0, 1.0
        args.max_seconds = min(args.max_seconds, 120.0)
    if not args.reserve:
        args.reserve = min(60.0, max(10.0, args.max_seconds * 0.05))
    # SIGTERM takes the Ctrl-C path, so the finally blocks stop every process.
    signal.signal(signal.SIGTERM, _raise_interrupt)
    t0 = time.monotonic()
    run = Run(args, t0, t0 + args.max_seconds, mem_start=mem_available_mb())
    reader: ProbeReader | None = None
    usage: ProcUsage | None = None
    try:
        with tempfile.TemporaryDirectory(prefix="pinnace-scale-") as tmp, \
                running_cluster(args.nodes, args.datastore, data_dir=Path(tmp) / "data",
                                shared=args.shared_components) \
                as cluster:
            console.print(f"control plane + sim up in {time.monotonic() - t0:.1f} s: "
                          f"{cluster.pids}")
            reader, usage = asyncio.run(bench(run, cluster.server.kubeconfig, cluster.pids,
                                              Path(tmp)))
    except KeyboardInterrupt:
        console.print("[red]interrupted: every process stopped[/]")
        run.stop(run.stop_reason or "interrupted")
    if reader is not None:
        report(run, reader, usage)
    console.print(f"total {time.monotonic() - t0:,.1f} s")


if __name__ == "__main__":
    main()
