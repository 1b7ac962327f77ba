"""The disruption controller (upstream pkg/controller/disruption): keeps each
PodDisruptionBudget's status, which the eviction subresource spends.

For a budget it counts the pods its selector picks (in its namespace), how
many of them are healthy (Ready, not terminating, not just evicted), how
many pods there should be, and how many must stay healthy:

- ``minAvailable: N`` wants N healthy of the pods there are;
- ``minAvailable: P%`` and ``maxUnavailable`` (either form) take the number
  of pods from the pods' controllers: the sum of the replicas of every
  ReplicationController, ReplicaSet (or its Deployment), StatefulSet, or
  any resource with a scale subresource that controls one of the pods.
  A pod with no controller is reported (UnmanagedPods) and left out; a pod
  whose controller cannot be found fails the sync.

``disruptionsAllowed`` is healthy minus desired (never below 0, and 0 while
no pods are expected), with the DisruptionAllowed condition saying which
(SufficientPods / InsufficientPods, or SyncFailed when the numbers could not
be worked out; then nothing may be disrupted). Pods the eviction subresource
recorded in ``disruptedPods`` count as gone for two minutes; an entry still
there after that is dropped (the pod was not deleted after all).

It also resets a DisruptionTarget condition left on a pod that was never
deleted (for two minutes) back to False, as upstream does.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Awaitable, Callable
from typing import Any

from pinnace.api import selectors
from pinnace.client import ApiError, key_of, split_key

from . import pods as podutil
from .base import Context, Controller, controller_ref

Obj = dict[str, Any]

DELETION_TIMEOUT = 120.0  # upstream DeletionTimeout
STALE_DISRUPTION_TIMEOUT = 120.0  # upstream stalePodDisruptionTimeout
DISCOVERY_TTL = 30.0  # how long a group version's resource list is trusted
POD_PREFIX = "pod:"  # queue keys of pods whose DisruptionTarget condition may be stale


class ControllerScale:
    """A controller of the budget's pods and its replicas."""

    __slots__ = ("replicas", "uid")

    def __init__(self, uid: str, replicas: int):
        self.uid = uid
        self.replicas = replicas


Finder = Callable[[Obj, str], Awaitable[ControllerScale | None]]


