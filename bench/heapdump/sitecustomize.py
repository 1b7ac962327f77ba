"""Heap snapshots of running pinnace processes, for memory hunts (never
imported by pinnace itself).

Put this directory first on PYTHONPATH and start tracing at interpreter
start, e.g.::

    PYTHONTRACEMALLOC=25 PYTHONPATH=bench/heapdump:. python bench/memory_growth.py --quick --dump-heaps

Every Python process started so (``pinnace server`` and its children) then
writes a tracemalloc snapshot to ``$PINNACE_HEAPDUMP_DIR`` (default /tmp)
as ``heap-<argv tag>-<pid>-<n>.snap`` when it gets SIGUSR2; read them with
``python bench/heapdump/top.py FILE [FILE2]`` (a diff when two are given).
Each signal also writes glibc's ``malloc_info`` as ``...-<n>.malloc.xml``,
traced or not: the C allocator's arenas, what they hold and what is free.
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


def _malloc_info(path: str) -> None:
    """glibc's own account of its heap, arena by arena (XML): what it holds
    from the system and how much of that is free, below Python's objects."""
    import ctypes

    libc = ctypes.CDLL(None)
    libc.fopen.restype = ctypes.c_void_p
    libc.fopen.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
    libc.malloc_info.argtypes = [ctypes.c_int, ctypes.c_void_p]
    libc.fclose.argtypes = [ctypes.c_void_p]
    fp = libc.fopen(path.encode(), b"w")
    if fp:
        libc.malloc_info(0, fp)
        libc.fclose(fp)


def _dump(signum: int, frame: object) -> None:
    global _count
    _count += 1
    directory = os.environ.get("PINNACE_HEAPDUMP_DIR", "/tmp")
    base = os.path.join(directory, f"heap-{_tag()}-{os.getpid()}-{_count}")
    _malloc_info(base + ".malloc.xml")
    if tracemalloc.is_tracing():
        tracemalloc.take_snapshot().dump(base + ".snap")


if hasattr(signal, "SIGUSR2"):
    signal.signal(signal.SIGUSR2, _dump)
