"""Kernel settings the proxy relies on, and putting them back.

- net.bridge.bridge-nf-call-iptables: pods on one bridge answer each other
  at layer 2; without this their replies to a service address would skip
  the un-NAT and reach the client from the pod's own address.
- net.ipv4.conf.all.route_localnet: lets NodePorts answer on 127.0.0.1 (the
  table drops packets for 127/8 that did not come from lo).
- net.ipv4.ip_forward: service traffic to other nodes' pods is routed.

What a setting was before the first change is kept in STATE/sysctl.orig.json
so `pinnace proxy --cleanup` can restore it.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

log = logging.getLogger("pinnace.proxy.sysctl")

WANTED = {"net.bridge.bridge-nf-call-iptables": "1",
          "net.ipv4.conf.all.route_localnet": "1",
          "net.ipv4.ip_forward": "1"}


def _path(name: str) -> Path:
    return Path("/proc/sys") / name.replace(".", "/")


def prepare(state_dir: Path) -> None:
    saved_at = state_dir / "sysctl.orig.json"
    try:
        saved = json.loads(saved_at.read_text())
    except (OSError, ValueError):
        saved = {}
    for name, value in WANTED.items():
        path = _path(name)
        try:
            now = path.read_text().strip()
        except OSError:
            log.warning("%s is not available: service traffic between pods of one node "
                        "may not be translated back", name)
            continue
        if now != value:
            saved.setdefault(name, now)
            path.write_text(value + "\n")
    if saved:
        state_dir.mkdir(parents=True, exist_ok=True)
        saved_at.write_text(json.dumps(saved))


def restore(state_dir: Path) -> list[str]:
    saved_at = state_dir / "sysctl.orig.json"
    try:
        saved = json.loads(saved_at.read_text())
    except (OSError, ValueError):
        return []
    done = []
    for name, value in saved.items():
        try:
            _path(name).write_text(f"{value}\n")
            done.append(f"sysctl {name}={value}")
        except OSError as e:
            log.warning("restoring %s: %s", name, e)
    saved_at.unlink(missing_ok=True)
    return done
