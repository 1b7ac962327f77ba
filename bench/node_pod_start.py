"""Pod start on a real node, next to the bare OCI runtime, and the agent's memory.

    sudo python bench/node_pod_start.py            # 1, 10 and 50 pods at once
    sudo python bench/node_pod_start.py --quick    # 1 and 5 pods, one round (< 30 s)

Needs root (the agent makes namespaces, mounts and cgroups) and the packages
scripts/test.sh installs. Starts `pinnace server` with its agent in a temp
data dir, imports the busybox test image (scripts/test-image.sh), then for
each batch size N creates N pods at once (image present, `sleep`) and
records, per pod, POST -> first seen Running by a watch (the client's
connections opened beforehand: a handshake is not the pod's start), and
bound -> Running: from the watch's first sight of the pod on the node
(spec.nodeName, the event the agent starts from) to Running, which is the
agent's own part, its status write and the watch's delivery of it
included (POST -> Running adds the API server's create and the
scheduler). The baseline, in
the same run: N containers of the same image started at once by the bare
runtime the agent uses (overlay mount + `runc run -d` of a bundle), timed
per container. Each batch size is measured in several rounds (--rounds),
each on a quiet machine, bare runtime then agent; the figures are the
medians over the rounds, as one round's swing by half either way here.
Reports p50/p99 of both, their ratios (POST -> Running over bare, and
bound -> Running over bare: the agent's own overhead per pod), the agent's
RSS with the pods running, and the RSS of the whole `pinnace server`
process tree. Targets (issue 9): p99 <= 1 s (POST -> Running) for 50
pods, the agent's own overhead <= 3x the bare runtime, agent RSS <= 60 MB
with 50 pods, the whole server <= 200 MB.

The runtime is the one the agent would choose (crun where it works, else
runc), or --runtime; the agent and the baseline use the same.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

from _common import (
    REPO,
    child_pids,
    console,
    machine_note,
    percentile,
    print_table,
    process_tree,
    progress,
    rss_mb,
    start_server,
    verdict,
)

from pinnace.client import Client, load_kubeconfig
from pinnace.kubelet import ocispec
from pinnace.kubelet.images import ImageStore, image_root
from pinnace.kubelet.oci import choose_runtime, mount_overlay, unmount
from pinnace.kubelet.sandbox import release_pin_dir

NAMESPACE = "bench"


def pinnace_processes(pid: int) -> tuple[list[int], list[int]]:
    """The server's own processes, and the monitors and containers below the agent."""
    ours, theirs = [], []
    for p in process_tree(pid):
        try:
            argv = Path(f"/proc/{p}/cmdline").read_bytes()
        except OSError:
            continue
        # The supervisor (the server's own pid: pinnace.cli.supervisor) is ours too.
        (ours if p == pid or b"pinnace.cli.main" in argv else theirs).append(p)
    return ours, theirs


# "server": the supervisor's process, where the controllers, scheduler and DNS run;
# "pods' cgroups": what ran in the pods' cgroups, the runtime's setup inside
# each container (mounts, pivot_root) before it became `sleep`. conmon and
# `crun create` run in the agent's cgroup but are not its reaped children
# (conmon forks away): they are in "rest", with the kernel's threads and
# this benchmark's client.
COMPONENTS = ("apiserver", "server", "agent", "pods' cgroups")


def _pods_cgroup_cpu() -> float:
    """CPU seconds so far of everything that ran in kubepods (cgroup v1's
    cpuacct or v2's cpu.stat: both count a removed child's usage)."""
    for v1 in ("cpuacct", "cpu,cpuacct"):
        try:
            return int(Path(f"/sys/fs/cgroup/{v1}/kubepods/cpuacct.usage").read_text()) * 1e-9
        except (OSError, ValueError):
            continue
    try:
        stat = Path("/sys/fs/cgroup/kubepods/cpu.stat").read_text().split()
        return int(stat[stat.index("usage_usec") + 1]) * 1e-6
    except (OSError, ValueError, IndexError):
        return 0.0


def component_cpu(server_pid: int) -> dict[str, float]:
    """CPU seconds so far of each component, its reaped children included,
    and of the whole machine (all cores, from /proc/stat)."""
    out: dict[str, float] = {}
    for name, pid in {**child_pids(server_pid), "server": server_pid}.items():
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            out[name] = sum(int(f) for f in fields[11:15]) / os.sysconf("SC_CLK_TCK")
        except OSError:
            pass
    out["pods' cgroups"] = _pods_cgroup_cpu()
    first = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    busy = sum(int(x) for i, x in enumerate(first) if i not in (3, 4))  # all but idle, iowait
    out["machine"] = busy / os.sysconf("SC_CLK_TCK")
    return out


