"""Service proxy updates: one Service's endpoints change, how long until its
nftables rules are in place, with 1,000 and 10,000 services present.

    sudo python bench/proxy_update.py            # 1,000 and 10,000 services
    sudo python bench/proxy_update.py --quick    # 1,000 only
    sudo python bench/proxy_update.py --mode iptables   # the fallback's rules

Needs root and nft. Everything happens in a network namespace the benchmark
creates and deletes: no rule touches the host. The rules are the proxy's own
(pinnace.proxy.rules for a NodePort service with two endpoints each, the
first 2,000 with node ports), written by its Table: first the whole table
(as at a proxy start), then a series of one-service changes (an endpoint
added, then removed). The baseline, in the same run: the same change with
only 10 services present, so the ratio shows how the update grows with
the table (O(change) would be ~1). Target (issue 10): <= 100 ms at 10,000.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
import uuid
from typing import Any

from _common import console, machine_note, percentile, print_table, progress, verdict

from pinnace.proxy import iptables, iptrules, nft
from pinnace.proxy.rules import service_rules

CIDR = "10.244.0.0/16"
CHANGES = 20


def service(i: int, endpoints: int = 2, mode: str = "nftables") -> Any:
    svc = {"metadata": {"namespace": "bench", "name": f"s{i}"},
           "spec": {"type": "NodePort" if i < 2000 else "ClusterIP",
                    "clusterIPs": [f"10.{96 + i // 65536}.{i // 256 % 256}.{i % 256}"],
                    "ports": [{"name": "http", "port": 80, "protocol": "TCP",
                               "nodePort": 30000 + i}]}}
    sl = {"metadata": {"namespace": "bench", "labels": {"kubernetes.io/service-name": f"s{i}"}},
          "addressType": "IPv4", "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
          "endpoints": [{"addresses": [f"10.244.{i // 250 % 256}.{(i + k) % 250 + 1}"],
                         "nodeName": "n1", "conditions": {"ready": True}}
                        for k in range(endpoints)]}
    render = service_rules if mode == "nftables" else iptrules.service_rules
    return render(svc, [sl], "n1", CIDR)


def measure(n: int, mode: str) -> tuple[float, list[float]]:
    table: Any = nft.Table(CIDR) if mode == "nftables" else iptables.Table(CIDR)
    started = time.monotonic()
    table.replace_all({f"bench/s{i}": service(i, mode=mode) for i in range(n)})
    full = time.monotonic() - started
    times = []
    for k in range(CHANGES):
        rules = service(5, endpoints=3 if k % 2 == 0 else 2, mode=mode)
        started = time.monotonic()
        table.update({"bench/s5": rules})
        times.append((time.monotonic() - started) * 1000)
    if mode == "nftables":
        nft.delete_table()
    else:
        iptables.delete_all()
    return full, sorted(times)


def inside(sizes: list[int], mode: str) -> None:
    """Runs in the benchmark's namespace: print one line per size."""
    for n in sizes:
        full, times = measure(n, mode)
        print(f"{n} {full} {' '.join(f'{t:.3f}' for t in times)}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="1,000 services only")
    ap.add_argument("--mode", choices=["nftables", "iptables"], default="nftables")
    ap.add_argument("--nft-command", action="store_true",
                    help="run the nft command for each change instead of libnftables")
    ap.add_argument("--inside", nargs="*", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.inside is not None:
        nft.use_library(not args.nft_command)
        inside(args.inside, args.mode)
        return
    if os.geteuid() != 0:
        sys.exit("proxy_update: needs root (it creates a network namespace and nft rules in it)")
    sizes = [10, 1000] if args.quick else [10, 1000, 10000]
    netns = f"pinnace-bench-{uuid.uuid4().hex[:8]}"
    subprocess.run(["ip", "netns", "add", netns], check=True)
    results: dict[int, tuple[float, list[float]]] = {}
    try:
        with progress("proxy rules") as bar:
            task = bar.add_task("tables", total=len(sizes))
            for n in sizes:
                out = subprocess.run(["ip", "netns", "exec", netns, sys.executable, __file__,
                                      "--mode", args.mode, "--inside", str(n),
                                      *(["--nft-command"] if args.nft_command else [])],
                                     capture_output=True, text=True,
                                     timeout=900, check=True)
                size, full, *times = out.stdout.split()
                results[int(size)] = (float(full), sorted(float(t) for t in times))
                bar.advance(task)
    finally:
        subprocess.run(["ip", "netns", "del", netns], capture_output=True)
    base = percentile(results[10][1], 0.5)
    rows = []
    for n, (full, times) in results.items():
        p50, p99 = percentile(times, 0.5), percentile(times, 0.99)
        rows.append([f"{n:,}", f"{full * 1000:,.0f}", f"{p50:.1f}", f"{p99:.1f}", f"{p50 / base:.1f}x",
                     verdict(p99 <= 100) if n == 10000 else ""])
    what = ("nft -f" if args.nft_command else "libnftables") if args.mode == "nftables" \
        else "iptables-restore --noflush"
    print_table(f"one service changed -> its rules in place ({what})",
                ["services", "whole table ms", "update p50 ms", "update p99 ms",
                 "vs 10 services", "target <= 100 ms"], rows)
    console.print(machine_note())


if __name__ == "__main__":
    main()
