"""The API server's table of served resources: the built-in ones plus those
that CustomResourceDefinitions add while it runs."""

from __future__ import annotations

from pinnace.api.resources import BUILTIN, GROUP_ORDER, ResourceInfo


class ResourceTable:
    def __init__(self, builtin: list[ResourceInfo] = BUILTIN):
        self._by_gvr: dict[tuple[str, str, str], ResourceInfo] = {}
        self._crd_infos: dict[str, list[ResourceInfo]] = {}  # CRD name -> infos
        self.generation = 0  # bumped on every change, for discovery/OpenAPI caches
        for info in builtin:
            self._by_gvr[(info.group, info.version, info.resource)] = info

    def lookup(self, group: str, version: str, resource: str) -> ResourceInfo | None:
        return self._by_gvr.get((group, version, resource))

    def by_kind(self, group: str, version: str, kind: str) -> ResourceInfo | None:
        for info in self._by_gvr.values():
            if info.group == group and info.version == version and info.kind == kind:
                return info
        return None

    def all(self) -> list[ResourceInfo]:
        return list(self._by_gvr.values())

    def set_crd(self, name: str, infos: list[ResourceInfo]) -> None:
        self.remove_crd(name)
        self._crd_infos[name] = infos
        for info in infos:
            self._by_gvr[(info.group, info.version, info.resource)] = info
        self.generation += 1

    def remove_crd(self, name: str) -> None:
        for info in self._crd_infos.pop(name, []):
            self._by_gvr.pop((info.group, info.version, info.resource), None)
        self.generation += 1

    def groups(self) -> list[tuple[str, list[str]]]:
        """(group, versions with the preferred first), in discovery order."""
        versions: dict[str, list[str]] = {}
        for info in self._by_gvr.values():
            vs = versions.setdefault(info.group, [])
            if info.version not in vs:
                vs.append(info.version)
        order = {g: i for i, g in enumerate(GROUP_ORDER)}
        out = []
        for group in sorted(versions, key=lambda g: (order.get(g, len(order)), g)):
            out.append((group, sorted(versions[group], key=_version_priority)))
        return out

    def resources_in(self, group: str, version: str) -> list[ResourceInfo]:
        return sorted((i for i in self._by_gvr.values()
                       if i.group == group and i.version == version), key=lambda i: i.resource)


def _version_priority(v: str) -> tuple[int, int, int]:
    """Kubernetes' version ordering: GA > beta > alpha, higher numbers first."""
    import re

    m = re.fullmatch(r"v(\d+)(?:(alpha|beta)(\d+))?", v)
    if not m:
        return (3, 0, 0)
    major = int(m.group(1))
    stage = {"": 0, "beta": 1, "alpha": 2}[m.group(2) or ""]
    minor = int(m.group(3) or 0)
    return (stage, -major, -minor)
