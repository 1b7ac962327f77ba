"""Shared plumbing for the API benchmarks: run a pinnace API server in a
subprocess, talk to it with the admin certificate, watch its RSS and CPU,
draw progress and print results.

Benchmarks import this as ``from _common import ...``: they are run as
scripts (``python bench/<name>.py``), so bench/ is on ``sys.path``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import resource
import signal
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

# Wide enough for the result tables when output goes to a file or a pipe.
console = Console(width=None if sys.stdout.isatty() else 140)
REPO = Path(__file__).resolve().parent.parent
CLK_TCK = os.sysconf("SC_CLK_TCK")
TABLE_ACCEPT = "application/json;as=Table;v=v1;g=meta.k8s.io"


# --------------------------------------------------------------------- server

@dataclass
class Server:
    proc: subprocess.Popen[str]
    data_dir: Path
    url: str
    started_at: float  # time.monotonic() just before Popen
    log: Path
    extra: list[str] = field(default_factory=list)

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def kubeconfig(self) -> Path:
        return self.data_dir / "kubeconfig.yaml"

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        # `pinnace server` runs its components as children in our new session:
        # whatever outlived the supervisor goes too (the group id is our pid).
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        return self.proc.returncode

    def rss_mb(self) -> float:
        """The server's RSS, its worker processes (``--workers``) included."""
        return sum(rss_mb(p) for p in process_tree(self.pid))

    def cpu_seconds(self) -> float:
        """CPU of the server and its worker processes so far."""
        return sum(cpu_seconds(p) for p in process_tree(self.pid))


def start_server(data_dir: Path, *extra: str, timeout: float = 30,
                 command: str = "apiserver") -> Server:
    """Start ``pinnace apiserver`` (or ``command="server"``: the whole control
    plane) on a free loopback port and wait for the line that names its URL
    (the same way tests/conftest.py does)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    log = data_dir / f"server-{time.time_ns()}.log"
    started = time.monotonic()
    with log.open("w") as logf:
        proc = subprocess.Popen(
            [sys.executable, "-m", "pinnace.cli.main", command, "--data-dir", str(data_dir),
             "--listen", "127.0.0.1:0", *extra],
            stdout=subprocess.PIPE, stderr=logf, text=True, cwd=REPO, start_new_session=True)
    assert proc.stdout is not None
    url = ""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        m = re.search(r"API server on (https://\S+)", line)
        if m:
            url = m.group(1)
            break
    if command == "server" and url:
        # The supervisor relays the kubeconfig line once the API server wrote it.
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line or "kubeconfig written" in line:
                break
    if not url:
        proc.kill()
        proc.wait()
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        raise RuntimeError(f"server did not start:\n{log.read_text()[-4000:]}")
    # Keep draining stdout so the server never blocks on a full pipe.
    threading.Thread(target=proc.stdout.read, daemon=True).start()
    return Server(proc, data_dir, url, started, log, list(extra))


@contextlib.contextmanager
def running_server(datastore: str = "sqlite", data_dir: Path | None = None,
                   workers: int = 1, extra: tuple[str, ...] = ()) -> Iterator[Server]:
    """A server in a temporary data dir (unless given), always stopped;
    ``extra``: more `pinnace apiserver` flags."""
    with contextlib.ExitStack() as stack:
        if data_dir is None:
            data_dir = Path(stack.enter_context(
                tempfile.TemporaryDirectory(prefix="pinnace-bench-")))
        server = start_server(data_dir, "--datastore", datastore, "--workers", str(workers),
                              *extra)
        try:
            yield server
        finally:
            server.stop()


def _processes() -> list[tuple[int, int, list[str]]]:
    """(pid, parent pid, argv) of every process, from /proc."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                argv = f.read().decode(errors="replace").split("\0")
        except (OSError, ValueError, IndexError):
            continue
        out.append((int(entry), ppid, argv))
    return out


