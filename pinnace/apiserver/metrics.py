"""/metrics in the Prometheus text format: request counts and latencies by
verb, resource and code, as kube-apiserver names them, plus storage and
watch gauges."""

from __future__ import annotations

import asyncio
import os
from typing import Any

from aiohttp import web
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST

_BUCKETS = (0.005, 0.025, 0.05, 0.1, 0.2, 0.4, 0.6, 0.8, 1.0, 1.25, 1.5, 2, 3, 4, 5, 6, 8, 10,
            15, 20, 30, 45, 60)

# Set on a request that asked to watch by the old /watch/ path.
WATCH_PATH: web.RequestKey[bool] = web.RequestKey("watch", bool)


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
        if request.query.get("watch") in ("true", "1") or request.get(WATCH_PATH, False):
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
    """The API server's metrics. With several worker processes
    (PROMETHEUS_MULTIPROC_DIR set by pinnace.cli.apiworkers before anything
    imports prometheus_client), every worker records into files in that
    directory and whichever worker is scraped reports all of them summed,
    so counters never jump back when a scrape lands on another worker."""

    def __init__(self, store: Any, watches: Any):
        self.multiprocess = bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))
        self.registry = CollectorRegistry()
        self.requests = Counter("apiserver_request", "Counter of apiserver requests broken out "
                                "for each verb, resource and HTTP response code.",
                                ["verb", "resource", "code"], registry=self.registry)
        self.latency = Histogram("apiserver_request_duration_seconds", "Response latency "
                                 "distribution in seconds for each verb and resource.",
                                 ["verb", "resource"], buckets=_BUCKETS, registry=self.registry)
        self.watchers = Gauge("apiserver_registered_watchers", "Number of currently registered "
                              "watchers.", registry=self.registry, multiprocess_mode="livesum")
        self.revision = Gauge("pinnace_storage_revision", "The newest revision the API server "
                              "has seen committed.", registry=self.registry,
                              multiprocess_mode="livemax")
        self.watch_caches = Gauge("pinnace_watch_caches", "Resources with a running watch "
                                  "cache.", registry=self.registry, multiprocess_mode="livemax")
        self._watches = watches
        self.content_type = CONTENT_TYPE_LATEST
        if self.multiprocess:
            self._scrape = CollectorRegistry()
            multiprocess.MultiProcessCollector(self._scrape)
        else:
            self.watchers.set_function(watches.watcher_count)
            self.watch_caches.set_function(lambda: len(watches.caches))

    def observe(self, request: web.Request, code: int, seconds: float) -> None:
        verb, resource = _verb_and_resource(request)
        self.requests.labels(verb, resource, str(code)).inc()
        if verb != "WATCH":
            self.latency.labels(verb, resource).observe(seconds)

    def _set_gauges(self) -> None:
        w = self._watches
        self.revision.set(max((c.last_rev for c in w.caches.values()), default=0))
        if self.multiprocess:
            self.watchers.set(w.watcher_count())
            self.watch_caches.set(len(w.caches))

    async def keep_gauges(self) -> None:
        """Worker processes publish their gauges every second (a scrape of
        one worker cannot call into the others)."""
        if not self.multiprocess:
            return
        while True:
            self._set_gauges()
            await asyncio.sleep(1)

    def render(self) -> bytes:
        self._set_gauges()
        return generate_latest(self._scrape if self.multiprocess else self.registry)
