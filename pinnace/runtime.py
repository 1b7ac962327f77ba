"""Process-wide settings every pinnace component applies at start."""

from __future__ import annotations

import functools
import gc
import os
from typing import Any


def tune_gc() -> None:
    """Make the cyclic garbage collector rare and cheap.

    Our objects are JSON trees without reference cycles, so reference
    counting frees them; but decoding thousands of objects (a LIST, a watch
    replay) trips the default generation-0 threshold of 700 allocations
    constantly, and each collection walks every young object. Profiling a
    10,000-pod Table showed most of its time spent in the collector. Freeze
    what start-up allocated (it lives forever) and collect far less often.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(100_000, 50, 50)


_M_ARENA_MAX = -8  # glibc's mallopt parameter


def tune_malloc() -> None:
    """Keep glibc's malloc from holding on to freed memory: at most two
    arenas instead of eight per core.

    Objects here are mostly freed on the event loop's thread that did not
    allocate them: a stored value read by the datastore's thread lives in
    that thread's arena until the watch cache drops it. With an arena per
    thread, such frees leave holes that the loop's own allocations cannot
    reuse, and RSS stays at its peak (the API server kept ~70 MB more after
    its watch cache window was freed). Called first thing, before threads
    exist; MALLOC_ARENA_MAX in the environment wins; a no-op on other
    C libraries.
    """
    if os.environ.get("MALLOC_ARENA_MAX"):
        return
    try:
        import ctypes

        libc = ctypes.CDLL(None)
        libc.gnu_get_libc_version  # noqa: B018 - only glibc has it
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # pragma: no cover - not glibc
        return
    mallopt(_M_ARENA_MAX, 2)


# What asyncio's own TLS reads into. Records are at most 16 KiB, so this is
# still one read per record and then some.
TLS_READ_BUFFER = 32 * 1024


def small_tls_buffers() -> None:
    """Give each TLS connection of asyncio's own event loop a 32 KiB read
    buffer instead of 256 KiB.

    asyncio's SSLProtocol zero-fills a buffer of ``max_size`` bytes per
    connection, so every page of it is resident. The node agent runs on that
    loop (pyroute2 needs it) and holds a connection per watch plus a pool
    for its bursts of status writes: with 50 pods starting, ~20
    connections kept 5.5 MB in these buffers alone. uvloop's processes are
    not concerned: its buffer is allocated, not filled, so only the pages
    a read touches count.
    """
    import asyncio.sslproto

    asyncio.sslproto.SSLProtocol.max_size = TLS_READ_BUFFER


def pidfd_child_watcher() -> None:
    """Wait for child processes with pidfds on the running loop, not with a
    thread per child.

    Python 3.11's asyncio starts a thread to wait for each subprocess
    (ThreadedChildWatcher). The node agent starts runtime processes for
    every container and a process per exec probe: starting that thread was
    a third of the agent's time in `runc start`. 3.12 and later use pidfds
    by default (and deprecate choosing a watcher), so this only acts on
    3.11, on kernels that have pidfd_open (5.3)."""
    import asyncio
    import sys

    if sys.version_info >= (3, 12) or not hasattr(os, "pidfd_open"):
        return
    try:
        os.close(os.pidfd_open(os.getpid()))
    except OSError:
        return
    watcher = asyncio.PidfdChildWatcher()
    watcher.attach_loop(asyncio.get_running_loop())
    asyncio.set_child_watcher(watcher)


def release_memory() -> None:
    """Give the memory freed in the middle of malloc's heap back to the OS
    (glibc's malloc_trim; a no-op on other C libraries). free() only gives
    back the top of the heap, so after a large cache is dropped RSS would
    stay at its peak until the process happened to reuse those pages. It
    walks the free lists: call it after freeing megabytes, not per object."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


@functools.cache
def _malloc_trim() -> Any:
    try:
        import ctypes

        return ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):  # pragma: no cover - not glibc
        return None


def lazy_import(name: str) -> Any:
    """Module ``name``, loaded on its first attribute access: for heavy
    modules only some servers use (CEL builds its grammar when imported,
    ~0.1 s and ~10 MB, and only a cluster with policies or match conditions
    needs it)."""
    import importlib.util
    import sys

    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.find_spec(name)
    assert spec is not None and spec.loader is not None, name
    loader = importlib.util.LazyLoader(spec.loader)
    spec.loader = loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    loader.exec_module(module)
    return module
