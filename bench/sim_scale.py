"""Simulated nodes at scale: how much one `pinnace sim` process costs.

    python bench/sim_scale.py                 # 1,000 nodes, 20 pods/node... see flags
    python bench/sim_scale.py --quick         # 200 nodes, 1,000 pods, 10 s window (< 30 s)
    python bench/sim_scale.py -n 5000 --pods 0 --window 30

Starts an API server (memory store unless --datastore), runs SimNodes for N
nodes in this process and reports: registration time (Node + Lease each),
the simulator's RSS before/after, then a steady-state window in which only
heartbeats happen (Lease renewals every 10 s, spread over the period):
renewals/s, CPU of the simulator and of the API server. With --pods P it
then creates P pods, binds them round-robin (no scheduler runs) and times
until the simulator has reported all of them Running.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
from pathlib import Path

from _common import (
    console,
    cpu_seconds,
    machine_note,
    own_cpu_seconds,
    pod_manifest,
    print_table,
    rss_mb,
    running_server,
)

from pinnace.client import Client, load_kubeconfig
from pinnace.kubelet.sim import SimNodes, node_names

NAMESPACE = "bench-sim"


async def bench(kubeconfig: Path, server_pid: int, n: int, pods: int, window: float,
                concurrency: int) -> list[tuple[str, str]]:
    rows: list[tuple[str, str]] = []
    rss0 = rss_mb(os.getpid())
    client = Client(load_kubeconfig(kubeconfig), max_connections=64)
    sim = SimNodes(client, node_names(n, "bench-sim-"))
    t0 = time.monotonic()
    task = asyncio.create_task(sim.run())
    await sim.ready.wait()
    reg = time.monotonic() - t0
    rows.append(("nodes registered (Node + Lease)", f"{n:,} in {reg:.1f} s "
                 f"({n / reg:,.0f}/s)"))
    rows.append(("simulator RSS before / after", f"{rss0:.0f} MB / {rss_mb(os.getpid()):.0f} MB"))

    def lease_rvs() -> int:
        return sum(1 for node in sim.nodes.values() if node.lease is not None)

    renewed: dict[str, str] = {name: (node.lease or {}).get("metadata", {})
                               .get("resourceVersion", "") for name, node in sim.nodes.items()}
    cpu_sim, cpu_srv, t1 = own_cpu_seconds(), cpu_seconds(server_pid), time.monotonic()
    await asyncio.sleep(window)
    dt = time.monotonic() - t1
    d_sim, d_srv = own_cpu_seconds() - cpu_sim, cpu_seconds(server_pid) - cpu_srv
    moved = sum(1 for name, node in sim.nodes.items()
                if (node.lease or {}).get("metadata", {}).get("resourceVersion", "")
                != renewed[name])
    rows.append((f"steady state, {dt:.0f} s window", f"{moved:,} of {n:,} leases renewed, "
                 f"{lease_rvs():,} held"))
    rows.append(("CPU simulator / API server", f"{d_sim / dt:.2f} / {d_srv / dt:.2f} cores"))
    rows.append(("per 1,000 nodes: sim RSS, sim CPU",
                 f"{(rss_mb(os.getpid()) - rss0) * 1000 / n:.0f} MB, "
                 f"{d_sim / dt * 1000 / n:.3f} cores"))

    if pods:
        nodes = list(sim.nodes)
        pods_rc = client.resource("v1", "pods")
        try:
            await client.resource("v1", "namespaces").create(
                {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}})
        except Exception:
            pass
        sem = asyncio.Semaphore(concurrency)

        async def one(i: int) -> None:
            async with sem:
                name = f"p-{i}"
                await pods_rc.create(pod_manifest(NAMESPACE, name, i))
                await pods_rc.create_subresource(name, "binding", {
                    "apiVersion": "v1", "kind": "Binding", "metadata": {"name": name},
                    "target": {"apiVersion": "v1", "kind": "Node", "name": nodes[i % n]}},
                    NAMESPACE)

        cpu_sim, t2 = own_cpu_seconds(), time.monotonic()
        await asyncio.gather(*(one(i) for i in range(pods)))
        created = time.monotonic() - t2
        while sum(1 for p in sim.pod_informer.objects(NAMESPACE)
                  if p["status"].get("phase") == "Running") < pods:
            await asyncio.sleep(0.2)
        done = time.monotonic() - t2
        rows.append(("pods created + bound", f"{pods:,} in {created:.1f} s"))
        rows.append(("all Running (seen by the simulator)", f"after {done:.1f} s "
                     f"({pods / done:,.0f} pods/s), sim CPU "
                     f"{(own_cpu_seconds() - cpu_sim) / done:.2f} cores"))
        rows.append(("simulator RSS with pods", f"{rss_mb(os.getpid()):.0f} MB"))
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        pass
    await client.close()
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("-n", "--nodes", type=int, default=1000)
    ap.add_argument("--pods", type=int, default=5000)
    ap.add_argument("--window", type=float, default=30.0, help="steady-state seconds")
    ap.add_argument("-c", "--concurrency", type=int, default=32)
    ap.add_argument("--datastore", default="memory")
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    if args.quick:
        args.nodes, args.pods, args.window = 200, 1000, 10.0
    with tempfile.TemporaryDirectory(prefix="pinnace-bench-") as tmp, \
            running_server(args.datastore, Path(tmp)) as server:
        rows = asyncio.run(bench(server.kubeconfig, server.pid, args.nodes, args.pods,
                                 args.window, args.concurrency))
        rows.append(("API server RSS", f"{server.rss_mb():.0f} MB"))
    print_table(f"pinnace sim: {args.nodes:,} nodes ({machine_note()})", ["what", "measured"],
                rows)
    console.print("Lease renewal period 10 s; node status only on change or every 5 min.")


if __name__ == "__main__":
    main()
