"""What an exec into a container is given to run: the container's own
process with the command for its args (so its user, groups, environment,
working directory and capabilities), in a file its content names."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from pinnace.kubelet import oci
from pinnace.kubelet.oci import OCIRuntime, Record

PROCESS = {"args": ["sleep", "3600"], "cwd": "/srv", "env": ["PATH=/bin", "TERM=dumb"],
           "user": {"uid": 1000, "gid": 3000, "additionalGids": [3000, 4000]},
           "terminal": False, "noNewPrivileges": True,
           "capabilities": {"bounding": ["CAP_CHOWN"], "effective": []}}


def _runtime(tmp_path: Path) -> tuple[OCIRuntime, Record]:
    rt = OCIRuntime.__new__(OCIRuntime)  # no runtime binary needed: only the files
    rt.root, rt.state_dir, rt.binary, rt.name = tmp_path, tmp_path / "state", "/usr/bin/crun", "crun"
    rec = Record(id="c" * 64, pod_uid="u", namespace="ns", pod_name="p", name="c", runtime="crun")
    rt.bundle(rec.id).mkdir(parents=True)
    (rt.bundle(rec.id) / "config.json").write_text(json.dumps({"process": PROCESS}))
    return rt, rec


def test_an_exec_runs_as_the_containers_process_with_its_own_args(tmp_path: Path) -> None:
    rt, rec = _runtime(tmp_path)
    path = rt._exec_process(rec, ["id", "-u"], tty=False)
    assert path is not None
    got = json.loads(path.read_text())
    assert got == {**PROCESS, "args": ["id", "-u"]}
    # The same command again (a probe): the same file, not a new one.
    assert rt._exec_process(rec, ["id", "-u"], tty=False) == path
    tty = rt._exec_process(rec, ["sh"], tty=True)
    assert tty is not None and tty != path
    got = json.loads(tty.read_text())
    assert got["terminal"] is True and got["env"] == ["PATH=/bin", "TERM=xterm"]
    assert rt.exec_argv(rec, ["sh"], True)[-4:] == ["-t", "--process", str(tty), rec.id]


def test_a_container_without_its_config_is_left_to_the_runtime(tmp_path: Path) -> None:
    rt, rec = _runtime(tmp_path)
    (rt.bundle(rec.id) / "config.json").unlink()
    assert rt._exec_process(rec, ["id"], tty=False) is None


def test_many_different_commands_keep_a_bounded_number_of_files(tmp_path: Path) -> None:
    rt, rec = _runtime(tmp_path)
    b = rt.bundle(rec.id)
    old = time.time() - oci.EXEC_FILE_MIN_AGE - 10
    for i in range(oci.EXEC_FILES_KEPT + 4):
        p = rt._exec_process(rec, ["echo", str(i)], tty=False)
        assert p is not None
        os.utime(p, (old + i, old + i))  # each older than the minimum age, in order
    newest = rt._exec_process(rec, ["echo", "last"], tty=False)
    files = sorted(b.glob("exec-*.json"))
    assert len(files) == oci.EXEC_FILES_KEPT and newest in files
    # The most recently used survive.
    kept = {json.loads(f.read_text())["args"][1] for f in files}
    assert kept == {"last", *(str(i) for i in range(5, oci.EXEC_FILES_KEPT + 4))}
