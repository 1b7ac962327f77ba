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
    async def validate(self, a: Attributes) -> None:
        """Raise an APIError to refuse the write."""


class Chain:
    """Mutating plugins (those with a ``mutate`` method, which may replace
    ``a.obj``) run before the object is validated, validating ones after."""

    def __init__(self, plugins: list[Plugin] | None = None):
        self.plugins = list(plugins or [])

    def _for(self, a: Attributes) -> list[Plugin]:
        if a.user is not None:
            return self.plugins
        return [p for p in self.plugins if getattr(p, "server_writes", False)]

    async def mutate(self, a: Attributes) -> None:
        for plugin in self._for(a):
            mutate = getattr(plugin, "mutate", None)
            if mutate is not None:
                await mutate(a)

    async def validate(self, a: Attributes) -> None:
        for plugin in self._for(a):
            await plugin.validate(a)
