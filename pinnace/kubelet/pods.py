"""Bringing one pod's containers in line with its spec, as the kubelet's pod
workers do (SyncPod): sandbox and network first, then volumes, init
containers one by one, then the containers, restarts with back-off, and the
pod's status from what really runs.

The runtime's records (one per container attempt, on disk) are the truth;
what lives only in memory here is what a restart may forget: back-off
timers, the last pull error, the last status sent.
"""

from __future__ import annotations

import asyncio
import base64
import copy
import hashlib
import itertools
import json
import logging
import os
import shutil
import socket
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from pinnace.client import ApiError, Client

from . import ocispec, steps
from .cgroups import remove_pod_cgroups
from .oci import CREATED, EXITED, RUNNING, OCIError, OCIRuntime, Record, State
from .podstatus import normalize_image, pod_status, rfc3339, volume_mounts
from .probes import Prober, run_handler
from .sandbox import Sandboxes, cgroup_parent
from .startgate import StartGate

log = logging.getLogger("pinnace.kubelet.pods")

Obj = dict[str, Any]

BACKOFF_START, BACKOFF_MAX = 10.0, 300.0
# A container that ran this long without trouble starts its back-off afresh.
BACKOFF_RESET = 600.0
TERMINATION_MESSAGE_MAX = 4096
FALLBACK_LOG_LINES = 80


@dataclass
class Waiting:
    reason: str
    message: str = ""


# ps.waiting keys for what holds up all of a pod's containers.
SANDBOX, VOLUMES = "*sandbox", "*volumes"


class EventFn(Protocol):
    """Records an Event about a pod (one of its containers, by field path)."""

    def __call__(self, pod: Obj, type_: str, reason: str, message: str,
                 field_path: str = "") -> None: ...


@dataclass
class PodState:
    """What the agent remembers of a pod between syncs."""
    waiting: dict[str, Waiting] = field(default_factory=dict)
    backoff: dict[str, tuple[float, float]] = field(default_factory=dict)  # name -> (not before, delay)
    # name -> (not before, delay, what the last pull said)
    pull_backoff: dict[str, tuple[float, float, str]] = field(default_factory=dict)
    pod_ip: str = ""
    sent: Obj | None = None
    # The status being written: its echo from the watch can come back
    # before the write's own answer does.
    sending: Obj | None = None
    start_time: str = ""
    # container id -> the resources a resize of it failed to apply (not tried again)
    resize_failed: dict[str, Obj] = field(default_factory=dict)
    order: int = 0  # when the agent first saw it: its turn at the start gate


def field_path(pod: Obj, name: str) -> str:
    """A container as the kubelet names it in its events' involvedObject
    (``spec.containers{web}``); "" for a name the spec does not have."""
    spec = pod.get("spec") or {}
    for key in ("containers", "initContainers", "ephemeralContainers"):
        if any(c.get("name") == name for c in spec.get(key) or []):
            return f"spec.{key}{{{name}}}"
    return ""


def go_duration(seconds: float) -> str:
    """A duration as Go prints a time.Duration truncated to milliseconds,
    as the kubelet's pull events give it: 177ms, 1.5s, 2m3.04s."""
    ms = int(seconds * 1000)
    if ms < 1000:
        return f"{ms}ms"
    h, rest = divmod(ms, 3_600_000)
    m, rest = divmod(rest, 60_000)
    sec = f"{rest / 1000:.3f}".rstrip("0").rstrip(".")
    return (f"{h}h" if h else "") + (f"{m}m" if h or m else "") + f"{sec}s"


def spec_hash(container: Obj) -> str:
    """Changes to these fields restart the container (the kubelet hashes the
    whole spec; with in-place resize, resources no longer count)."""
    keep = {k: v for k, v in container.items() if k not in ("resources", "resizePolicy")}
    return hashlib.sha256(json.dumps(keep, sort_keys=True).encode()).hexdigest()[:16]


def new_id() -> str:
    return uuid.uuid4().hex + uuid.uuid4().hex


class Records:
    """The agent's container records, by id and by pod: a pod's sync looks up
    its own several times per container, and scanning every record on the
    node each time made a burst of pods quadratic."""

    def __init__(self, records: list[Record]):
        self._by_id: dict[str, Record] = {}
        self._by_pod: dict[str, dict[str, Record]] = {}
        for rec in records:
            self[rec.id] = rec

    def __setitem__(self, cid: str, rec: Record) -> None:
        self.pop(cid)
        self._by_id[cid] = rec
        self._by_pod.setdefault(rec.pod_uid, {})[cid] = rec

    def pop(self, cid: str, default: Record | None = None) -> Record | None:
        rec = self._by_id.pop(cid, None)
        if rec is None:
            return default
        pod = self._by_pod.get(rec.pod_uid, {})
        pod.pop(cid, None)
        if not pod:
            self._by_pod.pop(rec.pod_uid, None)
        return rec

    def get(self, cid: str) -> Record | None:
        return self._by_id.get(cid)

    def values(self) -> list[Record]:
        return list(self._by_id.values())

    def of_pod(self, uid: str) -> list[Record]:
        return list(self._by_pod.get(uid, {}).values())

    def pod_uids(self) -> set[str]:
        return set(self._by_pod)