def fmt_time(t: float) -> str:
    return dt.datetime.fromtimestamp(t, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def scaled_value(v: Any, total: int) -> int:
    """intstr.GetScaledValueFromIntOrPercent, rounding up."""
    if isinstance(v, int) and not isinstance(v, bool):
        return v
    if isinstance(v, str):
        if not v.endswith("%"):
            raise ValueError("invalid value for IntOrString: invalid type: string is not a "
                             "percentage")
        try:
            pct = int(v[:-1])
        except ValueError:
            raise ValueError(f'invalid value for IntOrString: invalid value "{v}": '
                             f'strconv.Atoi: parsing "{v[:-1]}": invalid syntax') from None
        return -(-pct * total // 100)
    raise ValueError("invalid value for IntOrString: invalid type: neither int nor percentage")


def group_of(api_version: str) -> str:
    """The group of an apiVersion ("" for the core group), as ParseGroupVersion reads it."""
    parts = (api_version or "").split("/")
    if len(parts) == 1:
        return ""
    if len(parts) == 2:
        return parts[0]
    raise ValueError(f"unexpected GroupVersion string: {api_version}")


def is_kind(ref: Obj, kind: str, groups: tuple[str, ...]) -> bool:
    """upstream's verifyGroupKind."""
    group = group_of(ref.get("apiVersion") or "")
    return ref.get("kind") == kind and group in groups


def set_condition(status: Obj, type_: str, cond_status: str, reason: str, message: str,
                  observed_generation: int, now: str) -> None:
    """apimachinery's SetStatusCondition: the transition time moves only when
    the status does."""
    conds: list[Obj] = status.setdefault("conditions", [])
    new: Obj = {"type": type_, "status": cond_status, "lastTransitionTime": now,
                "reason": reason, "message": message}
    if observed_generation:
        new["observedGeneration"] = observed_generation
    for i, c in enumerate(conds):
        if c.get("type") == type_:
            if c.get("status") == cond_status and c.get("lastTransitionTime"):
                new["lastTransitionTime"] = c["lastTransitionTime"]
            conds[i] = new
            return
    conds.append(new)


def disruption_allowed_condition(status: Obj, now: str) -> None:
    """upstream pdbhelper.UpdateDisruptionAllowedCondition."""
    if int(status.get("disruptionsAllowed") or 0) > 0:
        set_condition(status, "DisruptionAllowed", "True", "SufficientPods", "",
                      int(status.get("observedGeneration") or 0), now)
    else:
        set_condition(status, "DisruptionAllowed", "False", "InsufficientPods", "",
                      int(status.get("observedGeneration") or 0), now)


def conditions_up_to_date(pdb: Obj) -> bool:
    """upstream pdbhelper.ConditionsAreUpToDate."""
    st = pdb.get("status") or {}
    cond = podutil.condition(pdb, "DisruptionAllowed")
    if cond is None:
        return False
    if int(st.get("observedGeneration") or 0) != int(pdb["metadata"].get("generation") or 0):
        return False
    if int(st.get("disruptionsAllowed") or 0) > 0:
        return cond.get("status") == "True" and cond.get("reason") == "SufficientPods"
    return cond.get("status") == "False" and cond.get("reason") == "InsufficientPods"


class DisruptionController(Controller):
    name = "disruption"
    event_source = "controllermanager"  # upstream's recorder component for this controller
    workers = 2

    def __init__(self, ctx: Context):
        super().__init__(ctx)
        self.clock: Callable[[], float] = ctx.clock.time
        self.deletion_timeout = float(ctx.options.get("pdb_deletion_timeout_seconds",
                                                      DELETION_TIMEOUT))
        self.stale_timeout = float(ctx.options.get("pdb_stale_disruption_seconds",
                                                   STALE_DISRUPTION_TIMEOUT))
        inf = ctx.informers
        self.pods = inf.informer("v1", "pods")
        self.pdbs = inf.informer("policy/v1", "poddisruptionbudgets")
        self.rcs = inf.informer("v1", "replicationcontrollers")
        self.rss = inf.informer("apps/v1", "replicasets")
        self.deployments = inf.informer("apps/v1", "deployments")
        self.statefulsets = inf.informer("apps/v1", "statefulsets")
        self.pdb_api = self.client.resource("policy/v1", "poddisruptionbudgets")
        self.pod_api = self.client.resource("v1", "pods")
        # pdb key -> (resourceVersion, its selector), so pod events do not parse it again.
        self._selectors: dict[str, tuple[str, selectors.LabelSelector | None]] = {}
        # group version -> (read at, its APIResourceList) for the scale finder.
        self._discovery: dict[str, tuple[float, Obj]] = {}

    # -- handlers ------------------------------------------------------------

    def setup(self) -> None:
        self.pdbs.add_handler(self.enqueue, lambda old, new: self.enqueue(new), self._pdb_gone)
        self.pods.add_handler(self._pod_changed, lambda old, new: self._pod_changed(new),
                              self._pod_deleted)

    def _pdb_gone(self, pdb: Obj) -> None:
        self._selectors.pop(key_of(pdb), None)
        self.enqueue(pdb)

    def _selector(self, pdb: Obj) -> selectors.LabelSelector | None:
        """The budget's selector (None: one that cannot be read, matching nothing)."""
        key, rv = key_of(pdb), pdb["metadata"].get("resourceVersion", "")
        hit = self._selectors.get(key)
        if hit is not None and hit[0] == rv:
            return hit[1]
        try:
            sel: selectors.LabelSelector | None = selectors.label_selector_from_dict(
                (pdb.get("spec") or {}).get("selector"), plain_map=False)
        except selectors.SelectorError:
            sel = None
        self._selectors[key] = (rv, sel)
        return sel

    def pdbs_for(self, pod: Obj) -> list[Obj]:
        """The budgets whose selector picks the pod (policy/v1: an empty
        selector picks every pod of the namespace, none picks nothing)."""
        labels = pod["metadata"].get("labels") or {}
        out = []
        for pdb in self.pdbs.objects(pod["metadata"].get("namespace") or ""):
            sel = self._selector(pdb)
            if sel is not None and sel.matches(labels):
                out.append(pdb)
        return sorted(out, key=lambda p: p["metadata"]["name"])

    def _pod_changed(self, pod: Obj) -> None:
        self._enqueue_pdbs(pod, warn=True)
        wait = self._stale_wait(pod)
        if wait is not None:
            self.queue.add_after(POD_PREFIX + key_of(pod), wait)

    def _pod_deleted(self, pod: Obj) -> None:
        self._enqueue_pdbs(pod, warn=False)

    def _enqueue_pdbs(self, pod: Obj, warn: bool) -> None:
        found = self.pdbs_for(pod)
        if not found:
            return
        if warn and len(found) > 1:
            meta = pod["metadata"]
            self.recorder.event(pod, "Warning", "MultiplePodDisruptionBudgets",
                                f'Pod "{meta.get("namespace")}"/"{meta["name"]}" matches '
                                f'multiple PodDisruptionBudgets.  Chose '
                                f'"{found[0]["metadata"]["name"]}" arbitrarily.')
        # Every budget that covers the pod is kept current (upstream syncs one).
        for pdb in found:
            self.enqueue(pdb)

    # -- reconcile -------------------------------------------------------------

    async def sync(self, key: str) -> None:
        if key.startswith(POD_PREFIX):
            await self._sync_stale_pod(key[len(POD_PREFIX):])
            return
        pdb = self.pdbs.get(key)
        if pdb is None:
            self._selectors.pop(key, None)
            return
        try:
            await self._try_sync(key, pdb)
            return
        except ApiError as e:
            if e.conflict:
                raise  # someone wrote it meanwhile: count again on the next version
            why = str(e.status.get("message") or e)
        except Exception as e:  # noqa: BLE001 - whatever it was, nothing may be disrupted
            why = str(e)
        self.log.info("syncing PodDisruptionBudget %s failed: %s", key, why)
        await self._fail_safe(pdb, why)

    async def _try_sync(self, key: str, pdb: Obj) -> None:
        sel = self._selector(pdb)
        if sel is None:
            raise ValueError("the budget's selector cannot be read")
        ns = pdb["metadata"].get("namespace") or ""
        pods = [p for p in self.pods.objects(ns)
                if sel.matches(p["metadata"].get("labels") or {})]
        if not pods:
            self.recorder.event(pdb, "Normal", "NoPods", "No matching pods found")
        expected, desired, unmanaged = await self.expected_pod_count(pdb, pods)
        if unmanaged:
            self.recorder.event(
                pdb, "Warning", "UnmanagedPods",
                f"Pods selected by this PodDisruptionBudget (selector: "
                f"{_go_selector((pdb.get('spec') or {}).get('selector'))}) were found to be "
                f"unmanaged. As a result, the status of the PDB cannot be calculated correctly, "
                f"which may result in undefined behavior. To account for these pods please set "
                f"\".spec.minAvailable\" field of the PDB to an integer value.")
        now = self.clock()
        disrupted, recheck = self.disrupted_pods(pods, pdb, now)
        healthy = self.healthy(pods, disrupted, now)
        await self._update_status(pdb, healthy, desired, expected, disrupted)
        if recheck is not None:
            self.queue.add_after(key, max(recheck - now, 0.0) + 0.05)

    async def expected_pod_count(self, pdb: Obj, pods: list[Obj]) -> tuple[int, int, list[str]]:
        """(expected pods, desired healthy, unmanaged pod names)."""
        spec = pdb.get("spec") or {}
        max_unavailable, min_available = spec.get("maxUnavailable"), spec.get("minAvailable")
        if max_unavailable is not None:
            expected, unmanaged = await self.expected_scale(pods)
            desired = max(expected - scaled_value(max_unavailable, expected), 0)
            return expected, desired, unmanaged
        if isinstance(min_available, int) and not isinstance(min_available, bool):
            return len(pods), min_available, []
        if isinstance(min_available, str):
            expected, unmanaged = await self.expected_scale(pods)
            return expected, scaled_value(min_available, expected), unmanaged
        return 0, 0, []

    async def expected_scale(self, pods: list[Obj]) -> tuple[int, list[str]]:
        """The replicas of every controller of ``pods``, added up, and the pods
        that have no controller."""
        scales: dict[str, int] = {}
        unmanaged: list[str] = []
        for pod in pods:
            ref = controller_ref(pod)
            if ref is None:
                unmanaged.append(pod["metadata"]["name"])
                continue
            if ref.get("uid") in scales:
                continue
            ns = pod["metadata"].get("namespace") or ""
            for finder in self._finders():
                found = await finder(ref, ns)
                if found is not None:
                    scales[found.uid] = found.replicas
                    break
            else:
                raise ValueError(f'found no controllers for pod "{pod["metadata"]["name"]}"')
        return sum(scales.values()), unmanaged

    def _finders(self) -> list[Finder]:
        # The workload kinds from the informers; anything else through its scale subresource.
        return [self._replication_controller, self._deployment, self._replica_set,
                self._stateful_set, self._scale]

    def _owned(self, inf: Any, ref: Obj, ns: str) -> Obj | None:
        obj = inf.get(f"{ns}/{ref.get('name')}")
        if obj is None or obj["metadata"].get("uid") != ref.get("uid"):
            return None
        return obj  # type: ignore[no-any-return]

    async def _replication_controller(self, ref: Obj, ns: str) -> ControllerScale | None:
        if not is_kind(ref, "ReplicationController", ("",)):
            return None
        rc = self._owned(self.rcs, ref, ns)
        return None if rc is None else ControllerScale(rc["metadata"]["uid"], _replicas(rc))

    async def _replica_set(self, ref: Obj, ns: str) -> ControllerScale | None:
        if not is_kind(ref, "ReplicaSet", ("apps", "extensions")):
            return None
        rs = self._owned(self.rss, ref, ns)
        if rs is None:
            return None
        owner = controller_ref(rs)
        if owner is not None and owner.get("kind") == "Deployment":
            return None  # its Deployment's replicas count instead
        return ControllerScale(rs["metadata"]["uid"], _replicas(rs))

    async def _deployment(self, ref: Obj, ns: str) -> ControllerScale | None:
        if not is_kind(ref, "ReplicaSet", ("apps", "extensions")):
            return None
        rs = self._owned(self.rss, ref, ns)
        owner = controller_ref(rs) if rs is not None else None
        if owner is None or not is_kind(owner, "Deployment", ("apps", "extensions")):
            return None
        d = self._owned(self.deployments, owner, ns)
        return None if d is None else ControllerScale(d["metadata"]["uid"], _replicas(d))

    async def _stateful_set(self, ref: Obj, ns: str) -> ControllerScale | None:
        if not is_kind(ref, "StatefulSet", ("apps",)):
            return None
        ss = self._owned(self.statefulsets, ref, ns)
        return None if ss is None else ControllerScale(ss["metadata"]["uid"], _replicas(ss))

    async def _scale(self, ref: Obj, ns: str) -> ControllerScale | None:
        """Any other controller, through its scale subresource (custom resources)."""
        api_version, kind = ref.get("apiVersion") or "", ref.get("kind") or ""
        group = group_of(api_version)
        resource = await self._resource_for(api_version, kind)
        if resource is None:
            raise ValueError(f'no matches for kind "{kind}" in version "{api_version}"')
        base = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
        try:
            scale = await self.client.request(
                "GET", f"{base}/namespaces/{ns}/{resource}/{ref.get('name')}/scale")
        except ApiError as e:
            if not e.not_found:
                raise
            # Not found: the object is gone, or its kind has no scale subresource.
            if not await self._has_scale(api_version, resource):
                gr = f"{resource}.{group}" if group else resource
                raise ValueError(f"{gr} does not implement the scale subresource") from None
            return None
        meta = (scale or {}).get("metadata") or {}
        if meta.get("uid") != ref.get("uid"):
            return None
        return ControllerScale(meta["uid"], int(((scale.get("spec") or {}).get("replicas"))
                                                or 0))

    async def _resources(self, api_version: str, fresh: bool = False) -> Obj:
        hit = self._discovery.get(api_version)
        now = time.monotonic()
        if hit is not None and not fresh and now - hit[0] < DISCOVERY_TTL:
            return hit[1]
        base = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
        try:
            listed = await self.client.request("GET", base) or {}
        except ApiError as e:
            if not e.not_found:
                raise
            listed = {}
        self._discovery[api_version] = (now, listed)
        return listed  # type: ignore[no-any-return]

    async def _resource_for(self, api_version: str, kind: str) -> str | None:
        for fresh in (False, True):
            for r in (await self._resources(api_version, fresh)).get("resources") or []:
                if r.get("kind") == kind and "/" not in r.get("name", ""):
                    return str(r["name"])
        return None

    async def _has_scale(self, api_version: str, resource: str) -> bool:
        for r in (await self._resources(api_version)).get("resources") or []:
            if r.get("name") == f"{resource}/scale" and r.get("kind") == "Scale" and \
                    r.get("group", "autoscaling") == "autoscaling":
                return True
        return False

    def disrupted_pods(self, pods: list[Obj], pdb: Obj, now: float
                       ) -> tuple[dict[str, str], float | None]:
        """The budget's disruptedPods still to wait for (pods the eviction
        subresource let go that are not terminating yet) and when the first
        of them runs out of time."""
        recorded = (pdb.get("status") or {}).get("disruptedPods") or {}
        out: dict[str, str] = {}
        recheck: float | None = None
        if not recorded:
            return out, recheck
        for pod in pods:
            meta = pod["metadata"]
            if meta.get("deletionTimestamp"):
                continue  # on its way out: no longer needs the entry
            at = recorded.get(meta["name"])
            if at is None:
                continue
            due = podutil.parse_time(at) + self.deletion_timeout
            if due < now:
                self.log.info("pod %s/%s was expected to be deleted but it wasn't",
                              meta.get("namespace"), meta["name"])
                # Upstream's text names the budget's namespace twice.
                ns = pdb["metadata"].get("namespace")
                self.recorder.event(pod, "Warning", "NotDeleted",
                                    f"Pod was expected by PDB {ns}/{ns} to be deleted but it "
                                    f"wasn't")
            else:
                recheck = due if recheck is None else min(recheck, due)
                out[meta["name"]] = at
        return out, recheck

    def healthy(self, pods: list[Obj], disrupted: dict[str, str], now: float) -> int:
        count = 0
        for pod in pods:
            meta = pod["metadata"]
            if meta.get("deletionTimestamp"):
                continue
            at = disrupted.get(meta["name"])
            if at is not None and podutil.parse_time(at) + self.deletion_timeout > now:
                continue  # evicted a moment ago: as good as gone
            if podutil.is_ready(pod):
                count += 1
        return count

    async def _update_status(self, pdb: Obj, healthy: int, desired: int, expected: int,
                             disrupted: dict[str, str]) -> None:
        # Nothing may be disrupted while no pod is expected: pods that appear
        # are safe before this controller has counted them.
        allowed = healthy - desired
        if expected <= 0 or allowed <= 0:
            allowed = 0
        st = pdb.get("status") or {}
        generation = int(pdb["metadata"].get("generation") or 0)
        if (st.get("currentHealthy"), st.get("desiredHealthy"), st.get("expectedPods"),
                st.get("disruptionsAllowed")) == (healthy, desired, expected, allowed) and \
                (st.get("disruptedPods") or {}) == disrupted and \
                int(st.get("observedGeneration") or 0) == generation and \
                conditions_up_to_date(pdb):
            return
        new: Obj = {"observedGeneration": generation}
        if disrupted:
            new["disruptedPods"] = disrupted
        new.update(disruptionsAllowed=allowed, currentHealthy=healthy, desiredHealthy=desired,
                   expectedPods=expected)
        if st.get("conditions"):
            new["conditions"] = [dict(c) for c in st["conditions"]]
        disruption_allowed_condition(new, fmt_time(self.clock()))
        await self._write(pdb, new)

    async def _fail_safe(self, pdb: Obj, why: str) -> None:
        """Nothing may be disrupted when the numbers are unknown (upstream's failSafe)."""
        st = dict(pdb.get("status") or {})
        st["disruptionsAllowed"] = 0
        st["conditions"] = [dict(c) for c in st.get("conditions") or []]
        set_condition(st, "DisruptionAllowed", "False", "SyncFailed", why,
                      int(st.get("observedGeneration") or 0), fmt_time(self.clock()))
        await self._write(pdb, st)

    async def _write(self, pdb: Obj, status: Obj) -> None:
        # The version read: a budget changed meanwhile (an eviction) is a conflict.
        await self.pdb_api.replace_status({**pdb, "status": status})

    # -- stale DisruptionTarget conditions ----------------------------------------

    def _stale_wait(self, pod: Obj) -> float | None:
        """Seconds until the pod's DisruptionTarget condition counts as stale
        (None: it has none that can go stale)."""
        if pod["metadata"].get("deletionTimestamp"):
            return None
        cond = podutil.condition(pod, "DisruptionTarget")
        # The kubelet's own conditions may take long to end in a deletion;
        # those on finished pods are left as they are.
        if cond is None or cond.get("status") != "True" or \
                cond.get("reason") == "TerminationByKubelet" or \
                (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
            return None
        since = podutil.parse_time(cond.get("lastTransitionTime"))
        return max(self.stale_timeout - (self.clock() - since), 0.0)

    async def _sync_stale_pod(self, key: str) -> None:
        pod = self.pods.get(key)
        if pod is None:
            return
        wait = self._stale_wait(pod)
        if wait is None:
            return
        if wait > 0:
            self.queue.add_after(POD_PREFIX + key, wait)
            return
        st = dict(pod.get("status") or {})
        conds = [dict(c) for c in st.get("conditions") or []]
        for i, c in enumerate(conds):
            if c.get("type") == "DisruptionTarget":
                conds[i] = {"type": "DisruptionTarget", "status": "False", "lastProbeTime": None,
                            "lastTransitionTime": fmt_time(self.clock())}
                if c.get("observedGeneration") is not None:
                    conds[i]["observedGeneration"] = pod["metadata"].get("generation")
        st["conditions"] = conds
        ns, _ = split_key(key)
        try:
            await self.pod_api.replace_status({**pod, "status": st}, ns)
        except ApiError as e:
            if not e.not_found:
                raise
        self.log.info("reset stale DisruptionTarget condition of pod %s to False", key)


def _replicas(obj: Obj) -> int:
    r = (obj.get("spec") or {}).get("replicas")
    return 1 if r is None else int(r)


def _go_selector(sel: Any) -> str:
    """A LabelSelector as upstream's event prints it (its generated String())."""
    if not isinstance(sel, dict):
        return "nil"
    labels = sel.get("matchLabels") or {}
    ml = "map[string]string{" + "".join(f"{k}: {labels[k]}," for k in sorted(labels)) + "}"
    me = "[]LabelSelectorRequirement{" + "".join(
        f"LabelSelectorRequirement{{Key:{e.get('key', '')},Operator:{e.get('operator', '')},"
        f"Values:[{' '.join(e.get('values') or [])}],}},"
        for e in sel.get("matchExpressions") or []) + "}"
    return f"&LabelSelector{{MatchLabels:{ml},MatchExpressions:{me},}}"


CONTROLLERS = {"disruption": DisruptionController}
