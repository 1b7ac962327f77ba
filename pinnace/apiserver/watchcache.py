"""One storage watch per resource, fanned out to every API watcher.

Each resource's cache keeps a window of its most recent events, bounded in
count, in bytes and in age. A client watching from revision R is served from the
window when R is inside it (the common case: informers watch from their
list's revision); otherwise it gets its own storage watch, so only true
compaction answers 410 Gone.

Memory: an event keeps one copy of its value, the stored bytes; the value
it replaced is the very bytes object of the key's event before it when that
is in the window (a MODIFIED's previous value, a DELETED's value), not a
second copy. Decoded objects and encoded lines other than plain JSON are
made on demand, shared by the watchers woken together, and dropped at the
next wake-up; a plain JSON line is framed from the stored bytes when sent.
"""

from __future__ import annotations

import asyncio
import bisect
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

from pinnace.runtime import release_memory
from pinnace.storage.interface import CompactedError, Event, Store, WatchClosedError

from . import codec

log = logging.getLogger("pinnace.apiserver.watchcache")

_CLOSED = object()

# How many bytes of stored values each resource's window may hold (besides
# its 10,000 events): a watcher from an older revision reads storage instead.
DEFAULT_WINDOW_BYTES = 64 * 1024 * 1024
# Beyond its newest KEEP_EVENTS, an event leaves the window once it is
# FRESH_SECONDS old: upstream's watch cache keeps events 75 s
# (eventFreshDuration) and at least 100. A watcher resuming from before the
# window reads storage, so this costs a reconnecting client nothing but the
# storage read.
FRESH_SECONDS = 75.0
KEEP_EVENTS = 100
_AGE_SLACK = 5.0  # age events in batches, not one timer per event
# Freeing this much of the window hands the memory back to the OS.
RELEASE_BYTES = 8 * 1024 * 1024


class CacheEvent:
    """A storage event: its stored bytes (and those of the value it
    replaced), and its decoded and encoded forms, made on demand. In a
    resource's cache those forms last until the cache's next wake-up (they
    serve the watchers woken together), so the window holds one copy of
    each value, not four."""

    __slots__ = ("_obj", "_prev", "_wire", "at", "heir", "key", "owner", "prev_raw", "raw",
                 "rev", "size", "type")

    def __init__(self, ev: Event, owner: ResourceCache | None = None,
                 prev_raw: bytes | None = None):
        self.type = ev.type
        self.key = ev.kv.key
        self.rev = ev.kv.mod_revision
        self.raw = ev.kv.value
        self.prev_raw = prev_raw if prev_raw is not None else \
            ev.prev.value if ev.prev is not None else None
        self._obj: dict[str, Any] | None = None
        self._prev: dict[str, Any] | None = None
        self._wire: dict[Any, bytes] | None = None  # encoded forms by format key
        self.owner = owner  # the cache that sheds the forms at its wake-ups
        # Bytes this event keeps alive in its cache's window (set by the cache):
        # its value, and its previous one unless an older event holds it.
        self.size = 0
        self.heir: CacheEvent | None = None  # the key's next event, sharing our value
        self.at = 0.0  # when its cache took it in (the loop's clock)

    def _made_form(self) -> None:
        if self.owner is not None:
            self.owner._dressed.append(self)

    @property
    def obj(self) -> dict[str, Any]:
        if self._obj is None:
            self._obj = codec.decode_stored(self.raw, self.rev)
            self._made_form()
        return self._obj

    @property
    def prev(self) -> dict[str, Any] | None:
        if self._prev is None and self.prev_raw is not None:
            self._prev = codec.decode_stored(self.prev_raw, self.rev)
            self._made_form()
        return self._prev

    def encoded(self, key: Any) -> bytes | None:
        """The encoded form made for ``key`` (a format), if it still is."""
        return self._wire.get(key) if self._wire is not None else None

    def remember(self, key: Any, line: bytes) -> None:
        if self._wire is None:
            self._wire = {}
            self._made_form()
        self._wire[key] = line

    def shed(self) -> None:
        """Drop the decoded and encoded forms (they are made again if asked for)."""
        self._obj = self._prev = self._wire = None


class TooOldError(Exception):
    pass