class PodWorkers:
    """Everything one node does to pods. ``requeue(key, delay)`` asks for
    another sync of a pod later; ``event(pod, type, reason, message)``
    records an Event."""

    def __init__(self, *, client: Client, runtime: OCIRuntime, images: Any, network: Any,
                 volumes: Any, pods_dir: Path, logs_dir: Path, node_name: str,
                 host_ip: Callable[[], str], service_env: Callable[[Obj], dict[str, str]],
                 requeue: Callable[[str, float], None],
                 event: EventFn,
                 cluster_dns: list[str], cluster_domain: str, insecure_registries: set[str],
                 pause: str):
        self.client = client
        self.rt = runtime
        self.images = images
        self.network = network
        self.volumes = volumes
        self.pods_dir = pods_dir
        self.logs_dir = logs_dir
        self.node_name = node_name
        self.host_ip = host_ip
        self.service_env = service_env
        self.requeue = requeue
        self.event = event
        self.cluster_dns = cluster_dns
        self.cluster_domain = cluster_domain
        self.insecure = insecure_registries
        self.pause = pause
        self.pods_rc = client.resource("v1", "pods")
        self.state: dict[str, PodState] = {}
        self._arrivals = itertools.count()
        # Two pods' busy start steps per CPU keep the CPUs busy (the steps
        # wait on the kernel and the runtime too) without slowing them all.
        self.start_gate = StartGate(2 * (os.cpu_count() or 1))
        # Containers only: a pause container belongs to the pod's sandbox.
        self.records = Records([r for r in runtime.records() if not r.sandbox])
        self.sandboxes = Sandboxes(runtime, pods_dir, pause)
        self.prober = Prober(on_change=lambda key: self.requeue(key, 0),
                             on_event=self._probe_event)
        self._pods_by_key: dict[str, Obj] = {}
        self._killing: dict[str, asyncio.Task[None]] = {}  # by pod uid

    # -- records -----------------------------------------------------------------

    def of_pod(self, uid: str) -> list[Record]:
        return self.records.of_pod(uid)

    def attempts(self, uid: str, name: str, init: bool) -> list[Record]:
        """The container's attempts, oldest first."""
        return sorted((r for r in self.of_pod(uid) if r.name == name and r.init == init),
                      key=lambda r: r.attempt)

    def pod_uids(self) -> set[str]:
        """Pods with anything on this node: containers or a sandbox."""
        return self.records.pod_uids() | self.sandboxes.uids()

    def latest(self, uid: str, name: str, init: bool) -> Record | None:
        a = self.attempts(uid, name, init)
        return a[-1] if a else None

    # -- the sync -----------------------------------------------------------------

    async def sync(self, key: str, pod: Obj) -> None:
        meta, spec = pod["metadata"], pod["spec"]
        uid = meta["uid"]
        self._pods_by_key[key] = pod
        ps = self.state.get(uid)
        if ps is None:
            ps = self.state[uid] = PodState(order=next(self._arrivals))
        for other in {r.pod_uid for r in self.records.values()
                      if r.namespace == meta.get("namespace") and r.pod_name == meta["name"]
                      and r.pod_uid != uid}:
            await self.kill_pod(other, grace=0)  # an older pod of the same name
        phase = (pod.get("status") or {}).get("phase")
        if meta.get("deletionTimestamp"):
            await self._finish_deletion(pod, ps)
            return
        if phase in ("Succeeded", "Failed"):
            await self._stop_terminal(pod, ps)
            return
        # Independent, so side by side: a volume's API calls (a token, a
        # ConfigMap) wait while the sandbox's namespaces and links are made.
        sandbox_up, paths = await asyncio.gather(self._ensure_sandbox(pod, ps),
                                                 self._ensure_volumes(pod, ps))
        if not sandbox_up or paths is None:
            await self._report(pod, ps)
            return
        failed = False
        inits_done = True
        for c in spec.get("initContainers") or []:
            sidecar = c.get("restartPolicy") == "Always"
            if sidecar:
                await self._ensure_container(pod, ps, c, paths, init=True, policy="Always")
                st = self._probe_state(uid, c["name"], True)
                if not st:
                    inits_done = False
                    break
                continue
            done, failed = await self._run_init(pod, ps, c, paths)
            if not done:
                inits_done = False
                break
        if inits_done and not failed:
            policy = spec.get("restartPolicy") or "Always"
            for c in spec.get("containers") or []:
                await self._ensure_container(pod, ps, c, paths, init=False, policy=policy)
            # kubectl debug's containers: started once, never restarted.
            for c in spec.get("ephemeralContainers") or []:
                await self._ensure_container(pod, ps, c, paths, init=False, policy="Never")
        status = await self._report(pod, ps)
        if status.get("phase") in ("Succeeded", "Failed"):
            await self._stop_terminal({**pod, "status": status}, ps)

    def _probe_state(self, uid: str, name: str, init: bool) -> bool:
        """A running sidecar counts as started once its startup probe passed."""
        rec = self.latest(uid, name, init)
        if rec is None or self.rt.state(rec).status != RUNNING:
            return False
        st = self.prober.get(rec.id)
        return st.started if st else True

    async def _run_init(self, pod: Obj, ps: PodState, c: Obj, paths: dict[str, Path]
                        ) -> tuple[bool, bool]:
        """(done, failed for good) for one init container."""
        uid = pod["metadata"]["uid"]
        rec = self.latest(uid, c["name"], True)
        if rec is not None:
            st = self.rt.state(rec)
            if st.status == CREATED:
                await self._finish_start(pod, ps, c, rec)  # the agent stopped in between
                return False, False
            if st.status != EXITED:
                return False, False
            if st.exit_code == 0 and not rec.labels.get("start-error"):
                return True, False
            if (pod["spec"].get("restartPolicy") or "Always") == "Never":
                return False, True
        await self._ensure_container(pod, ps, c, paths, init=True, policy="OnFailure")
        return False, False

    # -- sandbox ------------------------------------------------------------------

    def pod_dir(self, uid: str) -> Path:
        return self.pods_dir / uid

    async def _ensure_sandbox(self, pod: Obj, ps: PodState) -> bool:
        meta, spec = pod["metadata"], pod["spec"]
        uid = meta["uid"]
        if self.sandboxes.alive(uid):
            if not ps.pod_ip:
                ps.pod_ip = self.host_ip() if spec.get("hostNetwork") else \
                    getattr(self.network.pods().get(uid), "ip", "")
            ps.waiting.pop(SANDBOX, None)
            return True
        if self.sandboxes.existed(uid):
            # The sandbox died (the node rebooted, someone removed it): its
            # containers go with it and come back in a new one.
            log.info("pod %s/%s: sandbox gone; recreating it", meta.get("namespace"), meta["name"])
            self.event(pod, "Normal", "SandboxChanged",
                       "Pod sandbox changed, it will be killed and re-created.")
            for rec in self.of_pod(uid):
                self.prober.stop(rec.id)
                await self.rt.stop(rec, 0)
            await self.sandboxes.remove(uid)
        try:
            async with self.start_gate.slot(ps.order):
                ports = _host_ports(pod)
                pinned = False
                if spec.get("hostNetwork"):
                    netns, ps.pod_ip = "", self.host_ip()
                    await steps.run(self._write_pod_files, pod, ps.pod_ip)
                else:
                    # The host's ports come before the sandbox (a failure there
                    # is retried whole); with none, the sandbox is pinned in
                    # the network's step.
                    net = await steps.run(self._pod_network, pod, not ports)
                    netns, ps.pod_ip, pinned = net.netns, net.ip, not ports
                if ports and netns:
                    await steps.run(self.network.set_host_ports, uid, ps.pod_ip, ports)
                await self.sandboxes.create(pod, netns, self._hostname(pod), pinned=pinned)
            if ps.start_time == "":
                ps.start_time = rfc3339()
            ps.waiting.pop(SANDBOX, None)
            return True
        except Exception as e:  # runtime, mount and network errors alike
            msg = f"Failed to create pod sandbox: {e}"
            ps.waiting[SANDBOX] = Waiting("ContainerCreating", msg)
            self.event(pod, "Warning", "FailedCreatePodSandBox", msg)
            log.warning("pod %s: %s", _key(pod), msg)
            self.requeue(_key(pod), 5)
            return False

    def _pod_network(self, pod: Obj, pin: bool) -> Any:
        """The pod's network, the files that name it (/etc/hosts holds its
        address) and, if ``pin``, its sandbox's namespaces, in one step: a
        hand-over to a step thread and back costs ~130 us of CPU on a
        virtual machine, as much as writing the files."""
        meta = pod["metadata"]
        net = self.network.setup_pod(meta["uid"], meta.get("namespace"), meta["name"])
        self._write_pod_files(pod, net.ip)
        if pin:
            self.sandboxes.pin(pod, net.netns, self._hostname(pod))
        return net

    def _hostname(self, pod: Obj) -> str:
        return str(pod["spec"].get("hostname") or pod["metadata"]["name"])[:63]

    def _write_pod_files(self, pod: Obj, pod_ip: str) -> None:
        from .network import write_hosts, write_resolv_conf

        spec, meta = pod["spec"], pod["metadata"]
        d = self.pod_dir(meta["uid"])
        d.mkdir(parents=True, exist_ok=True)
        host_net = bool(spec.get("hostNetwork"))
        if host_net:
            shutil.copyfile("/etc/hosts", d / "etc-hosts")
        else:
            write_hosts(d / "etc-hosts", pod_ip, self._hostname(pod), meta.get("namespace") or "",
                        subdomain=spec.get("subdomain") or "",
                        host_aliases=spec.get("hostAliases") or [], host_network=host_net)
        policy = spec.get("dnsPolicy") or "ClusterFirst"
        if host_net and policy == "ClusterFirst":
            policy = "Default"  # ClusterFirstWithHostNet is the one that keeps cluster DNS
        if policy == "ClusterFirstWithHostNet":
            policy = "ClusterFirst"
        write_resolv_conf(d / "resolv.conf", dns_policy=policy, cluster_dns=self.cluster_dns,
                          cluster_domain=self.cluster_domain,
                          namespace=meta.get("namespace") or "", dns_config=spec.get("dnsConfig"))
        (d / "hostname").write_text(self._hostname(pod) + "\n" if not host_net else
                                    Path("/etc/hostname").read_text())

    async def _ensure_volumes(self, pod: Obj, ps: PodState) -> dict[str, Path] | None:
        from .volumes import MountError

        try:
            paths = await self.volumes.setup(pod)
            ps.waiting.pop(VOLUMES, None)
            return paths
        except MountError as e:
            msg = str(e)
            ps.waiting[VOLUMES] = Waiting("ContainerCreating", msg)
            self.event(pod, "Warning", "FailedMount", msg)
            self.requeue(_key(pod), 5)
            return None

    # -- containers -----------------------------------------------------------------

    async def _ensure_container(self, pod: Obj, ps: PodState, c: Obj, paths: dict[str, Path],
                                *, init: bool, policy: str) -> None:
        uid, name = pod["metadata"]["uid"], c["name"]
        rec = self.latest(uid, name, init)
        now = time.time()
        if rec is not None:
            st = self.rt.state(rec)
            if st.status == CREATED:
                await self._finish_start(pod, ps, c, rec)  # the agent stopped in between
                return
            if st.status == RUNNING:
                if rec.spec_hash != spec_hash(c):
                    self._event(pod, c, "Normal", "Killing",
                                f"Container {name} definition changed, will be restarted")
                    await self._kill(pod, rec, c)
                    ps.backoff.pop(name, None)  # a new spec starts at once
                else:
                    probes = self.prober.get(rec.id)
                    if probes is None:  # the agent restarted (or nothing to probe)
                        self._start_probes(pod, ps, c, rec, resumed=True)
                    elif probes.live_failed:
                        self._event(pod, c, "Normal", "Killing", probes.live_failed)
                        await self._kill(pod, rec, c)
                st = self.rt.state(rec)
            if st.status == RUNNING:
                await self._resize(pod, ps, c, rec)
                return
            if st.status != EXITED:
                return
            self.prober.stop(rec.id)
            changed = rec.spec_hash != spec_hash(c)
            if not changed and not _should_restart(policy, st):
                ps.waiting.pop(name, None)
                return
            if not changed:
                wait = self._backoff_wait(ps, name, st, now)
                if wait > 0:
                    self._event(pod, c, "Warning", "BackOff", f"Back-off restarting failed "
                                f"container {name} in pod {pod['metadata']['name']}_"
                                f"{pod['metadata'].get('namespace')}({uid})")
                    ps.waiting[name] = Waiting(
                        "CrashLoopBackOff",
                        f"back-off {int(ps.backoff[name][1])}s restarting failed container={name} "
                        f"pod={pod['metadata']['name']}_{pod['metadata'].get('namespace')}({uid})")
                    self.requeue(_key(pod), wait)
                    return
        await self._start_container(pod, ps, c, paths, init=init,
                                    attempt=(rec.attempt + 1) if rec else 0)

    async def _resize(self, pod: Obj, ps: PodState, c: Obj, rec: Record) -> None:
        """In-place resize: new requests and limits go to the running
        container's cgroup, without a restart (resources are not part of
        spec_hash)."""
        desired = c.get("resources") or {}
        if desired == rec.resources or ps.resize_failed.get(rec.id) == desired:
            return
        try:
            await self.rt.update(rec, ocispec.resources(c, ocispec.qos_class(pod)),
                                 copy.deepcopy(desired))
        except OCIError as e:
            ps.resize_failed[rec.id] = desired
            self.event(pod, "Warning", "ResizeError", f"Pod resize failed: {e}")
            return
        self.event(pod, "Normal", "ResizeCompleted",
                   f"Pod resize completed: container {c['name']}: {json.dumps(desired)}")

    def _backoff_wait(self, ps: PodState, name: str, st: State, now: float) -> float:
        """Seconds to wait before the next restart (0: now), moving the timer on."""
        not_before, delay = ps.backoff.get(name, (0.0, 0.0))
        ran = st.finished_at - (st.record.started_at or st.finished_at)
        if ran > BACKOFF_RESET:
            not_before, delay = 0.0, 0.0
        if not_before == 0.0:
            # The first restart is immediate; the next waits 10 s, then 20, 40, ... 5 min.
            ps.backoff[name] = (st.finished_at + BACKOFF_START, BACKOFF_START) if delay == 0.0 \
                else (st.finished_at + delay, delay)
            return 0.0 if delay == 0.0 else max(st.finished_at + delay - now, 0)
        if now >= not_before:
            ps.backoff[name] = (0.0, min(delay * 2, BACKOFF_MAX))
            return 0.0
        return not_before - now

    async def _image(self, pod: Obj, ps: PodState, c: Obj) -> Any:
        """The container's image, pulled as its policy says; None (and a
        waiting reason) when it is not there."""
        from .images import ImageError, credentials_for

        ref = c.get("image") or ""
        name = c["name"]
        policy = c.get("imagePullPolicy") or ("Always" if _latest(ref) else "IfNotPresent")
        have = self.images.get(ref)
        if have is not None and policy != "Always":
            # 1.35's words, its kubelet checking the pod may use an image
            # pulled with another pod's credentials (KubeletEnsureSecretPulledImages).
            self._event(pod, c, "Normal", "Pulled", f'Container image "{ref}" already present '
                        "on machine and can be accessed by the pod")
            return have
        if policy == "Never":
            msg = f'Container image "{ref}" is not present with pull policy of Never'
            ps.waiting[name] = Waiting("ErrImageNeverPull", msg)
            self._event(pod, c, "Warning", "ErrImageNeverPull", msg)
            self._event(pod, c, "Warning", "Failed", "Error: ErrImageNeverPull")
            return None
        not_before, delay, last_error = ps.pull_backoff.get(name, (0.0, 0.0, ""))
        if time.time() < not_before:
            msg = f'Back-off pulling image "{ref}"'
            self._event(pod, c, "Normal", "BackOff", msg)
            self._event(pod, c, "Warning", "Failed", "Error: ImagePullBackOff")
            ps.waiting[name] = Waiting("ImagePullBackOff", f"{msg}: ErrImagePull: {last_error}")
            self.requeue(_key(pod), not_before - time.time())
            return None
        self._event(pod, c, "Normal", "Pulling", f'Pulling image "{ref}"')
        ps.waiting[name] = Waiting("ContainerCreating")
        started = time.monotonic()
        try:
            auth = credentials_for(ref, await self._pull_secrets(pod))
            image = await self.images.pull(ref, auth=auth, insecure=self.insecure)
        except ImageError as e:
            if have is not None:
                # Offline with the image already here: use it (an air-gapped
                # node cannot ask a registry whether a tag moved).
                self._event(pod, c, "Warning", "Failed", f'Failed to pull image "{ref}": {e}; '
                            "using the image present on the node")
                return have
            msg = f'Failed to pull image "{ref}": {e}'
            ps.waiting[name] = Waiting("ErrImagePull", msg)
            delay = min(delay * 2, BACKOFF_MAX) if delay else BACKOFF_START
            ps.pull_backoff[name] = (time.time() + delay, delay, msg)
            self._event(pod, c, "Warning", "Failed", msg)
            self._event(pod, c, "Warning", "Failed", "Error: ErrImagePull")
            # Soon, not after the back-off: the next sync says ImagePullBackOff
            # and waits out the rest, as the kubelet's does.
            self.requeue(_key(pod), min(delay, 1.0))
            return None
        ps.pull_backoff.pop(name, None)
        took = go_duration(time.monotonic() - started)
        self._event(pod, c, "Normal", "Pulled", f'Successfully pulled image "{ref}" in {took} '
                    f"({took} including waiting). Image size: {image.size} bytes.")
        return image

    async def _pull_secrets(self, pod: Obj) -> list[Obj]:
        out = []
        ns = pod["metadata"].get("namespace")
        for ref in pod["spec"].get("imagePullSecrets") or []:
            try:
                secret = await self.client.resource("v1", "secrets").get(ref["name"], ns)
            except ApiError:
                continue
            raw = (secret.get("data") or {}).get(".dockerconfigjson")
            if raw:
                try:
                    out.append(json.loads(base64.b64decode(raw)))
                except ValueError:
                    pass
        return out

    async def _start_container(self, pod: Obj, ps: PodState, c: Obj, paths: dict[str, Path], *,
                               init: bool, attempt: int) -> None:
        from .envvars import ConfigError, container_env, merge_image_env
        from .volumes import MountError, container_mounts

        meta = pod["metadata"]
        uid, name = meta["uid"], c["name"]
        image = await self._image(pod, ps, c)
        if image is None:
            return
        try:
            env = await container_env(self.client, pod, c, node_ip=self.host_ip(),
                                      pod_ip=ps.pod_ip, service_env=self.service_env(pod))
            # HOSTNAME first, as containerd sets it: the image's ENV and the
            # pod's may override it.
            host = socket.gethostname() if pod["spec"].get("hostNetwork") else self._hostname(pod)
            env = merge_image_env([f"HOSTNAME={host}", *(image.config.get("Env") or [])], env)
            mounts = container_mounts(pod, c, paths, env=env)
            user_root = next((p for p in reversed(image.layers) if (p / "etc/passwd").exists()),
                             image.layers[-1] if image.layers else self.pods_dir)
            uid_, gid, groups = ocispec.resolve_user(pod, c, image.config, user_root)
        except (ConfigError, ocispec.SpecError, MountError) as e:
            ps.waiting[name] = Waiting("CreateContainerConfigError", str(e))
            self._event(pod, c, "Warning", "Failed", f"Error: {e}")
            self.requeue(_key(pod), 5)
            return
        if not self.sandboxes.alive(uid):
            return
        rec = Record(id=new_id(), pod_uid=uid, namespace=meta.get("namespace") or "default",
                     pod_name=meta["name"], name=name, attempt=attempt, image=c.get("image") or "",
                     image_ref=normalize_image(c.get("image") or ""), image_id=image.id,
                     init=init, spec_hash=spec_hash(c),
                     resources=copy.deepcopy(c.get("resources") or {}),
                     user={"uid": uid_, "gid": gid, "supplementalGroups": groups},
                     log_path=str(self.logs_dir / f"{meta.get('namespace')}_{meta['name']}_{uid}"
                                  / name / f"{attempt}.log"))
        term = self.pod_dir(uid) / "termination" / f"{name}-{attempt}"
        term.parent.mkdir(parents=True, exist_ok=True)
        term.write_bytes(b"")
        d = self.pod_dir(uid)
        extra = [ocispec.bind(d / "etc-hosts", "/etc/hosts"),
                 ocispec.bind(d / "resolv.conf", "/etc/resolv.conf"),
                 ocispec.bind(d / "hostname", "/etc/hostname"),
                 ocispec.bind(term, c.get("terminationMessagePath") or "/dev/termination-log")]
        own = {m["destination"] for m in mounts}
        mounts = [m for m in extra if m["destination"] not in own] + mounts
        namespaces = self.sandboxes.container_namespaces(pod)
        target = c.get("targetContainerName")
        if target and any(e.get("name") == name for e in
                          pod["spec"].get("ephemeralContainers") or []):
            # A debug container sees the processes of the container it targets.
            running = self.latest(uid, target, False)
            pid = self.rt.state(running).pid if running is not None else 0
            if pid:
                namespaces = [n for n in namespaces if n["type"] != "pid"] + [
                    {"type": "pid", "path": f"/proc/{pid}/ns/pid"}]
        sc = c.get("securityContext") or {}
        qos = ocispec.qos_class(pod)
        mem_req = ocispec.parse_quantity(str(((c.get("resources") or {}).get("requests") or {})
                                             .get("memory", "0")))
        from .host import mem_total

        cfg = ocispec.config(
            args=ocispec.process_args(c, image.config), env=env,
            cwd=c.get("workingDir") or image.config.get("WorkingDir") or "/",
            uid=uid_, gid=gid, groups=groups, rootfs="",
            readonly_root=bool(sc.get("readOnlyRootFilesystem")), hostname=None,
            namespaces=namespaces, cgroups_path=f"{cgroup_parent(pod)}/{rec.id}",
            linux_resources=ocispec.resources(c, qos), caps=ocispec.capabilities(c),
            privileged=bool(sc.get("privileged")),
            no_new_privileges=sc.get("allowPrivilegeEscalation") is False,
            mounts=mounts, shm=self.sandboxes.shm(uid), oom_score_adj=ocispec.oom_score_adj(
                qos, float(mem_req), float(mem_total() or 1)),
            annotations={"io.kubernetes.pod.name": meta["name"],
                         "io.kubernetes.pod.namespace": meta.get("namespace") or "",
                         "io.kubernetes.pod.uid": uid, "io.kubernetes.container.name": name})
        self.records[rec.id] = rec
        self._prune_attempts(uid, name, init, keep_from=attempt - 1)
        try:
            async with self.start_gate.slot(ps.order):
                await self.rt.create(rec, cfg, rootfs_layers=image.layers,
                                     stdin=bool(c.get("stdin")),
                                     stdin_once=bool(c.get("stdinOnce")), tty=bool(c.get("tty")))
                self._event(pod, c, "Normal", "Created", "Container created")
                await self.rt.start(rec)
        except OCIError as e:
            await self._start_failed(rec, str(e))
            ps.waiting[name] = Waiting("RunContainerError", str(e))
            self._event(pod, c, "Warning", "Failed", f"Error: {e}")
            self.requeue(_key(pod), 1)
            return
        ps.waiting.pop(name, None)
        self._event(pod, c, "Normal", "Started", "Container started")
        post = (c.get("lifecycle") or {}).get("postStart")
        if post:
            res = await run_handler(post, container=c, pod_ip=ps.pod_ip, timeout=30,
                                    exec_argv=lambda cmd: self.rt.exec_argv(rec, cmd, False))
            if not res.ok:
                self._event(pod, c, "Warning", "FailedPostStartHook",
                           f"PostStartHook failed: {res.message}")
                await self._kill(pod, rec, c)
                return
        self._start_probes(pod, ps, c, rec)

    async def _finish_start(self, pod: Obj, ps: PodState, c: Obj, rec: Record) -> None:
        """Start a container the runtime has created but nobody started."""
        try:
            await self.rt.start(rec)
        except OCIError as e:
            await self._start_failed(rec, str(e))
            ps.waiting[c["name"]] = Waiting("RunContainerError", str(e))
            self.requeue(_key(pod), 1)
            return
        self._event(pod, c, "Normal", "Started", "Container started")
        self._start_probes(pod, ps, c, rec)

    def _start_probes(self, pod: Obj, ps: PodState, c: Obj, rec: Record,
                      resumed: bool = False) -> None:
        """Probe a container. ``resumed``: the agent restarted while it ran;
        it keeps the started and ready it last reported until its probes say
        otherwise, so a restart does not take it out of its Services (the
        flip upstream's kubelet has, kubernetes#100277)."""
        if not any(c.get(k) for k in ("startupProbe", "livenessProbe", "readinessProbe")):
            return
        was = _reported_status(pod, c["name"], self.rt.container_id(rec)) if resumed else None
        self.prober.start(rec.id, _key(pod), c, ps.pod_ip,
                          lambda cmd: self.rt.exec_argv(rec, cmd, False), rec.started_at,
                          started=was.get("started") if was else None,
                          ready=was.get("ready") if was else None)

    async def _start_failed(self, rec: Record, message: str) -> None:
        """A container the runtime would not start ends as StartError, exit 128,
        as containerd reports it; its record stays for the status."""
        rec.labels["start-error"] = message[:TERMINATION_MESSAGE_MAX]
        await self.rt.give_up(rec, 128)

    def _prune_attempts(self, uid: str, name: str, init: bool, keep_from: int) -> None:
        """Keep the current and the previous attempt (for `logs --previous`)."""
        for old in self.attempts(uid, name, init):
            if old.attempt < keep_from:
                self.records.pop(old.id, None)
                asyncio.get_running_loop().create_task(self._remove(old, keep_log=False))

    async def _kill(self, pod: Obj, rec: Record, c: Obj | None, grace: float | None = None) -> None:
        """preStop, then SIGTERM, then SIGKILL once the grace period is over."""
        self.prober.stop(rec.id)
        if grace is None:
            grace = float(pod["spec"].get("terminationGracePeriodSeconds", 30) or 0)
        deadline = time.monotonic() + grace
        pre = ((c or {}).get("lifecycle") or {}).get("preStop")
        if pre and self.rt.state(rec).status == RUNNING and grace > 0:
            try:
                await asyncio.wait_for(run_handler(
                    pre, container=c or {}, pod_ip=self.state.get(rec.pod_uid, PodState()).pod_ip,
                    timeout=grace, exec_argv=lambda cmd: self.rt.exec_argv(rec, cmd, False)), grace)
            except asyncio.TimeoutError:
                pass
        await self.rt.stop(rec, max(deadline - time.monotonic(), 0))

    async def _remove(self, rec: Record, keep_log: bool = True) -> None:
        self.records.pop(rec.id, None)
        self.prober.stop(rec.id)
        await self.rt.remove(rec)
        if not keep_log and rec.log_path:
            Path(rec.log_path).unlink(missing_ok=True)

    # -- ending -------------------------------------------------------------------

    async def _stop_terminal(self, pod: Obj, ps: PodState) -> None:
        """A Succeeded or Failed pod: nothing runs any more, its sandbox and
        address go; container records stay for status and logs."""
        uid = pod["metadata"]["uid"]
        for rec in self.of_pod(uid):
            if self.rt.state(rec).status != EXITED:
                await self._kill(pod, rec, _container_spec(pod, rec))
        if self.sandboxes.existed(uid):
            await self.sandboxes.remove(uid)
            await self._release_network(pod)

    async def _release_network(self, pod: Obj) -> None:
        if not pod["spec"].get("hostNetwork"):
            await steps.run(self.network.teardown_pod, pod["metadata"]["uid"])

    async def _finish_deletion(self, pod: Obj, ps: PodState) -> None:
        meta = pod["metadata"]
        grace = meta.get("deletionGracePeriodSeconds")
        if grace is None:
            grace = pod["spec"].get("terminationGracePeriodSeconds", 30)
        recs = self.of_pod(meta["uid"])
        for r in recs:
            if self.rt.state(r).status != EXITED:
                self.event(pod, "Normal", "Killing", f"Stopping container {r.name}",
                           field_path(pod, r.name))
        await asyncio.gather(*(self._kill(pod, r, _container_spec(pod, r), float(grace or 0))
                               for r in recs if self.rt.state(r).status != EXITED))
        await self.kill_pod(meta["uid"], grace=0)
        try:
            await self.pods_rc.delete(meta["name"], meta.get("namespace"), grace_period_seconds=0,
                                      preconditions={"uid": meta["uid"]})
        except ApiError as e:
            if not (e.not_found or e.conflict):
                raise

    async def removed(self, key: str) -> None:
        """The pod last synced under ``key`` is gone from the API without its
        containers stopped first (deleted with no grace period, or forced):
        they stop now, as the kubelet's REMOVE does, not at housekeeping's
        next pass, which takes one pod after another. A pod the agent had
        already ended is no longer known here."""
        pod = self._pods_by_key.get(key)
        if pod is not None:
            log.info("pod %s: deleted from the API; stopping its containers", key)
            await self.kill_pod(pod["metadata"]["uid"])

    async def kill_pod(self, uid: str, grace: float = 0) -> None:
        """Everything of a pod that is gone from the API: containers, sandbox,
        network, volumes, cgroups, logs. One teardown at a time per pod: its
        removal and housekeeping may ask together, and a caller cancelled
        meanwhile does not leave it half done."""
        task = self._killing.get(uid)
        if task is None:
            task = asyncio.get_running_loop().create_task(self._kill_pod(uid, grace))
            self._killing[uid] = task
            task.add_done_callback(lambda _: self._killing.pop(uid, None))
        await asyncio.shield(task)

    async def _kill_pod(self, uid: str, grace: float) -> None:
        recs = self.of_pod(uid)
        for rec in recs:
            self.prober.stop(rec.id)
            await self.rt.stop(rec, grace)
        for rec in recs:
            await self._remove(rec, keep_log=False)
        await self.sandboxes.remove(uid)
        await steps.run(self.network.teardown_pod, uid)
        await self.volumes.teardown(uid)
        for rec in recs:
            if rec.log_path:
                shutil.rmtree(Path(rec.log_path).parent.parent, ignore_errors=True)
                break
        await steps.run(_remove_pod_dirs, self.pod_dir(uid), uid)
        self.state.pop(uid, None)
        for key in [k for k, p in self._pods_by_key.items() if p["metadata"].get("uid") == uid]:
            del self._pods_by_key[key]

    # -- status -------------------------------------------------------------------

    def _container_status(self, pod: Obj, ps: PodState, c: Obj, init: bool) -> Obj:
        uid, name = pod["metadata"]["uid"], c["name"]
        attempts = self.attempts(uid, name, init)
        rec = attempts[-1] if attempts else None
        image = c.get("image") or ""
        out: Obj = {"name": name, "state": {}, "lastState": {}, "ready": False,
                    "restartCount": rec.attempt if rec else 0,
                    "image": normalize_image(image) if image else "", "imageID": "",
                    "started": False}
        # A volume's failure first, as the kubelet mounts before it makes the sandbox.
        waiting = ps.waiting.get(name) or ps.waiting.get(VOLUMES) or ps.waiting.get(SANDBOX)
        if rec is None:
            out["state"] = {"waiting": {"reason": waiting.reason if waiting else
                                        ("PodInitializing" if not init and pod["spec"].get(
                                            "initContainers") else "ContainerCreating")}}
            if waiting and waiting.message:
                out["state"]["waiting"]["message"] = waiting.message
            return out
        st = self.rt.state(rec)
        out["imageID"] = rec.image_id
        out["containerID"] = self.rt.container_id(rec)
        # The node says it has no recursive read-only mounts (runtimeHandlers).
        mounts = volume_mounts(c, recursive_read_only=False)
        if mounts:
            out["volumeMounts"] = mounts
        if rec.user:
            # The identity its process was given, as 1.33+ kubelets report it
            # for a container the runtime has (SupplementalGroupsPolicy).
            out["user"] = {"linux": rec.user}
        if rec.resources:
            # What is in force (after any in-place resize), as the kubelet reports it.
            out["resources"] = rec.resources
            if rec.resources.get("requests"):
                out["allocatedResources"] = rec.resources["requests"]
        if rec.image and rec.image == image:
            out["image"] = rec.image_ref
        if len(attempts) > 1:
            prev = self.rt.state(attempts[-2])
            if prev.status == EXITED:
                out["lastState"] = {"terminated": self._terminated(prev, c)}
        if st.status == RUNNING:
            probes = self.prober.get(rec.id)
            out["state"] = {"running": {"startedAt": rfc3339(rec.started_at)}}
            out["started"] = probes.started if probes else True
            out["ready"] = (probes.started and probes.ready) if probes else True
        elif st.status == EXITED:
            term = self._terminated(st, c)
            if waiting and waiting.reason in ("CrashLoopBackOff", "RunContainerError",
                                              "ErrImagePull", "ImagePullBackOff",
                                              "CreateContainerConfigError"):
                out["state"] = {"waiting": {"reason": waiting.reason, "message": waiting.message}}
                out["lastState"] = {"terminated": term}
            else:
                out["state"] = {"terminated": term}
        else:
            out["state"] = {"waiting": {"reason": "ContainerCreating"}}
        return out

    def _terminated(self, st: State, c: Obj) -> Obj:
        rec = st.record
        code = st.exit_code if st.exit_code is not None else 255
        if rec.labels.get("start-error"):
            reason = "StartError"
        elif st.oom:
            reason = "OOMKilled"
        elif st.reason:
            reason = st.reason
        else:
            reason = "Completed" if code == 0 else "Error"
        out: Obj = {"exitCode": code, "reason": reason,
                    "startedAt": rfc3339(rec.started_at) if rec.started_at else
                    "1970-01-01T00:00:00Z",
                    "finishedAt": rfc3339(st.finished_at or time.time()),
                    "containerID": self.rt.container_id(rec)}
        msg = rec.labels.get("start-error") or self._termination_message(rec, c, code)
        if msg:
            out["message"] = msg
        return out

    def _termination_message(self, rec: Record, c: Obj, code: int) -> str:
        path = self.pod_dir(rec.pod_uid) / "termination" / f"{rec.name}-{rec.attempt}"
        try:
            with open(path, "rb") as f:
                text = f.read(TERMINATION_MESSAGE_MAX).decode(errors="replace")
        except OSError:
            text = ""
        if not text and code != 0 and c.get("terminationMessagePolicy") == "FallbackToLogsOnError":
            text = _log_tail(Path(rec.log_path), FALLBACK_LOG_LINES)[-TERMINATION_MESSAGE_MAX:]
        return text

    def status(self, pod: Obj, ps: PodState) -> Obj:
        spec = pod["spec"]
        uid = pod["metadata"]["uid"]
        inits = [self._container_status(pod, ps, c, True) for c in spec.get("initContainers") or []]
        conts = [self._container_status(pod, ps, c, False) for c in spec.get("containers") or []]
        ephemeral = [{**self._container_status(pod, ps, c, False), "ready": False}
                     for c in spec.get("ephemeralContainers") or []]  # never part of readiness
        sidecars = {c["name"] for c in spec.get("initContainers") or []
                    if c.get("restartPolicy") == "Always"}
        for s in inits:
            if s["name"] not in sidecars:
                s["ready"] = "terminated" in s["state"] and s["state"]["terminated"]["exitCode"] == 0
        phase = _phase(pod, inits, conts, sidecars)
        if phase in ("Succeeded", "Failed"):
            for s in conts + inits:
                s["ready"] = False
        # The kubelet makes the sandbox once the volumes are mounted: until
        # then a pod shows neither an address nor a sandbox ready.
        mounted = VOLUMES not in ps.waiting
        sandbox_up = mounted and self.sandboxes.alive(uid)
        return pod_status(pod, phase=phase, host_ip=self.host_ip(),
                          pod_ip=ps.pod_ip if mounted else "", sandbox=sandbox_up,
                          init_statuses=inits, statuses=conts,
                          start_time=ps.start_time or None, ephemeral_statuses=ephemeral)

    def own_status_echo(self, old: Obj, new: Obj) -> bool:
        """``new`` is ``old`` with the status this worker last wrote (or is
        writing) and nothing else changed (but the resourceVersion and
        managedFields)."""
        ps = self.state.get(new["metadata"].get("uid", ""))
        status = new.get("status") or {}
        if ps is None or not any(s is not None and _same(s, status) for s in (ps.sent, ps.sending)):
            return False
        if any(old.get(k) != new.get(k) for k in old.keys() | new.keys()
               if k not in ("metadata", "status")):
            return False
        a, b = old.get("metadata") or {}, new.get("metadata") or {}
        return all(a.get(k) == b.get(k) for k in a.keys() | b.keys()
                   if k not in ("resourceVersion", "managedFields"))

    async def _report(self, pod: Obj, ps: PodState) -> Obj:
        status = self.status(pod, ps)
        if ps.sent is not None and _same(ps.sent, status):
            return status
        old = pod.get("status") or {}
        if ps.sent is None and _same(old, status):
            ps.sent = status
            return status
        meta = pod["metadata"]
        ps.sending = status
        try:
            await self.pods_rc.patch(meta["name"], {"status": status}, meta.get("namespace"),
                                     type="merge", subresource="status")
            ps.sent = status
        except ApiError as e:
            if not e.not_found:
                raise
        finally:
            ps.sending = None
        return status

    def _probe_event(self, key: str, container: str, reason: str, message: str) -> None:
        pod = self._pods_by_key.get(key)
        if pod is not None:
            self.event(pod, "Warning", reason, message, field_path(pod, container))

    def _event(self, pod: Obj, c: Obj, type_: str, reason: str, message: str) -> None:
        """An event about one of the pod's containers (its field path set)."""
        self.event(pod, type_, reason, message, field_path(pod, c.get("name") or ""))

    # -- for the kubelet API ----------------------------------------------------------

    def log_record(self, namespace: str, pod: str, container: str, previous: bool) -> Record:
        """The container attempt whose log `kubectl logs` reads. When there is
        none, LookupError in the kubelet's words (its API answers 400): why
        the container is still waiting to start, as its status says."""
        try:
            return self.find(namespace, pod, container, previous)
        except KeyError as e:
            if previous:
                raise LookupError(f'previous terminated container "{container}" in pod '
                                  f'"{pod}" not found') from e
            obj = self._pods_by_key.get(f"{namespace}/{pod}")
            ps = self.state.get(obj["metadata"]["uid"]) if obj is not None else None
            if obj is None or ps is None:
                raise
        status = self.status(obj, ps)
        found = [c for key in ("containerStatuses", "initContainerStatuses",
                               "ephemeralContainerStatuses")
                 for c in status.get(key) or [] if c.get("name") == container]
        if not found:
            raise LookupError(f'container "{container}" in pod "{pod}" is not available')
        reason = (found[0].get("state") or {}).get("waiting", {}).get("reason", "")
        said = f'container "{container}" in pod "{pod}" is waiting to start'
        raise LookupError({"ErrImagePull": f"{said}: image can't be pulled",
                           "ImagePullBackOff": f"{said}: trying and failing to pull image",
                           "": f"{said} - no logs yet"}.get(reason, f"{said}: {reason}"))

    def find(self, namespace: str, pod: str, container: str, previous: bool = False) -> Record:
        recs = [r for r in self.records.values() if r.namespace == namespace
                and r.pod_name == pod and r.name == container]
        if not recs:
            raise KeyError(f'container "{container}" in pod "{pod}" is waiting to start')
        uid = max(recs, key=lambda r: r.created_at).pod_uid
        recs = sorted((r for r in recs if r.pod_uid == uid), key=lambda r: (r.init, r.attempt))
        if previous:
            if len(recs) < 2:
                raise KeyError(f'previous terminated container "{container}" in pod "{pod}" '
                               "not found")
            return recs[-2]
        return recs[-1]


