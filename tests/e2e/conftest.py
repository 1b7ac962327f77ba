"""A real node: `pinnace server` as root with its agent, running pods as
real containers, with a busybox image built from Debian's busybox-static
and imported before the first pod needs it (no registry is reachable here).

scripts/test.sh runs tests/e2e in one process after the rest: the tests
share the host's bridge, cgroups and node name, which parallel agents
would fight over. The fixture cleans up every container, mount and
namespace the agent made, even when a test fails.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pinnace.kubelet import cgroups
from pinnace.kubelet.sandbox import RUN_DIR, release_pin_dir
from tests.conftest import Server, _free_port, start_server, wait_for

REPO = Path(__file__).resolve().parents[2]
NEEDS = ("runc", "conmon", "catatonit", "umoci")


def _missing() -> str:
    if os.geteuid() != 0:
        return "needs root (the node agent creates namespaces, mounts and cgroups)"
    absent = [b for b in NEEDS if not shutil.which(b)]
    if absent:
        return f"missing {', '.join(absent)} (scripts/test.sh installs them as root)"
    return ""


def require_node() -> None:
    why = _missing()
    if why:
        if os.environ.get("CI") == "true":
            pytest.fail(why + " (required in CI)")
        pytest.skip(why)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The benchmark and the classic example start (and reset) nodes of their
    own: they run before the shared node exists, as two agents in one network
    namespace would share its bridge."""
    # The classic example runs its own server and nodes too, before the shared one.
    items.sort(key=lambda item: 0 if "test_bench_node" in item.nodeid else
               1 if "test_classic" in item.nodeid else 2)


@pytest.fixture(scope="session")
def node_packages() -> None:
    require_node()


