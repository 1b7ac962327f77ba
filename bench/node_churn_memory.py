"""The node agent's memory over pod churn: does RSS come back?

    sudo python bench/node_churn_memory.py                 # 30 rounds of 20 pods (~2 min)
    sudo python bench/node_churn_memory.py --quick         # 4 rounds of 5 pods
    sudo python bench/node_churn_memory.py --host-network --no-token   # the leanest pod

Needs root and the packages scripts/test.sh installs. Starts `pinnace
server` with its agent in a temp data dir, imports the busybox test image,
then in rounds creates N pods at once (`sleep`), waits until all run,
deletes them and waits until they are gone from the API. A second later
it reads the agent's RSS, open file descriptors and threads from /proc, and
counts the containers still running (their pods gone: the teardown the
agent has not got to yet, each holding its per-pod state).

The baseline, in the same run, is the agent after the first round (its
connections, threads and caches warmed up): the figure is the RSS gained
since then per pod churned. A node that runs pods for weeks must come back
to where it was, so the target is growth that flattens out, not a fixed
number; `--rounds 60` (1,200 pods) shows the trend.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _common import child_pids, console, machine_note, print_table, progress, rss_mb, start_server
from node_pod_start import (
    NAMESPACE,
    build_image,
    delete_batch,
    free_port,
    pinnace_processes,
    stop_node,
    wait_node_ready,
)

from pinnace.client import Client, load_kubeconfig


async def run_batch(kubeconfig: Path, n: int, batch: str, extra_spec: dict[str, Any]) -> None:
    """n pods created at once; returns once all of them run."""
    async with Client(load_kubeconfig(kubeconfig)) as client:
        pods = client.resource("v1", "pods")
        await asyncio.gather(*(pods.create({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": f"{batch}-{i}", "labels": {"batch": batch}},
            "spec": {"terminationGracePeriodSeconds": 0, **extra_spec,
                     "containers": [{"name": "c", "image": "busybox:1.36",
                                     "command": ["sleep", "3600"]}]}}, NAMESPACE)
            for i in range(n)))
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            items = (await pods.list(NAMESPACE, label_selector=f"batch={batch}"))["items"]
            if sum(1 for p in items if (p.get("status") or {}).get("phase") == "Running") == n:
                return
            await asyncio.sleep(0.2)
        raise RuntimeError(f"{batch}: not all {n} pods running after 120 s")


def agent_pid(server_pid: int) -> int:
    return child_pids(server_pid).get("agent", 0)


def containers(server_pid: int) -> int:
    """Containers running on the node: their conmon monitors under the agent."""
    n = 0
    for p in pinnace_processes(server_pid)[1]:
        try:
            n += Path(f"/proc/{p}/comm").read_text().strip() == "conmon"
        except OSError:
            continue
    return n


def count(path: str) -> int:
    try:
        return len(os.listdir(path))
    except OSError:
        return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="4 rounds of 5 pods")
    ap.add_argument("--rounds", type=int, default=0, help="rounds (default 30)")
    ap.add_argument("--pods", type=int, default=0, help="pods per round (default 20)")
    ap.add_argument("--host-network", action="store_true", help="pods on the host's network")
    ap.add_argument("--no-token", action="store_true",
                    help="no service-account token volume (automountServiceAccountToken: false)")
    args = ap.parse_args()
    if os.geteuid() != 0:
        console.print("node_churn_memory: needs root (the node agent makes namespaces and "
                      "mounts); skipped")
        return 0
    rounds = args.rounds or (4 if args.quick else 30)
    per = args.pods or (5 if args.quick else 20)
    extra: dict[str, Any] = {}
    if args.host_network:
        extra["hostNetwork"] = True
    if args.no_token:
        extra["automountServiceAccountToken"] = False
    archive = build_image()
    data = Path(tempfile.mkdtemp(prefix="pinnace-churn-bench-"))
    subprocess.run([sys.executable, "-m", "pinnace.cli.main", "image", "import", "--data-dir",
                    str(data), str(archive)], check=True, capture_output=True)
    server = start_server(data, "--kubelet-port", str(free_port()), command="server", timeout=60)
    # (pods churned, RSS MB, fds, threads, containers left running)
    samples: list[tuple[int, float, int, int, int]] = []
    try:
        asyncio.run(wait_node_ready(server.kubeconfig))
        time.sleep(2)
        pid = agent_pid(server.pid)
        idle = rss_mb(pid)
        with progress() as bar:
            task = bar.add_task("churn rounds", total=rounds)
            for r in range(rounds):
                asyncio.run(run_batch(server.kubeconfig, per, f"churn{r}", extra))
                asyncio.run(delete_batch(server.kubeconfig, f"churn{r}"))
                time.sleep(1)
                samples.append(((r + 1) * per, rss_mb(pid), count(f"/proc/{pid}/fd"),
                                count(f"/proc/{pid}/task"), containers(server.pid)))
                bar.advance(task)
    finally:
        stop_node(server, data)
    base_pods, base_rss = samples[0][0], samples[0][1]
    rows: list[list[Any]] = [["idle", "", f"{idle:.1f}", "", "", "", ""]]
    step = max(1, len(samples) // 10)
    for i, (pods, rss, fds, threads, left) in enumerate(samples):
        if i % step and i != len(samples) - 1:
            continue
        growth = (rss - base_rss) * 1024 / (pods - base_pods) if pods > base_pods else 0.0
        rows.append([i + 1, pods, f"{rss:.1f}", f"{growth:.1f}" if i else "(baseline)",
                     fds, threads, left])
    kind = ", ".join(k for k, on in (("host network", args.host_network),
                                     ("no token", args.no_token)) if on) or "pod network, token"
    print_table(f"Agent memory over pod churn ({machine_note()}; {per} pods a round; {kind})",
                ["round", "pods churned", "agent RSS MB", "KB per pod since round 1",
                 "open fds", "threads", "containers left"], rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
