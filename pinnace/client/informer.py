"""Shared informers: list, then watch from the list's resourceVersion, keep a
local cache, and tell handlers what changed.

Guarantees (as client-go's shared informer gives them):
- the cache converges to the server's state; handlers see every change to a
  key in order, though intermediate states may be skipped after a re-list;
- after a 410 Gone (or any broken watch) the informer lists again, and
  handlers get adds, updates and deletes for whatever differed;
- ``synced`` is set once the first list has been delivered.
Handlers are plain functions called on the event loop; they should be quick
(typically: put a key on a workqueue).
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable

from .rest import ApiError, Client, Obj, ResourceClient

log = logging.getLogger("pinnace.client.informer")

Handler = Callable[..., None]
IndexFunc = Callable[[Obj], list[str]]


def key_of(obj: Obj) -> str:
    meta = obj.get("metadata") or {}
    ns = meta.get("namespace")
    return f"{ns}/{meta['name']}" if ns else meta["name"]


def split_key(key: str) -> tuple[str | None, str]:
    ns, sep, name = key.partition("/")
    return (ns, name) if sep else (None, key)


def strip_managed_fields(obj: Obj) -> Obj:
    """Drop metadata.managedFields: controllers never read them, and they are
    often the bulk of an object (client-go's TransformStripManagedFields).
    Writing such an object back keeps the server's managedFields."""
    meta = obj.get("metadata")
    if meta and "managedFields" in meta:
        obj = dict(obj)
        obj["metadata"] = {k: v for k, v in meta.items() if k != "managedFields"}
    return obj


def namespace_index(obj: Obj) -> list[str]:
    return [(obj.get("metadata") or {}).get("namespace") or ""]


class Informer:
    def __init__(self, rc: ResourceClient, namespace: str | None = None, *,
                 label_selector: str | None = None, field_selector: str | None = None,
                 resync_seconds: float = 0, keep: Callable[[Obj], bool] | None = None,
                 transform: Callable[[Obj], Obj] | None = None, metadata_only: bool = False):
        """keep: cache only objects it accepts (it must depend only on fields
        that never change, such as a pod's nodeName); transform: store what it
        returns instead of the object (client-go's transform, to save memory);
        metadata_only: list and watch PartialObjectMetadata, as client-go's
        metadata informers do (objects are then kind PartialObjectMetadata,
        apiVersion meta.k8s.io/v1, with the object's metadata and nothing else)."""
        self.rc = rc
        self.namespace = namespace
        self.label_selector = label_selector
        self.field_selector = field_selector
        self.resync_seconds = resync_seconds
        self.keep = keep
        self.transform = transform
        self.metadata_only = metadata_only
        self.store: dict[str, Obj] = {}
        self.synced = asyncio.Event()
        self.resource_version = ""
        self._handlers: list[tuple[Handler | None, Handler | None, Handler | None]] = []
        self._index_funcs: dict[str, IndexFunc] = {"namespace": namespace_index}
        self._indices: dict[str, dict[str, set[str]]] = {"namespace": {}}
        self._task: asyncio.Task[None] | None = None

    # -- handlers and indices ------------------------------------------------

    def add_handler(self, on_add: Handler | None = None, on_update: Handler | None = None,
                    on_delete: Handler | None = None) -> None:
        """on_add(obj), on_update(old, new), on_delete(obj). Objects already in
        the cache are replayed to a late handler as adds."""
        self._handlers.append((on_add, on_update, on_delete))
        if on_add is not None and self.synced.is_set():
            for obj in list(self.store.values()):
                on_add(obj)

    def has_index(self, name: str) -> bool:
        return name in self._index_funcs

    def add_index(self, name: str, fn: IndexFunc) -> None:
        self._index_funcs[name] = fn
        idx: dict[str, set[str]] = {}
        for key, obj in self.store.items():
            for v in fn(obj):
                idx.setdefault(v, set()).add(key)
        self._indices[name] = idx

    def by_index(self, name: str, value: str) -> list[Obj]:
        return [self.store[k] for k in self._indices[name].get(value, ()) if k in self.store]

    def get(self, key: str) -> Obj | None:
        return self.store.get(key)

    def objects(self, namespace: str | None = None) -> list[Obj]:
        if namespace is None:
            return list(self.store.values())
        return self.by_index("namespace", namespace)

    # -- cache upkeep ----------------------------------------------------------

    def _index(self, key: str, old: Obj | None, new: Obj | None) -> None:
        for name, fn in self._index_funcs.items():
            idx = self._indices[name]
            if old is not None:
                for v in fn(old):
                    s = idx.get(v)
                    if s is not None:
                        s.discard(key)
                        if not s:
                            del idx[v]
            if new is not None:
                for v in fn(new):
                    idx.setdefault(v, set()).add(key)

    def _emit(self, kind: int, *args: Obj) -> None:
        for handlers in self._handlers:
            fn = handlers[kind]
            if fn is not None:
                try:
                    fn(*args)
                except Exception:  # one bad handler must not stop the informer
                    log.exception("informer handler failed for %s", self.rc.resource)

    def _apply(self, type_: str, obj: Obj) -> None:
        if self.keep is not None and not self.keep(obj):
            return
        if self.transform is not None:
            obj = self.transform(obj)
        key = key_of(obj)
        old = self.store.get(key)
        if type_ == "DELETED":
            if old is not None:
                del self.store[key]
                self._index(key, old, None)
                self._emit(2, obj)
            return
        self.store[key] = obj
        self._index(key, old, obj)
        if old is None:
            self._emit(0, obj)
        else:
            self._emit(1, old, obj)

    def _replace(self, items: list[Obj]) -> None:
        if self.keep is not None:
            items = [o for o in items if self.keep(o)]
        if self.transform is not None:
            items = [self.transform(o) for o in items]
        fresh = {key_of(o): o for o in items}
        for key in [k for k in self.store if k not in fresh]:
            old = self.store.pop(key)
            self._index(key, old, None)
            self._emit(2, old)
        for key, obj in fresh.items():
            prev = self.store.get(key)
            if prev is not None and prev.get("metadata", {}).get("resourceVersion") == \
                    obj.get("metadata", {}).get("resourceVersion"):
                continue
            self.store[key] = obj
            self._index(key, prev, obj)
            if prev is None:
                self._emit(0, obj)
            else:
                self._emit(1, prev, obj)

    # -- the loop ----------------------------------------------------------------

    def start(self) -> asyncio.Task[None]:
        if self._task is None:
            self._task = asyncio.create_task(self.run(), name=f"informer {self.rc.resource}")
        return self._task

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):
                pass

    async def run(self) -> None:
        backoff = 0.2
        need_list = True
        resync_task = None
        if self.resync_seconds:
            resync_task = asyncio.create_task(self._resync())
        try:
            while True:
                try:
                    if need_list:
                        page = await self.rc.list(self.namespace,
                                                  label_selector=self.label_selector,
                                                  field_selector=self.field_selector,
                                                  metadata_only=self.metadata_only)
                        self.resource_version = page["metadata"]["resourceVersion"]
                        self._replace(page["items"])
                        self.synced.set()
                        need_list = False
                    async for type_, obj in self.rc.watch(
                            self.namespace, resource_version=self.resource_version,
                            timeout_seconds=random.randint(300, 600),
                            label_selector=self.label_selector,
                            field_selector=self.field_selector,
                            metadata_only=self.metadata_only):
                        rv = obj.get("metadata", {}).get("resourceVersion")
                        if rv:
                            self.resource_version = rv
                        if type_ != "BOOKMARK":
                            self._apply(type_, obj)
                    backoff = 0.2
                except ApiError as e:
                    if e.gone:
                        need_list = True
                        continue
                    log.warning("informer %s: %s", self.rc.resource, e)
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, 10)
                except (OSError, asyncio.TimeoutError, Exception) as e:
                    if isinstance(e, asyncio.CancelledError):
                        raise
                    log.info("informer %s watch broke: %r; retrying", self.rc.resource, e)
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, 10)
        finally:
            if resync_task is not None:
                resync_task.cancel()

    async def _resync(self) -> None:
        while True:
            await asyncio.sleep(self.resync_seconds)
            for obj in list(self.store.values()):
                self._emit(1, obj, obj)


