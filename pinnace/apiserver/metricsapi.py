"""metrics.k8s.io/v1beta1, served by the API server itself: what
metrics-server answers behind the aggregation layer upstream, so that
`kubectl top` and the HPA work with nothing more to install.

  GET /apis/metrics.k8s.io/v1beta1/nodes[/NAME]                     NodeMetrics(List)
  GET /apis/metrics.k8s.io/v1beta1/pods                             PodMetricsList, every namespace
  GET /apis/metrics.k8s.io/v1beta1/namespaces/NS/pods[/NAME]        PodMetrics(List)

labelSelector and fieldSelector (metadata.name, metadata.namespace) filter the
Nodes and Pods the answer is made for, as metrics-server filters its listers;
answers are JSON or a Table (metrics-server's columns: Name, cpu, memory,
Window). Objects look exactly as metrics-server's: usage cpu in nanocores
and memory (the working set) in bytes, as canonical quantities ("329087452n",
"2748180Ki"); only Running pods have metrics; a node or pod without metrics
is left out of a list and NotFound on a get.

Where the numbers come from:
- A real node: its kubelet's /stats/summary (node.cpu.usageNanoCores,
  node.memory.workingSetBytes; the same per container), fetched with the
  node proxy's client certificate and address rules (nodeproxy.py). One
  answer per node is reused for CACHE_SECONDS (metrics-server scrapes every
  15 s); nodes are fetched concurrently, each within FETCH_TIMEOUT; a node
  that does not answer, or whose Ready condition is Unknown (its kubelet
  stopped posting), is left out, as metrics-server leaves it out.
- A simulated node (`pinnace sim`, containerRuntimeVersion "sim://...") runs
  nothing, so usage is made up, deterministically: each container of a
  Running pod uses half its CPU request and 60% of its memory request
  (limit when there is no request; 10m and 32Mi when neither), times a
  factor between 0.75 and 1.25 fixed by a hash of the pod uid and container
  name, memory rounded to 4 KiB pages. The node uses SIM_SYSTEM (its own
  daemons) plus its pods. The annotation pinnace.dev/sim-usage
  ("cpu=250m,memory=64Mi") sets the usage outright: on a Pod, of each of its
  containers; on a Node, of the whole node.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from fractions import Fraction
from typing import Any

import aiohttp
from aiohttp import web

from pinnace.api import quantity, selectors
from pinnace.kubelet.podstatus import rfc3339

from . import codec, status
from .nodeproxy import NodeProxy, is_simulated
from .registry import ResourceTable
from .rest import Registry
from .status import APIError

log = logging.getLogger("pinnace.apiserver.metricsapi")

Obj = dict[str, Any]

GROUP, VERSION = "metrics.k8s.io", "v1beta1"
GROUP_VERSION = f"{GROUP}/{VERSION}"
SIM_USAGE = "pinnace.dev/sim-usage"
SIM_SYSTEM = {"cpu": Fraction(1, 10), "memory": Fraction(512 * 2**20)}
CACHE_SECONDS = 10.0
FETCH_TIMEOUT = 5.0
WINDOW = "10s"

_GV = {"groupVersion": GROUP_VERSION, "version": VERSION}
API_GROUP: Obj = {"name": GROUP, "versions": [_GV], "preferredVersion": _GV}
_KINDS = (("nodes", "NodeMetrics", False), ("pods", "PodMetrics", True))
RESOURCE_LIST: Obj = {
    "kind": "APIResourceList", "apiVersion": "v1", "groupVersion": GROUP_VERSION,
    "resources": [{"name": r, "singularName": "", "namespaced": ns, "kind": k,
                   "verbs": ["get", "list"]} for r, k, ns in _KINDS]}
AGGREGATED: Obj = {
    "metadata": {"name": GROUP, "creationTimestamp": None},
    "versions": [{"version": VERSION, "freshness": "Current", "resources": [
        {"resource": r, "responseKind": {"group": GROUP, "version": VERSION, "kind": k},
         "scope": "Namespaced" if ns else "Cluster", "singularResource": "",
         "verbs": ["get", "list"]} for r, k, ns in _KINDS]}]}
# What discovery.Discovery lists besides the ResourceTable's groups.
DISCOVERY = (API_GROUP, AGGREGATED)


class MetricsAPI:
    """Serves /apis/metrics.k8s.io/...; ``proxy`` reaches kubelets."""

    def __init__(self, registry: Registry, table: ResourceTable, proxy: NodeProxy | None):
        self.registry = registry
        self.table = table
        self.proxy = proxy
        self._summaries: dict[str, tuple[float, asyncio.Future[Obj | None]]] = {}
        self._sim_pods: tuple[float, dict[str, list[Obj]]] | None = None

    async def handle(self, request: web.Request, parts: list[str]) -> web.Response:
        """``parts``: the path's segments after /apis."""
        if len(parts) == 1:
            return _json({"kind": "APIGroup", "apiVersion": "v1", **API_GROUP})
        if parts[1] != VERSION:
            raise _no_such_path()
        if len(parts) == 2:
            return _json(RESOURCE_LIST)
        if request.method != "GET":
            raise status.method_not_allowed()
        rest = parts[2:]
        ns: str | None = None
        if len(rest) >= 3 and rest[0] == "namespaces":
            ns, rest = rest[1], rest[2:]
            if rest[0] != "pods":
                raise _no_such_path()
        if rest[0] not in ("nodes", "pods") or len(rest) > 2:
            raise _no_such_path()
        if request.query.get("watch") in ("1", "true", "True"):
            raise APIError(405, "MethodNotAllowed", f'the server does not allow this method on '
                                                    f'the requested resource ({rest[0]}.{GROUP})',
                           {"group": GROUP, "kind": rest[0]})
        resource, name = rest[0], rest[1] if len(rest) == 2 else None
        if resource == "nodes":
            if ns is not None:
                raise _no_such_path()
            if name is None:
                items = await self.node_metrics(self._selectors(request))
                return self._respond(request, "NodeMetricsList", items)
            return self._respond(request, "", [await self.one_node(name)])
        if name is None:
            items = await self.pod_metrics(ns, self._selectors(request))
            return self._respond(request, "PodMetricsList", items)
        if ns is None:
            raise _no_such_path()
        return self._respond(request, "", [await self.one_pod(ns, name)])

    # -- nodes -------------------------------------------------------------------

    async def node_metrics(self, sel: tuple[Any, Any], only: str | None = None) -> list[Obj]:
        nodes = [n for n in await self._list("nodes", None) if _selected(n, sel)
                 and (only is None or n["metadata"]["name"] == only)]
        sims = [n for n in nodes if is_simulated(n)]
        by_node = await self._running_pods_by_node() if sims else {}
        reals = [n for n in nodes if not is_simulated(n)]
        summaries = await asyncio.gather(*(self._summary(n) for n in reals))
        out = []
        for n in sims:
            cpu, mem = _sim_node_usage(n, by_node.get(n["metadata"]["name"], []))
            out.append(_node_metrics(n, rfc3339(), cpu, mem))
        for n, s in zip(reals, summaries):
            node = (s or {}).get("node") or {}
            ncpu, nmem = (node.get("cpu") or {}), (node.get("memory") or {})
            if "usageNanoCores" in ncpu and "workingSetBytes" in nmem:
                out.append(_node_metrics(n, ncpu.get("time") or rfc3339(),
                                         Fraction(ncpu["usageNanoCores"], 10**9),
                                         Fraction(nmem["workingSetBytes"])))
        return sorted(out, key=lambda m: m["metadata"]["name"])

    async def one_node(self, name: str) -> Obj:
        items = await self.node_metrics((None, None), only=name)
        if not items:
            if not any(n["metadata"]["name"] == name for n in await self._list("nodes", None)):
                raise APIError(404, "NotFound", f'node "{name}" not found',
                               {"name": name, "kind": "node"})
            raise status.not_found("nodemetrics", GROUP, name)
        return items[0]

    # -- pods --------------------------------------------------------------------

    async def pod_metrics(self, ns: str | None, sel: tuple[Any, Any],
                          only: str | None = None) -> list[Obj]:
        pods = [p for p in await self._list("pods", ns)
                if (only is None or p["metadata"]["name"] == only) and _selected(p, sel)
                and (p.get("status") or {}).get("phase") == "Running"
                and (p.get("spec") or {}).get("nodeName")]
        names = {p["spec"]["nodeName"] for p in pods}
        nodes = {n["metadata"]["name"]: n for n in await self._list("nodes", None)
                 if n["metadata"]["name"] in names}
        reals = [n for n in nodes.values() if not is_simulated(n)]
        summaries = dict(zip((n["metadata"]["name"] for n in reals),
                             await asyncio.gather(*(self._summary(n) for n in reals))))
        found: dict[str, dict[tuple[str, str], Obj]] = {}
        for node_name, s in summaries.items():
            found[node_name] = {((p.get("podRef") or {}).get("namespace", ""),
                                 (p.get("podRef") or {}).get("name", "")): p
                                for p in (s or {}).get("pods") or []}
        out = []
        for p in pods:
            meta, node = p["metadata"], nodes.get(p["spec"]["nodeName"])
            if node is None:
                continue
            if is_simulated(node):
                ts, containers = rfc3339(), [
                    {"name": c.get("name", ""), "usage": _usage(*_sim_container_usage(p, c))}
                    for c in p["spec"].get("containers") or []]
            else:
                stats = found.get(node["metadata"]["name"], {}).get(
                    (meta.get("namespace", ""), meta["name"]))
                if stats is None or (stats.get("podRef") or {}).get("uid") not in (
                        None, "", meta.get("uid")):
                    continue
                ts, containers = _summary_containers(stats)
            if containers:
                out.append(_pod_metrics(p, ts, containers))
        return sorted(out, key=lambda m: (m["metadata"]["namespace"], m["metadata"]["name"]))

    async def one_pod(self, ns: str, name: str) -> Obj:
        items = await self.pod_metrics(ns, (None, None), only=name)
        if not items:
            info = self.table.lookup("", "v1", "pods")
            assert info is not None
            try:
                await self.registry.get(info, ns, name)
            except APIError:
                raise APIError(404, "NotFound", f'pod "{name}" not found',
                               {"name": name, "kind": "pod"}) from None
            raise status.not_found("podmetrics", GROUP, f"{ns}/{name}")
        return items[0]

    # -- sources -----------------------------------------------------------------

    async def _list(self, resource: str, ns: str | None) -> list[Obj]:
        info = self.table.lookup("", "v1", resource)
        assert info is not None
        kvs, _, _, _ = await self.registry.list_kvs(info, ns)
        return [codec.decode_stored(kv.value, kv.mod_revision) for kv in kvs]

    async def _running_pods_by_node(self) -> dict[str, list[Obj]]:
        """Running pods by node name, reused for CACHE_SECONDS."""
        now = time.monotonic()
        if self._sim_pods is not None and now < self._sim_pods[0]:
            return self._sim_pods[1]
        by_node: dict[str, list[Obj]] = {}
        for p in await self._list("pods", None):
            node = (p.get("spec") or {}).get("nodeName")
            if node and (p.get("status") or {}).get("phase") == "Running":
                by_node.setdefault(node, []).append(
                    {"metadata": {"uid": p["metadata"].get("uid", ""),
                                  "annotations": p["metadata"].get("annotations") or {}},
                     "spec": {"containers": p["spec"].get("containers") or []}})
        self._sim_pods = (now + CACHE_SECONDS, by_node)
        return by_node

    async def _summary(self, node: Obj) -> Obj | None:
        """The node's kubelet /stats/summary (None when it cannot be had),
        one fetch per CACHE_SECONDS however many requests want it."""
        name = node["metadata"]["name"]
        now = time.monotonic()
        for key in [k for k, (exp, _) in self._summaries.items() if exp < now]:
            del self._summaries[key]
        hit = self._summaries.get(name)
        fut: asyncio.Future[Obj | None]
        if hit is None:
            fut = asyncio.ensure_future(self._fetch(node))
            self._summaries[name] = (now + CACHE_SECONDS, fut)
        else:
            fut = hit[1]
        return await asyncio.shield(fut)

    async def _fetch(self, node: Obj) -> Obj | None:
        name = node["metadata"]["name"]
        ready = next((c for c in (node.get("status") or {}).get("conditions") or []
                      if c.get("type") == "Ready"), None)
        if self.proxy is None or (ready is not None and ready.get("status") == "Unknown"):
            return None
        try:
            base, _ = await self.proxy._kubelet(name)
            session = await self.proxy._client()
            async with session.get(f"{base}/stats/summary",
                                   headers={"Accept-Encoding": "identity"},
                                   timeout=aiohttp.ClientTimeout(total=FETCH_TIMEOUT)) as resp:
                if resp.status != 200:
                    log.info("node %s: /stats/summary answered %d", name, resp.status)
                    return None
                body = await resp.json(content_type=None)
                return body if isinstance(body, dict) else None
        except (APIError, aiohttp.ClientError, OSError, asyncio.TimeoutError, ValueError) as e:
            log.info("node %s: no stats: %s", name, getattr(e, "message", None) or e or
                     type(e).__name__)
            return None

    # -- answers -----------------------------------------------------------------

    def _selectors(self, request: web.Request) -> tuple[Any, Any]:
        q = request.query
        try:
            label = selectors.parse_label_selector(q["labelSelector"]) \
                if q.get("labelSelector") else None
            fields = selectors.parse_field_selector(q["fieldSelector"]) \
                if q.get("fieldSelector") else None
        except (selectors.SelectorError, ValueError) as e:
            raise status.bad_request(str(e)) from None
        return label, fields

    def _respond(self, request: web.Request, list_kind: str, items: list[Obj]) -> web.Response:
        from .handlers import negotiate

        fmt = negotiate(request.headers.get("Accept", ""))
        if fmt.kind == "table":
            body = _table(items, request.query.get("includeObject", "Metadata"))
            return web.Response(body=codec.dumps(body),
                                headers={"Content-Type": fmt.content_type})
        if list_kind:
            return _json({"kind": list_kind, "apiVersion": GROUP_VERSION, "metadata": {},
                          "items": items})
        return _json(items[0])


