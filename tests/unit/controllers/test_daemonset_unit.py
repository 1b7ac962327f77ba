"""The failed-pod backoff of the daemonset controller (client-go's
flowcontrol.Backoff semantics) on a fake clock, and which pods count as
updated."""

from __future__ import annotations

from pinnace.controllers.daemonset import Backoff, allows_surge, pod_updated


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_backoff_doubles_up_to_the_cap_and_holds_in_between() -> None:
    clock = Clock()
    b = Backoff(1.0, 8.0, clock)
    assert not b.in_backoff_since_update("k", clock.now)  # never failed: act at once
    delays = []
    for _ in range(6):
        b.next("k", clock.now)
        delays.append(b.get("k"))
        assert b.in_backoff_since_update("k", clock.now)
        clock.now += b.get("k") - 0.01
        assert b.in_backoff_since_update("k", clock.now)
        clock.now += 0.01
        assert not b.in_backoff_since_update("k", clock.now)
    assert delays == [1.0, 2.0, 4.0, 8.0, 8.0, 8.0]
    assert b.get("other") == 0.0 and not b.in_backoff_since_update("other", clock.now)


def test_backoff_starts_over_after_twice_the_cap_quiet() -> None:
    clock = Clock()
    b = Backoff(1.0, 8.0, clock)
    for _ in range(4):
        b.next("k", clock.now)
    assert b.get("k") == 8.0
    clock.now += 16.5
    assert not b.in_backoff_since_update("k", clock.now)
    b.next("k", clock.now)
    assert b.get("k") == 1.0


def test_backoff_forgets_keys_left_alone() -> None:
    clock = Clock()
    b = Backoff(1.0, 8.0, clock)
    b.next("old", clock.now)
    clock.now += 61
    b.next("new", clock.now)
    assert b.get("old") == 0.0 and b.get("new") == 1.0


def _pod(**labels: str) -> dict:
    return {"metadata": {"name": "p", "labels": labels}}


def test_updated_by_hash_or_template_generation() -> None:
    assert pod_updated(_pod(**{"controller-revision-hash": "abc"}), "abc", "2")
    assert pod_updated(_pod(**{"pod-template-generation": "2"}), "xyz", "2")
    assert not pod_updated(_pod(**{"controller-revision-hash": "abc",
                                   "pod-template-generation": "1"}), "xyz", "2")
    assert not pod_updated(_pod(), "", "2")


def test_surge_only_with_a_rolling_update_max_surge() -> None:
    def ds(strategy: dict) -> dict:
        return {"spec": {"updateStrategy": strategy}}
    assert not allows_surge({"spec": {}})
    assert not allows_surge(ds({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 0}}))
    assert allows_surge(ds({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1}}))
    assert allows_surge(ds({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "10%"}}))
    assert not allows_surge(ds({"type": "OnDelete", "rollingUpdate": {"maxSurge": 1}}))