@pytest.fixture(scope="session")
def busybox_archive() -> Path:
    require_node()
    out = subprocess.run(["bash", str(REPO / "scripts/test-image.sh")], capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    return Path(out.stdout.strip().splitlines()[-1])


def pinnace(*args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([sys.executable, "-m", "pinnace.cli.main", *args], capture_output=True,
                          text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"pinnace {' '.join(args)} failed: {proc.stdout}{proc.stderr}")
    return proc


def guard_routes() -> dict[str, str]:
    """Where the host sends the pod and service ranges: must be a local device."""
    out = {}
    for cidr in ("10.244.0.0/16", "10.96.0.0/12"):
        r = subprocess.run(["ip", "-j", "route", "show", cidr], capture_output=True, text=True)
        routes = json.loads(r.stdout or "[]")
        out[cidr] = routes[0].get("dev", "") if routes else ""
    return out


def _agent_cgroups() -> set[str]:
    return {str(p) for h in cgroups.hierarchies() for d in (*cgroups.TIERS, cgroups.PROBE_PARENT)
            for p in (h / d).glob("**/") if p.is_dir()}


@pytest.fixture(scope="session")
def node(tmp_path_factory: pytest.TempPathFactory, busybox_archive: Path) -> Iterator[Server]:
    data = tmp_path_factory.mktemp("node")
    # What an earlier run on this machine may have left: not this run's doing.
    cgroups_before = _agent_cgroups()
    pinnace("image", "import", "--data-dir", str(data), str(busybox_archive))
    # Listening on every address: pods reach the API server through the
    # kubernetes service, at the host's own address.
    srv = start_server(data, "--kubelet-port", str(_free_port()), "--listen", "0.0.0.0:0",
                       command="server", agent=True, timeout=60)
    try:
        def ready() -> bool:
            out = srv.kubectl("get", "nodes", "-o", "json", check=False)
            if out.returncode != 0:
                return False
            return any(c["type"] == "Ready" and c["status"] == "True"
                       for n in json.loads(out.stdout)["items"]
                       for c in n["status"].get("conditions", []))
        wait_for(ready, timeout=60, what="the node to be Ready")
        # The network safety rule: cluster ranges stay on this machine.
        routes = guard_routes()
        assert all(routes.values()), f"pod/service ranges not routed locally: {routes}"
        yield srv
    finally:
        srv.stop()
        pinnace("agent", "--reset", "--data-dir", str(data), check=False)
        if srv.proc.returncode not in (0, -15, None):
            print(srv.log.read_text()[-5000:])
        # The reset leaves no service rules, addresses or mounts behind (every
        # agent of this run is gone now, the benchmarks' too).
        left = subprocess.run(["nft", "list", "table", "ip", "pinnace-proxy"], capture_output=True)
        lb = subprocess.run(["ip", "link", "show", "pinnace-lb"], capture_output=True)
        with open("/proc/self/mountinfo") as f:
            pin_dir_mounted = any(line.split()[4] == str(RUN_DIR) for line in f)
        release_pin_dir()  # should the reset have failed to, for the next run
        assert left.returncode != 0, "the proxy's nft table is still there after the reset"
        assert lb.returncode != 0, "the proxy's pinnace-lb link is still there after the reset"
        assert not pin_dir_mounted, f"{RUN_DIR} is still mounted after the reset"
        # ... no cgroup (no container process either), and the cgroup
        # controllers a hybrid host had on v2 are back there.
        left_cgroups = sorted(_agent_cgroups() - cgroups_before)
        assert not left_cgroups, f"cgroups left after the reset: {left_cgroups}"
        if not cgroups_before:
            assert not cgroups.RECORD.exists(), cgroups.RECORD.read_text()


@pytest.fixture
def ns(node: Server, request: pytest.FixtureRequest) -> Iterator[str]:
    from tests.conftest import _new_namespace

    name = _new_namespace(node, request)
    # As Kubernetes' e2e framework does: pods are refused until the namespace's
    # default ServiceAccount exists (the controller manager may be starting).
    wait_for(lambda: node.kubectl("get", "serviceaccount", "default", "-n", name,
                                  check=False).returncode == 0, timeout=60, interval=0.2,
             what="the namespace's default ServiceAccount")
    yield name
    node.kubectl("delete", "namespace", name, "--wait=false", check=False)


def pod_json(node: Server, ns: str, name: str) -> dict:
    return json.loads(node.kubectl("get", "pod", name, "-n", ns, "-o", "json").stdout)


def wait_pod(node: Server, ns: str, name: str, check, timeout: float = 60, what: str = ""):  # type: ignore[no-untyped-def]
    last: dict = {}

    def probe():  # type: ignore[no-untyped-def]
        nonlocal last
        out = node.kubectl("get", "pod", name, "-n", ns, "-o", "json", check=False)
        if out.returncode != 0:
            return None
        last = json.loads(out.stdout)
        return last if check(last) else None
    try:
        return wait_for(probe, timeout=timeout, interval=0.2, what=what or f"pod {name}")
    except AssertionError:
        events = node.kubectl("get", "events", "-n", ns, check=False).stdout
        raise AssertionError(f"{what or name}: status {json.dumps(last.get('status'), indent=1)}"
                             f"\nevents:\n{events}") from None


def until_answers(fn, what: str, timeout: float = 20, interval: float = 0.3):  # type: ignore[no-untyped-def]
    """``fn()`` once it stops failing (AssertionError, OSError): a proxy or a
    DNS change takes effect within moments, so wait for that, not a sleep."""
    def attempt():  # type: ignore[no-untyped-def]
        try:
            return fn()
        except (AssertionError, OSError):
            return None
    return wait_for(attempt, timeout=timeout, interval=interval, what=what)


def phase(p: dict) -> str:
    return p.get("status", {}).get("phase", "")


def cstate(p: dict, i: int = 0) -> dict:
    st = p.get("status", {}).get("containerStatuses") or [{}]
    return st[i].get("state", {}) if i < len(st) else {}


def now() -> float:
    return time.monotonic()
