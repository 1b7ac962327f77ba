"""Where SQLiteStore reads: single keys on the event loop, never waiting there."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from pinnace.storage.sqlite import SQLiteStore


class _Busy:
    """A connection whose every statement finds the file locked, as SQLite
    answers a reader that may not wait while a WAL is being recovered."""

    def __init__(self) -> None:
        self.tries = 0

    def execute(self, *args: Any) -> Any:
        self.tries += 1
        raise sqlite3.OperationalError("database is locked")

    def close(self) -> None:
        pass


async def test_a_get_that_finds_the_file_busy_is_answered_by_the_reader_pool(
        tmp_path: Path) -> None:
    store = SQLiteStore(str(tmp_path / "state.db"), compact_interval=0)
    await store.start()
    try:
        kv = await store.create("/registry/pods/a", b"one")
        loop_conn, busy = store._lconn, _Busy()
        store._lconn = busy  # type: ignore[assignment]
        got = await store.get("/registry/pods/a")
        assert busy.tries == 1
        assert got is not None and (got.value, got.mod_revision) == (b"one", kv.mod_revision)
        assert await store.get("/registry/pods/none") is None
        store._lconn = loop_conn
    finally:
        await store.close()


async def test_a_get_on_the_loop_sees_every_write_acknowledged_before_it(tmp_path: Path) -> None:
    store = SQLiteStore(str(tmp_path / "state.db"), compact_interval=0)
    await store.start()
    try:
        kv = await store.create("/k", b"0")
        for i in range(1, 50):
            kv = await store.update("/k", str(i).encode(), kv.mod_revision)
            got = await store.get("/k")
            assert got is not None and (got.value, got.mod_revision) == (str(i).encode(),
                                                                         kv.mod_revision)
        gone = await store.delete("/k", kv.mod_revision)
        assert gone.mod_revision > kv.mod_revision
        assert await store.get("/k") is None
    finally:
        await store.close()