# -- objects -------------------------------------------------------------------------

def _selected(obj: Obj, sel: tuple[Any, Any]) -> bool:
    label, fields = sel
    meta = obj.get("metadata") or {}
    if label is not None and not label.matches(meta.get("labels") or {}):
        return False
    if fields is not None:
        fs = {"metadata.name": meta.get("name", "")}
        if "namespace" in meta:
            fs["metadata.namespace"] = meta.get("namespace") or ""
        return bool(fields.matches(fs))
    return True


def _usage(cpu: Fraction, memory: Fraction) -> Obj:
    """metrics-server's quantities: cpu as nanocores (DecimalSI, scale -9),
    memory as bytes (BinarySI), both canonical."""
    return {"cpu": quantity.format_quantity(Fraction(int(cpu * 10**9), 10**9), "DecimalSI"),
            "memory": quantity.format_quantity(Fraction(int(memory)), "BinarySI")}


def _meta(obj: Obj, namespaced: bool) -> Obj:
    m = obj["metadata"]
    out: Obj = {"name": m["name"]}
    if namespaced:
        out["namespace"] = m.get("namespace", "")
    out["creationTimestamp"] = rfc3339()
    if m.get("labels"):
        out["labels"] = m["labels"]
    return out


def _node_metrics(node: Obj, ts: str, cpu: Fraction, memory: Fraction) -> Obj:
    return {"kind": "NodeMetrics", "apiVersion": GROUP_VERSION, "metadata": _meta(node, False),
            "timestamp": ts, "window": WINDOW, "usage": _usage(cpu, memory)}


