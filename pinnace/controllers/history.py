"""Revision history shared by the workload controllers: the stable short hash
that names ReplicaSets (pod-template-hash) and ControllerRevisions, revision
numbers, and ControllerRevision objects for StatefulSets and DaemonSets (as
upstream's pkg/controller/history and controller.ComputeHash).

The hash is FNV-1a (32 bit) over a canonical encoding of the object plus the
owner's collisionCount, printed in decimal and then mapped onto an alphabet
without vowels (so a hash never spells a word), exactly the shape upstream
gives it; the bytes hashed differ from Go's, which nothing depends on.
"""

from __future__ import annotations

import copy
from typing import Any

import orjson

from pinnace.client import ApiError, Client

from .base import controller_ref, owner_reference

Obj = dict[str, Any]

REVISION_ANNOTATION = "deployment.kubernetes.io/revision"
REVISION_HISTORY_ANNOTATION = "deployment.kubernetes.io/revision-history"
CONTROLLER_REVISION_HASH_LABEL = "controller-revision-hash"

_ALPHANUMS = "bcdfghjklmnpqrstvwxz2456789"
_FNV_OFFSET = 0x811C9DC5
_FNV_PRIME = 0x01000193


def fnv32a(data: bytes, h: int = _FNV_OFFSET) -> int:
    for b in data:
        h = ((h ^ b) * _FNV_PRIME) & 0xFFFFFFFF
    return h


def safe_encode(s: str) -> str:
    return "".join(_ALPHANUMS[ord(c) % len(_ALPHANUMS)] for c in s)


def compute_hash(obj: Any, collision_count: int | None = None) -> str:
    """A short, stable name suffix for ``obj`` (a pod template or revision data)."""
    h = fnv32a(orjson.dumps(obj, option=orjson.OPT_SORT_KEYS))
    if collision_count is not None:
        h = fnv32a(int(collision_count).to_bytes(4, "little", signed=False), h)
    return safe_encode(str(h))


def revision_name(prefix: str, hash_: str) -> str:
    # Names are at most 253 characters; upstream keeps 223 of the prefix.
    return f"{prefix[:223]}-{hash_}"


def revision_of(obj: Obj) -> int:
    """The deployment.kubernetes.io/revision annotation as a number (0 if absent)."""
    raw = ((obj.get("metadata") or {}).get("annotations") or {}).get(REVISION_ANNOTATION)
    try:
        return int(raw) if raw else 0
    except ValueError:
        return 0


# -- ControllerRevisions -----------------------------------------------------------


def template_patch(owner: Obj) -> Obj:
    """What a StatefulSet or DaemonSet revision stores: a strategic merge patch
    that replaces the pod template (what `kubectl rollout undo` applies)."""
    template = copy.deepcopy((owner.get("spec") or {}).get("template") or {})
    template["$patch"] = "replace"
    return {"spec": {"template": template}}


def template_from_revision(rev: Obj) -> Obj:
    template = copy.deepcopy(((rev.get("data") or {}).get("spec") or {}).get("template") or {})
    template.pop("$patch", None)
    return template


def new_revision(owner: Obj, number: int, collision_count: int | None,
                 label_is_name: bool = False) -> Obj:
    """A ControllerRevision of ``owner``'s template. Its controller-revision-hash
    label is the bare hash (DaemonSet) or, with ``label_is_name``, the revision
    name (StatefulSet), as upstream labels them."""
    data = template_patch(owner)
    hash_ = compute_hash(data, collision_count)
    labels = dict(((owner.get("spec") or {}).get("template") or {}).get("metadata", {})
                  .get("labels") or {})
    name = revision_name(owner["metadata"]["name"], hash_)
    labels[CONTROLLER_REVISION_HASH_LABEL] = name if label_is_name else hash_
    return {"apiVersion": "apps/v1", "kind": "ControllerRevision",
            "metadata": {"name": name,
                         "namespace": owner["metadata"]["namespace"], "labels": labels,
                         "ownerReferences": [owner_reference(owner)]},
            "data": data, "revision": number}


def equal_revision(a: Obj, b: Obj) -> bool:
    return orjson.dumps(a.get("data"), option=orjson.OPT_SORT_KEYS) == \
        orjson.dumps(b.get("data"), option=orjson.OPT_SORT_KEYS)


def sort_revisions(revs: list[Obj]) -> list[Obj]:
    return sorted(revs, key=lambda r: (int(r.get("revision", 0)),
                                       r["metadata"].get("creationTimestamp", ""),
                                       r["metadata"]["name"]))


def next_revision(revs: list[Obj]) -> int:
    return max((int(r.get("revision", 0)) for r in revs), default=0) + 1


def owned_revisions(revisions: list[Obj], owner: Obj) -> list[Obj]:
    uid = owner["metadata"]["uid"]
    return [r for r in revisions
            if (ref := controller_ref(r)) is not None and ref.get("uid") == uid]


class Revisions:
    """Creating, renumbering and trimming an owner's ControllerRevisions."""

    def __init__(self, client: Client):
        self.api = client.resource("apps/v1", "controllerrevisions")

    async def create(self, owner: Obj, number: int, collision_count: int,
                     label_is_name: bool = False) -> tuple[Obj, int]:
        """Create revision ``number`` of ``owner``'s template; on a name clash
        with different data, bump the collision count and try the next name
        (upstream's CreateControllerRevision).
        Returns the stored revision and the collision count used."""
        ns = owner["metadata"]["namespace"]
        for _ in range(16):
            revision = new_revision(owner, number, collision_count, label_is_name)
            try:
                return await self.api.create(revision, ns), collision_count
            except ApiError as e:
                if e.status.get("reason") != "AlreadyExists":
                    raise
            existing = await self.api.get(revision["metadata"]["name"], ns)
            ref = controller_ref(existing)
            if equal_revision(existing, revision) and ref and \
                    ref.get("uid") == owner["metadata"]["uid"]:
                return existing, collision_count
            collision_count += 1
        raise RuntimeError("too many ControllerRevision name collisions")

    async def renumber(self, rev: Obj, number: int) -> Obj:
        if int(rev.get("revision", 0)) == number:
            return rev
        return await self.api.patch(rev["metadata"]["name"], {"revision": number},  # type: ignore[no-any-return]
                                    rev["metadata"]["namespace"])

    async def trim(self, revisions: list[Obj], limit: int, live: set[str]) -> None:
        """Delete the oldest revisions beyond ``limit`` that no pod still uses
        (``live``: revision names in use, including current and update)."""
        spare = [r for r in sort_revisions(revisions) if r["metadata"]["name"] not in live]
        for rev in spare[:max(0, len(spare) - limit)]:
            try:
                await self.api.delete(rev["metadata"]["name"], rev["metadata"]["namespace"])
            except ApiError as e:
                if not e.not_found:
                    raise
