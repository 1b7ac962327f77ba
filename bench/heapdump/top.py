"""Where a tracemalloc snapshot's memory is: ``top.py SNAP [BASE]`` prints
the biggest allocation sites (by traceback, a few frames) of SNAP, or what
grew from BASE to SNAP. See sitecustomize.py next to it."""

from __future__ import annotations

import argparse
import tracemalloc


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("snap")
    p.add_argument("base", nargs="?")
    p.add_argument("-n", type=int, default=15, help="sites to show")
    p.add_argument("--frames", type=int, default=6, help="frames per site")
    args = p.parse_args()
    snap = tracemalloc.Snapshot.load(args.snap)
    total = sum(s.size for s in snap.statistics("filename"))
    print(f"{args.snap}: {total / 2**20:.1f} MiB traced")
    if args.base:
        stats = snap.compare_to(tracemalloc.Snapshot.load(args.base), "traceback")
        for s in stats[:args.n]:
            print(f"\n{s.size_diff / 2**20:+.1f} MiB ({s.count_diff:+d} blocks), "
                  f"now {s.size / 2**20:.1f} MiB")
            for line in s.traceback.format(limit=args.frames, most_recent_first=True):
                print("   ", line)
    else:
        for s in snap.statistics("traceback")[:args.n]:
            print(f"\n{s.size / 2**20:.1f} MiB ({s.count} blocks)")
            for line in s.traceback.format(limit=args.frames, most_recent_first=True):
                print("   ", line)


if __name__ == "__main__":
    main()