def _pod_metrics(pod: Obj, ts: str, containers: list[Obj]) -> Obj:
    return {"kind": "PodMetrics", "apiVersion": GROUP_VERSION, "metadata": _meta(pod, True),
            "timestamp": ts, "window": WINDOW, "containers": containers}


def _summary_containers(stats: Obj) -> tuple[str, list[Obj]]:
    """A summary pod's containers that have both CPU and memory figures."""
    ts, out = "", []
    for c in stats.get("containers") or []:
        cpu, mem = c.get("cpu") or {}, c.get("memory") or {}
        if "usageNanoCores" not in cpu or "workingSetBytes" not in mem:
            continue
        ts = ts or cpu.get("time") or ""
        out.append({"name": c.get("name", ""),
                    "usage": _usage(Fraction(cpu["usageNanoCores"], 10**9),
                                    Fraction(mem["workingSetBytes"]))})
    return ts or rfc3339(), out


# -- simulated usage ---------------------------------------------------------------

def _override(obj: Obj) -> tuple[Fraction, Fraction] | None:
    text = ((obj.get("metadata") or {}).get("annotations") or {}).get(SIM_USAGE)
    if not text:
        return None
    got: dict[str, Fraction] = {}
    try:
        for part in text.split(","):
            k, _, v = part.partition("=")
            got[k.strip()] = quantity.parse_quantity(v.strip())
    except quantity.QuantityError:
        return None
    return got.get("cpu", Fraction(0)), got.get("memory", Fraction(0))


