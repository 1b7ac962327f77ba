"""Scheduler throughput as upstream's scheduler_perf SchedulingBasic measures it.

    python bench/scheduler_perf.py                  # 5,000 nodes, 1,000 warm-up + 10,000 pods
    python bench/scheduler_perf.py --workers 2      # the API server in two processes
    python bench/scheduler_perf.py --quick          # 500 nodes, 100 + 1,000 pods (< 40 s)

The setup of SchedulingBasic: an API server and the scheduler, nothing else
(no controller manager, no kubelets: nodes are Node objects with 4 cpu /
32Gi / 110 pods, created through the API), pods of 100m cpu / 500Mi. The
warm-up pods are created and bound first. Then two measured phases:

- concurrent: the pods are POSTed by a creator process (64 at a time) while
  the scheduler binds them, as scheduler_perf's createPods does;
- backlog: the scheduler is paused (SIGSTOP) while the pods are created, then
  resumed: the rate at which it binds pods that are already waiting, which is
  the scheduler's own speed through the API without the creates competing for
  the API server.

Pods bound per second = pods / (first -> last binding seen by a watch).
Upstream kube-scheduler's floor for this case is 270 pods/s and it measures
about 1,300 pods/s; the in-process loop (scheduler_throughput.py) on the same
nodes is the baseline measured in the same run.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _common import (
    REPO,
    ProcUsage,
    console,
    machine_note,
    print_table,
    py_spy,
    start_server,
    stop_process,
    worker_pids,
)
from _load import create_objects
from scheduler_e2e import BindWatch, in_process, sched_pod
from scheduler_throughput import make_node

from pinnace.client import Client, load_kubeconfig
from pinnace.client.rest import ApiError

WARM_NS, CONCURRENT_NS, BACKLOG_NS = "perf-warm", "perf-concurrent", "perf-backlog"


def node_body(namespace: str, name: str, index: int) -> dict[str, Any]:
    node = make_node(index)
    node["status"]["conditions"] = [{"type": "Ready", "status": "True", "reason": "KubeletReady",
                                     "message": "kubelet is posting ready status"}]
    return node


def start_scheduler(kubeconfig: Path, log: Path) -> subprocess.Popen[bytes]:
    with log.open("w") as logf:
        return subprocess.Popen(
            [sys.executable, "-m", "pinnace.cli.main", "scheduler", "--kubeconfig",
             str(kubeconfig), "--leader-elect=false"],
            stdout=logf, stderr=subprocess.STDOUT, cwd=REPO, start_new_session=True)


def namespaces(kubeconfig: Path) -> None:
    async def go() -> None:
        client = Client(load_kubeconfig(kubeconfig), max_connections=4)
        try:
            for ns in (WARM_NS, CONCURRENT_NS, BACKLOG_NS):
                try:
                    await client.resource("v1", "namespaces").create(
                        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
                except ApiError as e:
                    if not e.conflict:
                        raise
        finally:
            await client.close()
    asyncio.run(go())


def rate(watch: BindWatch, namespace: str) -> tuple[int, float, float]:
    """(pods bound, first -> last binding seconds, pods/s) in ``namespace``."""
    binds = sorted(t for k, t in watch.bound.items() if k.startswith(namespace + "/"))
    span = binds[-1] - binds[0] if len(binds) > 1 else 0.0
    return len(binds), span, (len(binds) - 1) / span if span else 0.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nodes", type=int, default=5000)
    ap.add_argument("--warmup", type=int, default=1000)
    ap.add_argument("--pods", type=int, default=10_000, help="measured pods per phase")
    ap.add_argument("-c", "--concurrency", type=int, default=64)
    ap.add_argument("--workers", type=int, default=1, help="API server worker processes")
    ap.add_argument("--datastore", default="sqlite", choices=["memory", "sqlite"])
    ap.add_argument("--timeout", type=float, default=300.0, help="max seconds per phase")
    ap.add_argument("--quick", action="store_true", help="500 nodes, 100 + 1,000 pods")
    ap.add_argument("--py-spy", default="", metavar="OUT",
                    help="record a process with py-spy in the backlog phase")
    ap.add_argument("--py-spy-proc", default="scheduler", choices=["scheduler", "apiserver"])
    args = ap.parse_args()
    if args.quick:
        args.nodes, args.warmup, args.pods, args.timeout = 500, 100, 1000, 60.0
    if args.datastore == "memory":
        args.workers = 1
    console.print(f"[bold]scheduler_perf[/]: {args.nodes:,} nodes, {args.warmup:,} warm-up + "
                  f"{args.pods:,} pods per phase, {args.datastore}, {args.workers} API "
                  f"worker(s)  ({machine_note()})")
    with console.status("in-process scheduling loop (scheduler_throughput)..."):
        lib_rate = in_process(args.nodes, args.warmup, args.pods)

    with contextlib.ExitStack() as stack:
        data_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="pinnace-bench-")))
        server = start_server(data_dir, "--datastore", args.datastore, "--workers",
                              str(args.workers), timeout=60)
        stack.callback(server.stop)
        kubeconfig = server.kubeconfig
        namespaces(kubeconfig)
        nodes = create_objects(server.url, data_dir, "/api/v1/nodes", "", node_body, args.nodes,
                               args.concurrency, label="nodes")
        sched = start_scheduler(kubeconfig, data_dir / "scheduler.log")
        stack.callback(stop_process, sched)
        watch = BindWatch(kubeconfig)
        watch.start()
        stack.callback(watch.stop)

        def pods(ns: str, label: str) -> Any:
            return create_objects(server.url, data_dir, f"/api/v1/namespaces/{ns}/pods", ns,
                                  sched_pod, args.pods if ns != WARM_NS else args.warmup,
                                  args.concurrency, label=label)

        warm = pods(WARM_NS, "warm-up pods")
        watch.wait_bound(WARM_NS, warm.n_ok, args.timeout, "warm-up bound")
        pids = {"apiserver": server.pid, "scheduler": sched.pid}
        if args.workers > 1:  # the workers do the API server's work
            pids = {"scheduler": sched.pid, **{f"apiserver-{i}": p for i, p in
                                                sorted(worker_pids(server.pid).items())}}
        with ProcUsage(pids) as concurrent_usage:
            concurrent = pods(CONCURRENT_NS, "concurrent: creating")
            watch.wait_bound(CONCURRENT_NS, concurrent.n_ok, args.timeout, "concurrent: bound")
        os.kill(sched.pid, signal.SIGSTOP)
        try:
            backlog = pods(BACKLOG_NS, "backlog: creating (scheduler paused)")
        finally:
            os.kill(sched.pid, signal.SIGCONT)
        with ProcUsage(pids) as backlog_usage, py_spy(pids[args.py_spy_proc], args.py_spy):
            watch.wait_bound(BACKLOG_NS, backlog.n_ok, args.timeout, "backlog: bound")
        time.sleep(0.2)

    rows = [("nodes created", f"{nodes.n_ok:,} ({nodes.per_s:,.0f}/s)"),
            ("in-process loop (baseline)", f"{lib_rate:,.0f} pods/s")]
    for label, ns, load, usage in (("concurrent", CONCURRENT_NS, concurrent, concurrent_usage),
                                   ("backlog", BACKLOG_NS, backlog, backlog_usage)):
        n, span, r = rate(watch, ns)
        cpu = ", ".join(f"{name} {c:.2f}" for name, c, _, _ in usage.rows())
        rows += [(f"{label}: pods bound", f"{n:,} of {load.n_ok:,} in {span:.1f} s"),
                 (f"{label}: bound/s", f"[bold]{r:,.0f}[/] ({r / lib_rate:.0%} of in-process)"
                  if lib_rate else f"{r:,.0f}"),
                 (f"{label}: CPU cores", cpu)]
    rows.append(("creates/s while binding (concurrent)", f"{concurrent.per_s:,.0f}"))
    print_table(f"SchedulingBasic-like: {args.nodes:,} nodes", ["what", "measured"], rows)
    # The concurrent phase is what SchedulingBasic measures.
    _, _, measured = rate(watch, CONCURRENT_NS)
    console.print(f"target >= 1,500 pods/s: {'meets' if measured >= 1500 else 'misses'} "
                  f"({measured:,.0f}/s while creating); upstream's floor 270/s "
                  f"{'meets' if measured >= 270 else 'misses'}")


if __name__ == "__main__":
    main()
