"""The Store contract (etcd v3 semantics), run against every backend."""

from __future__ import annotations

import asyncio
import socket
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from pinnace.storage import open_store
from pinnace.storage.interface import (
    CompactedError,
    ConflictError,
    Event,
    KeyExistsError,
    KeyNotFoundError,
    Store,
    Watch,
)

WAIT = 10  # seconds before a missing event counts as a hang, not a timing assertion


async def take(it: AsyncIterator[Event], n: int) -> list[Event]:
    return [await asyncio.wait_for(it.__anext__(), WAIT) for _ in range(n)]


def summary(events: list[Event]) -> list[tuple[str, str, bytes, int]]:
    return [(e.type, e.kv.key, e.kv.value, e.kv.mod_revision) for e in events]


async def stop(watch: Watch, it: AsyncIterator[Event]) -> None:
    await watch.close()
    await it.aclose()  # type: ignore[attr-defined]


async def test_create_then_get(store: Store) -> None:
    kv = await store.create("/registry/pods/default/a", b'{"a":1}')
    assert kv.key == "/registry/pods/default/a"
    assert kv.value == b'{"a":1}'
    assert kv.create_revision == kv.mod_revision > 0
    assert await store.get("/registry/pods/default/a") == kv
    assert await store.get("/registry/pods/default/missing") is None


async def test_create_existing_key_fails(store: Store) -> None:
    await store.create("/k", b"1")
    with pytest.raises(KeyExistsError) as info:
        await store.create("/k", b"2")
    assert info.value.key == "/k"
    assert (await store.get("/k")).value == b"1"  # type: ignore[union-attr]


async def test_values_are_opaque_bytes(store: Store) -> None:
    blob = bytes(range(256)) * 8
    await store.create("/bin", blob)
    assert (await store.get("/bin")).value == blob  # type: ignore[union-attr]


async def test_update_is_compare_and_swap(store: Store) -> None:
    v1 = await store.create("/k", b"1")
    v2 = await store.update("/k", b"2", v1.mod_revision)
    assert v2.value == b"2"
    assert v2.create_revision == v1.create_revision
    assert v2.mod_revision > v1.mod_revision
    with pytest.raises(ConflictError) as info:
        await store.update("/k", b"3", v1.mod_revision)  # stale
    assert info.value.current == v2
    assert await store.get("/k") == v2
    with pytest.raises(KeyNotFoundError):
        await store.update("/missing", b"x", v1.mod_revision)


async def test_concurrent_updates_with_the_same_revision_let_exactly_one_win(store: Store) -> None:
    v1 = await store.create("/k", b"0")
    results = await asyncio.gather(
        *(store.update("/k", str(i).encode(), v1.mod_revision) for i in range(20)),
        return_exceptions=True,
    )
    winners = [r for r in results if not isinstance(r, BaseException)]
    assert len(winners) == 1
    assert all(isinstance(r, ConflictError) for r in results if r not in winners)
    assert await store.get("/k") == winners[0]


async def test_delete_is_compare_and_swap(store: Store) -> None:
    v1 = await store.create("/k", b"1")
    v2 = await store.update("/k", b"2", v1.mod_revision)
    with pytest.raises(ConflictError) as info:
        await store.delete("/k", v1.mod_revision)
    assert info.value.current == v2
    gone = await store.delete("/k", v2.mod_revision)
    assert gone.value == b"2"
    assert gone.create_revision == v1.create_revision
    assert gone.mod_revision > v2.mod_revision
    assert await store.get("/k") is None
    with pytest.raises(KeyNotFoundError):
        await store.delete("/k")


async def test_unconditional_delete_and_recreate(store: Store) -> None:
    v1 = await store.create("/k", b"1")
    await store.delete("/k")
    v2 = await store.create("/k", b"again")
    assert v2.create_revision > v1.create_revision
    assert await store.get("/k") == v2