def child_pids(pid: int) -> dict[str, int]:
    """The child processes of a ``pinnace server`` supervisor, by component
    name (apiserver, agent; controller-manager, scheduler and dns with
    --separate-components, else they run in the supervisor), from /proc."""
    out: dict[str, int] = {}
    for child, ppid, argv in _processes():
        if ppid == pid and "pinnace.cli.main" in argv:
            rest = [a for a in argv[argv.index("pinnace.cli.main") + 1:] if not a.startswith("-")]
            if rest:
                out[rest[0]] = child
    return out


def worker_pids(pid: int) -> dict[int, int]:
    """The API server worker processes of ``pinnace apiserver --workers N``, by index."""
    out = {}
    for child, ppid, argv in _processes():
        if ppid == pid and "--worker-index" in argv:
            out[int(argv[argv.index("--worker-index") + 1])] = child
    return out


def start_sim(kubeconfig: Path, nodes: int, log: Path, *extra: str) -> subprocess.Popen[bytes]:
    """``pinnace sim --nodes N`` in its own session, logging to ``log``; stop
    it with :func:`stop_process`."""
    with log.open("w") as logf:
        return subprocess.Popen(
            [sys.executable, "-m", "pinnace.cli.main", "sim", "--nodes", str(nodes),
             "--kubeconfig", str(kubeconfig), *extra],
            stdout=logf, stderr=subprocess.STDOUT, cwd=REPO, start_new_session=True)


