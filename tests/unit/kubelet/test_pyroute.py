"""pinnace.pyroute imports the three pyroute2 names the agent uses without
the package's __init__ (which imports all of pyroute2), and the package
still answers any other name as the whole package would."""

from __future__ import annotations

import subprocess
import sys

CODE = """
import sys
from pinnace.pyroute import Conntrack, IPRoute, NetlinkError
lean = sorted(m for m in sys.modules if m.startswith("pyroute2"))
assert "pyroute2.ndb.main" not in lean and "pyroute2.ipdb" not in lean, lean
with IPRoute() as ip:
    assert ip.link_lookup(ifname="lo")
    try:
        ip.link("get", ifname="pinnace-none0")
    except NetlinkError as e:
        assert e.code == 19  # ENODEV
    else:
        raise AssertionError("no such link, no error")
import pyroute2
from pyroute2 import IPDB, NetlinkError as Whole
assert Whole is NetlinkError and pyroute2.IPRoute is IPRoute and pyroute2.Conntrack is Conntrack
assert IPDB.__module__.startswith("pyroute2.ipdb")
print(len(lean), len([m for m in sys.modules if m.startswith("pyroute2")]))
"""


def test_pyroute2_lean_then_whole_on_demand() -> None:
    out = subprocess.run([sys.executable, "-c", CODE], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    lean, whole = map(int, out.stdout.split())
    assert lean < whole
