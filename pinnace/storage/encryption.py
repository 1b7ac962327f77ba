"""A Store that encrypts the values of some resources (Secrets by default)
on their way into another Store and decrypts them on the way out.

Everything above it (the registry, the watch cache, authentication, every
API server worker, each of which opens its own) sees plain values; only the
bytes in the datastore are encrypted. Keys outside the configured prefixes
cost one prefix check, and a list or watch whose prefix cannot hold such a
key none per value.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from .ciphers import Chain
from .encryptionconfig import EncryptionConfig
from .interface import ConflictError, Event, KeyValue, ListResult, Store, Watch


class EncryptedStore:
    def __init__(self, inner: Store, config: EncryptionConfig):
        self.inner = inner
        self.config = config
        # In config order: the first rule whose prefix a key has is its rule.
        self._rules = [(r.prefix, r.chain) for r in config.rules]
        self._prefixes = tuple(p for p, _ in self._rules)

    def _chain(self, key: str) -> Chain | None:
        if not key.startswith(self._prefixes):
            return None
        for prefix, chain in self._rules:
            if key.startswith(prefix):
                return chain
        return None  # pragma: no cover - the tuple check matched one of them

    def _touches(self, prefix: str) -> bool:
        """Whether keys under ``prefix`` may be encrypted."""
        return any(prefix.startswith(p) or p.startswith(prefix) for p in self._prefixes)

    def _out(self, kv: KeyValue) -> KeyValue:
        chain = self._chain(kv.key)
        if chain is None:
            return kv
        value, stale = chain.from_storage(kv.value, kv.key)
        return KeyValue(kv.key, value, kv.create_revision, kv.mod_revision, stale)

    def _in(self, key: str, value: bytes) -> bytes:
        chain = self._chain(key)
        return value if chain is None else chain.to_storage(value, key)

    def _event(self, ev: Event) -> Event:
        if self._chain(ev.kv.key) is None:
            return ev
        return Event(ev.type, self._out(ev.kv), None if ev.prev is None else self._out(ev.prev))

    # -- the Store contract ----------------------------------------------

    async def start(self) -> None:
        await self.inner.start()

    async def close(self) -> None:
        await self.inner.close()

    async def revision(self) -> int:
        return await self.inner.revision()

    async def compacted_revision(self) -> int:
        return await self.inner.compacted_revision()

    async def get(self, key: str) -> KeyValue | None:
        kv = await self.inner.get(key)
        return None if kv is None else self._out(kv)

    async def list(
        self, prefix: str, *, start: str = "", limit: int = 0, revision: int = 0
    ) -> ListResult:
        res = await self.inner.list(prefix, start=start, limit=limit, revision=revision)
        if not self._touches(prefix):
            return res
        return ListResult([self._out(kv) for kv in res.kvs], res.revision, res.more,
                          res.remaining)

    async def count(self, prefix: str) -> int:
        return await self.inner.count(prefix)

    async def create(self, key: str, value: bytes) -> KeyValue:
        kv = await self.inner.create(key, self._in(key, value))
        return KeyValue(key, value, kv.create_revision, kv.mod_revision)

    async def update(self, key: str, value: bytes, mod_revision: int) -> KeyValue:
        try:
            kv = await self.inner.update(key, self._in(key, value), mod_revision)
        except ConflictError as e:
            # The caller retries from the current value: it must be readable.
            current = None if e.current is None else self._out(e.current)
            raise ConflictError(key, current) from None
        return KeyValue(key, value, kv.create_revision, kv.mod_revision)

    async def delete(self, key: str, mod_revision: int = 0) -> KeyValue:
        try:
            kv = await self.inner.delete(key, mod_revision)
        except ConflictError as e:
            current = None if e.current is None else self._out(e.current)
            raise ConflictError(key, current) from None
        return self._out(kv)

    def watch(self, prefix: str, after: int) -> Watch:
        inner = self.inner.watch(prefix, after)
        return _DecryptingWatch(inner, self) if self._touches(prefix) else inner

    async def compact(self, revision: int) -> None:
        await self.inner.compact(revision)


class _DecryptingWatch:
    def __init__(self, inner: Watch, store: EncryptedStore):
        self._inner = inner
        self._store = store

    def __aiter__(self) -> AsyncIterator[Event]:
        return self._events()

    async def _events(self) -> AsyncIterator[Event]:
        async for ev in self._inner:
            yield self._store._event(ev)

    async def close(self) -> None:
        await self._inner.close()


def encrypted(store: Store, config: EncryptionConfig | None) -> Store:
    """``store``, encrypting what ``config`` names (as it is when None)."""
    return store if config is None or not config.rules else EncryptedStore(store, config)
