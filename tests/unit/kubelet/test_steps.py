"""The step threads: a pod's blocking steps run off the event loop, no more
than one per CPU at once, with the caller's context."""

import asyncio
import contextvars
import threading
import time

import pytest

from pinnace.kubelet import steps

who = contextvars.ContextVar("who", default="")


def test_a_step_runs_off_the_loop_with_the_callers_context() -> None:
    async def main() -> tuple[str, bool]:
        who.set("pod-a")
        loop_thread = threading.get_ident()
        return await steps.run(lambda: (who.get(), threading.get_ident() != loop_thread))

    assert asyncio.run(main()) == ("pod-a", True)


def test_a_steps_error_reaches_its_caller() -> None:
    def fail(path: str) -> None:
        raise FileNotFoundError(path)

    with pytest.raises(FileNotFoundError, match="/nowhere"):
        asyncio.run(steps.run(fail, "/nowhere"))


def test_no_more_steps_at_once_than_threads() -> None:
    lock, running, most = threading.Lock(), [0], [0]

    def step() -> None:
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
        time.sleep(0.02)
        with lock:
            running[0] -= 1

    async def main() -> None:
        await asyncio.gather(*(steps.run(step) for _ in range(3 * steps.threads())))

    asyncio.run(main())
    assert most[0] == steps.threads()
