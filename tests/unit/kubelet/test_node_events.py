"""The events a node's conditions are told with, as the kubelet's setters
record them."""

from __future__ import annotations

from pinnace.kubelet.agent import condition_events


def conds(**status: str) -> list[dict]:
    return [{"type": t, "status": s} for t, s in status.items()]


def test_a_new_node_tells_its_pressures_but_not_its_first_ready() -> None:
    new = conds(MemoryPressure="False", DiskPressure="False", PIDPressure="False", Ready="False")
    assert condition_events([], new) == [
        "NodeHasSufficientMemory", "NodeHasNoDiskPressure", "NodeHasSufficientPID"]


def test_only_changes_are_told_afterwards() -> None:
    old = conds(MemoryPressure="False", DiskPressure="False", PIDPressure="False", Ready="False")
    new = conds(MemoryPressure="False", DiskPressure="True", PIDPressure="False", Ready="True")
    assert condition_events(old, new) == ["NodeHasDiskPressure", "NodeReady"]
    assert condition_events(new, new) == []
    # Back from Unknown (the node controller's mark while the agent was away).
    unknown = conds(MemoryPressure="Unknown", Ready="Unknown")
    assert condition_events(unknown, conds(MemoryPressure="True", Ready="False")) == [
        "NodeHasInsufficientMemory", "NodeNotReady"]
