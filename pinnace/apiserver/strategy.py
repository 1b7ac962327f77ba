"""Per-kind behaviour the generic registry defers to: status handling,
generation, graceful deletion, and the admission steps that allocate or
check something (service IPs and node ports, namespace lifecycle, CRDs).

Every hook has a generic default in ``Strategy``; kinds override only what
differs, the way upstream's per-resource strategies do.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from pinnace.api import crdrules, crdschema, defaults, fieldcheck, validation
from pinnace.api.field import FieldError, invalid
from pinnace.api.jsoncopy import json_copy
from pinnace.api.resources import ResourceInfo
from pinnace.api.validation.others import SYSTEM_PRIORITY_CLASSES
from pinnace.api.validation.pods import qos_class
from pinnace.storage.interface import KeyNotFoundError, Store

from . import codec, status
from .admission.priority import PriorityClasses
from .allocator import AllocationError, NodePortAllocator, ServiceIPAllocator
from .registry import ResourceTable

log = logging.getLogger("pinnace.apiserver.strategy")

Undo = Callable[[], Awaitable[None]]


async def _nothing() -> None:
    return None


# Kinds whose metadata.generation counts spec changes, as upstream tracks it.
_GENERATION = {
    ("", "pods"), ("", "replicationcontrollers"), ("apps", "replicasets"),
    ("apps", "deployments"), ("apps", "statefulsets"), ("apps", "daemonsets"), ("batch", "jobs"),
    ("batch", "cronjobs"), ("autoscaling", "horizontalpodautoscalers"),
    ("policy", "poddisruptionbudgets"), ("networking.k8s.io", "ingresses"),
    ("networking.k8s.io", "networkpolicies"),
    ("apiextensions.k8s.io", "customresourcedefinitions"),
}


# A new object's status where upstream's reset struct is not {} in JSON:
# fields without omitempty show their zero value, a struct field shows {}.
# The official client refuses a StatefulSet status without its replicas.
_NEW_STATUS: dict[tuple[str, str], dict[str, Any]] = {
    ("", "services"): {"loadBalancer": {}},
    ("networking.k8s.io", "ingresses"): {"loadBalancer": {}},
    ("", "replicationcontrollers"): {"replicas": 0},
    ("apps", "replicasets"): {"replicas": 0},
    ("apps", "statefulsets"): {"replicas": 0, "availableReplicas": 0},
    ("apps", "daemonsets"): {"currentNumberScheduled": 0, "numberMisscheduled": 0,
                             "desiredNumberScheduled": 0, "numberReady": 0},
    ("autoscaling", "horizontalpodautoscalers"): {"currentReplicas": 0, "desiredReplicas": 0},
    ("storage.k8s.io", "volumeattachments"): {"attached": False},
}


class Strategy:
    def tracks_generation(self, info: ResourceInfo) -> bool:
        return info.crd is not None or (info.group, info.resource) in _GENERATION

    def validate(self, info: ResourceInfo, obj: dict[str, Any],
                 old: dict[str, Any] | None) -> list[FieldError]:
        """Checks beyond the per-kind validation package (default: none)."""
        return []

    def prepare_create(self, info: ResourceInfo, obj: dict[str, Any]) -> None:
        if "status" in info.subresources and info.crd is None:
            # Upstream resets a new object's status struct, which Go's JSON
            # shows as {} (omitempty keeps an empty struct): clients read
            # obj["status"], and the official client's .status, at once.
            obj["status"] = copy.deepcopy(_NEW_STATUS.get((info.group, info.resource), {}))

    def prepare_update(self, info: ResourceInfo, new: dict[str, Any], old: dict[str, Any],
                       subresource: str) -> None:
        if "status" not in info.subresources:
            return
        if subresource == "status":
            # A status write changes status only (and metadata that clients
            # may always change); the rest of the object stays as stored.
            for k in set(new) | set(old):
                if k not in ("metadata", "status", "apiVersion", "kind"):
                    if k in old:
                        new[k] = json_copy(old[k])
                    else:
                        new.pop(k, None)
        elif subresource == "":
            if "status" in old:
                new["status"] = json_copy(old["status"])
            else:
                new.pop("status", None)

    def set_requester(self, info: ResourceInfo, obj: dict[str, Any], user: Any) -> None:
        """Record who creates ``obj`` (``user``: an authn.User, or None for
        the server's own writes), for kinds that carry it (CSRs)."""

    async def authorize_content(self, info: ResourceInfo, obj: dict[str, Any],
                                user: Any) -> None:
        """Refuse content ``user`` (an authn.User, None for the server's own
        writes) may not write even though it may write the object: what
        RBAC's escalation prevention checks in roles and bindings."""

    async def admit_create(self, info: ResourceInfo, obj: dict[str, Any], dry_run: bool) -> Undo:
        return _nothing

    async def admit_update(self, info: ResourceInfo, new: dict[str, Any], old: dict[str, Any],
                           dry_run: bool) -> Undo:
        return _nothing

    async def after_create(self, info: ResourceInfo, obj: dict[str, Any]) -> None:
        pass

    async def after_update(self, info: ResourceInfo, new: dict[str, Any],
                           old: dict[str, Any]) -> None:
        pass

    async def after_delete(self, info: ResourceInfo, obj: dict[str, Any]) -> None:
        pass

    def grace_period(self, info: ResourceInfo, obj: dict[str, Any], requested: int | None) -> int:
        return 0

    def deletion_pending(self, info: ResourceInfo, obj: dict[str, Any]) -> bool:
        return False

    def prepare_delete(self, info: ResourceInfo, obj: dict[str, Any]) -> None:
        pass

    def admit_delete(self, info: ResourceInfo, obj: dict[str, Any]) -> None:
        """Raise to refuse deleting ``obj`` at all."""

    def finished_when_unfinalized(self, info: ResourceInfo, obj: dict[str, Any]) -> bool:
        # Upstream removes an object once it has no finalizers and no grace period left.
        return obj["metadata"].get("deletionGracePeriodSeconds", 0) == 0


class PriorityClassStrategy(Strategy):
    def __init__(self, classes: PriorityClasses):
        self.classes = classes

    def admit_delete(self, info: ResourceInfo, obj: dict[str, Any]) -> None:
        name = obj["metadata"]["name"]
        if name in SYSTEM_PRIORITY_CLASSES:
            # Upstream names the class where the resource would go.
            raise status.forbidden(f"{name}.scheduling.k8s.io is forbidden: this is a system "
                                   "priority class and cannot be deleted",
                                   name, "scheduling.k8s.io")

    # Hooks that run before the new revision is known: the write's revision
    # is at least one past the old object's, and that is what is recorded.
    async def after_create(self, info: ResourceInfo, obj: dict[str, Any]) -> None:
        self.classes.record(obj, int(obj["metadata"].get("resourceVersion") or 0))

    async def after_update(self, info: ResourceInfo, new: dict[str, Any],
                           old: dict[str, Any]) -> None:
        self.classes.record(new, int(old["metadata"].get("resourceVersion") or 0) + 1)

    async def after_delete(self, info: ResourceInfo, obj: dict[str, Any]) -> None:
        self.classes.record(obj, int(obj["metadata"].get("resourceVersion") or 0) + 1, True)


SCHEDULING_GATED_MESSAGE = "Scheduling is blocked due to non-empty scheduling gates"


class PodStrategy(Strategy):
    def prepare_create(self, info: ResourceInfo, obj: dict[str, Any]) -> None:
        spec = obj.setdefault("spec", {})
        obj["status"] = {"phase": "Pending", "qosClass": qos_class(spec)}
        if spec.get("schedulingGates"):
            # Said at once, so nobody mistakes a held pod for one the scheduler failed.
            obj["status"]["conditions"] = [{
                "type": "PodScheduled", "status": "False", "lastProbeTime": None,
                "lastTransitionTime": _now(), "reason": "SchedulingGated",
                "message": SCHEDULING_GATED_MESSAGE}]

    def prepare_update(self, info: ResourceInfo, new: dict[str, Any], old: dict[str, Any],
                       subresource: str) -> None:
        if subresource in ("ephemeralcontainers", "resize"):
            # Each writes one part of the spec; everything else stays as stored.
            asked = new.get("spec")
            spec: dict[str, Any] = asked if isinstance(asked, dict) else {}
            kept = {k: new[k] for k in ("metadata",) if k in new}
            new.clear()
            new.update(copy.deepcopy(old), **kept)
            if subresource == "ephemeralcontainers":
                new["spec"]["ephemeralContainers"] = spec.get("ephemeralContainers") or []
                if not new["spec"]["ephemeralContainers"]:
                    del new["spec"]["ephemeralContainers"]
            else:
                _take_resources(new["spec"], spec)
            return
        super().prepare_update(info, new, old, subresource)
        if subresource == "":
            # Admission set these on create; a client that leaves them out keeps them.
            spec, old_spec = new.setdefault("spec", {}), old.get("spec") or {}
            if isinstance(spec, dict):
                for key in ("priority", "preemptionPolicy"):
                    if spec.get(key) is None and old_spec.get(key) is not None:
                        spec[key] = old_spec[key]

    def grace_period(self, info: ResourceInfo, obj: dict[str, Any], requested: int | None) -> int:
        spec, st = obj.get("spec", {}), obj.get("status", {})
        if not spec.get("nodeName") or st.get("phase") in ("Succeeded", "Failed"):
            return 0  # nothing runs it: nobody to wait for
        if requested is not None:
            return max(requested, 0)
        return int(spec.get("terminationGracePeriodSeconds", 30))


def _take_resources(spec: dict[str, Any], asked: dict[str, Any]) -> None:
    """pods/resize: each container's resources (and resizePolicy) as asked,
    matched by name; nothing else of the spec."""
    for key in ("containers", "initContainers"):
        wanted = {c.get("name"): c for c in asked.get(key) or [] if isinstance(c, dict)}
        for c in spec.get(key) or []:
            w = wanted.get(c.get("name"))
            if w is None:
                continue
            for field_ in ("resources", "resizePolicy"):
                if field_ in w:
                    c[field_] = w[field_]


def _now() -> str:
    from .rest import now_rfc3339

    return now_rfc3339()


class PodDisruptionBudgetStrategy(Strategy):
    def prepare_create(self, info: ResourceInfo, obj: dict[str, Any]) -> None:
        # A new budget allows nothing until the disruption controller has counted.
        obj["status"] = {"disruptionsAllowed": 0, "currentHealthy": 0, "desiredHealthy": 0,
                         "expectedPods": 0}


class PersistentVolumeClaimStrategy(Strategy):
    def prepare_create(self, info: ResourceInfo, obj: dict[str, Any]) -> None:
        # Upstream clears the status and its read path defaults the phase, so
        # a claim is Pending from its creation's response on.
        obj["status"] = {"phase": "Pending"}
        _protect(obj, "kubernetes.io/pvc-protection")


class PersistentVolumeStrategy(Strategy):
    def prepare_create(self, info: ResourceInfo, obj: dict[str, Any]) -> None:
        obj["status"] = {"phase": "Pending", "lastPhaseTransitionTime": _now()}
        _protect(obj, "kubernetes.io/pv-protection")

    def prepare_update(self, info: ResourceInfo, new: dict[str, Any], old: dict[str, Any],
                       subresource: str) -> None:
        super().prepare_update(info, new, old, subresource)
        if subresource != "status":
            return
        # The time of the last phase change: the server's, unless the writer
        # set one of its own; kept while the phase stays.
        st, was = new.setdefault("status", {}), old.get("status") or {}
        if st.get("phase") == was.get("phase"):
            if st.get("lastPhaseTransitionTime") is None and was.get("lastPhaseTransitionTime"):
                st["lastPhaseTransitionTime"] = was["lastPhaseTransitionTime"]
        elif st.get("lastPhaseTransitionTime") in (None, was.get("lastPhaseTransitionTime")):
            st["lastPhaseTransitionTime"] = _now()


def _protect(obj: dict[str, Any], finalizer: str) -> None:
    """StorageObjectInUseProtection admission: a claim or volume carries its
    protection finalizer from its creation, so one deleted while a pod
    still uses it waits (the volume-protection controllers remove it)."""
    meta = obj.setdefault("metadata", {})
    finalizers = meta.get("finalizers") or []
    if finalizer not in finalizers:
        meta["finalizers"] = [*finalizers, finalizer]


class NodeStrategy(Strategy):
    def prepare_create(self, info: ResourceInfo, obj: dict[str, Any]) -> None:
        pass  # a kubelet registers its node with its status, which is kept


class JobStrategy(Strategy):
    def prepare_create(self, info: ResourceInfo, obj: dict[str, Any]) -> None:
        super().prepare_create(info, obj)
        spec = obj.setdefault("spec", {})
        if spec.get("manualSelector"):
            return
        # The server owns the selector of an ordinary Job: it is the Job's uid.
        meta = obj["metadata"]
        spec["selector"] = {"matchLabels": defaults.job_selector_labels(meta["uid"])}
        labels = spec.setdefault("template", {}).setdefault("metadata", {}).setdefault(
            "labels", {})
        labels.update(defaults.job_template_labels(meta["uid"], meta["name"]))


TEMPLATE_GENERATION = "deprecated.daemonset.template.generation"


class DaemonSetStrategy(Strategy):
    """apps/v1 carries a DaemonSet's template generation (upstream's
    spec.templateGeneration) in an annotation: 1 on create, one more at each
    template change, whatever the client sent."""

    def prepare_create(self, info: ResourceInfo, obj: dict[str, Any]) -> None:
        super().prepare_create(info, obj)
        _annotations(obj)[TEMPLATE_GENERATION] = "1"

    def prepare_update(self, info: ResourceInfo, new: dict[str, Any], old: dict[str, Any],
                       subresource: str) -> None:
        super().prepare_update(info, new, old, subresource)
        try:  # a DaemonSet stored without it (made before pinnace set it) counts as 1
            gen = int(((old["metadata"].get("annotations") or {}).get(TEMPLATE_GENERATION)
                       or 1))
        except ValueError:
            gen = 1
        if not subresource and (new.get("spec") or {}).get("template") != \
                (old.get("spec") or {}).get("template"):
            gen += 1
        _annotations(new)[TEMPLATE_GENERATION] = str(gen)


def _annotations(obj: dict[str, Any]) -> dict[str, Any]:
    """The object's annotations, made a map if absent or null."""
    annotations = obj["metadata"].get("annotations")
    if not isinstance(annotations, dict):
        annotations = obj["metadata"]["annotations"] = {}
    return annotations


class NamespaceStrategy(Strategy):
    def prepare_create(self, info: ResourceInfo, obj: dict[str, Any]) -> None:
        obj["status"] = {"phase": "Active"}
        obj.setdefault("spec", {}).setdefault("finalizers", ["kubernetes"])
        labels = obj["metadata"].setdefault("labels", {})
        labels["kubernetes.io/metadata.name"] = obj["metadata"]["name"]

    def prepare_update(self, info: ResourceInfo, new: dict[str, Any], old: dict[str, Any],
                       subresource: str) -> None:
        if subresource == "finalize":
            finalizers = (new.get("spec") or {}).get("finalizers")
            new.clear()
            new.update(copy.deepcopy(old))
            new["spec"]["finalizers"] = finalizers or []
            return
        super().prepare_update(info, new, old, subresource)
        if subresource == "":
            new["spec"] = copy.deepcopy(old.get("spec", {}))  # only /finalize changes finalizers
        new["metadata"].setdefault("labels", {})["kubernetes.io/metadata.name"] = \
            new["metadata"]["name"]

    def deletion_pending(self, info: ResourceInfo, obj: dict[str, Any]) -> bool:
        return bool((obj.get("spec") or {}).get("finalizers"))

    def prepare_delete(self, info: ResourceInfo, obj: dict[str, Any]) -> None:
        obj.setdefault("status", {})["phase"] = "Terminating"

    def finished_when_unfinalized(self, info: ResourceInfo, obj: dict[str, Any]) -> bool:
        return not (obj.get("spec") or {}).get("finalizers")


class ServiceStrategy(Strategy):
    def __init__(self, ips: ServiceIPAllocator, ports: NodePortAllocator):
        self.ips = ips
        self.ports = ports

    def prepare_update(self, info: ResourceInfo, new: dict[str, Any], old: dict[str, Any],
                       subresource: str) -> None:
        super().prepare_update(info, new, old, subresource)
        spec, old_spec = new.setdefault("spec", {}), old.get("spec", {})
        # A replace that omits allocated values keeps them (upstream's
        # patchAllocatedValues), so `kubectl replace` of a saved manifest works.
        if not spec.get("clusterIP") and old_spec.get("clusterIP") and \
                spec.get("type", "ClusterIP") != "ExternalName":
            spec["clusterIP"] = old_spec["clusterIP"]
            spec["clusterIPs"] = copy.deepcopy(old_spec.get("clusterIPs", [old_spec["clusterIP"]]))
        if _needs_node_ports(spec) and _needs_node_ports(old_spec):
            old_ports = {(p.get("port"), p.get("protocol", "TCP")): p.get("nodePort")
                         for p in old_spec.get("ports", [])}
            for p in spec.get("ports", []):
                if not p.get("nodePort"):
                    np = old_ports.get((p.get("port"), p.get("protocol", "TCP")))
                    if np:
                        p["nodePort"] = np

    async def admit_create(self, info: ResourceInfo, obj: dict[str, Any], dry_run: bool) -> Undo:
        return await self._allocate(obj, None)

    async def admit_update(self, info: ResourceInfo, new: dict[str, Any], old: dict[str, Any],
                           dry_run: bool) -> Undo:
        return await self._allocate(new, old)

    async def _allocate(self, obj: dict[str, Any], old: dict[str, Any] | None) -> Undo:
        spec = obj.setdefault("spec", {})
        old_spec = (old or {}).get("spec", {})
        name = obj["metadata"]["name"]
        owner = f"{obj['metadata'].get('namespace')}/{name}".encode()
        taken_ips: list[str] = []
        taken_ports: list[int] = []

        async def undo() -> None:
            for ip in taken_ips:
                await self.ips.release(ip)
            for port in taken_ports:
                await self.ports.release(port)

        errors: list[FieldError] = []
        try:
            if spec.get("type", "ClusterIP") != "ExternalName":
                ip = spec.get("clusterIP") or ""
                if ip != "None" and ip != old_spec.get("clusterIP"):
                    if ip:
                        try:
                            await self.ips.allocate(ip, owner)
                            taken_ips.append(ip)
                        except AllocationError as e:
                            errors.append(invalid("spec.clusterIPs", [ip],
                                                  f"failed to allocate IP {ip}: {e}"))
                    else:
                        ip = await self.ips.allocate_next(owner)
                        taken_ips.append(ip)
                        spec["clusterIP"] = ip
                spec["clusterIPs"] = [spec["clusterIP"]]
                spec.setdefault("ipFamilies", ["IPv4"])
                spec.setdefault("ipFamilyPolicy", "SingleStack")
            if _needs_node_ports(spec):
                old_np = {p.get("nodePort") for p in old_spec.get("ports", [])} \
                    if _needs_node_ports(old_spec) else set()
                for i, p in enumerate(spec.get("ports", [])):
                    np = p.get("nodePort")
                    if np and np in old_np:
                        continue
                    if np:
                        try:
                            await self.ports.allocate(int(np), owner)
                            taken_ports.append(int(np))
                        except AllocationError as e:
                            errors.append(invalid(f"spec.ports[{i}].nodePort", np, str(e)))
                    else:
                        p["nodePort"] = await self.ports.allocate_next(owner)
                        taken_ports.append(p["nodePort"])
            elif spec.get("type") in ("ClusterIP", None, "ExternalName"):
                for p in spec.get("ports", []):
                    p.pop("nodePort", None)
        except BaseException:
            await undo()
            raise
        if errors:
            await undo()
            raise status.invalid("Service", "", name, errors)
        return undo

    async def after_update(self, info: ResourceInfo, new: dict[str, Any],
                           old: dict[str, Any]) -> None:
        spec, old_spec = new.get("spec", {}), old.get("spec", {})
        if old_spec.get("clusterIP") not in ("", None, "None", spec.get("clusterIP")):
            await self.ips.release(old_spec["clusterIP"])
        keep = {p.get("nodePort") for p in spec.get("ports", [])} if _needs_node_ports(spec) \
            else set()
        for p in old_spec.get("ports", []):
            if p.get("nodePort") and p["nodePort"] not in keep:
                await self.ports.release(p["nodePort"])

    async def after_delete(self, info: ResourceInfo, obj: dict[str, Any]) -> None:
        spec = obj.get("spec", {})
        if spec.get("clusterIP") not in (None, "", "None"):
            await self.ips.release(spec["clusterIP"])
        for p in spec.get("ports", []):
            if p.get("nodePort"):
                await self.ports.release(p["nodePort"])


class CRDStrategy(Strategy):
    def __init__(self, strategies: Strategies):
        self.strategies = strategies

    def validate(self, info: ResourceInfo, obj: dict[str, Any],
                 old: dict[str, Any] | None) -> list[FieldError]:
        return crdschema.validate_crd(obj, old)

    def prepare_create(self, info: ResourceInfo, obj: dict[str, Any]) -> None:
        super().prepare_create(info, obj)
        crdschema.default_crd(obj)
        obj["status"] = _crd_status(obj)

    def prepare_update(self, info: ResourceInfo, new: dict[str, Any], old: dict[str, Any],
                       subresource: str) -> None:
        super().prepare_update(info, new, old, subresource)
        if subresource == "":
            crdschema.default_crd(new)
            new["status"] = _crd_status(new, old.get("status"))

    async def after_create(self, info: ResourceInfo, obj: dict[str, Any]) -> None:
        self.strategies.register_crd(obj)

    async def after_update(self, info: ResourceInfo, new: dict[str, Any],
                           old: dict[str, Any]) -> None:
        self.strategies.register_crd(new)

    async def after_delete(self, info: ResourceInfo, obj: dict[str, Any]) -> None:
        await self.strategies.unregister_crd(obj)


def _crd_status(crd: dict[str, Any], old: dict[str, Any] | None = None) -> dict[str, Any]:
    from .rest import now_rfc3339

    spec = crd.get("spec", {})
    names = dict(spec.get("names", {}))
    names.setdefault("singular", names.get("kind", "").lower())
    names.setdefault("listKind", names.get("kind", "") + "List")
    stored = list((old or {}).get("storedVersions", []))
    for v in spec.get("versions", []):
        if v.get("storage") and v.get("name") not in stored:
            stored.append(v["name"])
    now = now_rfc3339()
    return {
        "acceptedNames": names,
        "conditions": [
            {"type": "NamesAccepted", "status": "True", "lastTransitionTime": now,
             "reason": "NoConflicts", "message": "no conflicts found"},
            {"type": "Established", "status": "True", "lastTransitionTime": now,
             "reason": "InitialNamesAccepted", "message": "the initial names have been accepted"},
        ],
        "storedVersions": stored,
    }


def _needs_node_ports(spec: dict[str, Any]) -> bool:
    if spec.get("type") == "NodePort":
        return True
    return spec.get("type") == "LoadBalancer" and spec.get("allocateLoadBalancerNodePorts", True)


class Strategies:
    """The strategy for each resource plus the admission checks that span kinds."""

    def __init__(self, store: Store, table: ResourceTable, ips: ServiceIPAllocator,
                 ports: NodePortAllocator, authz: Any = None):
        from .csr import CSRStrategy  # these build on Strategy, defined here
        from .rbacstrategy import RBACStrategy

        self.store = store
        self.table = table
        self.namespaces: dict[str, bool] = {}  # name -> accepts new content
        # name -> its labels (PodSecurity and the webhooks' namespaceSelector)
        self.labels_of_namespaces: dict[str, dict[str, str]] = {}
        self.default = Strategy()
        self.priority_classes = PriorityClasses()
        self.by_resource: dict[tuple[str, str], Strategy] = {
            ("", "pods"): PodStrategy(),
            ("scheduling.k8s.io", "priorityclasses"): PriorityClassStrategy(
                self.priority_classes),
            ("batch", "jobs"): JobStrategy(),
            ("policy", "poddisruptionbudgets"): PodDisruptionBudgetStrategy(),
            ("apps", "daemonsets"): DaemonSetStrategy(),
            ("", "nodes"): NodeStrategy(),
            ("", "persistentvolumeclaims"): PersistentVolumeClaimStrategy(),
            ("", "persistentvolumes"): PersistentVolumeStrategy(),
            ("", "namespaces"): NamespaceStrategy(),
            ("", "services"): ServiceStrategy(ips, ports),
            ("apiextensions.k8s.io", "customresourcedefinitions"): CRDStrategy(self),
            ("certificates.k8s.io", "certificatesigningrequests"): CSRStrategy(),
        }
        if authz is not None:  # an authz.Authorizer: roles and bindings check escalation
            rbac = RBACStrategy(authz)
            for resource in ("roles", "clusterroles", "rolebindings", "clusterrolebindings"):
                self.by_resource[("rbac.authorization.k8s.io", resource)] = rbac

    def get(self, info: ResourceInfo) -> Strategy:
        return self.by_resource.get((info.group, info.resource), self.default)

    def namespace_event(self, type_: str, ns: dict[str, Any]) -> None:
        """Keeps the namespace lifecycle table current (fed by a watch)."""
        name = ns["metadata"]["name"]
        if type_ == "DELETED":
            self.namespaces.pop(name, None)
            self.labels_of_namespaces.pop(name, None)
        else:
            self.namespaces[name] = not (ns["metadata"].get("deletionTimestamp") or
                                         ns.get("status", {}).get("phase") == "Terminating")
            self.labels_of_namespaces[name] = dict(ns["metadata"].get("labels") or {})

    async def namespace_labels(self, name: str) -> dict[str, str] | None:
        """A namespace's labels; None when it does not exist."""
        known = self.labels_of_namespaces.get(name)
        if known is not None:
            return known
        kv = await self.store.get(f"/registry/core/namespaces/{name}")  # not seen yet
        if kv is None:
            return None
        return dict(codec.decode_stored(kv.value, kv.mod_revision)["metadata"].get("labels")
                    or {})

    async def namespace_active(self, namespace: str) -> bool | None:
        """Whether a namespace takes new content; None when it does not exist."""
        active = self.namespaces.get(namespace)
        if active is None:
            # Not seen yet (created a moment ago, or gone): ask the store itself.
            kv = await self.store.get(f"/registry/core/namespaces/{namespace}")
            if kv is None:
                return None
            ns = codec.decode_stored(kv.value, kv.mod_revision)
            active = not (ns["metadata"].get("deletionTimestamp") or
                          ns.get("status", {}).get("phase") == "Terminating")
        return active

    # -- custom resources ---------------------------------------------------

    def _cr_schema(self, info: ResourceInfo) -> dict[str, Any] | None:
        assert info.crd is not None
        for v in info.crd.get("spec", {}).get("versions", []):
            if v.get("name") == info.version:
                return (v.get("schema") or {}).get("openAPIV3Schema")
        return None

    def custom_field_issues(self, info: ResourceInfo,
                            obj: dict[str, Any]) -> list[fieldcheck.FieldIssue]:
        sch = self._cr_schema(info)
        if not sch:
            return []
        pruned = crdschema.prune_custom_object(sch, copy.deepcopy(obj))
        return [fieldcheck.FieldIssue("unknown", p, f'unknown field "{p}"') for p in pruned]

    def validate_custom(self, info: ResourceInfo, obj: dict[str, Any],
                        old: dict[str, Any] | None,
                        warnings: list[str] | None = None) -> list[FieldError]:
        """The schema's checks (values unchanged by an update are not checked
        again), then its x-kubernetes-validations rules, on the whole object
        whatever subresource is written, as upstream: a status write leaves
        spec as it was, so spec's rules ratchet."""
        errs = validation.validate(info.group, info.kind, obj, old)
        sch = self._cr_schema(info)
        if sch:
            crdschema.prune_custom_object(sch, obj)
            crdschema.default_custom_object(sch, obj)
            schema_errs = crdschema.validate_custom_object(sch, obj, old=old)
            errs.extend(schema_errs)
            if crdrules.compiled(sch) is not None:
                res = crdrules.validate(sch, obj, old, errs)
                errs.extend(res.errors)
                if warnings is not None:
                    warnings.extend(res.warnings)
        return errs

    def register_crd(self, crd: dict[str, Any]) -> None:
        try:
            infos = crdschema.crd_resource_infos(crd)
        except Exception:  # a stored CRD that no longer parses must not stop the server
            log.exception("cannot serve CRD %s", crd.get("metadata", {}).get("name"))
            return
        self.table.set_crd(crd["metadata"]["name"], infos)

    async def unregister_crd(self, crd: dict[str, Any]) -> None:
        name = crd["metadata"]["name"]
        infos = [i for i in self.table.all() if i.crd is not None
                 and i.crd.get("metadata", {}).get("name") == name]
        self.table.remove_crd(name)
        # Deleting a CRD deletes its objects (upstream does this behind a finalizer).
        if infos:
            prefix = infos[0].key_prefix
            for kv in (await self.store.list(prefix)).kvs:
                try:
                    await self.store.delete(kv.key)
                except KeyNotFoundError:
                    pass
