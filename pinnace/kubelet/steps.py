"""The threads a pod's short blocking steps run on: its namespaces and
mounts, its netlink messages, its bundle's and volumes' files, as it
starts and as it is torn down.

One thread per CPU, not the agent's general pool (32 threads, for waits
that last: image unpacking, log reads, dials). Python runs one thread at
a time, and each step is a string of short system calls, each of which
lets go of the GIL and takes it back: with ten pods' steps on ten threads
beside the event loop, every one of those hand-overs became a futex wake
and a context switch (a quarter of the pool threads' samples were in
futex). On two CPUs, 10 pods at once, medians of five runs each taken in
turn: the agent's CPU a pod 14.0 ms on the general pool, 11.8 on two
threads, the median pod Running at 160 ms and at 129 ms. Four threads did
little better than 32: the kernel's part of a step (a namespace, a mount)
has no more CPUs to run on. A step here must not wait on anything but the
kernel (no child process, no network), or it holds up every pod's start.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import ParamSpec, TypeVar

P = ParamSpec("P")
T = TypeVar("T")

_pool: ThreadPoolExecutor | None = None


def threads() -> int:
    """One per CPU this process may run on, two at least (a step waiting
    in the kernel does not stop another from running)."""
    return max(2, len(os.sched_getaffinity(0)))


async def run(fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
    """``fn(*args, **kwargs)`` on a step thread (with the caller's context
    variables, as asyncio.to_thread)."""
    global _pool
    if _pool is None:
        _pool = ThreadPoolExecutor(threads(), thread_name_prefix="agent-step")
    call = functools.partial(contextvars.copy_context().run, fn, *args, **kwargs)
    return await asyncio.get_running_loop().run_in_executor(_pool, call)


__all__ = ["run", "threads"]
