"""Facts about the machine the agent runs on, as a Node reports them:
capacity, addresses, nodeInfo and the pressure conditions.

Read from /proc, /sys and /etc, never cached for long: memory and disk
change, and a Node's status must say what is true now.
"""

from __future__ import annotations

import os
import platform
import socket
import time
from dataclasses import dataclass
from pathlib import Path

from pinnace.hostaddr import primary_ip

# GOARCH spelling, which Kubernetes labels and image platforms use.
_ARCH = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "ppc64le": "ppc64le",
         "s390x": "s390x", "riscv64": "riscv64"}

# The kubelet's default hard eviction thresholds: below these, a pressure condition.
MEMORY_AVAILABLE_MIN = 100 * 1024 * 1024
DISK_AVAILABLE_MIN_PERCENT = 10
PID_AVAILABLE_MIN_PERCENT = 10


def arch() -> str:
    machine = platform.machine()
    return _ARCH.get(machine, machine)


def _read(path: str, default: str = "") -> str:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return default


def meminfo() -> dict[str, int]:
    """/proc/meminfo in bytes."""
    out = {}
    for line in _read("/proc/meminfo").splitlines():
        name, _, rest = line.partition(":")
        parts = rest.split()
        if parts:
            out[name] = int(parts[0]) * (1024 if parts[1:] == ["kB"] else 1)
    return out


_mem_total = (float("-inf"), 0)  # (monotonic time read, bytes)


def mem_total() -> int:
    """MemTotal in bytes, read again after ten seconds: every container
    start needs it (its OOM score), and memory is rarely hot-plugged."""
    global _mem_total
    now = time.monotonic()
    if now - _mem_total[0] > 10:
        _mem_total = (now, meminfo().get("MemTotal", 0))
    return _mem_total[1]


def os_image() -> str:
    for line in _read("/etc/os-release").splitlines():
        if line.startswith("PRETTY_NAME="):
            return line.split("=", 1)[1].strip().strip('"')
    return "Linux"


@dataclass
class HostFacts:
    cpus: int
    memory: int
    disk: int
    hostname: str
    ip: str

    @classmethod
    def read(cls, data_dir: Path) -> "HostFacts":
        st = os.statvfs(data_dir)
        return cls(cpus=len(os.sched_getaffinity(0)), memory=meminfo().get("MemTotal", 0),
                   disk=st.f_blocks * st.f_frsize, hostname=socket.gethostname(),
                   ip=primary_ip())

    def capacity(self, max_pods: int = 110) -> dict[str, str]:
        return {"cpu": str(self.cpus), "memory": f"{self.memory // 1024}Ki",
                "ephemeral-storage": f"{self.disk // 1024}Ki", "pods": str(max_pods),
                "hugepages-1Gi": "0", "hugepages-2Mi": "0"}

    def allocatable(self, max_pods: int = 110) -> dict[str, str]:
        """Capacity less the kubelet's default hard eviction threshold for memory."""
        cap = self.capacity(max_pods)
        cap["memory"] = f"{max(self.memory - MEMORY_AVAILABLE_MIN, 0) // 1024}Ki"
        return cap


def node_info(runtime: str, runtime_version: str, kubelet_version: str) -> dict[str, str]:
    machine_id = _read("/etc/machine-id") or _read("/var/lib/dbus/machine-id")
    return {"machineID": machine_id,
            "systemUUID": _read("/sys/class/dmi/id/product_uuid", machine_id).lower(),
            "bootID": _read("/proc/sys/kernel/random/boot_id"),
            "kernelVersion": platform.release(), "osImage": os_image(),
            "containerRuntimeVersion": f"{runtime}://{runtime_version}",
            "kubeletVersion": kubelet_version, "kubeProxyVersion": "",
            "operatingSystem": "linux", "architecture": arch()}


def boot_id() -> str:
    return _read("/proc/sys/kernel/random/boot_id")


def pressures(data_dir: Path) -> dict[str, tuple[bool, str]]:
    """MemoryPressure, DiskPressure, PIDPressure: (under pressure, why)."""
    mem = meminfo().get("MemAvailable", MEMORY_AVAILABLE_MIN)
    st = os.statvfs(data_dir)
    free_pct = 100 * st.f_bavail / max(st.f_blocks, 1)
    pid_max = int(_read("/proc/sys/kernel/pid_max", "32768") or 32768)
    try:
        pids = sum(1 for d in os.listdir("/proc") if d.isdigit())
    except OSError:
        pids = 0
    return {
        "MemoryPressure": (mem < MEMORY_AVAILABLE_MIN, f"{mem // (1024 * 1024)}Mi available"),
        "DiskPressure": (free_pct < DISK_AVAILABLE_MIN_PERCENT, f"{free_pct:.0f}% free"),
        "PIDPressure": (100 * (pid_max - pids) / pid_max < PID_AVAILABLE_MIN_PERCENT,
                        f"{pids} of {pid_max} pids in use"),
    }
