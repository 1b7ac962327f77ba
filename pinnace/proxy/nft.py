"""The proxy's nftables table: written whole once (atomically replacing
whatever a previous run left), then changed service by service.

Each change is one transaction (through libnftables, with the ruleset
cached between changes: libnft.py; else the nft command), so a packet sees
the old rules or the new ones, never a half-written service. Within it, things are created
before anything refers to them and unreferenced before they are deleted:
sets, chains, rules, map elements, then old chains and sets go.

Connections keep working across a rewrite: their NAT bindings live in
conntrack, not in the rules.
"""

from __future__ import annotations

import logging
import subprocess
import threading
import time

from pinnace.hostbin import which

from .libnft import Context
from .rules import TABLE, Rules, skeleton
from .table import ServiceTable

log = logging.getLogger("pinnace.proxy.nft")

T = f"ip {TABLE}"


class NftError(Exception):
    pass


def nft_binary() -> str:
    found = which("nft")
    if found is None:
        raise NftError("the service proxy needs the nft command (package nftables)")
    return found


def unusable() -> str:
    """Why nftables cannot be used here ("" when it can): no nft command, or
    a kernel without nf_tables."""
    try:
        proc = subprocess.run([nft_binary(), "list", "tables"], capture_output=True, text=True,
                              timeout=30)
    except (NftError, OSError) as e:
        return str(e)
    return proc.stderr.strip() or f"nft exited with {proc.returncode}" if proc.returncode else ""


_context: Context | None = None
_context_lock = threading.Lock()
_no_library = False  # True: libnftables is not loadable, or not wanted (use_library(False))


def use_library(wanted: bool) -> None:
    """Run the nft command instead of libnftables (False), e.g. to compare the two."""
    global _no_library
    _no_library = not wanted


def _library_context() -> Context | None:
    """The process's libnftables context, opened at first use (None: the
    library cannot be loaded here, so the nft command is run instead)."""
    global _context, _no_library
    with _context_lock:
        if _context is None and not _no_library:
            _context = Context.open()
            _no_library = _context is None
            if _no_library:
                log.info("libnftables cannot be loaded: running the nft command for each change")
        return _context


def run(script: str) -> None:
    """``script`` as one transaction, as ``nft -f``."""
    ctx = _library_context()
    if ctx is not None:
        ok, _, err = ctx.run(script)
        if not ok:
            raise NftError(_first_lines(err) or "nft failed")
        return
    proc = subprocess.run([nft_binary(), "-f", "-"], input=script, capture_output=True,
                          text=True, timeout=120)
    if proc.returncode != 0:
        raise NftError(_first_lines(proc.stderr) or f"nft exited with {proc.returncode}")


def _first_lines(text: str) -> str:
    lines = text.strip().splitlines()
    more = f"\n... and {len(lines) - 6} more lines" if len(lines) > 6 else ""
    return "\n".join(lines[:6]) + more


def table_exists() -> bool:
    proc = subprocess.run([nft_binary(), "list", "table", "ip", TABLE], capture_output=True,
                          text=True, timeout=60)
    return proc.returncode == 0


def delete_table() -> bool:
    """Remove every rule the proxy made; False if there was none."""
    if not table_exists():
        return False
    run(f"delete table {T}\n")
    return True


def _chain_cmds(name: str, rules: list[str]) -> list[str]:
    return [f"flush chain {T} {name}", *(f"add rule {T} {name} {r}" for r in rules)]


def diff(old: Rules, new: Rules) -> list[str]:
    """Commands turning one service's ``old`` rules into ``new``."""
    cmds = [f"add set {T} {n} {decl}" for n, decl in new.sets.items() if old.sets.get(n) != decl]
    cmds += [f"add chain {T} {n}" for n in new.chains if n not in old.chains]
    for n, rules in new.chains.items():
        if n not in old.chains:
            cmds += [f"add rule {T} {n} {r}" for r in rules]
        elif old.chains[n] != rules:
            cmds += _chain_cmds(n, rules)
    for m in old.elements.keys() | new.elements.keys():
        before, after = old.elements.get(m, {}), new.elements.get(m, {})
        gone = [k for k, v in before.items() if after.get(k) != v]
        if gone:
            cmds.append(f"delete element {T} {m} {{ {', '.join(gone)} }}")
        added = [f"{k} : {v}" for k, v in after.items() if before.get(k) != v]
        if added:
            cmds.append(f"add element {T} {m} {{ {', '.join(added)} }}")
    dropped = [n for n in old.chains if n not in new.chains]
    cmds += [f"flush chain {T} {n}" for n in dropped]
    cmds += [f"delete chain {T} {n}" for n in dropped]
    cmds += [f"delete set {T} {n}" for n in old.sets if n not in new.sets]
    return cmds


class Table(ServiceTable[Rules]):
    """The table, one transaction per write."""

    def _write_all(self, desired: dict[str, Rules]) -> None:
        """The whole table in one transaction, replacing whatever is there
        (a previous run's rules included)."""
        cmds = [f"add table {T}", f"delete table {T}", *skeleton(self.cluster_cidr)]
        empty = Rules()
        for rules in desired.values():
            cmds += diff(empty, rules)
        started = time.monotonic()
        run("\n".join(cmds) + "\n")
        log.info("proxy rules for %d services written in %.0f ms", len(desired),
                 (time.monotonic() - started) * 1000)

    def _write_changes(self, changed: dict[str, Rules | None]) -> int:
        cmds: list[str] = []
        empty = Rules()
        for key, rules in changed.items():
            cmds += diff(self.applied.get(key, empty), rules or empty)
        if cmds:
            run("\n".join(cmds) + "\n")
        return len(cmds)
