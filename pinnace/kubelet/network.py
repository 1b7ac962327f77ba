"""The pod network of a node (issue 9): one network namespace per pod, a veth
pair from it into the node's bridge, an address from the node's podCIDR.

Layout on the host:

  <guard>   a dummy device (an ifb device on kernels without dummy) holding
            routes for the cluster's pod and service ranges, so no packet for
            them can follow the default route off the machine. Addresses are
            never assigned while those routes are missing. The bridge's
            podCIDR route is more specific and wins.
  <bridge>  holds the first address of the podCIDR (the pods' gateway).
  pn<hash>  the host end of a pod's veth, a port of the bridge; the other end
            is eth0 in /run/netns/pinnace-<uid>.
  nft table `ip pinnace`: masquerade for pod traffic leaving the cluster range.

Several pod networks (tests, an agent) may share a host. Each holds a shared
flock on /run/pinnace/network.lock from ensure_guard until cleanup_all or
close; the guard is deleted, and ip_forward restored, only by one that gets
the lock exclusively, so the guard never goes while another relies on it.
Changes to the nft table are made under /run/pinnace/nft.lock.

Under state_dir, what survives an agent restart:
  ips/<ip>           the uid of the pod holding it, created with O_EXCL so an
                     address is never handed out twice while in use
  ips/last_reserved  where allocation continues after a restart
  pods/<hash>.json   the uid, namespace, name and PodNet of a pod whose setup finished

All calls block (netlink, mounts): the agent runs them with asyncio.to_thread,
never on the event loop's thread (pyroute2 runs a loop of its own per call).
A pod's links, made and deleted with every pod, go through rtnl.py instead:
three batched round trips to make them (pyroute2's requests took eight),
one to delete them.
Namespaces are entered only on short-lived threads of their own (setns and
unshare act on the calling thread), so nothing forks and no thread that runs
other work ever changes namespace.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import ipaddress
import json
import logging
import os
import re
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager, suppress
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from pinnace.hostbin import which

from . import libc, namespaces
from .ipam import NodeIPAM, PoolExhausted

log = logging.getLogger("pinnace.kubelet.network")


NETNS_DIR = Path("/run/netns")
RUN_DIR = Path("/run/pinnace")
POD_IFNAME = "eth0"
NFT_TABLE = "pinnace"
GUARD_KINDS = ("dummy", "ifb", "bridge")
_MAIN_TABLE = 254
_IFF_UP = 0x1
_IFF_LOWER_UP = 0x10000
_IFNAME = re.compile(r"[A-Za-z0-9_.-]{1,15}")


class NetworkError(Exception):
    """The pod network could not be set up (the message is shown to users)."""


@dataclass
class PodNet:
    netns: str          # path of the pod's network namespace (what the OCI config receives)
    ip: str
    gateway: str        # the bridge's address
    prefixlen: int
    host_veth: str


# --- namespaces, without forking (namespaces.py) ------------------------------

def create_netns(path: Path) -> None:
    """A new, empty network namespace bind-mounted at path."""
    namespaces.pin({"net": path})


def is_netns(path: str | Path) -> bool:
    """True if path is a (bind-mounted) network namespace."""
    return namespaces.is_pinned(path, "net")


def remove_netns(path: Path) -> None:
    """Unmount and remove a namespace file; no error if it is gone."""
    namespaces.unpin(path)


def _netlink_socket_in(path: Path) -> socket.socket:
    """A route netlink socket bound to the namespace at path (a socket stays
    in the namespace it was created in)."""
    def make() -> socket.socket:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            libc.setns(fd, libc.CLONE_NEWNET, path)
        finally:
            os.close(fd)
        return socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, socket.NETLINK_ROUTE)
    return namespaces.on_fresh_thread(make)


@contextmanager
def _iproute(netns: Path | None = None) -> Iterator[Any]:
    ipr = _open_iproute(netns)
    try:
        yield ipr
    finally:
        ipr.close()


def _open_iproute(netns: Path | None = None) -> Any:
    try:
        from pinnace.pyroute import IPRoute
    except ImportError as e:  # pragma: no cover - pyroute2 ships with the agent
        raise NetworkError("the pod network needs pyroute2 (pip install pyroute2)") from e
    return IPRoute() if netns is None else IPRoute(use_socket=_netlink_socket_in(netns))


def _netlink_code(e: BaseException) -> int | None:
    code = getattr(e, "code", None)
    return code if isinstance(code, int) else None


# Seconds a good check of the guard routes stands for (PodNetwork._require_guard).
GUARD_RECHECK = 1.0
# Every network namespace's loopback device (the kernel's LOOPBACK_IFINDEX).
LOOPBACK_INDEX = 1


def _lookup(ipr: Any, ifname: str) -> int | None:
    found = ipr.link_lookup(ifname=ifname)
    return found[0] if found else None


def _kind(link: Any) -> str | None:
    info = link.get_attr("IFLA_LINKINFO")
    return info.get_attr("IFLA_INFO_KIND") if info is not None else None


def _v4_addrs(ipr: Any, index: int) -> list[tuple[str, int]]:
    return [(a.get_attr("IFA_ADDRESS"), a["prefixlen"])
            for a in ipr.get_addr(family=socket.AF_INET) if a["index"] == index]


def _v4_routes(ipr: Any) -> list[Any]:
    return [r for r in ipr.get_routes(family=socket.AF_INET)
            if (r.get_attr("RTA_TABLE") or r["table"]) == _MAIN_TABLE]


def _default_mtu(ipr: Any) -> int:
    """The MTU of the device holding the default route; 1500 without one."""
    for r in _v4_routes(ipr):
        oif = r.get_attr("RTA_OIF")
        if r["dst_len"] == 0 and oif:
            for link in ipr.get_links(oif):
                mtu = link.get_attr("IFLA_MTU")
                if mtu:
                    return int(mtu)
    return 1500


# --- files ----------------------------------------------------------------

def _write_atomic(path: Path, data: str, durable: bool = True) -> None:
    """Readers see the old contents or the new, never a part. ``durable``:
    on the disk before this returns (an fsync: milliseconds while pods
    start, so only for what a power loss must not take)."""
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w") as f:
        f.write(data)
        if durable:
            f.flush()
            os.fsync(f.fileno())
    os.replace(tmp, path)


def _write_hint(path: Path, text: str, width: int = 16) -> None:
    """Overwrite a small file in place, padded to one width so that nothing
    of a longer old value is left. Not atomic: for a hint whose reader
    checks it. ext4 writes a file replaced by a rename (or truncated and
    written again) to the disk first, a flush per pod start held under the
    allocation lock; this writes over the same bytes and does neither."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        os.pwrite(fd, (text[:width - 1].ljust(width - 1) + "\n").encode(), 0)
    finally:
        os.close(fd)


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def _sysctl_path(name: str) -> Path:
    return Path("/proc/sys") / name.replace(".", "/")