def stop_process(proc: subprocess.Popen[Any], timeout: float = 10) -> None:
    """SIGTERM, then SIGKILL to the process and its session's group."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)


def wait_ready(server: Server, timeout: float = 30) -> float:
    """Poll /readyz until it answers ok; returns time.monotonic() at that moment."""
    ctx = ssl_context(server.data_dir)
    import urllib.request

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(server.url + "/readyz", context=ctx, timeout=2) as r:
                if r.status == 200 and r.read().strip() == b"ok":
                    return time.monotonic()
        except OSError:
            pass
        time.sleep(0.005)
    raise RuntimeError("server never became ready")


# -------------------------------------------------------------- proc metrics

def rss_mb(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:  # gone meanwhile
        pass
    return 0.0


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process (all its threads) so far."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def process_tree(pid: int) -> list[int]:
    """``pid`` and all its descendants, from /proc."""
    children: dict[int, list[int]] = {}
    for child, ppid, _ in _processes():
        children.setdefault(ppid, []).append(child)
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, ()))
    return out


def mem_available_mb() -> float:
    """The machine's MemAvailable (free plus reclaimable cache) from /proc/meminfo."""
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def process_alive(pid: int) -> bool:
    """True unless the process is gone or a zombie (the components of
    ``pinnace server`` are its children, not ours, so no waitpid here)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except (OSError, IndexError):
        return False


def own_cpu_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


class RSSSampler:
    """Samples the RSS of a process and its children (a server's workers;
    ``tree`` False: the process alone) in a thread while a load runs."""

    def __init__(self, pid: int, interval: float = 0.25, tree: bool = True):
        self.pid, self.interval, self.tree = pid, interval, tree
        self.samples: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(OSError):
                self.samples.append(sum(rss_mb(p) for p in (
                    process_tree(self.pid) if self.tree else [self.pid])))
            self._stop.wait(self.interval)

    def __enter__(self) -> "RSSSampler":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def peak(self) -> float:
        return max(self.samples, default=0.0)


@contextlib.contextmanager
def py_spy(pid: int, out: str | None, rate: int = 100, native: bool = False,
           gil: bool = True) -> Iterator[None]:
    """Record the server with py-spy while the block runs (no-op if ``out`` is
    empty). ``--format raw`` writes collapsed stacks that bench/pyspy_top.py
    summarizes; a name ending in .svg gets a flame graph, .json speedscope.
    Stacks carry their thread, so the event loop and the store's threads can
    be told apart; ``native`` adds C frames (ssl, sqlite, orjson). ``gil``
    samples only the thread holding the GIL: in a server bound by one
    interpreter that is where the time goes, and threads merely waiting for
    the GIL (which py-spy otherwise counts as busy) drop out."""
    if not out:
        yield
        return
    fmt = "flamegraph" if out.endswith(".svg") else "speedscope" if out.endswith(".json") else "raw"
    spy = subprocess.Popen([os.path.join(os.path.dirname(sys.executable), "py-spy"), "record",
                            "--pid", str(pid), "--rate", str(rate), "--format", fmt,
                            "--output", out, "--threads", "--subprocesses",
                            *(["--native"] if native else []), *(["--gil"] if gil else [])],
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    time.sleep(0.5)  # let py-spy attach before the load starts
    try:
        yield
    finally:
        spy.send_signal(signal.SIGINT)
        try:
            _, err = spy.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            spy.kill()
            _, err = spy.communicate()
        if not os.path.exists(out):
            console.print(f"[red]py-spy wrote nothing:[/] {err[-2000:]}")
        else:
            console.print(f"py-spy profile of the server written to {out}")


# ---------------------------------------------------------------------- HTTP

def ssl_context(data_dir: Path) -> ssl.SSLContext:
    tls = data_dir / "tls"
    ctx = ssl.create_default_context(cafile=str(tls / "ca.crt"))
    ctx.load_cert_chain(str(tls / "admin.crt"), str(tls / "admin.key"))
    return ctx


def client_session(data_dir: Path, limit: int = 0) -> aiohttp.ClientSession:
    """A keep-alive session that authenticates as the admin user.
    ``limit=0`` means no cap on pooled connections."""
    connector = aiohttp.TCPConnector(ssl=ssl_context(data_dir), limit=limit,
                                     limit_per_host=limit)
    return aiohttp.ClientSession(connector=connector,
                                 timeout=aiohttp.ClientTimeout(total=None, sock_read=60))


async def ensure_namespace(session: aiohttp.ClientSession, url: str, name: str) -> None:
    body = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}
    async with session.post(f"{url}/api/v1/namespaces", json=body) as r:
        if r.status not in (201, 409):
            raise RuntimeError(f"create namespace {name}: {r.status} {await r.text()}")


def deployment_manifest(namespace: str, name: str, replicas: int, bench: str) -> dict[str, Any]:
    """A Deployment of pause pods with small requests, labelled with the benchmark's name."""
    labels = {"app": name, "bench": bench}
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{
                    "name": "app", "image": "registry.k8s.io/pause:3.10",
                    "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}}}],
                    "terminationGracePeriodSeconds": 5},
            },
        },
    }


