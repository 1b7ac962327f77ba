"""The default roles and bindings, reconciled at every start as upstream's
rbac/bootstrap-roles hook does: a missing object is created; one a user left
with ``rbac.authorization.kubernetes.io/autoupdate`` not "false" gets back
the rules and subjects it lacks (what the user added stays); one with
"false" is left as it is.

The aggregated roles (admin, edit, view) are given the rules their
selectors gather from the defaults, so they work before the controller
manager's aggregation controller first runs (and in servers without one).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from pinnace.api.aggregation import aggregated_rules
from pinnace.api.resources import ResourceInfo

from . import bootstrappolicy as policy
from . import codec
from .registry import ResourceTable
from .rest import DeleteOptions, Options, Registry
from .status import APIError

log = logging.getLogger("pinnace.apiserver.rbacbootstrap")

GROUP = "rbac.authorization.k8s.io"
AUTOUPDATE = "rbac.authorization.kubernetes.io/autoupdate"


def _merge(current: dict[str, Any], default: dict[str, Any]) -> bool:
    """Bring ``current`` up to ``default``, keeping what was added; True if changed."""
    changed = False
    meta, want = current.setdefault("metadata", {}), default["metadata"]
    for field in ("labels", "annotations"):
        have = meta.setdefault(field, {})
        for k, v in (want.get(field) or {}).items():
            if k not in have:
                have[k] = v
                changed = True
    for field in ("rules", "subjects"):
        for item in default.get(field) or ():
            if item not in (current.get(field) or []):
                current.setdefault(field, []).append(item)
                changed = True
    if default.get("aggregationRule") and current.get("aggregationRule") != \
            default["aggregationRule"]:
        current["aggregationRule"] = default["aggregationRule"]
        changed = True
    return changed


# Defaults earlier pinnace versions made and this one must not keep: the
# binding that gave every node system:node before the Node authorizer existed.
RETIRED = {"clusterrolebindings": [(None, "pinnace:node")]}


async def ensure_default_policy(registry: Registry, table: ResourceTable) -> None:
    opts = Options(field_manager="pinnace-apiserver", field_validation="Ignore")
    cluster_roles = policy.cluster_roles()
    # Aggregation chains (view is labelled to aggregate into edit, edit into
    # admin): gather until nothing changes.
    changed = True
    while changed:
        changed = False
        for role in cluster_roles:
            if role.get("aggregationRule"):
                rules = aggregated_rules(role, cluster_roles)
                if rules != role["rules"]:
                    role["rules"], changed = rules, True
    for resource, objects in (("clusterroles", cluster_roles), ("roles", policy.roles()),
                              ("clusterrolebindings", policy.cluster_role_bindings()),
                              ("rolebindings", policy.role_bindings())):
        info = table.lookup(GROUP, "v1", resource)
        assert info is not None
        # One list instead of a read per object, and the objects reconciled
        # concurrently: this runs before every start completes.
        kvs = (await registry.list_kvs(info, None))[0]
        existing = {(o["metadata"].get("namespace"), o["metadata"]["name"]): o for o in (
            codec.decode_stored(kv.value, kv.mod_revision) for kv in kvs)}
        await asyncio.gather(*(
            _reconcile(registry, info, obj, existing.get(
                (obj["metadata"].get("namespace"), obj["metadata"]["name"])), opts)
            for obj in objects))
        for ns, name in RETIRED.get(resource, ()):
            old = existing.get((ns, name))
            if old is not None and (old["metadata"].get("annotations") or {}).get(
                    AUTOUPDATE) != "false":
                try:
                    await registry.delete(info, ns, name, DeleteOptions())
                except APIError as e:
                    if e.code != 404:
                        raise


async def _reconcile(registry: Registry, info: ResourceInfo, obj: dict[str, Any],
                     current: dict[str, Any] | None, opts: Options) -> None:
    meta = obj["metadata"]
    ns, name = meta.get("namespace"), meta["name"]
    if current is None:
        # An aggregated role is created empty (validation wants it so) and
        # filled by the update below, as the aggregation controller would.
        fresh = {**obj, "rules": []} if obj.get("aggregationRule") else obj
        try:
            current = await registry.create(info, ns, fresh, opts)
        except APIError as e:
            if e.code not in (404, 409):  # 404: a namespace not there yet
                raise
            return
    if (current["metadata"].get("annotations") or {}).get(AUTOUPDATE) == "false":
        return
    if current.get("roleRef", obj.get("roleRef")) != obj.get("roleRef"):
        log.warning("%s %s refers to another role than the default; left alone",
                    info.resource, name)
        return
    if _merge(current, obj):
        try:
            await registry.update(info, ns, name, current, opts)
        except APIError as e:
            if e.code != 409:  # someone else changed it: next start tries again
                raise
