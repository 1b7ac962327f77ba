"""One storage watch per resource, fanned out to every API watcher.

Each resource's cache keeps a ring of its most recent events. A client
watching from revision R is served from the ring when R is inside it (the
common case: informers watch from their list's revision); otherwise it gets
its own storage watch, so only true compaction answers 410 Gone. Events are
decoded and encoded at most once per format, however many watchers get them.
"""

from __future__ import annotations

import asyncio
import bisect
import logging
from collections import deque
from collections.abc import AsyncIterator
from typing import Any

from pinnace.storage.interface import CompactedError, Event, Store, WatchClosedError

from . import codec

log = logging.getLogger("pinnace.apiserver.watchcache")

_CLOSED = object()


class CacheEvent:
    """A storage event plus its decoded and encoded forms, made on demand."""

    __slots__ = ("_obj", "_prev", "key", "prev_raw", "raw", "rev", "type", "wire")

    def __init__(self, ev: Event):
        self.type = ev.type
        self.key = ev.kv.key
        self.rev = ev.kv.mod_revision
        self.raw = ev.kv.value
        self.prev_raw = ev.prev.value if ev.prev is not None else None
        self._obj: dict[str, Any] | None = None
        self._prev: dict[str, Any] | None = None
        self.wire: dict[Any, bytes] = {}  # encoded forms by format key

    @property
    def obj(self) -> dict[str, Any]:
        if self._obj is None:
            self._obj = codec.decode_stored(self.raw, self.rev)
        return self._obj

    @property
    def prev(self) -> dict[str, Any] | None:
        if self._prev is None and self.prev_raw is not None:
            self._prev = codec.decode_stored(self.prev_raw, self.rev)
        return self._prev


class Subscriber:
    def __init__(self, cache: ResourceCache, maxsize: int):
        self.cache = cache
        self.queue: asyncio.Queue[Any] = asyncio.Queue(maxsize)
        self.overflowed = False

    def offer(self, ev: CacheEvent | object) -> None:
        if self.overflowed:
            return
        try:
            self.queue.put_nowait(ev)
        except asyncio.QueueFull:
            # A watcher this far behind is cut off; its client re-watches.
            self.overflowed = True
            self.cache.subscribers.discard(self)


class TooOldError(Exception):
    pass


class ResourceCache:
    def __init__(self, store: Store, prefix: str, size: int = 10_000, queue_size: int = 10_000):
        self.store = store
        self.prefix = prefix
        self.ring: deque[CacheEvent] = deque(maxlen=size)
        self.window_start = 0  # every event with rev > window_start is in the ring
        self.last_rev = 0  # the newest revision this cache has seen (for bookmarks)
        self.subscribers: set[Subscriber] = set()
        self.queue_size = queue_size
        self._task: asyncio.Task[None] | None = None

    def started(self) -> bool:
        return self._task is not None

    def start(self, after: int) -> None:
        self.window_start = self.last_rev = after
        self._task = asyncio.create_task(self._pump(after), name=f"watchcache {self.prefix}")

    async def _pump(self, after: int) -> None:
        while True:
            try:
                async for ev in self.store.watch(self.prefix, after):
                    ce = CacheEvent(ev)
                    if len(self.ring) == self.ring.maxlen:
                        self.window_start = self.ring[0].rev
                    self.ring.append(ce)
                    self.last_rev = ce.rev
                    for sub in tuple(self.subscribers):
                        sub.offer(ce)
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
            for sub in tuple(self.subscribers):
                sub.offer(_CLOSED)
            self.subscribers.clear()
            self.ring.clear()
            after = await self.store.revision()
            self.window_start = self.last_rev = after

    def subscribe(self, after: int) -> Subscriber:
        if after < self.window_start:
            raise TooOldError()
        sub = Subscriber(self, self.queue_size)
        revs_start = bisect.bisect_right(_RevView(self.ring), after)
        for i in range(revs_start, len(self.ring)):
            sub.offer(self.ring[i])
        self.subscribers.add(sub)
        return sub

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):
                pass
        for sub in tuple(self.subscribers):
            sub.offer(_CLOSED)


class _RevView:
    """Lets bisect search a deque of events by revision."""

    def __init__(self, ring: deque[CacheEvent]):
        self.ring = ring

    def __len__(self) -> int:
        return len(self.ring)

    def __getitem__(self, i: int) -> int:
        return self.ring[i].rev


class WatchStream:
    """One watcher's view: batches of the events it has not seen yet.

    Batching lets a watcher that fell behind catch up with one write instead
    of one per event; the common path takes events straight from the
    resource cache's subscriber queue."""

    def __init__(self, prefix: str, cache: ResourceCache, sub: Subscriber | None,
                 direct: AsyncIterator[CacheEvent] | None = None, after: int = 0):
        self.prefix = prefix
        # A watch may start from a revision this cache has not seen yet (it
        # was written through another API server on the store): the events
        # up to it are not for this watcher.
        self.after = after
        self.cache = cache
        self.sub = sub
        self._queue: asyncio.Queue[Any] = sub.queue if sub is not None else asyncio.Queue()
        self._pump: asyncio.Task[None] | None = None
        if direct is not None:
            self._pump = asyncio.create_task(self._feed(direct))

    async def _feed(self, events: AsyncIterator[CacheEvent]) -> None:
        try:
            async for ev in events:
                self._queue.put_nowait(ev)
            self._queue.put_nowait(_CLOSED)
        except Exception as e:  # a compaction mid-replay ends the stream with an error
            self._queue.put_nowait(e)

    async def next_batch(self, timeout: float | None, limit: int = 500
                         ) -> list[CacheEvent] | None:
        """Events waiting now (at least one, waiting up to ``timeout``): [] on
        timeout, None once the stream has ended. Raises what ended a replay."""
        q = self._queue
        if q.empty():
            if self.sub is not None and self.sub.overflowed:
                return None
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
            if item.rev > self.after and item.key.startswith(self.prefix):
                out.append(item)
            if len(out) >= limit or q.empty():
                return out
            item = q.get_nowait()

    def close(self) -> None:
        if self.sub is not None:
            self.cache.subscribers.discard(self.sub)
        if self._pump is not None:
            self._pump.cancel()


class WatchCache:
    def __init__(self, store: Store, size: int = 10_000):
        self.store = store
        self.size = size
        self.caches: dict[str, ResourceCache] = {}

    async def stream(self, prefix: str, after: int) -> "WatchStream":
        """A stream of events under ``prefix`` (a resource's prefix, optionally
        narrowed to a namespace) with revision > ``after``. Raises
        CompactedError when that history is gone."""
        resource_prefix = "/".join(prefix.split("/")[:4]) + "/"
        cache = self.caches.get(resource_prefix)
        if cache is None:
            cache = self.caches[resource_prefix] = ResourceCache(self.store, resource_prefix,
                                                                 self.size)
        if not cache.started():
            compacted = await self.store.compacted_revision()
            if after < compacted:
                raise CompactedError(after, compacted)
            if not cache.started():
                cache.start(after)
        try:
            return WatchStream(prefix, cache, cache.subscribe(after), after=after)
        except TooOldError:
            # Older than the ring: this watcher reads storage history itself.
            compacted = await self.store.compacted_revision()
            if after < compacted:
                raise CompactedError(after, compacted) from None
            return WatchStream(prefix, cache, None, self._direct(prefix, after))

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
        return sum(len(c.subscribers) for c in self.caches.values())

    async def stop(self) -> None:
        for c in self.caches.values():
            await c.stop()