def pod_manifest(namespace: str, name: str, index: int = 0) -> dict[str, Any]:
    """A realistic ~1.5 KB Pod: one container, labels, resources, probes, env."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {"app": "bench-web", "tier": "frontend", "release": "stable",
                       "shard": f"s{index % 16}", "app.kubernetes.io/managed-by": "bench"},
            "annotations": {"bench.pinnace.dev/index": str(index),
                            "prometheus.io/scrape": "true", "prometheus.io/port": "9090"},
        },
        "spec": {
            "containers": [{
                "name": "web",
                "image": "registry.example.com/team/web-frontend:1.27.3",
                "imagePullPolicy": "IfNotPresent",
                "command": ["/usr/local/bin/web-frontend"],
                "args": ["--listen=:8080", "--metrics=:9090", "--log-level=info",
                         "--upstream=http://backend.default.svc.cluster.local:8080"],
                "ports": [{"name": "http", "containerPort": 8080, "protocol": "TCP"},
                          {"name": "metrics", "containerPort": 9090, "protocol": "TCP"}],
                "env": [{"name": "APP_ENV", "value": "production"},
                        {"name": "APP_REGION", "value": "eu-west-1"},
                        {"name": "POD_NAME", "valueFrom": {"fieldRef": {
                            "fieldPath": "metadata.name"}}}],
                "resources": {"requests": {"cpu": "100m", "memory": "128Mi"},
                              "limits": {"cpu": "500m", "memory": "256Mi"}},
                "readinessProbe": {"httpGet": {"path": "/healthz", "port": 8080},
                                   "periodSeconds": 10, "timeoutSeconds": 2},
                "livenessProbe": {"httpGet": {"path": "/livez", "port": 8080},
                                  "initialDelaySeconds": 15, "periodSeconds": 20},
                "volumeMounts": [{"name": "config", "mountPath": "/etc/web",
                                  "readOnly": True}],
            }],
            "volumes": [{"name": "config", "configMap": {"name": "web-config"}}],
            "restartPolicy": "Always",
            "terminationGracePeriodSeconds": 30,
            "nodeSelector": {"kubernetes.io/os": "linux"},
            "tolerations": [{"key": "node.kubernetes.io/not-ready", "operator": "Exists",
                             "effect": "NoExecute", "tolerationSeconds": 300}],
        },
    }


# ------------------------------------------------------------------- results

def percentile(sorted_values: Sequence[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    return sorted_values[min(len(sorted_values) - 1, int(len(sorted_values) * q))]


def progress(description: str = "") -> Progress:
    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), console=console, transient=True)


def print_table(title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    table = Table(title=title, title_justify="left")
    for i, col in enumerate(columns):
        table.add_column(col, justify="left" if i == 0 else "right")
    for row in rows:
        table.add_row(*(_fmt(v) for v in row))
    console.print(table)


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:,.0f}" if abs(v) >= 100 else f"{v:.2f}"
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)


def verdict(ok: bool) -> str:
    return "[green]meets[/]" if ok else "[red]misses[/]"


def machine_note(path: str = tempfile.gettempdir()) -> str:
    return f"{os.cpu_count()} CPUs, Python {sys.version.split()[0]}, {fs_note(path)}"


def fs_note(path: str) -> str:
    """The file system the benchmark's data dir is on. An ext4 without a
    journal (these machines') checks each new inode against those freed in
    the last minutes, so work that makes and deletes many files (pod starts,
    SQLite's temp files) slows as a run goes on: worth knowing next to a
    figure."""
    best, fstype = "", "?"
    with open("/proc/self/mountinfo") as f:
        for line in f:
            left, _, right = line.partition(" - ")
            point = left.split()[4]
            if (path == point or path.startswith(point.rstrip("/") + "/")) and len(point) >= len(best):
                best, fstype = point, right.split()[0]
    if fstype == "ext4":
        st = os.stat(path)
        try:  # the kernel's name for the device (vda, dm-0), as jbd2 names its journals
            name = Path(os.path.realpath(f"/sys/dev/block/{os.major(st.st_dev)}:"
                                         f"{os.minor(st.st_dev)}")).name
        except OSError:
            return fstype
        if not any(Path("/proc/fs/jbd2").glob(f"{name}-*")):
            return "ext4 without a journal"
    return fstype


def run(coro: Any) -> Any:
    return asyncio.run(coro)


# ------------------------------------------------------- control plane + sim

@dataclass
class Cluster:
    """``pinnace server`` (API server, controller manager, scheduler as child
    processes) plus one ``pinnace sim`` process."""
    server: Server
    sim: subprocess.Popen[bytes]
    pids: dict[str, int]  # apiserver, controller-manager, scheduler, sim


@contextlib.contextmanager
def running_cluster(nodes: int, datastore: str = "memory", sim_args: Sequence[str] = (),
                    data_dir: Path | None = None, shared: bool = False) -> Iterator[Cluster]:
    """A control plane and ``nodes`` simulated nodes in a temp data dir; every
    process is stopped on the way out (also on Ctrl-C). The components run a
    process each, so that each one's CPU and RSS show (and py-spy can pick
    one), unless ``shared``: then in the server's own process, as `pinnace
    server` runs them by default (pids["server"])."""
    with contextlib.ExitStack() as stack:
        if data_dir is None:
            data_dir = Path(stack.enter_context(
                tempfile.TemporaryDirectory(prefix="pinnace-bench-")))
        # A /24 per node: the default 10.244.0.0/16 holds 256 nodes, as upstream's does.
        cidr = "10.244.0.0/16" if nodes <= 256 else "10.128.0.0/9"
        server = start_server(data_dir, "--datastore", datastore, "--cluster-cidr", cidr,
                              "--disable-agent", *(() if shared else ("--separate-components",)),
                              command="server", timeout=60)
        stack.callback(server.stop)
        sim = start_sim(server.kubeconfig, nodes, data_dir / "sim.log", *sim_args)
        stack.callback(stop_process, sim)
        deadline = time.monotonic() + 30
        want = {"apiserver"} if shared else {"apiserver", "controller-manager", "scheduler"}
        pids = child_pids(server.pid)
        # By name: a child caught between fork and exec still looks like `pinnace server`.
        while not want <= pids.keys() and time.monotonic() < deadline:
            time.sleep(0.1)
            pids = child_pids(server.pid)
        pids = {k: v for k, v in pids.items() if k in want}
        if shared:
            pids["server"] = server.pid
        pids["sim"] = sim.pid
        yield Cluster(server, sim, pids)


async def wait_nodes_ready(client: Any, n: int, timeout: float = 180) -> float:
    """Poll the Node list until ``n`` nodes are Ready; seconds it took."""
    t0 = time.monotonic()
    nodes_rc = client.resource("v1", "nodes")
    with progress() as bar:
        task = bar.add_task("nodes Ready", total=n)
        while True:
            items = (await nodes_rc.list())["items"]
            ready = sum(1 for node in items if any(
                c.get("type") == "Ready" and c.get("status") == "True"
                for c in (node.get("status") or {}).get("conditions") or []))
            bar.update(task, completed=ready)
            if ready >= n:
                return time.monotonic() - t0
            if time.monotonic() - t0 > timeout:
                raise RuntimeError(f"only {ready} of {n} nodes Ready after {timeout:.0f} s")
            await asyncio.sleep(0.5)


class ProcUsage:
    """CPU (cores over a window) and RSS (peak while sampling, and at the end)
    of a set of named processes."""

    def __init__(self, pids: dict[str, int]):
        self.pids = dict(pids)
        # "server" (the supervisor, running the controllers): its children are listed apart.
        self.samplers = {name: RSSSampler(pid, tree=name != "server")
                         for name, pid in self.pids.items()}
        self.cpu0: dict[str, float] = {}
        self.cpu1: dict[str, float] = {}
        self.rss_end: dict[str, float] = {}
        self.t0 = self.t1 = 0.0

    def _cpu(self) -> dict[str, float]:
        out = {}
        for name, pid in self.pids.items():
            with contextlib.suppress(OSError):
                out[name] = cpu_seconds(pid)
        return out

    def __enter__(self) -> "ProcUsage":
        for s in self.samplers.values():
            s.__enter__()
        self.cpu0, self.t0 = self._cpu(), time.monotonic()
        return self

    def __exit__(self, *exc: object) -> None:
        self.cpu1, self.t1 = self._cpu(), time.monotonic()
        for name, s in self.samplers.items():
            s.__exit__()
            with contextlib.suppress(OSError):
                self.rss_end[name] = rss_mb(self.pids[name])

    def cores(self, name: str) -> float:
        dt = self.t1 - self.t0
        return (self.cpu1.get(name, 0.0) - self.cpu0.get(name, 0.0)) / dt if dt else 0.0

    def rows(self) -> list[tuple[str, float, float, float]]:
        """(process, cores, peak RSS MB, end RSS MB), busiest first."""
        return sorted(((name, self.cores(name), self.samplers[name].peak,
                        self.rss_end.get(name, 0.0)) for name in self.pids),
                      key=lambda r: -r[1])

    def busiest(self) -> str:
        return self.rows()[0][0]
