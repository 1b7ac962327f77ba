"""The audit log file (--audit-log-path): events are queued by the request
path and written, rendered to JSON lines, by one background thread, so a
request never waits on the disk. The queue is bounded: past
``buffer_size`` events waiting, new ones are dropped and counted (as
upstream's batch mode drops when its buffer is full), never blocking.

Every batch goes to the file in one write() on a descriptor opened with
O_APPEND, so several API server processes can append to one file: each
line lands whole. Size-based rotation as upstream's lumberjack does it:
past ``max_size_mb`` the file is renamed to NAME-<UTC time>.EXT and a new
one started; backups beyond ``max_backups`` or older than ``max_age_days``
are removed (0: no limit). Only the process given ``rotate`` renames; the
others notice the file they write to is no longer at ``path`` and reopen it.
"""

from __future__ import annotations

import collections
import datetime as dt
import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

log = logging.getLogger("pinnace.apiserver.audit")

BACKUP_TIME_FORMAT = "%Y-%m-%dT%H-%M-%S"  # then ".mmm", as lumberjack's 2006-01-02T15-04-05.000
MB = 1024 * 1024
BATCH_BYTES = 4 * MB  # the most one write() carries
BATCH_WINDOW = 0.05  # seconds the writer waits after the first event of a batch


class AuditLog:
    def __init__(self, path: str, max_size_mb: int = 100, max_backups: int = 100,
                 max_age_days: int = 366, rotate: bool = True, buffer_size: int = 10_000,
                 render: Callable[[Any], bytes] | None = None,
                 clock: Callable[[], float] = time.time):
        self.path = path
        self.max_bytes = max_size_mb * MB
        self.max_backups = max_backups
        self.max_age_days = max_age_days
        self.rotate_here = rotate and path != "-"
        self.buffer_size = buffer_size
        self.render = render or _as_bytes
        self.clock = clock
        self.dropped = 0
        self.written = 0
        self._queue: collections.deque[Any] = collections.deque()
        self._wake = threading.Event()
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._fd = -1
        self._size = 0
        self._last_drop_warning = 0.0

    # -- the request side (event loop) -------------------------------------

    def put(self, item: Any) -> bool:
        """Queue one event; False (and counted) when the buffer is full."""
        queue = self._queue
        if len(queue) >= self.buffer_size:
            self.dropped += 1
            return False
        queue.append(item)
        if len(queue) == 1:
            self._wake.set()
        return True

    # -- lifecycle -----------------------------------------------------------

    def open(self) -> None:
        """Open (creating, mode 0600, directory 0700) the file; OSError if it cannot be."""
        if self.path == "-":
            self._fd = os.dup(1)
            return
        Path(self.path).parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._reopen()
        if self.rotate_here and self.max_bytes and self._size >= self.max_bytes:
            self._rotate()

    def start(self) -> None:
        if self._fd < 0:
            self.open()
        self._thread = threading.Thread(target=self._run, name="audit-log", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Write what is queued, then close."""
        self._stopping = True
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        else:
            self.flush()
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    # -- the writer thread -----------------------------------------------------

    def _run(self) -> None:
        while True:
            if self._wake.wait(1.0) and not self._stopping:
                # Let a batch gather: one wake-up (one GIL hand-over, one
                # write) per BATCH_WINDOW, not one per event.
                time.sleep(BATCH_WINDOW)
            self._wake.clear()
            try:
                self.flush()
                if not self._queue and self.rotate_here and self.max_bytes:
                    # Other processes may have filled the file meanwhile.
                    self._size = os.fstat(self._fd).st_size
                    if self._size > self.max_bytes:
                        self._rotate()
            except Exception:  # keep logging: a full disk may clear up
                log.exception("writing the audit log %s failed", self.path)
                time.sleep(1)
            if self._stopping and not self._queue:
                return

    def flush(self) -> None:
        """Render and write everything queued (in batches)."""
        queue = self._queue
        while queue:
            lines: list[bytes] = []
            size = 0
            while queue and size < BATCH_BYTES:
                try:
                    line = self.render(queue.popleft())
                except Exception:
                    log.exception("cannot render an audit event")
                    continue
                lines.append(line)
                size += len(line)
            if lines:
                self._write(b"".join(lines), len(lines))
        if self.dropped and self.clock() - self._last_drop_warning > 10:
            self._last_drop_warning = self.clock()
            log.warning("audit buffer full: %d events dropped so far", self.dropped)

    def _write(self, data: bytes, count: int) -> None:
        if self.path != "-":
            self._follow_rotation()
            if self.rotate_here and self.max_bytes and self._size > 0 and \
                    self._size + len(data) > self.max_bytes:
                self._rotate()
        view = memoryview(data)
        while view:
            n = os.write(self._fd, view)
            view = view[n:]
        self._size += len(data)
        self.written += count

    def _follow_rotation(self) -> None:
        """Reopen ``path`` when the file written to is no longer there
        (another process rotated it); learn its size."""
        try:
            at_path = os.stat(self.path)
        except FileNotFoundError:
            self._reopen()
            return
        mine = os.fstat(self._fd)
        if (at_path.st_ino, at_path.st_dev) != (mine.st_ino, mine.st_dev):
            self._reopen()
        else:
            self._size = mine.st_size

    def _reopen(self) -> None:
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
        if self._fd >= 0:
            os.close(self._fd)
        self._fd = fd
        self._size = os.fstat(fd).st_size

    def _rotate(self) -> None:
        now = self.clock()
        backup = backup_name(self.path, now)
        try:
            os.rename(self.path, backup)
        except FileNotFoundError:
            pass
        self._reopen()
        self._remove_old(now)

    def _remove_old(self, now: float) -> None:
        backups = sorted(list_backups(self.path), reverse=True)  # newest first
        doomed: set[str] = set()
        if self.max_backups > 0:
            doomed.update(p for _, p in backups[self.max_backups:])
        if self.max_age_days > 0:
            cutoff = now - self.max_age_days * 86400
            doomed.update(p for t, p in backups if t < cutoff)
        for p in doomed:
            try:
                os.remove(p)
            except FileNotFoundError:
                pass


def _as_bytes(item: Any) -> bytes:
    return item if isinstance(item, bytes) else bytes(item)


def _split(path: str) -> tuple[str, str, str]:
    directory, name = os.path.split(path)
    stem, ext = os.path.splitext(name)
    return directory, stem, ext


def backup_name(path: str, when: float) -> str:
    """NAME-2026-12-05T10-00-00.123.EXT, the time in UTC (lumberjack's form)."""
    directory, stem, ext = _split(path)
    t = dt.datetime.fromtimestamp(when, dt.UTC)
    stamp = f"{t.strftime(BACKUP_TIME_FORMAT)}.{t.microsecond // 1000:03d}"
    return os.path.join(directory, f"{stem}-{stamp}{ext}")


def list_backups(path: str) -> list[tuple[float, str]]:
    """(time in the name, path) of every backup of ``path``."""
    directory, stem, ext = _split(path)
    out = []
    try:
        names = os.listdir(directory or ".")
    except OSError:
        return []
    prefix = stem + "-"
    for name in names:
        if not name.startswith(prefix) or not name.endswith(ext) or len(name) <= len(prefix):
            continue
        stamp = name[len(prefix):len(name) - len(ext)] if ext else name[len(prefix):]
        try:
            t = dt.datetime.strptime(stamp, BACKUP_TIME_FORMAT + ".%f").replace(tzinfo=dt.UTC)
        except ValueError:
            continue
        out.append((t.timestamp(), os.path.join(directory, name)))
    return out
