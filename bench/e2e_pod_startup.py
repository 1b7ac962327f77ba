"""End-to-end pod startup: pods created by Deployments to Running on simulated nodes.

    python bench/e2e_pod_startup.py                  # 1,000 nodes, 100 pods/s for 30 s
    python bench/e2e_pod_startup.py --quick          # 100 nodes, 20 pods/s for 5 s (< 30 s)
    python bench/e2e_pod_startup.py --datastore sqlite --rate 50 --duration 60
    python bench/e2e_pod_startup.py --py-spy /tmp/e2e.txt --py-spy-proc apiserver

Starts ``pinnace server`` (API server, controller manager and scheduler as
processes) and one ``pinnace sim --nodes N``, waits for every node to be
Ready, then churns: every ``replicas/rate`` seconds it creates a Deployment
of ``replicas`` pods and deletes the one created ``--keep`` seconds before
(background propagation: the GC removes its ReplicaSet and pods, the
simulator finishes their deletion). A watch on the namespace's pods records,
per pod, when its ADDED event arrived and when it was first seen Running.

Reports, per pod, (a) watch-observed ADDED -> Running, (b) creationTimestamp
-> first seen Running, and (c) server timestamps only: creationTimestamp ->
Ready condition lastTransitionTime (both 1 s resolution); p50/p99/max, pods
created and Running per second, and CPU cores / RSS of each process. Target
(the issue): p99 <= 2 s at 100 pods/s churn on 1,000 nodes.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import time
from dataclasses import dataclass
from typing import Any

from _common import (
    ProcUsage,
    console,
    deployment_manifest,
    machine_note,
    percentile,
    print_table,
    progress,
    py_spy,
    running_cluster,
    verdict,
    wait_nodes_ready,
)

from pinnace.client import Client, load_kubeconfig
from pinnace.client.rest import ApiError

NAMESPACE = "e2e"
TARGET_P99 = 2.0


@dataclass
class PodTimes:
    added: float  # time.time() when the first event for the pod arrived
    created: float = 0.0  # metadata.creationTimestamp (1 s resolution)
    running: float = 0.0  # time.time() when first seen with phase Running
    ready_ltt: float = 0.0  # Ready condition lastTransitionTime (1 s resolution)
    deleted: bool = False


def _epoch(ts: str | None) -> float:
    if not ts:
        return 0.0
    return dt.datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp()


class PodWatch:
    """Follows the namespace's pods from a resourceVersion, recording times."""

    def __init__(self, client: Client, rv: str):
        self.rc = client.resource("v1", "pods")
        self.rv = rv
        self.pods: dict[str, PodTimes] = {}
        self.names: dict[str, str] = {}  # uid -> pod name (generateName <rs>-<hash>-)
        self.running = 0
        self.error = ""

    def _seen(self, type_: str, pod: dict[str, Any]) -> None:
        now = time.time()
        meta, status = pod["metadata"], pod.get("status") or {}
        uid = meta.get("uid") or meta["name"]
        t = self.pods.get(uid)
        if t is None:
            t = self.pods[uid] = PodTimes(added=now, created=_epoch(meta.get("creationTimestamp")))
            self.names[uid] = meta["name"]
        if type_ == "DELETED" or meta.get("deletionTimestamp"):
            t.deleted = True
        if not t.running and status.get("phase") == "Running":
            t.running = now
            self.running += 1
            for c in status.get("conditions") or []:
                if c.get("type") == "Ready" and c.get("status") == "True":
                    t.ready_ltt = _epoch(c.get("lastTransitionTime"))

    async def run(self) -> None:
        while True:
            try:
                async for type_, obj in self.rc.watch(NAMESPACE, resource_version=self.rv,
                                                      timeout_seconds=600):
                    self.rv = obj["metadata"].get("resourceVersion") or self.rv
                    if type_ != "BOOKMARK":
                        self._seen(type_, obj)
            except ApiError as e:
                self.error = f"watch ended: {e}"
                return


