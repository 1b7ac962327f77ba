"""The pod network on a real kernel: namespaces, veths, a bridge, the guard.

Traffic goes only between namespaces these tests create (and the bridge's
address); every cluster range is routed to the guard device before any
address is assigned. Each test has its own bridge, state dir and pod uids,
and checks that everything it made is gone afterwards, even when it fails.
The checks look at this test's names only: other tests may run at the same
time (the xdist_group mark does not keep them apart under `-n` with the
default --dist).
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

try:
    import pyroute2  # noqa: F401
    HAVE_PYROUTE2 = True
except ImportError:
    HAVE_PYROUTE2 = False

pytestmark = [
    pytest.mark.xdist_group("node"),
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root"),
    pytest.mark.skipif(not HAVE_PYROUTE2, reason="needs pyroute2"),
]

if HAVE_PYROUTE2:
    from pinnace.kubelet.network import NetworkError, PodNetwork, host_network_ns, is_netns

# A /24 per xdist worker: two bridges with one range would steal each other's replies.
_WORKER = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw") or 0)
SUBNET = f"10.244.{200 + _WORKER % 50}"
POD_CIDR = f"{SUBNET}.0/24"

PING = r"""
import os, socket, struct, sys
dst = sys.argv[1]
def csum(b):
    t = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    t = (t >> 16) + (t & 0xffff)
    t += t >> 16
    return ~t & 0xffff
ident, payload = os.getpid() & 0xffff, b"pinnace!"
hdr = struct.pack("!BBHHH", 8, 0, 0, ident, 1)
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
s.settimeout(2)
s.sendto(struct.pack("!BBHHH", 8, 0, csum(hdr + payload), ident, 1) + payload, (dst, 0))
while True:
    data, addr = s.recvfrom(2048)
    ihl = (data[0] & 0xF) * 4
    typ, _, _, rid, _ = struct.unpack("!BBHHH", data[ihl:ihl + 8])
    if typ == 0 and rid == ident and addr[0] == dst:
        break
