"""NamespaceLifecycle: nothing new goes into a namespace that does not exist
or is being deleted, and default, kube-system and kube-public are never
deleted, as upstream's plugin/pkg/admission/namespace/lifecycle."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from .. import status
from . import CREATE, DELETE, Attributes

IMMORTAL = frozenset({"default", "kube-system", "kube-public"})


class NamespaceLifecycle:
    server_writes = True

    def __init__(self, active: Callable[[str], Awaitable[bool | None]]):
        self.active = active  # namespace -> takes new content (None: there is none)

    async def mutate(self, a: Attributes) -> None:
        # In the mutating phase, first: the other plugins need not look further.
        if a.operation != CREATE or not a.info.namespaced or not a.namespace:
            return
        active = await self.active(a.namespace)
        if active is None:
            raise status.not_found("namespaces", "", a.namespace)
        if not active:
            name = ((a.obj or {}).get("metadata") or {}).get("name") or ""
            raise status.namespace_terminating(a.info.resource, a.info.group, name, a.namespace)

    async def validate(self, a: Attributes) -> None:
        if a.operation == DELETE and (a.info.group, a.info.resource) == ("", "namespaces") \
                and a.name in IMMORTAL:
            raise a.forbidden("this namespace may not be deleted")