def _nft(script: str, *args: str) -> subprocess.CompletedProcess[str]:
    nft = which("nft")
    if nft is None:
        raise NetworkError("the pod network needs the nft command (package nftables)")
    return subprocess.run([nft, *args, "-f", "-"] if script else [nft, *args], input=script or None,
                          capture_output=True, text=True, timeout=30)


def open_lock(name: str) -> int:
    """A lock file of this host's pod networks and agents, in RUN_DIR (flock it)."""
    RUN_DIR.mkdir(parents=True, exist_ok=True)
    return os.open(RUN_DIR / name, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)


@contextmanager
def _host_lock(name: str) -> Iterator[None]:
    fd = open_lock(name)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


class _KeptSocket:
    """A host netlink socket kept for the agent's life and used by one
    thread at a time: opening one costs as much as three requests, and every
    pod start used to open three. A failure other than the kernel's answer
    (``kernel_error()``) drops it: its state is then unknown, and the next
    user opens a new one."""

    def __init__(self, open_: Callable[[], Any], kernel_error: Callable[[], type[BaseException]]):
        self._open, self._kernel_error = open_, kernel_error
        self._sock: Any = None
        self._lock = threading.Lock()

    @contextmanager
    def use(self) -> Iterator[Any]:
        with self._lock:
            if self._sock is None:
                self._sock = self._open()
            try:
                yield self._sock
            except BaseException as e:
                if not isinstance(e, self._kernel_error()):
                    self._drop()
                raise

    def close(self) -> None:
        with self._lock:
            self._drop()

    def _drop(self) -> None:
        sock, self._sock = self._sock, None
        if sock is not None:
            with suppress(Exception):
                sock.close()


def _pyroute_error() -> type[BaseException]:
    from pinnace.pyroute import NetlinkError
    return NetlinkError  # type: ignore[no-any-return]


def _open_rtnl() -> Any:
    from .rtnl import Rtnl
    return Rtnl()


def _rtnl_error() -> type[BaseException]:
    from .rtnl import RtnlError
    return RtnlError


# --- the node's pod network -----------------------------------------------

