"""stats.py against fake cgroup trees (v1 and v2 layouts), a fake /proc and
/sys/class/net, and an injected clock: parsing, working set, CPU rates."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pinnace.kubelet.stats import Cgroups, ContainerRef, StatsCollector, resource_metrics, summary

POD_CG = "/kubepods/burstable/poduid-1"
CG = f"{POD_CG}/c1"


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def v1_tree(root: Path, cpu_dir: str = "cpu,cpuacct") -> None:
    for cg, usage_ns, mem in ((CG, 3_000_000_000, 100 << 20), (POD_CG, 3_500_000_000, 120 << 20)):
        write(root / cpu_dir / cg.strip("/") / "cpuacct.usage", f"{usage_ns}\n")
        d = root / "memory" / cg.strip("/")
        write(d / "memory.usage_in_bytes", f"{mem}\n")
        write(d / "memory.limit_in_bytes", f"{9223372036854771712 if cg == POD_CG else 200 << 20}\n")
        write(d / "memory.stat", f"cache 0\nrss 1\npgfault 42\npgmajfault 3\ntotal_rss {60 << 20}\n"
                                 f"total_inactive_file {30 << 20}\n")


def v2_tree(root: Path) -> None:
    write(root / "cgroup.controllers", "cpu memory pids\n")
    for cg, usec, mem in ((CG, 3_000_000, 100 << 20), (POD_CG, 3_500_000, 120 << 20)):
        d = root / cg.strip("/")
        write(d / "cpu.stat", f"usage_usec {usec}\nuser_usec 1\nsystem_usec 2\n")
        write(d / "memory.current", f"{mem}\n")
        write(d / "memory.max", "max\n" if cg == POD_CG else f"{200 << 20}\n")
        write(d / "memory.stat", f"anon {60 << 20}\nfile 5\ninactive_file {30 << 20}\n"
                                 "pgfault 42\npgmajfault 3\n")


def fake_proc(proc: Path, busy_ticks: int = 1000) -> None:
    # user nice system idle iowait irq softirq steal
    write(proc / "stat", f"cpu  {busy_ticks} 0 0 5000 7 0 0 0 0 0\ncpu0 1 2 3 4\nbtime 1700000000\n")
    write(proc / "meminfo", "MemTotal:       16000000 kB\nMemFree:         4000000 kB\n"
                            "AnonPages:       2000000 kB\nInactive(file):  1000000 kB\n")
    write(proc / "vmstat", "pgfault 99\npgmajfault 5\n")


def fake_net(net: Path) -> None:
    for name, rx, tx in (("eth0", 1000, 2000), ("lo", 1, 1), ("pnabcdef01234", 300, 400)):
        for k, v in (("rx_bytes", rx), ("tx_bytes", tx), ("rx_errors", 0), ("tx_errors", 1)):
            write(net / name / "statistics" / k, f"{v}\n")
    (net / "cni0" / "bridge").mkdir(parents=True)


class Clock:
    def __init__(self, t: float = 1_800_000_000.0):
        self.t = t

    def __call__(self) -> float:
        return self.t


def collector(tmp_path: Path, v2: bool, clock: Clock, cpu_dir: str = "cpu,cpuacct") -> StatsCollector:
    root = tmp_path / "cgroup"
    v2_tree(root) if v2 else v1_tree(root, cpu_dir)
    fake_proc(tmp_path / "proc")
    fake_net(tmp_path / "net")
    return StatsCollector(cgroups=Cgroups(root), proc=tmp_path / "proc", sys_class_net=tmp_path / "net",
                          veth_name=lambda uid: "pnabcdef01234", clock=clock)


def ref(tmp_path: Path, started: float) -> ContainerRef:
    upper = tmp_path / "upper"
    write(upper / "etc" / "file", "x" * 5000)
    log = tmp_path / "logs" / "c1" / "0.log"
    write(log, "hello\n")
    return ContainerRef(pod_uid="uid-1", namespace="ns", pod_name="p", name="c1", cgroup=CG,
                        started_at=started, log_path=str(log), rootfs_upper=str(upper))


@pytest.mark.parametrize("v2", [False, True], ids=["v1", "v2"])
def test_layouts_parse_alike(tmp_path: Path, v2: bool) -> None:
    cg = Cgroups(tmp_path / "cgroup")
    (v2_tree if v2 else v1_tree)(tmp_path / "cgroup")
    cg = Cgroups(tmp_path / "cgroup")
    assert cg.v2 is v2
    assert cg.cpu_ns(CG) == 3_000_000_000
    mem = cg.memory(CG)
    assert mem == {"usage": 100 << 20, "workingSet": 70 << 20, "rss": 60 << 20, "pageFaults": 42,
                   "majorPageFaults": 3, "limit": 200 << 20}
    assert "limit" not in (cg.memory(POD_CG) or {})  # unlimited
    assert cg.cpu_ns("/kubepods/gone") is None and cg.memory("/kubepods/gone") is None


def test_v1_separate_cpuacct_hierarchy(tmp_path: Path) -> None:
    v1_tree(tmp_path / "cgroup", cpu_dir="cpuacct")
    (tmp_path / "cgroup" / "cpu").mkdir()
    assert Cgroups(tmp_path / "cgroup").cpu_ns(CG) == 3_000_000_000


def test_working_set_never_negative(tmp_path: Path) -> None:
    v2_tree(tmp_path)
    write(tmp_path / CG.strip("/") / "memory.stat", f"inactive_file {500 << 20}\n")
    assert Cgroups(tmp_path).memory(CG)["workingSet"] == 0  # type: ignore[index]


@pytest.mark.parametrize("v2", [False, True], ids=["v1", "v2"])
def test_summary_shape(tmp_path: Path, v2: bool) -> None:
    clock = Clock()
    c = collector(tmp_path, v2, clock)
    pod = {"metadata": {"uid": "uid-1", "name": "p", "namespace": "ns"},
           "status": {"startTime": "2027-01-15T08:00:00Z"}}
    s = c.summary("node-a", [pod], [ref(tmp_path, clock.t - 10)], rootfs_dir=tmp_path)
    node = s["node"]
    assert node["nodeName"] == "node-a" and node["startTime"] == "2023-11-14T22:13:20Z"
    assert node["cpu"]["usageCoreNanoSeconds"] == 1000 * 10**9 // 100
    mem = node["memory"]
    assert mem["usageBytes"] == 12_000_000 * 1024
    assert mem["workingSetBytes"] == 11_000_000 * 1024
    assert mem["availableBytes"] == 5_000_000 * 1024 and mem["pageFaults"] == 99
    assert [i["name"] for i in node["network"]["interfaces"]] == ["eth0"]
    assert node["network"]["rxBytes"] == 1000
    assert node["fs"]["capacityBytes"] > 0 and "imageFs" in node["runtime"]

    [p] = s["pods"]
    assert p["podRef"] == {"name": "p", "namespace": "ns", "uid": "uid-1"}
    assert p["startTime"] == "2027-01-15T08:00:00Z"
    [ct] = p["containers"]
    assert ct["name"] == "c1" and ct["startTime"] == "2027-01-15T07:59:50Z"
    # First reading: the average since the container started (3 s of CPU in 10 s).
    assert ct["cpu"] == {"time": "2027-01-15T08:00:00Z", "usageNanoCores": 300_000_000,
                         "usageCoreNanoSeconds": 3_000_000_000}
    assert ct["memory"]["workingSetBytes"] == 70 << 20
    assert ct["memory"]["availableBytes"] == 130 << 20
    assert ct["rootfs"]["usedBytes"] >= 5000 and ct["rootfs"]["inodesUsed"] == 2
    assert ct["logs"]["usedBytes"] > 0
    assert p["cpu"]["usageCoreNanoSeconds"] == 3_500_000_000
    assert p["memory"]["workingSetBytes"] == 90 << 20 and "availableBytes" not in p["memory"]
    # The host end of the veth: its tx is what the pod received.
    assert (p["network"]["rxBytes"], p["network"]["txBytes"]) == (400, 300)
    assert p["ephemeral-storage"]["usedBytes"] == ct["rootfs"]["usedBytes"] + ct["logs"]["usedBytes"]


def _set_cpu(tmp_path: Path, v2: bool, ns: int) -> None:
    if v2:
        write(tmp_path / "cgroup" / CG.strip("/") / "cpu.stat", f"usage_usec {ns // 1000}\n")
    else:
        write(tmp_path / "cgroup" / "cpu,cpuacct" / CG.strip("/") / "cpuacct.usage", f"{ns}\n")


@pytest.mark.parametrize("v2", [False, True], ids=["v1", "v2"])
def test_cpu_rate_between_readings(tmp_path: Path, v2: bool) -> None:
    clock = Clock()
    c = collector(tmp_path, v2, clock)
    r = ref(tmp_path, clock.t - 100)

    def rate() -> int:
        s = c.summary("n", [], [r], rootfs_dir=tmp_path)
        return int(s["pods"][0]["containers"][0]["cpu"]["usageNanoCores"])

    assert rate() == 30_000_000  # 3 s over 100 s
    clock.t += 10
    _set_cpu(tmp_path, v2, 8_000_000_000)
    assert rate() == 500_000_000  # 5 s of CPU in 10 s: half a core
    # Too soon for a new window: the last rate stands, the reference stays.
    clock.t += 0.2
    _set_cpu(tmp_path, v2, 8_100_000_000)
    assert rate() == 500_000_000
    clock.t += 0.8
    assert rate() == 100_000_000  # 0.1 s in the 1 s since the reference
    # The counter went back (a new container in the cgroup): start over.
    clock.t += 5
    _set_cpu(tmp_path, v2, 1_000_000_000)
    assert rate() == 1_000_000_000 // 116  # since the start, 116 s ago


def test_node_rate_and_forgetting(tmp_path: Path) -> None:
    clock = Clock()
    c = collector(tmp_path, False, clock)
    c.summary("n", [], [ref(tmp_path, clock.t - 1)], rootfs_dir=tmp_path)
    assert CG in c.samples and "/" in c.samples
    clock.t += 10
    fake_proc(tmp_path / "proc", busy_ticks=1000 + 1500)  # 15 s of CPU in 10 s
    s = c.summary("n", [], [], rootfs_dir=tmp_path)
    assert s["node"]["cpu"]["usageNanoCores"] == 1_500_000_000
    assert s["pods"] == [] and CG not in c.samples  # gone containers are forgotten


def test_summary_function_keeps_state_in_prev(tmp_path: Path) -> None:
    clock = Clock()
    root = tmp_path / "cgroup"
    v2_tree(root)
    prev: dict[str, Any] = {}
    opts = {"cgroups": Cgroups(root), "proc": tmp_path / "proc", "clock": clock}
    summary("n", [], [ref(tmp_path, clock.t - 10)], rootfs_dir=tmp_path, prev=prev, **opts)
    clock.t += 2
    _set_cpu(tmp_path, True, 4_000_000_000)
    s = summary("n", [], [ref(tmp_path, clock.t - 12)], rootfs_dir=tmp_path, prev=prev, **opts)
    assert s["pods"][0]["containers"][0]["cpu"]["usageNanoCores"] == 500_000_000


def test_missing_cgroup_falls_back_to_nothing(tmp_path: Path) -> None:
    clock = Clock()
    c = collector(tmp_path, True, clock)
    gone = ContainerRef("uid-2", "ns", "q", "c", "/kubepods/podx/gone", clock.t)
    s = c.summary("n", [], [gone], rootfs_dir=tmp_path)
    [p] = s["pods"]
    assert "cpu" not in p and "memory" not in p and p["containers"] == [
        {"name": "c", "startTime": "2027-01-15T08:00:00Z"}]


def test_resource_metrics_text(tmp_path: Path) -> None:
    clock = Clock()
    c = collector(tmp_path, True, clock)
    s = c.summary("n", [], [ref(tmp_path, clock.t - 10)], rootfs_dir=tmp_path)
    text = resource_metrics(s)
    ts = int(clock.t) * 1000
    assert "# TYPE node_cpu_usage_seconds_total counter" in text
    assert f"node_cpu_usage_seconds_total 10 {ts}\n" in text
    assert f"node_memory_working_set_bytes {11_000_000 * 1024} {ts}\n" in text
    assert f'container_cpu_usage_seconds_total{{container="c1",pod="p",namespace="ns"}} 3 {ts}\n' in text
    assert f'container_memory_working_set_bytes{{container="c1",pod="p",namespace="ns"}} {70 << 20} {ts}' in text
    assert f'pod_cpu_usage_seconds_total{{pod="p",namespace="ns"}} 3.5 {ts}\n' in text
    assert f'pod_memory_working_set_bytes{{pod="p",namespace="ns"}} {90 << 20} {ts}\n' in text
    assert 'container_start_time_seconds{container="c1",pod="p",namespace="ns"} 1799999990\n' in text
    assert "\nscrape_error 0\n" in text and "\nresource_scrape_error 0\n" in text
    assert "\nresource_scrape_error 1\n" in resource_metrics(None)
