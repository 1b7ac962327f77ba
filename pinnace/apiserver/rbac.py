"""RBAC: Roles, ClusterRoles and their bindings decide what a user may do.

The four kinds are held in memory, fed by the API server's watch cache, and
indexed by subject, so that a decision looks only at the
bindings naming the user, one of its groups, or its service account. A
request is allowed when any rule of any role bound to it allows it, as
upstream's RBAC authorizer decides; a RoleBinding applies only in its own
namespace. Decisions are remembered until any RBAC object changes, which keeps
the create path as fast as it was without authorization.

The rule semantics (``*``, ``*/subresource``, resourceNames, nonResourceURLs
ending in ``*``) and the coverage check that stops a user from granting what
it does not hold follow upstream's rbac/validation package.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from typing import Any

from .authn import User
from .requestinfo import RequestInfo

log = logging.getLogger("pinnace.apiserver.rbac")

SA_PREFIX = "system:serviceaccount:"

Rule = dict[str, Any]


# -- rules ---------------------------------------------------------------------

def _has(values: Iterable[str], wanted: str) -> bool:
    return any(v == "*" or v == wanted for v in values)


def _resource_matches(rule: Rule, resource: str, subresource: str) -> bool:
    combined = f"{resource}/{subresource}" if subresource else resource
    for r in rule.get("resources") or ():
        if r == "*" or r == combined:
            return True
        if subresource and r == f"*/{subresource}":
            return True
    return False


def _url_matches(urls: Iterable[str], path: str) -> bool:
    for url in urls:
        if url == "*" or url == path or (url.endswith("*") and path.startswith(url[:-1])):
            return True
    return False


def rule_allows(rule: Rule, info: RequestInfo) -> bool:
    if not _has(rule.get("verbs") or (), info.verb):
        return False
    if not info.resource_request:
        return _url_matches(rule.get("nonResourceURLs") or (), info.path)
    if not _has(rule.get("apiGroups") or (), info.api_group):
        return False
    if not _resource_matches(rule, info.resource, info.subresource):
        return False
    names = rule.get("resourceNames") or ()
    return not names or info.name in names


def _atoms(rule: Rule) -> Iterable[Rule]:
    """A rule broken into rules of one verb, group, resource and name each."""
    verbs = rule.get("verbs") or ()
    if rule.get("nonResourceURLs"):
        for v in verbs:
            for u in rule["nonResourceURLs"]:
                yield {"verbs": [v], "nonResourceURLs": [u]}
        return
    names = rule.get("resourceNames") or [None]
    for v in verbs:
        for g in rule.get("apiGroups") or ():
            for r in rule.get("resources") or ():
                for n in names:
                    atom: Rule = {"verbs": [v], "apiGroups": [g], "resources": [r]}
                    if n is not None:
                        atom["resourceNames"] = [n]
                    yield atom


def _atom_covered(owner: Rule, atom: Rule) -> bool:
    if not _has(owner.get("verbs") or (), atom["verbs"][0]):
        return False
    if "nonResourceURLs" in atom:
        return _url_matches(owner.get("nonResourceURLs") or (), atom["nonResourceURLs"][0])
    if owner.get("nonResourceURLs") and not owner.get("resources"):
        return False
    if not _has(owner.get("apiGroups") or (), atom["apiGroups"][0]):
        return False
    wanted = atom["resources"][0]
    owned = owner.get("resources") or ()
    if not (_has(owned, wanted) or (
            "/" in wanted and f"*/{wanted.split('/', 1)[1]}" in owned)):
        return False
    names = owner.get("resourceNames") or ()
    return not names or ("resourceNames" in atom and atom["resourceNames"][0] in names)


def uncovered(owner_rules: list[Rule], wanted: list[Rule]) -> list[Rule]:
    """The parts of ``wanted`` that no rule in ``owner_rules`` grants."""
    return [atom for rule in wanted for atom in _atoms(rule)
            if not any(_atom_covered(o, atom) for o in owner_rules)]


# -- the authorizer -------------------------------------------------------------

KINDS = ("ClusterRole", "Role", "ClusterRoleBinding", "RoleBinding")
ObjectKey = tuple[str, str, str]  # kind, namespace, name


def _subject_key(subject: dict[str, Any], binding_ns: str) -> str | None:
    kind, name = subject.get("kind"), subject.get("name", "")
    if kind == "User":
        return "u:" + name
    if kind == "Group":
        return "g:" + name
    if kind == "ServiceAccount":
        return f"u:{SA_PREFIX}{subject.get('namespace') or binding_ns}:{name}"
    return None


def _user_keys(user: User) -> list[str]:
    return ["u:" + user.name, *("g:" + g for g in user.groups)]


class Binding:
    __slots__ = ("kind", "name", "namespace", "role_kind", "role_name", "subjects")

    def __init__(self, obj: dict[str, Any]):
        meta = obj["metadata"]
        self.kind = obj["kind"]
        self.name = meta["name"]
        self.namespace = meta.get("namespace", "")
        ref = obj.get("roleRef") or {}
        self.role_kind, self.role_name = ref.get("kind", ""), ref.get("name", "")
        self.subjects = [k for s in obj.get("subjects") or ()
                         if (k := _subject_key(s, self.namespace)) is not None]

    def describe(self, subject_key: str) -> str:
        kind = "User" if subject_key.startswith("u:") else "Group"
        where = f' in namespace "{self.namespace}"' if self.namespace else ""
        return (f'RBAC: allowed by {self.kind} "{self.name}"{where} of {self.role_kind} '
                f'"{self.role_name}" to {kind} "{subject_key[2:]}"')


class RBAC:
    """The RBAC objects in memory and the decisions they give. The API
    server feeds ``event`` from its watch cache, one stream per kind."""

    CACHE_SIZE = 50_000

    def __init__(self) -> None:
        self.cluster_roles: dict[str, list[Rule]] = {}
        self.roles: dict[tuple[str, str], list[Rule]] = {}
        self._bindings: dict[ObjectKey, Binding] = {}
        self._by_subject: dict[str, dict[ObjectKey, Binding]] = {}  # subject key -> bindings
        self._decisions: dict[tuple[Any, ...], tuple[bool, str]] = {}
        # Per kind, as each kind arrives on its own stream: the newest change
        # applied, and the newest one this server wrote.
        self.applied = dict.fromkeys(KINDS, 0)
        self.expected = dict.fromkeys(KINDS, 0)
        self._progress = asyncio.Event()

    # -- feeding ----------------------------------------------------------

    def event(self, type_: str, obj: dict[str, Any]) -> None:
        kind, meta = obj["kind"], obj["metadata"]
        key = (kind, meta.get("namespace", ""), meta["name"])
        self._remove(key)
        if type_ != "DELETED":
            self._put(key, obj)
        self.applied[kind] = max(self.applied[kind], int(meta.get("resourceVersion") or 0))
        self._progress.set()
        self._progress = asyncio.Event()

    def expect(self, kind: str, revision: int) -> None:
        """This server wrote a ``kind`` at ``revision``."""
        self.expected[kind] = max(self.expected[kind], revision)

    @property
    def behind(self) -> bool:
        """Some RBAC write this server made has not reached ``event`` yet."""
        return any(self.applied[k] < self.expected[k] for k in KINDS)

    async def caught_up(self, timeout: float = 2.0) -> bool:
        """Wait until every RBAC write this server made is applied: a denial
        rechecks after this, so a binding created a moment ago through this
        server counts. (The store's revision is no guide: every other write
        moves it.)"""
        try:
            async with asyncio.timeout(timeout):
                while self.behind:
                    await self._progress.wait()
            return True
        except TimeoutError:
            return False

    def _put(self, key: ObjectKey, obj: dict[str, Any]) -> None:
        kind, ns, name = key
        if kind == "ClusterRole":
            self.cluster_roles[name] = obj.get("rules") or []
        elif kind == "Role":
            self.roles[(ns, name)] = obj.get("rules") or []
        else:
            binding = Binding(obj)
            self._bindings[key] = binding
            for s in binding.subjects:
                self._by_subject.setdefault(s, {})[key] = binding

    def _remove(self, key: ObjectKey) -> None:
        self._decisions.clear()
        kind, ns, name = key
        if kind == "ClusterRole":
            self.cluster_roles.pop(name, None)
        elif kind == "Role":
            self.roles.pop((ns, name), None)
        else:
            binding = self._bindings.pop(key, None)
            for s in binding.subjects if binding is not None else ():
                by_key = self._by_subject.get(s)
                if by_key is not None:
                    by_key.pop(key, None)
                    if not by_key:
                        del self._by_subject[s]

    # -- deciding ---------------------------------------------------------

    def role_rules(self, kind: str, namespace: str, name: str) -> list[Rule] | None:
        """The rules of ClusterRole ``name`` or of Role ``namespace/name``; None if missing."""
        if kind == "ClusterRole":
            return self.cluster_roles.get(name)
        return self.roles.get((namespace, name))

    def _role_rules(self, binding: Binding) -> list[Rule]:
        return self.role_rules(binding.role_kind, binding.namespace, binding.role_name) or []

    def _applicable(self, user: User, namespace: str) -> Iterable[tuple[str, Binding]]:
        for subject in _user_keys(user):
            for binding in (self._by_subject.get(subject) or {}).values():
                if not binding.namespace or binding.namespace == namespace:
                    yield subject, binding

    def authorize(self, user: User, info: RequestInfo) -> tuple[bool, str]:
        key = (user.name, user.groups, info.verb, info.api_group, info.namespace, info.resource,
               info.subresource, info.name, None if info.resource_request else info.path)
        found = self._decisions.get(key)
        if found is not None:
            return found
        decision = (False, "")
        for subject, binding in self._applicable(user, info.namespace):
            if any(rule_allows(r, info) for r in self._role_rules(binding)):
                decision = (True, binding.describe(subject))
                break
        if len(self._decisions) >= self.CACHE_SIZE:
            self._decisions.clear()
        self._decisions[key] = decision
        return decision

    def rules_for(self, user: User, namespace: str) -> list[Rule]:
        """Every rule that applies to ``user`` in ``namespace`` ("" for the
        cluster-wide ones only): what SelfSubjectRulesReview lists and what
        escalation checks compare against."""
        out: list[Rule] = []
        seen: set[tuple[str, str, str]] = set()
        for _, binding in self._applicable(user, namespace):
            ref = (binding.role_kind, binding.namespace if binding.role_kind == "Role" else "",
                   binding.role_name)
            if ref not in seen:
                seen.add(ref)
                out.extend(self._role_rules(binding))
        return out
