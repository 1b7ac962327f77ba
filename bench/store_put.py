"""Raw create rate of a Store backend: the baseline the API benchmarks divide by.

    python bench/store_put.py                      # sqlite in a temp dir, N=20000, C=64
    python bench/store_put.py --url memory -n 50000
    python bench/store_put.py --url etcd://127.0.0.1:2379 -c 128

Prints creates/s and p50/p99 latency. ``measure_store_creates`` is the
function other benchmarks import to measure the same thing in their run.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
from typing import Any

from pinnace.storage import open_store
from pinnace.storage.interface import Store


async def measure_store_creates(
    store: Store, n: int, concurrency: int, *, value_size: int = 1024, prefix: str = ""
) -> dict[str, float]:
    """Create ``n`` keys with ``concurrency`` callers each awaiting its own
    create in a loop. Returns {"n", "concurrency", "seconds", "creates_per_s",
    "p50_ms", "p99_ms"}."""
    prefix = prefix or f"/bench/{os.getpid()}-{time.monotonic_ns()}/"
    value = b"x" * value_size
    latencies: list[float] = []
    counter = iter(range(n))

    async def caller() -> None:
        for i in counter:
            t0 = time.perf_counter()
            await store.create(f"{prefix}{i:08d}", value)
            latencies.append(time.perf_counter() - t0)

    started = time.perf_counter()
    await asyncio.gather(*(caller() for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    latencies.sort()
    return {
        "n": n,
        "concurrency": concurrency,
        "seconds": elapsed,
        "creates_per_s": n / elapsed,
        "p50_ms": latencies[len(latencies) // 2] * 1000,
        "p99_ms": latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000,
    }


async def _main(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="pinnace-bench-") as data_dir:
        store = open_store(args.url, data_dir)
        await store.start()
        try:
            return await measure_store_creates(store, args.n, args.c, value_size=args.size)
        finally:
            await store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="sqlite", help="datastore URL (default: sqlite)")
    parser.add_argument("-n", type=int, default=20_000, help="number of creates")
    parser.add_argument("-c", type=int, default=64, help="concurrent callers")
    parser.add_argument("--size", type=int, default=1024, help="value size in bytes")
    r = asyncio.run(_main(parser.parse_args()))
    print(
        f"{parser.parse_args().url}: {r['creates_per_s']:.0f} creates/s"
        f" (n={r['n']}, c={r['concurrency']}, {r['seconds']:.2f} s)"
        f"  p50 {r['p50_ms']:.2f} ms  p99 {r['p99_ms']:.2f} ms"
    )


if __name__ == "__main__":
    main()
