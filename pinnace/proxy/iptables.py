"""The proxy's iptables rules (iptrules.py), written with iptables-restore:
the fallback where nftables is missing. The same Table interface as nft.py.

iptables has no table of our own to replace whole: the nat, filter and raw
tables are shared with whatever else runs on the node. So every write is
`iptables-restore --noflush`, touching only PINNACE-* chains and the jumps
into them; the whole-table write (the first sync, and after a failed
update) declares every PINNACE-* chain found or wanted, which flushes it,
and deletes those no longer wanted. Each write is one restore per call,
applied atomically per table.
"""

from __future__ import annotations

import logging
import subprocess
import time

from pinnace.hostbin import which

from .iptrules import HOOKS, PREFIX, SKELETON, IptRules
from .table import ServiceTable

log = logging.getLogger("pinnace.proxy.iptables")

TABLES = ("raw", "nat", "filter")


class IptablesError(Exception):
    pass


def _binary(name: str) -> str:
    found = which(name)
    if found is None:
        raise IptablesError(f"the service proxy needs {name} (package iptables)")
    return found


def available() -> bool:
    return which("iptables-restore") is not None


def _restore(text: str) -> None:
    proc = subprocess.run([_binary("iptables-restore"), "--noflush", "-w", "5"], input=text,
                          capture_output=True, text=True, timeout=120)
    if proc.returncode != 0:
        lines = proc.stderr.strip().splitlines()
        raise IptablesError("\n".join(lines[:6]) if lines else
                            f"iptables-restore exited with {proc.returncode}")


def _saved() -> dict[str, tuple[set[str], list[str]]]:
    """Per table: the PINNACE-* chains there are, and the rules (as
    iptables-save prints them) of the built-in chains that jump to one."""
    out: dict[str, tuple[set[str], list[str]]] = {}
    for table in TABLES:
        proc = subprocess.run([_binary("iptables-save"), "-t", table], capture_output=True,
                              text=True, timeout=60)
        chains: set[str] = set()
        hooks: list[str] = []
        for line in proc.stdout.splitlines():
            if line.startswith(":" + PREFIX):
                chains.add(line[1:].split()[0])
            elif line.startswith("-A ") and not line.startswith("-A " + PREFIX) and \
                    f"-j {PREFIX}" in line:
                hooks.append(line[3:])
        out[table] = (chains, hooks)
    return out


def _table_text(sections: dict[str, list[str]]) -> str:
    text = []
    for table in TABLES:
        lines = sections.get(table)
        if lines:
            text += [f"*{table}", *lines, "COMMIT"]
    return "\n".join(text) + "\n" if text else ""


def delete_all() -> list[str]:
    """Remove every chain and jump the proxy made; what was removed."""
    if not available():
        return []
    sections: dict[str, list[str]] = {}
    removed = []
    for table, (chains, hooks) in _saved().items():
        if not chains and not hooks:
            continue
        sections[table] = [*(f":{c} - [0:0]" for c in sorted(chains)),
                           *(f"-D {h}" for h in hooks), *(f"-X {c}" for c in sorted(chains))]
        removed.append(f"iptables {table}: {len(chains)} chains")
    if sections:
        _restore(_table_text(sections))
        _drop_empty_nft_tables([t for t in TABLES if t in sections])
    return removed


def _drop_empty_nft_tables(tables: list[str]) -> None:
    """With iptables' nf_tables backend, a table stays in the kernel once
    any command touched it. Drop those ours left empty (no rules, no chains
    but the built-in ones at ACCEPT), so a cleanup leaves nothing; a table
    someone else uses has rules and stays."""
    version = subprocess.run([_binary("iptables"), "-V"], capture_output=True, text=True)
    nft = which("nft")
    if "nf_tables" not in version.stdout or nft is None:
        return
    for table in tables:
        saved = subprocess.run([_binary("iptables-save"), "-t", table], capture_output=True,
                               text=True, timeout=60).stdout.splitlines()
        chains = [line for line in saved if line.startswith(":")]
        if any(line.startswith("-A ") for line in saved) or \
                any(" ACCEPT " not in line + " " for line in chains):
            continue
        subprocess.run([nft, "delete", "table", "ip", table], capture_output=True, timeout=60)


