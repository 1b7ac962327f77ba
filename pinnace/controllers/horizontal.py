"""The HorizontalPodAutoscaler controller (upstream
pkg/controller/podautoscaler/horizontal.go, "horizontalpodautoscaling").

Every autoscaler is reconciled when it appears or its spec changes, then
every ``hpa_sync_period`` (15 s) as upstream's fixed-interval queue does:
1. read the target's scale subresource (``scaleTargetRef`` mapped to a
   resource: built-in kinds from the resource table, custom ones through
   discovery); failing that, AbleToScale=False FailedGetScale;
2. outside [minReplicas, maxReplicas] the count is clamped at once, whatever
   the metrics say; a target scaled to 0 (with minReplicas > 0) is left
   alone (ScalingActive=False ScalingDisabled);
3. otherwise each metric proposes a count and the largest wins
   (replicacalc.py): Resource and ContainerResource metrics, Utilization
   and AverageValue targets, from metrics.k8s.io (served by the API
   server: metricsapi.py). Object, Pods and External metrics need the
   custom and external metrics APIs, which pinnace does not serve: they
   fail as upstream's do when those APIs are not registered. When every
   metric fails (or some fail and the others would scale down) nothing
   changes and ScalingActive=False carries the first failure
   (FailedGetResourceMetric: "the HPA was unable to compute the replica
   count: ..."); else ScalingActive=True ValidMetricFound;
4. the proposal is stabilized and rate-limited (hpabehavior.py), setting
   AbleToScale (ReadyForNewScale, ScaleUpStabilized, ScaleDownStabilized)
   and ScalingLimited (DesiredWithinRange, TooFewReplicas,
   TooManyReplicas, ScaleUpLimit, ScaleDownLimit);
5. a different count is written to the scale subresource
   (AbleToScale=True SucceededRescale, event SuccessfulRescale, status
   lastScaleTime; a write that conflicts with the target's own controller
   is retried at once from a fresh read, up to three times, where upstream
   reports FailedRescale and waits a sync period), and the status
   (currentReplicas, desiredReplicas, currentMetrics, conditions; not
   observedGeneration, which upstream leaves unset) is written when it
   changed. As upstream, a failed metric leaves ``{"type": ""}`` in its
   currentMetrics slot, and ScalingLimited appears only once metrics gave
   a proposal (a clamp outside the range sets no condition but AbleToScale).
Not done: the check that no two autoscalers select the same pods
(AmbiguousSelector), and the metrics of the custom/external metrics APIs.
Recommendations and scale events live in memory, as upstream's: a restarted
controller holds scale-downs for one stabilization window.
"""

from __future__ import annotations

import asyncio
import copy
import datetime as dt
from collections.abc import Callable
from fractions import Fraction
from typing import Any

from pinnace.api import quantity, selectors
from pinnace.api.resources import BUILTIN
from pinnace.client import ApiError, ResourceClient, key_of

from . import hpabehavior as behave
from . import replicacalc as calc
from .base import Context, Controller

Obj = dict[str, Any]

METRICS_PATH = "/apis/metrics.k8s.io/v1beta1/namespaces/{ns}/pods"
SCALE_ATTEMPTS = 3  # reconciles in a row when the scale update meets a conflict
ABLE_TO_SCALE, SCALING_ACTIVE, SCALING_LIMITED = "AbleToScale", "ScalingActive", "ScalingLimited"
_MISSING_API = {  # what upstream says when the custom/external metrics APIs are absent
    "Pods": ("FailedGetPodsMetric", "failed to get pods metric value: unable to get metric "
             "{name}: unable to fetch metrics from custom metrics API: no custom metrics API "
             "(custom.metrics.k8s.io) registered"),
    "Object": ("FailedGetObjectMetric", "failed to get object metric value: unable to get "
               "metric {name}: unable to fetch metrics from custom metrics API: no custom "
               "metrics API (custom.metrics.k8s.io) registered"),
    "External": ("FailedGetExternalMetric", "failed to get external metric value: unable to "
                 "get external metric {name}: unable to fetch metrics from external metrics "
                 "API: the server could not find the requested resource (get "
                 "{name}.external.metrics.k8s.io)"),
}