class ResourceCache:
    """The recent events of one resource, in a list read by many cursors.

    Appending an event costs the same however many watch it: watchers are
    not handed each event, they read what is new from the list when woken.
    Wake-ups are coalesced: at most one per ``_interval()`` seconds, longer
    the more watchers there are, so a burst of events costs each watcher one
    wake-up and one write, not one per event."""

    def __init__(self, store: Store, prefix: str, size: int = 10_000,
                 max_bytes: int = DEFAULT_WINDOW_BYTES):
        self.store = store
        self.prefix = prefix
        self.size = size
        self.max_bytes = max_bytes
        self.events: list[CacheEvent] = []
        self.bytes = 0  # what the events in the window hold (CacheEvent.size)
        # The newest event of each key in the window: the next event of the
        # key shares its bytes as its previous value instead of a copy.
        self._latest: dict[str, CacheEvent] = {}
        # Events that made a decoded or encoded form since the last wake-up.
        self._dressed: list[CacheEvent] = []
        self.base = 0  # sequence number of events[0]; a cursor is a sequence number
        self.window_start = 0  # every event with rev > window_start is in the list
        self.last_rev = 0  # the newest revision this cache has seen (for bookmarks)
        self.generation = 0  # moves when the cache restarts: every cursor is then cut off
        self.streams: set[WatchStream] = set()
        self._waiting: set[WatchStream] = set()
        self._wake_handle: asyncio.Handle | None = None
        self._expiry_handle: asyncio.Handle | None = None
        self._age_handle: asyncio.TimerHandle | None = None
        self._last_wake = 0.0
        # What the watchers woken together ask for alike, made once per wake-up:
        # (prefix, first, last sequence number) -> the events under prefix.
        self._batches: dict[tuple[str, int, int], list[CacheEvent]] = {}
        # The encoded form of those batches, by the writers (handlers._EventWriter):
        # kept for one wake-up only, so memory does not grow with the history.
        self.joined: dict[Any, bytes] = {}
        self._task: asyncio.Task[None] | None = None

    def started(self) -> bool:
        return self._task is not None

    def start(self, after: int) -> None:
        self.window_start = self.last_rev = after
        self._task = asyncio.create_task(self._pump(after), name=f"watchcache {self.prefix}")

    @property
    def end(self) -> int:
        """The sequence number the next event will get."""
        return self.base + len(self.events)

    def _admit(self, ev: Event) -> CacheEvent:
        """The cache's event for a storage event, its previous value shared
        with the key's last event in the window when that is the one replaced."""
        last = self._latest.get(ev.kv.key) if ev.prev is not None else None
        if last is None or ev.prev is None or last.rev != ev.prev.mod_revision:
            ce = CacheEvent(ev, self)
            ce.size = len(ce.raw)
            if ce.prev_raw is not None and ce.prev_raw is not ce.raw:
                ce.size += len(ce.prev_raw)
            return ce
        ce = CacheEvent(ev, self, last.raw)
        last.heir = ce
        if ce.type == "DELETED" and ce.raw == last.raw:
            ce.raw = last.raw  # a deletion's value is the one it removed
        else:
            ce.size = len(ce.raw)
        return ce

    def _append(self, ce: CacheEvent) -> None:
        events = self.events
        events.append(ce)
        self._latest[ce.key] = ce
        self.bytes += ce.size
        self.last_rev = ce.rev
        loop = asyncio.get_running_loop()
        ce.at = loop.time()
        if len(events) >= self.size + self.size // 4 or \
                (self.bytes > self.max_bytes and len(events) > 1):
            self._trim()
        if self._age_handle is None and len(events) > KEEP_EVENTS:
            self._age_handle = loop.call_at(events[0].at + FRESH_SECONDS + _AGE_SLACK,
                                            self._age)
        self._schedule_wake()

    def _trim(self) -> None:
        """Drop the oldest events, in bulk (amortized O(1) per event, and
        cursors stay plain ints): down to ``size`` events and to at most
        7/8 of ``max_bytes`` (the newest event always stays)."""
        events = self.events
        cut = max(0, len(events) - self.size)
        dropped = sum(e.size for e in events[:cut])
        goal = self.max_bytes - self.max_bytes // 8
        while self.bytes - dropped > goal and cut < len(events) - 1:
            dropped += events[cut].size
            cut += 1
        self._drop(cut)

    def _age(self) -> None:
        """Drop the events older than FRESH_SECONDS but the newest
        KEEP_EVENTS, as upstream's cache shrinks to what is fresh: once a
        burst of writes is over (or its objects deleted), the window's
        memory goes back to the process, not only to a later burst."""
        self._age_handle = None
        loop = asyncio.get_running_loop()
        stale = loop.time() - FRESH_SECONDS
        events = self.events
        last = len(events) - KEEP_EVENTS
        cut = 0
        while cut < last and events[cut].at <= stale:
            cut += 1
        freed = self._drop(cut)
        if freed >= RELEASE_BYTES:
            release_memory()
        if len(events) > KEEP_EVENTS:
            self._age_handle = loop.call_at(events[0].at + FRESH_SECONDS + _AGE_SLACK, self._age)

    def _drop(self, cut: int) -> int:
        """Drop the oldest ``cut`` events; the bytes the window no longer
        holds. A dropped event's value that a later event shares stays,
        counted by that one."""
        if not cut:
            return 0
        events = self.events
        dropped = sum(e.size for e in events[:cut])
        last_cut = events[cut - 1].rev
        for e in events[:cut]:
            if self._latest.get(e.key) is e:
                del self._latest[e.key]
            heir = e.heir
            if heir is not None and heir.rev > last_cut:
                heir.size += len(e.raw)  # it keeps the value alive now
                dropped -= len(e.raw)
            e.heir = None
        self.window_start = last_cut
        del events[:cut]
        self.base += cut
        self.bytes -= dropped
        return dropped

    def _interval(self) -> float:
        # A wake-up costs each watcher some 20-40 µs, most of it one TLS
        # write: space them 80 µs per watcher (2 ms to 100 ms apart), so a
        # thousand watchers cost ~12,500 wake-ups a second whatever the
        # event rate, and the latency added stays under 100 ms.
        return min(0.1, max(0.002, 0.00008 * len(self.streams)))

    def _schedule_wake(self) -> None:
        if self._wake_handle is not None or not self._waiting:
            return
        loop = asyncio.get_running_loop()
        delay = self._last_wake + self._interval() - loop.time()
        self._wake_handle = loop.call_soon(self._wake) if delay <= 0 else \
            loop.call_later(delay, self._wake)

    def _shed(self) -> None:
        for ev in self._dressed:
            ev.shed()
        self._dressed.clear()

    def _wake(self) -> None:
        self._wake_handle = None
        self._last_wake = asyncio.get_running_loop().time()
        self._batches.clear()
        self.joined.clear()
        self._shed()
        waiting, self._waiting = self._waiting, set()
        for stream in waiting:
            if stream.push is None:
                stream.wake()
                continue
            try:
                pushed = stream.try_push()
            except Exception:  # the watcher's task meets it (and ends its watch)
                log.exception("writing a watch batch failed")
                pushed = False
            if pushed:
                self._waiting.add(stream)  # written from here; its task sleeps on
            else:
                stream.wake()

    def forget(self, stream: WatchStream) -> None:
        self.streams.discard(stream)
        self._waiting.discard(stream)

    def wait(self, stream: WatchStream) -> None:
        self._waiting.add(stream)
        if self.end > stream.seq:  # something arrived meanwhile
            self._schedule_wake()
        if stream.deadline is not None and self._expiry_handle is None:
            self._expiry_handle = asyncio.get_running_loop().call_later(_EXPIRY_TICK,
                                                                        self._expire)

    def _expire(self) -> None:
        """Wake the waiting watchers whose timeout has passed. One timer for
        all of them, a quarter second apart, instead of one per wait."""
        self._expiry_handle = None
        now = asyncio.get_running_loop().time()
        pending = False
        for stream in tuple(self._waiting):
            if stream.deadline is None:
                continue
            if stream.deadline <= now:
                self._waiting.discard(stream)
                stream.wake()
            else:
                pending = True
        if pending:
            self._expiry_handle = asyncio.get_running_loop().call_later(_EXPIRY_TICK,
                                                                        self._expire)

    def batch(self, prefix: str, whole: bool, first: int, last: int) -> list[CacheEvent]:
        """The events with sequence numbers [first, last) under ``prefix``,
        shared by every watcher that asks for the same ones in this wake-up
        (callers treat it as read-only)."""
        key = (prefix, first, last)
        got = self._batches.get(key)
        if got is None:
            i, j = first - self.base, last - self.base
            got = self.events[i:j] if whole else \
                [e for e in self.events[i:j] if e.key.startswith(prefix)]
            self._batches[key] = got
        return got

    def seq_after(self, rev: int) -> int:
        """The cursor of the first event with a revision above ``rev``."""
        return self.base + bisect.bisect_right(self.events, rev, key=_rev)

    async def _pump(self, after: int) -> None:
        while True:
            try:
                async for ev in self.store.watch(self.prefix, after):
                    self._append(self._admit(ev))
                return
            except (CompactedError, WatchClosedError) as e:
                log.info("watch cache %s restarting: %s", self.prefix, e)
            except asyncio.CancelledError:
                raise
            except Exception:  # pragma: no cover - keep serving after a backend hiccup
                log.exception("watch cache %s failed; restarting", self.prefix)
                await asyncio.sleep(0.5)
            # Everyone watching through us may have missed events: cut them
            # off so they re-watch (and re-list if their revision is gone).
            # Nothing awaits between the cut-off and the new start, so no
            # watcher can join in between and miss what comes before it.
            after = await self.store.revision()
            self._cut_off()
            self.base += len(self.events)  # cursors never point into the new list by mistake
            self.events.clear()
            self._latest.clear()
            self.bytes = 0
            self.window_start = self.last_rev = after

    def _cut_off(self) -> None:
        self.generation += 1
        self._batches.clear()
        self.joined.clear()
        self._shed()
        for stream in tuple(self.streams):
            stream.wake()
        self.streams.clear()
        self._waiting.clear()

    def subscribe(self, prefix: str, after: int) -> WatchStream:
        if after < self.window_start:
            raise TooOldError()
        stream = WatchStream(prefix, self, self.seq_after(after), after)
        self.streams.add(stream)
        return stream

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):
                pass
        for handle in (self._wake_handle, self._expiry_handle, self._age_handle):
            if handle is not None:
                handle.cancel()
        self._cut_off()


