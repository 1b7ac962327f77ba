"""kill -9 of a process writing to an SQLiteStore loses no acknowledged write."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
import time

import pytest

from pinnace.storage.interface import CompactedError, StoreError
from pinnace.storage.sqlite import SQLiteStore

# Writers create keys and bump one counter key each (so compaction, running
# every few milliseconds, has history to delete when the kill lands). A
# line goes to stdout only after the store acknowledged the write.
WRITER = r"""
import asyncio, sys
from pinnace.storage.sqlite import SQLiteStore

async def writer(store, w):
    counter = await store.create(f"/counter/{w}", b"0")
    print(f"U /counter/{w} {counter.mod_revision}", flush=True)
    i = 0
    while True:
        kv = await store.create(f"/keys/{w}/{i:08d}", b"x" * 512)
        print(f"C {kv.key} {kv.mod_revision}", flush=True)
        counter = await store.update(f"/counter/{w}", str(i).encode(), counter.mod_revision)
        print(f"U /counter/{w} {counter.mod_revision}", flush=True)
        i += 1

async def main():
    store = SQLiteStore(sys.argv[1], synchronous=sys.argv[2], compact_interval=0.01,
                        keep_revisions=200, keep_seconds=0, compact_batch=50)
    await store.start()
    await asyncio.gather(*(writer(store, w) for w in range(32)))

asyncio.run(main())
"""


def run_and_kill(path: str, synchronous: str, acks: int) -> list[str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER, path, synchronous],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + 30
    try:
        while len(lines) < acks and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line.decode())
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    # Whatever reached the pipe before the kill was acknowledged too. Read it
    # through the same buffered reader: communicate() would skip its buffer.
    rest = proc.stdout.read()
    err = proc.stderr.read() if proc.stderr else b""
    proc.stdout.close()
    if proc.stderr:
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL, err.decode()[-2000:]
    lines += rest.decode().splitlines(keepends=True)
    return [line for line in lines if line.endswith("\n")]


@pytest.mark.parametrize("synchronous", ["NORMAL", "FULL"])
async def test_acknowledged_writes_survive_kill_9(tmp_path: object, synchronous: str) -> None:
    path = os.path.join(str(tmp_path), "state.db")
    lines = run_and_kill(path, synchronous, acks=4000)
    assert len(lines) >= 4000

    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    conn.close()

    created: dict[str, int] = {}
    counters: dict[str, int] = {}
    for line in lines:
        op, key, rev = line.split()
        if op == "C":
            created[key] = int(rev)
        else:
            counters[key] = max(counters.get(key, 0), int(rev))

    store = SQLiteStore(path, compact_interval=0)
    await store.start()
    try:
        listed = {kv.key: kv for kv in (await store.list("/keys/")).kvs}
        missing = [k for k in created if k not in listed]
        assert not missing, f"{len(missing)} acknowledged keys lost, e.g. {missing[:3]}"
        assert all(listed[k].create_revision == rev for k, rev in created.items())
        for key, rev in counters.items():
            kv = await store.get(key)
            assert kv is not None and kv.mod_revision >= rev

        top = max(max(created.values()), max(counters.values()))
        assert await store.revision() >= top
        assert await store.compacted_revision() <= await store.revision()
        after = await store.create("/after-crash", b"ok")
        assert after.mod_revision > top
        assert after.mod_revision > max(kv.mod_revision for kv in listed.values())
        assert (await store.get("/after-crash")) == after
    finally:
        await store.close()


async def test_reopen_keeps_revision_counter_and_compaction_mark(tmp_path: object) -> None:
    path = os.path.join(str(tmp_path), "state.db")
    store = SQLiteStore(path, compact_interval=0)
    await store.start()
    kv = await store.create("/a", b"1")
    for i in range(5):
        kv = await store.update("/a", str(i).encode(), kv.mod_revision)
    gone = await store.delete("/a", kv.mod_revision)
    await store.compact(gone.mod_revision)  # removes every row, even the newest
    await store.close()

    store = SQLiteStore(path, compact_interval=0)
    await store.start()
    try:
        assert await store.revision() == gone.mod_revision
        assert await store.compacted_revision() == gone.mod_revision
        assert await store.get("/a") is None
        assert (await store.create("/a", b"new")).mod_revision == gone.mod_revision + 1
    finally:
        await store.close()


async def test_background_compaction_keeps_the_last_revisions(tmp_path: object) -> None:
    path = os.path.join(str(tmp_path), "state.db")
    store = SQLiteStore(path, compact_interval=0.01, keep_revisions=10, keep_seconds=0)
    await store.start()
    try:
        kv = await store.create("/a", b"0")
        doomed = await store.create("/b", b"")
        await store.delete("/b", doomed.mod_revision)
        for i in range(100):
            kv = await store.update("/a", str(i + 1).encode(), kv.mod_revision)
        head = await store.revision()
        for _ in range(1000):  # wait for the compactor, at most ~10 s
            if await store.compacted_revision() >= head - 10:
                break
            await asyncio.sleep(0.01)
        assert await store.compacted_revision() == head - 10

        with pytest.raises(CompactedError):
            await store.list("/", revision=head - 11)
        window = await store.list("/", revision=head - 10)
        assert [(k.key, k.value) for k in window.kvs] == [("/a", b"90")]
        watch = store.watch("/", after=head - 10)
        it = aiter(watch)
        replay = [await asyncio.wait_for(it.__anext__(), 10) for _ in range(10)]
        assert [e.kv.value for e in replay] == [str(i).encode() for i in range(91, 101)]
        await watch.close()
    finally:
        await store.close()
    conn = sqlite3.connect(path)
    # The version visible at the compacted revision plus the 10 after it.
    assert conn.execute("SELECT COUNT(*) FROM kv").fetchone()[0] == 11
    conn.close()


async def test_a_second_store_on_the_same_file_is_refused(tmp_path: object) -> None:
    path = os.path.join(str(tmp_path), "state.db")
    first = SQLiteStore(path, compact_interval=0)
    await first.start()
    try:
        with pytest.raises(StoreError, match="in use"):
            await SQLiteStore(path, compact_interval=0).start()
    finally:
        await first.close()
    again = SQLiteStore(path, compact_interval=0)
    await again.start()
    await again.close()
