"""Requests per second through a Service, next to the same load straight to the pod.

    sudo python bench/proxy_datapath.py            # 6 rounds of 3 s per target
    sudo python bench/proxy_datapath.py --quick    # 2 rounds
    sudo python bench/proxy_datapath.py --mode iptables   # the proxy's fallback

Needs root and the packages scripts/test.sh installs. Starts `pinnace server`
with its agent in a temp data dir, runs one busybox httpd pod behind a
NodePort Service, then from the node drives HTTP/1.0 requests (a new TCP
connection each, so every request takes the NAT path's first-packet
lookup) at three addresses in turn: the pod IP (the baseline, in the same
run), the ClusterIP, and the node's address with the NodePort. The order
rotates each round and the median round counts: the rate drifts as the
machine's connection tracking fills with closed connections. Each target
is driven from a source address of its own (198.18.2.10-12, a benchmarking
range, on an empty bridge the benchmark makes and removes): all three reach
the same pod port, and from one address their closed connections, lingering
in conntrack, would collide with each other's reply tuples, so the
benchmark would measure the mix rather than each path. Targets
(issue 10): ClusterIP and NodePort >= 0.9 of the pod IP's rate. All traffic
stays on this machine: pod and service ranges are routed to the guard
device before the pod exists.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import console, machine_note, print_table, progress, start_server, verdict
from node_pod_start import NAMESPACE, build_image, free_port, stop_node, wait_node_ready

SOURCE_DEV = "pn-bench-src"
SOURCES = {"pod IP (baseline)": "198.18.2.10", "ClusterIP": "198.18.2.11",
           "NodePort": "198.18.2.12"}
SERVE = "mkdir -p /www && echo ok > /www/index.html && exec httpd -f -p 8080 -h /www"
CONCURRENCY = 16


async def drive(host: str, port: int, seconds: float, source: str) -> tuple[int, int]:
    """(requests answered, errors) in ``seconds`` from CONCURRENCY clients
    at ``source``."""
    done = errors = 0
    deadline = time.monotonic() + seconds
    request = f"GET /index.html HTTP/1.0\r\nHost: {host}\r\n\r\n".encode()

    async def client() -> None:
        nonlocal done, errors
        while time.monotonic() < deadline:
            try:
                reader, writer = await asyncio.open_connection(host, port,
                                                               local_addr=(source, 0))
                writer.write(request)
                body = await reader.read()
                writer.close()
                if body.startswith(b"HTTP/1.") and b" 200 " in body[:16]:
                    done += 1
                else:
                    errors += 1
            except OSError:
                errors += 1

    await asyncio.gather(*(client() for _ in range(CONCURRENCY)))
    return done, errors


def kubectl(kubeconfig: Path, *args: str, stdin: str | None = None) -> str:
    out = subprocess.run(["kubectl", "--kubeconfig", str(kubeconfig), *args], input=stdin,
                         capture_output=True, text=True, timeout=60)
    if out.returncode:
        raise RuntimeError(f"kubectl {' '.join(args)}: {out.stderr}")
    return out.stdout


def deploy(kubeconfig: Path) -> tuple[str, str, int, str]:
    """(pod IP, ClusterIP, NodePort, node IP) once the pod is Ready and served."""
    manifest = [
        {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web", "labels": {"app": "web"}},
         "spec": {"terminationGracePeriodSeconds": 0, "containers": [{
             "name": "web", "image": "busybox:1.36", "command": ["sh", "-c", SERVE],
             "readinessProbe": {"tcpSocket": {"port": 8080}, "periodSeconds": 1}}]}},
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
         "spec": {"type": "NodePort", "selector": {"app": "web"},
                  "ports": [{"port": 80, "targetPort": 8080}]}}]
    kubectl(kubeconfig, "apply", "-n", NAMESPACE, "-f", "-",
            stdin=json.dumps({"apiVersion": "v1", "kind": "List", "items": manifest}))
    kubectl(kubeconfig, "wait", "-n", NAMESPACE, "--for=condition=Ready", "pod/web", "--timeout=60s")
    pod = json.loads(kubectl(kubeconfig, "get", "pod", "web", "-n", NAMESPACE, "-o", "json"))
    svc = json.loads(kubectl(kubeconfig, "get", "svc", "web", "-n", NAMESPACE, "-o", "json"))
    node = json.loads(kubectl(kubeconfig, "get", "nodes", "-o", "json"))["items"][0]
    node_ip = next(a["address"] for a in node["status"]["addresses"] if a["type"] == "InternalIP")
    return (pod["status"]["podIP"], svc["spec"]["clusterIP"], svc["spec"]["ports"][0]["nodePort"],
            node_ip)


def add_sources() -> None:
    remove_sources()
    subprocess.run(["ip", "link", "add", SOURCE_DEV, "type", "bridge"], check=True)
    for ip in SOURCES.values():
        subprocess.run(["ip", "addr", "add", f"{ip}/32", "dev", SOURCE_DEV], check=True)
    subprocess.run(["ip", "link", "set", SOURCE_DEV, "up"], check=True)


def remove_sources() -> None:
    subprocess.run(["ip", "link", "del", SOURCE_DEV], capture_output=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="two rounds")
    ap.add_argument("--mode", choices=["nftables", "iptables"], default="nftables",
                    help="the node proxy's mode")
    args = ap.parse_args()
    if os.geteuid() != 0:
        console.print("proxy_datapath: needs root (a real node with its proxy); skipped")
        return 0
    seconds, rounds = 3.0, 2 if args.quick else 6
    archive = build_image()
    data = Path(tempfile.mkdtemp(prefix="pinnace-proxy-bench-"))
    subprocess.run([sys.executable, "-m", "pinnace.cli.main", "image", "import", "--data-dir",
                    str(data), str(archive)], check=True, capture_output=True)
    server = start_server(data, "--kubelet-port", str(free_port()), "--proxy-mode", args.mode,
                          command="server", timeout=60)
    results: dict[str, list[float]] = {}
    try:
        add_sources()
        asyncio.run(wait_node_ready(server.kubeconfig))
        pod_ip, cluster_ip, node_port, node_ip = deploy(server.kubeconfig)
        targets = {"pod IP (baseline)": (pod_ip, 8080), "ClusterIP": (cluster_ip, 80),
                   "NodePort": (node_ip, node_port)}
        for name, (host, port) in targets.items():  # warm up; fail early if one does not answer
            ok, _ = asyncio.run(drive(host, port, 0.5, SOURCES[name]))
            if not ok:
                raise RuntimeError(f"{name} {host}:{port} does not answer")
        with progress() as bar:
            task = bar.add_task("load", total=rounds * len(targets))
            names = list(targets)
            for r in range(rounds):
                for name in names[r % 3:] + names[:r % 3]:
                    host, port = targets[name]
                    ok, errors = asyncio.run(drive(host, port, seconds, SOURCES[name]))
                    results.setdefault(name, []).append(ok / seconds)
                    if errors:
                        console.print(f"{name}: {errors} errors")
                    bar.advance(task)
    finally:
        stop_node(server, data)
        remove_sources()
    base = statistics.median(results["pod IP (baseline)"])
    rows = []
    for name, rates in results.items():
        rate = statistics.median(rates)
        ratio = rate / base
        rows.append([name, f"{rate:,.0f}", f"{min(rates):,.0f}-{max(rates):,.0f}", f"{ratio:.2f}",
                     "" if name.startswith("pod") else verdict(ratio >= 0.9)])
    print_table(f"HTTP requests/s, a new connection each, {CONCURRENCY} clients, {args.mode} "
                f"({machine_note()})",
                ["to", "requests/s (median)", "rounds' range", "vs pod IP", "target >= 0.9"], rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
