"""The audit policy: kube-apiserver's ``audit.k8s.io/v1`` Policy file
(--audit-policy-file), read and checked as upstream reads it, and the level
each request is logged at: the first rule that matches wins; no rule
matching means None (not logged).
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from pinnace.api import field as f

from ..authn import User
from ..requestinfo import RequestInfo

log = logging.getLogger("pinnace.apiserver.audit")

NONE, METADATA, REQUEST, REQUEST_RESPONSE = "None", "Metadata", "Request", "RequestResponse"
LEVELS = (NONE, METADATA, REQUEST, REQUEST_RESPONSE)
RANK = {level: i for i, level in enumerate(LEVELS)}
STAGES = ("RequestReceived", "ResponseStarted", "ResponseComplete", "Panic")
API_VERSION = "audit.k8s.io/v1"

_RULE_FIELDS = {"level", "users", "userGroups", "verbs", "resources", "namespaces",
                "nonResourceURLs", "omitStages", "omitManagedFields"}
_POLICY_FIELDS = {"apiVersion", "kind", "metadata", "rules", "omitStages", "omitManagedFields"}
_GROUP_RESOURCE_FIELDS = {"group", "resources", "resourceNames"}
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


class PolicyError(ValueError):
    """A policy file that cannot be used; the message names the problem."""


@dataclass(frozen=True)
class GroupResources:
    group: str = ""
    resources: tuple[str, ...] = ()
    resource_names: tuple[str, ...] = ()


@dataclass(frozen=True)
class Rule:
    level: str
    users: frozenset[str] = frozenset()
    user_groups: frozenset[str] = frozenset()
    verbs: frozenset[str] = frozenset()
    resources: tuple[GroupResources, ...] = ()
    namespaces: frozenset[str] = frozenset()
    non_resource_urls: tuple[str, ...] = ()
    omit_stages: frozenset[str] = frozenset()
    omit_managed_fields: bool | None = None


@dataclass(frozen=True)
class Decision:
    """What the policy says of one request."""

    level: str
    omit_stages: frozenset[str] = frozenset()
    omit_managed_fields: bool = False


NOT_LOGGED = Decision(NONE)


@dataclass
class Policy:
    rules: list[Rule]
    omit_stages: frozenset[str] = frozenset()
    omit_managed_fields: bool = False
    _default: Decision = field(init=False)
    _decisions: list[Decision] = field(init=False)

    def __post_init__(self) -> None:
        # A rule's stages are its own and the policy's (upstream's union).
        self._decisions = [Decision(r.level, r.omit_stages | self.omit_stages,
                                    self.omit_managed_fields if r.omit_managed_fields is None
                                    else r.omit_managed_fields) for r in self.rules]
        self._default = Decision(NONE, self.omit_stages, self.omit_managed_fields)

    def evaluate(self, user: User | None, info: RequestInfo) -> Decision:
        """The first matching rule's decision; None when no rule matches."""
        for rule, decision in zip(self.rules, self._decisions, strict=True):
            if matches(rule, user, info):
                return decision
        return self._default


def matches(rule: Rule, user: User | None, info: RequestInfo) -> bool:
    if rule.users and (user is None or user.name not in rule.users):
        return False
    if rule.user_groups and (user is None or rule.user_groups.isdisjoint(user.groups)):
        return False
    if rule.verbs and info.verb not in rule.verbs:
        return False
    if rule.namespaces or rule.resources:
        return _matches_resource(rule, info)
    if rule.non_resource_urls:
        return not info.resource_request and any(
            _path_matches(info.path, spec) for spec in rule.non_resource_urls)
    return True


def _path_matches(path: str, spec: str) -> bool:
    if spec in ("*", path):
        return True
    return spec.endswith("*") and path.startswith(spec.rstrip("*"))


