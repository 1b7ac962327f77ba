"""Heap snapshots of running pinnace processes, for memory hunts (never
imported by pinnace itself).

Put this directory first on PYTHONPATH and start tracing at interpreter
start, e.g.::

    PYTHONTRACEMALLOC=25 PYTHONPATH=bench/heapdump:. python bench/memory_growth.py --quick --dump-heaps

Every Python process started so (``pinnace server`` and its children) then
writes a tracemalloc snapshot to ``$PINNACE_HEAPDUMP_DIR`` (default /tmp)
as ``heap-<argv tag>-<pid>-<n>.snap`` when it gets SIGUSR2; read them with
``python bench/heapdump/top.py FILE [FILE2]`` (a diff when two are given).
"""

from __future__ import annotations

import os
import signal
import sys
import tracemalloc

_count = 0


def _tag() -> str:
    argv = [a for a in sys.argv if not a.startswith("-") and "/" not in a]
    return "-".join(argv[:1]) or "python"


def _dump(signum: int, frame: object) -> None:
    global _count
    if not tracemalloc.is_tracing():
        return
    _count += 1
    directory = os.environ.get("PINNACE_HEAPDUMP_DIR", "/tmp")
    path = os.path.join(directory, f"heap-{_tag()}-{os.getpid()}-{_count}.snap")
    tracemalloc.take_snapshot().dump(path)


if hasattr(signal, "SIGUSR2"):
    signal.signal(signal.SIGUSR2, _dump)
