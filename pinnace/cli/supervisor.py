"""`pinnace server`: the API server and the agent as child processes, the
controller manager, scheduler and DNS in this process (each in a child of
its own with --separate-components), started in order of readiness and
restarted when one stops, as k3s's executor runs its components.

The three share this process because they are API clients alone: one
interpreter, aiohttp and TLS stack serve them all (~75 MB less than a
process each, the supervisor's own ~20 MB included). Each runs as a task of
its own and is restarted alone, so a DNS that cannot bind its port does not
stop the controllers. The API server (the store, its CPU) and the agent
(root, containers that outlive it) stay processes of their own.

`pinnace server` checks its flags and data dir with the whole CLI loaded,
then replaces itself (exec, same PID) with this module alone: with
--separate-components the supervisor then stays ~20 MB, as the imports
those checks needed are not loaded again."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import NoReturn

log = logging.getLogger("pinnace.server")
PLAN_VAR = "PINNACE_SUPERVISOR_PLAN"  # the Supervisor's arguments, as JSON
# What an API server worker prints once it serves (apiworkers.READY): for the
# parent, never relayed.
QUIET_LINE = b"pinnace-apiserver-worker-ready\n"


@dataclass
class Child:
    """One `pinnace <args>` process; ``capture``: its stdout is a pipe the
    parent reads (start-up lines), else it is inherited."""

    name: str
    args: list[str]
    proc: asyncio.subprocess.Process | None = None
    restarts: int = 0
    started_at: float = 0.0
    env: dict[str, str] = field(default_factory=dict)
    capture: bool = False
    pass_fds: tuple[int, ...] = ()  # the parent's descriptors the child keeps

    async def start(self) -> None:
        self.started_at = time.monotonic()
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "pinnace.cli.main", *self.args,
            stdout=asyncio.subprocess.PIPE if self.capture else None,
            env={**os.environ, **self.env}, preexec_fn=die_with_parent, pass_fds=self.pass_fds)
        log.info("started %s (pid %d)", self.name, self.proc.pid)

    async def drain(self) -> None:
        """Relay the rest of a captured stdout to ours, whole lines at a time
        (an API server's audit log with --audit-log-path -, from several
        workers at once), so the child never blocks on a full pipe. The
        worker's ready marker a restarted worker prints is left out."""
        assert self.proc is not None and self.proc.stdout is not None
        pending = b""
        out = sys.stdout.buffer
        while chunk := await self.proc.stdout.read(1 << 16):
            pending += chunk
            cut = pending.rfind(b"\n") + 1
            if not cut:
                continue
            lines, pending = pending[:cut], pending[cut:]
            lines = lines.replace(QUIET_LINE, b"")
            if lines:
                out.write(lines)
                out.flush()

    async def keep(self, stopping: Callable[[], bool],
                   on_exit: Callable[[int], None] | None = None) -> None:
        """Restart this child whenever it exits, backing off if it keeps
        crashing, until ``stopping()``; ``on_exit(pid)`` after each exit."""
        while not stopping():
            assert self.proc is not None
            code = await self.proc.wait()
            if stopping():
                return
            if on_exit is not None:
                on_exit(self.proc.pid)
            self.restarts += 1
            delay = restart_delay(self.restarts, self.started_at)
            log.warning("%s exited with %s; restarting in %ds", self.name, code, delay)
            await asyncio.sleep(delay)
            await self.start()
            if self.capture:
                asyncio.create_task(self.drain())

    async def terminate(self) -> None:
        if self.proc is None or self.proc.returncode is not None:
            return
        self.proc.terminate()
        try:
            await asyncio.wait_for(self.proc.wait(), 10)
        except asyncio.TimeoutError:
            self.proc.kill()
            await self.proc.wait()


def restart_delay(restarts: int, started_at: float) -> int:
    """Seconds before starting again what stopped: 1, or backing off to 30
    when it keeps stopping within 10 s of its start."""
    quick = time.monotonic() - started_at < 10
    return min(2 ** min(restarts, 5), 30) if quick else 1


