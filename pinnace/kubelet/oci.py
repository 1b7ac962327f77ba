"""Real containers: runc or crun, each container watched by conmon.

conmon (the monitor CRI-O uses, a Debian package) starts `runc create`,
stays as the container's parent, writes its output to a log file in the CRI
format `kubectl logs` reads, and writes its exit code to a file when it ends.
Because conmon, not the agent, is the parent, the agent can be stopped and
started again while containers run: everything it needs to find them again
lives in the bundle directories (docs/decisions/0006-node-agent-runtime.md).

Layout under the runtime's root:
  containers/<id>/   config.json, meta.json, rootfs (an overlay mount),
                     upper/ and work/ (the container's writable layer),
                     pid (the container's), conmon.pid, persist/ (conmon's oom file)
  exits/<id>         the exit code, written by conmon
  state/             the OCI runtime's own state (runc --root)
"""

from __future__ import annotations

import asyncio
import errno
import hashlib
import json
import logging
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import orjson

from . import libc, steps
from .cgroups import PROBE_PARENT, ROOT, CgroupError, bind_hybrid_controllers_to_v1, hierarchies, hybrid_v2_controllers

log = logging.getLogger("pinnace.kubelet.oci")

Obj = dict[str, Any]

CREATED, RUNNING, EXITED = "created", "running", "exited"
# Seconds the agent waits for conmon's report of a create before it gives
# up on it (a runtime stuck on a mount).
CONMON_TIMEOUT = 60
_MSG = re.compile(r'msg="((?:[^"\\]|\\.)*)"')


class OCIError(Exception):
    """The OCI runtime refused (the message is what a user sees in the pod's status)."""


@dataclass
class Record:
    """What the agent knows of a container, kept in its bundle as meta.json."""
    id: str
    pod_uid: str
    namespace: str
    pod_name: str
    name: str                  # container name; "" for a pod's sandbox
    attempt: int = 0
    image: str = ""            # as the pod spec names it
    image_ref: str = ""        # normalized
    image_id: str = ""
    log_path: str = ""
    init: bool = False
    created_at: float = 0.0
    started_at: float = 0.0
    spec_hash: str = ""        # the container spec it was created from (a change restarts it)
    resources: dict[str, Any] = field(default_factory=dict)  # requests/limits in force
    labels: dict[str, str] = field(default_factory=dict)
    runtime: str = ""          # the runtime that created it ("" before 2026-12-06: see runtime_of)
    user: dict[str, Any] = field(default_factory=dict)  # uid, gid, supplementalGroups of its process

    @property
    def sandbox(self) -> bool:
        return self.name == ""


@dataclass
class State:
    record: Record
    status: str                # created, running or exited
    pid: int = 0
    exit_code: int | None = None
    finished_at: float = 0.0
    oom: bool = False
    reason: str = ""           # for an exit the runtime did not see (the node rebooted): "Unknown"


def mount_overlay(lower: list[Path], upper: Path, work: Path, target: Path) -> None:
    target.mkdir(parents=True, exist_ok=True)
    if os.path.ismount(target):
        return
    opts = f"lowerdir={':'.join(str(p) for p in lower)},upperdir={upper},workdir={work}"
    try:
        libc.mount("overlay", target, "overlay", 0, opts)
    except OSError as e:
        raise OCIError(f"mounting the root filesystem: {os.strerror(e.errno or 0)}") from None


def unmount(target: Path) -> bool:
    """Lazy unmount, so a process still holding a file does not keep the mount.
    The kernel says whether something was mounted there (EINVAL: nothing):
    os.path.ismount compares devices and misses a directory bound onto
    itself, as the namespace pin dir is. True if something was unmounted."""
    err = libc.umount(target, libc.MNT_DETACH)
    if err == 0:
        return True
    if err not in (errno.EINVAL, errno.ENOENT):  # not a mount point (any more)
        log.warning("unmounting %s: %s", target, os.strerror(err))
    return False


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def dump_json(obj: Any) -> bytes:
    """A bundle's or a record's JSON. orjson takes ~6 us for a container's
    config where json.dumps takes ~60, holding the GIL the agent's event
    loop waits for; a pod's start writes three such files. A number orjson
    cannot hold (past 64 bits) is left to json."""
    try:
        return orjson.dumps(obj)
    except TypeError:
        return json.dumps(obj).encode()


