"""ImageLocality: prefer nodes that already hold the pod's images, weighted
by image size and by how widely the image is spread (to avoid piling pods
onto the one node that has it)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pinnace.scheduler.cache import NodeInfo, PodInfo, SchedulerCache
from pinnace.scheduler.plugins.base import MAX_NODE_SCORE, Scorer

_MB = 1024 * 1024
MIN_THRESHOLD = 23 * _MB
MAX_CONTAINER_THRESHOLD = 1000 * _MB


def normalized_image_name(name: str) -> str:
    """An image without tag or digest means ":latest"."""
    if "@" not in name and ":" not in name.rsplit("/", 1)[-1]:
        return name + ":latest"
    return name


class ImageLocality:
    name = "ImageLocality"

    def pre_score(self, pod: PodInfo, cache: SchedulerCache, state: dict[str, Any],
                  nodes: Sequence[NodeInfo]) -> Scorer | None:
        images = [normalized_image_name(i) for i in pod.images]
        spread = {i: cache.image_nodes.get(i, 0) for i in images}
        if not any(spread.values()):
            return None  # no node has any of them: every score is 0
        total = max(len(cache.node_list()), 1)
        max_threshold = MAX_CONTAINER_THRESHOLD * max(len(images), 1)
        if sum(cache.image_max.get(i, 0) * (spread[i] / total) for i in images) <= MIN_THRESHOLD:
            return None  # even the node with the largest copies stays under the floor: all 0

        def from_sizes(sizes: tuple[int | None, ...]) -> int:
            s = 0.0
            for i, size in zip(images, sizes):
                if size is not None:
                    s += size * (spread[i] / total)
            s = min(max(int(s), MIN_THRESHOLD), max_threshold)
            return MAX_NODE_SCORE * (s - MIN_THRESHOLD) // (max_threshold - MIN_THRESHOLD)

        def score(nodes: Sequence[NodeInfo]) -> list[int]:
            # The score depends only on the sizes found; few distinct ones exist.
            memo: dict[Any, int] = {}
            if len(images) == 1:
                img = images[0]
                keys: list[Any] = [(ni.images.get(img),) for ni in nodes]
            else:
                keys = [tuple(ni.images.get(i) for i in images) for ni in nodes]
            out = []
            for k in keys:
                v = memo.get(k)
                if v is None:
                    v = memo[k] = from_sizes(k)
                out.append(v)
            return out

        return score
