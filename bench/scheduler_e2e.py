"""Scheduler throughput through the real API, against the in-process number.

    python bench/scheduler_e2e.py                 # 1,000 sim nodes, 1,000 warm-up + 2,000 pods
    python bench/scheduler_e2e.py --nodes 5000    # scheduler_perf SchedulingBasic's node count
    python bench/scheduler_e2e.py --quick         # 100 nodes, 100 + 200 pods (< 30 s)
    python bench/scheduler_e2e.py --py-spy /tmp/sched.txt [--py-spy-proc apiserver]

The shape of scheduler_perf "SchedulingBasic", smaller: ``pinnace server``
(API server, controller manager, scheduler processes) and one ``pinnace sim``
with N nodes of 4 cpu / 32Gi / 110 pods, the pods of
bench/scheduler_throughput.py (100m cpu, 500Mi, no controller). A warm-up
batch is created and bound first; then the measured pods are POSTed by a
concurrent creator in its own process (bench/_load.py) while a watch in this
process records when each pod is first seen with spec.nodeName set. Pods
bound per second = measured pods / (last binding - first binding) as the
watch saw them. In the same run, before the cluster starts,
scheduler_throughput's in-process loop (no HTTP) schedules the same number of
pods on the same node count after the same warm-up; the ratio API/in-process
says how much of the scheduler's own speed survives the API round trips.
"""

from __future__ import annotations

import argparse
import asyncio
import threading
import time
from typing import Any

from _common import (
    ProcUsage,
    console,
    machine_note,
    percentile,
    print_table,
    progress,
    py_spy,
    running_cluster,
    wait_nodes_ready,
)
from _load import create_objects
from scheduler_throughput import build, run_loop
from scheduler_throughput import make_pod as lib_pod

from pinnace.client import Client, load_kubeconfig
from pinnace.client.rest import ApiError

WARM_NS, MEASURED_NS = "sched-warm", "sched"


def sched_pod(namespace: str, name: str, index: int) -> dict[str, Any]:
    """A bare pod like scheduler_throughput.make_pod, as a client would POST it."""
    pod = lib_pod(index)
    pod["metadata"] = {"name": name, "namespace": namespace, "labels": {"app": "sched-bench"}}
    del pod["status"]
    return pod


def in_process(nodes: int, warmup: int, pods: int) -> float:
    """Pods/s of the scheduling loop alone, same node count and warm-up."""
    profile, cache = build(nodes, warmup, seed=1)
    placed, secs = run_loop(profile, cache, [lib_pod(i) for i in range(pods)])
    return placed / secs if secs else float("inf")


class BindWatch:
    """A watch on all pods in a thread of its own (the creator blocks this
    process's main thread), recording when each pod is first seen and when
    first seen bound."""

    def __init__(self, kubeconfig: Any):
        self.kubeconfig = kubeconfig
        self.added: dict[str, float] = {}
        self.bound: dict[str, float] = {}
        self.error = ""
        self.synced = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self._thread = threading.Thread(target=self._main, daemon=True)

    def _main(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._task = self._loop.create_task(self._run())
        try:
            self._loop.run_until_complete(self._task)
        except asyncio.CancelledError:
            pass
        finally:
            self._loop.close()

    async def _run(self) -> None:
        client = Client(load_kubeconfig(self.kubeconfig), max_connections=4)
        rc = client.resource("v1", "pods")
        try:
            rv = (await rc.list())["metadata"]["resourceVersion"]
            self.synced.set()
            while True:
                async for type_, pod in rc.watch(resource_version=rv, timeout_seconds=600):
                    meta = pod["metadata"]
                    rv = meta.get("resourceVersion") or rv
                    if type_ == "BOOKMARK":
                        continue
                    now = time.monotonic()
                    key = f"{meta.get('namespace')}/{meta['name']}"
                    self.added.setdefault(key, now)
                    if (pod.get("spec") or {}).get("nodeName") and key not in self.bound:
                        self.bound[key] = now
        except ApiError as e:
            self.error = f"watch ended: {e}"
        finally:
            self.synced.set()
            await client.close()

    def start(self) -> None:
        self._thread.start()
        if not self.synced.wait(30):
            raise RuntimeError("pod watch did not start")

    def stop(self) -> None:
        if self._loop is not None and self._task is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._task.cancel)
        self._thread.join(10)

    def count_bound(self, namespace: str) -> int:
        prefix = namespace + "/"
        return sum(1 for k in list(self.bound) if k.startswith(prefix))

    def wait_bound(self, namespace: str, n: int, timeout: float, label: str) -> bool:
        deadline = time.monotonic() + timeout
        with progress() as bar:
            task = bar.add_task(label, total=n)
            while time.monotonic() < deadline:
                done = self.count_bound(namespace)
                bar.update(task, completed=done)
                if done >= n:
                    return True
                time.sleep(0.1)
        return False