async def test_revisions_grow_and_are_shared_across_keys(store: Store) -> None:
    start = await store.revision()
    a = await store.create("/a", b"")
    b = await store.create("/b", b"")
    a2 = await store.update("/a", b"x", a.mod_revision)
    d = await store.delete("/b", b.mod_revision)
    revs = [a.mod_revision, b.mod_revision, a2.mod_revision, d.mod_revision]
    assert start < revs[0] < revs[1] < revs[2] < revs[3]
    assert await store.revision() == d.mod_revision
    with pytest.raises(ConflictError):
        await store.update("/a", b"y", a.mod_revision)
    assert await store.revision() == d.mod_revision  # a failed CAS takes no revision


async def test_list_by_prefix_in_key_order(store: Store) -> None:
    for name in ["c", "a", "e", "b", "d"]:
        await store.create(f"/registry/pods/ns/{name}", name.encode())
    await store.create("/registry/podtemplates/ns/x", b"")
    await store.create("/registry/pods0", b"")
    res = await store.list("/registry/pods/")
    assert [kv.key.rsplit("/", 1)[1] for kv in res.kvs] == ["a", "b", "c", "d", "e"]
    assert [kv.value for kv in res.kvs] == [b"a", b"b", b"c", b"d", b"e"]
    assert res.revision == await store.revision()
    assert not res.more
    assert len((await store.list("/registry/pod")).kvs) == 7
    assert len((await store.list("")).kvs) == 7


async def test_list_pages_with_start_and_limit(store: Store) -> None:
    keys = [f"/p/{i:02d}" for i in range(7)]
    for k in keys:
        await store.create(k, b"")
    await store.create("/q/after", b"")
    first = await store.list("/p/", limit=3)
    assert [kv.key for kv in first.kvs] == keys[:3]
    assert first.more and first.remaining == 4
    # Continue at the revision of the first page, as the API server does.
    await store.create("/p/03a", b"late")
    pages, start = [first], first.kvs[-1].key + "\x00"
    while pages[-1].more:
        pages.append(await store.list("/p/", start=start, limit=3, revision=first.revision))
        start = pages[-1].kvs[-1].key + "\x00"
    assert [kv.key for p in pages for kv in p.kvs] == keys
    assert [p.more for p in pages] == [True, True, False]
    assert pages[1].remaining == 1
    assert all(p.revision == first.revision for p in pages)
    exact = await store.list("/p/", limit=8)
    assert len(exact.kvs) == 8 and not exact.more


async def test_list_at_an_old_revision(store: Store) -> None:
    a = await store.create("/s/a", b"a1")
    b = await store.create("/s/b", b"b1")
    then = await store.revision()
    await store.update("/s/a", b"a2", a.mod_revision)
    await store.delete("/s/b", b.mod_revision)
    await store.create("/s/c", b"c1")
    old = await store.list("/s/", revision=then)
    assert old.revision == then
    assert [(kv.key, kv.value) for kv in old.kvs] == [("/s/a", b"a1"), ("/s/b", b"b1")]
    assert old.kvs[0] == a
    now = await store.list("/s/")
    assert [(kv.key, kv.value) for kv in now.kvs] == [("/s/a", b"a2"), ("/s/c", b"c1")]
    before_b = await store.list("/s/", revision=a.mod_revision)
    assert [kv.key for kv in before_b.kvs] == ["/s/a"]


async def test_count(store: Store) -> None:
    assert await store.count("/c/") == 0
    kvs = [await store.create(f"/c/{i}", b"") for i in range(5)]
    await store.create("/d/0", b"")
    await store.delete("/c/0", kvs[0].mod_revision)
    assert await store.count("/c/") == 4
    assert await store.count("") == 5