def _host_ports(pod: Obj) -> list[tuple[str, int, int]]:
    spec = pod["spec"]
    return [(str(p.get("protocol") or "TCP"), int(p["hostPort"]), int(p["containerPort"]))
            for c in [*(spec.get("initContainers") or []), *(spec.get("containers") or [])]
            for p in c.get("ports") or [] if p.get("hostPort")]


def _reported_status(pod: Obj, name: str, container_id: str) -> Obj | None:
    """The status the API has for this very container (same id), if any."""
    status = pod.get("status") or {}
    for s in (status.get("containerStatuses") or []) + (status.get("initContainerStatuses") or []):
        if s.get("name") == name and s.get("containerID") == container_id:
            return s  # type: ignore[no-any-return]
    return None


def _key(pod: Obj) -> str:
    return f"{pod['metadata'].get('namespace')}/{pod['metadata']['name']}"


def _latest(ref: str) -> bool:
    name = ref.partition("@")[0]
    if "@" in ref:
        return False
    tail = name.rpartition("/")[2]
    return ":" not in tail or tail.endswith(":latest")


def _should_restart(policy: str, st: State) -> bool:
    if policy == "Always":
        return True
    if policy == "OnFailure":
        return st.exit_code != 0 or bool(st.record.labels.get("start-error"))
    return False