async def churn(client: Client, watch: PodWatch, rate: float, duration: float, replicas: int,
                keep: float, grace: float, posted: dict[str, float]
                ) -> tuple[float, float, int, int]:
    """Run the create/delete schedule, noting in ``posted`` when each
    Deployment's POST was sent (time.time()); (load seconds, drain seconds,
    deployments created, create/delete errors)."""
    deps = client.resource("apps/v1", "deployments")
    interval = replicas / rate
    count = max(1, round(duration * rate / replicas))
    lag = max(1, round(keep / interval))
    errors = 0
    pending: set[asyncio.Task[Any]] = set()

    async def call(coro: Any) -> None:
        nonlocal errors
        try:
            await coro
        except (ApiError, OSError, asyncio.TimeoutError):
            errors += 1

    def spawn(coro: Any) -> None:
        task = asyncio.create_task(call(coro))
        pending.add(task)
        task.add_done_callback(pending.discard)

    total = count * replicas
    with progress() as bar:
        created_t = bar.add_task("pods created", total=total)
        running_t = bar.add_task("pods Running", total=total)
        t0 = time.monotonic()
        for i in range(count):
            due = t0 + i * interval
            while (wait := due - time.monotonic()) > 0:
                await asyncio.sleep(min(wait, 0.2))
                bar.update(created_t, completed=len(watch.pods))
                bar.update(running_t, completed=watch.running)
            posted[f"d-{i:05d}"] = time.time()
            spawn(deps.create(deployment_manifest(NAMESPACE, f"d-{i:05d}", replicas, "e2e")))
            if i >= lag:
                spawn(deps.delete(f"d-{i - lag:05d}", NAMESPACE, propagation_policy="Background"))
        if pending:
            await asyncio.wait(set(pending), timeout=30)
        # The nominal window (count * interval), unless the creates fell behind.
        load = max(time.monotonic() - t0, count * interval)
        # Drain: bounded wait for every pod seen so far to be Running or deleted.
        t1 = time.monotonic()
        while time.monotonic() - t1 < grace:
            bar.update(created_t, completed=len(watch.pods))
            bar.update(running_t, completed=watch.running)
            if len(watch.pods) >= total and all(p.running or p.deleted
                                                for p in watch.pods.values()):
                break
            await asyncio.sleep(0.2)
    return load, time.monotonic() - t1, count, errors


def _stats(values: list[float]) -> tuple[float, float, float]:
    v = sorted(values)
    return percentile(v, 0.50), percentile(v, 0.99), (v[-1] if v else float("nan"))


async def bench(args: argparse.Namespace, kubeconfig: Any, usage_pids: dict[str, int]
                ) -> dict[str, Any]:
    client = Client(load_kubeconfig(kubeconfig), max_connections=64)
    try:
        ready_s = await wait_nodes_ready(client, args.nodes)
        console.print(f"{args.nodes:,} nodes Ready after {ready_s:.1f} s")
        try:
            await client.resource("v1", "namespaces").create(
                {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}})
        except ApiError as e:
            if not e.conflict:
                raise
        # The service account admission may wait for the namespace's default SA.
        await asyncio.sleep(0.5)
        rv = (await client.resource("v1", "pods").list(NAMESPACE))["metadata"]["resourceVersion"]
        watch = PodWatch(client, rv)
        wtask = asyncio.create_task(watch.run())
        spy_pid = usage_pids[args.py_spy_proc]
        posted: dict[str, float] = {}
        try:
            with ProcUsage(usage_pids) as usage, py_spy(spy_pid, args.py_spy):
                load, drain, count, errors = await churn(
                    client, watch, args.rate, args.duration, args.replicas, args.keep, args.grace,
                    posted)
        finally:
            wtask.cancel()
            try:
                await wtask
            except asyncio.CancelledError:
                pass
        return {"load": load, "drain": drain, "deployments": count, "errors": errors,
                "pods": watch.pods, "watch_error": watch.error, "usage": usage,
                "ready_s": ready_s, "posted": posted, "names": watch.names}
    finally:
        await client.close()


