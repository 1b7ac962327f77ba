"""A second machine for the e2e tests: a node agent joined with the
server's token from a network namespace, and a client namespace outside
the cluster, both on a test bridge.

  host ── pn-test0 bridge 198.18.1.1/24 ─┬─ pinnace-node2  198.18.1.2 (eth0)
                                         └─ pinnace-outside 198.18.1.3 (a client, not a node)

198.18.0.0/15 is the benchmarking range: nothing outside this machine
answers it. The second agent runs with only its network namespace changed
(nsenter --net), so its mounts and cgroups are the host's, as a second
machine's would be its own. Before it gets any cluster address its agent
routes the pod and service ranges to a guard device, which is checked
before the first pod starts there. Everything is removed afterwards, pass
or fail, and checked gone.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.conftest import Server, _free_port, wait_for
from tests.e2e.conftest import pinnace

BRIDGE = "pn-test0"
NODE_NS, NODE_IP = "pinnace-node2", "198.18.1.2"
OUTSIDE_NS, OUTSIDE_IP = "pinnace-outside", "198.18.1.3"
HOST_IP = "198.18.1.1"
NODE2 = "node2"


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check)


def remove_topology() -> None:
    for ns in (NODE_NS, OUTSIDE_NS):
        _ip("netns", "del", ns, check=False)
    for link in (BRIDGE, "pn-n2", "pn-out"):
        _ip("link", "del", link, check=False)


def _host(ns: str, veth: str, ip: str) -> None:
    _ip("netns", "add", ns)
    _ip("link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns)
    _ip("link", "set", veth, "master", BRIDGE, "up")
    _ip("-n", ns, "addr", "add", f"{ip}/24", "dev", "eth0")
    _ip("-n", ns, "link", "set", "eth0", "up")
    _ip("-n", ns, "link", "set", "lo", "up")


def guard_in(ns: str) -> dict[str, str]:
    out = {}
    for cidr in ("10.244.0.0/16", "10.96.0.0/12"):
        routes = json.loads(_ip("-n", ns, "-j", "route", "show", cidr).stdout or "[]")
        out[cidr] = routes[0].get("dev", "") if routes else ""
    return out


def node_ip(server: Server, name: str | None = None) -> str:
    nodes = json.loads(server.kubectl("get", "nodes", "-o", "json").stdout)["items"]
    node = next(n for n in nodes if name is None or n["metadata"]["name"] == name)
    return next(a["address"] for a in node["status"]["addresses"] if a["type"] == "InternalIP")


def outside_get(url: str, data: str | None = None, timeout: float = 5) -> str:
    """GET (or POST form ``data``) from the client namespace outside the cluster."""
    out = subprocess.run(["ip", "netns", "exec", OUTSIDE_NS, "python3", "-c",
                          "import sys, urllib.request\n"
                          "data = sys.argv[2].encode() if len(sys.argv) > 2 else None\n"
                          "print(urllib.request.urlopen(sys.argv[1], data, timeout=float(sys.argv[3] "
                          "if len(sys.argv) > 3 else 5)).read().decode().strip())",
                          url, *([data, str(timeout)] if data is not None else [])],
                         capture_output=True, text=True, timeout=timeout + 15)
    assert out.returncode == 0, out.stderr[-500:]
    return out.stdout.strip()


@dataclass
class SecondNode:
    data: Path
    agent: subprocess.Popen[bytes] | None = None

    def stop(self) -> None:
        """The machine goes away: its agent and every container it ran."""
        if self.agent is not None and self.agent.poll() is None:
            os.killpg(self.agent.pid, signal.SIGTERM)
            try:
                self.agent.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.agent.pid, signal.SIGKILL)
                self.agent.wait()
        subprocess.run(["nsenter", f"--net=/run/netns/{NODE_NS}", sys.executable, "-m",
                        "pinnace.cli.main", "agent", "--reset", "--data-dir", str(self.data)],
                       capture_output=True, timeout=120)


@contextmanager
def second_node(server: Server, data: Path, images: list[Path],
                proxy_mode: str = "auto") -> Iterator[SecondNode]:
    for archive in images:
        pinnace("image", "import", "--data-dir", str(data), str(archive), timeout=600)
    remove_topology()
    node = SecondNode(data)
    log = data / "agent.log"
    try:
        _ip("link", "add", BRIDGE, "type", "bridge")
        _ip("addr", "add", f"{HOST_IP}/24", "dev", BRIDGE)
        _ip("link", "set", BRIDGE, "up")
        _host(NODE_NS, "pn-n2", NODE_IP)
        # The second machine reaches the first (and its API) through it.
        _ip("-n", NODE_NS, "route", "add", "default", "via", HOST_IP)
        _host(OUTSIDE_NS, "pn-out", OUTSIDE_IP)
        # The address the server's certificate names (the first node's).
        port = server.url.rsplit(":", 1)[1]
        with log.open("wb") as out:
            node.agent = subprocess.Popen(
                ["nsenter", f"--net=/run/netns/{NODE_NS}", sys.executable, "-m", "pinnace.cli.main",
                 "agent", "--server", f"https://{node_ip(server)}:{port}",
                 "--token-file", str(server.data_dir / "node-token"), "--data-dir", str(data),
                 "--node-name", NODE2, "--node-ip", NODE_IP, "--kubelet-port", str(_free_port()),
                 "--proxy-mode", proxy_mode],
                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)

        def ready() -> bool:
            assert node.agent is not None and node.agent.poll() is None, log.read_text()[-3000:]
            out = server.kubectl("get", "node", NODE2, "-o", "json", check=False)
            return out.returncode == 0 and any(
                c["type"] == "Ready" and c["status"] == "True"
                for c in json.loads(out.stdout)["status"].get("conditions", []))
        wait_for(ready, timeout=90, interval=0.5, what="node2 to join and be Ready")
        # Joining made its key; then the agent started itself again (same
        # PID) without the crypto library, which it no longer needs.
        maps = Path(f"/proc/{node.agent.pid}/maps").read_text()
        assert "pinnace.cli.main" in Path(f"/proc/{node.agent.pid}/cmdline").read_text()
        assert "cryptography" not in maps, "the joined agent kept the crypto library loaded"
        # The network safety rule, in the second machine too.
        assert all(guard_in(NODE_NS).values()), guard_in(NODE_NS)
        yield node
    finally:
        node.stop()
        server.kubectl("delete", "node", NODE2, "--wait=false", check=False)
        remove_topology()
        assert _ip("link", "show", BRIDGE, check=False).returncode != 0
        assert NODE_NS not in _ip("netns", "list").stdout
