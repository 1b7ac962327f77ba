"""What a simulated pod does over time: kwok's stages, in pinnace's terms.

A *behaviour* says when a pod's containers start, when they turn ready,
whether readiness flaps, and whether (and with which code) they exit. The
simulated node plays it out as a kubelet would: an exit under
restartPolicy Never (or OnFailure with code 0) ends the pod Succeeded or
Failed; otherwise the containers restart with the kubelet's crash back-off
(10 s doubling to 5 min, shown as CrashLoopBackOff) and restartCount grows.

Where a pod's behaviour comes from, first match wins:
1. its annotations, key by key, over
2. the first stage of the stage file (``pinnace sim --stages F``) whose
   ``match`` selects it, else
3. the default stages: pods owned by a Job exit 0 after one second;
   every other pod runs and is ready at once, for ever.

The file format is in docs/simulated-nodes.md.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

Obj = dict[str, Any]

ANNOTATION_PREFIX = "pinnace.dev/sim-"
# annotation -> Behaviour field
ANNOTATIONS = {
    "pinnace.dev/sim-running-after": "running_after",
    "pinnace.dev/sim-ready-after": "ready_after",
    "pinnace.dev/sim-exit-after": "exit_after",
    "pinnace.dev/sim-exit-code": "exit_code",
    "pinnace.dev/sim-readiness-flap": "readiness_flap",
    # What metrics.k8s.io reports for the pod ("cpu=250m,memory=64Mi").
    "pinnace.dev/sim-usage": "usage",
    # The first annotation pinnace had: exit 0 after a while.
    "pinnace.dev/sim-complete-after": "exit_after",
}
# stage file key -> Behaviour field
STAGE_KEYS = {"runningAfter": "running_after", "readyAfter": "ready_after",
              "exitAfter": "exit_after", "exitCode": "exit_code",
              "readinessFlap": "readiness_flap", "usage": "usage"}
USAGE_ANNOTATION = "pinnace.dev/sim-usage"

# The kubelet's container restart back-off (MaxContainerBackOff 5 min; a
# container that ran twice that long starts over at the initial 10 s).
BACKOFF_INITIAL = 10.0
BACKOFF_CAP = 300.0

_DURATION = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str) -> float | None:
    """Seconds in a Go duration ("5s", "1m30s", "250ms"); None if malformed."""
    text = text.strip()
    if text in ("0", ""):
        return 0.0 if text else None
    pos, total = 0, 0.0
    for m in _DURATION.finditer(text):
        if m.start() != pos:
            return None
        total += float(m.group(1)) * _UNITS[m.group(2)]
        pos = m.end()
    return total if pos == len(text) and pos else None


def parse_usage(raw: Any) -> str:
    """``cpu=250m,memory=64Mi`` (or a mapping of the same) checked, as text."""
    from pinnace.api import quantity

    if isinstance(raw, dict):
        raw = ",".join(f"{k}={v}" for k, v in raw.items())
    text = str(raw)
    for part in text.split(","):
        key, sep, value = part.partition("=")
        if not sep or key.strip() not in ("cpu", "memory"):
            raise ValueError(f"usage is cpu=QUANTITY,memory=QUANTITY, got {text!r}")
        try:
            quantity.parse_quantity(value.strip())
        except quantity.QuantityError as e:
            raise ValueError(f"usage: {e}") from None
    return text


@dataclass(frozen=True, slots=True)
class Behaviour:
    running_after: float = 0.0  # bound -> containers running
    ready_after: float = 0.0  # (re)started -> ready
    exit_after: float | None = None  # (re)started -> exited; None: runs for ever
    exit_code: int = 0
    readiness_flap: float | None = None  # once ready, readiness toggles this often
    usage: str | None = None  # resource usage for metrics.k8s.io: "cpu=250m,memory=64Mi"

    @property
    def plain(self) -> bool:
        """Runs and is ready as soon as it is bound, for ever (the fast path)."""
        return self == PLAIN

    def with_value(self, name: str, raw: Any) -> Behaviour:
        """This behaviour with field ``name`` set from ``raw`` (a duration
        string, a number of seconds, or an exit code); ValueError if ``raw``
        makes no sense for the field."""
        if name == "usage":
            return replace(self, usage=parse_usage(raw))
        if name == "exit_code":
            try:
                code = int(raw)
            except (TypeError, ValueError):
                raise ValueError(f"exit code must be an integer, got {raw!r}") from None
            if not 0 <= code <= 255:
                raise ValueError(f"exit code must be 0..255, got {code}")
            return replace(self, exit_code=code)
        seconds = raw if isinstance(raw, (int, float)) and not isinstance(raw, bool) else \
            parse_duration(str(raw))
        if seconds is None or seconds < 0:
            raise ValueError(f"expected a duration such as 5s, 1m30s or 250ms, got {raw!r}")
        if name == "readiness_flap" and seconds == 0:
            raise ValueError("readinessFlap must be longer than 0s")
        return replace(self, **{name: float(seconds)})  # type: ignore[arg-type]


PLAIN = Behaviour()


@dataclass(frozen=True)
class Match:
    """Which pods a stage is for; every given field must hold."""

    owner_kind: str | None = None  # kind of the pod's controller (Job, ReplicaSet, ...)
    namespace: str | None = None
    labels: tuple[tuple[str, str], ...] = ()

    def selects(self, meta: Obj) -> bool:
        if self.namespace is not None and meta.get("namespace") != self.namespace:
            return False
        if self.owner_kind is not None:
            owners = meta.get("ownerReferences") or []
            if not any(o.get("kind") == self.owner_kind and o.get("controller") for o in owners):
                return False
        if self.labels:
            have = meta.get("labels") or {}
            return all(have.get(k) == v for k, v in self.labels)
        return True


@dataclass(frozen=True)
class Stage:
    name: str
    match: Match
    behaviour: Behaviour


DEFAULT_STAGES = (Stage("job-pods-complete", Match(owner_kind="Job"), Behaviour(exit_after=1.0)),)


@dataclass
class Stages:
    stages: tuple[Stage, ...] = DEFAULT_STAGES
    # (stage index, annotation values) -> Behaviour: one object per distinct
    # behaviour, however many pods share it.
    _cache: dict[tuple[int, tuple[tuple[str, str], ...]], Behaviour] = field(
        default_factory=dict, repr=False)
    _bad: set[tuple[str, str]] = field(default_factory=set, repr=False)

    def for_pod(self, pod: Obj) -> Behaviour:
        meta = pod.get("metadata") or {}
        index = next((i for i, s in enumerate(self.stages) if s.match.selects(meta)), -1)
        ann = meta.get("annotations") or {}
        own = tuple(sorted((k, str(v)) for k, v in ann.items() if k in ANNOTATIONS)) \
            if ann else ()
        key = (index, own)
        hit = self._cache.get(key)
        if hit is not None:
            return hit
        behaviour = self.stages[index].behaviour if index >= 0 else PLAIN
        for name, value in own:
            try:
                behaviour = behaviour.with_value(ANNOTATIONS[name], value)
            except ValueError as e:
                self._bad.add((name, f"{value}: {e}"))
        if len(self._cache) < 10_000:
            self._cache[key] = behaviour
        return behaviour

    def problems(self) -> set[tuple[str, str]]:
        """Annotations that were ignored because their values made no sense."""
        return set(self._bad)


def parse_stages(doc: Any, source: str = "stages") -> Stages:
    """A stage file's content (see docs/simulated-nodes.md) as Stages;
    ValueError naming the field that is wrong."""
    if not isinstance(doc, dict):
        raise ValueError(f"{source}: expected a mapping with a 'stages' list")
    unknown = set(doc) - {"apiVersion", "kind", "stages", "defaultStages"}
    if unknown:
        raise ValueError(f"{source}: unknown field(s) {', '.join(sorted(unknown))}")
    items = doc.get("stages") or []
    if not isinstance(items, list):
        raise ValueError(f"{source}: stages must be a list")
    out: list[Stage] = []
    for i, item in enumerate(items):
        where = f"{source}: stages[{i}]"
        if not isinstance(item, dict):
            raise ValueError(f"{where}: expected a mapping")
        unknown = set(item) - {"name", "match", *STAGE_KEYS}
        if unknown:
            raise ValueError(f"{where}: unknown field(s) {', '.join(sorted(unknown))}")
        m = item.get("match") or {}
        if not isinstance(m, dict) or set(m) - {"ownerKind", "namespace", "labels"}:
            raise ValueError(f"{where}.match: only ownerKind, namespace and labels are known")
        labels = m.get("labels") or {}
        if not isinstance(labels, dict):
            raise ValueError(f"{where}.match.labels: expected a mapping")
        match = Match(owner_kind=m.get("ownerKind"), namespace=m.get("namespace"),
                      labels=tuple(sorted((str(k), str(v)) for k, v in labels.items())))
        behaviour = PLAIN
        for key, name in STAGE_KEYS.items():
            if key in item:
                try:
                    behaviour = behaviour.with_value(name, item[key])
                except ValueError as e:
                    raise ValueError(f"{where}.{key}: {e}") from None
        out.append(Stage(str(item.get("name") or f"stage-{i}"), match, behaviour))
    if doc.get("defaultStages", True):
        out.extend(DEFAULT_STAGES)
    return Stages(tuple(out))


def load_stages(path: Path) -> Stages:
    try:
        doc = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as e:
        raise ValueError(f"{path}: {e}") from None
    return parse_stages(doc, str(path))


def crash_backoff(current: float, ran_for: float) -> tuple[float, float]:
    """(wait before this restart, wait before the next) after a container
    that ran ``ran_for`` seconds exited, ``current`` being the back-off in
    force (0 before the first crash): the first restart is at once, then
    10 s doubling to 5 min; a run of 10 min starts the count over."""
    if ran_for >= 2 * BACKOFF_CAP:
        current = 0.0
    return current, (BACKOFF_INITIAL if current <= 0 else min(current * 2, BACKOFF_CAP))


__all__ = ["ANNOTATIONS", "Behaviour", "DEFAULT_STAGES", "Match", "PLAIN", "Stage", "Stages",
           "crash_backoff", "load_stages", "parse_duration", "parse_stages"]
