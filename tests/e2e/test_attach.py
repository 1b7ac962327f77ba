"""kubectl attach on a real node: to a shell on a terminal, typed into
through a pty as a user would (and resized with it), to the output of a
container without stdin, and `kubectl run -it --rm`, which makes the pod
and attaches to it."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import select
import struct
import subprocess
import termios
import time

from tests.conftest import KUBECTL, wait_for
from tests.e2e.conftest import cstate, phase, wait_pod

IMAGE = "busybox:1.36"


def _apply(node, ns, obj) -> None:  # type: ignore[no-untyped-def]
    node.kubectl("apply", "-n", ns, "-f", "-", input=json.dumps(obj))


def _pod(name: str, container: dict) -> dict:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {"terminationGracePeriodSeconds": 1, "restartPolicy": "Never",
                     "containers": [{"name": "c", "image": IMAGE, **container}]}}


def _running(p: dict) -> bool:
    return phase(p) == "Running" and "running" in cstate(p)


class Terminal:
    """kubectl on a pty of ``rows`` x ``cols``, as in a user's terminal."""

    def __init__(self, node, *args: str, rows: int = 33, cols: int = 77):  # type: ignore[no-untyped-def]
        self.primary, secondary = pty.openpty()
        fcntl.ioctl(secondary, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
        env = dict(os.environ, KUBECONFIG=str(node.kubeconfig))
        self.proc = subprocess.Popen([KUBECTL, *args], stdin=secondary, stdout=secondary,
                                     stderr=secondary, env=env, start_new_session=True)
        os.close(secondary)
        self.out = b""
        self.pos = 0

    def expect(self, text: bytes, timeout: float = 30) -> None:
        """Read until ``text`` comes (after what an earlier expect saw)."""
        deadline = time.monotonic() + timeout
        while (at := self.out.find(text, self.pos)) < 0:
            assert time.monotonic() < deadline, f"no {text!r} in {self.out!r}"
            if not self._read(0.2) and self.proc.poll() is not None:
                raise AssertionError(f"kubectl ended ({self.proc.returncode}) before "
                                     f"{text!r}: {self.out!r}")
        self.pos = at + len(text)

    def _read(self, timeout: float) -> int:
        if select.select([self.primary], [], [], timeout)[0]:
            try:
                data = os.read(self.primary, 4096)
            except OSError:  # EIO: kubectl closed the terminal
                return 0
            self.out += data
            return len(data)
        return 0

    def type(self, text: bytes) -> None:
        os.write(self.primary, text)

    def wait(self, timeout: float = 30) -> int:
        deadline = time.monotonic() + timeout
        while self.proc.poll() is None and time.monotonic() < deadline:
            self._read(0.2)
        while self._read(0.1):
            pass
        return self.proc.wait(1)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        os.close(self.primary)


def test_attach_to_a_shell_on_a_terminal(node, ns):
    _apply(node, ns, _pod("shell", {"command": ["sh"], "stdin": True, "tty": True}))
    wait_pod(node, ns, "shell", _running, what="Running")
    t = Terminal(node, "attach", "-it", "shell", "-c", "c", "-n", ns)
    try:
        t.expect(b"If you don't see a command prompt, try pressing enter.")
        t.type(b"echo attached-$((6*7))\r")
        t.expect(b"attached-42")
        t.type(b"tty\r")
        t.expect(b"/dev/pts/")
        # kubectl sends its terminal's size (after one a cell larger, which
        # makes the shell redraw); the agent spaces them out for conmon.
        for _ in range(20):
            t.type(b"stty size\r")
            try:
                t.expect(b"\r\n33 77\r\n", timeout=0.5)
                break
            except AssertionError:
                continue
        else:
            raise AssertionError(f"the terminal never got kubectl's size: {t.out!r}")
        t.type(b"exit\r")
        assert t.wait() == 0, t.out  # the container ended: the session ends well
    finally:
        t.close()
    wait_pod(node, ns, "shell", lambda p: phase(p) == "Succeeded", what="Succeeded")
    # What the terminal showed is in the log too.
    assert "attached-42" in node.kubectl("logs", "shell", "-n", ns).stdout


def test_attach_streams_output(node, ns):
    count = "i=0; while true; do echo line $i; i=$((i+1)); sleep 0.2; done"
    _apply(node, ns, _pod("talk", {"command": ["sh", "-c", count]}))
    wait_pod(node, ns, "talk", _running, what="Running")
    env = dict(os.environ, KUBECONFIG=str(node.kubeconfig))
    proc = subprocess.Popen([KUBECTL, "attach", "talk", "-n", ns], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, env=env, text=True)
    try:
        assert proc.stdout is not None
        seen = [proc.stdout.readline().strip() for _ in range(4)]
        numbers = [int(line.split()[1]) for line in seen]
        assert all(line.startswith("line ") for line in seen), seen
        assert numbers == list(range(numbers[0], numbers[0] + 4)), seen
    finally:
        proc.kill()
        proc.wait()
    # Leaving does not stop the container.
    time.sleep(0.5)
    wait_pod(node, ns, "talk", _running, timeout=5, what="still Running")


def test_run_it_rm(node, ns):
    t = Terminal(node, "run", "-it", "--rm", "once", f"--image={IMAGE}", "--restart=Never",
                 "-n", ns, "--", "sh")
    try:
        t.expect(b"If you don't see a command prompt, try pressing enter.", timeout=90)
        t.type(b"echo ran-$((6*7)); exit 3\r")
        t.expect(b"ran-42")
        code = t.wait(60)
    finally:
        t.close()
    assert code == 3, t.out  # kubectl run reports the container's exit code
    assert b'pod "once" deleted' in t.out, t.out

    def gone() -> bool:
        out = node.kubectl("get", "pod", "once", "-n", ns, check=False)
        return out.returncode != 0 and "NotFound" in out.stderr
    wait_for(gone, timeout=30, what="the pod to be removed")


def test_run_i_rm_with_piped_stdin(node, ns):
    """stdinOnce: the container's stdin ends when kubectl's does."""
    out = node.kubectl("run", "-i", "--rm", "piped", f"--image={IMAGE}", "--restart=Never",
                       "-n", ns, "--", "sh", "-c", "wc -l; echo stdin-ended",
                       input="one\ntwo\nthree\n", timeout=120)
    assert "3\nstdin-ended\n" in out.stdout, out
