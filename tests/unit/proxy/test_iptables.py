"""The iptables fallback: what a Service becomes as iptables-restore lines,
the lines that change one service without touching the others, and (as
root) the same written into a throwaway network namespace's tables."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap

import pytest

from pinnace.proxy.iptables import diff
from pinnace.proxy.iptrules import NODEPORT_REJECTS, NODEPORTS, REJECTS, SERVICES, service_rules
from tests.unit.proxy.test_rules import CIDR, slice_, svc


def _chain(rules, kind: str) -> list[str]:  # type: ignore[no-untyped-def]
    (name,) = [c for t, c in rules.chains if c.startswith(f"PINNACE-{kind}-")]
    return rules.chains["nat", name]


def test_a_cluster_ip_spreads_over_ready_endpoints_with_the_statistic_match():
    r = service_rules(svc(), [slice_(("10.244.0.5", "n1", True), ("10.244.1.7", "n2", True),
                                     ("10.244.0.9", "n1", False))], "n1", CIDR)
    rules = _chain(r, "SVC")
    assert rules[0] == "! -s 10.244.0.0/16 -m addrtype ! --src-type LOCAL -j PINNACE-MARK-MASQ"
    assert rules[1].startswith("-m statistic --mode random --probability 0.5000000000 -j PINNACE-SEP-")
    assert rules[2].startswith("-j PINNACE-SEP-") and len(rules) == 3
    dnats = sorted(line for (t, c), lines in r.chains.items() for line in lines if "DNAT" in line)
    assert dnats == ["-p tcp -j DNAT --to-destination 10.244.0.5:8080",
                     "-p tcp -j DNAT --to-destination 10.244.1.7:8080"]
    (entry,) = [e for e in r.entries if e[1] == SERVICES]
    assert entry[0] == "nat" and entry[2].startswith(
        '-d 10.96.0.20/32 -p tcp -m tcp --dport 80 -m comment --comment "default/web/tcp/http" '
        "-j PINNACE-SVC-")
    assert all(len(c) <= 28 for _, c in r.chains)  # iptables' limit on chain names


def test_without_endpoints_the_filter_table_rejects_the_address_and_the_node_port():
    r = service_rules(svc(type_="NodePort"), [slice_(("10.244.0.5", "n1", False))], "n1", CIDR)
    assert r.chains == {}
    assert {(t, c) for t, c, _ in r.entries} == {("filter", REJECTS), ("filter", NODEPORT_REJECTS)}
    assert all(rule.endswith("-j REJECT") for _, _, rule in r.entries)


def test_external_traffic_policy_local_without_a_local_endpoint_drops_outsiders():
    eps = [slice_(("10.244.1.7", "n2", True))]
    r = service_rules(svc(type_="NodePort", externalTrafficPolicy="Local"), eps, "n1", CIDR)
    ext = _chain(r, "EXT")
    # The node itself and its pods may still use the other node's endpoint.
    assert ext[1].startswith("-m addrtype --src-type LOCAL -j PINNACE-SVC-")
    assert ext[2].startswith("-s 10.244.0.0/16 -j PINNACE-SVC-") and len(ext) == 3
    drops = {(c, rule.split(" -m comment")[0]) for t, c, rule in r.entries if rule.endswith("DROP")}
    assert drops == {(NODEPORT_REJECTS, "-m addrtype --dst-type LOCAL -p tcp -m tcp --dport 30001")}
    assert any(c == NODEPORTS for _, c, _ in r.entries)


def test_session_affinity_pins_a_client_with_the_recent_match():
    r = service_rules(svc(sessionAffinity="ClientIP",
                          sessionAffinityConfig={"clientIP": {"timeoutSeconds": 60}}),
                      [slice_(("10.244.0.5", "n1", True))], "n1", CIDR)
    sep = _chain(r, "SEP")
    assert any("--set" in line and "-m recent" in line for line in sep)
    assert any("--rcheck --seconds 60 --reap" in line for line in _chain(r, "SVC"))


def test_a_changed_endpoint_rewrites_only_its_service_in_order():
    one = service_rules(svc(), [slice_(("10.244.0.5", "n1", True))], "n1", CIDR)
    two = service_rules(svc(), [slice_(("10.244.0.6", "n1", True))], "n1", CIDR)
    lines = diff(one, two)["nat"]
    # Declarations (which empty a chain) first, then deletions, additions,
    # and the old endpoint's chain removed last; the SERVICES entry stays.
    order = {":": 0, "-D": 1, "-A": 2, "-X": 3}
    phases = [order[":" if line.startswith(":") else line[:2]] for line in lines]
    assert phases == sorted(phases)
    assert not any(SERVICES in line for line in lines)
    (dropped,) = [line for line in lines if line.startswith("-X ")]
    assert f":{dropped[3:]} - [0:0]" in lines   # emptied before it goes
    assert diff(two, two) == {}


_SCRIPT = textwrap.dedent("""
    import json, subprocess, sys
    from pinnace.proxy import iptables, iptrules
    from tests.unit.proxy.test_rules import CIDR, slice_, svc
    t = iptables.Table(CIDR)
    web = iptrules.service_rules(svc(type_="NodePort"), [slice_(("10.244.0.5", "n1", True))], "n1", CIDR)
    t.replace_all({"default/web": web})
    first = subprocess.run(["iptables-save"], capture_output=True, text=True).stdout
    moved = iptrules.service_rules(svc(type_="NodePort"), [slice_(("10.244.0.6", "n1", True))], "n1", CIDR)
    t.update({"default/web": moved})
    second = subprocess.run(["iptables-save"], capture_output=True, text=True).stdout
    t.update({"default/web": None})
    third = subprocess.run(["iptables-save"], capture_output=True, text=True).stdout
    t.replace_all({"default/web": web})   # a restart: rewritten whole, nothing doubled
    fourth = subprocess.run(["iptables-save"], capture_output=True, text=True).stdout
    removed = iptables.delete_all()
    last = subprocess.run(["iptables-save"], capture_output=True, text=True).stdout
    last += subprocess.run(["nft", "list", "tables"], capture_output=True, text=True).stdout
    print(json.dumps([first, second, third, fourth, removed, last]))
