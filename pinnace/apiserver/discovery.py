"""API discovery: the legacy documents (/api, /apis, /apis/G, resource lists)
and the aggregated form (apidiscovery.k8s.io/v2) kubectl 1.37 asks for first.
Built from the ResourceTable and cached until it changes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pinnace.api.resources import ResourceInfo

from . import codec
from .registry import ResourceTable

AGGREGATED_CT = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"

_SUB_VERBS = {
    "status": ["get", "patch", "update"],
    "scale": ["get", "patch", "update"],
    "binding": ["create"],
    "eviction": ["create"],
    "finalize": ["update"],
    "token": ["create"],
}
_SUB_KIND = {
    "scale": ("autoscaling", "v1", "Scale"),
    "binding": ("", "v1", "Binding"),
    "eviction": ("policy", "v1", "Eviction"),
    "token": ("authentication.k8s.io", "v1", "TokenRequest"),
}


def wants_aggregated(accept: str) -> bool:
    return "as=APIGroupDiscoveryList" in accept and "g=apidiscovery.k8s.io" in accept


class Discovery:
    def __init__(self, table: ResourceTable,
                 extra: Sequence[tuple[dict[str, Any], dict[str, Any]]] = ()):
        self.table = table
        # Groups served outside the table (metricsapi.DISCOVERY): (APIGroup, APIGroupDiscovery).
        self.extra = list(extra)
        self._gen = -1
        self._cache: dict[str, bytes] = {}

    def _cached(self, key: str, build: Any) -> bytes:
        if self._gen != self.table.generation:
            self._cache.clear()
            self._gen = self.table.generation
        data = self._cache.get(key)
        if data is None:
            data = self._cache[key] = codec.dumps(build())
        return data

    def api_versions(self, server_address: str) -> bytes:
        return self._cached("api", lambda: {
            "kind": "APIVersions", "versions": ["v1"],
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0",
                                            "serverAddress": server_address}]})

    def _group(self, group: str, versions: list[str]) -> dict[str, Any]:
        gvs = [{"groupVersion": f"{group}/{v}", "version": v} for v in versions]
        return {"name": group, "versions": gvs, "preferredVersion": gvs[0]}

    def api_groups(self) -> bytes:
        return self._cached("apis", lambda: {
            "kind": "APIGroupList", "apiVersion": "v1",
            "groups": [self._group(g, vs) for g, vs in self.table.groups() if g] +
                      [g for g, _ in self.extra]})

    def api_group(self, group: str) -> bytes | None:
        versions = dict(self.table.groups()).get(group) if group else None
        if not versions:
            return None
        return self._cached(f"group/{group}", lambda: {
            "kind": "APIGroup", "apiVersion": "v1", **self._group(group, versions)})

    def resource_list(self, group: str, version: str) -> bytes | None:
        infos = self.table.resources_in(group, version)
        if not infos:
            return None
        gv = f"{group}/{version}" if group else version

        def build() -> dict[str, Any]:
            resources: list[dict[str, Any]] = []
            for i in infos:
                r: dict[str, Any] = {"name": i.resource, "singularName": i.singular_name,
                                     "namespaced": i.namespaced, "kind": i.kind,
                                     "verbs": list(i.verbs)}
                if i.short_names:
                    r["shortNames"] = list(i.short_names)
                if i.categories:
                    r["categories"] = list(i.categories)
                resources.append(r)
                for sub in i.subresources:
                    g, v, k = _SUB_KIND.get(sub, (i.group, i.version, i.kind))
                    sr: dict[str, Any] = {"name": f"{i.resource}/{sub}", "singularName": "",
                                          "namespaced": i.namespaced, "kind": k,
                                          "verbs": _SUB_VERBS.get(sub, ["get"])}
                    if sub in _SUB_KIND and g:
                        sr["group"], sr["version"] = g, v
                    resources.append(sr)
            return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv,
                    "resources": resources}

        return self._cached(f"resources/{gv}", build)

    def aggregated(self, legacy: bool) -> bytes:
        """The aggregated document for /api (legacy=True) or /apis."""
        def build() -> dict[str, Any]:
            items = []
            for group, versions in self.table.groups():
                if (group == "") != legacy:
                    continue
                items.append({
                    "metadata": {"name": group, "creationTimestamp": None},
                    "versions": [{"version": v, "freshness": "Current",
                                  "resources": [_agg_resource(i) for i in
                                                self.table.resources_in(group, v)]}
                                 for v in versions]})
            if not legacy:
                items.extend(agg for _, agg in self.extra)
            return {"kind": "APIGroupDiscoveryList", "apiVersion": "apidiscovery.k8s.io/v2",
                    "metadata": {}, "items": items}

        return self._cached(f"aggregated/{legacy}", build)


def _agg_resource(i: ResourceInfo) -> dict[str, Any]:
    r: dict[str, Any] = {
        "resource": i.resource,
        "responseKind": {"group": i.group, "version": i.version, "kind": i.kind},
        "scope": "Namespaced" if i.namespaced else "Cluster",
        "singularResource": i.singular_name,
        "verbs": list(i.verbs),
    }
    if i.short_names:
        r["shortNames"] = list(i.short_names)
    if i.categories:
        r["categories"] = list(i.categories)
    subs = []
    for sub in i.subresources:
        g, v, k = _SUB_KIND.get(sub, (i.group, i.version, i.kind))
        subs.append({"subresource": sub, "responseKind": {"group": g, "version": v, "kind": k},
                     "verbs": _SUB_VERBS.get(sub, ["get"])})
    if subs:
        r["subresources"] = subs
    return r
