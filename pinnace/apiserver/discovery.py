"""API discovery: the legacy documents (/api, /apis, /apis/G, resource lists)
and the aggregated form (apidiscovery.k8s.io/v2) kubectl 1.30+ asks for first,
chosen by the request's Accept header as kube-apiserver chooses (``negotiate``).
Built from the ResourceTable and cached until it changes.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

from pinnace.api.resources import ResourceInfo

from . import codec
from .registry import ResourceTable

AGGREGATED_GROUP = "apidiscovery.k8s.io"
AGGREGATED_KIND = "APIGroupDiscoveryList"
# The aggregated document's versions pinnace serves. Kubernetes 1.37 serves
# only v2 (AggregatedDiscoveryRemoveBetaType is locked on since 1.35), so a
# client that offers v2beta1 and plain JSON (kubectl 1.27-1.29) gets the
# legacy documents, as it would from kube-apiserver.
AGGREGATED_VERSIONS = ("v2",)
AGGREGATED_CT = f"application/json;g={AGGREGATED_GROUP};v=v2;as={AGGREGATED_KIND}"
# Media types whose clauses may select a discovery document (pinnace writes
# discovery as JSON only; a clause for another type is passed over).
_JSON_RANGES = {("application", "json"), ("application", "*"), ("*", "*")}

_SUB_VERBS = {
    "status": ["get", "patch", "update"],
    "scale": ["get", "patch", "update"],
    "ephemeralcontainers": ["get", "patch", "update"],
    "resize": ["get", "patch", "update"],
    "binding": ["create"],
    "eviction": ["create"],
    "finalize": ["update"],
    "token": ["create"],
    "attach": ["create", "get"],
    "exec": ["create", "get"],
    "portforward": ["create", "get"],
    "proxy": ["create", "delete", "get", "patch", "update"],
}
_SUB_KIND = {
    "scale": ("autoscaling", "v1", "Scale"),
    "binding": ("", "v1", "Binding"),
    "eviction": ("policy", "v1", "Eviction"),
    "token": ("authentication.k8s.io", "v1", "TokenRequest"),
    "attach": ("", "v1", "PodAttachOptions"),
    "exec": ("", "v1", "PodExecOptions"),
    "portforward": ("", "v1", "PodPortForwardOptions"),
}


def _subresources(i: ResourceInfo) -> list[tuple[str, str, str, str]]:
    """(name, group, version, kind) of each subresource, in upstream's
    (alphabetical) order; a proxy answers with the kind's ProxyOptions."""
    out = []
    for sub in sorted((*i.subresources, *i.connect)):
        g, v, k = _SUB_KIND.get(sub, (i.group, i.version, i.kind))
        if sub == "proxy":
            k = f"{i.kind}ProxyOptions"
        out.append((sub, g, v, k))
    return out


def aggregated_content_type(version: str) -> str:
    return f"application/json;g={AGGREGATED_GROUP};v={version};as={AGGREGATED_KIND}"


def _accept_clauses(accept: str) -> list[tuple[str, str, dict[str, str]]]:
    """The clauses of an Accept header, most preferred first, as upstream's
    negotiation orders them: by q, then concrete types before wildcards,
    otherwise in the client's order. Each is (type, subtype, parameters)."""
    clauses: list[tuple[float, int, int, str, str, dict[str, str]]] = []
    for i, part in enumerate(accept.split(",")):
        fields = part.split(";")
        media = fields[0].strip()
        if not media:
            continue
        mtype, _, subtype = media.partition("/")
        params: dict[str, str] = {}
        q = 1.0
        for param in fields[1:]:
            key, _, value = param.partition("=")
            key, value = key.strip(), value.strip(' "')
            if key == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
            elif key:
                params[key] = value
        subtype = subtype.strip() or "*"
        wild = (mtype == "*") + (subtype == "*")
        clauses.append((-q, wild, i, mtype.strip(), subtype, params))
    clauses.sort(key=lambda c: c[:3])
    return [(t, st, p) for _, _, _, t, st, p in clauses]


def negotiate(accept: str) -> str | None:
    """The version of the aggregated discovery document to answer a request
    for /api or /apis with, or None for the legacy documents.

    The first acceptable clause decides: one that names a group, version
    and kind (``g=``, ``v=``, ``as=``) is acceptable only for an aggregated
    version pinnace serves; a plain one means the legacy documents. When no
    clause is acceptable the legacy documents are the answer too."""
    for mtype, subtype, params in _accept_clauses(accept):
        if (mtype, subtype) not in _JSON_RANGES:
            continue
        if not ({"g", "v", "as"} & params.keys()):
            return None
        if (params.get("g") == AGGREGATED_GROUP and params.get("as") == AGGREGATED_KIND
                and params.get("v") in AGGREGATED_VERSIONS):
            return params["v"]
    return None


def wants_aggregated(accept: str) -> bool:
    return negotiate(accept) is not None


class Discovery:
    def __init__(self, table: ResourceTable,
                 extra: Sequence[tuple[dict[str, Any], dict[str, Any]]] = ()):
        self.table = table
        # Groups served outside the table (metricsapi.DISCOVERY): (APIGroup, APIGroupDiscovery).
        self.extra = list(extra)
        self._gen = -1
        self._cache: dict[str, bytes] = {}
        self._etags: dict[str, str] = {}

    def _cached(self, key: str, build: Any) -> bytes:
        if self._gen != self.table.generation:
            self._cache.clear()
            self._etags.clear()
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
                for sub, g, v, k in _subresources(i):
                    sr: dict[str, Any] = {"name": f"{i.resource}/{sub}", "singularName": "",
                                          "namespaced": i.namespaced, "kind": k,
                                          "verbs": _SUB_VERBS.get(sub, ["get"])}
                    if sub in _SUB_KIND and g:
                        sr["group"], sr["version"] = g, v
                    resources.append(sr)
            return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv,
                    "resources": resources}

        return self._cached(f"resources/{gv}", build)

    def aggregated(self, legacy: bool, version: str = "v2") -> bytes:
        """The aggregated document for /api (legacy=True) or /apis, in
        apidiscovery.k8s.io ``version`` (v2 and v2beta1 share one shape)."""
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
            return {"kind": AGGREGATED_KIND, "apiVersion": f"{AGGREGATED_GROUP}/{version}",
                    "metadata": {}, "items": items}

        return self._cached(f"aggregated/{legacy}/{version}", build)

    def aggregated_etag(self, legacy: bool, version: str = "v2") -> str:
        """The aggregated document's ETag, quoted: the upper-case hex SHA-512
        of its JSON, as kube-apiserver makes it (changes whenever the
        document does)."""
        doc = self.aggregated(legacy, version)
        key = f"aggregated/{legacy}/{version}"
        tag = self._etags.get(key)
        if tag is None:
            tag = self._etags[key] = '"%s"' % hashlib.sha512(doc).hexdigest().upper()
        return tag


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
    for sub, g, v, k in _subresources(i):
        subs.append({"subresource": sub, "responseKind": {"group": g, "version": v, "kind": k},
                     "verbs": _SUB_VERBS.get(sub, ["get"])})
    if subs:
        r["subresources"] = subs
    return r
