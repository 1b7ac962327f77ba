"""/metrics in the Prometheus text format: request counts and latencies by
verb, resource and code, as kube-apiserver names them, plus storage and
watch gauges."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

_BUCKETS = (0.005, 0.025, 0.05, 0.1, 0.2, 0.4, 0.6, 0.8, 1.0, 1.25, 1.5, 2, 3, 4, 5, 6, 8, 10,
            15, 20, 30, 45, 60)


def _verb_and_resource(request: web.Request) -> tuple[str, str]:
    parts = [p for p in request.path.split("/") if p]
    if not parts or parts[0] not in ("api", "apis"):
        return request.method, ""
    segs = parts[2:] if parts[0] == "api" else parts[3:]
    if segs and segs[0] == "watch":
        segs = segs[1:]
    if len(segs) >= 3 and segs[0] == "namespaces" and segs[2] not in ("status", "finalize"):
        segs = segs[2:]
    resource = segs[0] if segs else ""
    named = len(segs) > 1
    m = request.method
    if m == "GET":
        if request.query.get("watch") in ("true", "1") or request.get("watch"):
            verb = "WATCH"
        else:
            verb = "GET" if named else "LIST"
    elif m == "POST":
        verb = "POST"
    elif m == "DELETE":
        verb = "DELETE" if named else "DELETECOLLECTION"
    else:
        verb = m
    return verb, resource


class Metrics:
    def __init__(self, store: Any, watches: Any):
        self.registry = CollectorRegistry()
        self.requests = Counter("apiserver_request", "Counter of apiserver requests broken out "
                                "for each verb, resource and HTTP response code.",
                                ["verb", "resource", "code"], registry=self.registry)
        self.latency = Histogram("apiserver_request_duration_seconds", "Response latency "
                                 "distribution in seconds for each verb and resource.",
                                 ["verb", "resource"], buckets=_BUCKETS, registry=self.registry)
        self.watchers = Gauge("apiserver_registered_watchers", "Number of currently registered "
                              "watchers.", registry=self.registry)
        self.watchers.set_function(watches.watcher_count)
        self.revision = Gauge("pinnace_storage_revision", "The newest revision the API server "
                              "has seen committed.", registry=self.registry)
        self.watch_caches = Gauge("pinnace_watch_caches", "Resources with a running watch "
                                  "cache.", registry=self.registry)
        self.watch_caches.set_function(lambda: len(watches.caches))
        self._watches = watches
        self.content_type = CONTENT_TYPE_LATEST

    def observe(self, request: web.Request, code: int, seconds: float) -> None:
        verb, resource = _verb_and_resource(request)
        self.requests.labels(verb, resource, str(code)).inc()
        if verb != "WATCH":
            self.latency.labels(verb, resource).observe(seconds)

    def render(self) -> bytes:
        self.revision.set(max((c.last_rev for c in self._watches.caches.values()), default=0))
        return generate_latest(self.registry)
