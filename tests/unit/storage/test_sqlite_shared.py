"""Several processes on one SQLite file (the API server's workers): one
history, in revision order, for every process's watchers; CAS across
processes; a process killed in the middle of a write stops nobody."""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import signal
from pathlib import Path
from typing import Any

import pytest

from pinnace.storage.interface import ConflictError, Event, KeyExistsError
from pinnace.storage.sqlite import SQLiteStore

WAIT = 20  # seconds before a missing event counts as a hang, not a timing assertion


def shared(path: Path, owner: bool) -> SQLiteStore:
    return SQLiteStore(str(path), compact_interval=0, shared=True, owner=owner)


async def collect(store: SQLiteStore, prefix: str, after: int, n: int) -> list[Event]:
    out: list[Event] = []
    watch = store.watch(prefix, after)

    async def run() -> None:
        async for ev in watch:
            out.append(ev)
            if len(out) == n:
                return

    try:
        await asyncio.wait_for(run(), WAIT)
    finally:
        await watch.close()
    return out


def summary(events: list[Event]) -> list[tuple[str, str, int]]:
    return [(e.type, e.kv.key, e.kv.mod_revision) for e in events]


async def test_two_stores_on_one_file_share_one_history(tmp_path: Path) -> None:
    a, b = shared(tmp_path / "s.db", True), shared(tmp_path / "s.db", False)
    await a.start()
    await b.start()
    try:
        start = await a.revision()
        wa = asyncio.ensure_future(collect(a, "/x/", start, 300))
        wb = asyncio.ensure_future(collect(b, "/x/", start, 300))

        async def writes(store: SQLiteStore, tag: str) -> None:
            for i in range(50):
                kv = await store.create(f"/x/{tag}{i}", b"1")
                kv = await store.update(kv.key, b"2", kv.mod_revision)
                await store.delete(kv.key, kv.mod_revision)

        await asyncio.gather(writes(a, "a"), writes(b, "b"))
        seen_a, seen_b = await wa, await wb
        assert summary(seen_a) == summary(seen_b)
        revs = [e.kv.mod_revision for e in seen_a]
        assert revs == sorted(set(revs)) and len(revs) == 300
        # Each key's own history is create, update, delete, whoever wrote it.
        for tag in "ab":
            mine = [e.type for e in seen_a if e.kv.key == f"/x/{tag}7"]
            assert mine == ["ADDED", "MODIFIED", "DELETED"]
        # A modification written elsewhere still carries the value it replaced.
        mod = next(e for e in seen_b if e.type == "MODIFIED" and e.kv.key.startswith("/x/a"))
        assert mod.prev is not None and mod.prev.value == b"1"
        assert await a.revision() == await b.revision() == revs[-1]
    finally:
        await b.close()
        await a.close()


async def test_compare_and_swap_holds_across_stores(tmp_path: Path) -> None:
    a, b = shared(tmp_path / "s.db", True), shared(tmp_path / "s.db", False)
    await a.start()
    await b.start()
    try:
        v1 = await a.create("/k", b"1")
        with pytest.raises(KeyExistsError):
            await b.create("/k", b"again")
        v2 = await b.update("/k", b"2", v1.mod_revision)
        with pytest.raises(ConflictError) as info:
            await a.update("/k", b"3", v1.mod_revision)
        assert info.value.current == v2
        results = await asyncio.gather(
            *(s.update("/k", f"{i}".encode(), v2.mod_revision)
              for i, s in enumerate([a, b] * 10)), return_exceptions=True)
        winners = [r for r in results if not isinstance(r, BaseException)]
        assert len(winners) == 1
        assert await a.get("/k") == await b.get("/k") == winners[0]
    finally:
        await b.close()
        await a.close()


def _write_forever(path: str, ready: Any) -> None:
    async def main() -> None:
        store = shared(Path(path), False)
        await store.start()
        ready.set()
        i = 0
        while True:
            await asyncio.gather(*(store.create(f"/child/{i}-{j}", b"x" * 500)
                                   for j in range(20)))
            i += 1

    asyncio.run(main())


