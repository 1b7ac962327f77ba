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


@pytest.fixture(params=["memory", "sqlite", "etcd"])
async def store(request: pytest.FixtureRequest, tmp_path: object) -> AsyncIterator[Store]:
    """A started, empty Store of each backend."""
    s: Store
    if request.param == "memory":
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