def _rev(ev: CacheEvent) -> int:
    return ev.rev


_EXPIRY_TICK = 0.25  # seconds: how late a watch's timeout may fire


class WatchStream:
    """One watcher's cursor into its resource's cache: batches of the events
    it has not seen yet, all that is new at once (up to ``limit``)."""

    def __init__(self, prefix: str, cache: ResourceCache, seq: int, after: int):
        self.prefix = prefix
        self.whole = prefix == cache.prefix  # nothing to filter out
        self.cache = cache
        self.seq = seq
        # A watch may start from a revision this cache has not seen yet (it
        # was written through another API server on the store): the events
        # up to it are not for this watcher.
        self.after = after
        self.generation = cache.generation
        self.deadline: float | None = None  # loop time at which a wait gives up
        self._waiter: asyncio.Future[None] | None = None
        # Set by a watch handler that can write a batch at once, from the
        # wake-up itself (True: written), so a watcher costs no task switch
        # per wake-up; its task only wakes for what needs awaiting.
        self.push: Callable[[list[CacheEvent]], bool] | None = None
        self._pending: list[CacheEvent] | None = None

    def wake(self) -> None:
        w = self._waiter
        if w is not None and not w.done():
            w.set_result(None)

    async def next_batch(self, timeout: float | None, limit: int = 500
                         ) -> list[CacheEvent] | None:
        """Events not seen yet (at least one, waiting up to ``timeout``): []
        on timeout, None once the stream has ended (the cache restarted, or
        this watcher fell so far behind that its events are gone)."""
        loop = asyncio.get_running_loop()
        self.deadline = None if timeout is None else loop.time() + timeout
        while True:
            if self._pending is not None:  # what a push could not write
                batch, self._pending = self._pending, None
                return batch
            got = self._take(limit)
            if got is None or got:
                return got
            if self.deadline is not None and self.deadline <= loop.time():
                return []
            self._waiter = loop.create_future()
            self.cache.wait(self)
            try:
                await self._waiter
            finally:
                self._waiter = None

    def _take(self, limit: int = 500) -> list[CacheEvent] | None:
        """What is new for this watcher now: [] when nothing, None once the
        stream has ended."""
        cache = self.cache
        while True:
            if self.generation != cache.generation:
                return None
            i = self.seq - cache.base
            if i < 0:
                return None  # overtaken by the trimming: it re-watches
            n = len(cache.events)
            if i >= n:
                return []
            first = self.seq
            self.seq = cache.base + min(n, i + limit)
            batch = cache.batch(self.prefix, self.whole, first, self.seq)
            if batch and batch[0].rev <= self.after:
                batch = [e for e in batch if e.rev > self.after]
            if batch:
                return batch

    def try_push(self) -> bool:
        """Write everything new through ``push`` now; False when the task
        must wake instead (the stream ended, or a write has to wait: the
        batch is then the task's to write). A push that raises leaves its
        batch to the task too."""
        assert self.push is not None
        while True:
            batch = self._take()
            if batch is None:
                return False
            if not batch:
                return True
            self._pending = batch
            if not self.push(batch):
                return False
            self._pending = None

    def close(self) -> None:
        self.cache.forget(self)