class InformerFactory:
    """One informer per (resource, namespace, selectors) in a process, shared
    by every controller that asks for it.

    A controller that reads only metadata (the garbage collector, quota
    counting) asks with ``metadata_only``: the informer then lists and
    watches PartialObjectMetadata, unless some controller asks for whole
    objects of the same resource before the informers start, in which case
    every one of them shares the informer of whole objects (metadata is a
    part of them). So a resource costs one watch and one copy of each
    object, and only its metadata when nothing needs more."""

    def __init__(self, client: Client):
        self.client = client
        self._informers: dict[tuple[str, str, str | None, str | None, str | None],
                              Informer] = {}

    def informer(self, api_version: str, resource: str, namespace: str | None = None, *,
                 label_selector: str | None = None, field_selector: str | None = None,
                 namespaced: bool | None = None, resync_seconds: float = 0,
                 metadata_only: bool = False) -> Informer:
        key = (api_version, resource, namespace, label_selector, field_selector)
        inf = self._informers.get(key)
        if inf is None:
            inf = Informer(self.client.resource(api_version, resource, namespaced), namespace,
                           label_selector=label_selector, field_selector=field_selector,
                           resync_seconds=resync_seconds, transform=strip_managed_fields,
                           metadata_only=metadata_only)
            self._informers[key] = inf
        elif inf.metadata_only and not metadata_only:
            if inf._task is not None:
                raise RuntimeError(f"informer of {resource} started with metadata only: whole "
                                   f"objects must be asked for before the informers start")
            inf.metadata_only = False
        return inf

    def start(self) -> None:
        for inf in self._informers.values():
            inf.start()

    async def wait_synced(self, timeout: float | None = None) -> None:
        await asyncio.wait_for(asyncio.gather(*(i.synced.wait()
                                                for i in self._informers.values())), timeout)

    async def stop(self) -> None:
        for inf in self._informers.values():
            await inf.stop()

    def all(self) -> list[Informer]:
        return list(self._informers.values())


__all__ = ["Informer", "InformerFactory", "key_of", "split_key", "strip_managed_fields"]
