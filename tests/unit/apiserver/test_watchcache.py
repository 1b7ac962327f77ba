"""The watch cache fans one storage watch out to many watchers."""

from __future__ import annotations

import asyncio

import pytest

from pinnace.apiserver.watchcache import WatchCache
from pinnace.storage.interface import CompactedError
from pinnace.storage.memory import MemoryStore

P = "/registry/core/configmaps/"


async def _take(agen, n: int) -> list[tuple[str, str, int]]:  # type: ignore[no-untyped-def]
    out = []
    async for ev in agen:
        out.append((ev.type, ev.key, ev.rev))
        if len(out) == n:
            break
    return out


async def test_many_watchers_share_one_storage_watch() -> None:
    store = MemoryStore()
    cache = WatchCache(store)
    base = await store.revision()
    readers = [asyncio.create_task(_take(cache.events(P, base), 3)) for _ in range(50)]
    await asyncio.sleep(0)
    await store.create(P + "ns/a", b'{"metadata":{}}')
    kv = await store.create(P + "ns/b", b'{"metadata":{}}')
    await store.update(P + "ns/b", b'{"metadata":{"x":1}}', kv.mod_revision)
    results = await asyncio.gather(*readers)
    assert all(r == results[0] for r in results)
    assert [t for t, _, _ in results[0]] == ["ADDED", "ADDED", "MODIFIED"]
    # One storage subscription for the resource, however many watchers.
    assert len(cache.caches) == 1


async def test_namespace_prefix_filters_events() -> None:
    store = MemoryStore()
    cache = WatchCache(store)
    reader = asyncio.create_task(_take(cache.events(P + "two/", 0), 1))
    await asyncio.sleep(0)
    await store.create(P + "one/a", b'{"metadata":{}}')
    await store.create(P + "two/b", b'{"metadata":{}}')
    assert await reader == [("ADDED", P + "two/b", 2)]


async def test_watch_from_before_the_ring_replays_from_storage() -> None:
    store = MemoryStore()
    cache = WatchCache(store, size=2)
    first = await store.create(P + "ns/a", b'{"metadata":{}}')
    live = asyncio.create_task(_take(cache.events(P, first.mod_revision), 4))
    await asyncio.sleep(0)
    for name in "bcde":
        await store.create(P + "ns/" + name, b'{"metadata":{}}')
    await live
    # The ring holds only the last two events; an older revision still works.
    old = await _take(cache.events(P, first.mod_revision), 4)
    assert [k[-1] for _, k, _ in old] == ["b", "c", "d", "e"]


async def test_compacted_revision_is_gone() -> None:
    store = MemoryStore()
    for name in "abc":
        await store.create(P + "ns/" + name, b'{"metadata":{}}')
    await store.compact(2)
    cache = WatchCache(store)
    with pytest.raises(CompactedError):
        await _take(cache.events(P, 1), 1)


async def test_wire_bytes_carry_the_revision() -> None:
    store = MemoryStore()
    cache = WatchCache(store)
    reader = asyncio.create_task(_take_events(cache))
    await asyncio.sleep(0)
    await store.create(P + "ns/a", b'{"kind":"ConfigMap","metadata":{"name":"a"}}')
    ev = await reader
    assert ev.obj["metadata"]["resourceVersion"] == "1"


async def _take_events(cache: WatchCache):  # type: ignore[no-untyped-def]
    async for ev in cache.events(P, 0):
        return ev


async def test_a_watcher_left_behind_by_the_cache_is_ended() -> None:
    store = MemoryStore()
    cache = WatchCache(store, size=4)
    stream = await cache.stream(P, 0)
    for i in range(20):  # far more than the cache keeps, while the watcher does not read
        await store.create(P + f"ns/x{i}", b'{"metadata":{}}')
    await _until(lambda: cache.caches[P].base > 0, "the cache to drop its oldest events")
    assert await stream.next_batch(5) is None  # it re-watches (and re-lists if it must)
    stream.close()
    await cache.stop()


