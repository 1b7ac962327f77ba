"""etcd v3 Store, for several API servers sharing one cluster.

The Store contract *is* etcd's, so each call is one etcd request: create is
a txn guarded by ``create_revision == 0``, update and delete are txns guarded
by ``mod_revision``, list is a range read at a revision, watch is an etcd
watch from ``after + 1``.

Client: the gRPC stubs and messages generated in the ``aetcd`` package,
driven directly. aetcd's own ``Client`` cannot send a range with a limit or
a revision, and its watcher hides the compaction revision, both of which
the contract needs; its stubs cover the whole etcd v3 API.

Endpoints: every endpoint is resolved once at start and handed to gRPC as
one address list, so the channel fails over between members by itself, and
each call waits (up to ``timeout``) for a ready connection instead of
failing while it does.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
from collections.abc import AsyncIterator
from typing import Any

import grpc
from aetcd import rpc

from .interface import (
    CompactedError,
    ConflictError,
    Event,
    KeyExistsError,
    KeyNotFoundError,
    KeyValue,
    ListResult,
    StoreError,
    WatchClosedError,
)
from .sqlite import prefix_end

log = logging.getLogger("pinnace.storage.etcd")

_COMPACTED_MSG = "required revision has been compacted"
# The Store's `list` method shadows the builtin inside the class body.
_Ops = list[Any]


class EtcdStore:
    """Store on an etcd v3 cluster.

    ``endpoints``: "host:port" of the members. ``namespace`` is put in front
    of every key on the wire (like kube-apiserver's --etcd-prefix) so several
    stores can share a cluster. ``timeout`` bounds every unary call.
    """

    def __init__(self, endpoints: list[str], *, namespace: str = "", timeout: float = 10.0):
        if not endpoints:
            raise ValueError("EtcdStore needs at least one endpoint")
        self.endpoints = list(endpoints)
        self._ns = namespace
        self._nsb = namespace.encode()
        self._timeout = timeout
        self._channel: grpc.aio.Channel | None = None
        self._kv: Any = None
        self._watch: Any = None
        self._compacted = 0  # a lower bound of the cluster's compacted revision
        self._watches: set[EtcdWatch] = set()

    # ---- lifecycle ----

    async def start(self) -> None:
        target = await asyncio.to_thread(_grpc_target, self.endpoints)
        self._channel = grpc.aio.insecure_channel(
            target,
            options=[
                ("grpc.lb_policy_name", "pick_first"),
                ("grpc.keepalive_time_ms", 30_000),
                ("grpc.keepalive_timeout_ms", 10_000),
                ("grpc.max_receive_message_length", 256 * 1024 * 1024),
            ],
        )
        self._kv = rpc.KVStub(self._channel)
        self._watch = rpc.WatchStub(self._channel)
        await self.revision()  # fail now, not on first use, if nobody answers

    async def close(self) -> None:
        for w in list(self._watches):
            await w.close()
        if self._channel is not None:
            await self._channel.close()
            self._channel = None

    # ---- helpers ----

    def _k(self, key: str) -> bytes:
        return self._nsb + key.encode()

    def _kv_of(self, kv: Any) -> KeyValue:
        return KeyValue(
            kv.key[len(self._nsb) :].decode(), kv.value, kv.create_revision, kv.mod_revision
        )

    def _range_end(self, prefix: str) -> bytes:
        end = prefix_end(self._ns + prefix)
        return end.encode() if end is not None else b"\x00"  # "\0" = to the end of keyspace

    async def _unary(self, method: Any, request: Any, revision: int = 0) -> Any:
        if self._kv is None:
            raise StoreError("etcd store is not started or is closed")
        try:
            return await method(request, timeout=self._timeout, wait_for_ready=True)
        except grpc.aio.AioRpcError as e:
            if e.code() == grpc.StatusCode.OUT_OF_RANGE and _COMPACTED_MSG in (e.details() or ""):
                raise CompactedError(revision, await self.compacted_revision()) from e
            raise StoreError(f"etcd: {e.code().name}: {e.details()}") from e

    async def _range(self, revision: int = 0, **kw: Any) -> Any:
        return await self._unary(
            self._kv.Range, rpc.RangeRequest(revision=revision, **kw), revision
        )

    async def _txn(self, compare: list[Any], success: list[Any], failure: list[Any]) -> Any:
        return await self._unary(
            self._kv.Txn, rpc.TxnRequest(compare=compare, success=success, failure=failure)
        )

    def _get_op(self, key: bytes) -> Any:
        return rpc.RequestOp(request_range=rpc.RangeRequest(key=key))

    def _current(self, resp: Any) -> KeyValue | None:
        """The key's kv from the range a failed txn ran instead."""
        kvs = resp.responses[0].response_range.kvs
        return self._kv_of(kvs[0]) if kvs else None

    # ---- reads ----

    async def revision(self) -> int:
        resp = await self._range(key=self._nsb or b"\x00", count_only=True)
        return int(resp.header.revision)

    async def compacted_revision(self) -> int:
        """etcd does not report it, but a read below it fails: find the
        oldest revision still readable by bisection (rarely needed: only to
        word a CompactedError)."""

        async def readable(rev: int) -> bool:
            req = rpc.RangeRequest(key=b"\x00", count_only=True, revision=rev)
            try:
                await self._kv.Range(req, timeout=self._timeout, wait_for_ready=True)
                return True
            except grpc.aio.AioRpcError as e:
                if e.code() == grpc.StatusCode.OUT_OF_RANGE and _COMPACTED_MSG in (
                    e.details() or ""
                ):
                    return False
                raise StoreError(f"etcd: {e.code().name}: {e.details()}") from e

        if self._kv is None:
            raise StoreError("etcd store is not started or is closed")
        lo = max(1, self._compacted)
        if await readable(lo):
            return self._compacted
        hi = await self.revision()  # always readable
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if await readable(mid):
                hi = mid
            else:
                lo = mid
        self._compacted = hi
        return hi

    async def get(self, key: str) -> KeyValue | None:
        resp = await self._range(key=self._k(key))
        return self._kv_of(resp.kvs[0]) if resp.kvs else None

    async def list(
        self, prefix: str, *, start: str = "", limit: int = 0, revision: int = 0
    ) -> ListResult:
        resp = await self._range(
            revision=revision,
            key=self._k(max(prefix, start)),
            range_end=self._range_end(prefix),
            limit=limit,
            sort_order=rpc.RangeRequest.ASCEND,
            sort_target=rpc.RangeRequest.KEY,
        )
        kvs = [self._kv_of(kv) for kv in resp.kvs]
        # count is every key in [start, end) at that revision, returned or not.
        remaining = max(0, int(resp.count) - len(kvs)) if resp.more else 0
        return ListResult(kvs, revision or int(resp.header.revision), bool(resp.more), remaining)

    async def count(self, prefix: str) -> int:
        resp = await self._range(
            key=self._k(prefix), range_end=self._range_end(prefix), count_only=True
        )
        return int(resp.count)

    # ---- writes ----

    async def create(self, key: str, value: bytes) -> KeyValue:
        k = self._k(key)
        resp = await self._txn(
            [
                rpc.Compare(
                    key=k, target=rpc.Compare.CREATE, result=rpc.Compare.EQUAL, create_revision=0
                )
            ],
            [rpc.RequestOp(request_put=rpc.PutRequest(key=k, value=value))],
            [],
        )
        if not resp.succeeded:
            raise KeyExistsError(key)
        rev = int(resp.header.revision)
        return KeyValue(key, value, rev, rev)

    def _cas(self, k: bytes, mod_revision: int | None) -> _Ops:
        """The key exists and, unless ``mod_revision`` is None, was last
        changed at ``mod_revision``."""
        exists = rpc.Compare(
            key=k, target=rpc.Compare.VERSION, result=rpc.Compare.GREATER, version=0
        )
        if mod_revision is None:
            return [exists]
        same = rpc.Compare(
            key=k, target=rpc.Compare.MOD, result=rpc.Compare.EQUAL, mod_revision=mod_revision
        )
        return [exists, same]

    async def update(self, key: str, value: bytes, mod_revision: int) -> KeyValue:
        k = self._k(key)
        put = rpc.PutRequest(key=k, value=value, prev_kv=True)
        resp = await self._txn(
            self._cas(k, mod_revision),
            [rpc.RequestOp(request_put=put)],
            [self._get_op(k)],
        )
        if not resp.succeeded:
            cur = self._current(resp)
            raise KeyNotFoundError(key) if cur is None else ConflictError(key, cur)
        prev = resp.responses[0].response_put.prev_kv
        rev = int(resp.header.revision)
        return KeyValue(key, value, int(prev.create_revision), rev)

    async def delete(self, key: str, mod_revision: int = 0) -> KeyValue:
        k = self._k(key)
        resp = await self._txn(
            self._cas(k, mod_revision or None),
            [rpc.RequestOp(request_delete_range=rpc.DeleteRangeRequest(key=k, prev_kv=True))],
            [self._get_op(k)],
        )
        if not resp.succeeded:
            cur = self._current(resp)
            raise KeyNotFoundError(key) if cur is None else ConflictError(key, cur)
        prev = resp.responses[0].response_delete_range.prev_kvs[0]
        return KeyValue(key, prev.value, int(prev.create_revision), int(resp.header.revision))

    # ---- watch and compaction ----

    def watch(self, prefix: str, after: int) -> EtcdWatch:
        return EtcdWatch(self, prefix, after)

    async def compact(self, revision: int) -> None:
        revision = min(revision, await self.revision())
        if revision <= 0:
            return
        try:
            await self._unary(self._kv.Compact, rpc.CompactionRequest(revision=revision))
        except CompactedError:
            return  # already compacted at or past it
        self._compacted = max(self._compacted, revision)

    def _event(self, ev: Any) -> Event:
        kv = ev.kv
        prev = self._kv_of(ev.prev_kv) if ev.prev_kv.mod_revision else None
        if ev.type == rpc.Event.DELETE:
            # etcd's delete event carries only the key; the contract wants
            # the deleted value, which the prev_kv option brings along.
            deleted = KeyValue(
                kv.key[len(self._nsb) :].decode(),
                prev.value if prev else b"",
                prev.create_revision if prev else 0,
                kv.mod_revision,
            )
            return Event("DELETED", deleted, prev)
        cur = self._kv_of(kv)
        if kv.create_revision == kv.mod_revision:
            return Event("ADDED", cur)
        return Event("MODIFIED", cur, prev)


class EtcdWatch:
    """One etcd watch stream for one prefix."""

    def __init__(self, store: EtcdStore, prefix: str, after: int):
        self._store = store
        self._prefix = prefix
        self._after = after
        self._call: Any = None
        self._closed = False

    async def __aiter__(self) -> AsyncIterator[Event]:
        store = self._store
        if self._closed:
            return
        if store._watch is None:
            raise StoreError("etcd store is not started or is closed")
        call = self._call = store._watch.Watch(wait_for_ready=True)
        store._watches.add(self)
        try:
            create = rpc.WatchCreateRequest(
                key=store._k(self._prefix),
                range_end=store._range_end(self._prefix),
                start_revision=self._after + 1,
                prev_kv=True,
            )
            await call.write(rpc.WatchRequest(create_request=create))
            while True:
                resp = await call.read()
                if resp is grpc.aio.EOF:
                    raise WatchClosedError("etcd ended the watch stream")
                if resp.compact_revision:
                    store._compacted = max(store._compacted, int(resp.compact_revision))
                    raise CompactedError(self._after, int(resp.compact_revision))
                if resp.canceled:
                    raise WatchClosedError(f"etcd cancelled the watch: {resp.cancel_reason}")
                for ev in resp.events:
                    yield store._event(ev)
        except grpc.aio.AioRpcError as e:
            if self._closed or e.code() == grpc.StatusCode.CANCELLED:
                return
            raise WatchClosedError(f"etcd watch failed: {e.code().name}: {e.details()}") from e
        except asyncio.CancelledError:
            if self._closed:
                return
            raise
        finally:
            store._watches.discard(self)
            call.cancel()

    async def close(self) -> None:
        self._closed = True
        if self._call is not None:
            self._call.cancel()


def _grpc_target(endpoints: list[str]) -> str:
    """One gRPC target naming every member (blocking: resolves host names)."""
    addrs: list[str] = []
    for ep in endpoints:
        ep = ep.split("://", 1)[-1].rstrip("/")
        host, _, port = ep.rpartition(":")
        host = host.strip("[]")
        if not host or not port.isdigit():
            raise ValueError(f"etcd endpoint {ep!r}: expected host:port")
        try:
            ips = [str(ipaddress.ip_address(host))]
        except ValueError:
            infos = socket.getaddrinfo(host, int(port), type=socket.SOCK_STREAM)
            ips = list(dict.fromkeys(str(i[4][0]) for i in infos))
        addrs += [f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}" for ip in ips]
    if all(":" not in a.rsplit(":", 1)[0] for a in addrs):
        return "ipv4:" + ",".join(addrs)
    if all(a.startswith("[") for a in addrs):
        return "ipv6:" + ",".join(addrs)
    return addrs[0]  # mixed families: gRPC takes one family per list