def _matches_resource(rule: Rule, info: RequestInfo) -> bool:
    if not info.resource_request:
        return False
    # A cluster-scoped resource is in namespace "".
    if rule.namespaces and info.namespace not in rule.namespaces:
        return False
    if not rule.resources:
        return True
    resource, sub = info.resource, info.subresource
    combined = f"{resource}/{sub}" if sub else resource
    for gr in rule.resources:
        if gr.group not in (info.api_group, "*"):
            continue
        if not gr.resources:
            return True
        if gr.resource_names and info.name not in gr.resource_names:
            continue
        for res in gr.resources:
            if res in (combined, "*"):
                return True
            if sub and res.startswith("*/") and res[2:] == sub:
                return True
            if res.endswith("/*") and res[:-2] == resource:
                return True
    return False


# -- reading a policy file ----------------------------------------------------


def load_policy(path: str | Path) -> Policy:
    """The policy in ``path`` (YAML or JSON); PolicyError naming the problem
    (with the file) when it cannot be read or is not a valid Policy."""
    try:
        text = Path(path).read_bytes()
    except OSError as e:
        raise PolicyError(f"failed to read audit policy file {str(path)!r}: "
                          f"{e.strerror or e}") from None
    try:
        return parse_policy(text)
    except PolicyError as e:
        raise PolicyError(f"{e}: from file {path}") from None


def parse_policy(text: bytes | str) -> Policy:
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise PolicyError(f"failed decoding: {_one_line(e)}") from None
    if not isinstance(doc, dict):
        raise PolicyError("failed decoding: the policy must be an object with apiVersion, kind "
                          "and rules")
    api_version, kind = doc.get("apiVersion"), doc.get("kind")
    if not kind:
        raise PolicyError("failed decoding: Object 'Kind' is missing")
    if api_version != API_VERSION or kind != "Policy":
        raise PolicyError(f"unknown group version field {api_version}, Kind={kind} in policy "
                          f"(want apiVersion {API_VERSION}, kind Policy)")
    unknown: list[str] = [f'unknown field "{k}"' for k in doc if k not in _POLICY_FIELDS]
    errs: list[f.FieldError] = []
    rules_doc = doc.get("rules")
    if rules_doc is None:
        rules_doc = []
    if not isinstance(rules_doc, list):
        raise PolicyError(f"failed decoding: rules: expected a list, got {_kind(rules_doc)}")
    omit = _strings(doc, "omitStages", "omitStages")
    errs += _check_stages(omit, "omitStages")
    omit_mf = _bool(doc, "omitManagedFields", "omitManagedFields")
    rules: list[Rule] = []
    for i, r in enumerate(rules_doc):
        where = f"rules[{i}]"
        if not isinstance(r, dict):
            raise PolicyError(f"failed decoding: {where}: expected an object, got {_kind(r)}")
        unknown += [f'unknown field "{where}.{k}"' for k in r if k not in _RULE_FIELDS]
        rule, rule_errs, rule_unknown = _rule(r, where)
        errs += rule_errs
        unknown += rule_unknown
        rules.append(rule)
    if unknown:
        # Upstream decodes strictly, then leniently with a warning.
        log.warning("audit policy contains errors, falling back to lenient decoding: %s",
                    ", ".join(unknown))
    if errs:
        raise PolicyError(f.aggregate(errs))
    if not rules:
        raise PolicyError("loaded illegal policy with 0 rules")
    return Policy(rules, frozenset(omit), bool(omit_mf))


