"""Table rows remembered by object revision, for LIST as Table.

`kubectl get pods` asks for a Table. Building one needs every object
decoded from its stored JSON (~20 µs a pod in Python: most of the time of a
10,000-pod Table), though a row only changes when its object does, or when
the clock moves its age. So a row is kept as JSON bytes under the object's
key and revision, with a gap where the age cell goes; a LIST fills the gaps
and joins the rows without decoding anything it has seen before.

Whether a row's cells move with the clock is found out, not assumed: the
row is built for now and for a time far ahead; if only one cell differs and
it is the object's age both times, the row is kept with that gap. Rows with
other cells that move (restart times, job durations, last schedule) are
built afresh every time. Memory is bounded by a byte budget; the oldest
rows go first.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import orjson

from pinnace.api.resources import ResourceInfo
from pinnace.storage.interface import KeyValue

from .tables import since

Obj = dict[str, Any]
RowBuilder = Callable[[Obj, float], Obj]  # (object, now as epoch seconds) -> Table row

_LATER = 1e7  # seconds ahead (~4 months): every age or duration cell reads differently
_GAP = "\x00pinnace-age\x00"  # no real cell holds this
_GAP_JSON = orjson.dumps(_GAP)


class _Row:
    __slots__ = ("post", "pre", "rev", "size", "ts")

    def __init__(self, rev: int, pre: bytes, post: bytes | None, ts: str | None):
        self.rev = rev
        self.pre = pre  # the whole row when post is None
        self.post = post
        self.ts = ts  # creationTimestamp, for the age in the gap
        self.size = len(pre) + len(post or b"") + 200  # + the entry's own overhead

    def render(self, now: float, ages: dict[str | None, bytes]) -> bytes:
        """``ages``: the age cells of this LIST so far, by creationTimestamp
        (objects made in the same second share one)."""
        if self.post is None:
            return self.pre
        age = ages.get(self.ts)
        if age is None:
            age = ages[self.ts] = orjson.dumps(since(self.ts, now))
        return self.pre + age + self.post


class RowCache:
    def __init__(self, max_bytes: int = 64 << 20):
        self.max_bytes = max_bytes
        self.size = 0
        self._rows: dict[tuple[Any, ...], _Row] = {}
        self.hits = self.misses = 0

    def rows(self, info: ResourceInfo, kvs: Iterable[KeyValue], now: float, include: str,
             decode: Callable[[KeyValue], Obj], build: RowBuilder) -> list[bytes]:
        """The JSON of each of ``kvs``' rows in a Table for ``info`` with
        ``include`` (includeObject None or Metadata), built with ``build``
        from ``decode(kv)`` where not remembered."""
        ident = (_identity(info), include)
        ages: dict[str | None, bytes] = {}
        out = []
        get = self._rows.get
        misses = self.misses
        for kv in kvs:
            got = get((ident, kv.key))
            if got is not None and got.rev == kv.mod_revision:
                out.append(got.render(now, ages))
            else:
                out.append(self._miss((ident, kv.key), got, kv, now, ages, decode, build))
        self.hits += len(out) - (self.misses - misses)
        return out

    def _miss(self, key: tuple[Any, ...], got: _Row | None, kv: KeyValue, now: float,
              ages: dict[str | None, bytes], decode: Callable[[KeyValue], Obj],
              build: RowBuilder) -> bytes:
        self.misses += 1
        obj = decode(kv)
        row = build(obj, now)
        kept = _keepable(obj, row, build, now, kv.mod_revision)
        if got is not None:
            del self._rows[key]
            self.size -= got.size
        if kept is None:
            return orjson.dumps(row)
        self._rows[key] = kept
        self.size += kept.size
        while self.size > self.max_bytes and self._rows:
            oldest = next(iter(self._rows))
            self.size -= self._rows.pop(oldest).size
        return kept.render(now, ages)


def _identity(info: ResourceInfo) -> tuple[Any, ...]:
    # A CRD's printer columns change with the CRD: its rows change with it.
    crd_rv = (info.crd or {}).get("metadata", {}).get("resourceVersion")
    return info.group, info.version, info.resource, crd_rv


def _keepable(obj: Obj, row: Obj, build: RowBuilder, now: float, rev: int) -> _Row | None:
    cells = row.get("cells")
    later = build(obj, now + _LATER).get("cells")
    if not isinstance(cells, list) or not isinstance(later, list) or len(cells) != len(later):
        return None
    moved = [i for i, (a, b) in enumerate(zip(cells, later)) if a != b]
    if not moved:
        return _Row(rev, orjson.dumps(row), None, None)
    if len(moved) != 1:
        return None
    i = moved[0]
    ts = (obj.get("metadata") or {}).get("creationTimestamp")
    if not isinstance(ts, str) or cells[i] != since(ts, now) or \
            later[i] != since(ts, now + _LATER):
        return None
    parts = orjson.dumps({**row, "cells": [*cells[:i], _GAP, *cells[i + 1:]]}).split(_GAP_JSON)
    if len(parts) != 2:
        return None
    return _Row(rev, parts[0], parts[1], ts)