def report(args: argparse.Namespace, r: dict[str, Any]) -> None:
    pods: dict[str, PodTimes] = r["pods"]
    ran = [p for p in pods.values() if p.running]
    never = [p for p in pods.values() if not p.running]
    watch_lat = [p.running - p.added for p in ran]
    mixed = [p.running - p.created for p in ran if p.created]
    server = [p.ready_ltt - p.created for p in ran if p.ready_ltt and p.created]
    load = r["load"]
    # Deployment POST -> pod ADDED: the deployment and ReplicaSet controllers' share.
    posted: dict[str, float] = r["posted"]
    ctrl = [p.added - posted[dep] for uid, p in pods.items()
            if (dep := r["names"][uid].rsplit("-", 2)[0]) in posted]
    adds = sorted(p.added for p in pods.values())
    add_rate = (len(adds) - 1) / (adds[-1] - adds[0]) if len(adds) > 1 and adds[-1] > adds[0] \
        else 0.0
    rows: list[tuple[Any, ...]] = []
    for label, vals in (("watch: ADDED -> Running seen", watch_lat),
                        ("creationTimestamp -> Running seen", mixed),
                        ("server: creationTimestamp -> Ready lastTransitionTime", server),
                        ("Deployment POST -> pod ADDED (controllers)", ctrl),
                        ("Deployment POST -> Running seen", [
                            p.running - posted[dep] for uid, p in pods.items() if p.running
                            and (dep := r["names"][uid].rsplit("-", 2)[0]) in posted])):
        p50, p99, mx = _stats(vals)
        rows.append((label, len(vals), f"{p50 * 1000:,.0f}", f"{p99 * 1000:,.0f}",
                     f"{mx * 1000:,.0f}"))
    print_table(f"e2e pod startup: {args.nodes:,} nodes, {args.rate:g} pods/s target for "
                f"{args.duration:g} s, Deployments of {args.replicas}, each deleted after "
                f"{args.keep:g} s, {args.datastore} ({machine_note()})",
                ["latency", "pods", "p50 ms", "p99 ms", "max ms"], rows)
    console.print(f"pods created (seen by the watch) {len(pods):,} of "
                  f"{r['deployments'] * args.replicas:,} in a {load:.1f} s load window: "
                  f"{len(pods) / load:,.1f} pods/s; first -> last ADDED {add_rate:,.1f} pods/s; "
                  f"Running {len(ran):,}; never Running "
                  f"{len(never):,} (of which deleted first {sum(1 for p in never if p.deleted):,}); "
                  f"API errors {r['errors']}; drain {r['drain']:.1f} s"
                  + (f"; [red]{r['watch_error']}[/]" if r["watch_error"] else ""))
    usage: ProcUsage = r["usage"]
    print_table(f"processes over the {usage.t1 - usage.t0:.1f} s load + drain",
                ["process", "CPU cores", "peak RSS MB", "end RSS MB"],
                [(n, f"{c:.2f}", f"{p:.0f}", f"{e:.0f}") for n, c, p, e in usage.rows()])
    # creationTimestamp is truncated to the second, so the mixed number reads
    # 0-1 s high; the watch-observed one is the precise (slightly low) bound.
    p99, p99w = _stats(mixed)[1], _stats(watch_lat)[1]
    console.print(f"target p99 <= {TARGET_P99:g} s: creationTimestamp -> Running {p99:.2f} s "
                  f"{verdict(p99 <= TARGET_P99)}, watch ADDED -> Running {p99w:.2f} s "
                  f"{verdict(p99w <= TARGET_P99)}; busiest process: {usage.busiest()}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nodes", type=int, default=1000)
    ap.add_argument("--rate", type=float, default=100.0, help="pods created per second")
    ap.add_argument("--duration", type=float, default=30.0, help="seconds of load")
    ap.add_argument("--replicas", type=int, default=10, help="pods per Deployment")
    ap.add_argument("--keep", type=float, default=10.0,
                    help="seconds a Deployment lives before it is deleted")
    ap.add_argument("--grace", type=float, default=30.0,
                    help="max seconds to wait after the load for pods to be Running")
    ap.add_argument("--datastore", default="memory", choices=["memory", "sqlite"])
    ap.add_argument("--quick", action="store_true", help="100 nodes, 20 pods/s for 5 s")
    ap.add_argument("--py-spy", default="", metavar="OUT",
                    help="record one process with py-spy during the load (.txt raw, .svg)")
    ap.add_argument("--py-spy-proc", default="apiserver",
                    choices=["apiserver", "controller-manager", "scheduler", "sim"])
    args = ap.parse_args()
    if args.quick:
        args.nodes, args.rate, args.duration, args.keep, args.grace = 100, 20.0, 5.0, 2.0, 8.0
    with running_cluster(args.nodes, args.datastore) as cluster:
        r = asyncio.run(bench(args, cluster.server.kubeconfig, cluster.pids))
    report(args, r)


if __name__ == "__main__":
    main()