async def test_pushed_batches_skip_the_task_and_a_refused_one_reaches_it() -> None:
    store = MemoryStore()
    cache = WatchCache(store)
    stream = await cache.stream(P, 0)
    pushed: list[list[str]] = []
    accept = True

    def push(batch):  # type: ignore[no-untyped-def]
        if accept:
            pushed.append([ev.key for ev in batch])
        return accept

    stream.push = push
    reader = asyncio.create_task(stream.next_batch(None))
    await asyncio.sleep(0)
    await store.create(P + "ns/a", b'{"metadata":{}}')
    await store.create(P + "ns/b", b'{"metadata":{}}')
    for _ in range(50):
        if pushed:
            break
        await asyncio.sleep(0.01)
    assert pushed == [[P + "ns/a", P + "ns/b"]]
    assert not reader.done()  # the watcher's task slept through it
    accept = False  # the client's buffer is full, say: the task writes (and waits) itself
    await store.create(P + "ns/c", b'{"metadata":{}}')
    batch = await asyncio.wait_for(reader, 5)
    assert [ev.key for ev in batch] == [P + "ns/c"]
    stream.close()
    await cache.stop()


async def _until(check, what: str):  # type: ignore[no-untyped-def]
    for _ in range(500):
        if check():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")


async def test_a_burst_larger_than_a_batch_is_pushed_whole() -> None:
    store = MemoryStore()
    cache = WatchCache(store)
    stream = await cache.stream(P, 0)
    pushed: list[str] = []

    def push(batch):  # type: ignore[no-untyped-def]
        pushed.extend(ev.key for ev in batch)
        return True

    stream.push = push
    reader = asyncio.create_task(stream.next_batch(None))
    await asyncio.sleep(0)
    for i in range(1200):  # more than one batch (500), then nothing more
        await store.create(P + f"ns/b{i:04d}", b'{"metadata":{}}')
    await _until(lambda: len(pushed) == 1200, "every event pushed")
    assert pushed == [P + f"ns/b{i:04d}" for i in range(1200)]
    reader.cancel()
    stream.close()
    await cache.stop()


async def test_a_push_that_fails_hands_its_batch_to_the_watchers_task() -> None:
    store = MemoryStore()
    cache = WatchCache(store)
    stream = await cache.stream(P, 0)

    def push(batch):  # type: ignore[no-untyped-def]
        raise ValueError("cannot encode")

    stream.push = push
    reader = asyncio.create_task(stream.next_batch(None))
    await asyncio.sleep(0)
    await store.create(P + "ns/a", b'{"metadata":{}}')
    batch = await asyncio.wait_for(reader, 5)
    assert [ev.key for ev in batch] == [P + "ns/a"]
    stream.close()
    await cache.stop()


async def test_after_a_restart_new_watchers_get_the_new_events() -> None:
    store = MemoryStore()
    cache = WatchCache(store)
    old = await cache.stream(P, 0)
    for name in "abc":
        await store.create(P + "ns/" + name, b'{"metadata":{}}')
    first = await asyncio.wait_for(old.next_batch(5), 5)
    assert [ev.key[-1] for ev in first] == ["a", "b", "c"]
    store._broadcaster.drop_all()  # the storage watch is lost: the cache starts over
    assert await asyncio.wait_for(old.next_batch(5), 5) is None  # cut off: it re-watches
    rev = await store.revision()
    await _until(lambda: cache.caches[P].last_rev == rev and cache.caches[P].generation > 0,
                 "the cache to restart")
    new = await cache.stream(P, rev)
    for name in "xyz":
        await store.create(P + "ns/" + name, b'{"metadata":{}}')
    got = await asyncio.wait_for(new.next_batch(5), 5)
    assert [ev.key[-1] for ev in got] == ["x", "y", "z"]
    new.close()
    await cache.stop()


def _value(name: str, size: int = 1000) -> bytes:
    return b'{"metadata":{"name":"%s"},"data":"%s"}' % (name.encode(), b"x" * size)


