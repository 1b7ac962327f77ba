"""admissionregistration.k8s.io/v1: webhook configurations
(upstream's ValidateMutatingWebhookConfiguration and
ValidateValidatingWebhookConfiguration)."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from . import meta as m
from . import names
from ._common import (
    Errs,
    Obj,
    as_dict,
    as_list,
    duplicate,
    invalid,
    is_int,
    not_supported,
    required,
    too_many,
)

_OPERATIONS = ["*", "CONNECT", "CREATE", "DELETE", "UPDATE"]
_NO_SIDE_EFFECTS = ["None", "NoneOnDryRun"]
_REVIEW_VERSIONS = ["v1", "v1beta1"]


def _star_alone(values: list[Any], path: str, what: str) -> Errs:
    if "*" in values and len(values) > 1:
        return [invalid(path, values, f"if '*' is present, must not specify other {what}")]
    return []


def _rule(rule: Obj, path: str) -> Errs:
    errs: Errs = []
    ops = as_list(rule.get("operations"))
    if not ops:
        errs.append(required(f"{path}.operations"))
    for i, op in enumerate(ops):
        if op not in _OPERATIONS:
            errs.append(not_supported(f"{path}.operations[{i}]", op, _OPERATIONS))
    errs += _star_alone(ops, f"{path}.operations", "operations")
    for key, what in (("apiGroups", "API groups"), ("apiVersions", "API versions")):
        values = as_list(rule.get(key))
        if not values:
            errs.append(required(f"{path}.{key}"))
        errs += _star_alone(values, f"{path}.{key}", what)
        for i, v in enumerate(values):
            if key == "apiVersions" and v == "":
                errs.append(required(f"{path}.{key}[{i}]"))
    resources = as_list(rule.get("resources"))
    if not resources:
        errs.append(required(f"{path}.resources"))
    for i, r in enumerate(resources):
        if not isinstance(r, str) or not r:
            errs.append(required(f"{path}.resources[{i}]"))
        elif r.count("/") > 1 or r.startswith("/") or r.endswith("/"):
            errs.append(invalid(f"{path}.resources[{i}]", r,
                                "must be of the form resource or resource/subresource"))
    if "*" in resources and len(resources) > 1:
        errs.append(invalid(f"{path}.resources", resources,
                            "if '*' is present, must not specify other resources without "
                            "subresources"))
    scope = rule.get("scope")
    if scope is not None and scope not in ("*", "Cluster", "Namespaced"):
        errs.append(not_supported(f"{path}.scope", scope, ["*", "Cluster", "Namespaced"]))
    return errs


def _client_config(cc: Obj, path: str) -> Errs:
    url, service = cc.get("url"), cc.get("service")
    if (url is None) == (service is None):
        return [required(path, "exactly one of url or service is required")]
    errs: Errs = []
    if url is not None:
        parts = urlsplit(str(url))
        upath = f"{path}.url"
        if parts.scheme != "https":
            errs.append(invalid(upath, url, "'https' is the only allowed URL scheme"))
        if not parts.hostname:
            errs.append(invalid(upath, url, "host must be specified"))
        if parts.username or parts.password:
            errs.append(invalid(upath, url, "user information is not permitted in the URL"))
        if parts.fragment:
            errs.append(invalid(upath, url, "fragments are not permitted in the URL"))
        if parts.query:
            errs.append(invalid(upath, url, "query parameters are not permitted in the URL"))
        return errs
    svc, spath = as_dict(service), f"{path}.service"
    for key in ("name", "namespace"):
        if not svc.get(key):
            errs.append(required(f"{spath}.{key}", f"service {key} is required"))
    p = svc.get("path")
    if p is not None and not str(p).startswith("/"):
        errs.append(invalid(f"{spath}.path", p, "must start with a '/'"))
    port = svc.get("port")
    if port is not None and not (is_int(port) and 1 <= port <= 65535):
        errs.append(invalid(f"{spath}.port", port,
                            "port is not valid: must be between 1 and 65535, inclusive"))
    return errs


def _webhook(hook: Obj, path: str, mutating: bool) -> Errs:
    errs: Errs = []
    name = hook.get("name") or ""
    if not name:
        errs.append(required(f"{path}.name"))
    else:
        msgs = names.is_dns1123_subdomain(name)
        if not msgs and name.count(".") < 2:
            msgs = ["should be a domain with at least three segments separated by dots"]
        errs += names.messages_to_errors(msgs, f"{path}.name", name)
    for i, rule in enumerate(as_list(hook.get("rules"))):
        errs += _rule(as_dict(rule), f"{path}.rules[{i}]")
    for key, allowed in (("failurePolicy", ["Fail", "Ignore"]),
                         ("matchPolicy", ["Equivalent", "Exact"])):
        if hook.get(key) is not None and hook[key] not in allowed:
            errs.append(not_supported(f"{path}.{key}", hook[key], allowed))
    side = hook.get("sideEffects")
    if side is None:
        errs.append(required(f"{path}.sideEffects",
                             f"must specify one of {', '.join(_NO_SIDE_EFFECTS)}"))
    elif side not in _NO_SIDE_EFFECTS:
        errs.append(not_supported(f"{path}.sideEffects", side, _NO_SIDE_EFFECTS))
    timeout = hook.get("timeoutSeconds")
    if timeout is not None and not (is_int(timeout) and 1 <= timeout <= 30):
        errs.append(invalid(f"{path}.timeoutSeconds", timeout,
                            "the timeout value must be between 1 and 30 seconds"))
    versions = as_list(hook.get("admissionReviewVersions"))
    vpath = f"{path}.admissionReviewVersions"
    if not versions:
        errs.append(required(vpath, f"must specify one of {', '.join(_REVIEW_VERSIONS)}"))
    else:
        seen: set[str] = set()
        for i, v in enumerate(versions):
            if v in seen:
                errs.append(invalid(f"{vpath}[{i}]", v, "duplicate version"))
            seen.add(v)
        if not seen & set(_REVIEW_VERSIONS):
            errs.append(invalid(vpath, versions, "must include at least one of "
                                                 f"{', '.join(_REVIEW_VERSIONS)}"))
    errs += _client_config(as_dict(hook.get("clientConfig")), f"{path}.clientConfig")
    for key in ("namespaceSelector", "objectSelector"):
        if hook.get(key) is not None:
            errs += m.validate_label_selector(hook[key], f"{path}.{key}")
    if mutating and hook.get("reinvocationPolicy") not in (None, "Never", "IfNeeded"):
        errs.append(not_supported(f"{path}.reinvocationPolicy", hook["reinvocationPolicy"],
                                  ["IfNeeded", "Never"]))
    conditions = as_list(hook.get("matchConditions"))
    if len(conditions) > 64:
        errs.append(too_many(f"{path}.matchConditions", len(conditions), 64))
    seen_conditions: set[str] = set()
    for i, c in enumerate(conditions):
        c, cpath = as_dict(c), f"{path}.matchConditions[{i}]"
        cname = c.get("name") or ""
        if not cname:
            errs.append(required(f"{cpath}.name"))
        elif cname in seen_conditions:
            errs.append(duplicate(f"{cpath}.name", cname))
        else:
            errs += names.messages_to_errors(names.is_qualified_name(cname), f"{cpath}.name",
                                             cname)
        seen_conditions.add(cname)
        if not c.get("expression"):
            errs.append(required(f"{cpath}.expression"))
    return errs


def validate_webhook_configuration(obj: Obj, old: Obj | None = None,
                                   mutating: bool = False) -> Errs:
    if old is None:
        errs = m.validate_object_meta(obj.get("metadata"), names.name_is_dns_subdomain)
    else:
        errs = m.validate_object_meta_update(obj.get("metadata"), old.get("metadata"))
    seen: set[str] = set()
    for i, hook in enumerate(as_list(obj.get("webhooks"))):
        hook, path = as_dict(hook), f"webhooks[{i}]"
        errs += _webhook(hook, path, mutating)
        name = str(hook.get("name") or "")
        if name and name in seen:
            errs.append(duplicate(f"{path}.name", name))
        seen.add(name)
    return errs


# -- ValidatingAdmissionPolicy and its bindings -----------------------------------

_POLICY_VARIABLES = ("object", "oldObject", "request", "namespaceObject", "variables")
_REASONS = ["Forbidden", "Invalid", "RequestEntityTooLarge", "Unauthorized"]
_ACTIONS = ["Audit", "Deny", "Warn"]


def _cel(text: Any, path: str, names: list[str], fields: set[str]) -> Errs:
    """An expression that must compile (compiled again when used; this only
    refuses one that never could)."""
    from pinnace.api import cel

    if not isinstance(text, str) or not text.strip():
        return [required(path)]
    try:
        cel.compile_expression(text, names, fields=fields)
    except cel.CompileError as e:
        return [invalid(path, text, f"compilation failed: {e}")]
    return []


def _resource_rules(rules: Any, path: str) -> Errs:
    errs: Errs = []
    for i, rule in enumerate(as_list(rules)):
        errs += _rule(as_dict(rule), f"{path}[{i}]")
    return errs


def validate_validating_admission_policy(obj: Obj, old: Obj | None = None) -> Errs:
    if old is None:
        errs = m.validate_object_meta(obj.get("metadata"), names.name_is_dns_subdomain)
    else:
        errs = m.validate_object_meta_update(obj.get("metadata"), old.get("metadata"))
    spec = as_dict(obj.get("spec"))
    fp = spec.get("failurePolicy")
    if fp is not None and fp not in ("Fail", "Ignore"):
        errs.append(not_supported("spec.failurePolicy", fp, ["Fail", "Ignore"]))
    pk = spec.get("paramKind")
    variables = list(_POLICY_VARIABLES)
    if pk is not None:
        variables.append("params")
        for key in ("apiVersion", "kind"):
            if not as_dict(pk).get(key):
                errs.append(required(f"spec.paramKind.{key}"))
    mc = spec.get("matchConstraints")
    if mc is None:
        errs.append(required("spec.matchConstraints"))
    else:
        mc = as_dict(mc)
        if not as_list(mc.get("resourceRules")):
            errs.append(required("spec.matchConstraints.resourceRules"))
        errs += _resource_rules(mc.get("resourceRules"), "spec.matchConstraints.resourceRules")
        errs += _resource_rules(mc.get("excludeResourceRules"),
                                "spec.matchConstraints.excludeResourceRules")
    declared: set[str] = set()
    for i, v in enumerate(as_list(spec.get("variables"))):
        v, path = as_dict(v), f"spec.variables[{i}]"
        name = v.get("name")
        if not name:
            errs.append(required(f"{path}.name"))
        elif not isinstance(name, str) or not name.isidentifier():
            errs.append(invalid(f"{path}.name", name, "name is not a valid CEL identifier"))
        errs += _cel(v.get("expression"), f"{path}.expression", variables, set(declared))
        if isinstance(name, str):
            declared.add(name)
    for i, c in enumerate(as_list(spec.get("matchConditions"))):
        c, path = as_dict(c), f"spec.matchConditions[{i}]"
        if not c.get("name"):
            errs.append(required(f"{path}.name"))
        errs += _cel(c.get("expression"), f"{path}.expression", variables, declared)
    validations = as_list(spec.get("validations"))
    audits = as_list(spec.get("auditAnnotations"))
    if not validations and not audits:
        errs.append(required("spec.validations",
                             "validations or auditAnnotations must contain at least one item"))
    for i, v in enumerate(validations):
        v, path = as_dict(v), f"spec.validations[{i}]"
        errs += _cel(v.get("expression"), f"{path}.expression", variables, declared)
        if v.get("messageExpression") is not None:
            errs += _cel(v["messageExpression"], f"{path}.messageExpression", variables, declared)
        msg = v.get("message")
        if isinstance(msg, str) and "\n" in msg:
            errs.append(invalid(f"{path}.message", msg, "message must not contain line breaks"))
        reason = v.get("reason")
        if reason is not None and reason not in _REASONS:
            errs.append(not_supported(f"{path}.reason", reason, _REASONS))
    seen: set[str] = set()
    for i, x in enumerate(audits):
        x, path = as_dict(x), f"spec.auditAnnotations[{i}]"
        key = x.get("key") or ""
        if not key:
            errs.append(required(f"{path}.key"))
        elif key in seen:
            errs.append(duplicate(f"{path}.key", key))
        seen.add(key)
        errs += _cel(x.get("valueExpression"), f"{path}.valueExpression", variables, declared)
    return errs


def validate_validating_admission_policy_binding(obj: Obj, old: Obj | None = None) -> Errs:
    if old is None:
        errs = m.validate_object_meta(obj.get("metadata"), names.name_is_dns_subdomain)
    else:
        errs = m.validate_object_meta_update(obj.get("metadata"), old.get("metadata"))
    spec = as_dict(obj.get("spec"))
    if not spec.get("policyName"):
        errs.append(required("spec.policyName"))
    actions = as_list(spec.get("validationActions"))
    if not actions:
        errs.append(required("spec.validationActions",
                             "at least one validation action is required"))
    seen: set[Any] = set()
    for i, action in enumerate(actions):
        if action not in _ACTIONS:
            errs.append(not_supported(f"spec.validationActions[{i}]", action, _ACTIONS))
        elif action in seen:
            errs.append(duplicate(f"spec.validationActions[{i}]", action))
        seen.add(action)
    if {"Deny", "Warn"} <= seen:
        errs.append(invalid("spec.validationActions", actions,
                            "must not contain both Deny and Warn (repeating the same validation "
                            "failure information in the API response and headers serves no "
                            "purpose)"))
    ref = spec.get("paramRef")
    if ref is not None:
        ref = as_dict(ref)
        if ref.get("name") and ref.get("selector") is not None:
            errs.append(invalid("spec.paramRef.name", ref.get("name"),
                                "name and selector are mutually exclusive"))
        if not ref.get("name") and ref.get("selector") is None:
            errs.append(required("spec.paramRef", "one of name or selector must be specified"))
        action = ref.get("parameterNotFoundAction")
        if action is None:
            errs.append(required("spec.paramRef.parameterNotFoundAction"))
        elif action not in ("Allow", "Deny"):
            errs.append(not_supported("spec.paramRef.parameterNotFoundAction", action,
                                      ["Allow", "Deny"]))
    mr = spec.get("matchResources")
    if mr is not None:
        mr = as_dict(mr)
        errs += _resource_rules(mr.get("resourceRules"), "spec.matchResources.resourceRules")
        errs += _resource_rules(mr.get("excludeResourceRules"),
                                "spec.matchResources.excludeResourceRules")
    return errs
