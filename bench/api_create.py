"""Pod create throughput through the HTTP API, against the raw Store put rate.

    python bench/api_create.py                    # N=20000 pods, C=64, sqlite, 1 client process
    python bench/api_create.py --procs 2 -c 128
    python bench/api_create.py --quick            # N=2000, C=32: a smoke run (< 20 s)
    python bench/api_create.py --py-spy /tmp/create.txt   # profile the server meanwhile

Measures, in one run: (1) ``measure_store_creates`` on a fresh SQLiteStore
in a temp dir with the same N, C and a value the size of the pod JSON;
(2) N realistic pods (~1.5 KB) POSTed by C keep-alive aiohttp clients to a
sqlite-backed ``pinnace apiserver``. Prints creates/s, p50/p99, the
API/Store ratio, and how many cores the server and the load generator used
(they share the machine). Targets: >= 2,000 creates/s, p99 <= 100 ms,
ratio >= 40 %.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time

import aiohttp
import orjson
from _common import (
    client_session,
    console,
    ensure_namespace,
    machine_note,
    pod_manifest,
    print_table,
    py_spy,
    running_server,
    verdict,
)
from _load import create_objects
from store_put import measure_store_creates

from pinnace.storage import open_store

NAMESPACE = "bench"


async def store_baseline(n: int, c: int, value_size: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="pinnace-bench-store-") as d:
        store = open_store("sqlite", d)
        await store.start()
        try:
            return await measure_store_creates(store, n, c, value_size=value_size)
        finally:
            await store.close()


async def bind_edit(session: aiohttp.ClientSession, url: str, user: str) -> None:
    binding = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
               "metadata": {"name": f"bench-{user}"},
               "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                           "name": "edit"},
               "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User",
                             "name": user}]}
    async with session.post(f"{url}/apis/rbac.authorization.k8s.io/v1/namespaces/{NAMESPACE}"
                            "/rolebindings", json=binding) as r:
        if r.status not in (201, 409):
            raise RuntimeError(f"bind {user}: {r.status} {await r.text()}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=20_000, help="pods to create")
    parser.add_argument("-c", type=int, default=64, help="concurrent clients in total")
    parser.add_argument("--procs", type=int, default=1, help="client processes")
    parser.add_argument("--datastore", default="sqlite")
    parser.add_argument("--workers", type=int, default=1, help="API server worker processes")
    parser.add_argument("--quick", action="store_true", help="N=2000, C=32")
    parser.add_argument("--py-spy", default="", metavar="OUT",
                        help="record the server with py-spy during the API load "
                             "(.txt = raw collapsed stacks, .svg, .json = speedscope)")
    parser.add_argument("--native", action="store_true",
                        help="with --py-spy: include C frames (ssl, sqlite, orjson)")
    parser.add_argument("--as-user", default="", metavar="NAME",
                        help="create as NAME, bound to the edit role in the namespace, so "
                             "every request is authorized by RBAC (the admin skips it)")
    parser.add_argument("--audit", action="store_true",
                        help="log every request at the Metadata audit level (a policy with one "
                             "rule) to DATA/audit.log, to measure what auditing costs")
    args = parser.parse_args()
    if args.quick:
        args.n, args.c = 2_000, 32

    value_size = len(orjson.dumps(pod_manifest(NAMESPACE, "bench-0000000")))
    console.print(f"[bold]api_create[/]: N={args.n:,} C={args.c} procs={args.procs} "
                  f"workers={args.workers} "
                  f"pod={value_size} B  ({machine_note()})")
    with console.status("raw Store puts (sqlite)..."):
        store = asyncio.run(store_baseline(args.n, args.c, value_size))

    extra: tuple[str, ...] = ()
    audit_dir = None
    if args.audit:
        audit_dir = tempfile.TemporaryDirectory(prefix="pinnace-bench-audit-")
        policy = os.path.join(audit_dir.name, "policy.yaml")
        with open(policy, "w") as f:
            f.write("apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n- level: Metadata\n")
        extra = ("--audit-policy-file", policy,
                 "--audit-log-path", os.path.join(audit_dir.name, "audit.log"))
    with running_server(args.datastore, workers=args.workers, extra=extra) as server:
        async def prepare() -> None:
            async with client_session(server.data_dir) as s:
                await ensure_namespace(s, server.url, NAMESPACE)
                if args.as_user:
                    await bind_edit(s, server.url, args.as_user)
        asyncio.run(prepare())
        if args.as_user:
            os.environ["PINNACE_BENCH_AS"] = args.as_user

        cpu_before = [0.0]
        with py_spy(server.pid, args.py_spy, native=args.native):
            api = create_objects(
                server.url, server.data_dir, f"/api/v1/namespaces/{NAMESPACE}/pods", NAMESPACE,
                pod_manifest, args.n, args.c, args.procs, label="creating pods",
                on_start=lambda: cpu_before.__setitem__(0, server.cpu_seconds()))
            server_cores = (server.cpu_seconds() - cpu_before[0]) / api.seconds
        rss = server.rss_mb()
    if audit_dir is not None:
        with open(os.path.join(audit_dir.name, "audit.log"), "rb") as f:
            audit_lines = sum(1 for _ in f)
        console.print(f"audit log: {audit_lines:,} events written (Metadata level)")
        audit_dir.cleanup()

    ratio = api.per_s / store["creates_per_s"]
    print_table(
        f"Pod creates, N={args.n:,}, C={args.c}",
        ["path", "creates/s", "p50 ms", "p99 ms", "errors", "server cores", "client cores"],
        [["Store.create, sqlite in-process", store["creates_per_s"], store["p50_ms"],
          store["p99_ms"], 0, "-", "-"],
         [f"POST pods via HTTP API, {args.procs} client proc"
          + (f", as {args.as_user}" if args.as_user else ""), api.per_s, api.p50_ms,
          api.p99_ms, api.n_err, server_cores, api.client_cores]])
    if api.first_error:
        console.print(f"[red]first error:[/] {api.first_error}")
    console.print(f"API/Store ratio: [bold]{ratio:.0%}[/]   server RSS after load: {rss:.0f} MB")
    console.print(f"targets: >= 2,000 creates/s {verdict(api.per_s >= 2000)}, "
                  f"p99 <= 100 ms {verdict(api.p99_ms <= 100)}, "
                  f"ratio >= 40 % {verdict(ratio >= 0.40)}")


if __name__ == "__main__":
    t0 = time.monotonic()
    main()
    console.print(f"[dim]total {time.monotonic() - t0:.1f} s[/]")
