"""LIST latency of many pods, as JSON and as a Table, against just encoding them.

    python bench/list_pods.py                     # 10,000 pods, 20 LISTs of each kind
    python bench/list_pods.py --quick             # 1,000 pods, 5 LISTs: a smoke run (< 20 s)
    python bench/list_pods.py --py-spy-table /tmp/table.txt   # profile the server's Table LISTs

Pre-loads the pods through the API (64 concurrent creates), then times
``GET /api/v1/pods`` (all namespaces) from request to the last body byte,
one request at a time over a warm keep-alive connection, with
``Accept: application/json`` and with the Table media type kubectl asks for.
Also times real ``kubectl get pods -A`` (which pages by 500 unless
``--chunk-size=0``). The baseline is ``orjson.dumps`` of the same pod dicts
in this process: what encoding alone costs. Target: <= 300 ms each.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import subprocess
import sys
import time
from typing import Any

import orjson
from _common import (
    TABLE_ACCEPT,
    Server,
    client_session,
    console,
    ensure_namespace,
    machine_note,
    percentile,
    pod_manifest,
    print_table,
    progress,
    py_spy,
    running_server,
    verdict,
)
from _load import create_objects

NAMESPACE = "bench"
KUBECTL = shutil.which("kubectl", path=os.path.dirname(sys.executable) + os.pathsep
                       + os.environ.get("PATH", "")) or "kubectl"


async def time_lists(server: Server, accept: str, reps: int, label: str,
                     profile: str, native: bool = False) -> tuple[list[float], bytes]:
    """Seconds per LIST, sorted, and the last body."""
    times: list[float] = []
    body = b""
    async with client_session(server.data_dir, limit=1) as s:
        async with s.get(f"{server.url}/readyz") as r:  # open the connection untimed
            await r.read()
        with py_spy(server.pid, profile, native=native), progress() as bar:
            task = bar.add_task(label, total=reps)
            for _ in range(reps):
                t0 = time.perf_counter()
                async with s.get(f"{server.url}/api/v1/pods", headers={"Accept": accept}) as r:
                    body = await r.read()
                    if r.status != 200:
                        raise RuntimeError(f"LIST {accept}: {r.status} {body[:300]!r}")
                times.append(time.perf_counter() - t0)
                bar.advance(task)
    return sorted(times), body


def time_kubectl(server: Server, reps: int, *extra: str) -> list[float]:
    env = dict(os.environ, KUBECONFIG=str(server.kubeconfig))
    env.pop("KUBERNETES_SERVICE_HOST", None)
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        subprocess.run([KUBECTL, "get", "pods", "-A", *extra], env=env, check=True,
                       stdout=subprocess.DEVNULL, timeout=120)
        times.append(time.perf_counter() - t0)
    return sorted(times)


def time_dumps(items: list[dict[str, Any]], reps: int) -> list[float]:
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        orjson.dumps({"kind": "PodList", "apiVersion": "v1", "items": items})
        times.append(time.perf_counter() - t0)
    return sorted(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=10_000, help="pods to pre-load")
    parser.add_argument("--reps", type=int, default=20, help="LISTs of each kind")
    parser.add_argument("--kubectl-reps", type=int, default=3)
    parser.add_argument("--datastore", default="sqlite")
    parser.add_argument("--quick", action="store_true", help="1,000 pods, 5 LISTs, 1 kubectl")
    parser.add_argument("--py-spy-json", default="", metavar="OUT",
                        help="record the server with py-spy during the JSON LISTs")
    parser.add_argument("--py-spy-table", default="", metavar="OUT",
                        help="record the server with py-spy during the Table LISTs")
    parser.add_argument("--native", action="store_true",
                        help="with --py-spy: include C frames (ssl, sqlite, orjson)")
    args = parser.parse_args()
    if args.quick:
        args.n, args.reps, args.kubectl_reps = 1_000, 5, 1
    console.print(f"[bold]list_pods[/]: {args.n:,} pods, {args.reps} LISTs each "
                  f"({machine_note()})")

    with running_server(args.datastore) as server:
        async def prepare() -> None:
            async with client_session(server.data_dir) as s:
                await ensure_namespace(s, server.url, NAMESPACE)
        asyncio.run(prepare())
        load = create_objects(server.url, server.data_dir, f"/api/v1/namespaces/{NAMESPACE}/pods",
                              NAMESPACE, pod_manifest, args.n, 64, label="pre-loading pods")
        if load.n_err:
            raise SystemExit(f"pre-load failed: {load.n_err} errors, first: {load.first_error}")

        json_t, json_body = asyncio.run(
            time_lists(server, "application/json", args.reps, "LIST as JSON", args.py_spy_json,
                       args.native))
        table_t, table_body = asyncio.run(
            time_lists(server, TABLE_ACCEPT, args.reps, "LIST as Table", args.py_spy_table,
                       args.native))
        with console.status("kubectl get pods -A ..."):
            kubectl_t = time_kubectl(server, args.kubectl_reps)
            kubectl_nochunk_t = time_kubectl(server, args.kubectl_reps, "--chunk-size=0")

    items = orjson.loads(json_body)["items"]
    if len(items) < args.n:
        raise SystemExit(f"LIST returned {len(items)} pods, expected {args.n}")
    dumps_t = time_dumps(items, args.reps)
    rows = []
    for name, ts, size in [
            ("orjson.dumps of the same pods (baseline)", dumps_t, len(json_body)),
            ("GET /api/v1/pods as JSON", json_t, len(json_body)),
            ("GET /api/v1/pods as Table", table_t, len(table_body)),
            ("kubectl get pods -A (pages of 500)", kubectl_t, None),
            ("kubectl get pods -A --chunk-size=0", kubectl_nochunk_t, None)]:
        p50 = percentile(ts, 0.5) * 1000
        rows.append([name, p50, percentile(ts, 0.99) * 1000, len(ts),
                     f"{size / 1e6:.1f} MB" if size else "-",
                     f"{p50 / (percentile(dumps_t, 0.5) * 1000):.1f}x"])
    print_table(f"LIST of {len(items):,} pods",
                ["what", "p50 ms", "p99 ms", "runs", "body", "vs dumps"], rows)
    console.print(f"targets: JSON p99 <= 300 ms {verdict(percentile(json_t, .99) <= .3)}, "
                  f"Table p99 <= 300 ms {verdict(percentile(table_t, .99) <= .3)}")


if __name__ == "__main__":
    t0 = time.monotonic()
    main()
    console.print(f"[dim]total {time.monotonic() - t0:.1f} s[/]")