def _now_rfc3339(t: float) -> str:
    return dt.datetime.fromtimestamp(t, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def set_condition(hpa: Obj, type_: str, status: bool, reason: str, message: str,
                  now: float) -> None:
    """Set a condition, moving lastTransitionTime only when the status changes."""
    conds = hpa.setdefault("status", {}).setdefault("conditions", [])
    word = "True" if status else "False"
    for c in conds:
        if c.get("type") == type_:
            break
    else:
        c = {"type": type_}
        conds.append(c)
    if c.get("status") != word:
        c["lastTransitionTime"] = _now_rfc3339(now)
    c.update(status=word, reason=reason, message=message)


class ScaleError(Exception):
    def __init__(self, event: str, message: str):
        super().__init__(message)
        self.event = event  # the FailedGetScale event's text (upstream words it apart)


class ScaleConflict(Exception):
    pass


class MetricFailure(Exception):
    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


class HorizontalController(Controller):
    name = "horizontalpodautoscaling"
    event_source = "horizontal-pod-autoscaler"
    workers = 2

    def __init__(self, ctx: Context):
        super().__init__(ctx)
        opts = ctx.options
        self.sync_period = float(opts.get("hpa_sync_period", 15))
        self.downscale_window = float(opts.get("hpa_downscale_stabilization", 300))
        self.tolerance = float(opts.get("hpa_tolerance", 0.1))
        self.cpu_initialization_period = float(opts.get("hpa_cpu_initialization_period", 300))
        self.initial_readiness_delay = float(opts.get("hpa_initial_readiness_delay", 30))
        self.clock: Callable[[], float] = ctx.clock.time
        self.hpas = ctx.informers.informer("autoscaling/v2", "horizontalpodautoscalers")
        self.pods = ctx.informers.informer("v1", "pods")
        self.hpa_api = self.client.resource("autoscaling/v2", "horizontalpodautoscalers")
        self._memory: dict[str, behave.Memory] = {}
        self._timers: dict[str, asyncio.TimerHandle] = {}
        # (apiVersion, kind) -> (resource client, "plural.group", when looked up)
        self._mappings: dict[tuple[str, str], tuple[ResourceClient, str, float]] = {}

    def setup(self) -> None:
        self.hpas.add_handler(self._added, self._updated, self._deleted)

    def _added(self, hpa: Obj) -> None:
        self.enqueue(hpa)

    def _updated(self, old: Obj, new: Obj) -> None:
        if old.get("spec") != new.get("spec"):
            self.enqueue(new)

    def _deleted(self, hpa: Obj) -> None:
        key = key_of(hpa)
        timer = self._timers.pop(key, None)
        if timer is not None:
            timer.cancel()
        self._memory.pop(key, None)

    def _again(self, key: str) -> None:
        """Look at ``key`` again after the sync period (one timer per key)."""
        old = self._timers.pop(key, None)
        if old is not None:
            old.cancel()
        loop = asyncio.get_running_loop()
        self._timers[key] = loop.call_later(self.sync_period, self.queue.add, key)

    # -- sync ----------------------------------------------------------------------

    async def sync(self, key: str) -> None:
        shared = self.hpas.get(key)
        if shared is None:
            self._memory.pop(key, None)
            return
        try:
            for attempt in range(SCALE_ATTEMPTS):
                try:
                    await self.reconcile(key, shared, last=attempt == SCALE_ATTEMPTS - 1)
                    break
                except ScaleConflict:
                    shared = self.hpas.get(key) or shared
        except (ApiError, OSError, asyncio.TimeoutError) as e:
            self.log.info("%s: %s (next try in %.0fs)", key, e, self.sync_period)
        finally:
            if self.hpas.get(key) is not None:
                self._again(key)

    async def reconcile(self, key: str, shared: Obj, last: bool = True) -> None:
        """One pass of upstream's reconcileAutoscaler. A scale update that
        conflicts with another writer (the target's controller updating it
        at the same moment) raises ScaleConflict unless ``last``: the caller
        starts again from a fresh read instead of waiting a sync period."""
        now = self.clock()
        hpa = {**shared, "status": copy.deepcopy(shared.get("status") or {})}
        original = copy.deepcopy(shared.get("status") or {})
        spec = hpa.get("spec") or {}
        ns = hpa["metadata"]["namespace"]
        ref = spec.get("scaleTargetRef") or {}
        reference = f"{ref.get('kind', '')}/{ns}/{ref.get('name', '')}"
        try:
            api, scale = await self._get_scale(ns, ref)
        except ScaleError as e:
            set_condition(hpa, ABLE_TO_SCALE, False, "FailedGetScale",
                          f"the HPA controller was unable to get the target's current scale: {e}",
                          now)
            self.recorder.event(shared, "Warning", "FailedGetScale", e.event)
            await self._update_status(original, hpa)
            self.log.info("failed to query scale subresource for %s: %s", reference, e)
            return
        set_condition(hpa, ABLE_TO_SCALE, True, "SucceededGetScale",
                      "the HPA controller was able to get the target's current scale", now)
        current = int((scale.get("spec") or {}).get("replicas") or 0)
        mem = self._memory.setdefault(key, behave.Memory())
        mem.record_initial(current, now)
        min_replicas = int(spec.get("minReplicas") or 1)
        max_replicas = int(spec.get("maxReplicas") or 0)
        behavior = spec.get("behavior")
        statuses: list[Obj] = []
        desired, reason = 0, ""
        if current == 0 and min_replicas != 0:
            rescale = False
            set_condition(hpa, SCALING_ACTIVE, False, "ScalingDisabled",
                          "scaling is disabled since the replica count of the target is zero",
                          now)
        elif current > max_replicas:
            reason, desired, rescale = "Current number of replicas above Spec.MaxReplicas", \
                max_replicas, True
        elif current < min_replicas:
            reason, desired, rescale = "Current number of replicas below Spec.MinReplicas", \
                min_replicas, True
        else:
            proposal, metric, statuses, error = await self._compute(hpa, scale, now)
            if proposal < 0:
                self._set_status(hpa, current, int(hpa["status"].get("desiredReplicas") or 0),
                                 statuses, False, now)
                await self._update_status(original, hpa)
                self.recorder.event(shared, "Warning", "FailedComputeMetricsReplicas", error)
                self.log.info("failed to compute desired number of replicas based on listed "
                              "metrics for %s: %s", reference, error)
                return
            if proposal > desired:
                desired = proposal
            if desired > current:
                reason = f"{metric} above target"
            elif desired < current:
                reason = "All metrics below target"
            desired = self._normalize(hpa, mem, current, desired, min_replicas, now)
            rescale = desired != current
        if rescale:
            try:
                await api.replace({**scale, "spec": {**(scale.get("spec") or {}),
                                                     "replicas": desired}},
                                  ns, "scale")
            except ApiError as e:
                if e.conflict and not last:
                    raise ScaleConflict() from None
                msg = e.status.get("message") or str(e)
                self.recorder.event(shared, "Warning", "FailedRescale",
                                    f"New size: {desired}; reason: {reason}; error: {msg}")
                set_condition(hpa, ABLE_TO_SCALE, False, "FailedUpdateScale",
                              f"the HPA controller was unable to update the target scale: {msg}",
                              now)
                self._set_status(hpa, current, int(hpa["status"].get("desiredReplicas") or 0),
                                 statuses, False, now)
                await self._update_status(original, hpa)
                self.log.info("failed to rescale %s: %s", reference, msg)
                return
            set_condition(hpa, ABLE_TO_SCALE, True, "SucceededRescale",
                          f"the HPA controller was able to update the target scale to {desired}",
                          now)
            self.recorder.event(shared, "Normal", "SuccessfulRescale",
                                f"New size: {desired}; reason: {reason}")
            behave.store_scale_event(mem, behavior, current, desired, now)
            self.log.info("successful rescale of %s, old size: %d, new size: %d, reason: %s",
                          key, current, desired, reason)
        else:
            desired = current
        self._set_status(hpa, current, desired, statuses, rescale, now)
        await self._update_status(original, hpa)

    def _normalize(self, hpa: Obj, mem: behave.Memory, current: int, desired: int,
                   min_replicas: int, now: float) -> int:
        spec = hpa["spec"]
        max_replicas = int(spec.get("maxReplicas") or 0)
        behavior = spec.get("behavior")
        if behavior is None:
            stabilized = behave.stabilize(mem, desired, self.downscale_window, now)
            if stabilized != desired:
                set_condition(hpa, ABLE_TO_SCALE, True, "ScaleDownStabilized",
                              "recent recommendations were higher than current one, applying "
                              "the highest recent recommendation", now)
            else:
                set_condition(hpa, ABLE_TO_SCALE, True, "ReadyForNewScale",
                              "recommended size matches current size", now)
            out = behave.limit(current, stabilized, min_replicas, max_replicas)
        else:
            stabilized, reason, message = behave.stabilize_with_behavior(
                mem, behavior, current, desired, self.downscale_window, now)
            if stabilized != desired:
                set_condition(hpa, ABLE_TO_SCALE, True, reason, message, now)
            else:
                set_condition(hpa, ABLE_TO_SCALE, True, "ReadyForNewScale",
                              "recommended size matches current size", now)
            out = behave.limit_with_behavior(mem, behavior, current, stabilized, min_replicas,
                                             max_replicas, now)
        set_condition(hpa, SCALING_LIMITED, out.replicas != stabilized, out.reason, out.message,
                      now)
        return out.replicas

    @staticmethod
    def _set_status(hpa: Obj, current: int, desired: int, statuses: list[Obj], rescale: bool,
                    now: float) -> None:
        old = hpa.get("status") or {}
        status: Obj = {"currentReplicas": current, "desiredReplicas": desired}
        if statuses:
            status["currentMetrics"] = statuses
        if rescale:
            status["lastScaleTime"] = _now_rfc3339(now)
        elif old.get("lastScaleTime"):
            status["lastScaleTime"] = old["lastScaleTime"]
        if old.get("conditions"):
            status["conditions"] = old["conditions"]
        hpa["status"] = status  # recreated whole, as upstream's setStatus does

    async def _update_status(self, original: Obj, hpa: Obj) -> None:
        if hpa.get("status") == original:
            return
        try:
            await self.hpa_api.replace_status(hpa, hpa["metadata"]["namespace"])
        except ApiError as e:
            if e.not_found:
                return
            self.recorder.event(hpa, "Warning", "FailedUpdateStatus",
                                e.status.get("message") or str(e))
            raise

    # -- the target's scale ---------------------------------------------------------

    async def _get_scale(self, ns: str, ref: Obj) -> tuple[ResourceClient, Obj]:
        api_version, kind = str(ref.get("apiVersion") or ""), str(ref.get("kind") or "")
        if api_version.count("/") > 1:
            msg = f"unexpected GroupVersion string: {api_version}"
            raise ScaleError(f"invalid API version in scale target reference: {msg}", msg)
        api, _ = await self._map(api_version, kind)
        try:
            scale = await api.get(str(ref.get("name") or ""), ns, "scale")
        except ApiError as e:
            msg = e.status.get("message") or str(e)
            raise ScaleError(msg, msg) from None
        return api, scale

    async def _map(self, api_version: str, kind: str) -> tuple[ResourceClient, str]:
        hit = self._mappings.get((api_version, kind))
        if hit is not None and self.clock() - hit[2] < 60:
            return hit[0], hit[1]
        group, _, version = api_version.rpartition("/")
        found: tuple[str, str, bool] | None = None  # (version, plural, namespaced)
        for info in BUILTIN:
            if info.group == group and info.kind == kind and "scale" in info.subresources:
                if found is None or info.version == version:
                    found = (info.version, info.resource, info.namespaced)
        if found is None:
            found = await self._discover(group, version, kind)
        if found is None:
            msg = f'no matches for kind "{kind}" in group "{group}"'
            raise ScaleError(f"unable to determine resource for scale target reference: {msg}",
                             msg)
        gv = f"{group}/{found[0]}" if group else found[0]
        api = self.client.resource(gv, found[1], found[2])
        resource = f"{found[1]}.{group}" if group else found[1]
        self._mappings[(api_version, kind)] = (api, resource, self.clock())
        return api, resource

    async def _discover(self, group: str, version: str, kind: str
                        ) -> tuple[str, str, bool] | None:
        """A custom kind's resource from discovery: the reference's version
        first, then the group's others."""
        versions = [version] if version else []
        try:
            doc = await self.client.request("GET", f"/apis/{group}") if group else None
        except (ApiError, OSError, asyncio.TimeoutError):
            doc = None
        for v in (doc or {}).get("versions") or []:
            if v.get("version") and v["version"] not in versions:
                versions.append(v["version"])
        for v in versions:
            path = f"/apis/{group}/{v}" if group else f"/api/{v}"
            try:
                listing = await self.client.request("GET", path)
            except (ApiError, OSError, asyncio.TimeoutError):
                continue
            for r in (listing or {}).get("resources") or []:
                if r.get("kind") == kind and "/" not in r.get("name", ""):
                    return v, r["name"], bool(r.get("namespaced"))
        return None

    # -- metrics ---------------------------------------------------------------------

    async def _compute(self, hpa: Obj, scale: Obj, now: float
                       ) -> tuple[int, str, list[Obj], str]:
        """computeReplicasForMetrics: (replicas or -1, metric name, statuses, error)."""
        status = scale.get("status") or {}
        text = status.get("selector") or ""
        if not text:
            self.recorder.event(hpa, "Warning", "SelectorRequired", "selector is required")
            set_condition(hpa, SCALING_ACTIVE, False, "InvalidSelector",
                          "the HPA target's scale is missing a selector", now)
            return -1, "", [], "selector is required"
        try:
            selector = selectors.parse_label_selector(text)
        except (selectors.SelectorError, ValueError) as e:
            msg = f"couldn't convert selector into a corresponding internal selector object: {e}"
            self.recorder.event(hpa, "Warning", "InvalidSelector", msg)
            set_condition(hpa, SCALING_ACTIVE, False, "InvalidSelector", msg, now)
            return -1, "", [], msg
        ns = hpa["metadata"]["namespace"]
        pods = [p for p in self.pods.objects(ns)
                if selector.matches(p["metadata"].get("labels") or {})]
        spec_replicas = int((scale.get("spec") or {}).get("replicas") or 0)
        metrics = hpa["spec"].get("metrics") or []
        statuses: list[Obj] = []
        replicas, metric_name = 0, ""
        invalid, first_error, first_condition = 0, "", ("", "")
        for spec in metrics:
            try:
                proposal, name, st = await self._one_metric(hpa, spec, spec_replicas, text,
                                                            pods, now)
            except MetricFailure as e:
                statuses.append({"type": ""})  # upstream leaves the failed slot zero-valued
                self.recorder.event(hpa, "Warning", e.reason, str(e))
                if not invalid:
                    first_error = str(e)
                    first_condition = (e.reason, "the HPA was unable to compute the replica "
                                                 f"count: {e}")
                invalid += 1
                continue
            statuses.append(st)
            if replicas == 0 or proposal > replicas:
                replicas, metric_name = proposal, name
        error = f"invalid metrics ({invalid} invalid out of {len(metrics)}), first error " \
                f"is: {first_error}" if invalid else ""
        if invalid >= len(metrics) or (invalid and replicas < spec_replicas):
            set_condition(hpa, SCALING_ACTIVE, False, first_condition[0], first_condition[1],
                          now)
            return -1, "", statuses, error
        set_condition(hpa, SCALING_ACTIVE, True, "ValidMetricFound",
                      f"the HPA was able to successfully calculate a replica count from "
                      f"{metric_name}", now)
        return replicas, metric_name, statuses, error

    def _tolerances(self, hpa: Obj) -> calc.Tolerances:
        behavior = hpa["spec"].get("behavior") or {}

        def tol(direction: str) -> float:
            t = (behavior.get(direction) or {}).get("tolerance")
            if t is None:
                return self.tolerance
            try:
                return float(quantity.parse_quantity(t))
            except (quantity.QuantityError, TypeError, ValueError):
                return self.tolerance

        return calc.Tolerances(down=tol("scaleDown"), up=tol("scaleUp"))

    async def _one_metric(self, hpa: Obj, spec: Obj, current: int, selector: str,
                          pods: list[Obj], now: float) -> tuple[int, str, Obj]:
        mtype = spec.get("type") or ""
        if mtype in ("Resource", "ContainerResource"):
            field = "resource" if mtype == "Resource" else "containerResource"
            src = spec.get(field) or {}
            container = src.get("container") or "" if mtype == "ContainerResource" else ""
            reason = "FailedGetResourceMetric" if mtype == "Resource" \
                else "FailedGetContainerResourceMetric"
            try:
                proposal, name, current_status = await self._resource_metric(
                    hpa, src, container, current, selector, pods, now)
            except calc.MetricError as e:
                raise MetricFailure(reason, str(e)) from None
            return proposal, name, {"type": mtype, field: {
                "name": src.get("name"), **({"container": container} if container else {}),
                "current": current_status}}
        if mtype in _MISSING_API:
            reason, text = _MISSING_API[mtype]
            metric = (spec.get(mtype.lower()) or {}).get("metric") or {}
            raise MetricFailure(reason, text.format(name=metric.get("name", "")))
        raise MetricFailure("InvalidMetricSourceType",
                            f'unknown metric source type "{mtype}"')

    async def _resource_metric(self, hpa: Obj, src: Obj, container: str, current: int,
                               selector: str, pods: list[Obj], now: float
                               ) -> tuple[int, str, Obj]:
        """computeStatusForResourceMetricGeneric: (replicas, metric name, current)."""
        resource = str(src.get("name") or "")
        target = src.get("target") or {}
        ns = hpa["metadata"]["namespace"]
        if target.get("averageValue") is not None:
            try:
                items = await self._pod_metrics(ns, selector, resource, container)
                inp = self._inputs(current, pods, items, resource, self._tolerances(hpa), now)
                replicas, usage = calc.raw_resource_replicas(inp,
                                                             calc.milli(target["averageValue"]))
            except calc.MetricError as e:
                raise calc.MetricError(f"failed to get {resource} usage: {e}") from None
            return replicas, f"{resource} resource", {"averageValue": _milli_quantity(usage)}
        if target.get("averageUtilization") is None:
            raise calc.MetricError("invalid resource metric source: neither an average "
                                   "utilization target nor an average value (usage) target "
                                   "was set")
        try:
            items = await self._pod_metrics(ns, selector, resource, container)
            inp = self._inputs(current, pods, items, resource, self._tolerances(hpa), now)
            replicas, utilization, raw = calc.resource_replicas(
                inp, int(target["averageUtilization"]), container)
        except calc.MetricError as e:
            raise calc.MetricError(f"failed to get {resource} utilization: {e}") from None
        return replicas, f"{resource} resource utilization (percentage of request)", \
            {"averageUtilization": utilization, "averageValue": _milli_quantity(raw)}

    def _inputs(self, current: int, pods: list[Obj], metrics: dict[str, calc.PodMetric],
                resource: str, tolerances: calc.Tolerances, now: float) -> calc.Inputs:
        return calc.Inputs(current, pods, metrics, resource, tolerances,
                           self.cpu_initialization_period, self.initial_readiness_delay, now)

    async def _pod_metrics(self, ns: str, selector: str, resource: str,
                           container: str = "") -> dict[str, calc.PodMetric]:
        """GetResourceMetric: the pods' usage from metrics.k8s.io."""
        try:
            answer = await self.client.request("GET", METRICS_PATH.format(ns=ns),
                                               params={"labelSelector": selector})
        except ApiError as e:
            msg = e.status.get("message") or str(e)
            if e.code == 404:
                msg += " (get pods.metrics.k8s.io)"
            raise calc.MetricError(f"unable to get metrics for resource {resource}: unable to "
                                   f"fetch metrics from resource metrics API: {msg}") from None
        except (OSError, asyncio.TimeoutError) as e:
            raise calc.MetricError(f"unable to get metrics for resource {resource}: unable to "
                                   f"fetch metrics from resource metrics API: {e}") from None
        items = (answer or {}).get("items") or []
        if not items:
            raise calc.MetricError(f"unable to get metrics for resource {resource}: no metrics "
                                   "returned from resource metrics API")
        try:
            return calc.pod_metrics(items, resource, container)
        except calc.MetricError as e:
            raise calc.MetricError(f"unable to get metrics for resource {resource}: failed to "
                                   f"get container metrics: {e}") from None


def _milli_quantity(milli: int) -> str:
    return quantity.format_quantity(Fraction(milli, 1000), "DecimalSI")


CONTROLLERS: dict[str, type[Controller]] = {"horizontalpodautoscaling": HorizontalController}
