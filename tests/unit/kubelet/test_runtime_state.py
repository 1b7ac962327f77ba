"""A container's state as the agent reads it from conmon's files: an exit
recorded by the monitor as it ends is the container's exit, whenever the
agent looks."""

from __future__ import annotations

from pathlib import Path

import pytest

from pinnace.kubelet import oci
from pinnace.kubelet.oci import EXITED, OCIRuntime, Record

DEAD = 2 ** 22 + 12345  # above any pid_max: never a live process


def _runtime(root: Path) -> OCIRuntime:
    # Only the files: no runtime binary, mounts or monitor are needed to read them.
    rt = OCIRuntime.__new__(OCIRuntime)
    rt.root = root
    (root / "exits").mkdir(parents=True)
    return rt


def _record(rt: OCIRuntime) -> Record:
    rec = Record(id="c" * 64, pod_uid="u", namespace="ns", pod_name="p", name="c",
                 started_at=1.0)
    b = rt.bundle(rec.id)
    b.mkdir(parents=True)
    (b / "pid").write_text(str(DEAD))
    (b / "conmon.pid").write_text(str(DEAD + 1))
    return rec


def test_an_exit_written_as_the_monitor_ends_is_not_taken_for_an_unknown_one(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rt = _runtime(tmp_path)
    rec = _record(rt)
    alive = oci._pid_alive

    def monitor_ends_meanwhile(pid: int) -> bool:
        # conmon writes the exit code and exits between the agent's first
        # look at the exit file and its look at conmon.
        if pid == DEAD + 1:
            (tmp_path / "exits" / rec.id).write_text("0")
        return alive(pid)

    monkeypatch.setattr(oci, "_pid_alive", monitor_ends_meanwhile)
    st = rt.state(rec)
    assert (st.status, st.exit_code, st.reason) == (EXITED, 0, "")


def test_a_monitor_gone_without_an_exit_is_an_unknown_exit(tmp_path: Path) -> None:
    rt = _runtime(tmp_path)
    st = rt.state(_record(rt))
    assert (st.status, st.exit_code, st.reason) == (EXITED, 255, "Unknown")