def _container_spec(pod: Obj, rec: Record) -> Obj | None:
    spec = pod["spec"]
    for c in (spec.get("initContainers") if rec.init else spec.get("containers")) or []:
        if c.get("name") == rec.name:
            return c
    return None


def _phase(pod: Obj, inits: list[Obj], conts: list[Obj], sidecars: set[str]) -> str:
    """The kubelet's getPhase, from container statuses: Pending until the init
    containers are done and every container has started once; Running while
    any runs or waits to be restarted; Succeeded or Failed once all have
    ended for good."""
    policy = pod["spec"].get("restartPolicy") or "Always"
    for s in inits:
        if s["name"] in sidecars:
            continue
        term = s["state"].get("terminated")
        if term and term.get("exitCode") == 0:
            continue
        return "Failed" if term and policy == "Never" else "Pending"
    running = restarting = waiting = succeeded = 0
    for s in conts:
        st = s["state"]
        if "running" in st:
            running += 1
        elif "terminated" in st:
            succeeded += st["terminated"].get("exitCode") == 0
        elif (s.get("lastState") or {}).get("terminated"):
            restarting += 1  # waiting out its back-off
        else:
            waiting += 1
    if waiting or not conts:
        return "Pending"
    if running or restarting or policy == "Always":
        return "Running"
    if succeeded == len(conts):
        return "Succeeded"
    return "Running" if policy == "OnFailure" else "Failed"


_VOLATILE = frozenset(("lastHeartbeatTime", "lastProbeTime"))


def _same(a: Any, b: Any) -> bool:
    """Equal but for times that change on every report. Compared in place,
    stopping at the first difference: every sync and every watch event of
    a pod on this node asks."""
    if isinstance(a, dict):
        if not isinstance(b, dict):
            return False
        keys = a.keys() - _VOLATILE
        return keys == b.keys() - _VOLATILE and all(_same(a[k], b[k]) for k in keys)
    if isinstance(a, list):
        return isinstance(b, list) and len(a) == len(b) and all(map(_same, a, b))
    return bool(a == b)


def _log_tail(path: Path, lines: int) -> str:
    try:
        raw = path.read_bytes()[-256 * 1024:]
    except OSError:
        return ""
    out = []
    for line in raw.decode(errors="replace").splitlines()[-lines:]:
        parts = line.split(" ", 3)
        out.append(parts[3] if len(parts) == 4 else line)
    return "\n".join(out) + ("\n" if out else "")


def _remove_pod_dirs(pod_dir: Path, uid: str) -> None:
    shutil.rmtree(pod_dir, ignore_errors=True)
    remove_pod_cgroups(uid)


__all__ = ["PodState", "PodWorkers"]
