"""A pod's own status write coming back through the watch is not a reason
to sync the pod again, even when it comes back before the write's answer
does (under a burst it often does); any other change is."""

from __future__ import annotations

import asyncio
import copy
from typing import Any

from pinnace.kubelet.pods import PodState, PodWorkers

UID = "u-1"


def _pod(status: dict[str, Any], rv: str = "1") -> dict[str, Any]:
    return {"metadata": {"name": "p", "namespace": "ns", "uid": UID, "resourceVersion": rv},
            "spec": {"containers": [{"name": "c", "image": "busybox"}]}, "status": status}


class _SlowPatch:
    """A pods client whose status patch waits until told to answer."""

    def __init__(self) -> None:
        self.answer = asyncio.Event()
        self.asked = asyncio.Event()

    async def patch(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        self.asked.set()
        await self.answer.wait()
        return {}


def _workers(running: dict[str, Any]) -> tuple[PodWorkers, PodState]:
    # Only what the status write and the echo check use: no runtime, no network.
    w = object.__new__(PodWorkers)
    ps = PodState()
    w.state = {UID: ps}
    w.pods_rc = _SlowPatch()  # type: ignore[assignment]
    w.status = lambda pod, ps: copy.deepcopy(running)  # type: ignore[method-assign]
    return w, ps


async def test_the_echo_of_a_status_still_being_written_is_recognised() -> None:
    running = {"phase": "Running", "podIP": "10.244.0.5"}
    w, ps = _workers(running)
    before = _pod({"phase": "Pending"})
    report = asyncio.create_task(w._report(before, ps))
    await w.pods_rc.asked.wait()  # type: ignore[attr-defined]
    # The watch brings the written status back before the patch has answered.
    echo = _pod(running, rv="2")
    assert w.own_status_echo(before, echo)
    # A change besides the status is the pod's, and is synced.
    relabelled = copy.deepcopy(echo)
    relabelled["metadata"]["labels"] = {"a": "b"}
    assert not w.own_status_echo(before, relabelled)
    # A status other than the one written is someone else's.
    assert not w.own_status_echo(before, _pod({"phase": "Running", "podIP": "10.244.0.6"}, "2"))
    w.pods_rc.answer.set()  # type: ignore[attr-defined]
    await report
    assert ps.sent == running and ps.sending is None
    assert w.own_status_echo(before, echo)


async def test_a_status_never_written_is_not_an_echo() -> None:
    w, _ = _workers({"phase": "Running"})
    assert not w.own_status_echo(_pod({"phase": "Pending"}), _pod({"phase": "Running"}, "2"))
