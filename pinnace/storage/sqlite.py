"""SQLite Store: an append-only log of revisions in one table, as kine does.

Every write appends one row whose id is the new revision: the key, whether
the row creates or deletes the key, the key's create revision, the id of the
row it supersedes (``prev_revision``) and the value (for a deletion, the
value that was deleted). The state at revision R is, per key, the newest row
with id <= R unless that row is a deletion; the change log after R is simply
the rows with id > R. Compaction removes rows nobody can read any more.

Threads. One writer thread owns the only write connection and applies
writes in *group commits*: everything queued when it wakes up is applied in
one transaction, one WAL sync, in queue order (so a CAS later in a batch
sees the writes before it), and the callers' futures are answered on the
loop once the batch has committed. Lists, counts and watch backlogs use a
small pool of reader threads with their own connections; in WAL mode they
never wait for the writer and each sees a consistent snapshot. A get of one
key is one indexed lookup (~20 us), while handing it to a reader thread and
back costs ~150 us of CPU (the GIL changes hands twice): it runs on the
loop, on a connection of its own that never waits for a lock. Should the
file be busy (a WAL being recovered after a crash), the get goes to the pool.

Durability. WAL mode. With ``synchronous=FULL`` (the default) the WAL is
fsynced at every commit before anyone is answered, so acknowledged writes
survive power loss, as on etcd; group commit shares that one fsync among the
whole batch, which makes it nearly free under concurrent load. With
``synchronous=NORMAL`` a commit has still reached the WAL file through
write(2) before the caller is answered, so a crash or kill -9 of this
process loses nothing acknowledged; only an OS crash or power loss can drop
the last transactions (the database itself stays consistent).

Several processes (``shared=True``). The API server's worker processes open
one file together. A write transaction then first takes a cross-process
lock (an flock on ``<file>.wlock``: waiters wake the moment it is released,
unlike SQLite's sleeping busy handler), reads the newest revision from the
table, and delivers the rows other processes committed since this one last
looked before its own, so every process's watchers see one history in
revision order. Commits are serialized by that lock, so any snapshot holds
every revision up to its newest: an idle writer thread polls for foreign
commits (``PRAGMA data_version``) every ``poll_interval`` seconds. Shared
processes hold ``<file>.lock`` shared (an unshared server holds it alone);
one of them, holding ``<file>.compact``, compacts.
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
import queue
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from .broadcaster import Broadcaster, BroadcastWatch
from .interface import (
    CompactedError,
    ConflictError,
    Event,
    KeyExistsError,
    KeyNotFoundError,
    KeyValue,
    ListResult,
    StoreError,
    Watch,
)

log = logging.getLogger("pinnace.storage.sqlite")

T = TypeVar("T")
# The Store's `list` method shadows the builtin inside the class body.
_Events = list[Event]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS kv (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    created INTEGER NOT NULL,
    deleted INTEGER NOT NULL,
    create_revision INTEGER NOT NULL,
    prev_revision INTEGER NOT NULL,
    value BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS kv_name_id ON kv (name, id);
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""

_LATEST_ROW = (
    "SELECT id, deleted, create_revision, value FROM kv WHERE name = ? ORDER BY id DESC LIMIT 1"
)
_INSERT = (
    "INSERT INTO kv (id, name, created, deleted, create_revision, prev_revision, value)"
    " VALUES (?, ?, ?, ?, ?, ?, ?)"
)


def _latest_per_key(lower: str, upper: bool) -> str:
    """Ids of the newest row per key in a key range at a revision; one pass
    over the (name, id) index."""
    cond = f"name {lower} ? AND name < ?" if upper else f"name {lower} ?"
    return f"SELECT MAX(id) AS id FROM kv WHERE {cond} AND id <= ? GROUP BY name"


def _list_sql(upper: bool, order: bool) -> str:
    # Without ORDER BY, SQLite streams the grouped index scan (in key order)
    # as the outer loop of the join and fetches each value by rowid: ~4x
    # faster on 10k keys than with it, where it sorts all the values in a
    # temporary b-tree. The order is checked after the fetch (see _list).
    if not order:
        return (
            "SELECT kv.name, kv.value, kv.create_revision, kv.id"
            f" FROM ({_latest_per_key('>=', upper)}) AS latest"
            " CROSS JOIN kv ON kv.id = latest.id WHERE kv.deleted = 0 LIMIT ?"
        )
    return (
        "SELECT kv.name, kv.value, kv.create_revision, kv.id FROM kv"
        f" JOIN ({_latest_per_key('>=', upper)}) AS latest ON kv.id = latest.id"
        " WHERE kv.deleted = 0 ORDER BY kv.name LIMIT ?"
    )


def _count_sql(lower: str, upper: bool) -> str:
    return (
        "SELECT COUNT(*) FROM kv"
        f" JOIN ({_latest_per_key(lower, upper)}) AS latest ON kv.id = latest.id"
        " WHERE kv.deleted = 0"
    )


def _backlog_sql(upper: bool | None) -> str:
    """Rows after a revision with the value each replaced; under a key range
    (upper: with an end), or every key (None: what other processes wrote)."""
    cond = "" if upper is None else \
        " AND kv.name >= ? AND kv.name < ?" if upper else " AND kv.name >= ?"
    return (
        "SELECT kv.id, kv.name, kv.created, kv.deleted, kv.create_revision,"
        " kv.prev_revision, kv.value, p.value FROM kv"
        " LEFT JOIN kv AS p ON p.id = kv.prev_revision AND kv.created = 0 AND kv.deleted = 0"
        f" WHERE kv.id > ?{cond} ORDER BY kv.id"
    )


_LIST = {u: _list_sql(u, order=False) for u in (True, False)}
_LIST_ORDERED = {u: _list_sql(u, order=True) for u in (True, False)}
_COUNT_FROM = {u: _count_sql(">=", u) for u in (True, False)}
_COUNT_AFTER = {u: _count_sql(">", u) for u in (True, False)}
_BACKLOG = {u: _backlog_sql(u) for u in (True, False)}
_FOREIGN = _backlog_sql(None)


def _bounds(conn: sqlite3.Connection) -> tuple[int, int]:
    """(compacted revision, newest revision) as this transaction sees them.
    Compaction may have removed the newest row (a deletion), but never one
    above the compacted revision, so the newest is the larger of the two."""
    meta = conn.execute("SELECT value FROM meta WHERE name = 'compact_rev'").fetchone()
    compacted = meta[0] if meta else 0
    top = conn.execute("SELECT MAX(id) FROM kv").fetchone()[0] or 0
    return compacted, max(top, compacted)


def prefix_end(prefix: str) -> str | None:
    """The smallest string greater than every string starting with ``prefix``
    (None when there is none). UTF-8 keeps code point order, so SQLite's
    byte-wise comparison agrees with Python's."""
    chars = list(prefix)
    while chars:
        c = ord(chars[-1])
        if c < 0x10FFFF:
            c += 1
            if 0xD800 <= c <= 0xDFFF:  # surrogates cannot be stored
                c = 0xE000
            chars[-1] = chr(c)
            return "".join(chars)
        chars.pop()
    return None