async def test_watch_replays_history_then_delivers_live_events(store: Store) -> None:
    before = await store.revision()
    a = await store.create("/w/a", b"a1")
    a2 = await store.update("/w/a", b"a2", a.mod_revision)
    b = await store.create("/w/b", b"b1")
    gone = await store.delete("/w/a", a2.mod_revision)
    watch = store.watch("/w/", after=a.mod_revision)
    it = aiter(watch)
    replay = await take(it, 3)
    assert summary(replay) == [
        ("MODIFIED", "/w/a", b"a2", a2.mod_revision),
        ("ADDED", "/w/b", b"b1", b.mod_revision),
        ("DELETED", "/w/a", b"a2", gone.mod_revision),  # a deletion carries the deleted value
    ]
    assert replay[0].prev is not None and replay[0].prev.value == b"a1"
    assert replay[2].kv.create_revision == a.create_revision
    c = await store.create("/w/c", b"c1")
    c2 = await store.update("/w/c", b"c2", c.mod_revision)
    assert summary(await take(it, 2)) == [
        ("ADDED", "/w/c", b"c1", c.mod_revision),
        ("MODIFIED", "/w/c", b"c2", c2.mod_revision),
    ]
    await stop(watch, it)
    # A watch from before the first write sees every event.
    full = store.watch("/w/", after=before)
    fit = aiter(full)
    assert [e.kv.mod_revision for e in await take(fit, 6)] == [
        a.mod_revision,
        a2.mod_revision,
        b.mod_revision,
        gone.mod_revision,
        c.mod_revision,
        c2.mod_revision,
    ]
    await stop(full, fit)


async def test_watch_filters_by_prefix(store: Store) -> None:
    after = await store.revision()
    watch = store.watch("/registry/pods/", after=after)
    it = aiter(watch)
    await store.create("/registry/services/x", b"")
    await store.create("/registry/podsecurity/x", b"")
    p = await store.create("/registry/pods/ns/p", b"")
    await store.create("/registry/secrets/x", b"")
    q = await store.create("/registry/pods/ns/q", b"")
    events = await take(it, 2)
    assert [(e.kv.key, e.kv.mod_revision) for e in events] == [
        ("/registry/pods/ns/p", p.mod_revision),
        ("/registry/pods/ns/q", q.mod_revision),
    ]
    await stop(watch, it)


async def test_many_watchers_each_get_every_event(store: Store) -> None:
    after = await store.revision()
    watches = [store.watch("/m/", after=after) for _ in range(5)]
    its = [aiter(w) for w in watches]
    kvs = [await store.create(f"/m/{i}", b"") for i in range(10)]
    want = [kv.mod_revision for kv in kvs]
    for it in its:
        assert [e.kv.mod_revision for e in await take(it, 10)] == want
    for w, it in zip(watches, its):
        await stop(w, it)


async def test_compaction_forgets_history_but_keeps_live_keys(store: Store) -> None:
    before = await store.revision()
    a = await store.create("/x/a", b"a1")
    b = await store.create("/x/b", b"b1")
    for i in range(5):
        a = await store.update("/x/a", f"a{i + 2}".encode(), a.mod_revision)
    await store.delete("/x/b", b.mod_revision)
    await store.create("/x/c", b"c1")
    head = await store.revision()
    await store.compact(head - 1)
    assert await store.compacted_revision() == head - 1

    with pytest.raises(CompactedError) as info:
        await store.list("/x/", revision=before + 1)
    assert info.value.compacted == head - 1

    old = store.watch("/x/", after=before)
    with pytest.raises(CompactedError):
        await take(aiter(old), 1)
    await old.close()

    now = await store.list("/x/")
    assert [(kv.key, kv.value) for kv in now.kvs] == [("/x/a", b"a6"), ("/x/c", b"c1")]
    at_compacted = await store.list("/x/", revision=head - 1)
    assert [(kv.key, kv.value) for kv in at_compacted.kvs] == [("/x/a", b"a6")]
    # Watching from the compacted revision itself still works.
    watch = store.watch("/x/", after=head - 1)
    it = aiter(watch)
    assert summary(await take(it, 1)) == [("ADDED", "/x/c", b"c1", head)]
    a7 = await store.update("/x/a", b"a7", a.mod_revision)
    assert summary(await take(it, 1)) == [("MODIFIED", "/x/a", b"a7", a7.mod_revision)]
    await stop(watch, it)


async def test_compacting_again_below_the_mark_is_a_no_op(store: Store) -> None:
    for i in range(4):
        await store.create(f"/y/{i}", b"")
    head = await store.revision()
    await store.compact(head)
    await store.compact(head - 2)
    assert await store.compacted_revision() == head
    assert await store.count("/y/") == 4
    assert (await store.create("/y/next", b"")).mod_revision > head


