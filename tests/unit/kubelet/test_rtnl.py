"""The route netlink messages a pod's links need, packed by hand in rtnl.py,
are byte for byte what pyroute2's message classes make of the same request
(the kernel's answers to them are tested on a real node: tests/e2e)."""

from __future__ import annotations

import socket
import struct
from typing import Any

import pytest

from pinnace.kubelet import rtnl
from pinnace.pyroute import ifaddrmsg, ifinfmsg, rtmsg


def _pyroute2(msg: Any, kind: int, flags: int) -> bytes:
    hdr = msg["header"]
    hdr["type"], hdr["sequence_number"], hdr["flags"] = kind, 7, rtnl.NLM_F_REQUEST | flags
    msg.encode()
    return bytes(msg.data)


def _ours(m: rtnl.Message) -> bytes:
    r = rtnl.Rtnl.__new__(rtnl.Rtnl)  # no socket: only the encoding
    r._seq = 6
    return r._encode(m, 0)


def _veth() -> Any:
    m = ifinfmsg()
    m["flags"] = m["change"] = rtnl.IFF_UP
    peer = {"attrs": [("IFLA_IFNAME", "eth0"), ("IFLA_NET_NS_FD", 17), ("IFLA_MTU", 1450)]}
    m["attrs"] = [("IFLA_IFNAME", "veth0a1b2c3d"), ("IFLA_MTU", 1450), ("IFLA_MASTER", 5),
                  ("IFLA_LINKINFO", {"attrs": [
                      ("IFLA_INFO_KIND", "veth"),
                      ("IFLA_INFO_DATA", {"attrs": [("VETH_INFO_PEER", peer)]})]})]
    return m


def _hairpin() -> Any:
    m = ifinfmsg()
    m["attrs"] = [("IFLA_IFNAME", "veth0a1b2c3d"), ("IFLA_LINKINFO", {"attrs": [
        ("IFLA_INFO_SLAVE_KIND", "bridge"),
        ("IFLA_INFO_SLAVE_DATA", {"attrs": [("IFLA_BRPORT_MODE", 1)]})]})]
    return m


def _up() -> Any:
    m = ifinfmsg()
    m["index"] = 42
    m["flags"] = m["change"] = rtnl.IFF_UP
    return m


def _named(name: str) -> Any:
    m = ifinfmsg()
    m["attrs"] = [("IFLA_IFNAME", name)]
    return m


def _address() -> Any:
    m = ifaddrmsg()
    m["family"], m["prefixlen"], m["index"] = socket.AF_INET, 24, 3
    m["attrs"] = [("IFA_LOCAL", "10.244.0.17"), ("IFA_ADDRESS", "10.244.0.17")]
    return m


def _route() -> Any:
    m = rtmsg()
    m["family"] = socket.AF_INET
    m["table"], m["proto"], m["scope"], m["type"] = 254, 3, 0, 1
    m["attrs"] = [("RTA_GATEWAY", "10.244.0.1"), ("RTA_OIF", 3)]
    return m


@pytest.mark.parametrize("ours, theirs, kind, flags", [
    (rtnl.add_veth("veth0a1b2c3d", mtu=1450, master=5, peer="eth0", peer_netns_fd=17), _veth(),
     rtnl.RTM_NEWLINK, rtnl.NLM_F_CREATE | rtnl.NLM_F_EXCL),
    (rtnl.set_hairpin("veth0a1b2c3d"), _hairpin(), rtnl.RTM_NEWLINK, 0),
    (rtnl.set_up(42), _up(), rtnl.RTM_NEWLINK, 0),
    (rtnl.delete_link("veth0a1b2c3d"), _named("veth0a1b2c3d"), rtnl.RTM_DELLINK, 0),
    (rtnl.add_address(3, "10.244.0.17", 24), _address(), rtnl.RTM_NEWADDR,
     rtnl.NLM_F_CREATE | rtnl.NLM_F_EXCL),
    (rtnl.add_default_route("10.244.0.1", 3), _route(), rtnl.RTM_NEWROUTE,
     rtnl.NLM_F_CREATE | rtnl.NLM_F_EXCL),
], ids=["veth", "hairpin", "up", "delete", "address", "route"])
def test_a_message_is_what_pyroute2_makes_of_it(ours: rtnl.Message, theirs: Any, kind: int,
                                                  flags: int) -> None:
    assert (ours.kind, ours.flags) == (kind, flags)
    assert _ours(ours) == _pyroute2(theirs, kind, flags)


def test_an_odd_length_name_is_padded_and_its_length_says_so() -> None:
    body = rtnl.delete_link("abcde").body
    # ifinfomsg (16), then IFLA_IFNAME: 4 + "abcde\0" = 10 bytes, padded to 12.
    assert len(body) == 16 + 12
    assert body[16:20] == struct.pack("=HH", 10, rtnl.IFLA_IFNAME)
