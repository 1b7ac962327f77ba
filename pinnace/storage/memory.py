"""In-memory Store: the reference backend for tests and `--datastore memory`.

Keeps every version of every key until compaction, so list-at-revision and
watch-from-revision work exactly as on etcd.
"""

from __future__ import annotations

import bisect
from typing import List

from .broadcaster import Broadcaster, BroadcastWatch
from .interface import (
    CompactedError,
    ConflictError,
    Event,
    KeyExistsError,
    KeyNotFoundError,
    KeyValue,
    ListResult,
    Watch,
)


class MemoryStore:
    def __init__(self) -> None:
        self._rev = 0
        self._compacted = 0
        # key -> versions in revision order; a None value marks a deletion.
        self._history: dict[str, list[tuple[int, KeyValue | None]]] = {}
        self._keys: list[str] = []  # sorted, every key with any history
        self._log: list[Event] = []  # events after the compacted revision
        self._broadcaster = Broadcaster()

    async def start(self) -> None:
        pass

    async def close(self) -> None:
        self._broadcaster.close_all()

    async def revision(self) -> int:
        return self._rev

    async def compacted_revision(self) -> int:
        return self._compacted

    def _live(self, key: str) -> KeyValue | None:
        versions = self._history.get(key)
        return versions[-1][1] if versions else None

    def _commit(self, ev: Event) -> None:
        key = ev.kv.key
        versions = self._history.get(key)
        if versions is None:
            versions = self._history[key] = []
            bisect.insort(self._keys, key)
        versions.append((ev.kv.mod_revision, None if ev.type == "DELETED" else ev.kv))
        self._log.append(ev)
        self._broadcaster.publish([ev])

    async def get(self, key: str) -> KeyValue | None:
        return self._live(key)

    async def list(
        self, prefix: str, *, start: str = "", limit: int = 0, revision: int = 0
    ) -> ListResult:
        if revision and revision < self._compacted:
            raise CompactedError(revision, self._compacted)
        rev = revision or self._rev
        lo = bisect.bisect_left(self._keys, max(prefix, start))
        out: list[KeyValue] = []
        more = False
        remaining = 0
        for i in range(lo, len(self._keys)):
            key = self._keys[i]
            if not key.startswith(prefix):
                break
            kv = _at(self._history[key], rev)
            if kv is None:
                continue
            if limit and len(out) >= limit:
                more = True
                remaining += 1
                continue
            out.append(kv)
        return ListResult(out, rev, more, remaining)

    async def count(self, prefix: str) -> int:
        return len((await self.list(prefix)).kvs)

    async def create(self, key: str, value: bytes) -> KeyValue:
        if self._live(key) is not None:
            raise KeyExistsError(key)
        self._rev += 1
        kv = KeyValue(key, value, self._rev, self._rev)
        self._commit(Event("ADDED", kv))
        return kv

    async def update(self, key: str, value: bytes, mod_revision: int) -> KeyValue:
        cur = self._live(key)
        if cur is None:
            raise KeyNotFoundError(key)
        if cur.mod_revision != mod_revision:
            raise ConflictError(key, cur)
        self._rev += 1
        kv = KeyValue(key, value, cur.create_revision, self._rev)
        self._commit(Event("MODIFIED", kv, cur))
        return kv

    async def delete(self, key: str, mod_revision: int = 0) -> KeyValue:
        cur = self._live(key)
        if cur is None:
            raise KeyNotFoundError(key)
        if mod_revision and cur.mod_revision != mod_revision:
            raise ConflictError(key, cur)
        self._rev += 1
        kv = KeyValue(key, cur.value, cur.create_revision, self._rev)
        self._commit(Event("DELETED", kv, cur))
        return kv

    def watch(self, prefix: str, after: int) -> Watch:
        return BroadcastWatch(self._broadcaster, prefix, after, self._backlog,
                              self.compacted_revision)

    async def _backlog(self, prefix: str, after: int) -> List[Event]:  # noqa: UP006 - `list` is a method here
        # The log is in revision order: find the first event after `after`.
        revs = [e.kv.mod_revision for e in self._log]
        i = bisect.bisect_right(revs, after)
        return [e for e in self._log[i:] if e.kv.key.startswith(prefix)]

    async def compact(self, revision: int) -> None:
        revision = min(revision, self._rev)
        if revision <= self._compacted:
            return
        self._compacted = revision
        self._log = [e for e in self._log if e.kv.mod_revision > revision]
        for key in list(self._history):
            versions = self._history[key]
            # Keep the newest version at or below the compaction point (it is
            # what a list at that revision sees) and everything after it.
            idx = bisect.bisect_right([r for r, _ in versions], revision) - 1
            if idx > 0:
                del versions[:idx]
            if len(versions) == 1 and versions[0][1] is None and versions[0][0] <= revision:
                del self._history[key]
                self._keys.pop(bisect.bisect_left(self._keys, key))


def _at(versions: list[tuple[int, KeyValue | None]], rev: int) -> KeyValue | None:
    for r, kv in reversed(versions):
        if r <= rev:
            return kv
    return None
