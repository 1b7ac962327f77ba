"""Start-up time and memory of an idle API server.

    python bench/idle_rss.py                      # 5 cold starts
    python bench/idle_rss.py --quick              # 2 cold starts (< 20 s)

Cold start: from just before the process is spawned to ``/readyz``
answering ok, on an empty data dir (so it includes generating the CA and
certificates). Reports min/median over the starts, and the same for a warm
restart on the data dir the workload used. RSS (VmRSS) is read right after
ready and after a small workload: 100 objects of several kinds (a
Namespace, Deployments, Services, ConfigMaps, Secrets, Pods) and a LIST of
each kind. Targets: start <= 1 s, RSS <= 100 MB.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from _common import (
    Server,
    client_session,
    console,
    machine_note,
    pod_manifest,
    print_table,
    start_server,
    verdict,
    wait_ready,
)

NAMESPACE = "bench-idle"


def deployment(i: int) -> dict[str, Any]:
    labels = {"app": f"web-{i}"}
    pod = pod_manifest(NAMESPACE, "unused", i)
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": f"web-{i}", "labels": labels},
            "spec": {"replicas": 2, "selector": {"matchLabels": labels},
                     "template": {"metadata": {"labels": labels}, "spec": pod["spec"]}}}


def service(i: int) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": f"svc-{i}"},
            "spec": {"selector": {"app": f"web-{i}"},
                     "ports": [{"name": "http", "port": 80, "targetPort": 8080}]}}


def configmap(i: int) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": f"cm-{i}"},
            "data": {"app.properties": f"key{i}=value\n" * 20}}


def secret(i: int) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": f"secret-{i}"},
            "type": "Opaque", "stringData": {"password": f"hunter{i}"}}


# (collection path, factory, count): 1 namespace + 99 objects = 100.
WORKLOAD = [
    (f"/apis/apps/v1/namespaces/{NAMESPACE}/deployments", deployment, 5),
    (f"/api/v1/namespaces/{NAMESPACE}/services", service, 10),
    (f"/api/v1/namespaces/{NAMESPACE}/configmaps", configmap, 40),
    (f"/api/v1/namespaces/{NAMESPACE}/secrets", secret, 20),
    (f"/api/v1/namespaces/{NAMESPACE}/pods", lambda i: pod_manifest(NAMESPACE, f"pod-{i}", i), 24),
]
LISTS = ["/api/v1/pods", "/api/v1/services", "/api/v1/configmaps", "/api/v1/secrets",
         "/apis/apps/v1/deployments", "/api/v1/namespaces"]


async def workload(server: Server) -> int:
    created = 0
    async with client_session(server.data_dir) as s:
        async def post(path: str, body: dict[str, Any]) -> None:
            nonlocal created
            async with s.post(server.url + path, json=body) as r:
                if r.status != 201:
                    raise RuntimeError(f"POST {path}: {r.status} {(await r.text())[:300]}")
                created += 1
        await post("/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace",
                                          "metadata": {"name": NAMESPACE}})
        await asyncio.gather(*(post(path, make(i)) for path, make, n in WORKLOAD
                               for i in range(n)))
        for path in LISTS:
            async with s.get(server.url + path) as r:
                await r.read()
    return created


def timed_start(data_dir: Path, workers: int = 1) -> tuple[Server, float]:
    server = start_server(data_dir, "--workers", str(workers))
    try:
        return server, wait_ready(server) - server.started_at
    except BaseException:
        server.stop()
        raise


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--starts", type=int, default=5, help="cold and warm starts to time")
    parser.add_argument("--quick", action="store_true", help="2 starts")
    parser.add_argument("--workers", type=int, default=1,
                        help="API server worker processes (RSS counts them all)")
    args = parser.parse_args()
    if args.quick:
        args.starts = 2
    console.print(f"[bold]idle_rss[/]: {args.starts} starts, {args.workers} worker(s) "
                  f"({machine_note()})")

    cold, warm, rss_ready = [], [], []
    with tempfile.TemporaryDirectory(prefix="pinnace-bench-idle-") as tmp:
        for i in range(args.starts):
            with console.status(f"cold start {i + 1}/{args.starts}"):
                server, seconds = timed_start(Path(tmp) / f"cold-{i}", args.workers)
                try:
                    cold.append(seconds)
                    rss_ready.append(server.rss_mb())
                finally:
                    server.stop()
        data_dir = Path(tmp) / "cold-0"
        server, _ = timed_start(data_dir, args.workers)
        try:
            with console.status("workload: 100 objects + LISTs"):
                created = asyncio.run(workload(server))
                time.sleep(0.5)  # let background work (watch cache fills) settle
                rss_after = server.rss_mb()
        finally:
            server.stop()
        for i in range(args.starts):
            with console.status(f"warm start {i + 1}/{args.starts}"):
                server, seconds = timed_start(data_dir, args.workers)
                server.stop()
                warm.append(seconds)

    med = statistics.median
    print_table("Idle API server (sqlite)", ["metric", "min", "median", "max"], [
        ["cold start to /readyz ok, s (empty data dir)", min(cold), med(cold), max(cold)],
        ["warm start to /readyz ok, s (after workload)", min(warm), med(warm), max(warm)],
        ["RSS right after ready, MB", min(rss_ready), med(rss_ready), max(rss_ready)],
        [f"RSS after {created} objects + {len(LISTS)} LISTs, MB", rss_after, rss_after,
         rss_after]])
    console.print(f"targets: cold start <= 1 s {verdict(med(cold) <= 1)}, "
                  f"RSS <= 100 MB {verdict(max(max(rss_ready), rss_after) <= 100)}")


if __name__ == "__main__":
    t0 = time.monotonic()
    main()
    console.print(f"[dim]total {time.monotonic() - t0:.1f} s[/]")