""")


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("ip") or
                    not shutil.which("iptables-restore", path="/usr/sbin:/sbin:" + os.environ["PATH"]),
                    reason="needs root, iproute2 and iptables")
def test_the_rules_written_into_a_network_namespace_and_removed():
    import json

    name = f"pinnace-ipttest-{os.getpid()}"
    subprocess.run(["ip", "netns", "add", name], check=True, timeout=10)
    try:
        out = subprocess.run(["ip", "netns", "exec", name, sys.executable, "-c", _SCRIPT],
                             capture_output=True, text=True, timeout=60, cwd=os.getcwd())
        assert out.returncode == 0, out.stderr[-2000:]
        first, second, third, fourth, removed, last = json.loads(out.stdout)
    finally:
        subprocess.run(["ip", "netns", "del", name], timeout=10)
    assert "-A PREROUTING -j PINNACE-SERVICES" in first
    assert "--to-destination 10.244.0.5:8080" in first and "--dport 30001" in first
    assert "10.244.0.6:8080" in second and "10.244.0.5:8080" not in second
    assert "PINNACE-SVC-" not in third and "--dport 30001" not in third
    assert "-A PREROUTING -j PINNACE-SERVICES" in third  # the skeleton stays
    assert fourth.count("-A PREROUTING -j PINNACE-SERVICES") == 1
    assert fourth.count("--to-destination 10.244.0.5:8080") == 1
    assert removed and "PINNACE" not in last
    assert "table ip" not in last  # with the nf_tables backend: no empty tables left
