"""The garbage collector: delete objects whose owners are gone, and carry out
foreground and orphan deletion (upstream pkg/controller/garbagecollector).

It watches every resource that can be listed, watched and deleted (found by
API discovery, re-run periodically so CustomResourceDefinitions join) and
keeps a graph: uid -> node (what the object is, its ownerReferences) and
owner uid -> dependent uids. Work items are uids:
- an object with owners: if every owner is gone (absent, or present with
  another uid), delete it; if only some are, drop the dangling references;
  if its remaining owners are all being deleted in the foreground, delete
  it in the foreground too;
- an owner being deleted with the ``orphan`` finalizer: remove the
  references to it from its dependents, then the finalizer;
- an owner being deleted with ``foregroundDeletion``: delete its
  dependents and, once no dependent that blocks owner deletion is left,
  remove the finalizer.
Owners not in the graph are checked with a live GET before anything is
deleted, so a lagging informer never causes a wrong deletion.

Discovery (upstream's GarbageCollector.Sync): every ``gc_discovery_seconds``
(30 s), and soon after a CustomResourceDefinition changes or an item names
an owner of a kind the collector does not know, the collector asks the API
for its resources again; it starts monitors (informers) for new ones and
stops those of resources gone from discovery (never of group versions whose
discovery failed). An item whose owner's kind is unknown is not kept as if
the owner lived: it is retried with back-off until discovery knows the kind
(upstream's restMappingError -> requeueItem), and at once when a discovery
finds new kinds. A cluster-scoped object with an owner of a namespaced kind
is left alone, as upstream leaves it (such a reference cannot be resolved).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

from pinnace.client import ApiError, Client, Informer
from pinnace.client.clock import wait_event
from pinnace.client.informer import strip_managed_fields

from .base import Context, Controller, Requeue

Obj = dict[str, Any]

ORPHAN = "orphan"
FOREGROUND = "foregroundDeletion"
# Never owners or dependents worth tracking (upstream ignores events too).
IGNORED = {("", "events"), ("events.k8s.io", "events")}
CRDS = ("apiextensions.k8s.io", "customresourcedefinitions")
# After a CRD changes, discovery is re-run until it serves the CRD's resource
# (the API server may publish it a moment after the CRD is stored), for up to:
CRD_DISCOVERY_PATIENCE = 10.0


class UnresolvableOwner(Exception):
    """A reference that can never be resolved (a cluster-scoped dependent
    naming an owner of a namespaced kind): the item is left alone."""


# -- discovery ---------------------------------------------------------------------


@dataclass(frozen=True)
class APIResource:
    group: str
    version: str
    resource: str
    kind: str
    namespaced: bool
    verbs: frozenset[str]

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version


async def discover(client: Client) -> tuple[list[APIResource], list[str]]:
    """Every top-level resource in each group's preferred version (plus core
    v1), and the group versions whose discovery failed."""
    failed: list[str] = []
    gvs: list[tuple[str, str]] = [("", "v1")]
    groups = await client.request("GET", "/apis")
    for g in (groups or {}).get("groups") or []:
        pref = (g.get("preferredVersion") or {}).get("version") or \
            ((g.get("versions") or [{}])[0]).get("version")
        if pref:
            gvs.append((g["name"], pref))

    async def one(group: str, version: str) -> list[APIResource]:
        path = f"/apis/{group}/{version}" if group else "/api/v1"
        try:
            doc = await client.request("GET", path)
        except (ApiError, OSError, asyncio.TimeoutError):
            failed.append(f"{group}/{version}" if group else version)
            return []
        out = []
        for r in (doc or {}).get("resources") or []:
            if "/" in r.get("name", ""):
                continue
            out.append(APIResource(group, version, r["name"], r.get("kind", ""),
                                   bool(r.get("namespaced")), frozenset(r.get("verbs") or [])))
        return out

    found = await asyncio.gather(*(one(g, v) for g, v in gvs))
    return [r for rs in found for r in rs], failed


# -- the graph ---------------------------------------------------------------------


@dataclass
class Node:
    uid: str
    res: APIResource
    namespace: str | None
    name: str
    owners: list[Obj]
    finalizers: list[str]
    deleting: bool
    resource_version: str = ""

    def ref_to(self, owner_uid: str) -> Obj | None:
        for r in self.owners:
            if r.get("uid") == owner_uid:
                return r
        return None


@dataclass
class Graph:
    nodes: dict[str, Node] = field(default_factory=dict)
    dependents: dict[str, set[str]] = field(default_factory=dict)

    def upsert(self, node: Node) -> Node | None:
        old = self.nodes.get(node.uid)
        if old is not None:
            for r in old.owners:
                deps = self.dependents.get(r.get("uid", ""))
                if deps is not None:
                    deps.discard(node.uid)
                    if not deps:
                        del self.dependents[r["uid"]]
        self.nodes[node.uid] = node
        for r in node.owners:
            if r.get("uid"):
                self.dependents.setdefault(r["uid"], set()).add(node.uid)
        return old

    def remove(self, uid: str) -> Node | None:
        node = self.nodes.pop(uid, None)
        if node is not None:
            for r in node.owners:
                deps = self.dependents.get(r.get("uid", ""))
                if deps is not None:
                    deps.discard(uid)
                    if not deps:
                        del self.dependents[r["uid"]]
        return node

    def dependents_of(self, uid: str) -> list[Node]:
        return [self.nodes[d] for d in self.dependents.get(uid, ()) if d in self.nodes]


def node_of(res: APIResource, obj: Obj) -> Node:
    meta = obj.get("metadata") or {}
    return Node(uid=meta.get("uid", ""), res=res, namespace=meta.get("namespace"),
                name=meta.get("name", ""), owners=list(meta.get("ownerReferences") or []),
                finalizers=list(meta.get("finalizers") or []),
                deleting=bool(meta.get("deletionTimestamp")),
                resource_version=meta.get("resourceVersion", ""))


class GarbageCollector(Controller):
    name = "garbagecollector"
    event_source = "garbage-collector-controller"
    workers = 8

    def __init__(self, ctx: Context):
        super().__init__(ctx)
        self.graph = Graph()
        self.resync_seconds = float(ctx.options.get("gc_discovery_seconds", 30))
        # Discoveries asked for by events come at most this often.
        self.min_discovery_interval = float(ctx.options.get("gc_discovery_min_interval", 0.5))
        self._watched: dict[tuple[str, str], tuple[APIResource, Informer]] = {}
        self._builtin: set[tuple[str, str]] = set()  # monitors that are never stopped
        self._by_kind: dict[tuple[str, str], APIResource] = {}  # (apiVersion, kind)
        self._by_gk: dict[tuple[str, str], APIResource] = {}  # (group, kind)
        self._discovery_wanted = asyncio.Event()
        self._last_discovery = 0.0
        # Items whose owner's kind was unknown, retried when discovery changes.
        self._unresolved: set[str] = set()
        # (group, resource) of changed CRDs -> until when to re-run discovery for them.
        self._expected: dict[tuple[str, str], float] = {}

    # -- informers ---------------------------------------------------------------

    def setup(self) -> None:
        from pinnace.api.resources import BUILTIN
        for info in BUILTIN:
            if info.virtual or info.storage_version and info.storage_version != info.version:
                continue
            res = APIResource(info.group, info.version, info.resource, info.kind,
                              info.namespaced, frozenset(info.verbs))
            if self._watch(res) is not None:
                self._builtin.add((res.group, res.resource))

    def _eligible(self, res: APIResource) -> bool:
        return {"list", "watch", "delete"} <= res.verbs and \
            (res.group, res.resource) not in IGNORED

    def _watch(self, res: APIResource, private: bool = False) -> Informer | None:
        """Map res's kind and start watching it (unless it is watched already
        or not eligible). Built-in resources share the process's informers;
        ``private`` ones (found by discovery, so possibly custom resources
        that go away again) get informers of their own, which can be stopped."""
        self._by_kind[(res.api_version, res.kind)] = res
        self._by_gk.setdefault((res.group, res.kind), res)
        gr = (res.group, res.resource)
        if not self._eligible(res) or gr in self._watched:
            return None
        # The graph needs metadata only (uid, owners, finalizers, deletion): the
        # informers list and watch PartialObjectMetadata unless another
        # controller needs whole objects of the resource anyway.
        if private:
            inf = Informer(self.client.resource(res.api_version, res.resource, res.namespaced),
                           transform=strip_managed_fields, metadata_only=True)
        else:
            inf = self.ctx.informers.informer(res.api_version, res.resource,
                                              namespaced=res.namespaced, metadata_only=True)
        inf.add_handler(lambda o: self._on_add(res, o), lambda a, b: self._on_update(res, a, b),
                        lambda o: self._on_delete(res, o))
        self._watched[gr] = (res, inf)
        return inf

    async def _unwatch(self, gr: tuple[str, str]) -> None:
        res, inf = self._watched.pop(gr)
        for table, key in ((self._by_kind, (res.api_version, res.kind)),
                           (self._by_gk, (res.group, res.kind))):
            if table.get(key) == res:
                del table[key]
        await inf.stop()
        self.log.info("stopped monitoring %s (gone from discovery)", res.api_version + "/" +
                      res.resource)

    async def rediscover(self) -> None:
        """Sync the monitors with discovery (upstream GarbageCollector.Sync):
        watch new resources, stop watching vanished custom ones, and retry
        the items that waited for a kind."""
        self._last_discovery = time.monotonic()
        try:
            found, failed = await discover(self.client)
        except (ApiError, OSError, asyncio.TimeoutError) as e:
            self.log.info("discovery failed: %s", e)
            return
        known = set(self._by_kind)
        started = False
        for res in found:
            inf = self._watch(res, private=True)
            if inf is not None:
                inf.start()
                started = True
        present = {(r.group, r.resource) for r in found}
        failed_groups = {gv.rpartition("/")[0] for gv in failed}
        for gr in [gr for gr in self._watched if gr not in present and
                   gr not in self._builtin and gr[0] not in failed_groups]:
            await self._unwatch(gr)
        now = time.monotonic()
        self._expected = {gr: until for gr, until in self._expected.items()
                          if gr not in present and until > now}
        if (started or set(self._by_kind) != known) and self._unresolved:
            waiting, self._unresolved = self._unresolved, set()
            for uid in waiting:
                self.queue.add(uid)

    def want_discovery(self) -> None:
        """Ask for a discovery soon (coalesced, at most one per
        min_discovery_interval)."""
        self._discovery_wanted.set()

    async def run(self) -> None:
        try:
            await self.rediscover()
            await asyncio.gather(*(inf.synced.wait() for _, inf in self._watched.values()))
            # Objects seen before every informer synced are checked now.
            for node in list(self.graph.nodes.values()):
                if node.owners or node.deleting:
                    self.queue.add(node.uid)
            await asyncio.gather(super().run(), self._rediscover_loop())
        finally:
            for gr in [gr for gr in self._watched if gr not in self._builtin]:
                await self._watched.pop(gr)[1].stop()

    async def _rediscover_loop(self) -> None:
        while True:
            await wait_event(self._discovery_wanted, self.resync_seconds)
            wait = self._last_discovery + self.min_discovery_interval - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            self._discovery_wanted.clear()
            await self.rediscover()
            if self._expected:  # a changed CRD is not served yet: look again soon
                self._discovery_wanted.set()

    # -- graph upkeep --------------------------------------------------------------

    def _crd_changed(self, crd: Obj) -> None:
        spec = crd.get("spec") or {}
        plural = (spec.get("names") or {}).get("plural")
        if spec.get("group") and plural:
            self._expected[(spec["group"], plural)] = time.monotonic() + CRD_DISCOVERY_PATIENCE
        self.want_discovery()

    def _on_add(self, res: APIResource, obj: Obj) -> None:
        if (res.group, res.resource) == CRDS:
            self._crd_changed(obj)
        node = node_of(res, obj)
        self.graph.upsert(node)
        if node.owners or _pending_finalizer(node):
            self.queue.add(node.uid)

    def _on_update(self, res: APIResource, old: Obj, new: Obj) -> None:
        if (res.group, res.resource) == CRDS and old.get("spec") != new.get("spec"):
            self._crd_changed(new)
        node = node_of(res, new)
        prev = self.graph.upsert(node)
        owners_changed = prev is None or prev.owners != node.owners
        if owners_changed and node.owners or _pending_finalizer(node):
            self.queue.add(node.uid)
        if prev is not None and prev.deleting != node.deleting:
            for d in self.graph.dependents_of(node.uid):
                self.queue.add(d.uid)
        if prev is not None and owners_changed:
            # An owner waiting for this dependent may be free now.
            for r in prev.owners:
                self.queue.add(r.get("uid", ""))

    def _on_delete(self, res: APIResource, obj: Obj) -> None:
        if (res.group, res.resource) == CRDS:
            self.want_discovery()
        uid = (obj.get("metadata") or {}).get("uid", "")
        self._unresolved.discard(uid)
        node = self.graph.remove(uid)
        for d in self.graph.dependents.get(uid, ()):
            self.queue.add(d)
        if node is not None:
            for r in node.owners:
                if r.get("uid") in self.graph.nodes:
                    self.queue.add(r["uid"])

    # -- work ------------------------------------------------------------------------

    async def sync(self, key: str) -> None:
        node = self.graph.nodes.get(key)
        if node is None:
            return
        if node.deleting:
            if ORPHAN in node.finalizers:
                await self._orphan_dependents(node)
                return
            if FOREGROUND in node.finalizers:
                await self._delete_dependents(node)
                return
            return
        if node.owners:
            try:
                await self._check_owners(node)
            except UnresolvableOwner as e:
                self.log.info("%s %s: %s; leaving it alone", node.res.kind, node.name, e)

    async def _owner_state(self, node: Node, ref: Obj) -> str:
        """"absent", "present" or "waiting" (being deleted in the foreground)."""
        owner = self.graph.nodes.get(ref.get("uid", ""))
        if owner is not None:
            return "waiting" if owner.deleting and FOREGROUND in owner.finalizers else "present"
        res = self._resolve(ref)
        if res is None:
            # Perhaps a custom resource discovery has not caught up with: try
            # again (with back-off) once discovery has run again.
            self._unresolved.add(node.uid)
            self.want_discovery()
            raise Requeue(f"owner kind {ref.get('kind')} in {ref.get('apiVersion')} is not "
                          "known (yet)")
        self._unresolved.discard(node.uid)
        if res.namespaced and not node.namespace:
            raise UnresolvableOwner("cluster-scoped objects cannot refer to namespaced owners")
        api = self.client.resource(res.api_version, res.resource, res.namespaced)
        try:
            live = await api.get(ref["name"], node.namespace if res.namespaced else None)
        except ApiError as e:
            if e.not_found:
                return "absent"
            raise
        meta = live.get("metadata") or {}
        if meta.get("uid") != ref.get("uid"):
            return "absent"
        if meta.get("deletionTimestamp") and FOREGROUND in (meta.get("finalizers") or []):
            return "waiting"
        return "present"

    def _resolve(self, ref: Obj) -> APIResource | None:
        api_version = ref.get("apiVersion", "")
        kind = ref.get("kind", "")
        res = self._by_kind.get((api_version, kind))
        if res is None:
            group = api_version.rpartition("/")[0]
            res = self._by_gk.get((group, kind))
        return res

    async def _check_owners(self, node: Node) -> None:
        states = [(ref, await self._owner_state(node, ref)) for ref in node.owners]
        absent = [r for r, s in states if s == "absent"]
        waiting = [r for r, s in states if s == "waiting"]
        solid = [r for r, s in states if s == "present"]
        if solid:
            gone = {r["uid"] for r in absent + waiting}
            if gone:
                await self._patch_owners(node, lambda refs: [r for r in refs
                                                             if r.get("uid") not in gone])
            return
        if waiting:
            # Every live owner waits for this one: go first, and take our own
            # dependents with us when we block any of them.
            blocks = any(r.get("blockOwnerDeletion") for r in waiting)
            policy = "Foreground" if blocks else "Background"
        elif ORPHAN in node.finalizers:
            policy = "Orphan"
        elif FOREGROUND in node.finalizers:
            policy = "Foreground"
        else:
            policy = "Background"
        await self._delete(node, policy)

    async def _delete(self, node: Node, policy: str) -> None:
        api = self.client.resource(node.res.api_version, node.res.resource, node.res.namespaced)
        try:
            await api.delete(node.name, node.namespace, propagation_policy=policy,
                             preconditions={"uid": node.uid})
        except ApiError as e:
            if not (e.not_found or e.conflict):
                raise

    async def _patch_owners(self, node: Node, change: Any) -> None:
        await self._patch_meta_list(node, "ownerReferences", node.owners, change)

    async def _remove_finalizer(self, node: Node, finalizer: str) -> None:
        await self._patch_meta_list(node, "finalizers", node.finalizers,
                                    lambda fins: [f for f in fins if f != finalizer])

    async def _patch_meta_list(self, node: Node, field: str, current: list[Any],
                               change: Any) -> None:
        """Set metadata.<field> to change(current) with a resourceVersion
        precondition, re-reading the object after a conflict; nothing to do
        once the object is gone or replaced (another uid)."""
        api = self.client.resource(node.res.api_version, node.res.resource, node.res.namespaced)
        rv = node.resource_version
        for _ in range(8):
            new = change(current)
            if new == current:
                return
            try:
                await api.patch(node.name, {"metadata": {field: new or None,
                                                         "resourceVersion": rv}},
                                node.namespace)
                return
            except ApiError as e:
                if e.not_found:
                    return
                if not e.conflict:
                    raise
            try:
                fresh = await api.get(node.name, node.namespace)
            except ApiError as e:
                if e.not_found:
                    return
                raise
            if fresh["metadata"].get("uid") != node.uid:
                return
            current = list(fresh["metadata"].get(field) or [])
            rv = fresh["metadata"]["resourceVersion"]
        raise RuntimeError(f"could not update {field} of {node.name}")

    async def _orphan_dependents(self, owner: Node) -> None:
        await asyncio.gather(*(self._patch_owners(
            d, lambda refs: [r for r in refs if r.get("uid") != owner.uid])
            for d in self.graph.dependents_of(owner.uid)))
        await self._remove_finalizer(owner, ORPHAN)

    async def _delete_dependents(self, owner: Node) -> None:
        deps = [d for d in self.graph.dependents_of(owner.uid) if d.ref_to(owner.uid)]
        for d in deps:
            if not d.deleting:
                self.queue.add(d.uid)  # its own check sees the owner waiting
        blocking = [d for d in deps if (d.ref_to(owner.uid) or {}).get("blockOwnerDeletion")]
        if not blocking:
            await self._remove_finalizer(owner, FOREGROUND)


def _pending_finalizer(node: Node) -> bool:
    return node.deleting and (ORPHAN in node.finalizers or FOREGROUND in node.finalizers)


CONTROLLERS = {"garbagecollector": GarbageCollector}
