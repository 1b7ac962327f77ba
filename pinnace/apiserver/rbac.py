"""RBAC: Roles, ClusterRoles and their bindings decide what a user may do.

The four kinds are held in memory, fed by one store watch on their common
prefix, and indexed by subject, so that a decision looks only at the
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

import orjson

from pinnace.storage.interface import CompactedError, Store

from .authn import User
from .requestinfo import RequestInfo

log = logging.getLogger("pinnace.apiserver.rbac")

PREFIX = "/registry/rbac.authorization.k8s.io/"
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

def _subject_keys(subject: dict[str, Any], binding_ns: str) -> str | None:
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
    __slots__ = ("kind", "name", "namespace", "role_kind", "role_name")

    def __init__(self, obj: dict[str, Any]):
        meta = obj["metadata"]
        self.kind = obj.get("kind") or ("RoleBinding" if meta.get("namespace")
                                        else "ClusterRoleBinding")
        self.name = meta["name"]
        self.namespace = meta.get("namespace", "")
        ref = obj.get("roleRef") or {}
        self.role_kind, self.role_name = ref.get("kind", ""), ref.get("name", "")

    def describe(self, subject_key: str) -> str:
        kind = "User" if subject_key.startswith("u:") else "Group"
        where = f' in namespace "{self.namespace}"' if self.namespace else ""
        return (f'RBAC: allowed by {self.kind} "{self.name}"{where} of {self.role_kind} '
                f'"{self.role_name}" to {kind} "{subject_key[2:]}"')


class RBAC:
    """The RBAC objects in memory and the decisions they give."""

    CACHE_SIZE = 50_000

    def __init__(self, store: Store):
        self.store = store
        self.cluster_roles: dict[str, list[Rule]] = {}
        self.roles: dict[tuple[str, str], list[Rule]] = {}
        self._bindings: dict[str, tuple[Binding, list[str]]] = {}  # store key -> binding, subjects
        self._by_subject: dict[str, dict[str, Binding]] = {}  # subject key -> store key -> binding
        self._decisions: dict[tuple[Any, ...], tuple[bool, str]] = {}
        self.revision = 0  # the newest RBAC change applied
        self.expected = 0  # the newest RBAC change this server wrote
        self._synced = asyncio.Event()
        self._changed = asyncio.Condition()
        self._task: asyncio.Task[None] | None = None

    # -- feeding ----------------------------------------------------------

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._follow())
        await self._synced.wait()

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def _follow(self) -> None:
        delay = 0.5
        while True:
            try:
                listed = await self.store.list(PREFIX)
                self._reset()
                for kv in listed.kvs:
                    self._put(kv.key, orjson.loads(kv.value))
                await self._advance(listed.revision)
                self._synced.set()
                watch = self.store.watch(PREFIX, listed.revision)
                try:
                    async for ev in watch:
                        if ev.type == "DELETED":
                            self._remove(ev.kv.key)
                        else:
                            self._put(ev.kv.key, orjson.loads(ev.kv.value))
                        await self._advance(ev.kv.mod_revision)
                        delay = 0.5
                finally:
                    await watch.close()
            except asyncio.CancelledError:
                raise
            except CompactedError:
                delay = 0.0
            except Exception as e:  # noqa: BLE001 - start over from a fresh list
                log.warning("RBAC watch failed (%s); listing again", e)
            await asyncio.sleep(delay)
            delay = min(max(delay * 2, 0.5), 30.0)

    async def _advance(self, revision: int) -> None:
        async with self._changed:
            self.revision = max(self.revision, revision)
            self._changed.notify_all()

    def expect(self, revision: int) -> None:
        """This server wrote an RBAC change at ``revision``."""
        self.expected = max(self.expected, revision)

    async def caught_up(self, timeout: float = 2.0) -> bool:
        """Wait until every RBAC change this server wrote is applied: a
        denial rechecks after this, so a binding created a moment ago
        through this server counts. (The watch only sees RBAC keys, so the
        store's own revision, moved by every other write, is no guide.)"""
        revision = self.expected
        if self.revision >= revision:
            return True
        try:
            async with asyncio.timeout(timeout):
                async with self._changed:
                    await self._changed.wait_for(lambda: self.revision >= revision)
            return True
        except TimeoutError:
            return False

    def add(self, obj: dict[str, Any]) -> None:
        """Take ``obj`` (a Role, ClusterRole or binding) as if the store held it."""
        meta = obj["metadata"]
        where = f"{meta['namespace']}/" if meta.get("namespace") else ""
        self._put(f"{PREFIX}{obj['kind'].lower()}s/{where}{meta['name']}", obj)

    def _reset(self) -> None:
        self.cluster_roles.clear()
        self.roles.clear()
        self._bindings.clear()
        self._by_subject.clear()
        self._decisions.clear()

    def _put(self, key: str, obj: dict[str, Any]) -> None:
        self._remove(key)
        resource = key[len(PREFIX):].split("/", 1)[0]
        meta = obj.get("metadata") or {}
        if resource == "clusterroles":
            self.cluster_roles[meta["name"]] = obj.get("rules") or []
        elif resource == "roles":
            self.roles[(meta.get("namespace", ""), meta["name"])] = obj.get("rules") or []
        elif resource in ("rolebindings", "clusterrolebindings"):
            binding = Binding(obj)
            subjects = [k for s in obj.get("subjects") or ()
                        if (k := _subject_keys(s, binding.namespace)) is not None]
            self._bindings[key] = (binding, subjects)
            for s in subjects:
                self._by_subject.setdefault(s, {})[key] = binding

    def _remove(self, key: str) -> None:
        self._decisions.clear()
        resource, _, rest = key[len(PREFIX):].partition("/")
        if resource == "clusterroles":
            self.cluster_roles.pop(rest, None)
        elif resource == "roles":
            ns, _, name = rest.partition("/")
            self.roles.pop((ns, name), None)
        else:
            found = self._bindings.pop(key, None)
            if found is not None:
                for s in found[1]:
                    by_key = self._by_subject.get(s)
                    if by_key is not None:
                        by_key.pop(key, None)
                        if not by_key:
                            del self._by_subject[s]

    # -- deciding ---------------------------------------------------------

    def _role_rules(self, binding: Binding) -> list[Rule]:
        if binding.role_kind == "ClusterRole":
            return self.cluster_roles.get(binding.role_name, [])
        return self.roles.get((binding.namespace, binding.role_name), [])

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