def diff(old: IptRules, new: IptRules) -> dict[str, list[str]]:
    """iptables-restore lines per table turning one service's ``old`` rules
    into ``new``: chains declared (which empties them) before anything,
    stale entries deleted, rules added, dropped chains deleted last, once
    nothing refers to them."""
    declare: dict[str, list[str]] = {}
    delete: dict[str, list[str]] = {}
    add: dict[str, list[str]] = {}
    drop: dict[str, list[str]] = {}
    for (table, chain), rules in new.chains.items():
        if old.chains.get((table, chain)) != rules:
            declare.setdefault(table, []).append(f":{chain} - [0:0]")
            add.setdefault(table, []).extend(f"-A {chain} {r}" for r in rules)
    for table, chain, rule in sorted(old.entries - new.entries):
        delete.setdefault(table, []).append(f"-D {chain} {rule}")
    for table, chain, rule in sorted(new.entries - old.entries):
        add.setdefault(table, []).append(f"-A {chain} {rule}")
    for table, chain in old.chains.keys() - new.chains.keys():
        declare.setdefault(table, []).append(f":{chain} - [0:0]")
        drop.setdefault(table, []).append(f"-X {chain}")
    return {t: [*declare.get(t, []), *delete.get(t, []), *add.get(t, []), *drop.get(t, [])]
            for t in TABLES if t in declare or t in delete or t in add or t in drop}


class Table(ServiceTable[IptRules]):
    """PINNACE-* chains, one iptables-restore per write."""

    def _write_all(self, desired: dict[str, IptRules]) -> None:
        """Every PINNACE-* chain rewritten, the ones no longer wanted deleted,
        the jumps into ours put first in the built-in chains."""
        started = time.monotonic()
        saved = _saved()
        sections: dict[str, list[str]] = {}
        for table in TABLES:
            have, hooks = saved[table]
            want = {c: list(rules) for c, rules in SKELETON[table].items()}
            entries: list[str] = []
            for svc in desired.values():
                for (t, chain), chain_rules in svc.chains.items():
                    if t == table:
                        want[chain] = chain_rules
                entries += [f"-A {chain} {rule}" for t, chain, rule in sorted(svc.entries)
                            if t == table]
            lines = [f":{c} - [0:0]" for c in sorted(have | want.keys())]
            # Our jumps go first, in order: the old ones out, new ones in.
            lines += [f"-D {h}" for h in hooks]
            lines += [f"-I {builtin} {numbered}" for builtin, numbered in _numbered(HOOKS[table])]
            for chain, rules in want.items():
                lines += [f"-A {chain} {r}" for r in rules]
            lines += entries
            lines += [f"-X {c}" for c in sorted(have - want.keys())]
            sections[table] = lines
        _restore(_table_text(sections))
        log.info("proxy rules (iptables) for %d services written in %.0f ms", len(desired),
                 (time.monotonic() - started) * 1000)

    def _write_changes(self, changed: dict[str, IptRules | None]) -> int:
        sections: dict[str, list[str]] = {}
        empty = IptRules()
        for key, rules in changed.items():
            for table, lines in diff(self.applied.get(key, empty), rules or empty).items():
                sections.setdefault(table, []).extend(lines)
        # Declarations first in each table, whichever service they came from.
        for table, lines in sections.items():
            sections[table] = sorted(lines, key=_phase)
        if sections:
            _restore(_table_text(sections))
        return sum(len(lines) for lines in sections.values())


def _numbered(hooks: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """(builtin, "N rule"): each jump's position among ours in its chain."""
    seen: dict[str, int] = {}
    out = []
    for builtin, rule in hooks:
        seen[builtin] = seen.get(builtin, 0) + 1
        out.append((builtin, f"{seen[builtin]} {rule}"))
    return out


_PHASES = {":": 0, "-D": 1, "-A": 2, "-X": 3}


def _phase(line: str) -> int:
    return _PHASES[line[0] if line[0] == ":" else line[:2]]
