"""Admission: what a write must pass after authorization and before storage.

Each plugin is its own module and sees a write as upstream's admission
Attributes describe it: the operation, the resource and subresource, the new
and old objects and the user. The registry runs the chain on every create,
update (patches and applies included) and delete, and the handlers run it for
the subresources they serve themselves (pods/eviction, serviceaccounts/token).

Plugins that only judge users' writes skip the server's own (the default
objects it makes at start); those that fill in defaults every object of
their kind gets (``server_writes = True``: ServiceAccount, Priority, ...)
run for them too. What the strategies still do before storage (the service
IP and port allocators, NamespaceLifecycle) is storage's business upstream
as well, or an early check every create needs.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from pinnace.api.resources import ResourceInfo

from .. import status
from ..authn import User

Obj = dict[str, Any]

CREATE, UPDATE, DELETE = "CREATE", "UPDATE", "DELETE"


@dataclass(slots=True)
class Attributes:
    operation: str  # CREATE, UPDATE or DELETE
    info: ResourceInfo
    namespace: str
    name: str
    obj: Obj | None  # the object written (for DELETE: None)
    old: Obj | None  # the object as stored (for CREATE: None)
    user: User | None  # None for the API server's own writes
    subresource: str = ""
    dry_run: bool = False
    warnings: list[str] = field(default_factory=list)  # told to the client
    annotations: dict[str, str] = field(default_factory=dict)  # on the audit event

    def forbidden(self, why: str) -> status.APIError:
        """Upstream's admission.NewForbidden: the object named as the request
        names it (on create, by its name or generateName: no name is made yet)."""
        name = self.name
        if not name and self.obj is not None:
            meta = self.obj.get("metadata") or {}
            name, gen = meta.get("name") or "", meta.get("generateName") or ""
            if gen and name.startswith(gen) and len(name) == len(gen) + 5:
                name = gen  # pinnace has generated it already; upstream has not yet
            name = name or "Unknown"
        info = self.info
        qualified = f"{info.resource}.{info.group}" if info.group else info.resource
        return status.forbidden(f'{qualified} "{name}" is forbidden: {why}', info.resource,
                                info.group, name)


class Plugin(Protocol):
    """A plugin has ``async mutate(a)`` (may change ``a.obj``), ``async
    validate(a)`` (raises an APIError to refuse), or both; ``resources``, the
    (group, resource) pairs it looks at (None: all); ``server_writes``, True
    when it also acts on the server's own writes."""


Step = Callable[[Attributes], Awaitable[None]]


class Chain:
    """Mutating steps run before the object is validated, validating ones
    after; each write runs only the plugins for its resource (worked out
    once per resource: most plugins are about one kind)."""

    def __init__(self, plugins: list[Any] | None = None):
        self.plugins = list(plugins or [])
        self._steps: dict[tuple[str, str, bool, str], list[Step]] = {}

    def _for(self, a: Attributes, phase: str) -> list[Step]:
        key = (a.info.group, a.info.resource, a.user is not None, phase)
        steps = self._steps.get(key)
        if steps is None:
            steps = [getattr(p, phase) for p in self.plugins
                     if hasattr(p, phase)
                     and (a.user is not None or getattr(p, "server_writes", False))
                     and (getattr(p, "resources", None) is None
                          or (a.info.group, a.info.resource) in p.resources)]
            self._steps[key] = steps
        return steps

    async def mutate(self, a: Attributes) -> None:
        for step in self._for(a, "mutate"):
            await step(a)

    async def validate(self, a: Attributes) -> None:
        for step in self._for(a, "validate"):
            await step(a)
