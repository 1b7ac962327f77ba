"""Liveness, readiness and startup probes, and the lifecycle hooks that use
the same handlers (exec, httpGet, tcpSocket, grpc).

One asyncio task per probed container runs its probes on their periods and
keeps the result; the pod worker reads results and is told (``on_change``)
when one flips, as the kubelet's prober manager feeds its status manager.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp

log = logging.getLogger("pinnace.kubelet.probes")

Obj = dict[str, Any]

# Exec probes are given to the agent as argv for the runtime's `exec`.
ExecArgv = Callable[[list[str]], list[str]]


@dataclass
class Result:
    ok: bool
    message: str = ""


def _port(value: Any, container: Obj) -> int:
    """A probe's port: a number, or the name of one of the container's ports."""
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.isdigit():
        return int(value)
    for p in container.get("ports") or []:
        if p.get("name") == value:
            return int(p["containerPort"])
    raise ValueError(f"port {value!r} not found in the container's ports")


async def run_handler(handler: Obj, *, container: Obj, pod_ip: str, exec_argv: ExecArgv,
                      timeout: float) -> Result:
    """Run one probe or hook handler; never raises."""
    try:
        if "exec" in handler:
            return await _exec(exec_argv((handler["exec"] or {}).get("command") or []), timeout)
        if "httpGet" in handler:
            return await _http(handler["httpGet"], container, pod_ip, timeout)
        if "tcpSocket" in handler:
            return await _tcp(handler["tcpSocket"], container, pod_ip, timeout)
        if "grpc" in handler:
            return await _grpc(handler["grpc"], pod_ip, timeout)
        if "sleep" in handler:
            await asyncio.sleep(float((handler["sleep"] or {}).get("seconds") or 0))
            return Result(True)
    except (OSError, ValueError, asyncio.TimeoutError, aiohttp.ClientError) as e:
        return Result(False, str(e) or type(e).__name__)
    return Result(False, "no handler in the probe")


async def _exec(argv: list[str], timeout: float) -> Result:
    proc = await asyncio.create_subprocess_exec(
        *argv, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT)
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), timeout)
    except asyncio.TimeoutError:
        proc.kill()
        await proc.wait()
        return Result(False, f"command timed out after {timeout:g}s")
    if proc.returncode == 0:
        return Result(True)
    text = out.decode(errors="replace").strip()
    return Result(False, text or f"command exited with {proc.returncode}")


async def _http(spec: Obj, container: Obj, pod_ip: str, timeout: float) -> Result:
    scheme = str(spec.get("scheme") or "HTTP").lower()
    host = spec.get("host") or pod_ip
    port = _port(spec.get("port"), container)
    path = spec.get("path") or "/"
    if not path.startswith("/"):
        path = "/" + path
    headers = {"User-Agent": "kube-probe/1.37", "Accept": "*/*"}
    for h in spec.get("httpHeaders") or []:
        headers[h["name"]] = h.get("value", "")
    url = f"{scheme}://{host}:{port}{path}"
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as s:
        # Probes skip certificate checks, as the kubelet's do.
        async with s.get(url, headers=headers, ssl=False, allow_redirects=True) as resp:
            await resp.read()
            if 200 <= resp.status < 400:
                return Result(True)
            return Result(False, f"HTTP probe failed with statuscode: {resp.status}")


async def _tcp(spec: Obj, container: Obj, pod_ip: str, timeout: float) -> Result:
    host = spec.get("host") or pod_ip
    port = _port(spec.get("port"), container)
    _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
    writer.close()
    return Result(True)


async def _grpc(spec: Obj, pod_ip: str, timeout: float) -> Result:
    from .grpcprobe import health_check  # HTTP/2 is loaded only by pods that use it

    return Result(*await health_check(spec, pod_ip, timeout))


@dataclass
class ContainerProbes:
    """The probe state of one running container."""
    started: bool = False       # startup probe passed (or there is none)
    ready: bool = False         # readiness probe passed (or there is none, once started)
    live_failed: str = ""       # set when liveness (or startup) gave up: restart it
    tasks: list[asyncio.Task[None]] = field(default_factory=list)


class Prober:
    """Probes for the containers of all pods, keyed by container id."""

    def __init__(self, on_change: Callable[[str], None],
                 on_event: Callable[[str, str, str, str], None] | None = None):
        self._on_change = on_change      # called with the pod key when a result flips
        self._on_event = on_event or (lambda key, container, reason, msg: None)
        self.state: dict[str, ContainerProbes] = {}

    def get(self, cid: str) -> ContainerProbes | None:
        return self.state.get(cid)

    def start(self, cid: str, key: str, container: Obj, pod_ip: str, exec_argv: ExecArgv,
              started_at: float, started: bool | None = None,
              ready: bool | None = None) -> ContainerProbes:
        """Probe a container; ``started`` and ``ready`` are where its probes
        begin (default: not yet, for each probe the container has)."""
        if cid in self.state:
            return self.state[cid]
        st = ContainerProbes(
            started="startupProbe" not in container if started is None else bool(started),
            ready="readinessProbe" not in container if ready is None else bool(ready))
        self.state[cid] = st
        loop = asyncio.get_running_loop()
        for kind in ("startupProbe", "livenessProbe", "readinessProbe"):
            if container.get(kind):
                st.tasks.append(loop.create_task(self._loop(
                    kind, st, key, container, pod_ip, exec_argv, started_at)))
        return st

    def stop(self, cid: str) -> None:
        st = self.state.pop(cid, None)
        if st:
            for t in st.tasks:
                t.cancel()

    async def _loop(self, kind: str, st: ContainerProbes, key: str, container: Obj, pod_ip: str,
                    exec_argv: ExecArgv, started_at: float) -> None:
        probe = container[kind]
        period = max(int(probe.get("periodSeconds") or 10), 1)
        timeout = max(int(probe.get("timeoutSeconds") or 1), 1)
        fail_max = max(int(probe.get("failureThreshold") or 3), 1)
        ok_min = max(int(probe.get("successThreshold") or 1), 1)
        delay = int(probe.get("initialDelaySeconds") or 0) - (time.time() - started_at)
        if delay > 0:
            await asyncio.sleep(delay)
        fails = oks = 0
        name = container.get("name")
        label = {"startupProbe": "Startup", "livenessProbe": "Liveness",
                 "readinessProbe": "Readiness"}[kind]
        while True:
            if kind != "startupProbe" and not st.started:
                await asyncio.sleep(min(period, 1))
                continue
            result = await run_handler(probe, container=container, pod_ip=pod_ip,
                                       exec_argv=exec_argv, timeout=timeout)
            if result.ok:
                fails, oks = 0, oks + 1
            else:
                fails, oks = fails + 1, 0
                self._on_event(key, name or "", "Unhealthy", f"{label} probe failed: {result.message}")
            if kind == "startupProbe":
                if oks >= 1:
                    st.started = True
                    self._on_change(key)
                    return
                if fails >= fail_max:
                    st.live_failed = f"Container {name} failed startup probe, will be restarted"
                    self._on_change(key)
                    return
            elif kind == "livenessProbe":
                if fails >= fail_max:
                    st.live_failed = f"Container {name} failed liveness probe, will be restarted"
                    self._on_change(key)
                    return
            else:
                ready = st.ready
                if oks >= ok_min:
                    ready = True
                elif fails >= fail_max:
                    ready = False
                if ready != st.ready:
                    st.ready = ready
                    self._on_change(key)
            await asyncio.sleep(period)