class PodNetwork:
    """The pod network of one node.

    state_dir: where allocations and pod records live (kept across restarts).
    node_name: the Node this agent runs as (for messages).
    bridge: the bridge pods attach to; cluster_cidr / service_cidr: the ranges
    the guard device routes locally; guard: the dummy device's name.
    """

    def __init__(self, state_dir: Path, node_name: str, *, bridge: str = "pinnace0",
                 cluster_cidr: str = "10.244.0.0/16", service_cidr: str = "10.96.0.0/12",
                 guard: str = "pinnace-guard"):
        for what, name in (("bridge", bridge), ("guard", guard)):
            if not _IFNAME.fullmatch(name):
                raise ValueError(f"{what} name {name!r}: 1-15 characters of [A-Za-z0-9_.-]")
        self.state_dir = Path(state_dir)
        self.node_name = node_name
        self.bridge = bridge
        self.guard = guard
        self.cluster = ipaddress.IPv4Network(cluster_cidr, strict=False)
        self.service = ipaddress.IPv4Network(service_cidr, strict=False)
        self.pod_cidr: ipaddress.IPv4Network | None = None
        self._ips_dir = self.state_dir / "ips"
        self._pods_dir = self.state_dir / "pods"
        self._chain = f"masq-{bridge}"
        self._host_port_chains = (f"hostports-{bridge}", f"hostports-out-{bridge}")
        self._lock = threading.RLock()          # IPAM, the owner map, the uid locks
        self._uid_locks: dict[str, threading.Lock] = {}
        self._ipam: NodeIPAM | None = None
        self._owned: dict[str, set[str]] = {}   # uid -> its addresses, as in ips/
        self._guard_fd: int | None = None       # our shared hold on the guard
        self._netlink = _KeptSocket(_open_iproute, _pyroute_error)
        self._rtnl = _KeptSocket(_open_rtnl, _rtnl_error)
        self._bridge_link: tuple[int, int] | None = None  # (index, MTU), see _bridge_index_mtu
        self._guard_checked_at = float("-inf")  # monotonic time of the last good check
        self._guard_lock = threading.Lock()
        self._load_ips()

    def _host_netlink(self) -> AbstractContextManager[Any]:
        """The host's pyroute2 IPRoute (a _KeptSocket)."""
        return self._netlink.use()

    def _host_rtnl(self) -> AbstractContextManager[Any]:
        """The host's socket for batched requests, rtnl.py (a _KeptSocket)."""
        return self._rtnl.use()

    def _bridge_index_mtu(self) -> tuple[int, int]:
        """The bridge's index and MTU, looked up once: every pod's veth needs
        them. Forgotten when a veth could not be made, in case the bridge
        was made again (a new index)."""
        if self._bridge_link is None:
            from pinnace.pyroute import NetlinkError

            with self._host_netlink() as ipr:
                try:
                    link = ipr.link("get", ifname=self.bridge)[0]
                except NetlinkError as e:
                    raise NetworkError(f"bridge {self.bridge} is missing (ensure_host first)") from e
            self._bridge_link = (int(link["index"]), int(link.get_attr("IFLA_MTU") or 1500))
        return self._bridge_link

    # names ------------------------------------------------------------
    @staticmethod
    def host_veth_name(uid: str) -> str:
        return "pn" + hashlib.sha256(uid.encode()).hexdigest()[:11]

    @staticmethod
    def netns_path(uid: str) -> Path:
        """/run/netns/pinnace-<uid> (the whole uid: two pods must never share a name)."""
        name = uid if re.fullmatch(r"[A-Za-z0-9_-]{1,200}", uid) else hashlib.sha256(uid.encode()).hexdigest()
        return NETNS_DIR / f"pinnace-{name}"

    def _bridge_mac(self) -> str:
        h = hashlib.sha256(f"{self.node_name}/{self.bridge}".encode()).digest()
        return ":".join(f"{b:02x}" for b in (0x02, *h[:5]))  # locally administered, unicast

    # guard ------------------------------------------------------------
    def ensure_guard(self) -> None:
        """The guard device, up, with routes for the cluster and service ranges.

        A dummy device where the kernel has one; else an ifb device (it drops
        every packet that was not redirected to it by tc, and has no ARP);
        else a bridge without ports."""
        from pinnace.pyroute import NetlinkError
        with self._lock:
            if self._guard_fd is None:
                fd = open_lock("network.lock")
                fcntl.flock(fd, fcntl.LOCK_SH)  # waits while someone removes the guard
                self._guard_fd = fd
        with _iproute() as ipr:
            idx = _lookup(ipr, self.guard)
            for kind in GUARD_KINDS:
                if idx is not None:
                    break
                try:
                    ipr.link("add", ifname=self.guard, kind=kind)
                except NetlinkError as e:
                    if _netlink_code(e) not in (errno.EOPNOTSUPP, errno.EEXIST, errno.EINVAL):
                        raise
                    log.debug("guard %s as %s: %s", self.guard, kind, e)
                idx = _lookup(ipr, self.guard)
            if idx is None:
                raise NetworkError(f"cannot create the guard device {self.guard} "
                                   f"(none of {', '.join(GUARD_KINDS)} is supported)")
            found = _kind(ipr.get_links(idx)[0])
            if found not in GUARD_KINDS:
                raise NetworkError(f"guard device {self.guard} exists and is a {found} device")
            ipr.link("set", index=idx, state="up")
            for net in (self.cluster, self.service):
                ipr.route("replace", dst=str(net), oif=idx, table=_MAIN_TABLE)
        log.info("guard %s (%s) routes %s and %s locally", self.guard, found, self.cluster, self.service)

    def guard_routes_present(self) -> bool:
        """True if the guard device is up and routes both ranges (and the
        kernel does not ignore those routes for want of a carrier)."""
        from .rtnl import RtnlError

        try:
            with self._host_rtnl() as nl:
                try:
                    idx, flags = nl.link(self.guard)
                except RtnlError as e:
                    if e.errno == errno.ENODEV:
                        return False
                    raise
                if not flags & _IFF_UP:
                    return False
                if not flags & _IFF_LOWER_UP and any(
                        _read(_sysctl_path(f"net.ipv4.conf.{d}.ignore_routes_with_linkdown")) not in ("0", None)
                        for d in ("all", self.guard)):
                    return False
                have = {(dst, plen) for dst, plen, oif, table in nl.routes_v4()
                        if oif == idx and table == _MAIN_TABLE}
        except Exception as e:
            log.warning("reading the guard routes failed: %s", e)
            return False
        return all((str(n.network_address), n.prefixlen) in have for n in (self.cluster, self.service))

    def _require_guard(self, fresh: bool = False) -> None:
        """Refuse to go on unless the guard routes are in place: checked at
        most GUARD_RECHECK seconds ago, or now when ``fresh``. A burst of
        pod starts then reads the routing table once, not once per pod."""
        if not fresh and time.monotonic() - self._guard_checked_at < GUARD_RECHECK:
            return
        # One check at a time: the pods of a burst that find the last check
        # stale wait for the first one's, rather than each reading the table.
        with self._guard_lock:
            now = time.monotonic()
            if not fresh and now - self._guard_checked_at < GUARD_RECHECK:
                return
            if not self.guard_routes_present():
                self._guard_checked_at = float("-inf")
                raise NetworkError(f"refusing to assign cluster addresses: {self.cluster} and "
                                   f"{self.service} are not routed to the guard device {self.guard}")
            self._guard_checked_at = now

    # host -------------------------------------------------------------
    def ensure_host(self, pod_cidr: str) -> None:
        """Guard, bridge with the podCIDR's first address, forwarding and
        masquerade for traffic leaving the cluster range. Idempotent."""
        net = ipaddress.IPv4Network(pod_cidr, strict=False)
        if not net.subnet_of(self.cluster) or net.num_addresses < 4:
            raise NetworkError(f"pod CIDR {net} must be a /30 or larger inside the cluster CIDR {self.cluster}")
        self.ensure_guard()
        self._require_guard(fresh=True)
        gateway = str(net.network_address + 1)
        from pinnace.pyroute import NetlinkError
        with _iproute() as ipr:
            idx = _lookup(ipr, self.bridge)
            if idx is None:
                try:
                    # a fixed MAC: the gateway's address must not change as ports come and go
                    ipr.link("add", ifname=self.bridge, kind="bridge", mtu=_default_mtu(ipr),
                             address=self._bridge_mac())
                except NetlinkError as e:
                    if _netlink_code(e) != errno.EEXIST:
                        raise
                idx = _lookup(ipr, self.bridge)
            if idx is None or _kind(ipr.get_links(idx)[0]) != "bridge":
                raise NetworkError(f"{self.bridge} exists and is not a bridge")
            for addr, plen in _v4_addrs(ipr, idx):
                if (addr, plen) != (gateway, net.prefixlen):
                    log.info("removing stale address %s/%d from %s", addr, plen, self.bridge)
                    ipr.addr("del", index=idx, address=addr, prefixlen=plen)
            if (gateway, net.prefixlen) not in _v4_addrs(ipr, idx):
                ipr.addr("add", index=idx, address=gateway, prefixlen=net.prefixlen)
            ipr.link("set", index=idx, state="up")
        self._bridge_link = None
        self._enable_forwarding()
        self._ensure_masquerade(net)
        with self._lock:
            self.pod_cidr = net
            if self._ipam is None:
                self._ipam = NodeIPAM(str(net))
            else:
                self._ipam.set_cidr(str(net))
            for uid, ips in self._owned.items():
                for ip in ips:
                    if ipaddress.IPv4Address(ip) in net and not self._ipam.reserve(uid, ip):
                        log.warning("address %s is recorded for two pods", ip)
            last = _read(self._ips_dir / "last_reserved")
            if last:
                self._ipam.resume_after(last)
        log.info("node %s: pods on %s (%s), gateway %s", self.node_name, self.bridge, net, gateway)

    @staticmethod
    def _enable_forwarding() -> None:
        path = _sysctl_path("net.ipv4.ip_forward")
        value = _read(path)
        if value != "1":
            try:  # remembered for the last cleanup_all on this host
                fd = os.open(RUN_DIR / "ip_forward.orig", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
                with os.fdopen(fd, "w") as f:
                    f.write((value or "0") + "\n")
            except FileExistsError:
                pass
            path.write_text("1\n")

    def _ensure_masquerade(self, net: ipaddress.IPv4Network) -> None:
        t, c = NFT_TABLE, self._chain
        script = (f"add table ip {t}\n"
                  f"add chain ip {t} {c} {{ type nat hook postrouting priority srcnat; policy accept; }}\n"
                  f"flush chain ip {t} {c}\n"
                  f"add rule ip {t} {c} ip saddr {net} ip daddr != {self.cluster} masquerade\n")
        with _host_lock("nft.lock"):
            proc = _nft(script)
        if proc.returncode != 0:
            raise NetworkError(f"nft: {proc.stderr.strip()}")

    def _remove_masquerade(self) -> None:
        """Our chain; the table too when no other chain is left in it."""
        with _host_lock("nft.lock"):
            proc = _nft("", "list", "table", "ip", NFT_TABLE)
            if proc.returncode != 0:
                return  # no table
            chains = set(re.findall(r"^\s*chain (\S+) \{", proc.stdout, re.M))
            ours = chains & {self._chain, *self._host_port_chains}
            if not ours:
                return
            script = (f"delete table ip {NFT_TABLE}\n" if chains == ours else
                      "".join(f"delete chain ip {NFT_TABLE} {c}\n" for c in sorted(ours)))
            proc = _nft(script)
        if proc.returncode != 0:
            raise NetworkError(f"nft: {proc.stderr.strip()}")

    # host ports ---------------------------------------------------------
    def set_host_ports(self, uid: str, ip: str, ports: list[tuple[str, int, int]]) -> None:
        """A pod's hostPorts, (protocol, host port, container port) each, to
        its address, as the portmap CNI plugin maps them: packets arriving
        for any of this host's addresses and the host's own connections to
        them are sent on to the pod. [] removes the pod's."""
        path = self.state_dir / "hostports.json"
        with self._lock, _host_lock("nft.lock"):
            try:
                table = json.loads(_read(path) or "{}")
            except ValueError:
                table = {}
            if ports:
                table[uid] = {"ip": ip, "ports": [list(p) for p in ports]}
            elif uid in table:
                del table[uid]
            else:
                return
            self.state_dir.mkdir(parents=True, exist_ok=True)
            _write_atomic(path, json.dumps(table))
            t, chains = NFT_TABLE, self._host_port_chains
            script = f"add table ip {t}\n"
            for chain, hook in zip(chains, ("prerouting", "output")):
                # -100 is dstnat; older nft knows the name only for prerouting.
                script += (f"add chain ip {t} {chain} {{ type nat hook {hook} priority -100; "
                           "policy accept; }\n" f"flush chain ip {t} {chain}\n")
                for entry in table.values():
                    for proto, host_port, port in entry["ports"]:
                        script += (f"add rule ip {t} {chain} fib daddr type local "
                                   f"{proto.lower()} dport {int(host_port)} "
                                   f"dnat to {entry['ip']}:{int(port)}\n")
            proc = _nft(script)
        if proc.returncode != 0:
            raise NetworkError(f"hostPort: nft: {proc.stderr.strip()}")

    # addresses ----------------------------------------------------------
    def _load_ips(self) -> None:
        try:
            names = os.listdir(self._ips_dir)
        except FileNotFoundError:
            return
        for name in names:
            try:
                ipaddress.IPv4Address(name)
            except ValueError:
                continue
            owner = _read(self._ips_dir / name)
            if not owner:  # created, never written: setup died before it began
                (self._ips_dir / name).unlink(missing_ok=True)
                continue
            self._owned.setdefault(owner, set()).add(name)

    def _allocate(self, uid: str) -> str:
        assert self._ipam is not None and self.pod_cidr is not None
        with self._lock:
            for ip in sorted(self._owned.get(uid, ())):
                if ipaddress.IPv4Address(ip) in self.pod_cidr and _read(self._ips_dir / ip) == uid:
                    self._ipam.reserve(uid, ip)
                    return ip
            self._release(uid)
            self._ips_dir.mkdir(parents=True, exist_ok=True)
            while True:
                try:
                    ip = self._ipam.allocate(uid)
                except PoolExhausted as e:
                    raise NetworkError(f"node {self.node_name}: {e}") from e
                try:
                    fd = os.open(self._ips_dir / ip, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
                except FileExistsError:
                    holder = _read(self._ips_dir / ip)
                    self._ipam.release(uid)
                    if holder == uid:
                        self._ipam.reserve(uid, ip)
                        break
                    self._ipam.reserve(holder or "?", ip)  # someone else's: skip it
                    continue
                with os.fdopen(fd, "w") as f:
                    f.write(uid + "\n")
                break
            self._owned.setdefault(uid, set()).add(ip)
            # A hint (allocation goes on after it); ips/<ip> are what count.
            _write_hint(self._ips_dir / "last_reserved", ip)
            return ip

    def _release(self, uid: str) -> None:
        with self._lock:
            for ip in self._owned.pop(uid, set()):
                path = self._ips_dir / ip
                if _read(path) == uid:
                    path.unlink(missing_ok=True)
            if self._ipam is not None:
                self._ipam.release(uid)

    # pods ---------------------------------------------------------------
    def _uid_lock(self, uid: str) -> threading.Lock:
        with self._lock:
            return self._uid_locks.setdefault(uid, threading.Lock())

    def _record_path(self, uid: str) -> Path:
        return self._pods_dir / f"{hashlib.sha256(uid.encode()).hexdigest()[:32]}.json"

    def _load_record(self, uid: str) -> PodNet | None:
        try:
            data = json.loads(self._record_path(uid).read_text())
            return PodNet(**data["net"])
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def setup_pod(self, uid: str, namespace: str, name: str) -> PodNet:
        """The pod's namespace, veth and address; the same PodNet again if
        it exists and is intact (else it is rebuilt, keeping the address)."""
        if not uid:
            raise ValueError("pod uid is empty")
        self._require_guard()
        if self._ipam is None or self.pod_cidr is None:
            raise NetworkError("the node's pod network is not set up (ensure_host first)")
        from .rtnl import RtnlError

        with self._uid_lock(uid):
            existing = self._load_record(uid)
            if existing is not None and self._intact(existing, uid):
                return existing
            if existing is not None or os.path.lexists(self.netns_path(uid)):
                self._remove_links(uid, existing)
            ip = self._allocate(uid)
            try:
                try:
                    pod = self._build(uid, ip)
                except RtnlError as e:
                    if e.errno != errno.EEXIST:
                        raise
                    # A veth left by a setup that never finished (the agent
                    # stopped midway, before the record was written).
                    self._remove_links(uid, None)
                    pod = self._build(uid, ip)
                self._pods_dir.mkdir(parents=True, exist_ok=True)
                # Not fsynced: what a power loss takes (the namespace and links
                # too, being in /run) is set up again; the address stays
                # held by ips/<ip> meanwhile.
                _write_atomic(self._record_path(uid), json.dumps(
                    {"uid": uid, "namespace": namespace, "name": name, "net": asdict(pod)}),
                    durable=False)
            except BaseException as e:
                try:
                    self._remove_links(uid, None)
                    self._release(uid)
                    self._record_path(uid).unlink(missing_ok=True)
                except Exception as cleanup:
                    log.warning("cleaning up after a failed setup of pod %s/%s: %s", namespace, name, cleanup)
                if isinstance(e, Exception) and not isinstance(e, NetworkError):
                    raise NetworkError(f"pod {namespace}/{name} network setup failed: {e}") from e
                raise
            log.info("pod %s/%s: %s on %s in %s", namespace, name, ip, pod.host_veth, pod.netns)
            return pod

    def _build(self, uid: str, ip: str) -> PodNet:
        """The namespace, the veth and the pod's end of it configured, in
        three round trips (rtnl.py): the host's end (created up, a bridge
        port in hairpin mode, its peer inside the pod), the index of the
        pod's end, then loopback and that end up, address, default route."""
        assert self.pod_cidr is not None
        from . import rtnl

        gateway = str(self.pod_cidr.network_address + 1)
        plen = self.pod_cidr.prefixlen
        ns_path, veth = self.netns_path(uid), self.host_veth_name(uid)
        # The pod's socket is made inside the new namespace by the thread that made it.
        sock = namespaces.pin({"net": ns_path}, inside=rtnl.socket_in_this_namespace)
        assert sock is not None
        with rtnl.Rtnl(sock) as ns:
            fd = os.open(ns_path, os.O_RDONLY | os.O_CLOEXEC)
            try:
                self._add_host_end(veth, fd)
            finally:
                os.close(fd)
            eth = ns.index(POD_IFNAME)
            ns.run(rtnl.set_up(LOOPBACK_INDEX), rtnl.set_up(eth), rtnl.add_address(eth, ip, plen),
                   rtnl.add_default_route(gateway, eth))
        return PodNet(netns=str(ns_path), ip=ip, gateway=gateway, prefixlen=plen, host_veth=veth)

    def _add_host_end(self, veth: str, netns_fd: int) -> None:
        """The veth, its host end a hairpin port of the bridge. A bridge made
        again since it was looked up has a new index: looked up anew once."""
        from . import rtnl

        for attempt in (1, 2):
            bridge = self._bridge_index_mtu()
            try:
                with self._host_rtnl() as host:
                    host.run(rtnl.add_veth(veth, mtu=bridge[1], master=bridge[0],
                                           peer=POD_IFNAME, peer_netns_fd=netns_fd),
                             rtnl.set_hairpin(veth))
                return
            except rtnl.RtnlError as e:
                self._bridge_link = None
                # EINVAL, ENODEV: no link of that index is a bridge any more.
                if e.errno not in (errno.EINVAL, errno.ENODEV) or attempt == 2 \
                        or self._bridge_index_mtu() == bridge:
                    raise

    def _intact(self, pod: PodNet, uid: str) -> bool:
        """Everything setup_pod made is still there."""
        path = Path(pod.netns)
        if not is_netns(path) or _read(self._ips_dir / pod.ip) != uid:
            return False
        if self.pod_cidr is None or ipaddress.IPv4Address(pod.ip) not in self.pod_cidr \
                or pod.prefixlen != self.pod_cidr.prefixlen:
            return False
        try:
            with self._host_netlink() as ipr:
                br, idx = _lookup(ipr, self.bridge), _lookup(ipr, pod.host_veth)
                if br is None or idx is None:
                    return False
                link = ipr.get_links(idx)[0]
                if link.get_attr("IFLA_MASTER") != br or not link["flags"] & _IFF_UP:
                    return False
            with _iproute(path) as ns:
                eth, lo = _lookup(ns, POD_IFNAME), _lookup(ns, "lo")
                if eth is None or lo is None:
                    return False
                if not all(ns.get_links(i)[0]["flags"] & _IFF_UP for i in (eth, lo)):
                    return False
                if (pod.ip, pod.prefixlen) not in _v4_addrs(ns, eth):
                    return False
                return any(r["dst_len"] == 0 and r.get_attr("RTA_GATEWAY") == pod.gateway
                           for r in _v4_routes(ns))
        except Exception as e:
            log.debug("checking pod network %s: %s", pod.netns, e)
            return False

    def _remove_links(self, uid: str, pod: PodNet | None) -> None:
        """Delete the pod's veth and namespace (not its address). By name,
        one request each on the batch socket: a pyroute2 request per pod
        made and closed an event loop of its own, and kept a trace of each."""
        from . import rtnl

        with self._host_rtnl() as host:
            for name in {self.host_veth_name(uid), pod.host_veth if pod else ""} - {""}:
                try:
                    host.run(rtnl.delete_link(name))
                except rtnl.RtnlError as e:
                    if e.errno != errno.ENODEV:
                        raise
        for path in {self.netns_path(uid), Path(pod.netns) if pod else None} - {None}:
            assert path is not None
            remove_netns(path)

    def teardown_pod(self, uid: str) -> None:
        """Delete the veth, the namespace and the address; no error if gone."""
        self.set_host_ports(uid, "", [])
        with self._uid_lock(uid):
            pod = self._load_record(uid)
            self._remove_links(uid, pod)
            self._release(uid)
            self._record_path(uid).unlink(missing_ok=True)
        with self._lock:
            self._uid_locks.pop(uid, None)
        log.info("pod %s: network removed", uid)

    def _records(self) -> Iterable[dict[str, Any]]:
        try:
            names = os.listdir(self._pods_dir)
        except FileNotFoundError:
            return
        for name in names:
            if name.endswith(".json") and not name.startswith("."):
                try:
                    yield json.loads((self._pods_dir / name).read_text())
                except (OSError, ValueError):
                    continue

    def pods(self) -> dict[str, PodNet]:
        """Every pod this node holds network state for, by uid, read from
        state_dir: finished setups (whether or not their namespace is still
        intact) and addresses whose setup never finished. Tearing down the
        ones no longer wanted frees their addresses."""
        out: dict[str, PodNet] = {}
        for rec in self._records():
            try:
                out[rec["uid"]] = PodNet(**rec["net"])
            except (KeyError, TypeError):
                continue
        with self._lock:
            net = self.pod_cidr
            for uid, ips in self._owned.items():
                if uid in out or not ips:
                    continue
                ip = min(ips)
                inside = net is not None and ipaddress.IPv4Address(ip) in net
                out[uid] = PodNet(netns=str(self.netns_path(uid)), ip=ip,
                                  gateway=str(net.network_address + 1) if net is not None and inside else "",
                                  prefixlen=net.prefixlen if net is not None and inside else 32,
                                  host_veth=self.host_veth_name(uid))
        return out

    def teardown_all_pods(self) -> None:
        """Every pod's namespace, links and address; the node's bridge and
        rules stay."""
        with self._lock:
            self._load_ips()  # also what another PodNetwork on this state_dir allocated
            uids = set(self._owned)
        uids.update(r["uid"] for r in self._records() if "uid" in r)
        for uid in uids:
            self.teardown_pod(uid)

    def cleanup_all(self) -> None:
        """Tear down every pod, the bridge and our masquerade chain; then, if
        no other pod network on this host holds the guard and no device has a
        cluster address, the guard device, restoring net.ipv4.ip_forward."""
        self.teardown_all_pods()
        with _iproute() as ipr:
            br = _lookup(ipr, self.bridge)
            if br is not None:
                for link in ipr.get_links():
                    if link.get_attr("IFLA_MASTER") == br:
                        ipr.link("del", index=link["index"])  # orphan ports
                ipr.link("del", index=br)
        self._remove_masquerade()
        with self._lock:
            self._ipam = None
            self.pod_cidr = None
        kept = self._remove_guard()
        log.info("node %s: pod network removed%s", self.node_name, f" ({kept})" if kept else "")

    def _remove_guard(self) -> str:
        """Delete the guard if nobody else relies on it; why not, if not."""
        from pinnace.pyroute import NetlinkError
        with self._lock:
            fd, self._guard_fd = self._guard_fd, None
        if fd is None:
            fd = open_lock("network.lock")
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return "guard kept: another pod network on this host holds it"
            with _iproute() as ipr:
                guard = _lookup(ipr, self.guard)
                users = [link.get_attr("IFLA_IFNAME") for link in ipr.get_links()
                         if link["index"] != guard and any(
                             ipaddress.IPv4Address(a) in self.cluster or ipaddress.IPv4Address(a) in self.service
                             for a, _ in _v4_addrs(ipr, link["index"]))]
                if users:
                    return f"guard kept: {', '.join(users)} hold cluster addresses"
                if guard is not None:
                    try:
                        ipr.link("del", index=guard)
                    except NetlinkError as e:
                        if _netlink_code(e) != errno.ENODEV:
                            raise
            orig = RUN_DIR / "ip_forward.orig"
            value = _read(orig)
            if value is not None:
                _sysctl_path("net.ipv4.ip_forward").write_text(value + "\n")
                orig.unlink()
            return ""
        finally:
            os.close(fd)

    def close(self) -> None:
        """Let go of the guard without tearing anything down (agent shutdown)."""
        with self._lock:
            fd, self._guard_fd = self._guard_fd, None
        if fd is not None:
            os.close(fd)
        self._netlink.close()
        self._rtnl.close()


def host_network_ns() -> str:
    """The agent's own network namespace, for hostNetwork pods: /proc/1/ns/net
    when it is init's, else the agent's /proc/<pid>/ns/net."""
    mine = os.stat("/proc/self/ns/net")
    try:
        init = os.stat("/proc/1/ns/net")
        if (init.st_dev, init.st_ino) == (mine.st_dev, mine.st_ino):
            return "/proc/1/ns/net"
    except OSError:
        pass
    return f"/proc/{os.getpid()}/ns/net"


# --- /etc/hosts and /etc/resolv.conf, as the kubelet writes them ----------

def hosts_content(pod_ip: str, hostname: str, namespace: str, subdomain: str = "",
                  host_aliases: Iterable[dict[str, Any]] = (), host_network: bool = False, *,
                  cluster_domain: str = "cluster.local", host_hosts: Path = Path("/etc/hosts")) -> str:
    if host_network:
        out = "# Kubernetes-managed hosts file (host network).\n" + host_hosts.read_text()
    else:
        out = ("# Kubernetes-managed hosts file.\n"
               "127.0.0.1\tlocalhost\n"
               "::1\tlocalhost ip6-localhost ip6-loopback\n"
               "fe00::0\tip6-localnet\n"
               "fe00::0\tip6-mcastprefix\n"
               "fe00::1\tip6-allnodes\n"
               "fe00::2\tip6-allrouters\n")
        for ip in [p for p in pod_ip.split(",") if p.strip()]:
            if subdomain and cluster_domain:
                out += f"{ip.strip()}\t{hostname}.{subdomain}.{namespace}.svc.{cluster_domain}\t{hostname}\n"
            else:
                out += f"{ip.strip()}\t{hostname}\n"
    aliases = list(host_aliases or ())
    if aliases:
        out += "\n# Entries added by HostAliases.\n"
        for alias in aliases:
            out += f"{alias.get('ip', '')}\t" + "\t".join(alias.get("hostnames") or ()) + "\n"
    return out


def write_hosts(path: Path, pod_ip: str, hostname: str, namespace: str, subdomain: str = "",
                host_aliases: Iterable[dict[str, Any]] = (), host_network: bool = False, *,
                cluster_domain: str = "cluster.local", host_hosts: Path = Path("/etc/hosts")) -> None:
    """The pod's /etc/hosts. pod_ip may list several addresses, comma-separated
    (one line each, as for dual-stack podIPs). Written in place, mode 0644:
    the file may already be bind-mounted into running containers."""
    content = hosts_content(pod_ip, hostname, namespace, subdomain, host_aliases, host_network,
                            cluster_domain=cluster_domain, host_hosts=host_hosts)
    _write_in_place(Path(path), content)


def _write_in_place(path: Path, content: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
    with os.fdopen(fd, "w") as f:
        f.write(content)
    os.chmod(path, 0o644)


MAX_DNS_NAMESERVERS = 3
MAX_DNS_SEARCH_PATHS = 32
MAX_DNS_SEARCH_LIST_CHARS = 2048
_MAX_DOMAIN_LEN = 253


def parse_resolv_conf(text: str) -> tuple[list[str], list[str], list[str]]:
    """nameservers (they accumulate), searches and options (the last line of
    each wins); search domains lose a trailing dot."""
    servers: list[str] = []
    searches: list[str] = []
    options: list[str] = []
    for line in text.split("\n"):
        fields = line.strip().split()
        if not fields or fields[0].startswith("#"):
            continue
        if fields[0] == "nameserver" and len(fields) >= 2:
            servers.append(fields[1])
        elif fields[0] == "search":
            searches = [s.removesuffix(".") for s in fields[1:]]
        elif fields[0] == "options":
            options = fields[1:]
    return servers, searches, options


def _unique(items: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(items))


def _merge_options(base: list[str], extra: Iterable[dict[str, Any]]) -> list[str]:
    opts: dict[str, str] = {}
    for op in base:
        name, _, value = op.partition(":")
        opts[name] = value
    for item in extra:
        opts[str(item.get("name", ""))] = "" if item.get("value") is None else str(item["value"])
    return [f"{k}:{v}" if v else k for k, v in opts.items()]


def _fit_searches(searches: list[str]) -> list[str]:
    searches = [s for s in searches[:MAX_DNS_SEARCH_PATHS] if len(s) <= _MAX_DOMAIN_LEN]
    while searches and len(" ".join(searches)) > MAX_DNS_SEARCH_LIST_CHARS:
        searches.pop()
    return searches


def resolv_conf_content(*, dns_policy: str, cluster_dns: list[str], cluster_domain: str, namespace: str,
                        dns_config: dict[str, Any] | None, host_resolv: Path | None = Path("/etc/resolv.conf"),
                        host_network: bool = False) -> str:
    policy = dns_policy or "ClusterFirst"
    servers: list[str]
    searches: list[str]
    options: list[str]
    if policy == "ClusterFirst" and host_network:
        policy = "Default"
    if host_resolv is None:
        servers, searches, options = [], [], []
    else:
        try:
            servers, searches, options = parse_resolv_conf(Path(host_resolv).read_text())
        except FileNotFoundError:
            servers, searches, options = [], [], []
    if policy == "None":
        servers, searches, options = [], [], []
    elif policy in ("ClusterFirst", "ClusterFirstWithHostNet") and cluster_dns:
        servers = list(cluster_dns)
        if cluster_domain:
            searches = _unique([f"{namespace}.svc.{cluster_domain}", f"svc.{cluster_domain}",
                                cluster_domain, *searches])
        options = ["ndots:5"]
    elif host_resolv is None:  # Default (or ClusterFirst without cluster DNS), no host file
        servers, searches = ["127.0.0.1"], ["."]
    if dns_config:
        servers = _unique([*servers, *(dns_config.get("nameservers") or ())])
        searches = _unique([*searches, *(dns_config.get("searches") or ())])
        options = _merge_options(options, dns_config.get("options") or ())
    servers = servers[:MAX_DNS_NAMESERVERS]
    searches = _fit_searches(searches)
    out = ""
    if searches:
        out += "search " + " ".join(searches) + "\n"
    out += "".join(f"nameserver {s}\n" for s in servers)
    if options:
        out += "options " + " ".join(options) + "\n"
    return out


def write_resolv_conf(path: Path, *, dns_policy: str, cluster_dns: list[str], cluster_domain: str,
                      namespace: str, dns_config: dict[str, Any] | None,
                      host_resolv: Path | None = Path("/etc/resolv.conf"), host_network: bool = False) -> None:
    """The pod's /etc/resolv.conf, as the kubelet composes it and the CRI
    runtime writes it (search, nameserver, options lines).

    ClusterFirst: the cluster DNS servers only, the cluster search domains
    before the host's, ndots:5; with no cluster DNS (or on the host network)
    it falls back to Default: the host's file. None: only dnsConfig.
    dnsConfig appends servers and searches and overrides options by name.
    Limits as the kubelet: 3 nameservers, 32 search domains, 2048 characters.
    host_resolv=None is the kubelet's --resolv-conf="" (127.0.0.1, search ".").
    """
    _write_in_place(Path(path), resolv_conf_content(
        dns_policy=dns_policy, cluster_dns=cluster_dns, cluster_domain=cluster_domain, namespace=namespace,
        dns_config=dns_config, host_resolv=host_resolv, host_network=host_network))