def setup(kubeconfig: Any, nodes: int) -> float:
    async def go() -> float:
        client = Client(load_kubeconfig(kubeconfig), max_connections=8)
        try:
            secs = await wait_nodes_ready(client, nodes)
            for ns in (WARM_NS, MEASURED_NS):
                try:
                    await client.resource("v1", "namespaces").create(
                        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
                except ApiError as e:
                    if not e.conflict:
                        raise
            return secs
        finally:
            await client.close()
    return asyncio.run(go())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nodes", type=int, default=1000)
    ap.add_argument("--pods", type=int, default=3000, help="pods in all, warm-up included")
    ap.add_argument("--warmup", type=int, default=1000, help="pods bound before measuring")
    ap.add_argument("-c", "--concurrency", type=int, default=64, help="concurrent creates")
    ap.add_argument("--procs", type=int, default=1, help="creator processes")
    ap.add_argument("--timeout", type=float, default=120.0, help="max seconds per phase")
    ap.add_argument("--datastore", default="memory", choices=["memory", "sqlite"])
    ap.add_argument("--quick", action="store_true", help="100 nodes, 100 + 200 pods")
    ap.add_argument("--py-spy", default="", metavar="OUT",
                    help="record one process with py-spy during the measured phase")
    ap.add_argument("--py-spy-proc", default="scheduler",
                    choices=["apiserver", "controller-manager", "scheduler", "sim"])
    args = ap.parse_args()
    if args.quick:
        args.nodes, args.pods, args.warmup, args.timeout = 100, 300, 100, 20.0
    measured = args.pods - args.warmup
    console.print(f"[bold]scheduler_e2e[/]: {args.nodes:,} nodes, {args.warmup:,} warm-up + "
                  f"{measured:,} measured pods, C={args.concurrency}  ({machine_note()})")
    with console.status("in-process scheduling loop (scheduler_throughput)..."):
        lib_rate = in_process(args.nodes, args.warmup, measured)

    sim_args = ["--cpu", "4", "--memory", "32Gi", "--pods", "110"]
    with running_cluster(args.nodes, args.datastore, sim_args) as cluster:
        server = cluster.server
        ready_s = setup(server.kubeconfig, args.nodes)
        console.print(f"{args.nodes:,} nodes Ready after {ready_s:.1f} s")
        watch = BindWatch(server.kubeconfig)
        watch.start()
        try:
            warm = create_objects(server.url, server.data_dir, f"/api/v1/namespaces/{WARM_NS}/pods",
                                  WARM_NS, sched_pod, args.warmup, args.concurrency, args.procs,
                                  label="warm-up pods")
            if not watch.wait_bound(WARM_NS, warm.n_ok, args.timeout, "warm-up bound"):
                console.print("[red]warm-up pods not all bound in time[/]")
            with ProcUsage(cluster.pids) as usage, \
                    py_spy(cluster.pids[args.py_spy_proc], args.py_spy):
                load = create_objects(server.url, server.data_dir,
                                      f"/api/v1/namespaces/{MEASURED_NS}/pods", MEASURED_NS,
                                      sched_pod, measured, args.concurrency, args.procs,
                                      label="measured pods")
                complete = watch.wait_bound(MEASURED_NS, load.n_ok, args.timeout, "bound")
        finally:
            watch.stop()

    prefix = MEASURED_NS + "/"
    binds = sorted(t for k, t in watch.bound.items() if k.startswith(prefix))
    span = binds[-1] - binds[0] if len(binds) > 1 else 0.0
    rate = (len(binds) - 1) / span if span else 0.0
    lat = sorted(watch.bound[k] - watch.added[k] for k in watch.bound
                 if k.startswith(prefix) and k in watch.added)
    rows = [
        ("pods created (measured)", f"{load.n_ok:,} ok, {load.n_err} errors, "
         f"{load.per_s:,.0f} creates/s, p99 {load.p99_ms:,.0f} ms"),
        ("pods bound (seen by the watch)", f"{len(binds):,}" + ("" if complete else
                                                                " [red](timed out)[/]")),
        ("first -> last binding", f"{span:.2f} s"),
        ("bound/s through the API", f"[bold]{rate:,.0f}[/]"),
        ("in-process loop (scheduler_throughput)", f"{lib_rate:,.0f} pods/s"),
        ("API / in-process", f"[bold]{rate / lib_rate:.1%}[/]" if lib_rate else "-"),
        ("watch ADDED -> bound p50 / p99", f"{percentile(lat, 0.5) * 1000:,.0f} / "
         f"{percentile(lat, 0.99) * 1000:,.0f} ms"),
        ("creator CPU", f"{load.client_cores:.2f} cores"),
    ]
    if warm.n_err or load.first_error:
        rows.append(("first create error", load.first_error or "(warm-up)"))
    if watch.error:
        rows.append(("watch", watch.error))
    print_table(f"scheduler through the API: {args.nodes:,} nodes, {args.datastore} "
                f"({machine_note()})", ["what", "measured"], rows)
    print_table(f"processes over the {usage.t1 - usage.t0:.1f} s measured phase",
                ["process", "CPU cores", "peak RSS MB", "end RSS MB"],
                [(n, f"{c:.2f}", f"{p:.0f}", f"{e:.0f}") for n, c, p, e in usage.rows()])
    console.print(f"busiest process: {usage.busiest()}")


if __name__ == "__main__":
    main()