async def test_a_process_killed_mid_write_blocks_nobody(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    owner = shared(path, True)
    await owner.start()
    ctx = multiprocessing.get_context("spawn")
    ready = ctx.Event()
    child = ctx.Process(target=_write_forever, args=(str(path), ready), daemon=True)
    child.start()
    try:
        assert await asyncio.to_thread(ready.wait, WAIT)
        # Let it write for a while, then kill it wherever it is (often inside
        # a transaction, holding the write lock).
        for _ in range(200):
            if await owner.count("/child/") >= 200:
                break
            await asyncio.sleep(0.05)
        os.kill(child.pid or 0, signal.SIGKILL)
        child.join(WAIT)
        kv = await asyncio.wait_for(owner.create("/after", b"ok"), WAIT)
        written = await owner.list("/child/")
        assert len(written.kvs) >= 200
        assert kv.mod_revision > max(k.mod_revision for k in written.kvs)
    finally:
        if child.is_alive():
            child.kill()
            child.join(WAIT)
        await owner.close()


def _hold_the_write_lock(path: str, ready: Any) -> None:
    """Another process in the middle of a write: lock taken, transaction open,
    a row written but not committed."""
    import fcntl
    import sqlite3
    import time

    fd = os.open(path + ".wlock", os.O_RDWR)
    fcntl.flock(fd, fcntl.LOCK_EX)
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("BEGIN IMMEDIATE")
    top = conn.execute("SELECT MAX(id) FROM kv").fetchone()[0] or 0
    conn.execute("INSERT INTO kv (id, name, created, deleted, create_revision, prev_revision,"
                 " value) VALUES (?, '/half/written', 1, 0, ?, 0, x'00')", (top + 1, top + 1))
    ready.set()
    time.sleep(600)


async def test_a_process_killed_holding_the_write_lock_leaves_no_trace(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    owner = shared(path, True)
    await owner.start()
    ctx = multiprocessing.get_context("spawn")
    ready = ctx.Event()
    child = ctx.Process(target=_hold_the_write_lock, args=(str(path), ready), daemon=True)
    child.start()
    try:
        assert await asyncio.to_thread(ready.wait, WAIT)
        os.kill(child.pid or 0, signal.SIGKILL)
        child.join(WAIT)
        kv = await asyncio.wait_for(owner.create("/after", b"ok"), WAIT)
        assert await owner.get("/half/written") is None
        assert await owner.get("/after") == kv
    finally:
        if child.is_alive():
            child.kill()
            child.join(WAIT)
        await owner.close()


async def test_a_commit_made_the_moment_this_process_unlocks_is_delivered(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Another process commits right after this one releases the write lock
    (and before this one would look at data_version if it looked late): the
    idle poll still finds and delivers it."""
    import fcntl
    import sqlite3

    import pinnace.storage.sqlite as backend

    path = tmp_path / "s.db"
    a = shared(path, True)
    await a.start()
    armed = False

    def foreign_commit() -> None:
        fd = os.open(str(path) + ".wlock", os.O_RDWR)
        fcntl.flock(fd, fcntl.LOCK_EX)
        conn = sqlite3.connect(str(path), isolation_level=None)
        conn.execute("BEGIN IMMEDIATE")
        top = conn.execute("SELECT MAX(id) FROM kv").fetchone()[0] or 0
        conn.execute(backend._INSERT, (top + 1, "/x/foreign", 1, 0, top + 1, 0, b"v"))
        conn.execute("COMMIT")
        conn.close()
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)

    class Flock:
        def __getattr__(self, name: str) -> Any:
            return getattr(fcntl, name)

        @staticmethod
        def flock(fd: int, op: int) -> None:
            nonlocal armed
            fcntl.flock(fd, op)
            if op == fcntl.LOCK_UN and fd == a._wlock_fd and armed:
                armed = False
                foreign_commit()

    monkeypatch.setattr(backend, "fcntl", Flock())
    try:
        start = await a.revision()
        seen = asyncio.ensure_future(collect(a, "/x/", start, 2))
        await asyncio.sleep(0)
        armed = True
        await a.create("/x/own", b"v")
        assert [e.kv.key for e in await seen] == ["/x/own", "/x/foreign"]
    finally:
        await a.close()


async def test_shared_and_unshared_stores_keep_off_each_others_file(tmp_path: Path) -> None:
    from pinnace.storage.interface import StoreError

    path = tmp_path / "s.db"
    single = SQLiteStore(str(path), compact_interval=0)
    await single.start()
    with pytest.raises(StoreError, match="in use"):
        await shared(path, False).start()
    await single.close()
    # A shared process that is not the owner keeps a single server off the
    # file even while the owner is away (restarting, say).
    peer = shared(path, False)
    await peer.start()
    try:
        with pytest.raises(StoreError, match="in use"):
            await SQLiteStore(str(path), compact_interval=0).start()
    finally:
        await peer.close()


def _open_and_create(paths: list[str], name: str, ready: Any, gos: list[Any],
                     results: Any) -> None:
    async def one(path: str) -> None:
        store = shared(Path(path), owner=name == "p0")
        await store.start()
        try:
            await store.create(f"/k/{name}", b"v")
        finally:
            await store.close()

    outcome = "ok"
    for path, go in zip(paths, gos):
        ready.release()
        go.wait(WAIT)  # every process at once, for each new file
        try:
            asyncio.run(one(path))
        except Exception as e:  # reported to the test, which names it
            outcome = repr(e)
    results.put((name, outcome))


def test_processes_opening_a_new_file_together_all_start(tmp_path: Path) -> None:
    """Workers start at once on an empty data dir: the one that does not win
    the switch to WAL waits its turn instead of failing "database is locked"."""
    ctx = multiprocessing.get_context("spawn")
    n, rounds = 6, 8
    ready, results = ctx.Semaphore(0), ctx.Queue()
    gos = [ctx.Event() for _ in range(rounds)]
    paths = [str(tmp_path / f"new{r}.db") for r in range(rounds)]
    procs = []
    for i in range(n):
        procs.append(ctx.Process(target=_open_and_create,
                                 args=(paths, f"p{i}", ready, gos, results)))
    for p in procs:
        p.start()
    for go in gos:
        for _ in procs:
            assert ready.acquire(timeout=WAIT * 2)
        go.set()
    got = dict(results.get(timeout=WAIT * 2) for _ in procs)
    for p in procs:
        p.join(WAIT)
    assert got == {f"p{i}": "ok" for i in range(n)}