@dataclass
class Task:
    """A component run in the supervisor's own process (`pinnace <args>`
    parsed as the command line would be), restarted alone when it stops."""

    name: str
    args: list[str]
    restarts: int = 0

    async def keep(self, stopping: Callable[[], bool]) -> None:
        from pinnace.cli.main import component

        while not stopping():
            started_at = time.monotonic()
            try:
                await component(self.args)
                outcome = "returned"
            except Exception as e:  # a component's bug must not stop the others
                log.error("%s failed", self.name, exc_info=e)
                outcome = f"failed: {e!r}"
            if stopping():
                return
            self.restarts += 1
            delay = restart_delay(self.restarts, started_at)
            log.warning("%s %s; restarting in %ds", self.name, outcome, delay)
            await asyncio.sleep(delay)


class Supervisor:
    """``children``: the components run as processes (besides the API server);
    ``in_process``: those run as tasks here."""

    def __init__(self, data_dir: Path, apiserver_args: list[str], children: list[str],
                 in_process: list[str], verbosity: list[str],
                 component_args: dict[str, list[str]] | None = None):
        self.data_dir = data_dir
        self.api = Child("apiserver", [*verbosity, "apiserver", *apiserver_args], capture=True)
        extra = component_args or {}

        def argv(c: str) -> list[str]:
            return [c, "--kubeconfig", str(data_dir / f"{c}.kubeconfig"), *extra.get(c, [])]

        self.components = [Child(c, [*verbosity, *argv(c)]) for c in children]
        self.tasks = [Task(c, argv(c)) for c in in_process]
        self.stopping = False

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await self.api.start()
        assert self.api.proc is not None and self.api.proc.stdout is not None
        # Relay the API server's start-up lines (URL, kubeconfig path) and wait for them.
        ready = False
        while not ready:
            line = await self.api.proc.stdout.readline()
            if not line:
                return await self.api.proc.wait() or 1
            sys.stdout.write(line.decode())
            sys.stdout.flush()
            ready = b"kubeconfig written" in line
        relay = asyncio.create_task(self.api.drain())
        for c in self.components:
            await c.start()
        watchers = [asyncio.create_task(c.keep(lambda: self.stopping))
                    for c in [self.api, *self.components]]
        tasks = [asyncio.create_task(t.keep(lambda: self.stopping), name=t.name)
                 for t in self.tasks]
        await stop.wait()
        self.stopping = True
        for w in [*tasks, *watchers]:
            w.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)  # clients first: they hang up
        relay.cancel()
        for c in [*self.components, self.api]:
            await c.terminate()
        return 0


def die_with_parent() -> None:
    """In the child: get SIGTERM if the supervisor dies, even by SIGKILL, so
    no component outlives `pinnace server` (Linux prctl PR_SET_PDEATHSIG)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)
    except (OSError, AttributeError):
        pass


def exec_lean(data_dir: Path, apiserver_args: list[str], children: list[str],
              in_process: list[str], verbosity: list[str], component_args: dict[str, list[str]],
              log_level: int) -> NoReturn:
    """Become the supervisor alone (does not return). The command line shown
    by ps stays the user's `pinnace server ...`, after the module's name."""
    import json

    os.environ[PLAN_VAR] = json.dumps({
        "data_dir": str(data_dir), "apiserver_args": apiserver_args, "children": children,
        "in_process": in_process,
        "verbosity": verbosity, "component_args": component_args, "log_level": log_level})
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, [sys.executable, "-m", __name__, *sys.argv[1:]])


def _main() -> int:
    import json

    from pinnace.runtime import tune_malloc

    tune_malloc()
    plan = json.loads(os.environ.pop(PLAN_VAR))  # not for the children
    logging.basicConfig(level=plan["log_level"],
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if plan["in_process"]:  # the components' loop, as they have it alone
        try:
            import uvloop

            uvloop.install()
        except ImportError:  # pragma: no cover
            pass
    return asyncio.run(Supervisor(Path(plan["data_dir"]), plan["apiserver_args"],
                                  plan["children"], plan["in_process"], plan["verbosity"],
                                  plan["component_args"]).run())


if __name__ == "__main__":
    sys.exit(_main())