async def test_many_concurrent_creates_get_distinct_revisions(store: Store) -> None:
    before = await store.revision()
    kvs = await asyncio.gather(*(store.create(f"/many/{i:04d}", b"v" * 100) for i in range(500)))
    revs = [kv.mod_revision for kv in kvs]
    assert len(set(revs)) == 500
    assert min(revs) > before and max(revs) == await store.revision()
    listed = await store.list("/many/")
    assert [kv.key for kv in listed.kvs] == [f"/many/{i:04d}" for i in range(500)]
    assert {kv.mod_revision for kv in listed.kvs} == set(revs)


async def test_concurrent_writes_reach_a_watcher_in_revision_order(store: Store) -> None:
    after = await store.revision()
    watch = store.watch("/o/", after=after)
    it = aiter(watch)
    kvs = await asyncio.gather(*(store.create(f"/o/{i}", b"") for i in range(200)))
    events = await take(it, 200)
    assert [e.kv.mod_revision for e in events] == sorted(kv.mod_revision for kv in kvs)
    await stop(watch, it)


async def test_list_starting_past_the_prefix_is_empty(store: Store) -> None:
    await store.create("/p/a", b"")
    await store.create("/q/a", b"")
    res = await store.list("/p/", start="/q")
    assert res.kvs == [] and not res.more


async def test_watch_close_ends_iteration(store: Store) -> None:
    watch = store.watch("/z/", after=await store.revision())
    it = aiter(watch)
    pending = asyncio.ensure_future(it.__anext__())
    await store.create("/z/1", b"")
    assert (await asyncio.wait_for(pending, WAIT)).kv.key == "/z/1"
    await watch.close()
    with pytest.raises(StopAsyncIteration):
        await asyncio.wait_for(it.__anext__(), WAIT)


# ---- backend selection and backend-specific behaviour ----


def test_open_store_chooses_the_backend_by_url(tmp_path: Path) -> None:
    from pinnace.storage.etcd import EtcdStore
    from pinnace.storage.memory import MemoryStore
    from pinnace.storage.sqlite import SQLiteStore

    assert isinstance(open_store("memory", str(tmp_path)), MemoryStore)
    default = open_store("sqlite", str(tmp_path / "data"))
    assert isinstance(default, SQLiteStore)
    assert default.path == str(tmp_path / "data" / "state.db")
    explicit = open_store(f"sqlite://{tmp_path}/other.db", "")
    assert isinstance(explicit, SQLiteStore) and explicit.path == f"{tmp_path}/other.db"
    etcd = open_store("etcd://h1:2379,h2:2380", "")
    assert isinstance(etcd, EtcdStore) and etcd.endpoints == ["h1:2379", "h2:2380"]
    assert open_store("http://10.0.0.1:2379", "").endpoints == ["10.0.0.1:2379"]  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    "url", ["postgres://db/k8s", "mysql", "", "sqlite://relative.db", "etcd://", "etcd://h:1/x"]
)
def test_open_store_refuses_unknown_or_malformed_urls(url: str, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="datastore"):
        open_store(url, str(tmp_path))


async def test_sqlite_store_is_usable_through_open_store(tmp_path: Path) -> None:
    store = open_store("sqlite", str(tmp_path))
    await store.start()
    try:
        kv = await store.create("/a", b"1")
        assert await store.get("/a") == kv
    finally:
        await store.close()
    assert (tmp_path / "state.db").exists()


async def test_etcd_store_fails_over_to_a_live_member(etcd_endpoint: str) -> None:
    from pinnace.storage.etcd import EtcdStore

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        dead = f"127.0.0.1:{s.getsockname()[1]}"
    store = EtcdStore([dead, etcd_endpoint], namespace=f"/failover-{uuid.uuid4().hex}")
    await store.start()
    try:
        kv = await store.create("/a", b"1")
        assert await store.get("/a") == kv
    finally:
        await store.close()