class _Op:
    __slots__ = ("future", "key", "kind", "mod_revision", "value")

    def __init__(
        self, kind: str, key: str, value: bytes, mod_revision: int, future: asyncio.Future[Any]
    ):
        self.kind = kind
        self.key = key
        self.value = value
        self.mod_revision = mod_revision
        self.future = future


class _Call:
    """Maintenance work run on the writer thread in its own transaction."""

    __slots__ = ("args", "fn", "future")

    def __init__(self, fn: Callable[..., Any], args: tuple[Any, ...], future: asyncio.Future[Any]):
        self.fn = fn
        self.args = args
        self.future = future


_STOP = object()


class SQLiteStore:
    """Store on one SQLite file.

    ``synchronous``: "FULL" (survives power loss) or "NORMAL" (survives
    crashes of the process only). History is compacted every ``compact_interval`` seconds,
    keeping the last ``keep_revisions`` revisions and anything younger than
    ``keep_seconds`` (whichever keeps more); 0 disables the background task.
    ``max_batch`` bounds how many writes share one transaction.
    ``shared``: other processes write the same file (see the module doc);
    ``owner``: this process compacts it (when shared, unless another
    process already does).
    """

    def __init__(
        self,
        path: str,
        *,
        synchronous: str = "FULL",
        compact_interval: float = 60.0,
        keep_revisions: int = 10_000,
        keep_seconds: float = 300.0,
        compact_batch: int = 1000,
        max_batch: int = 1000,
        readers: int = 2,
        shared: bool = False,
        owner: bool = True,
        poll_interval: float = 0.002,
    ) -> None:
        if synchronous.upper() not in ("NORMAL", "FULL", "EXTRA"):
            raise ValueError(f"synchronous must be NORMAL, FULL or EXTRA, not {synchronous!r}")
        self.path = path
        self._synchronous = synchronous.upper()
        self._compact_interval = compact_interval
        self._keep_revisions = keep_revisions
        self._keep_seconds = keep_seconds
        self._compact_batch = compact_batch
        self._max_batch = max_batch
        self._nreaders = readers
        self._shared = shared
        self._owner = owner or not shared
        self._poll_interval = poll_interval
        self._wlock_fd: int | None = None
        self._data_version = 0
        self._compact_fd: int | None = None

        self._loop: asyncio.AbstractEventLoop | None = None
        self._queue: queue.SimpleQueue[object] = queue.SimpleQueue()
        self._writer: threading.Thread | None = None
        self._wconn: sqlite3.Connection | None = None
        self._lock_fd: int | None = None
        self._wrev = 0  # writer thread's revision counter
        self._readers: ThreadPoolExecutor | None = None
        self._rconns: list[sqlite3.Connection] = []
        self._lconn: sqlite3.Connection | None = None  # the loop's, for single-key gets
        self._rlocal = threading.local()
        self._rlock = threading.Lock()

        self._rev = 0  # latest revision answered on the loop
        self._compacted = 0
        self._compact_done = 0  # rows at or below this are physically compacted
        self._compact_lock: asyncio.Lock | None = None
        self._compactor: asyncio.Task[None] | None = None
        self._broadcaster = Broadcaster()
        self._closed = False

    # ---- lifecycle ----

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._compact_lock = asyncio.Lock()
        await asyncio.to_thread(self._open_writer)
        # Single rows need little cache; it never waits, on the loop.
        self._lconn = await asyncio.to_thread(self._connect, 0, 4_000)
        self._rev = self._wrev
        self._readers = ThreadPoolExecutor(self._nreaders, thread_name_prefix="pinnace-sqlite-read")
        self._writer = threading.Thread(
            target=self._run_writer, name="pinnace-sqlite-write", daemon=True
        )
        self._writer.start()
        if self._owner and self._compact_done < self._compacted:
            await self._finish_compaction()
        if self._owner and self._compact_interval > 0:
            self._compactor = asyncio.create_task(self._compact_loop())

    def _connect(self, busy_timeout_ms: int = 10_000, cache_kib: int = 32_000) -> sqlite3.Connection:
        # Autocommit mode: transactions are begun and ended explicitly.
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        conn.execute(f"PRAGMA busy_timeout = {busy_timeout_ms}")
        conn.execute(f"PRAGMA synchronous = {self._synchronous}")
        conn.execute(f"PRAGMA cache_size = {-cache_kib}")
        return conn

    def _open_writer(self) -> None:
        # Unshared, the revision counter lives in this process: a second
        # process writing the same file would hand out the same revisions,
        # so it takes the file exclusively. Shared processes hold it shared:
        # they keep an unshared server off the file (and it them), even
        # while one of them restarts. Locks go away with the process,
        # however it dies.
        lock_fd = os.open(self.path + ".lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(lock_fd, (fcntl.LOCK_SH if self._shared else fcntl.LOCK_EX) |
                        fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(lock_fd)
            raise StoreError(f"{self.path} is in use by another process") from None
        self._lock_fd = lock_fd
        if self._shared and self._owner:
            # One process compacts: the owner, unless another one already does.
            fd = os.open(self.path + ".compact", os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                self._compact_fd = fd
            except BlockingIOError:
                os.close(fd)
                self._owner = False
                log.info("another process compacts %s", self.path)
        if self._shared:
            self._wlock_fd = os.open(self.path + ".wlock", os.O_RDWR | os.O_CREAT, 0o600)
            # Processes opening a new file together would race to switch it to
            # WAL, and SQLite answers "database is locked" to the loser without
            # waiting: they take turns under the write lock.
            fcntl.flock(self._wlock_fd, fcntl.LOCK_EX)
        try:
            conn = self._connect()
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise StoreError(f"{self.path}: cannot switch to WAL mode (got {mode})")
            conn.executescript(_SCHEMA)
        finally:
            if self._wlock_fd is not None:
                fcntl.flock(self._wlock_fd, fcntl.LOCK_UN)
        meta = dict(conn.execute("SELECT name, value FROM meta").fetchall())
        self._compacted = int(meta.get("compact_rev", 0))
        self._compact_done = int(meta.get("compact_done", 0))
        top = conn.execute("SELECT MAX(id) FROM kv").fetchone()[0] or 0
        # Compaction may have removed the newest row (a deletion), but never
        # one above the compacted revision, so this is the last revision used.
        self._wrev = max(top, self._compacted)
        self._data_version = conn.execute("PRAGMA data_version").fetchone()[0]
        self._wconn = conn

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._compactor is not None:
            self._compactor.cancel()
            try:
                await self._compactor
            except asyncio.CancelledError:
                pass
        if self._writer is not None:
            self._queue.put(_STOP)
            await asyncio.to_thread(self._writer.join)
        if self._readers is not None:
            self._readers.shutdown(wait=True)
        for conn in self._rconns:
            conn.close()
        if self._lconn is not None:
            self._lconn.close()
        if self._wconn is not None:
            self._wconn.close()
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # releases the flock
        for fd in (self._wlock_fd, self._compact_fd):
            if fd is not None:
                os.close(fd)
        self._broadcaster.close_all()

    # ---- writes: queued to the writer thread ----

    def _submit(self, kind: str, key: str, value: bytes, mod_revision: int) -> asyncio.Future[Any]:
        if self._closed or self._loop is None:
            raise StoreError("store is closed" if self._closed else "store not started")
        fut: asyncio.Future[Any] = self._loop.create_future()
        self._queue.put(_Op(kind, key, value, mod_revision, fut))
        return fut

    async def create(self, key: str, value: bytes) -> KeyValue:
        return await self._submit("create", key, value, 0)  # type: ignore[no-any-return]

    async def update(self, key: str, value: bytes, mod_revision: int) -> KeyValue:
        return await self._submit("update", key, value, mod_revision)  # type: ignore[no-any-return]

    async def delete(self, key: str, mod_revision: int = 0) -> KeyValue:
        return await self._submit("delete", key, b"", mod_revision)  # type: ignore[no-any-return]

    async def _call(self, fn: Callable[..., T], *args: Any) -> T:
        assert self._loop is not None
        fut: asyncio.Future[T] = self._loop.create_future()
        self._queue.put(_Call(fn, args, fut))
        return await fut

    def _run_writer(self) -> None:
        q = self._queue
        poll = self._poll_interval if self._shared else None
        while True:
            try:
                item = q.get(timeout=poll)
            except queue.Empty:
                self._poll_foreign()
                continue
            if item is _STOP:
                return
            if isinstance(item, _Call):
                self._run_call(item)
                continue
            assert isinstance(item, _Op)
            batch = [item]
            after: object = None
            while len(batch) < self._max_batch:
                try:
                    nxt = q.get_nowait()
                except queue.Empty:
                    break
                if isinstance(nxt, _Op):
                    batch.append(nxt)
                else:
                    after = nxt
                    break
            self._commit_batch(batch)
            if after is _STOP:
                return
            if isinstance(after, _Call):
                self._run_call(after)

    # ---- transactions, and other processes' commits ----

    def _begin(self, conn: sqlite3.Connection) -> _Events:
        """Start a write transaction. Shared, take the cross-process write
        lock first and return what other processes committed since this one
        last looked (to be delivered before this transaction's own events)."""
        if not self._shared:
            conn.execute("BEGIN IMMEDIATE")
            return []
        assert self._wlock_fd is not None
        fcntl.flock(self._wlock_fd, fcntl.LOCK_EX)
        try:
            conn.execute("BEGIN IMMEDIATE")
            return self._read_foreign(conn)
        except BaseException:
            _rollback(conn)
            fcntl.flock(self._wlock_fd, fcntl.LOCK_UN)
            raise

    def _end(self, conn: sqlite3.Connection, commit: bool) -> None:
        try:
            try:
                if commit:
                    conn.execute("COMMIT")
                else:
                    _rollback(conn)
            except BaseException:
                _rollback(conn)  # before unlocking: no open write transaction is left behind
                raise
            finally:
                if self._shared:
                    # Our own commit does not change data_version. Read it while
                    # still holding the lock: a commit by another process the
                    # moment we unlock must show as a change to the next poll.
                    self._data_version = conn.execute("PRAGMA data_version").fetchone()[0]
        finally:
            if self._shared:
                assert self._wlock_fd is not None
                fcntl.flock(self._wlock_fd, fcntl.LOCK_UN)

    def _read_foreign(self, conn: sqlite3.Connection) -> _Events:
        """Rows after ``_wrev`` (inside a transaction): other processes' commits."""
        compacted, head = _bounds(conn)
        if head <= self._wrev:
            return []
        if compacted > self._wrev:
            # History this process never saw is gone: its watchers cannot be
            # told what changed, so they are cut off and start over (as from
            # a compacted revision).
            log.warning("missed revisions %d..%d to compaction; restarting watches",
                        self._wrev + 1, compacted)
            self._wrev = head
            self._to_loop(self._lost_history, compacted)
            return []
        out = _events_from_rows(conn.execute(_FOREIGN, (self._wrev,)))
        self._wrev = head
        return out

    def _poll_foreign(self) -> None:
        """Deliver other processes' commits while this one has nothing to write."""
        conn = self._wconn
        assert conn is not None
        first_rev = self._wrev
        try:
            version = conn.execute("PRAGMA data_version").fetchone()[0]
            if version == self._data_version:
                return
            self._data_version = version
            conn.execute("BEGIN")
            try:
                events = self._read_foreign(conn)
            finally:
                conn.execute("COMMIT")
        except sqlite3.Error as e:  # the next poll tries again
            log.warning("reading other processes' writes failed: %s", e)
            self._wrev = first_rev
            self._data_version = 0
            return
        if self._wrev != first_rev:
            self._to_loop(self._deliver, events, [], self._wrev)

    def _lost_history(self, compacted: int) -> None:
        self._compacted = max(self._compacted, compacted)
        self._broadcaster.drop_all()

    def _commit_batch(self, batch: list[_Op]) -> None:
        conn = self._wconn
        assert conn is not None
        first_rev = self._wrev
        answers: list[tuple[asyncio.Future[Any], Any, BaseException | None]] = []
        events: list[Event] = []
        try:
            events = self._begin(conn)
        except BaseException as e:  # noqa: BLE001 - every caller must get an answer
            log.error("write batch of %d failed: %s", len(batch), e)
            self._wrev = first_rev
            self._to_loop(_answer, [(op.future, None, e) for op in batch])
            return
        try:
            for op in batch:
                try:
                    ev = self._apply(conn, op)
                except StoreError as e:
                    answers.append((op.future, None, e))
                else:
                    events.append(ev)
                    answers.append((op.future, ev.kv, None))
            self._end(conn, commit=True)
        except BaseException as e:  # noqa: BLE001 - every caller must get an answer
            log.error("write batch of %d failed: %s", len(batch), e)
            if conn.in_transaction:
                self._end(conn, commit=False)
            # Other processes' rows read in this transaction are read again next time.
            self._wrev = first_rev
            events = []
            answers = [(op.future, None, e) for op in batch]
        self._to_loop(self._deliver, events, answers, self._wrev)

    def _apply(self, conn: sqlite3.Connection, op: _Op) -> Event:
        key = op.key
        row = conn.execute(_LATEST_ROW, (key,)).fetchone()
        live = row is not None and not row[1]
        rev = self._wrev + 1
        if op.kind == "create":
            if live:
                raise KeyExistsError(key)
            conn.execute(_INSERT, (rev, key, 1, 0, rev, row[0] if row else 0, op.value))
            self._wrev = rev
            return Event("ADDED", KeyValue(key, op.value, rev, rev))
        if not live:
            raise KeyNotFoundError(key)
        cur = KeyValue(key, row[3], row[2], row[0])
        if op.kind == "update":
            if cur.mod_revision != op.mod_revision:
                raise ConflictError(key, cur)
            conn.execute(_INSERT, (rev, key, 0, 0, cur.create_revision, cur.mod_revision, op.value))
            self._wrev = rev
            return Event("MODIFIED", KeyValue(key, op.value, cur.create_revision, rev), cur)
        if op.mod_revision and cur.mod_revision != op.mod_revision:
            raise ConflictError(key, cur)
        conn.execute(_INSERT, (rev, key, 0, 1, cur.create_revision, cur.mod_revision, cur.value))
        self._wrev = rev
        return Event("DELETED", KeyValue(key, cur.value, cur.create_revision, rev), cur)

    def _run_call(self, call: _Call) -> None:
        conn = self._wconn
        assert conn is not None
        first_rev = self._wrev
        try:
            foreign = self._begin(conn)
            try:
                result = call.fn(conn, *call.args)
            except BaseException:
                self._end(conn, commit=False)
                raise
            self._end(conn, commit=True)
        except BaseException as e:  # noqa: BLE001 - handed to the caller
            self._wrev = first_rev
            self._to_loop(_answer, [(call.future, None, e)])
        else:
            self._to_loop(self._deliver, foreign, [(call.future, result, None)], self._wrev)

    def _to_loop(self, fn: Callable[..., None], *args: Any) -> None:
        assert self._loop is not None
        try:
            self._loop.call_soon_threadsafe(fn, *args)
        except RuntimeError:  # the loop is gone; nobody is waiting any more
            pass

    def _deliver(
        self,
        events: list[Event],
        answers: list[tuple[asyncio.Future[Any], Any, BaseException | None]],
        rev: int,
    ) -> None:
        # Batches arrive in commit order (one writer thread, FIFO callbacks),
        # so watchers see revisions in order. Publish before answering so a
        # caller that got its revision back can rely on revision() >= it.
        self._rev = max(self._rev, rev)
        if events:
            self._broadcaster.publish(events)
        _answer(answers)

    # ---- reads: single keys on the loop, the rest on the reader pool ----

    def _reader(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._rlocal, "conn", None)
        if conn is None:
            conn = self._connect()
            self._rlocal.conn = conn
            with self._rlock:
                self._rconns.append(conn)
        return conn

    async def _read(self, fn: Callable[..., T], *args: Any) -> T:
        if self._closed or self._loop is None or self._readers is None:
            raise StoreError("store is closed" if self._closed else "store not started")
        return await self._loop.run_in_executor(self._readers, fn, *args)

    def _snapshot(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(conn, compacted, head, *args)`` in one read transaction so
        every statement sees the same committed state."""
        conn = self._reader()
        conn.execute("BEGIN")
        try:
            return fn(conn, *_bounds(conn), *args)
        finally:
            conn.execute("COMMIT")

    async def revision(self) -> int:
        if not self._shared:
            return self._rev
        # Other processes may have written since this one last polled.
        head = await self._read(self._snapshot, _head)
        return max(self._rev, head)

    async def compacted_revision(self) -> int:
        if not self._shared:
            return self._compacted
        # Another process may have compacted since this one last looked.
        compacted = await self._read(self._snapshot, _compacted)
        self._compacted = max(self._compacted, compacted)
        return self._compacted

    async def get(self, key: str) -> KeyValue | None:
        if self._lconn is not None and not self._closed:
            try:
                return _get(self._lconn, key)
            except sqlite3.OperationalError:
                pass  # busy (it never waits on the loop): the pool waits
        return await self._read(self._get, key)

    def _get(self, key: str) -> KeyValue | None:
        return _get(self._reader(), key)

    async def list(
        self, prefix: str, *, start: str = "", limit: int = 0, revision: int = 0
    ) -> ListResult:
        return await self._read(self._snapshot, self._list, prefix, start, limit, revision)

    def _list(
        self,
        conn: sqlite3.Connection,
        compacted: int,
        head: int,
        prefix: str,
        start: str,
        limit: int,
        revision: int,
    ) -> ListResult:
        if revision and revision < compacted:
            raise CompactedError(revision, compacted)
        rev = revision or head
        hi = prefix_end(prefix)
        bounds: tuple[Any, ...] = (
            (max(prefix, start), hi) if hi is not None else (max(prefix, start),)
        )
        params = (*bounds, rev, limit + 1 if limit else -1)
        kvs = [KeyValue(*r) for r in conn.execute(_LIST[hi is not None], params)]
        if any(kvs[i].key >= kvs[i + 1].key for i in range(len(kvs) - 1)):
            # Not the plan we counted on (another SQLite version?): let SQL sort.
            log.warning("list came back out of key order; using ORDER BY")
            kvs = [KeyValue(*r) for r in conn.execute(_LIST_ORDERED[hi is not None], params)]
        if not limit or len(kvs) <= limit:
            return ListResult(kvs, rev, False, 0)
        del kvs[limit:]
        after = (kvs[-1].key, hi) if hi is not None else (kvs[-1].key,)
        remaining = conn.execute(_COUNT_AFTER[hi is not None], (*after, rev)).fetchone()[0]
        return ListResult(kvs, rev, True, remaining)

    async def count(self, prefix: str) -> int:
        return await self._read(self._snapshot, self._count, prefix)

    def _count(self, conn: sqlite3.Connection, compacted: int, head: int, prefix: str) -> int:
        hi = prefix_end(prefix)
        bounds = (prefix, hi) if hi is not None else (prefix,)
        return int(conn.execute(_COUNT_FROM[hi is not None], (*bounds, head)).fetchone()[0])

    def watch(self, prefix: str, after: int) -> Watch:
        return BroadcastWatch(
            self._broadcaster, prefix, after, self._backlog, self.compacted_revision
        )

    async def _backlog(self, prefix: str, after: int) -> _Events:
        return await self._read(self._snapshot, self._read_backlog, prefix, after)

    def _read_backlog(
        self, conn: sqlite3.Connection, compacted: int, head: int, prefix: str, after: int
    ) -> _Events:
        # Checked again inside the snapshot: compaction may have started
        # after the watch looked at the compacted revision.
        if after < compacted:
            raise CompactedError(after, compacted)
        hi = prefix_end(prefix)
        bounds = (prefix, hi) if hi is not None else (prefix,)
        return _events_from_rows(conn.execute(_BACKLOG[hi is not None], (after, *bounds)))

    # ---- compaction ----

    async def compact(self, revision: int) -> None:
        assert self._compact_lock is not None
        async with self._compact_lock:
            revision = min(revision, self._rev)
            if revision <= self._compacted:
                return
            # The logical compaction point is committed first: readers check
            # it in their snapshot, so none can see half-deleted history.
            await self._call(_set_meta, "compact_rev", revision)
            self._compacted = revision
            await self._finish_compaction()

    async def _finish_compaction(self) -> None:
        """Delete rows made unreadable by compaction, a batch per transaction so
        writes keep flowing in between; resumable after a crash."""
        target = self._compacted
        lo = self._compact_done
        while lo < target:
            hi = min(lo + self._compact_batch, target)
            await self._call(_delete_compacted, lo, hi)
            self._compact_done = lo = hi

    async def _compact_loop(self) -> None:
        samples: deque[tuple[float, int]] = deque()
        while True:
            await asyncio.sleep(self._compact_interval)
            now = time.monotonic()
            samples.append((now, self._rev))
            # The revision that was current keep_seconds ago (0 if the store
            # is younger than that): history after it is kept.
            cutoff = now - self._keep_seconds
            while len(samples) > 1 and samples[1][0] <= cutoff:
                samples.popleft()
            old_enough = samples[0][1] if samples[0][0] <= cutoff else 0
            target = min(self._rev - self._keep_revisions, old_enough)
            if target > self._compacted:
                try:
                    await self.compact(target)
                    log.debug("compacted to revision %d", target)
                except Exception:
                    log.exception("compaction to revision %d failed", target)


def _get(conn: sqlite3.Connection, key: str) -> KeyValue | None:
    row = conn.execute(_LATEST_ROW, (key,)).fetchone()
    if row is None or row[1]:
        return None
    return KeyValue(key, row[3], row[2], row[0])


def _head(conn: sqlite3.Connection, compacted: int, head: int) -> int:
    return head


def _compacted(conn: sqlite3.Connection, compacted: int, head: int) -> int:
    return compacted


def _events_from_rows(rows: Any) -> _Events:
    """Events from log rows (id, name, created, deleted, create_revision,
    prev_revision, value, value of the superseded row)."""
    out: _Events = []
    for rid, name, created, deleted, crev, prev, value, prev_value in rows:
        kv = KeyValue(name, value, crev, rid)
        if created:
            out.append(Event("ADDED", kv))
        elif deleted:
            out.append(Event("DELETED", kv, KeyValue(name, value, crev, prev)))
        else:
            old = KeyValue(name, prev_value, crev, prev) if prev_value is not None else None
            out.append(Event("MODIFIED", kv, old))
    return out


def _answer(answers: list[tuple[asyncio.Future[Any], Any, BaseException | None]]) -> None:
    for fut, result, exc in answers:
        if fut.done():  # the caller gave up (cancelled)
            continue
        if exc is not None:
            fut.set_exception(exc)
        else:
            fut.set_result(result)


def _rollback(conn: sqlite3.Connection) -> None:
    try:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
    except sqlite3.Error:
        log.exception("rollback failed")


def _set_meta(conn: sqlite3.Connection, name: str, value: int) -> None:
    conn.execute(
        "INSERT INTO meta (name, value) VALUES (?, ?)"
        " ON CONFLICT (name) DO UPDATE SET value = excluded.value",
        (name, value),
    )


def _delete_compacted(conn: sqlite3.Connection, lo: int, hi: int) -> None:
    # Every superseded row is the prev_revision of the row that replaced it,
    # so the rows replaced in (lo, hi] are exactly the ones nobody can read
    # at or after the compaction point. A deletion row at or below it is
    # unreadable too; the rows it replaced go in the same transaction, so a
    # deleted key never reappears.
    conn.execute(
        "DELETE FROM kv WHERE id IN"
        " (SELECT prev_revision FROM kv WHERE id > ? AND id <= ? AND prev_revision != 0)",
        (lo, hi),
    )
    conn.execute("DELETE FROM kv WHERE id > ? AND id <= ? AND deleted = 1", (lo, hi))
    _set_meta(conn, "compact_done", hi)
