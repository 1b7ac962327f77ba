"""Fixtures: one `store` per backend (memory, sqlite, etcd) for the contract suite.

etcd runs as a real server, once per test session, on free loopback ports
with its data in a temporary directory; each test's EtcdStore gets its own
key namespace so tests do not see each other's keys.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator

import pytest

from pinnace.storage.interface import Store


class SharedPair:
    """Two SQLite stores on one file, as two API server workers use it: every
    write goes to one of them in turn, reads and watches go to the owner, so
    each test also checks that one store sees the other's writes in order."""

    def __init__(self, path: str):
        from pinnace.storage.sqlite import SQLiteStore

        self.owner = SQLiteStore(path, compact_interval=0, shared=True, owner=True)
        self.peer = SQLiteStore(path, compact_interval=0, shared=True, owner=False)
        self._turn = 0

    def _writer(self) -> Store:
        self._turn += 1
        return self.peer if self._turn % 2 else self.owner

    async def start(self) -> None:
        await self.owner.start()
        await self.peer.start()

    async def close(self) -> None:
        await self.peer.close()
        await self.owner.close()

    def __getattr__(self, name: str) -> object:
        return getattr(self.owner, name)

    async def create(self, key: str, value: bytes) -> object:
        return await self._writer().create(key, value)

    async def update(self, key: str, value: bytes, mod_revision: int) -> object:
        return await self._writer().update(key, value, mod_revision)

    async def delete(self, key: str, mod_revision: int = 0) -> object:
        return await self._writer().delete(key, mod_revision)


def encrypted_memory() -> Store:
    """The encryption wrapper (pinnace/storage/encryption.py) over the memory
    backend, encrypting every key: it must keep the whole contract."""
    from pathlib import Path

    from pinnace.storage import ciphers
    from pinnace.storage.encryption import EncryptedStore
    from pinnace.storage.encryptionconfig import EncryptionConfig, Rule
    from pinnace.storage.memory import MemoryStore

    everything = Rule("*", "/", ciphers.Chain([ciphers.aesgcm("k", os.urandom(32)),
                                                 ciphers.identity()]))
    return EncryptedStore(MemoryStore(), EncryptionConfig(Path("contract"), (everything,)))


@pytest.fixture(params=["memory", "sqlite", "sqlite-shared", "etcd", "encrypted"])
async def store(request: pytest.FixtureRequest, tmp_path: object) -> AsyncIterator[Store]:
    """A started, empty Store of each backend."""
    s: Store
    if request.param == "encrypted":
        s = encrypted_memory()
    elif request.param == "sqlite-shared":
        s = SharedPair(os.path.join(str(tmp_path), "state.db"))  # type: ignore[assignment]
    elif request.param == "memory":
        from pinnace.storage.memory import MemoryStore

        s = MemoryStore()
    elif request.param == "sqlite":
        from pinnace.storage.sqlite import SQLiteStore

        s = SQLiteStore(os.path.join(str(tmp_path), "state.db"), compact_interval=0)
    else:
        from pinnace.storage.etcd import EtcdStore

        endpoint = request.getfixturevalue("etcd_endpoint")
        s = EtcdStore([endpoint], namespace=f"/test-{uuid.uuid4().hex}")
    await s.start()
    try:
        yield s
    finally:
        await s.close()
