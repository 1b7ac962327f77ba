"""Summarize a py-spy raw (collapsed stacks) profile as text.

    py-spy record --pid PID --format raw -o /tmp/p.txt    # or a bench's --py-spy /tmp/p.txt
    python bench/pyspy_top.py /tmp/p.txt [-n 15] [--only pinnace/] [--thread MainThread]

Prints the top functions by self time (the leaf frame: where the CPU was)
and by inclusive time (anywhere on the stack), as % of all samples.
"""

from __future__ import annotations

import argparse
import re
from collections import Counter, defaultdict
from pathlib import Path

from _common import print_table

# A raw frame is "function (path/to/file.py:LINE)"; lines vary inside one
# function, so they are dropped to merge its samples.
_FRAME = re.compile(r"^(?P<fn>.*?) \((?P<file>[^():]*)(?::\d+)?\)$")
_SITE = re.compile(r".*/(site-packages|lib/python3\.\d+)/")


def frame_name(frame: str) -> str:
    m = _FRAME.match(frame.strip())
    if not m:
        return frame.strip()
    path = _SITE.sub("", m["file"])
    path = path[path.find("pinnace/"):] if "pinnace/" in path else path
    return f"{path}:{m['fn']}"


# caller -> callee -> samples with that call on the stack (filled by summarize).
callees: defaultdict[str, Counter[str]] = defaultdict(Counter)
_THREAD = re.compile(r"^thread \(\d+\): (?P<name>.*)$")


def summarize(path: Path, thread: str = "") -> tuple[int, Counter[str], Counter[str],
                                                     Counter[str]]:
    """Samples in total, per thread, per leaf function and per function on
    the stack; only threads whose name contains ``thread`` count."""
    total = 0
    threads: Counter[str] = Counter()
    own: Counter[str] = Counter()
    callees.clear()
    inclusive: Counter[str] = Counter()
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        raw = stack.split(";")
        # With py-spy --threads the first frame names the thread.
        m = _THREAD.match(raw[0])
        name = m["name"] if m else "?"
        if m:
            raw = raw[1:]
        threads[name] += n
        if thread not in name or not raw:
            continue
        frames = [frame_name(f) for f in raw]
        total += n
        own[frames[-1]] += n
        for f in set(frames):
            inclusive[f] += n
        for caller, callee in set(zip(frames, frames[1:])):
            callees[caller][callee] += n
    return total, threads, own, inclusive


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("profile", type=Path)
    parser.add_argument("-n", type=int, default=15)
    parser.add_argument("--only", default="", help="inclusive table: frames containing this")
    parser.add_argument("--thread", default="",
                        help="count only threads whose name contains this (e.g. MainThread)")
    parser.add_argument("--children", default="", metavar="FUNC",
                        help="also break down the functions called by frames ending in FUNC")
    args = parser.parse_args()
    total, threads, own, inclusive = summarize(args.profile, args.thread)
    every = sum(threads.values())
    print_table("samples per thread (CPU-busy only)", ["thread", "samples", "%"],
                [[t, n, f"{100 * n / every:.1f}"] for t, n in threads.most_common()])
    print(f"{total} samples counted below" + (f" (threads matching {args.thread!r})"
                                              if args.thread else ""))
    print_table("self time (leaf frame)", ["function", "%"],
                [[f, f"{100 * n / total:.1f}"] for f, n in own.most_common(args.n)])
    incl = [(f, n) for f, n in inclusive.most_common() if args.only in f][:args.n]
    print_table("inclusive time" + (f" ({args.only})" if args.only else ""), ["function", "%"],
                [[f, f"{100 * n / total:.1f}"] for f, n in incl])
    if args.children:
        below: Counter[str] = Counter()
        for caller, counts in callees.items():
            if caller.endswith(args.children):
                below.update(counts)
        print_table(f"called from {args.children} (inclusive)", ["function", "%"],
                    [[f, f"{100 * n / total:.1f}"] for f, n in below.most_common(args.n)])


if __name__ == "__main__":
    main()