def _read_int(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def probe(binary: str, root: Path) -> str:
    """Run an empty container with ``binary``; '' if it works, else why not."""
    catatonit = shutil.which("catatonit") or "/usr/libexec/podman/catatonit"
    with tempfile.TemporaryDirectory(dir=root) as tmp:
        bundle = Path(tmp)
        # What a runtime needs of a root filesystem, made in advance as it is
        # read-only: /proc (runc reads /proc/self/fd), /dev (crun fills it).
        for d in ("dev", "proc"):
            (bundle / "rootfs" / d).mkdir(parents=True)
        (bundle / "rootfs" / "pause").touch()
        cfg = {"ociVersion": "1.0.2",
               "process": {"args": ["/pause", "--version"],
                           "cwd": "/", "user": {"uid": 0, "gid": 0}, "env": []},
               "root": {"path": "rootfs", "readonly": True},
               "mounts": [{"destination": "/proc", "type": "proc", "source": "proc"},
                          {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
                           "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
                          {"destination": "/pause", "type": "bind", "source": catatonit,
                           "options": ["rbind", "ro"]}],
               "linux": {"namespaces": [{"type": "mount"}, {"type": "pid"}],
                         "cgroupsPath": f"/pinnace/probe-{os.getpid()}"}}
        (bundle / "config.json").write_text(json.dumps(cfg))
        state = bundle / "state"
        proc = subprocess.run([binary, "--root", str(state), "run", "--bundle", str(bundle),
                               f"probe-{os.getpid()}"], capture_output=True, text=True, timeout=30,
                              stdin=subprocess.DEVNULL)
        subprocess.run([binary, "--root", str(state), "delete", "-f", f"probe-{os.getpid()}"],
                       capture_output=True, timeout=30)
        for h in hierarchies():
            try:
                (h / PROBE_PARENT).rmdir()
            except OSError:
                pass  # not made, or an agent's probe running alongside
        if proc.returncode != 0:
            return (proc.stderr or proc.stdout).strip().splitlines()[-1:][0] if (
                proc.stderr or proc.stdout).strip() else f"exit code {proc.returncode}"
    return ""


def runtime_of(state: Path, rec: Record) -> str:
    """The name of the runtime that created ``rec`` (its state in ``state``),
    '' if unknown. Records from before it was kept: runc's state has a
    state.json, crun's a status file."""
    if rec.runtime:
        return rec.runtime
    if (state / rec.id / "state.json").exists():
        return "runc"
    return "crun" if (state / rec.id / "status").exists() else ""


def _fit_cgroups_for_crun() -> str:
    """Bind the controllers a hybrid host leaves on cgroup v2 to v1 (as
    cgroups.py tells), which crun requires; '' or why it cannot be done."""
    if not hybrid_v2_controllers():
        return ""
    try:
        names = bind_hybrid_controllers_to_v1()
    except CgroupError as e:
        return str(e)
    if names:
        log.warning("crun cannot use cgroup v2 controllers on a hybrid host: mounted %s as "
                    "cgroup v1 (%s), as systemd's hybrid mode does", ", ".join(names),
                    ", ".join(str(ROOT / n) for n in names))
    return ""


def choose_runtime(root: Path, wanted: str = "") -> str:
    """The OCI runtime binary: ``wanted`` if given, else crun where it works
    on this host's cgroup layout (made fit for it if need be), else runc."""
    if wanted:
        path = shutil.which(wanted)
        if not path:
            raise OCIError(f"OCI runtime {wanted!r} not found")
        if Path(path).name == "crun":
            why = _fit_cgroups_for_crun()
            if why:
                log.warning("crun will refuse this host's hybrid cgroup layout: %s", why)
        return path
    crun, runc = shutil.which("crun"), shutil.which("runc")
    if crun:
        why = probe(crun, root)
        if why and hybrid_v2_controllers():
            fix = _fit_cgroups_for_crun()
            why = f"{why}; and the layout cannot be changed: {fix}" if fix else probe(crun, root)
        if not why:
            return crun
        if runc:
            log.warning("crun does not work here (%s); using runc", why)
    if runc:
        return runc
    raise OCIError("no OCI runtime: install crun or runc")


def state_dir(root: Path) -> Path:
    """The runtime's own state (its --root) for the agent's runtime dir
    ``root``: in root/run, a tmpfs (see mount_run_dir). A data dir whose
    containers were made while it was root/state on disk keeps that until
    they are gone."""
    legacy = root / "state"
    try:
        if any(legacy.iterdir()):
            return legacy
    except OSError:
        pass
    return root / "run" / "state"


def mount_run_dir(root: Path) -> Path:
    """root/run, a tmpfs for what lives as long as the machine runs: the
    runtime's state and conmon's attach socket links, as runc's is in /run
    (a reboot empties it, as it ends the containers). Files made there cost
    no disk: an ext4 without a journal (these machines' root file system)
    checks every new inode against those freed in the last minutes, so
    while pods come and go each file the agent makes on it gets slower."""
    run = root / "run"
    run.mkdir(parents=True, exist_ok=True)
    if not os.path.ismount(run):
        from .volumes import mount_tmpfs

        try:
            mount_tmpfs(run, 64 << 20, "0700")
        except OSError as e:
            raise OCIError(str(e)) from e
    return run


def readonly_binary(run: Path, binary: str) -> str:
    """crun, bound read-only into the run dir: the path to call it by.

    Against CVE-2019-5736 (a container overwriting the runtime through
    /proc/self/exe) crun copies itself to a sealed memfd and re-executes
    that at every call, create, start, kill and delete alike, unless its
    binary is on a read-only mount, which it takes as safe (its
    cloned_binary.c). One read-only bind for the agent's life spares each
    call that: a bare `crun run -d` and `crun delete` took 6.2 ms of CPU
    here instead of 10.5. Not for runc, which also wants an environment
    variable for it. The binary itself if the bind cannot be made."""
    if Path(binary).name != "crun":
        return binary
    target = run / "crun"
    try:
        src = os.stat(binary)
        if target.exists():
            t = os.stat(target)
            if (t.st_dev, t.st_ino) == (src.st_dev, src.st_ino) and \
                    os.statvfs(target).f_flag & os.ST_RDONLY:
                return str(target)  # bound by this agent before its restart
            unmount(target)  # crun was upgraded since: the new one is bound
        else:
            target.touch(mode=0o500)
        try:
            libc.mount(binary, target, None, libc.MS_BIND)
            libc.mount(None, target, None, libc.MS_REMOUNT | libc.MS_BIND | libc.MS_RDONLY)
        except OSError:
            unmount(target)
            raise
    except OSError as e:
        log.info("crun will copy itself at every call: cannot bind it read-only at %s: %s",
                 target, e)
        return binary
    return str(target)


class OCIRuntime:
    """Create, start, stop and find containers. Blocking work (the runtime
    binary, mounts) runs in threads or subprocesses; nothing blocks the loop."""

    def __init__(self, root: Path, binary: str = ""):
        self.root = root
        run = mount_run_dir(root)
        self.state_dir = state_dir(root)
        self.sock_dir = run / "sock"
        for d in (root / "containers", root / "exits", self.state_dir, self.sock_dir):
            d.mkdir(parents=True, exist_ok=True)
        self.binary = readonly_binary(run, choose_runtime(root, binary))
        self.name = Path(self.binary).name
        self.conmon = shutil.which("conmon") or ""
        if not self.conmon:
            raise OCIError("conmon not found: install the conmon package")
        self._version = ""

    # -- facts --------------------------------------------------------------------

    def version(self) -> str:
        if not self._version:
            out = subprocess.run([self.binary, "--version"], capture_output=True, text=True).stdout
            m = re.search(r"version (\S+)", out)
            self._version = m.group(1) if m else "unknown"
        return self._version

    def bundle(self, cid: str) -> Path:
        return self.root / "containers" / cid

    def container_id(self, rec: Record) -> str:
        """As the pod's status shows it: <runtime>://<id>."""
        return f"{runtime_of(self.state_dir, rec) or self.name}://{rec.id}"

    def _cmd(self, rec: Record, *args: str) -> list[str]:
        """A runtime command on ``rec``, by the runtime that created it: an
        agent restarted with another (crun now working) keeps its old
        containers, and each runtime takes the other's state for debris."""
        name = runtime_of(self.state_dir, rec) or self.name
        binary = self.binary if name == self.name else (shutil.which(name) or self.binary)
        return [binary, "--root", str(self.state_dir), *args]

    # -- records ------------------------------------------------------------------

    def records(self) -> list[Record]:
        out = []
        for d in (self.root / "containers").iterdir():
            try:
                data = json.loads((d / "meta.json").read_bytes())
                out.append(Record(**data))
            except (OSError, ValueError, TypeError):
                continue
        return out

    def _save(self, rec: Record) -> None:
        path = self.bundle(rec.id) / "meta.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(dump_json(vars(rec)))  # its fields, as asdict gives them (no nesting)
        os.replace(tmp, path)

    def state(self, rec: Record) -> State:
        """Where the container is, from conmon's files: an exit file means it
        ended; a live pid means it runs; neither (the machine rebooted, the
        monitor was killed) means it is gone with an unknown exit."""
        b = self.bundle(rec.id)
        exited = self._exited(rec)
        if exited is not None:
            return exited
        pid = _read_int(b / "pid") or 0
        if _pid_alive(pid):
            return State(rec, RUNNING if rec.started_at else CREATED, pid=pid)
        conmon_pid = _read_int(b / "conmon.pid") or 0
        if _pid_alive(conmon_pid):
            # Not started yet, or just ended with the monitor about to write
            # the exit code: not an unknown exit.
            return State(rec, RUNNING if pid and rec.started_at else CREATED, pid=pid)
        # The monitor may have written the exit code and ended since the
        # first look: only a monitor gone without one is an unknown exit.
        return self._exited(rec) or State(
            rec, EXITED, exit_code=255, finished_at=rec.started_at or rec.created_at,
            reason="Unknown")

    def _exited(self, rec: Record) -> State | None:
        """The exit conmon recorded, if it has."""
        exit_file = self.root / "exits" / rec.id
        code = _read_int(exit_file)
        if code is None:
            return None
        try:
            finished = exit_file.stat().st_mtime
        except OSError:
            finished = time.time()
        return State(rec, EXITED, exit_code=code, finished_at=finished,
                     oom=(self.bundle(rec.id) / "persist" / "oom").exists())

    # -- lifecycle ----------------------------------------------------------------

    async def create(self, rec: Record, config: Obj, *, rootfs_layers: list[Path] | None = None,
                     stdin: bool = False, stdin_once: bool = False, tty: bool = False) -> None:
        """Write the bundle, mount the root filesystem and have conmon run
        `runtime create`. Raises OCIError with the runtime's message.
        ``tty`` gives the process a terminal (conmon holds its other end);
        ``stdin`` keeps a pipe open for what `attach` writes, closed when the
        first attach ends if ``stdin_once`` (the container spec's fields)."""
        rec.created_at = rec.created_at or time.time()
        rec.runtime = self.name
        config = {**config, "root": {**config["root"], "path": str(self.bundle(rec.id) / "rootfs")},
                  "process": {**config["process"], "terminal": tty}}
        # As CRI-O starts conmon: a terminal carries stdin itself; a stdin
        # pipe is closed when an attach ends unless the spec keeps it open.
        streams: list[str] = []
        if tty:
            streams = ["-t"]
        elif stdin:
            streams = ["-i"] if stdin_once else ["-i", "--leave-stdin-open"]
        # One thread hop for the whole bundle: its dozen directory and file
        # operations cost the event loop's thread as much as a pod's Python.
        b = await steps.run(self._write_bundle, rec, config, rootfs_layers)
        await self._conmon(rec, b, streams)

    def _write_bundle(self, rec: Record, config: Obj, rootfs_layers: list[Path] | None) -> Path:
        b = self.bundle(rec.id)
        (b / "persist").mkdir(parents=True, exist_ok=True)
        self._save(rec)
        if rootfs_layers is not None:
            (b / "upper").mkdir(exist_ok=True)
            (b / "work").mkdir(exist_ok=True)
            # overlayfs wants the top layer first.
            mount_overlay(list(reversed(rootfs_layers)) or [b / "empty"], b / "upper", b / "work",
                          b / "rootfs")
        else:
            (b / "rootfs").mkdir(exist_ok=True)
        (b / "config.json").write_bytes(dump_json(config))
        if rec.log_path:
            Path(rec.log_path).parent.mkdir(parents=True, exist_ok=True)
        for stale in (self.root / "exits" / rec.id, b / "pid", b / "persist" / "oom",
                      b / "persist" / "exit"):
            stale.unlink(missing_ok=True)
        return b

    async def _conmon(self, rec: Record, b: Path, streams: list[str] | None = None) -> None:
        sync_r, sync_w = os.pipe()
        env = {k: v for k, v in os.environ.items() if not k.startswith("NOTIFY_SOCKET")}
        # conmon sets its locale from the environment, and a UTF-8 one not in
        # the locale archive is a dozen files read at every container start
        # (a quarter of a millisecond here) for messages it never translates.
        env["LC_ALL"] = "C"
        env["_OCI_SYNCPIPE"] = str(sync_w)
        args = [self.conmon, "--api-version", "1", "-c", rec.id, "-u", rec.id[:16],
                "-n", f"{rec.namespace}_{rec.pod_name}_{rec.name or 'sandbox'}",
                "-r", self.binary, "--runtime-arg", "--root", "--runtime-arg", str(self.state_dir),
                "-b", str(b), "-p", str(b / "pid"), "-P", str(b / "conmon.pid"),
                "--exit-dir", str(self.root / "exits"), "-0", str(b / "persist"),
                "--socket-dir-path", str(self.sock_dir), "--log-level", "error", "--syslog"]
        args += ["-l", f"k8s-file:{rec.log_path}" if rec.log_path else "none:", *(streams or [])]
        # conmon forks to stay with the container: a pipe on its stderr would
        # never close, so its complaints go to a file.
        err_path = b / "conmon.err"
        try:
            with open(err_path, "wb") as err:
                # In the bundle: conmon drops an "oom" file in its working directory too.
                proc = await asyncio.create_subprocess_exec(
                    *args, pass_fds=(sync_w,), env=env, stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL, stderr=err, cwd=b)
        except BaseException:
            os.close(sync_r)
            raise
        finally:
            os.close(sync_w)
        # The monitor keeps the pipe to report the exit later: read one message
        # (the runtime's create is done then), waiting on the event loop rather
        # than on a thread: under a burst a create takes tens of milliseconds.
        deadline = time.monotonic() + CONMON_TIMEOUT
        pipe = open(sync_r, "rb", buffering=0)
        try:
            raw = await asyncio.wait_for(_read_line(pipe), CONMON_TIMEOUT)
        except asyncio.TimeoutError:
            raw = b""
        finally:
            pipe.close()
        try:
            # conmon's first process exits once it has forked the monitor.
            await asyncio.wait_for(proc.wait(), max(deadline - time.monotonic(), 1))
        except asyncio.TimeoutError:
            proc.kill()
            await proc.wait()
        if proc.returncode != 0 and not raw:
            raise OCIError(f"conmon failed: {err_path.read_text(errors='replace').strip()}")
        msg = ""
        for line in raw.splitlines():
            try:
                data = json.loads(line)
            except ValueError:
                continue
            if isinstance(data.get("data"), int) and data["data"] > 0:
                return
            msg = data.get("message") or msg
        raise OCIError(self._message(msg or "container create failed"))

    def _message(self, raw: str) -> str:
        """The runtime's words as containerd passes them on ("OCI runtime
        create failed: runc create failed: ..."), without logrus decoration."""
        m = _MSG.search(raw)
        text = m.group(1).encode().decode("unicode_escape") if m else raw.strip()
        return f"OCI runtime create failed: {text}"

    async def start(self, rec: Record) -> None:
        if not self._release_crun_container(rec):
            proc = await asyncio.create_subprocess_exec(
                *self._cmd(rec, "start", rec.id), stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.PIPE, stdin=asyncio.subprocess.DEVNULL)
            _, err = await proc.communicate()
            if proc.returncode != 0:
                m = _MSG.search(err.decode(errors="replace"))
                raise OCIError("OCI runtime start failed: " +
                               (m.group(1) if m else err.decode().strip()))
        rec.started_at = time.time()
        self._save(rec)

    def _release_crun_container(self, rec: Record) -> bool:
        """Do what `crun start` does for a container with no poststart hooks
        and no notify socket (the agent sets neither), without a process:
        the created container waits for a byte on its state dir's exec.fifo;
        the fifo is unlinked (crun then reports it running) and the byte
        written. A `crun start` process took ~6 ms here. False if
        the container is not crun's or not waiting (its init died; no
        fifo): `crun start` then says what is wrong."""
        if (runtime_of(self.state_dir, rec) or self.name) != "crun":
            return False
        fifo = self.state_dir / rec.id / "exec.fifo"
        try:
            # Non-blocking: with no reader (the container gone) this fails
            # with ENXIO rather than waiting for one.
            fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError:
            return False
        try:
            os.unlink(fifo)
            os.write(fd, b"\0")
        except OSError:
            return False
        finally:
            os.close(fd)
        return True

    async def update(self, rec: Record, linux: dict[str, Any], applied: dict[str, Any]) -> None:
        """Change a running container's cgroup limits (``linux``: linux.resources)
        in place; ``applied`` (the spec's requests and limits) is remembered."""
        proc = await asyncio.create_subprocess_exec(
            *self._cmd(rec, "update", "--resources", "-", rec.id), stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE, stdin=asyncio.subprocess.PIPE)
        _, err = await proc.communicate(json.dumps(linux).encode())
        if proc.returncode != 0:
            m = _MSG.search(err.decode(errors="replace"))
            raise OCIError("OCI runtime update failed: " +
                           (m.group(1) if m else err.decode(errors="replace").strip()))
        rec.resources = applied
        self._save(rec)

    async def kill(self, rec: Record, sig: int) -> None:
        proc = await asyncio.create_subprocess_exec(
            *self._cmd(rec, "kill", rec.id, str(int(sig))), stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL, stdin=asyncio.subprocess.DEVNULL)
        await proc.wait()

    async def stop(self, rec: Record, grace: float) -> State:
        """SIGTERM, then SIGKILL once ``grace`` seconds have passed."""
        st = self.state(rec)
        if st.status == EXITED:
            return st
        if st.status == CREATED:
            await self.kill(rec, signal.SIGKILL)
        else:
            await self.kill(rec, signal.SIGTERM)
            deadline = time.monotonic() + max(grace, 0)
            while time.monotonic() < deadline:
                if self.state(rec).status == EXITED:
                    return self.state(rec)
                await asyncio.sleep(0.1)
            await self.kill(rec, signal.SIGKILL)
        for _ in range(100):
            st = self.state(rec)
            if st.status == EXITED:
                break
            await asyncio.sleep(0.05)
        return st

    async def remove(self, rec: Record) -> None:
        """Stop what is left, delete the runtime's state, unmount and delete the bundle."""
        proc = await asyncio.create_subprocess_exec(
            *self._cmd(rec, "delete", "-f", rec.id), stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL, stdin=asyncio.subprocess.DEVNULL)
        await proc.wait()
        conmon_pid = _read_int(self.bundle(rec.id) / "conmon.pid") or 0
        _reap(conmon_pid)
        await steps.run(self._remove_files, rec)

    async def give_up(self, rec: Record, exit_code: int) -> None:
        """A container that could not be started: its runtime state and bundle
        go, its record stays, ended with ``exit_code``."""
        await self.remove(rec)
        self.bundle(rec.id).mkdir(parents=True, exist_ok=True)
        self._save(rec)
        (self.root / "exits" / rec.id).write_text(str(exit_code))

    def _remove_files(self, rec: Record) -> None:
        b = self.bundle(rec.id)
        unmount(b / "rootfs")
        shutil.rmtree(b, ignore_errors=True)
        (self.root / "exits" / rec.id).unlink(missing_ok=True)
        (self.sock_dir / rec.id[:16]).unlink(missing_ok=True)

    def exec_argv(self, rec: Record, command: list[str], tty: bool) -> list[str]:
        """The runtime command that runs ``command`` in the container as its
        own process runs: its user and groups, environment, working
        directory, capabilities and no_new_privs, as containerd execs
        (kubectl exec, exec probes, hooks). Left to its flags, crun 1.8 runs
        an exec as root, whatever the pod's securityContext says."""
        process = self._exec_process(rec, command, tty)
        if process is None:  # no config (the container is going): the runtime says so
            return self._cmd(rec, "exec", *(["-t"] if tty else []), rec.id, *command)
        return self._cmd(rec, "exec", *(["-t"] if tty else []), "--process", str(process), rec.id)

    def _exec_process(self, rec: Record, command: list[str], tty: bool) -> Path | None:
        """The container's process spec with ``command`` for its args, in a
        file of the bundle named by its content: a probe that runs the same
        command every few seconds writes it once."""
        b = self.bundle(rec.id)
        try:
            process = json.loads((b / "config.json").read_bytes())["process"]
        except (OSError, ValueError, KeyError, TypeError):
            return None
        process = {**process, "args": list(command), "terminal": tty}
        if tty:
            # containerd's exec with a terminal: TERM=xterm, over the container's own.
            process["env"] = [e for e in process.get("env") or []
                              if not e.startswith("TERM=")] + ["TERM=xterm"]
        else:
            process.pop("consoleSize", None)
        data = json.dumps(process, sort_keys=True).encode()
        path = b / f"exec-{hashlib.sha256(data).hexdigest()[:16]}.json"
        try:
            os.utime(path)  # in use: the last to be pruned
        except FileNotFoundError:
            _prune_exec_files(b)
            tmp = path.with_suffix(".tmp")
            tmp.write_bytes(data)
            os.replace(tmp, path)
        return path

    def attach_socket(self, rec: Record) -> tuple[Path, Path | None]:
        """conmon's attach socket for the container (SOCK_SEQPACKET: each
        packet read is one chunk of output after a byte naming its pipe, 2
        stdout or 3 stderr; each packet written goes to the container's
        stdin), and its control fifo when the container has a terminal
        (a line "1 HEIGHT WIDTH" resizes it), else None."""
        b = self.bundle(rec.id)
        try:
            terminal = bool(json.loads((b / "config.json").read_bytes())["process"].get("terminal"))
        except (OSError, ValueError, KeyError, AttributeError):
            terminal = False
        return b / "attach", (b / "ctl" if terminal else None)

    def cgroup_path(self, rec: Record) -> str:
        try:
            return str(json.loads((self.bundle(rec.id) / "config.json").read_bytes())["linux"]["cgroupsPath"])
        except (OSError, ValueError, KeyError):
            return ""


EXEC_FILES_KEPT = 16     # a container's exec process files beyond these are pruned...
EXEC_FILE_MIN_AGE = 60.0  # ...once this old: a runtime reads its file as it starts


def _prune_exec_files(bundle: Path) -> None:
    """Remove a container's least recently used exec process files past
    EXEC_FILES_KEPT (a user running many different commands)."""
    try:
        files = sorted(((p.stat().st_mtime, p) for p in bundle.glob("exec-*.json")), reverse=True)
    except OSError:
        return
    cutoff = time.time() - EXEC_FILE_MIN_AGE
    for mtime, p in files[EXEC_FILES_KEPT - 1:]:
        if mtime < cutoff:
            p.unlink(missing_ok=True)


async def _read_line(pipe: BinaryIO) -> bytes:
    """One line from ``pipe`` (less at its end)."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(loop=loop)
    transport, _ = await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), pipe)
    try:
        return await reader.readline()
    finally:
        transport.close()


def _reap(pid: int) -> None:
    """Collect a conmon that was our child (the agent is their subreaper)."""
    if pid > 0:
        try:
            os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            pass


def become_subreaper() -> None:
    """Orphaned conmons become our children rather than init's, so we can reap
    them (PR_SET_CHILD_SUBREAPER); they outlive us all the same."""
    try:
        libc.handle().prctl(libc.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    except (OSError, AttributeError):
        pass


def reap_children(pids: set[int]) -> None:
    for pid in pids:
        _reap(pid)


__all__ = ["CREATED", "EXITED", "OCIRuntime", "RUNNING", "Record", "OCIError", "State",
           "become_subreaper", "choose_runtime", "mount_overlay", "mount_run_dir",
           "readonly_binary", "runtime_of", "state_dir", "unmount"]