class _DirectStream:
    """A watcher from a revision older than its cache holds: it reads the
    store's history through a storage watch of its own."""

    def __init__(self, events: AsyncIterator[CacheEvent], maxsize: int = 10_000):
        # Bounded: a client that stops reading holds up its storage watch,
        # which the store then drops (WatchClosedError), ending this stream.
        self._queue: asyncio.Queue[Any] = asyncio.Queue(maxsize)
        self._pump = asyncio.create_task(self._feed(events))

    async def _feed(self, events: AsyncIterator[CacheEvent]) -> None:
        try:
            async for ev in events:
                await self._queue.put(ev)
            await self._queue.put(_CLOSED)
        except Exception as e:  # a compaction mid-replay ends the stream with an error
            await self._queue.put(e)

    async def next_batch(self, timeout: float | None, limit: int = 500
                         ) -> list[CacheEvent] | None:
        q = self._queue
        if q.empty():
            try:
                first = await asyncio.wait_for(q.get(), timeout) if timeout is not None \
                    else await q.get()
            except asyncio.TimeoutError:
                return []
        else:
            first = q.get_nowait()
        out: list[CacheEvent] = []
        item = first
        while True:
            if item is _CLOSED:
                if not out:
                    return None
                q.put_nowait(_CLOSED)  # end after delivering what came before
                return out
            if isinstance(item, Exception):
                raise item
            out.append(item)
            if len(out) >= limit or q.empty():
                return out
            item = q.get_nowait()

    def close(self) -> None:
        self._pump.cancel()


