"""Remembered Table rows read exactly as rows built from the object would,
at any time, for objects whose cells move with the clock and those that
don't."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest

from pinnace.api.resources import BUILTIN, ResourceInfo
from pinnace.apiserver import codec
from pinnace.apiserver.handlers import make_table
from pinnace.apiserver.rowcache import RowCache
from pinnace.storage.interface import KeyValue

T0 = dt.datetime(2026, 12, 1, 12, 0, tzinfo=dt.UTC).timestamp()


def info(group: str, resource: str) -> ResourceInfo:
    return next(i for i in BUILTIN if i.group == group and i.resource == resource)


def pod(name: str, restarts: int = 0, phase: str = "Running") -> dict[str, Any]:
    last = {"terminated": {"exitCode": 1, "finishedAt": "2026-12-01T11:00:00Z"}} \
        if restarts else {}
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": "ns", "uid": "u-" + name,
                         "creationTimestamp": "2026-11-30T12:00:00Z", "labels": {"app": "a"}},
            "spec": {"containers": [{"name": "c", "image": "i"}], "nodeName": "n1"},
            "status": {"phase": phase, "podIP": "10.0.0.5",
                       "conditions": [{"type": "Ready", "status": "True"}],
                       "containerStatuses": [{"name": "c", "ready": True,
                                              "restartCount": restarts,
                                              "state": {"running": {}}, "lastState": last}]}}


def job(name: str) -> dict[str, Any]:
    return {"apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": name, "namespace": "ns", "uid": "j",
                         "creationTimestamp": "2026-11-30T12:00:00Z"},
            "spec": {"template": {"spec": {"containers": [{"name": "c", "image": "i"}]}}},
            "status": {"startTime": "2026-11-30T12:00:00Z", "active": 1}}


def kv(obj: dict[str, Any], rev: int) -> KeyValue:
    meta = obj["metadata"]
    return KeyValue(f"/registry/x/{meta['namespace']}/{meta['name']}",
                    codec.encode_for_storage(obj), rev, rev)


def direct(i: ResourceInfo, k: KeyValue, at: float, include: str) -> Any:
    obj = codec.decode_stored(k.value, k.mod_revision)
    return make_table(i, [obj], dt.datetime.fromtimestamp(at, dt.UTC), include, {},
                      headers=False)["rows"][0]


def cached(cache: RowCache, i: ResourceInfo, k: KeyValue, at: float, include: str) -> Any:
    def build(obj: dict[str, Any], t: float) -> Any:
        return make_table(i, [obj], dt.datetime.fromtimestamp(t, dt.UTC), include, {},
                          headers=False)["rows"][0]

    return json.loads(cache.rows(i, [k], at, include,
                                 lambda k: codec.decode_stored(k.value, k.mod_revision), build)[0])


@pytest.mark.parametrize("include", ["Metadata", "None"])
@pytest.mark.parametrize("group,resource,obj", [
    ("", "pods", pod("plain")),
    ("", "pods", pod("restarted", restarts=3)),  # "3 (1h ago)" moves with the clock too
    ("", "pods", pod("done", phase="Succeeded")),
    ("batch", "jobs", job("j")),  # so does its duration
])
def test_a_remembered_row_reads_as_a_fresh_one_at_any_time(
        group: str, resource: str, obj: dict[str, Any], include: str) -> None:
    i, cache = info(group, resource), RowCache()
    k = kv(obj, 7)
    for at in (T0, T0 + 1, T0 + 90, T0 + 7200, T0 + 86400 * 400):
        assert cached(cache, i, k, at, include) == direct(i, k, at, include)


def test_rows_are_built_once_per_revision() -> None:
    i, cache = info("", "pods"), RowCache()
    k1 = kv(pod("p"), 5)
    cached(cache, i, k1, T0, "Metadata")
    cached(cache, i, k1, T0 + 3600, "Metadata")
    assert (cache.hits, cache.misses) == (1, 1)
    # A new revision of the object is a new row.
    changed = pod("p")
    changed["status"]["phase"] = "Pending"
    k2 = kv(changed, 9)
    row = cached(cache, i, k2, T0, "Metadata")
    assert row["cells"][2] == "Pending" and row["object"]["metadata"]["resourceVersion"] == "9"
    assert cache.misses == 2
    # Rows whose other cells move with the clock are built every time.
    k3 = kv(pod("r", restarts=2), 11)
    cached(cache, i, k3, T0, "Metadata")
    cached(cache, i, k3, T0, "Metadata")
    assert cache.misses == 4


def test_the_byte_budget_drops_the_oldest_rows() -> None:
    i, cache = info("", "pods"), RowCache(max_bytes=8_000)
    keys = [kv(pod(f"p{n}"), n + 1) for n in range(40)]
    for k in keys:
        cached(cache, i, k, T0, "Metadata")
    assert 0 < cache.size <= 8_000
    cache.hits = cache.misses = 0
    cached(cache, i, keys[-1], T0, "Metadata")
    cached(cache, i, keys[0], T0, "Metadata")
    assert (cache.hits, cache.misses) == (1, 1)
