"""pinnace.testing for operator authors: how long a test waits for its cluster.

    python bench/testing.py            # 10 starts of each kind
    python bench/testing.py --quick    # 3 starts (< 20 s)

Measured in one process, as a test run would see it:
- start to ready of ``pinnace.testing.Cluster`` in-process: the API server
  alone (memory datastore), with every controller, and with every
  controller, the scheduler and 3 simulated nodes (min/median; the first
  start of the process, which pays for the imports, is shown apart);
- a fresh namespace (``create_namespace``), p50/p99;
- one small API test (namespace, ConfigMap, Deployment, GET, LIST,
  namespace delete) against that cluster.

Baseline in the same run: a full ``pinnace server`` (API server, controller
manager and scheduler processes, memory datastore) from spawn to
``/readyz``, and the same small test against it.
Targets: API server alone ready <= 0.2 s; a namespace <= 20 ms.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Callable

from _common import (
    console,
    machine_note,
    percentile,
    print_table,
    progress,
    ssl_context,
    start_server,
    verdict,
    wait_ready,
)

Request = Callable[[str, str, Any], tuple[int, Any]]


def sample_test(request: Request, ns: str) -> None:
    """What a typical operator test does through the API."""
    def ok(code: int, body: Any) -> None:
        if code >= 300:
            raise RuntimeError(f"{code}: {body}")

    ok(*request("POST", "/api/v1/namespaces", {"metadata": {"name": ns}}))
    ok(*request("POST", f"/api/v1/namespaces/{ns}/configmaps",
                {"metadata": {"name": "settings"}, "data": {"size": "3"}}))
    ok(*request("POST", f"/apis/apps/v1/namespaces/{ns}/deployments", {
        "metadata": {"name": "web"},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web"}},
                              "spec": {"containers": [{"name": "web", "image": "nginx"}]}}}}))
    ok(*request("GET", f"/apis/apps/v1/namespaces/{ns}/deployments/web", None))
    ok(*request("GET", f"/api/v1/namespaces/{ns}/pods", None))
    ok(*request("DELETE", f"/api/v1/namespaces/{ns}", None))


def admin_request(data_dir: Path, url: str) -> Request:
    """A JSON client as the admin, like Cluster.request, for a server that is not a Cluster."""
    ctx = ssl_context(data_dir)

    def request(method: str, path: str, body: Any) -> tuple[int, Any]:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(url + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, context=ctx, timeout=30) as resp:
                return resp.status, json.loads(resp.read() or b"null")
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode(errors="replace")
    return request


def timed_starts(n: int, **options: Any) -> tuple[list[float], list[float], list[float]]:
    """(start seconds, namespace seconds, sample-test seconds) over n clusters."""
    from pinnace.testing import Cluster

    starts, namespaces, tests = [], [], []
    for i in range(n):
        t = time.perf_counter()
        cluster = Cluster(**options).start()
        starts.append(time.perf_counter() - t)
        try:
            for _ in range(10):
                t = time.perf_counter()
                cluster.create_namespace("bench")
                namespaces.append(time.perf_counter() - t)
            t = time.perf_counter()
            sample_test(cluster.request, f"sample-{i}")
            tests.append(time.perf_counter() - t)
        finally:
            cluster.stop()
    return starts, namespaces, tests


def full_server(n: int) -> tuple[list[float], list[float]]:
    starts, tests = [], []
    for i in range(n):
        with tempfile.TemporaryDirectory(prefix="pinnace-bench-") as d:
            server = start_server(Path(d), "--datastore", "memory", "--disable-agent",
                                  "--cluster-dns-port", "0", command="server", timeout=60)
            try:
                starts.append(wait_ready(server) - server.started_at)
                request = admin_request(server.data_dir, server.url)
                t = time.perf_counter()
                sample_test(request, f"sample-{i}")
                tests.append(time.perf_counter() - t)
            finally:
                server.stop()
    return starts, tests


def ms(values: list[float], q: float | None = None) -> float:
    if not values:
        return float("nan")
    return 1000 * (statistics.median(values) if q is None else percentile(sorted(values), q))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="3 starts of each kind")
    ap.add_argument("--starts", type=int, default=10)
    args = ap.parse_args()
    n = 3 if args.quick else args.starts

    kinds: list[tuple[str, dict[str, Any]]] = [
        ("API server alone", {"controllers": None}),
        ("+ every controller", {}),
        ("+ scheduler, 3 sim nodes", {"nodes": 3}),
    ]
    results: dict[str, tuple[list[float], list[float], list[float]]] = {}
    with progress() as bar:
        task = bar.add_task("starting clusters", total=(len(kinds) * n) + 1 + n)
        t = time.perf_counter()
        from pinnace.testing import Cluster

        Cluster(controllers=None).start().stop()
        first = time.perf_counter() - t
        bar.advance(task)
        for name, options in kinds:
            results[name] = timed_starts(n, **options)
            bar.advance(task, n)
        server_starts, server_tests = full_server(n)
        bar.advance(task, n)

    base_start = statistics.median(server_starts)
    base_test = statistics.median(server_tests)
    rows: list[list[Any]] = [["first Cluster of the process (imports)", first * 1000, "", "", "",
                              ""]]
    for name, (starts, namespaces, tests) in results.items():
        rows.append([f"Cluster: {name}", ms(starts), 1000 * min(starts),
                     f"{statistics.median(starts) / base_start:.1%}", ms(namespaces),
                     f"{ms(tests):.0f} ({statistics.median(tests) / base_test:.0%})"])
    rows.append(["baseline: pinnace server (3 processes)", base_start * 1000,
                 1000 * min(server_starts), "100%", "", f"{base_test * 1000:.0f} (100%)"])
    print_table(f"Start to ready, {n} starts each ({machine_note()})",
                ["cluster", "median ms", "min ms", "of server start", "namespace p50 ms",
                 "sample test ms (of server's)"], rows)
    alone = results["API server alone"]
    console.print(f"API server alone ready in {ms(alone[0]):.0f} ms (target 200): "
                  f"{verdict(ms(alone[0]) <= 200)}; a namespace in {ms(alone[1]):.1f} ms p50, "
                  f"{ms(alone[1], 0.99):.1f} ms p99 (target 20): {verdict(ms(alone[1]) <= 20)}")
    print(json.dumps({"first_ms": round(first * 1000), "server_start_ms": round(base_start * 1000),
                      **{k: round(ms(v[0])) for k, v in results.items()}}), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