class WatchCache:
    def __init__(self, store: Store, size: int = 10_000,
                 max_bytes: int = DEFAULT_WINDOW_BYTES):
        self.store = store
        self.size = size
        self.max_bytes = max_bytes
        self.caches: dict[str, ResourceCache] = {}

    async def stream(self, prefix: str, after: int) -> WatchStream | _DirectStream:
        """A stream of events under ``prefix`` (a resource's prefix, optionally
        narrowed to a namespace) with revision > ``after``. Raises
        CompactedError when that history is gone."""
        resource_prefix = "/".join(prefix.split("/")[:4]) + "/"
        cache = self.caches.get(resource_prefix)
        if cache is None:
            cache = self.caches[resource_prefix] = ResourceCache(self.store, resource_prefix,
                                                                 self.size, self.max_bytes)
        if not cache.started():
            compacted = await self.store.compacted_revision()
            if after < compacted:
                raise CompactedError(after, compacted)
            if not cache.started():
                cache.start(after)
        try:
            return cache.subscribe(prefix, after)
        except TooOldError:
            # Older than the cache: this watcher reads storage history itself.
            compacted = await self.store.compacted_revision()
            if after < compacted:
                raise CompactedError(after, compacted) from None
            return _DirectStream(self._direct(prefix, after))

    async def events(self, prefix: str, after: int) -> AsyncIterator[CacheEvent]:
        """The same events one at a time (for in-process callers)."""
        stream = await self.stream(prefix, after)
        try:
            while True:
                batch = await stream.next_batch(None)
                if batch is None:
                    return
                for ev in batch:
                    yield ev
        finally:
            stream.close()

    async def _direct(self, prefix: str, after: int) -> AsyncIterator[CacheEvent]:
        w = self.store.watch(prefix, after)
        try:
            async for ev in w:
                yield CacheEvent(ev)
        except WatchClosedError:
            return
        finally:
            await w.close()

    def last_revision(self, prefix: str) -> int:
        resource_prefix = "/".join(prefix.split("/")[:4]) + "/"
        cache = self.caches.get(resource_prefix)
        return cache.last_rev if cache else 0

    def watcher_count(self) -> int:
        return sum(len(c.streams) for c in self.caches.values())

    async def stop(self) -> None:
        for c in self.caches.values():
            await c.stop()