async def test_the_window_is_bounded_in_bytes_and_older_watches_read_storage() -> None:
    store = MemoryStore()
    cache = WatchCache(store, max_bytes=10_000)  # about ten 1 KB values
    start = await store.revision()
    live = await cache.stream(P, start)  # starts the resource's cache at ``start``
    names = [f"v{i:02d}" for i in range(40)]
    for name in names:
        await store.create(P + "ns/" + name, _value(name))
    rc = cache.caches[P]
    await _until(lambda: rc.last_rev == start + 40, "the cache to see every event")
    got = await _take(cache.events(P, start + 39), 1)  # the newest is in the window
    assert got == [("ADDED", P + "ns/v39", start + 40)]
    assert rc.bytes <= 10_000 and len(rc.events) < 40
    assert rc.window_start > start
    # A watch from before the window still sees every event, from storage.
    old = await _take(cache.events(P, start), 40)
    assert [k.rsplit("/", 1)[1] for _, k, _ in old] == names
    assert await live.next_batch(0) is None  # it was left behind: it re-watches
    live.close()
    # Once storage has compacted that history, the watch is refused (410 Gone).
    await store.compact(start + 20)
    with pytest.raises(CompactedError):
        await _take(cache.events(P, start + 1), 1)
    await cache.stop()


async def test_the_window_keeps_its_newest_event_however_large() -> None:
    store = MemoryStore()
    cache = WatchCache(store, max_bytes=100)
    stream = await cache.stream(P, 0)
    await store.create(P + "ns/big", _value("big", 5000))
    batch = await asyncio.wait_for(stream.next_batch(5), 5)
    assert [ev.key for ev in batch] == [P + "ns/big"]
    await store.create(P + "ns/big2", _value("big2", 5000))
    batch = await asyncio.wait_for(stream.next_batch(5), 5)
    assert [ev.key for ev in batch] == [P + "ns/big2"]  # read in time: not cut off
    stream.close()
    await cache.stop()


async def test_a_value_is_kept_once_by_the_events_that_carry_it() -> None:
    store = MemoryStore()
    cache = WatchCache(store)
    stream = await cache.stream(P, 0)
    kv = await store.create(P + "ns/a", _value("a"))
    kv = await store.update(P + "ns/a", _value("a", 2000), kv.mod_revision)
    await store.delete(P + "ns/a")
    events: list = []  # type: ignore[type-arg]
    while len(events) < 3:
        events += await asyncio.wait_for(stream.next_batch(5), 5)
    added, modified, deleted = events
    assert [e.type for e in events] == ["ADDED", "MODIFIED", "DELETED"]
    # The update's previous value is the creation's bytes, the deletion's
    # value the update's: one copy each, counted once.
    assert modified.prev_raw is added.raw
    assert deleted.raw is modified.raw and deleted.prev_raw is modified.raw
    assert cache.caches[P].bytes == len(added.raw) + len(modified.raw)
    # What watchers are sent is unchanged.
    assert modified.prev["data"] == "x" * 1000 and modified.obj["data"] == "x" * 2000
    assert deleted.obj["metadata"]["resourceVersion"] == str(deleted.rev)
    stream.close()
    await cache.stop()


async def test_events_leave_the_window_once_stale_but_the_newest_stay(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from pinnace.apiserver import watchcache

    monkeypatch.setattr(watchcache, "FRESH_SECONDS", 0.2)
    monkeypatch.setattr(watchcache, "_AGE_SLACK", 0.05)
    monkeypatch.setattr(watchcache, "KEEP_EVENTS", 5)
    store = MemoryStore()
    cache = WatchCache(store)
    start = await store.revision()
    watcher = await cache.stream(P, start)
    names = [f"v{i:02d}" for i in range(20)]
    for name in names:
        await store.create(P + "ns/" + name, _value(name))
    rc = cache.caches[P]
    await _until(lambda: rc.last_rev == start + 20, "the cache to see every event")
    assert len(rc.events) == 20  # fresh: all of them
    got = await asyncio.wait_for(watcher.next_batch(5), 5)
    assert got is not None and len(got) == 20  # read while fresh
    await _until(lambda: len(rc.events) == 5, "the stale events to go")
    assert rc.bytes == sum(e.size for e in rc.events)
    assert rc.window_start == start + 15
    # A watch from before the window reads storage, and misses nothing.
    old = await _take(cache.events(P, start), 20)
    assert [k.rsplit("/", 1)[1] for _, k, _ in old] == names
    # The watcher that kept up goes on with the next event.
    await store.create(P + "ns/later", _value("later"))
    got = await asyncio.wait_for(watcher.next_batch(5), 5)
    assert got is not None and [ev.key for ev in got] == [P + "ns/later"]
    watcher.close()
    await cache.stop()
