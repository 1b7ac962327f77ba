"""Factories for realistic Node and Pod dicts."""

from __future__ import annotations

import random
from typing import Any

import pytest

from pinnace.scheduler.cache import SchedulerCache
from pinnace.scheduler.framework import Profile, default_profile


def make_node(name: str, cpu: str = "4", mem: str = "8Gi", pods: str = "110", *, labels: dict[str, str] | None = None,
              taints: list[dict[str, Any]] | None = None, unschedulable: bool = False,
              images: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {}
    if taints:
        spec["taints"] = taints
    if unschedulable:
        spec["unschedulable"] = True
    return {"apiVersion": "v1", "kind": "Node",
            "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name, **(labels or {})}},
            "spec": spec,
            "status": {"capacity": {"cpu": cpu, "memory": mem, "pods": pods},
                       "allocatable": {"cpu": cpu, "memory": mem, "pods": pods}, "images": images or []}}


def make_pod(name: str, cpu: str | None = "100m", mem: str | None = "128Mi", *, ns: str = "default",
             node: str | None = None, labels: dict[str, str] | None = None, priority: int | None = None,
             image: str = "nginx:1.27", **spec: Any) -> dict[str, Any]:
    req = {k: v for k, v in (("cpu", cpu), ("memory", mem)) if v is not None}
    s: dict[str, Any] = {"containers": [{"name": "c", "image": image, "resources": {"requests": req} if req else {}}],
                         **spec}
    if node:
        s["nodeName"] = node
    if priority is not None:
        s["priority"] = priority
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": ns, "uid": f"uid-{name}", "labels": labels or {},
                         "creationTimestamp": "2025-01-01T00:00:00Z"},
            "spec": s, "status": {"phase": "Running" if node else "Pending"}}


@pytest.fixture
def cache() -> SchedulerCache:
    return SchedulerCache()


@pytest.fixture
def profile() -> Profile:
    return default_profile(rng=random.Random(0))
