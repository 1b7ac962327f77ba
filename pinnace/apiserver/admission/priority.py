"""Priority admission: a new pod's spec.priority and preemptionPolicy come
from the PriorityClass it names (or the globalDefault one), and only one
class may be the globalDefault, as upstream's plugin/pkg/admission/priority.
"""

from __future__ import annotations

from typing import Any

from . import CREATE, UPDATE, Attributes

Obj = dict[str, Any]


class PriorityClasses:
    """The PriorityClasses pods are admitted against, by name (upstream's
    Priority plugin reads an informer): kept current by a watch of the store
    (writes through other servers) and at once by this server's own writes.
    Each entry remembers the revision it is known at, so a late watch event
    never undoes a newer write; a deleted class stays as a tombstone."""

    def __init__(self) -> None:
        self._by_name: dict[str, tuple[int, Obj | None]] = {}

    def event(self, type_: str, pc: Obj) -> None:
        self.record(pc, int(pc["metadata"].get("resourceVersion") or 0), type_ == "DELETED")

    def record(self, pc: Obj, revision: int, deleted: bool = False) -> None:
        name = pc["metadata"]["name"]
        known = self._by_name.get(name)
        if known is not None and known[0] > revision:
            return
        self._by_name[name] = (revision, None if deleted else pc)

    def get(self, name: str) -> Obj | None:
        return self._by_name.get(name, (0, None))[1]

    def global_default(self) -> Obj | None:
        """The globalDefault class; should a race have made two, the lowest
        value wins, as upstream picks."""
        best: Obj | None = None
        for _, pc in self._by_name.values():
            if pc is not None and pc.get("globalDefault") and (
                    best is None or int(pc.get("value") or 0) < int(best.get("value") or 0)):
                best = pc
        return best


class Priority:
    server_writes = True  # defaults every pod gets, whoever creates it
    resources = frozenset({("", "pods"), ("scheduling.k8s.io", "priorityclasses")})

    def __init__(self, classes: PriorityClasses):
        self.classes = classes

    async def mutate(self, a: Attributes) -> None:
        if a.operation != CREATE or a.subresource or a.obj is None or \
                (a.info.group, a.info.resource) != ("", "pods"):
            return
        spec = a.obj.setdefault("spec", {})
        name = spec.get("priorityClassName") or ""
        if not name:
            pc = self.classes.global_default()
            if pc is not None:
                spec["priorityClassName"] = pc["metadata"]["name"]
        else:
            pc = self.classes.get(name)
            if pc is None:
                raise a.forbidden(f"no PriorityClass with name {name} was found")
        value = int(pc.get("value") or 0) if pc is not None else 0
        policy = pc.get("preemptionPolicy") if pc is not None else "PreemptLowerPriority"
        given = spec.get("priority")
        if given is not None and given != value:
            raise a.forbidden(f"the integer value of priority ({given}) must not be provided in "
                              f"pod spec; priority admission controller computed {value} from "
                              "the given PriorityClass name")
        spec["priority"] = value
        if policy is not None:
            given = spec.get("preemptionPolicy")
            if given is not None and given != policy:
                raise a.forbidden(f"the string value of PreemptionPolicy ({given}) must not be "
                                  "provided in pod spec; priority admission controller computed "
                                  f"{policy} from the given PriorityClass name")
            spec["preemptionPolicy"] = policy

    async def validate(self, a: Attributes) -> None:
        if a.operation not in (CREATE, UPDATE) or a.subresource or a.obj is None or \
                (a.info.group, a.info.resource) != ("scheduling.k8s.io", "priorityclasses"):
            return
        if not a.obj.get("globalDefault"):
            return
        current = self.classes.global_default()
        name = a.obj["metadata"]["name"]
        if current is not None and (a.operation == CREATE or
                                    current["metadata"]["name"] != name):
            raise a.forbidden(f"PriorityClass {current['metadata']['name']} is already marked "
                              "as default. Only one default can exist")