def _rule(r: dict[str, Any], where: str) -> tuple[Rule, list[f.FieldError], list[str]]:
    errs: list[f.FieldError] = []
    unknown: list[str] = []
    level = r.get("level") or ""
    if not isinstance(level, str):
        raise PolicyError(f"failed decoding: {where}.level: expected a string, got "
                          f"{_kind(level)}")
    if level == "":
        errs.append(f.required(f"{where}.level"))
    elif level not in LEVELS:
        errs.append(f.not_supported(f"{where}.level", level, list(LEVELS)))
    urls = _strings(r, "nonResourceURLs", f"{where}.nonResourceURLs")
    for i, url in enumerate(urls):
        if url == "*":
            continue
        if not url.startswith("/"):
            errs.append(f.invalid(f"{where}.nonResourceURLs[{i}]", url,
                                  "non-resource URL rules must begin with a '/' character"))
        if url and "*" in url[:-1]:
            errs.append(f.invalid(f"{where}.nonResourceURLs[{i}]", url,
                                  "non-resource URL wildcards '*' must be the final character "
                                  "of the rule"))
    resources_doc = r.get("resources") or []
    if not isinstance(resources_doc, list):
        raise PolicyError(f"failed decoding: {where}.resources: expected a list, got "
                          f"{_kind(resources_doc)}")
    groups: list[GroupResources] = []
    for j, gr in enumerate(resources_doc):
        gwhere = f"{where}.resources[{j}]"
        if not isinstance(gr, dict):
            raise PolicyError(f"failed decoding: {gwhere}: expected an object, got {_kind(gr)}")
        unknown += [f'unknown field "{gwhere}.{k}"' for k in gr if k not in _GROUP_RESOURCE_FIELDS]
        group = gr.get("group") or ""
        if not isinstance(group, str):
            raise PolicyError(f"failed decoding: {gwhere}.group: expected a string, got "
                              f"{_kind(group)}")
        names = _strings(gr, "resourceNames", f"{gwhere}.resourceNames")
        res = _strings(gr, "resources", f"{gwhere}.resources")
        if group not in ("", "*") and (len(group) > 253 or not _DNS_SUBDOMAIN.match(group)):
            # Upstream names the field without the index.
            errs.append(f.invalid(f"{where}.resources.group", group,
                                  "a lowercase RFC 1123 subdomain must consist of lower case "
                                  "alphanumeric characters, '-' or '.', and must start and end "
                                  "with an alphanumeric character"))
        if names and not res:
            errs.append(f.invalid(f"{where}.resources.resourceNames", names,
                                  "using resourceNames requires at least one resource"))
        groups.append(GroupResources(group, tuple(res), tuple(names)))
    stages = _strings(r, "omitStages", f"{where}.omitStages")
    errs += _check_stages(stages, f"{where}.omitStages")
    namespaces = _strings(r, "namespaces", f"{where}.namespaces")
    if urls and (groups or namespaces):
        errs.append(f.invalid(f"{where}.nonResourceURLs", urls,
                              "rules cannot apply to both regular resources and non-resource "
                              "URLs"))
    omit_mf = _bool(r, "omitManagedFields", f"{where}.omitManagedFields")
    rule = Rule(level, frozenset(_strings(r, "users", f"{where}.users")),
                frozenset(_strings(r, "userGroups", f"{where}.userGroups")),
                frozenset(_strings(r, "verbs", f"{where}.verbs")), tuple(groups),
                frozenset(namespaces), tuple(urls), frozenset(stages), omit_mf)
    return rule, errs, unknown


def _check_stages(stages: list[str], where: str) -> list[f.FieldError]:
    return [f.invalid(f"{where}[{i}]", s, "allowed stages are " + ",".join(STAGES))
            for i, s in enumerate(stages) if s not in STAGES]


def _strings(doc: dict[str, Any], key: str, where: str) -> list[str]:
    value = doc.get(key)
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise PolicyError(f"failed decoding: {where}: expected a list of strings, got "
                          f"{_kind(value)}")
    return value


def _bool(doc: dict[str, Any], key: str, where: str) -> bool | None:
    value = doc.get(key)
    if value is not None and not isinstance(value, bool):
        raise PolicyError(f"failed decoding: {where}: expected true or false, got "
                          f"{_kind(value)}")
    return value


def _kind(value: Any) -> str:
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "a list"
    return repr(value)


def _one_line(e: Exception) -> str:
    return " ".join(str(e).split())
