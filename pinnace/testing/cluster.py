"""A real pinnace cluster inside a test process, ready in a tenth of a second.

``Cluster`` runs an API server (memory datastore unless asked otherwise),
the controllers a test names, optionally the scheduler and simulated nodes,
all on one event loop in a background thread of the calling process, or
in a child process (``subprocess=True``) when a test wants its own core.
The test talks to it as any client would, over HTTPS on a free loopback
port, with the admin kubeconfig at ``cluster.kubeconfig``.

Time is a ``SteppedClock`` shared by the controllers and the simulated
nodes: ``cluster.advance(3600)`` fires an hour of CronJob schedules, Job
back-offs, TTLs and node grace periods at once.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
import json
import os
import shutil
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import yaml

from pinnace.client.clock import SteppedClock

Obj = dict[str, Any]

KUBECTL = shutil.which("kubectl", path=os.path.dirname(sys.executable) + os.pathsep +
                       os.environ.get("PATH", "")) or "kubectl"
LEASE_NAMESPACE = "kube-node-lease"


class Cluster:
    """A pinnace cluster for one test or one test session.

    controllers: names from ``pinnace controller-manager --controllers``
      ("garbagecollector", "namespace", "deployment", ...), "*" for all
      (the default), or None / [] for none.
    scheduler: run the scheduler (default: when there are nodes).
    nodes: simulated nodes named ``node-0`` ... (see docs/simulated-nodes.md
      for what their pods do; ``stages`` is a stage file or Stages).
    datastore: "memory" (default) or "sqlite" (in ``data_dir``).
    subprocess: run the cluster in a child process instead of a thread.
    options: controller options, as ``pinnace controller-manager`` flags
      with underscores ({"node_monitor_grace_period": 10}).

    Use it as a context manager (sync or async), or call start()/stop().
    """

    def __init__(self, *, controllers: str | Iterable[str] | None = "*",
                 scheduler: bool | None = None, nodes: int = 0, datastore: str = "memory",
                 data_dir: str | Path | None = None, subprocess: bool = False,
                 stages: Any = None, options: dict[str, Any] | None = None,
                 node_prefix: str = "node-"):
        if isinstance(controllers, str):
            controllers = [c.strip() for c in controllers.split(",") if c.strip()]
        self.controllers = list(controllers or [])
        self.scheduler = bool(nodes) if scheduler is None else scheduler
        self.nodes = nodes
        self.datastore = datastore
        self.stages = stages
        self.options = dict(options or {})
        self.node_prefix = node_prefix
        self.in_subprocess = subprocess
        self._own_dir = data_dir is None
        self.data_dir = Path(data_dir) if data_dir is not None else \
            Path(tempfile.mkdtemp(prefix="pinnace-test-"))
        self.url = ""
        self.clock = SteppedClock()
        self._runtime: _InProcess | _Child | None = None
        self._ssl: ssl.SSLContext | None = None

    # -- lifecycle -----------------------------------------------------------------

    @property
    def kubeconfig(self) -> Path:
        """The admin kubeconfig (system:masters)."""
        return self.data_dir / "kubeconfig.yaml"

    def start(self) -> Cluster:
        if self._runtime is not None:
            return self
        runtime = _Child(self) if self.in_subprocess else _InProcess(self)
        self._runtime = runtime
        try:
            self.url = runtime.start()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        runtime, self._runtime = self._runtime, None
        try:
            if runtime is not None:
                runtime.stop()
        finally:
            if self._own_dir:
                shutil.rmtree(self.data_dir, ignore_errors=True)

    def __enter__(self) -> Cluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    async def __aenter__(self) -> Cluster:
        return await asyncio.to_thread(self.start)

    async def __aexit__(self, *exc: object) -> None:
        await asyncio.to_thread(self.stop)

    # -- time ----------------------------------------------------------------------

    def advance(self, seconds: float) -> None:
        """Move the controllers' and simulated nodes' clock forward: what
        was due within ``seconds`` (schedules, back-offs, TTLs, grace
        periods) happens now. Live nodes renew their Leases first, so only
        stopped ones go NotReady."""
        if self._runtime is None:
            raise RuntimeError("the cluster is not running")
        self._runtime.advance(seconds)

    def stop_node(self, name: str) -> None:
        """Make simulated node ``name`` fail: no more heartbeats or pod
        updates (its Lease runs out and the node lifecycle controller acts)."""
        self._node_command("stop-node", name)

    def start_node(self, name: str) -> None:
        """Bring a stopped simulated node back."""
        self._node_command("start-node", name)

    def _node_command(self, cmd: str, name: str) -> None:
        if self._runtime is None:
            raise RuntimeError("the cluster is not running")
        self._runtime.node_command(cmd, name)

    # -- clients -------------------------------------------------------------------

    def kubectl(self, *args: str, input: str | None = None, check: bool = True,
                timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """Run the real kubectl against this cluster; AssertionError with its
        output when it fails and ``check``."""
        return run_kubectl(self.kubeconfig, *args, input=input, check=check, timeout=timeout)

    def api_client(self) -> Any:
        """A configured ``kubernetes.client.ApiClient`` (the official client)."""
        from kubernetes import config

        return config.new_client_from_config(str(self.kubeconfig))

    def kr8s(self) -> Any:
        """A kr8s API object for this cluster (sync)."""
        import kr8s

        return kr8s.api(kubeconfig=str(self.kubeconfig))

    async def kr8s_async(self) -> Any:
        import kr8s.asyncio

        return await kr8s.asyncio.api(kubeconfig=str(self.kubeconfig))

    def lightkube(self) -> Any:
        """A lightkube Client for this cluster."""
        from lightkube import Client, KubeConfig

        return Client(KubeConfig.from_file(str(self.kubeconfig)))

    def lightkube_async(self) -> Any:
        from lightkube import AsyncClient, KubeConfig

        return AsyncClient(KubeConfig.from_file(str(self.kubeconfig)))

    @contextlib.contextmanager
    def kopf_runner(self, *args: str, **kwargs: Any) -> Iterator[Any]:
        """``kopf.testing.KopfRunner(["run", *args])`` logged in to this
        cluster, as are the official client's ``load_kube_config()`` calls
        in the operator's handlers, while the runner lives."""
        from kopf.testing import KopfRunner

        with self.as_default_kubeconfig():
            with KopfRunner(["run", *args], **kwargs) as runner:
                yield runner

    @contextlib.contextmanager
    def as_default_kubeconfig(self) -> Iterator[Path]:
        """Make this cluster the one a client finds by default: $KUBECONFIG,
        and the official client's default kubeconfig path, which it reads
        from $KUBECONFIG only once, when first imported."""
        old = os.environ.get("KUBECONFIG")
        os.environ["KUBECONFIG"] = str(self.kubeconfig)
        kube_config: Any = None
        try:
            from kubernetes.config import kube_config
        except ImportError:
            pass
        old_default = getattr(kube_config, "KUBE_CONFIG_DEFAULT_LOCATION", None)
        if kube_config is not None:
            kube_config.KUBE_CONFIG_DEFAULT_LOCATION = str(self.kubeconfig)
        try:
            yield self.kubeconfig
        finally:
            if kube_config is not None:
                kube_config.KUBE_CONFIG_DEFAULT_LOCATION = old_default
            if old is None:
                os.environ.pop("KUBECONFIG", None)
            else:
                os.environ["KUBECONFIG"] = old

    def request(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        """One admin API call with JSON in and out: (status code, body)."""
        if self._ssl is None:
            tls = self.data_dir / "tls"
            ctx = ssl.create_default_context(cafile=str(tls / "ca.crt"))
            ctx.load_cert_chain(str(tls / "admin.crt"), str(tls / "admin.key"))
            self._ssl = ctx
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.url + path, data=data, method=method,
                                     headers={"Content-Type": "application/json",
                                              "Accept": "application/json"})
        try:
            with urllib.request.urlopen(req, context=self._ssl, timeout=30) as resp:
                raw = resp.read()
                return resp.status, json.loads(raw) if raw else None
        except urllib.error.HTTPError as e:
            raw = e.read()
            try:
                return e.code, json.loads(raw)
            except ValueError:
                return e.code, raw.decode(errors="replace")

    # -- helpers -------------------------------------------------------------------

    def create_namespace(self, prefix: str = "test") -> str:
        """A new namespace with a unique name."""
        name = f"{_dns_label(prefix)[:40]}-{uuid.uuid4().hex[:6]}"
        code, body = self.request("POST", "/api/v1/namespaces", {
            "apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
        if code != 201:
            raise AssertionError(f"creating namespace {name}: {code} {body}")
        return name

    def delete_namespace(self, name: str, wait: bool = False, timeout: float = 60) -> None:
        """Delete a namespace; the namespace controller removes what is in it."""
        code, body = self.request("DELETE", f"/api/v1/namespaces/{name}")
        if code not in (200, 202, 404):
            raise AssertionError(f"deleting namespace {name}: {code} {body}")
        if wait:
            wait_for(lambda: self.request("GET", f"/api/v1/namespaces/{name}")[0] == 404,
                     timeout, f"namespace {name} to be gone")

    def apply(self, manifest: str | Path | Obj | list[Obj], namespace: str | None = None) -> str:
        """``kubectl apply`` a manifest (YAML text, a file, an object or a
        list of objects); kubectl's output."""
        if isinstance(manifest, Path):
            text = manifest.read_text()
        elif isinstance(manifest, str):
            text = manifest
        else:
            docs = manifest if isinstance(manifest, list) else [manifest]
            text = yaml.safe_dump_all(docs)
        args = ["apply", "-f", "-"] + (["-n", namespace] if namespace else [])
        return self.kubectl(*args, input=text).stdout

    def install_crds(self, *sources: str | Path | Obj, timeout: float = 30) -> list[str]:
        """Create (or update) CustomResourceDefinitions from files, YAML text
        or objects, and wait until each is Established and served."""
        crds: list[Obj] = []
        for src in sources:
            if isinstance(src, dict):
                crds.append(src)
                continue
            if isinstance(src, Path):
                text = src.read_text()
            elif "\n" not in src and Path(src).is_file():
                text = Path(src).read_text()
            else:
                text = src
            crds.extend(d for d in yaml.safe_load_all(text) if d)
        self.apply(crds)
        names = [c["metadata"]["name"] for c in crds]
        for name in names:
            self.wait(f"customresourcedefinitions.apiextensions.k8s.io/{name}",
                      condition="Established", timeout=timeout)
        for crd in crds:
            spec = crd["spec"]
            for v in spec.get("versions") or []:
                if v.get("served", True):
                    path = f"/apis/{spec['group']}/{v['name']}"
                    wait_for(functools.partial(self._served, path), timeout,
                             f"{path} to be served")
        return names

    def _served(self, path: str) -> bool:
        return self.request("GET", path)[0] == 200

    def get(self, ref: str, namespace: str | None = None) -> Obj | None:
        """The object kubectl calls ``ref`` ("deployment/web"), or None."""
        args = ["get", ref, "-o", "json", "--ignore-not-found"] + \
            (["-n", namespace] if namespace else [])
        out = self.kubectl(*args).stdout.strip()
        return json.loads(out) if out else None

    def wait(self, ref: str, condition: str | None = None,
             check: Callable[[Obj], Any] | None = None, namespace: str | None = None,
             timeout: float = 30, status: str = "True") -> Obj:
        """Wait until the object ``ref`` ("job/pi", "pod/web-0") has condition
        ``condition`` with ``status``, or ``check(obj)`` is truthy; returns
        the object. A timeout fails with what the object looked like.
        ``check`` may index fields the object does not have yet (a fresh
        object has no status): KeyError, IndexError and TypeError count as
        "not yet"."""
        problem: list[BaseException] = []

        def ok(obj: Obj | None) -> bool:
            if obj is None:
                return False
            if condition is not None:
                conds = (obj.get("status") or {}).get("conditions") or []
                if not any(c.get("type") == condition and c.get("status") == status
                           for c in conds):
                    return False
            if check is None:
                return True
            try:
                return bool(check(obj))
            except (KeyError, IndexError, TypeError) as e:
                problem[:] = [e]
                return False

        what = ref + (f" in namespace {namespace}" if namespace else "")
        want = " and ".join(filter(None, [
            f"condition {condition}={status}" if condition else "",
            getattr(check, "__name__", "check") if check is not None else ""])) or "to exist"
        deadline = time.monotonic() + timeout
        last: Obj | None = None
        while True:
            last = self.get(ref, namespace)
            if ok(last):
                assert last is not None
                return last
            if time.monotonic() >= deadline:
                shown = yaml.safe_dump(_trim(last), sort_keys=False) if last is not None \
                    else "(not found)\n"
                why = f" (the check last raised {problem[0]!r})" if problem else ""
                raise AssertionError(f"timed out after {timeout}s waiting for {what}: {want}"
                                     f"{why}; at the end it was:\n{shown}")
            time.sleep(0.05)


def run_kubectl(kubeconfig: str | Path, *args: str, input: str | None = None, check: bool = True,
                timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """The real kubectl with ``kubeconfig`` (never the in-cluster config)."""
    env = dict(os.environ, KUBECONFIG=str(kubeconfig))
    env.pop("KUBERNETES_SERVICE_HOST", None)
    proc = subprocess.run([KUBECTL, *args], input=input, capture_output=True, text=True,
                          env=env, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"kubectl {' '.join(args)} failed ({proc.returncode}):\n"
                             f"stdout: {proc.stdout}\nstderr: {proc.stderr}")
    return proc


def wait_for(check: Callable[[], Any], timeout: float = 30, what: str = "",
             interval: float = 0.05) -> Any:
    """Poll ``check()`` until it returns something truthy and return that;
    AssertionError naming ``what`` and the last value after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        last = check()
        if last:
            return last
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for "
                                 f"{what or getattr(check, '__name__', 'check')}: last {last!r}")
        time.sleep(interval)


def _trim(obj: Obj) -> Obj:
    meta = dict(obj.get("metadata") or {})
    meta.pop("managedFields", None)
    return {**obj, "metadata": meta}


def _dns_label(text: str) -> str:
    out = "".join(ch if ch.isalnum() else "-" for ch in text.lower()).strip("-")
    while "--" in out:
        out = out.replace("--", "-")
    return out or "test"


# -- where the cluster runs ------------------------------------------------------------

class _InProcess:
    """Every component on one event loop in a daemon thread of this process."""

    def __init__(self, cluster: Cluster):
        self.cluster = cluster
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="pinnace-cluster",
                                       daemon=True)
        self.server: Any = None
        self.tasks: list[asyncio.Task[Any]] = []
        self.clients: list[Any] = []
        self.ctx: Any = None
        self.sim: Any = None

    def _run(self, coro: Any, timeout: float = 60) -> Any:
        fut: concurrent.futures.Future[Any] = asyncio.run_coroutine_threadsafe(coro, self.loop)
        return fut.result(timeout)

    def start(self) -> str:
        self.thread.start()
        return self._run(self._start())  # type: ignore[no-any-return]

    async def _start(self) -> str:
        from pinnace.apiserver.app import APIServer
        from pinnace.apiserver.config import Config

        c = self.cluster
        self.server = APIServer(Config(data_dir=c.data_dir, host="127.0.0.1", port=0,
                                       datastore=c.datastore, advertise_address="127.0.0.1"))
        await self.server.start()
        url = f"https://127.0.0.1:{self.server.port}"
        if c.controllers:
            await self._start_controllers()
        if c.scheduler:
            from pinnace.scheduler.scheduler import run_scheduler

            self._spawn(run_scheduler(str(c.data_dir / "scheduler.kubeconfig"),
                                      leader_elect=False))
        if c.nodes:
            await self._start_nodes()
        return url

    def _spawn(self, coro: Any) -> None:
        self.tasks.append(self.loop.create_task(coro))

    async def _start_controllers(self) -> None:
        from pinnace.client import Client, InformerFactory, load_kubeconfig
        from pinnace.controllers.base import Context
        from pinnace.controllers.manager import build, run_controllers

        c = self.cluster
        tls = c.data_dir / "tls"
        options = {"local_path_root": str(c.data_dir / "storage"),
                   "service_account_private_key_file": str(tls / "service-account.key"),
                   "cluster_signing_cert_file": str(tls / "ca.crt"),
                   "cluster_signing_key_file": str(tls / "ca.key"), **c.options}
        config = load_kubeconfig(c.data_dir / "controller-manager.kubeconfig")
        config.user_agent = "kube-controller-manager/pinnace-testing"
        client = Client(config, max_connections=100)
        self.clients.append(client)
        self.ctx = Context(client, InformerFactory(client), options, c.clock)
        names = ["*"] if {"*", "all"} & set(c.controllers) else c.controllers
        running = build(self.ctx, names)
        for controller in running:
            controller.setup()
        synced = asyncio.Event()
        self._spawn(run_controllers(self.ctx, running, on_synced=synced.set))
        await asyncio.wait_for(synced.wait(), 30)

    async def _start_nodes(self) -> None:
        from pinnace.client import Client, load_kubeconfig
        from pinnace.kubelet.sim import SimNodes, node_names
        from pinnace.kubelet.simstages import Stages, load_stages, parse_stages

        c = self.cluster
        stages = c.stages
        if stages is None:
            stages = Stages()
        elif isinstance(stages, (str, Path)):
            stages = load_stages(Path(stages))
        elif isinstance(stages, dict):
            stages = parse_stages(stages)
        client = Client(load_kubeconfig(c.kubeconfig), max_connections=32)
        self.clients.append(client)
        self.sim = SimNodes(client, node_names(c.nodes, c.node_prefix), stages=stages,
                            clock=c.clock)
        self._spawn(self.sim.run())
        await asyncio.wait_for(self.sim.ready.wait(), 30)
        if self.ctx is not None:
            c.clock.on_advance(self._leases_seen)

    async def _leases_seen(self, seconds: float) -> None:
        """After the nodes renewed their Leases for a clock jump, wait until
        the controllers' informer has the renewals, so the node lifecycle
        controller never judges a live node by its Lease from before."""
        informer = self.ctx.informers.informer("coordination.k8s.io/v1", "leases",
                                               LEASE_NAMESPACE)
        want = {f"{LEASE_NAMESPACE}/{n.name}": int(n.lease["metadata"]["resourceVersion"])
                for n in self.sim.nodes.values() if n.running and n.lease}
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            if all(int(((informer.get(k) or {}).get("metadata") or {}).get("resourceVersion")
                       or 0) >= rv for k, rv in want.items()):
                return
            await asyncio.sleep(0.002)

    def advance(self, seconds: float) -> None:
        self.cluster.clock.advance(seconds)

    def node_command(self, cmd: str, name: str) -> None:
        if self.sim is None or name not in self.sim.nodes:
            raise KeyError(f"no simulated node {name!r}")
        fn = self.sim.stop_node if cmd == "stop-node" else self.sim.start_node

        async def call() -> None:
            fn(name)
        self._run(call())

    def stop(self) -> None:
        if self.thread.is_alive():
            try:
                self._run(self._stop(), timeout=30)
            finally:
                self.loop.call_soon_threadsafe(self.loop.stop)
                self.thread.join(10)
        if not self.loop.is_running():
            self.loop.close()

    async def _stop(self) -> None:
        for task in reversed(self.tasks):
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        if self.ctx is not None:
            await self.ctx.informers.stop()
        for client in self.clients:
            await client.close()
        if self.server is not None:
            await self.server.stop()
        # The threads asyncio.to_thread started (certificates at start) go too:
        # a stopped cluster leaves no thread behind.
        await asyncio.get_running_loop().shutdown_default_executor()


class _Child:
    """The same cluster in a child process (pinnace.testing.serve), driven
    over its stdin: one command per line, one answer per line."""

    def __init__(self, cluster: Cluster):
        self.cluster = cluster
        self.proc: subprocess.Popen[str] | None = None

    def start(self) -> str:
        c = self.cluster
        spec = {"controllers": c.controllers, "scheduler": c.scheduler, "nodes": c.nodes,
                "datastore": c.datastore, "data_dir": str(c.data_dir), "options": c.options,
                "node_prefix": c.node_prefix,
                "stages": str(c.stages) if isinstance(c.stages, (str, Path)) else c.stages}
        log = (c.data_dir / "cluster.log").open("w")
        self.proc = subprocess.Popen([sys.executable, "-m", "pinnace.testing.serve", json.dumps(spec)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log,
                                     text=True, start_new_session=True)
        log.close()
        answer = self._answer()
        if not answer.startswith("ready "):
            raise RuntimeError(f"the cluster did not start: {answer}\n"
                               f"{(c.data_dir / 'cluster.log').read_text()}")
        return answer.split()[1]

    def _answer(self) -> str:
        assert self.proc is not None and self.proc.stdout is not None
        line = self.proc.stdout.readline()
        return line.strip() or f"(exited with {self.proc.poll()})"

    def advance(self, seconds: float) -> None:
        self._command(f"advance {seconds}")

    def node_command(self, cmd: str, name: str) -> None:
        self._command(f"{cmd} {name}")

    def _command(self, line: str) -> None:
        assert self.proc is not None and self.proc.stdin is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()
        answer = self._answer()
        if answer != "ok":
            raise RuntimeError(f"{line}: {answer}")

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.stdin is not None:
            with contextlib.suppress(OSError):
                self.proc.stdin.close()
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


__all__ = ["Cluster", "run_kubectl", "wait_for"]