def _busy() -> tuple[int, int]:
    """(busy, all) jiffies of the whole machine so far."""
    v = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    return sum(v) - v[3] - v[4], sum(v)


def wait_quiet(limit: float = 0.1, timeout: float = 20) -> None:
    """Until the machine is idle (under ``limit`` busy for 0.3 s): what the
    last batch left to do (unmounts, the kernel freeing namespaces) must not
    weigh on the next measurement."""
    deadline, calm = time.monotonic() + timeout, 0
    while calm < 3 and time.monotonic() < deadline:
        b0, a0 = _busy()
        time.sleep(0.1)
        b1, a1 = _busy()
        calm = calm + 1 if (b1 - b0) / max(a1 - a0, 1) < limit else 0


def median(values: list[float]) -> float:
    return sorted(values)[len(values) // 2]


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def stop_node(server: Any, data: Path, tmpfs: bool = False) -> None:
    """Stop the server, reset its node (containers, network, mounts), drop its data."""
    server.stop()
    subprocess.run([sys.executable, "-m", "pinnace.cli.main", "agent", "--reset",
                    "--data-dir", str(data)], capture_output=True)
    release_pin_dir()  # the bench's agent was the last on this machine
    drop_data(data, tmpfs)


def drop_data(data: Path, tmpfs: bool) -> None:
    """Remove the data dir (``tmpfs``: a tmpfs mounted there, unmounted first)."""
    if tmpfs:
        unmount(data)
    shutil.rmtree(data, ignore_errors=True)


def build_image() -> Path:
    out = subprocess.run(["bash", str(REPO / "scripts/test-image.sh")], capture_output=True,
                         text=True, check=True)
    return Path(out.stdout.strip().splitlines()[-1])


async def bare_runtime(n: int, layers: list[Path], work: Path, runtime: str
                       ) -> tuple[list[float], float]:
    """Seconds per container for n containers started at once by the bare
    runtime, and the CPU seconds the whole machine spent meanwhile."""
    state = work / "state"

    async def one(i: int) -> float:
        b = work / f"c{i}"
        for d in ("upper", "work", "rootfs"):
            (b / d).mkdir(parents=True, exist_ok=True)
        start = time.monotonic()
        await asyncio.to_thread(mount_overlay, list(reversed(layers)), b / "upper", b / "work",
                                b / "rootfs")
        cfg = ocispec.config(args=["sleep", "3600"], env=["PATH=/bin"], cwd="/", uid=0, gid=0,
                             groups=[], rootfs=str(b / "rootfs"), readonly_root=False,
                             hostname="bare", namespaces=[{"type": t} for t in (
                                 "mount", "pid", "ipc", "uts", "network")],
                             cgroups_path=f"/pinnace-bench/c{i}", linux_resources={},
                             caps=ocispec.capabilities({}), privileged=False,
                             no_new_privileges=False, mounts=[])
        (b / "config.json").write_text(json.dumps(cfg))
        # A detached container keeps runc's stdio: a pipe would never close.
        with open(b / "runc.err", "wb") as err:
            proc = await asyncio.create_subprocess_exec(
                runtime, "--root", str(state), "run", "-d", "--bundle", str(b), f"bench-c{i}",
                stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL, stderr=err)
            await proc.wait()
        if proc.returncode:
            raise RuntimeError((b / "runc.err").read_text())
        return time.monotonic() - start

    try:
        busy = _busy()[0]
        times = sorted(await asyncio.gather(*(one(i) for i in range(n))))
        return times, (_busy()[0] - busy) / os.sysconf("SC_CLK_TCK")
    finally:
        for i in range(n):
            subprocess.run([runtime, "--root", str(state), "delete", "-f", f"bench-c{i}"],
                           capture_output=True)
            unmount(work / f"c{i}" / "rootfs")
        shutil.rmtree(work, ignore_errors=True)
        for h in Path("/sys/fs/cgroup").iterdir():
            try:
                (h / "pinnace-bench").rmdir()
            except OSError:
                pass


async def agent_pods(kubeconfig: Path, n: int, batch: str,
                     on_start: Callable[[], None] = lambda: None
                     ) -> tuple[list[float], list[float]]:
    """Seconds from POST to first seen Running, and from first seen bound to
    first seen Running, per pod (each list sorted), for n pods posted at
    once. ``on_start`` is called just before the first POST."""
    async with Client(load_kubeconfig(kubeconfig)) as client:
        pods = client.resource("v1", "pods")
        posted: dict[str, float] = {}
        bound: dict[str, float] = {}
        running: dict[str, float] = {}
        done = asyncio.Event()

        async def watch() -> None:
            async for _, obj in pods.watch(NAMESPACE, label_selector=f"batch={batch}"):
                name = obj["metadata"]["name"]
                if obj["spec"].get("nodeName") and name not in bound:
                    bound[name] = time.monotonic()
                if obj.get("status", {}).get("phase") == "Running" and name not in running:
                    running[name] = time.monotonic()
                    if len(running) == n:
                        done.set()
                        return

        watcher = asyncio.create_task(watch())
        # As many connections open as there will be requests at once, as a
        # controller's pool or kubectl's one HTTP/2 connection has them: the
        # client's TLS handshakes are not the pod's start.
        await asyncio.gather(*(client.request("GET", f"/api/v1/namespaces/{NAMESPACE}")
                               for _ in range(n)))
        await asyncio.sleep(0.2)
        on_start()

        async def create(i: int) -> None:
            name = f"{batch}-{i}"
            posted[name] = time.monotonic()
            await pods.create({"apiVersion": "v1", "kind": "Pod",
                               "metadata": {"name": name, "labels": {"batch": batch}},
                               "spec": {"terminationGracePeriodSeconds": 0, "containers": [{
                                   "name": "c", "image": "busybox:1.36",
                                   "command": ["sleep", "3600"]}]}}, NAMESPACE)

        await asyncio.gather(*(create(i) for i in range(n)))
        try:
            await asyncio.wait_for(asyncio.shield(done.wait()), 120)
        finally:
            watcher.cancel()
        if watcher.done() and not watcher.cancelled() and watcher.exception():
            raise RuntimeError("watch failed") from watcher.exception()
        return (sorted(running[k] - posted[k] for k in running),
                sorted(running[k] - bound[k] for k in running))


def _mark(mark: dict[str, Any], server_pid: int) -> None:
    mark.update(cpu=component_cpu(server_pid), t=time.monotonic())


async def delete_batch(kubeconfig: Path, batch: str) -> None:
    async with Client(load_kubeconfig(kubeconfig)) as client:
        pods = client.resource("v1", "pods")
        await client.request("DELETE", f"/api/v1/namespaces/{NAMESPACE}/pods",
                             params={"labelSelector": f"batch={batch}"})
        for _ in range(600):
            if not (await pods.list(NAMESPACE, label_selector=f"batch={batch}"))["items"]:
                return
            await asyncio.sleep(0.1)


async def wait_node_ready(kubeconfig: Path) -> None:
    async with Client(load_kubeconfig(kubeconfig)) as client:
        for _ in range(600):
            try:
                nodes = (await client.resource("v1", "nodes").list())["items"]
                if any(c["type"] == "Ready" and c["status"] == "True"
                       for n in nodes for c in n["status"].get("conditions", [])):
                    await client.resource("v1", "namespaces").create(
                        {"apiVersion": "v1", "kind": "Namespace",
                         "metadata": {"name": NAMESPACE}})
                    await asyncio.sleep(1)  # the namespace's default ServiceAccount
                    return
            except OSError:
                pass
            await asyncio.sleep(0.1)
    raise RuntimeError("the node never became Ready")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="1 and 5 pods")
    ap.add_argument("--sizes", default="", help="comma-separated batch sizes (default 1,10,50)")
    ap.add_argument("--rounds", type=int, default=0,
                    help="rounds per batch size (default 3; 1 with --quick)")
    ap.add_argument("--runtime", default="", help="crun or runc (default: as the agent chooses)")
    ap.add_argument("--tmpfs", action="store_true",
                    help="the data dir (and the baseline's bundles) on a tmpfs: without what an "
                         "ext4 with no journal costs each new file (see bench/README.md)")
    args = ap.parse_args()
    if os.geteuid() != 0:
        console.print("node_pod_start: needs root (the node agent makes namespaces and mounts); "
                      "skipped")
        return 0
    sizes = [int(x) for x in args.sizes.split(",") if x] or ([1, 5] if args.quick else [1, 10, 50])
    args.rounds = args.rounds or (1 if args.quick else 3)
    mem_idle: list[Any] = []
    cpu: list[list[Any]] = []
    archive = build_image()
    data = Path(tempfile.mkdtemp(prefix="pinnace-node-bench-"))
    if args.tmpfs:
        subprocess.run(["mount", "-t", "tmpfs", "-o", "mode=0755", "pinnace-bench", str(data)],
                       check=True)
    note = machine_note(str(data))
    try:
        subprocess.run([sys.executable, "-m", "pinnace.cli.main", "image", "import",
                        "--data-dir", str(data), str(archive)], check=True, capture_output=True)
        image = ImageStore(image_root(data)).get("busybox:1.36")
        assert image is not None
        (data / "probe").mkdir()
        runtime = choose_runtime(data / "probe", args.runtime)
        server = start_server(data, "--kubelet-port", str(free_port()), "--agent-runtime",
                              Path(runtime).name, command="server", timeout=60)
    except BaseException:
        drop_data(data, args.tmpfs)
        raise
    rows: list[list[Any]] = []
    mem: list[list[Any]] = []
    try:
        asyncio.run(wait_node_ready(server.kubeconfig))
        time.sleep(2)
        ours, _ = pinnace_processes(server.pid)
        agent_pid = child_pids(server.pid).get("agent", 0)
        mem_idle = ["idle, no pods", rss_mb(agent_pid), sum(rss_mb(p) for p in ours), 0.0]
        with progress() as bar:
            task = bar.add_task("pod batches", total=len(sizes) * args.rounds)
            for n in sizes:
                got: dict[str, list[float]] = {k: [] for k in (
                    "b50", "b99", "a50", "a99", "o50", "o99")}
                for r in range(args.rounds):
                    wait_quiet()
                    bare, bare_cpu = asyncio.run(bare_runtime(n, image.layers, data / "bare",
                                                              runtime))
                    wait_quiet()
                    # From the first POST on: the client's connections (a TLS
                    # handshake each, on both ends) and its watch are opened
                    # before, as a controller's or kubectl's are.
                    mark: dict[str, Any] = {}
                    agent, own = asyncio.run(agent_pods(
                        server.kubeconfig, n, f"b{n}-{r}",
                        on_start=functools.partial(_mark, mark, server.pid)))
                    before = mark["cpu"]
                    after, wall = component_cpu(server.pid), time.monotonic() - mark["t"]
                    for key, values in (("b", bare), ("a", agent), ("o", own)):
                        got[key + "50"].append(percentile(values, 0.5))
                        got[key + "99"].append(percentile(values, 0.99))
                    if r == args.rounds - 1:  # the last round's CPU and memory
                        used = [after.get(k, 0) - before.get(k, 0) for k in COMPONENTS]
                        whole = after["machine"] - before["machine"]
                        cpu.append([n, wall, *used, whole - sum(used), whole,
                                    f"{whole / n * 1000:.0f}", f"{bare_cpu / n * 1000:.0f}"])
                        agent_pid = child_pids(server.pid).get("agent", 0)
                        ours, theirs = pinnace_processes(server.pid)
                        mem.append([f"{n} pods running",
                                    rss_mb(agent_pid) if agent_pid else float("nan"),
                                    sum(rss_mb(p) for p in ours), sum(rss_mb(p) for p in theirs)])
                    asyncio.run(delete_batch(server.kubeconfig, f"b{n}-{r}"))
                    bar.advance(task)
                b50, a50, p99 = median(got["b50"]), median(got["a50"]), median(got["a99"])
                o50 = median(got["o50"])
                ratio, own_ratio = a50 / max(b50, 1e-6), o50 / max(b50, 1e-6)
                rounds = " ".join(f"{a / max(b, 1e-6):.1f}" for a, b in zip(got["o50"], got["b50"]))
                rows.append([n, b50 * 1000, median(got["b99"]) * 1000, a50 * 1000, p99 * 1000,
                             f"{ratio:.1f}x", o50 * 1000, median(got["o99"]) * 1000,
                             f"{own_ratio:.1f}x", rounds,
                             verdict(p99 <= 1.0 and own_ratio <= 3.0) if n >= 50 else
                             verdict(own_ratio <= 3.0)])
    finally:
        stop_node(server, data, tmpfs=args.tmpfs)
    print_table(f"Pod start on one real node ({note}, {Path(runtime).name}; "
                f"medians of {args.rounds} rounds)",
                ["pods", "bare p50", "bare p99", "POST->Running p50", "p99", "/bare",
                 "bound->Running p50", "p99", "/bare (agent's own)", "own, each round",
                 "target"], rows)
    console.print("ms; target: the agent's own p50 <= 3x bare, and for 50 pods POST->Running "
                  "p99 <= 1 s")
    print_table("CPU seconds while the pods started, last round (each with the children it "
                "reaped; rest: the kernel's threads, this benchmark's client)",
                ["pods at once", "wall s", *COMPONENTS, "rest", "whole machine",
                 "ms a pod", "bare: ms a container"], cpu)
    mem.insert(0, mem_idle)
    print_table("Memory (RSS, MB)", ["when", "agent", "pinnace server (all its processes)",
                                      "conmon + containers"], mem)
    return 0


if __name__ == "__main__":
    sys.exit(main())
