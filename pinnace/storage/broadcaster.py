"""Fan-out of committed events to in-process watchers.

A backend publishes each committed batch once; every watcher whose prefix
matches gets it through a bounded queue. A watcher that falls more than
``maxsize`` events behind is dropped (its iterator raises WatchClosedError)
rather than letting memory grow: the client re-lists, as with kine's
broadcaster.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

from .interface import CompactedError, Event, WatchClosedError

_CLOSED = object()


class Subscription:
    def __init__(self, owner: Broadcaster, prefix: str, maxsize: int):
        self._owner = owner
        self.prefix = prefix
        self.queue: asyncio.Queue[object] = asyncio.Queue(maxsize)
        self.dropped = False

    def offer(self, events: list[Event]) -> None:
        if self.dropped:
            return
        for ev in events:
            if not ev.kv.key.startswith(self.prefix):
                continue
            try:
                self.queue.put_nowait(ev)
            except asyncio.QueueFull:
                self.drop()
                return

    def drop(self) -> None:
        """End this watcher with WatchClosedError (it re-lists)."""
        self.dropped = True
        self._owner.unsubscribe(self)
        # Make room for the sentinel so the reader wakes up.
        while not self.queue.empty():
            self.queue.get_nowait()
        self.queue.put_nowait(_CLOSED)

    def close(self) -> None:
        self._owner.unsubscribe(self)
        try:
            self.queue.put_nowait(_CLOSED)
        except asyncio.QueueFull:
            pass


class Broadcaster:
    def __init__(self, maxsize: int = 10_000):
        self._subs: set[Subscription] = set()
        self._maxsize = maxsize

    def subscribe(self, prefix: str) -> Subscription:
        sub = Subscription(self, prefix, self._maxsize)
        self._subs.add(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        self._subs.discard(sub)

    def publish(self, events: list[Event]) -> None:
        for sub in list(self._subs):
            sub.offer(events)

    def close_all(self) -> None:
        for sub in list(self._subs):
            sub.close()

    def drop_all(self) -> None:
        """Cut every watcher off as if it had fallen behind: each sees
        WatchClosedError and starts over from what the store has now."""
        for sub in list(self._subs):
            sub.drop()

    def __len__(self) -> int:
        return len(self._subs)


class BroadcastWatch:
    """A Watch built from a backlog reader plus live events.

    The subscription is taken *before* the backlog is read, so nothing
    committed in between is missed; events already seen in the backlog are
    skipped by revision.
    """

    def __init__(
        self,
        broadcaster: Broadcaster,
        prefix: str,
        after: int,
        backlog: Callable[[str, int], Awaitable[list[Event]]],
        compacted: Callable[[], Awaitable[int]],
    ):
        self._broadcaster = broadcaster
        self._prefix = prefix
        self._after = after
        self._backlog = backlog
        self._compacted = compacted
        self._sub: Subscription | None = None
        self._closed = False

    async def __aiter__(self) -> AsyncIterator[Event]:  # type: ignore[override]
        if self._closed:
            return
        sub = self._sub = self._broadcaster.subscribe(self._prefix)
        try:
            compacted = await self._compacted()
            if self._after < compacted:
                raise CompactedError(self._after, compacted)
            last = self._after
            for ev in await self._backlog(self._prefix, self._after):
                if ev.kv.mod_revision > last:
                    last = ev.kv.mod_revision
                    yield ev
            while True:
                item = await sub.queue.get()
                if item is _CLOSED:
                    if sub.dropped:
                        raise WatchClosedError("watcher fell behind and was dropped")
                    return
                assert isinstance(item, Event)
                if item.kv.mod_revision > last:
                    last = item.kv.mod_revision
                    yield item
        finally:
            sub.close()

    async def close(self) -> None:
        self._closed = True
        if self._sub is not None:
            self._sub.close()
