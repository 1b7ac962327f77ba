"""What both proxy modes keep of their rules: the rules applied, service by
service, so a change writes only what differs from them, and whether the
kernel is known to hold exactly those (after a failed write it is not, and
the next change rewrites everything, which is also how a start reconciles
what a previous run left)."""

from __future__ import annotations

from typing import Generic, Protocol, TypeVar


class ServiceRules(Protocol):
    def empty(self) -> bool: ...


R = TypeVar("R", bound=ServiceRules)


class ServiceTable(Generic[R]):
    """Subclasses write: ``_write_all`` everything, ``_write_changes`` the
    difference (returning how many commands it took, 0 for none)."""

    def __init__(self, cluster_cidr: str):
        self.cluster_cidr = cluster_cidr
        self.applied: dict[str, R] = {}
        self.synced = False

    def _write_all(self, desired: dict[str, R]) -> None:
        raise NotImplementedError

    def _write_changes(self, changed: dict[str, R | None]) -> int:
        raise NotImplementedError

    def replace_all(self, desired: dict[str, R]) -> None:
        """Every service's rules written at once, replacing whatever is there."""
        self._write_all(desired)
        self.applied = dict(desired)
        self.synced = True

    def update(self, changed: dict[str, R | None]) -> int:
        """Apply the services in ``changed`` (None: the service is gone).
        Returns how many commands it took (0: nothing differed; -1: the
        whole table was rewritten)."""
        if not self.synced:
            desired = dict(self.applied)
            for key, rules in changed.items():
                if rules is None:
                    desired.pop(key, None)
                else:
                    desired[key] = rules
            self.replace_all(desired)
            return -1
        try:
            n = self._write_changes(changed)
        except Exception:
            self.synced = False  # the next update rewrites everything
            raise
        for key, rules in changed.items():
            if rules is None or rules.empty():
                self.applied.pop(key, None)
            else:
                self.applied[key] = rules
        return n