"""

TCP_SERVER = r"""
import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", int(sys.argv[1])))
s.listen(1)
s.settimeout(10)
print("ready", flush=True)
c, addr = s.accept()
c.sendall(("hello " + addr[0]).encode())
c.close()
"""

TCP_CLIENT = r"""
import socket, sys
c = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=5)
print(c.recv(100).decode())
"""

LOOPBACK = r"""
import socket
s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen(1)
c = socket.create_connection(s.getsockname(), timeout=2)
a, _ = s.accept(); a.sendall(b"lo ok"); print(c.recv(10).decode())
"""


def in_ns(netns: str, *argv: str, timeout: float = 15) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["nsenter", f"--net={netns}", *argv], capture_output=True, text=True, timeout=timeout)


def py_in_ns(netns: str, code: str, *args: str) -> subprocess.CompletedProcess[str]:
    return in_ns(netns, sys.executable, "-c", code, *args)


def links() -> set[str]:
    return set(os.listdir("/sys/class/net"))


UIDS: list[str] = []  # the pod uids of the running test


def new_uid() -> str:
    uid = str(uuid.uuid4())
    UIDS.append(uid)
    return uid


def assert_nothing_left(bridge: str) -> None:
    now = links()
    left = {PodNetwork.host_veth_name(u) for u in UIDS} & now
    assert not left, f"veths left behind: {left}"
    assert bridge not in now
    left_ns = [p for p in map(PodNetwork.netns_path, UIDS) if p.exists()]
    assert not left_ns, f"network namespaces left behind: {left_ns}"
    nft = subprocess.run(["nft", "list", "table", "ip", "pinnace"], capture_output=True, text=True).stdout
    assert f"masq-{bridge}" not in nft


def make(state: Path, bridge: str, **kw: str) -> PodNetwork:
    return PodNetwork(state, "test-node", bridge=bridge, **kw)


@pytest.fixture
def bridge() -> Iterator[str]:
    name = "pnt" + secrets.token_hex(4)
    UIDS.clear()
    yield name
    assert_nothing_left(name)


@pytest.fixture
def state(tmp_path: Path) -> Path:
    return tmp_path / "state"


@pytest.fixture
def net(state: Path, bridge: str) -> Iterator[PodNetwork]:
    pn = make(state, bridge)
    try:
        pn.ensure_guard()
        assert pn.guard_routes_present()
        pn.ensure_host(POD_CIDR)
        yield pn
    finally:
        pn.cleanup_all()


def test_two_pods_talk_to_each_other_and_the_gateway(net: PodNetwork) -> None:
    a = net.setup_pod(new_uid(), "default", "a")
    b = net.setup_pod(new_uid(), "default", "b")
    assert a.ip != b.ip
    assert a.gateway == b.gateway == f"{SUBNET}.1" and a.prefixlen == 24
    for pod in (a, b):
        assert pod.ip.startswith(f"{SUBNET}.")
        assert is_netns(pod.netns) and len(pod.host_veth) <= 15 and pod.host_veth.startswith("pn")
        route = in_ns(pod.netns, "ip", "route", "show", "default").stdout
        assert f"default via {pod.gateway} dev eth0" in route
        mtu = int(Path(f"/sys/class/net/{net.bridge}/mtu").read_text())
        assert f"mtu {mtu}" in in_ns(pod.netns, "ip", "link", "show", "eth0").stdout
    for src, dst in ((a, b.ip), (b, a.ip), (a, a.gateway), (b, b.gateway)):
        r = py_in_ns(src.netns, PING, dst)
        assert r.returncode == 0, f"ping {dst} from {src.ip}: {r.stderr}"
    port = "8089"
    server = subprocess.Popen(["nsenter", f"--net={a.netns}", sys.executable, "-c", TCP_SERVER, port],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None and server.stdout.readline().strip() == "ready"
        r = py_in_ns(b.netns, TCP_CLIENT, a.ip, port)
        assert r.returncode == 0, r.stderr
        assert r.stdout.strip() == f"hello {b.ip}"  # no NAT between pods
    finally:
        server.kill()
        server.wait()


def test_loopback_works_inside_the_pod(net: PodNetwork) -> None:
    pod = net.setup_pod(new_uid(), "default", "lo")
    r = py_in_ns(pod.netns, LOOPBACK)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "lo ok"


def test_cluster_addresses_off_this_node_end_on_the_guard(net: PodNetwork) -> None:
    pod = net.setup_pod(new_uid(), "default", "a")
    for far in ("10.244.99.99", "10.96.0.10"):
        route = subprocess.run(["ip", "route", "get", far], capture_output=True, text=True).stdout
        assert f"dev {net.guard}" in route, route
    stats = Path(f"/sys/class/net/{net.guard}/statistics")

    def seen() -> int:  # a dummy counts what it swallows as sent, an ifb as dropped on receive
        return sum(int((stats / f).read_text()) for f in ("tx_packets", "tx_dropped", "rx_dropped"))

    before = seen()
    send = "import socket; socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b'x', ('10.244.99.99', 9))"
    assert py_in_ns(pod.netns, send).returncode == 0
    deadline = time.monotonic() + 5
    while seen() == before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert seen() > before


def test_setup_is_idempotent_and_repairs(net: PodNetwork) -> None:
    uid = new_uid()
    first = net.setup_pod(uid, "default", "a")
    assert net.setup_pod(uid, "default", "a") == first
    subprocess.run(["ip", "link", "del", first.host_veth], check=True)
    again = net.setup_pod(uid, "default", "a")
    assert again == first
    assert py_in_ns(again.netns, PING, again.gateway).returncode == 0


def test_the_host_end_is_a_hairpin_port_of_the_bridge(net: PodNetwork) -> None:
    pod = net.setup_pod(new_uid(), "default", "a")
    port = Path("/sys/class/net") / pod.host_veth
    assert (port / "master").resolve().name == net.bridge
    assert (port / "brport" / "hairpin_mode").read_text().strip() == "1"
    assert int((port / "flags").read_text(), 16) & 0x1  # up


def test_a_veth_left_by_an_unfinished_setup_is_replaced(net: PodNetwork) -> None:
    uid = new_uid()
    # The agent stopped after making the veth, before writing its record.
    subprocess.run(["ip", "link", "add", PodNetwork.host_veth_name(uid), "type", "veth",
                    "peer", "name", "pntstale" + secrets.token_hex(2)], check=True)
    pod = net.setup_pod(uid, "default", "a")
    assert py_in_ns(pod.netns, PING, pod.gateway).returncode == 0


def test_a_bridge_made_again_is_found_again(net: PodNetwork) -> None:
    first = net.setup_pod(new_uid(), "default", "a")
    subprocess.run(["ip", "link", "del", net.bridge], check=True)  # someone removed it
    with pytest.raises(NetworkError, match="bridge"):
        net.setup_pod(new_uid(), "default", "b")
    net.ensure_host(POD_CIDR)  # a new bridge, with a new index
    pod = net.setup_pod(new_uid(), "default", "c")
    assert py_in_ns(pod.netns, PING, pod.gateway).returncode == 0
    net.teardown_pod(first.netns.rsplit("pinnace-", 1)[1])


def test_teardown_removes_veth_netns_and_address(net: PodNetwork, state: Path) -> None:
    uid = new_uid()
    pod = net.setup_pod(uid, "default", "a")
    assert (state / "ips" / pod.ip).read_text().strip() == uid
    assert net.pods() == {uid: pod}
    net.teardown_pod(uid)
    assert pod.host_veth not in links()
    assert not os.path.exists(pod.netns)
    assert not (state / "ips" / pod.ip).exists()
    assert net.pods() == {}
    net.teardown_pod(uid)  # already gone: no error
    net.teardown_pod(new_uid())


def test_allocations_survive_a_restart_and_free_only_on_teardown(state: Path, bridge: str) -> None:
    first = make(state, bridge)
    restarted: PodNetwork | None = None
    try:
        first.ensure_host(f"{SUBNET}.0/29")  # .2 to .6: five pods
        uids = [new_uid() for _ in range(5)]
        pods = {u: first.setup_pod(u, "default", f"p{i}") for i, u in enumerate(uids)}
        assert len({p.ip for p in pods.values()}) == 5
        spare = new_uid()
        with pytest.raises(NetworkError):
            first.setup_pod(spare, "default", "spare")
        assert not os.path.exists(PodNetwork.netns_path(spare))

        restarted = make(state, bridge)  # the agent again, same state dir
        assert restarted.pods() == pods
        restarted.ensure_host(f"{SUBNET}.0/29")
        assert restarted.setup_pod(uids[0], "default", "p0") == pods[uids[0]]
        with pytest.raises(NetworkError):
            restarted.setup_pod(spare, "default", "spare")
        restarted.teardown_pod(uids[2])
        reused = restarted.setup_pod(spare, "default", "spare")
        assert reused.ip == pods[uids[2]].ip
        assert py_in_ns(reused.netns, PING, pods[uids[0]].ip).returncode == 0
    finally:
        first.cleanup_all()
        if restarted is not None:
            restarted.cleanup_all()


def test_an_unfinished_setup_is_listed_and_freed(state: Path, bridge: str) -> None:
    uid, held = new_uid(), f"{SUBNET}.2"
    (state / "ips").mkdir(parents=True)
    (state / "ips" / held).write_text(uid + "\n")  # the agent died right after allocating
    pn = make(state, bridge)
    try:
        pn.ensure_host(POD_CIDR)
        assert pn.pods()[uid].ip == held
        assert pn.setup_pod(new_uid(), "default", "b").ip != held
        pn.teardown_pod(uid)
        assert uid not in pn.pods()
        assert not (state / "ips" / held).exists()
    finally:
        pn.cleanup_all()


def test_no_addresses_without_guard_routes(state: Path, bridge: str) -> None:
    unguarded = make(state, bridge, guard="pntnoguard")  # a guard device that does not exist
    try:
        assert not unguarded.guard_routes_present()
        with pytest.raises(NetworkError, match="guard"):
            unguarded.setup_pod(new_uid(), "default", "a")
        assert bridge not in links()
    finally:
        unguarded.cleanup_all()


def test_a_guard_down_or_short_of_a_route_is_refused(state: Path, bridge: str) -> None:
    """A guard of this test's own for ranges inside the cluster's (more
    specific, so local too): each of its checks must see what went missing."""
    guard = "pntg" + secrets.token_hex(4)
    cluster, service = f"10.244.{230 + _WORKER % 20}.0/24", f"10.97.{_WORKER % 200}.0/24"
    pn = make(state, bridge, guard=guard, cluster_cidr=cluster, service_cidr=service)
    try:
        pn.ensure_guard()
        assert pn.guard_routes_present()
        subprocess.run(["ip", "route", "del", service, "dev", guard], check=True)
        assert not pn.guard_routes_present()
        pn.ensure_guard()
        assert pn.guard_routes_present()
        subprocess.run(["ip", "link", "set", guard, "down"], check=True)
        assert not pn.guard_routes_present()
    finally:
        pn.cleanup_all()
        subprocess.run(["ip", "link", "del", guard], capture_output=True)
    assert guard not in links()


def test_a_batch_names_the_request_the_kernel_refused(tmp_path: Path) -> None:
    from pinnace.kubelet import namespaces, rtnl
    from pinnace.kubelet.network import remove_netns

    path = Path("/run/netns") / f"pinnace-test-{secrets.token_hex(4)}"
    sock = namespaces.pin({"net": path}, inside=rtnl.socket_in_this_namespace)
    assert sock is not None
    try:
        with rtnl.Rtnl(sock) as ns:
            with pytest.raises(rtnl.RtnlError) as e:
                ns.run(rtnl.set_up(1), rtnl.add_address(4242, "192.0.2.1", 24),
                       rtnl.add_default_route("192.0.2.254", 4242))
            assert e.value.errno == 19 and "adding address 192.0.2.1/24" in str(e.value)
            # The kernel went on past the failure: loopback is up.
            assert ns.index("lo") == 1
            assert "UP" in in_ns(str(path), "ip", "link", "show", "lo").stdout
            ns.run(rtnl.set_hairpin("nosuch"))  # optional: a failure is only logged
            with pytest.raises(rtnl.RtnlError) as e:
                ns.index("nosuch")
            assert e.value.errno == 19
    finally:
        remove_netns(path)
    assert not path.exists()


def test_pins_in_a_directory_of_our_own_live_on_a_tmpfs(tmp_path: Path) -> None:
    """tmp_path stands for /run/pinnace/pods on a disk: the pins get a tmpfs
    there, shared as `ip netns` shares its directory. A directory that
    already holds files is bound onto itself instead, never hidden."""
    from pinnace.kubelet import namespaces
    from pinnace.kubelet.oci import unmount

    pins, kept = tmp_path / "pins", tmp_path / "kept"
    kept.mkdir()
    (kept / "someone-elses").write_text("x")
    try:
        namespaces.pin({"ipc": pins / "a.ipc", "uts": pins / "a.uts"}, "a", memory=True)
        namespaces.pin({"ipc": kept / "b.ipc"}, memory=True)
        fstype = subprocess.run(["findmnt", "-no", "FSTYPE,PROPAGATION", str(pins)],
                                capture_output=True, text=True, check=True).stdout.split()
        assert fstype == ["tmpfs", "shared"]
        assert namespaces.is_pinned(pins / "a.ipc", "ipc")
        assert namespaces.is_pinned(pins / "a.uts", "uts")
        assert (kept / "someone-elses").read_text() == "x"
        assert namespaces.is_pinned(kept / "b.ipc", "ipc")
        assert subprocess.run(["findmnt", "-no", "FSTYPE", str(kept)], capture_output=True,
                              text=True).stdout.split()[:1] != ["tmpfs"]
    finally:
        for p in (pins / "a.ipc", pins / "a.uts", kept / "b.ipc"):
            namespaces.unpin(p)
        for d in (pins, kept):
            unmount(d)
    mounted = subprocess.run(["findmnt", "-rno", "TARGET"], capture_output=True,
                             text=True).stdout.split()
    assert not [m for m in mounted if m.startswith(str(tmp_path))]


def test_host_network_namespace_is_the_agents() -> None:
    path = host_network_ns()
    assert os.stat(path).st_ino == os.stat("/proc/self/ns/net").st_ino
    assert is_netns(path)