def _sim_container_usage(pod: Obj, c: Obj) -> tuple[Fraction, Fraction]:
    fixed = _override(pod)
    if fixed is not None:
        return fixed
    res = c.get("resources") or {}
    req, lim = res.get("requests") or {}, res.get("limits") or {}

    def amount(name: str, default: str) -> Fraction:
        try:
            return quantity.parse_quantity(req.get(name) or lim.get(name) or default)
        except quantity.QuantityError:
            return quantity.parse_quantity(default)

    digest = hashlib.sha256(f"{pod['metadata'].get('uid', '')}/{c.get('name', '')}".encode())
    jitter = Fraction(75 + digest.digest()[0] * 50 // 256, 100)  # 0.75 .. 1.245
    cpu = amount("cpu", "10m") * Fraction(1, 2) * jitter
    mem = amount("memory", "32Mi") * Fraction(3, 5) * jitter
    return cpu, Fraction(int(mem) // 4096 * 4096)


def _sim_node_usage(node: Obj, pods: list[Obj]) -> tuple[Fraction, Fraction]:
    fixed = _override(node)
    if fixed is not None:
        return fixed
    cpu, mem = SIM_SYSTEM["cpu"], SIM_SYSTEM["memory"]
    for p in pods:
        for c in p["spec"].get("containers") or []:
            ccpu, cmem = _sim_container_usage(p, c)
            cpu, mem = cpu + ccpu, mem + cmem
    return cpu, mem


def _table(items: list[Obj], include_object: str) -> Obj:
    """metrics-server's Table: Name, then one column per resource, then Window."""
    cols = [{"name": "Name", "type": "string", "format": "name",
             "description": "Name of the resource", "priority": 0}]
    cols += [{"name": r, "type": "string", "format": "quantity", "description": "",
              "priority": 0} for r in ("cpu", "memory")]
    cols.append({"name": "Window", "type": "string", "format": "duration", "description": "",
                 "priority": 0})
    rows = []
    for m in items:
        if "usage" in m:
            usage = m["usage"]
        else:
            totals = {"cpu": Fraction(0), "memory": Fraction(0)}
            for c in m.get("containers") or []:
                for k in totals:
                    totals[k] += quantity.parse_quantity(c["usage"].get(k, "0"))
            usage = {"cpu": quantity.format_quantity(totals["cpu"], "DecimalSI"),
                     "memory": quantity.format_quantity(totals["memory"], "BinarySI")}
        row: Obj = {"cells": [m["metadata"]["name"], usage["cpu"], usage["memory"],
                              m["window"]]}
        if include_object == "Object":
            row["object"] = m
        elif include_object in ("", "Metadata"):
            row["object"] = {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
                             "metadata": m["metadata"]}
        rows.append(row)
    return {"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": {},
            "columnDefinitions": cols, "rows": rows}


def _json(obj: Any) -> web.Response:
    return web.Response(body=codec.dumps(obj), content_type="application/json")


def _no_such_path() -> APIError:
    return APIError(404, "NotFound", "the server could not find the requested resource", {})


__all__ = ["AGGREGATED", "API_GROUP", "DISCOVERY", "GROUP", "MetricsAPI", "RESOURCE_LIST"]
