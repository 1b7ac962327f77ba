"""ValidatingAdmissionPolicy: CEL validations chosen by policies and bindings.

The plugin as kube-apiserver's (k8s.io/apiserver/pkg/admission/plugin/policy/
validating and .../policy/generic): a ValidatingAdmissionPolicy says which
requests it is about (matchConstraints, matchConditions) and what they must
satisfy (validations, with variables); a ValidatingAdmissionPolicyBinding puts a
policy to work, narrowing the requests further (matchResources), choosing the
params the expressions see (paramRef) and what a failed validation does
(validationActions: Deny refuses with the validation's reason, Warn adds a
Warning header, Audit records an annotation).

Policies and bindings arrive as watch events (``event``) and are compiled
once per resourceVersion. The objects the expressions read come through
callables the server gives:

- ``resolve_kind(api_version, kind)``: the ResourceInfo serving a paramKind,
  or None when no such kind is served;
- ``read_objects(info, namespace, name)``: the objects of that resource in the
  namespace ("" for cluster-scoped kinds), only the named one when name is
  not "" (then [] when it does not exist);
- ``namespace_object(name)``: the Namespace, or None;
- ``equivalents(info)``: the other versions serving the same resource, for
  matchPolicy Equivalent (default: none).

Not done: the authorizer variable, the typeChecking status (no status is
written), the cost budget, converting the object to the version an
Equivalent rule names (the object is given as requested), and an audit log
(audit annotations go on the request's audit event, and the newest are kept
in ``audit_annotations``).
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pinnace.api.resources import ResourceInfo
from pinnace.api.selectors import LabelSelector, SelectorError, label_selector_from_dict
from pinnace.runtime import lazy_import

from .. import status
from . import CREATE, UPDATE, Attributes

if TYPE_CHECKING:
    from pinnace.api import cel
else:  # its grammar is built when imported: only for clusters that use it
    cel = lazy_import("pinnace.api.cel")

Obj = dict[str, Any]
ResolveKind = Callable[[str, str], ResourceInfo | None]
ReadObjects = Callable[[ResourceInfo, str, str], Awaitable[list[Obj]]]
NamespaceObject = Callable[[str], Awaitable[Obj | None]]
Equivalents = Callable[[ResourceInfo], Iterable[ResourceInfo]]

GROUP = "admissionregistration.k8s.io"
POLICY_KIND, BINDING_KIND = "ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding"

# Upstream never runs API-defined policies on the policy objects themselves
# (a bad policy must stay fixable) nor on the non-persisted review resources.
_NEVER = frozenset({
    (GROUP, "validatingadmissionpolicies"), (GROUP, "validatingadmissionpolicybindings"),
    (GROUP, "mutatingadmissionpolicies"), (GROUP, "mutatingadmissionpolicybindings"),
    ("authentication.k8s.io", "selfsubjectreviews"), ("authentication.k8s.io", "tokenreviews"),
    ("authorization.k8s.io", "localsubjectaccessreviews"),
    ("authorization.k8s.io", "selfsubjectaccessreviews"),
    ("authorization.k8s.io", "selfsubjectrulesreviews"),
    ("authorization.k8s.io", "subjectaccessreviews"),
})

_CODES = {"Forbidden": 403, "Unauthorized": 401, "RequestEntityTooLarge": 413, "Invalid": 422}
MAX_MESSAGE_BYTES = 5 * 1024  # celconfig.MaxEvaluatedMessageExpressionSizeBytes
MAX_AUDIT_VALUE = 10 * 1024
_BASE_VARIABLES = ("object", "oldObject", "request", "namespaceObject", "variables")


# ---- compiled policies ----------------------------------------------------------------

@dataclass(slots=True)
class _Expr:
    text: str
    program: cel.Program | None
    error: str = ""  # "compilation failed: ..." or the result-type complaint


@dataclass(slots=True)
class _Validation:
    expr: _Expr
    message: str
    message_expr: _Expr | None
    reason: str


@dataclass(slots=True)
class _Criteria:
    """matchConstraints or a binding's matchResources, selectors parsed."""
    spec: Obj
    namespace_selector: LabelSelector | None
    object_selector: LabelSelector | None
    selector_error: str = ""


@dataclass(slots=True)
class _Policy:
    name: str
    version: str
    obj: Obj
    criteria: _Criteria | None
    fail: bool  # failurePolicy Fail (default) or Ignore
    param_kind: tuple[str, str] | None
    variables: list[tuple[str, _Expr]]
    match_conditions: list[tuple[str, _Expr]]
    validations: list[_Validation]
    audit: list[tuple[str, _Expr]]


@dataclass(slots=True)
class _Binding:
    name: str
    obj: Obj
    policy: str
    criteria: _Criteria | None
    actions: tuple[str, ...]
    param_ref: Obj | None


def _criteria(spec: Obj | None) -> _Criteria | None:
    if spec is None:
        return None
    out = _Criteria(spec, None, None)
    try:
        # An unset selector matches everything (upstream defaults it to {}).
        out.namespace_selector = label_selector_from_dict(spec.get("namespaceSelector") or {})
        out.object_selector = label_selector_from_dict(spec.get("objectSelector") or {})
    except SelectorError as e:
        out.selector_error = str(e)
    return out


def _compile(text: str, names: Iterable[str], fields: set[str] | None = None) -> _Expr:
    try:
        return _Expr(text, cel.compile_expression(text, names, fields=fields))
    except cel.CompileError as e:
        return _Expr(text, None, f"compilation failed: {e}")


def compile_policy(obj: Obj) -> _Policy:
    meta, spec = obj.get("metadata") or {}, obj.get("spec") or {}
    pk = spec.get("paramKind")
    param_kind = (str(pk.get("apiVersion") or ""), str(pk.get("kind") or "")) if pk else None
    names = list(_BASE_VARIABLES) + (["params"] if param_kind else [])
    declared: set[str] = set()
    variables = []
    for v in spec.get("variables") or []:
        name = str(v.get("name") or "")
        variables.append((name, _compile(str(v.get("expression") or ""), names, set(declared))))
        declared.add(name)
    conditions = [(str(c.get("name") or ""), _compile(str(c.get("expression") or ""), names,
                                                      declared))
                  for c in spec.get("matchConditions") or []]
    validations = []
    for v in spec.get("validations") or []:
        mexpr = v.get("messageExpression") or ""
        validations.append(_Validation(
            _compile(str(v.get("expression") or ""), names, declared), str(v.get("message") or ""),
            _compile(str(mexpr), names, declared) if mexpr else None,
            str(v.get("reason") or "Invalid")))
    audit = [(str(x.get("key") or ""), _compile(str(x.get("valueExpression") or ""), names,
                                                declared))
             for x in spec.get("auditAnnotations") or []]
    return _Policy(
        name=str(meta.get("name") or ""), version=_version(obj), obj=obj,
        criteria=_criteria(spec.get("matchConstraints")),
        fail=spec.get("failurePolicy", "Fail") != "Ignore", param_kind=param_kind,
        variables=variables, match_conditions=conditions, validations=validations, audit=audit)


def _version(obj: Obj) -> str:
    meta = obj.get("metadata") or {}
    return str(meta.get("resourceVersion") or "") + "/" + str(meta.get("generation") or "")


def compile_binding(obj: Obj) -> _Binding:
    meta, spec = obj.get("metadata") or {}, obj.get("spec") or {}
    return _Binding(name=str(meta.get("name") or ""), obj=obj,
                    policy=str(spec.get("policyName") or ""),
                    criteria=_criteria(spec.get("matchResources")),
                    actions=tuple(spec.get("validationActions") or ()),
                    param_ref=spec.get("paramRef"))


# ---- matching (k8s.io/apiserver/pkg/admission/plugin/webhook/predicates) --------------

def _split_resource(r: str) -> tuple[str, str]:
    res, _, sub = r.partition("/")
    return res, sub


def _rule_matches(rule: Obj, a: Attributes, info: ResourceInfo) -> bool:
    ops = rule.get("operations") or []
    if "*" not in ops and a.operation not in ops:
        return False
    groups, versions = rule.get("apiGroups") or [], rule.get("apiVersions") or []
    if "*" not in groups and info.group not in groups:
        return False
    if "*" not in versions and info.version not in versions:
        return False
    for r in rule.get("resources") or []:
        res, sub = _split_resource(r)
        if (res == "*" or res == info.resource) and (sub == "*" or sub == a.subresource):
            break
    else:
        return False
    scope = rule.get("scope") or "*"
    is_namespace = (info.group, info.resource) == ("", "namespaces")
    if scope == "Namespaced":
        return not is_namespace and a.namespace != ""
    if scope == "Cluster":
        return is_namespace or a.namespace == ""
    return True


def _named_rules_match(rules: list[Obj], a: Attributes, info: ResourceInfo) -> bool:
    for rule in rules:
        if not _rule_matches(rule, a, info):
            continue
        names = rule.get("resourceNames") or []
        if not names or _request_name(a) in names:
            return True
    return False


def _request_name(a: Attributes) -> str:
    if a.name:
        return a.name
    meta = (a.obj or {}).get("metadata") or {}
    return "" if meta.get("generateName") and not a.name else str(meta.get("name") or "")


class _Request:
    """What the matcher needs beyond the attributes: the namespace's labels,
    looked up at most once per request."""

    def __init__(self, a: Attributes, namespace_object: NamespaceObject | None):
        self.a = a
        self._read = namespace_object
        self._ns: Obj | None = None
        self._ns_read = False

    async def namespace(self) -> Obj | None:
        if not self._ns_read:
            self._ns_read = True
            if self._read is not None and self.a.namespace:
                self._ns = await self._read(self.a.namespace)
        return self._ns

    async def namespace_labels(self) -> dict[str, str]:
        a = self.a
        if (a.info.group, a.info.resource) == ("", "namespaces"):
            if not a.subresource and a.operation in (CREATE, UPDATE) and a.obj is not None:
                return dict((a.obj.get("metadata") or {}).get("labels") or {})
            name = a.name or ((a.old or {}).get("metadata") or {}).get("name", "")
            ns = await self._read(name) if self._read is not None and name else None
        else:
            ns = await self.namespace()
        return dict(((ns or {}).get("metadata") or {}).get("labels") or {})


async def _matches(c: _Criteria, req: _Request, equivalents: Equivalents | None,
                   exact_default: bool) -> tuple[bool, ResourceInfo | None, str]:
    """(matches, the matched resource, a configuration error) as upstream's Matcher."""
    a = req.a
    info = a.info
    # namespaceSelector: cluster-scoped objects other than namespaces always match.
    ns_ok = True
    if not c.selector_error and c.namespace_selector is not None \
            and not c.namespace_selector.empty():
        if a.namespace or (info.group, info.resource) == ("", "namespaces"):
            ns_ok = c.namespace_selector.matches(await req.namespace_labels())
    if not ns_ok:
        return False, None, ""
    if not c.selector_error and c.object_selector is not None and not c.object_selector.empty():
        if not any(o is not None and c.object_selector.matches(
                (o.get("metadata") or {}).get("labels") or {}) for o in (a.obj, a.old)):
            return False, None, ""
    spec = c.spec
    exact = (spec.get("matchPolicy") or ("Exact" if exact_default else "Equivalent")) == "Exact"
    if _named_rules_match(spec.get("excludeResourceRules") or [], a, info):
        return False, None, ""
    rules = spec.get("resourceRules") or []
    matched: ResourceInfo | None = None
    if not rules or _named_rules_match(rules, a, info):
        matched = info
    elif not exact and equivalents is not None:
        for other in equivalents(info):
            if other != info and _named_rules_match(rules, a, other):
                matched = other
                break
    if matched is None:
        return False, None, ""
    if c.selector_error:
        return False, None, c.selector_error
    return True, matched, ""


# ---- evaluation -----------------------------------------------------------------------

@dataclass(slots=True)
class _Decision:
    deny: bool
    message: str
    reason: str = ""
    error: bool = False


@dataclass(slots=True)
class _Denied:
    policy: str
    binding: str | None
    message: str
    reason: str = ""


def _eval_error(expr: _Expr, e: cel.EvalError) -> str:
    return f"expression '{expr.text}' resulted in error: {e}"


def _run(expr: _Expr, activation: dict[str, Any]) -> tuple[Any, str]:
    """(value, error message)."""
    if expr.program is None:
        return None, f"compilation error: {expr.error}"
    try:
        return expr.program.evaluate(activation), ""
    except cel.EvalError as e:
        return None, _eval_error(expr, e)


def _run_bool(expr: _Expr, activation: dict[str, Any]) -> tuple[bool | None, str]:
    value, err = _run(expr, activation)
    if err:
        return None, err
    if not isinstance(value, cel.celtypes.BoolType):
        return None, f"compilation error: must evaluate to bool but got {cel.type_name(value)}"
    return bool(value), ""


def _aggregate(errors: list[str]) -> str:
    return errors[0] if len(errors) == 1 else "[" + ", ".join(errors) + "]"


def _evaluate(p: _Policy, activation: dict[str, Any], audit: list[tuple[str, str]]
              ) -> list[_Decision]:
    """One (binding, param) evaluation of a policy: its decisions in order."""
    if p.match_conditions:
        errors = []
        for _, expr in p.match_conditions:
            ok, err = _run_bool(expr, activation)
            if err:
                errors.append(err)
            elif ok is False:
                return []
        if errors:
            return [_Decision(True, _aggregate(errors), error=True)] if p.fail else []
    decisions = []
    for v in p.validations:
        ok, err = _run_bool(v.expr, activation)
        if err:
            decisions.append(_Decision(p.fail, err, error=True))
            continue
        if ok:
            decisions.append(_Decision(False, ""))
            continue
        message = ""
        if v.message_expr is not None:
            value, merr = _run(v.message_expr, activation)
            if not merr and isinstance(value, str):
                message = str(value).strip()
                if len(message.encode()) > MAX_MESSAGE_BYTES or "\n" in message:
                    message = ""
        if not message and v.message:
            message = v.message.strip()
        if not message:
            message = f"failed expression: {v.expr.text.strip()}"
        decisions.append(_Decision(True, message, v.reason))
    for key, expr in p.audit:
        value, err = _run(expr, activation)
        if err:
            if p.fail:
                decisions.append(_Decision(True, err, error=True))
            continue
        if value is None:
            continue
        if not isinstance(value, str):
            decisions.append(_Decision(True, f"valueExpression '{expr.text}' resulted in "
                                             f"unsupported return type: {cel.type_name(value)}. "
                                             "Return type must be either string or null.",
                                       error=True))
            continue
        text = str(value).strip()
        if text:
            audit.append((key, text[:MAX_AUDIT_VALUE]))
    return decisions


def _gvk_text(api_version: str, kind: str) -> str:
    group, _, version = api_version.rpartition("/")
    return f"{group}/{version}, Kind={kind}"


def _user_info(a: Attributes) -> Obj:
    u = a.user
    if u is None:
        return {"username": "", "uid": "", "groups": [], "extra": {}}
    extra = getattr(u, "extra", None) or {}
    return {"username": u.name, "uid": u.uid, "groups": list(u.groups),
            "extra": {k: list(v) for k, v in dict(extra).items()}}


def _options(a: Attributes) -> Obj:
    kind = {"CREATE": "CreateOptions", "UPDATE": "UpdateOptions",
            "DELETE": "DeleteOptions"}.get(a.operation, "")
    out: Obj = {"kind": kind, "apiVersion": "meta.k8s.io/v1"}
    if a.dry_run:
        out["dryRun"] = ["All"]
    return out


def request_object(a: Attributes, matched: ResourceInfo) -> Obj:
    """The ``request`` variable: admission.k8s.io/v1 AdmissionRequest without
    uid, object and oldObject, every field present."""
    info = a.info
    namespace = a.namespace
    if (info.group, info.resource) == ("", "namespaces") and a.operation != CREATE:
        namespace = a.name  # upstream's request info names a namespace by itself
    return {
        "kind": {"group": matched.group, "version": matched.version, "kind": matched.kind},
        "resource": {"group": matched.group, "version": matched.version,
                     "resource": matched.resource},
        "subResource": a.subresource,
        "requestKind": {"group": info.group, "version": info.version, "kind": info.kind},
        "requestResource": {"group": info.group, "version": info.version,
                            "resource": info.resource},
        "requestSubResource": a.subresource,
        "name": _request_name(a),
        "namespace": namespace,
        "operation": a.operation,
        "userInfo": _user_info(a),
        "dryRun": a.dry_run,
        "options": _options(a),
    }


_NAMESPACE_META = ("name", "generateName", "namespace", "uid", "resourceVersion", "generation",
                   "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds",
                   "labels", "annotations", "finalizers")


def namespace_variable(ns: Obj | None) -> Obj | None:
    """The ``namespaceObject`` variable: the namespace's metadata (the fields
    upstream keeps), spec and status."""
    if ns is None:
        return None
    meta = ns.get("metadata") or {}
    return {"apiVersion": "v1", "kind": "Namespace",
            "metadata": {k: meta[k] for k in _NAMESPACE_META if k in meta},
            "spec": ns.get("spec") or {}, "status": ns.get("status") or {}}


class ValidatingAdmissionPolicies:
    """The plugin: policies and bindings kept from watch events, applied to
    every user write in the admission chain."""

    def __init__(self, resolve_kind: ResolveKind | None = None,
                 read_objects: ReadObjects | None = None,
                 namespace_object: NamespaceObject | None = None,
                 equivalents: Equivalents | None = None, audit_log_size: int = 1000):
        self.resolve_kind = resolve_kind
        self.read_objects = read_objects
        self.namespace_object = namespace_object
        self.equivalents = equivalents
        self.policies: dict[str, _Policy] = {}
        self.bindings: dict[str, _Binding] = {}
        # (annotation key, value) pairs of the latest requests: there is no audit log yet.
        self.audit_annotations: deque[tuple[str, str]] = deque(maxlen=audit_log_size)
        self.compilations = 0  # how many policies were compiled (for tests)

    # -- following the objects ----------------------------------------------------------

    def event(self, type_: str, obj: Obj) -> None:
        kind = obj.get("kind")
        name = str((obj.get("metadata") or {}).get("name") or "")
        if kind == POLICY_KIND:
            if type_ == "DELETED":
                self.policies.pop(name, None)
                return
            old = self.policies.get(name)
            if old is None or old.version != _version(obj) or not _version(obj).strip("/"):
                self.policies[name] = compile_policy(obj)
                self.compilations += 1
        elif kind == BINDING_KIND:
            if type_ == "DELETED":
                self.bindings.pop(name, None)
            else:
                self.bindings[name] = compile_binding(obj)

    # -- admission ------------------------------------------------------------------------

    async def validate(self, a: Attributes) -> None:
        if (a.info.group, a.info.resource) in _NEVER or not self.bindings:
            return
        by_policy: dict[str, list[_Binding]] = {}
        for b in sorted(self.bindings.values(), key=lambda b: b.name):
            if b.policy in self.policies:
                by_policy.setdefault(b.policy, []).append(b)
        if not by_policy:
            return
        req = _Request(a, self.namespace_object)
        denied: list[_Denied] = []
        for pname in sorted(by_policy):
            await self._policy(self.policies[pname], by_policy[pname], req, denied)
        if denied:
            raise self._refusal(a, denied)

    async def _policy(self, p: _Policy, bindings: list[_Binding], req: _Request,
                      denied: list[_Denied]) -> None:
        a = req.a
        if p.criteria is None:
            return  # matchConstraints is required; upstream matches nothing without it
        ok, matched, err = await _matches(p.criteria, req, self.equivalents, exact_default=False)
        if err:
            if p.fail:
                denied.append(_Denied(p.name, None, f"failed to configure policy: {err}"))
            return
        if not ok or matched is None:
            return
        param_info: ResourceInfo | None = None
        if p.param_kind is not None:
            param_info = self.resolve_kind(*p.param_kind) if self.resolve_kind else None
            if param_info is None:
                if p.fail:
                    denied.append(_Denied(
                        p.name, None, "failed to configure policy: failed to find resource "
                        f"referenced by paramKind: '{_gvk_text(*p.param_kind)}'"))
                return
        audit: list[tuple[str, str]] = []
        for b in bindings:
            if b.criteria is not None:
                bok, _, berr = await _matches(b.criteria, req, self.equivalents,
                                              exact_default=False)
                if berr:
                    if p.fail:
                        denied.append(_Denied(p.name, b.name, f"failed to configure binding: {berr}"))
                    continue
                if not bok:
                    continue
            try:
                params = await self._params(p, param_info, b, a.namespace)
            except _ConfigError as e:
                if p.fail:
                    denied.append(_Denied(p.name, b.name, f"failed to configure binding: {e}"))
                continue
            for param in params:
                activation = await self._activation(p, req, matched, param)
                for i, d in enumerate(_evaluate(p, activation, audit)):
                    if not d.deny:
                        continue
                    for action in b.actions:
                        if action == "Deny":
                            denied.append(_Denied(p.name, b.name, d.message, d.reason))
                        elif action == "Warn":
                            a.warnings.append(f"Validation failed for ValidatingAdmissionPolicy "
                                              f"'{p.name}' with binding '{b.name}': {d.message}")
                        elif action == "Audit":
                            failure = ("validation.policy.admission.k8s.io/validation_failure",
                                       json.dumps([{"message": d.message, "policy": p.name,
                                                    "binding": b.name, "expressionIndex": i,
                                                    "validationActions": list(b.actions)}],
                                                  separators=(",", ":")))
                            self.audit_annotations.append(failure)
                            a.annotations[failure[0]] = failure[1]
        seen: dict[str, list[str]] = {}
        for key, value in audit:
            if value not in seen.setdefault(key, []):
                seen[key].append(value)
        for key, values in seen.items():
            self.audit_annotations.append((f"{p.name}/{key}", ", ".join(values)))
            a.annotations[f"{p.name}/{key}"] = ", ".join(values)

    async def _params(self, p: _Policy, info: ResourceInfo | None, b: _Binding,
                      namespace: str) -> list[Obj | None]:
        """generic.CollectParams: [None] when the policy or binding uses no params."""
        ref = b.param_ref
        if p.param_kind is None or ref is None or info is None:
            return [None]
        ref_ns, name, selector = ref.get("namespace") or "", ref.get("name") or "", \
            ref.get("selector")
        if info.namespaced:
            ns = ref_ns or namespace
            if not ns:
                raise _ConfigError("cannot use namespaced paramRef in policy binding that "
                                   "matches cluster-scoped resources")
        else:
            if ref_ns:
                raise _ConfigError("paramRef.namespace must not be provided for a "
                                   "cluster-scoped `paramKind`")
            ns = ""
        if self.read_objects is None:
            found: list[Obj] = []
        elif name:
            if selector is not None:
                raise _ConfigError("paramRef.name and paramRef.selector are mutually exclusive")
            found = await self.read_objects(info, ns, name)
        elif selector is not None:
            try:
                sel = label_selector_from_dict(selector)
            except SelectorError as e:
                raise _ConfigError(str(e)) from None
            found = sorted((o for o in await self.read_objects(info, ns, "")
                            if sel.matches((o.get("metadata") or {}).get("labels") or {})),
                           key=lambda o: str((o.get("metadata") or {}).get("name") or ""))
        else:
            raise _ConfigError("one of name or selector must be provided")
        if not found and ref.get("parameterNotFoundAction") == "Deny":
            raise _ConfigError("no params found for policy binding with `Deny` "
                               "parameterNotFoundAction")
        out: list[Obj | None] = []
        for o in found:
            if not o.get("apiVersion") or not o.get("kind"):
                o = {**o, "apiVersion": p.param_kind[0], "kind": p.param_kind[1]}
            out.append(o)
        return out

    async def _activation(self, p: _Policy, req: _Request, matched: ResourceInfo,
                          param: Obj | None) -> dict[str, Any]:
        a = req.a
        ns = None
        if a.namespace and (a.info.group, a.info.resource) != ("", "namespaces"):
            ns = await req.namespace()
        activation: dict[str, Any] = {
            "object": cel.to_cel(a.obj),
            "oldObject": cel.to_cel(a.old if a.operation != CREATE else None),
            "request": cel.to_cel(request_object(a, matched)),
            "namespaceObject": cel.to_cel(namespace_variable(ns)),
        }
        if p.param_kind is not None:
            activation["params"] = cel.to_cel(param)

        def variable(name: str, expr: _Expr) -> Callable[[], Any]:
            def compute() -> Any:
                if expr.program is None:
                    return _error_value(f'composited variable "{name}" fails to compile: '
                                        f"{expr.error}")
                try:
                    return expr.program.evaluate(activation)
                except cel.EvalError as e:
                    return _error_value(f'composited variable "{name}" fails to evaluate: {e}')
            return compute

        activation["variables"] = cel.LazyMap({n: variable(n, e) for n, e in p.variables})
        return activation

    @staticmethod
    def _refusal(a: Attributes, denied: list[_Denied]) -> status.APIError:
        first = denied[0]
        if first.binding is not None:
            message = (f"ValidatingAdmissionPolicy '{first.policy}' with binding "
                       f"'{first.binding}' denied request: {first.message}")
        else:
            message = f"ValidatingAdmissionPolicy '{first.policy}' denied request: {first.message}"
        err = a.forbidden(message)
        reason = first.reason or "Invalid"
        err.reason = reason
        err.code = _CODES.get(reason, 422)
        details = dict(err.details or {})
        details["causes"] = [*(details.get("causes") or []), {"message": message}]
        err.details = details
        return err


class _ConfigError(Exception):
    pass


def _error_value(message: str) -> Any:
    return cel.error_value(message)


__all__ = ["ValidatingAdmissionPolicies", "compile_policy", "compile_binding", "request_object",
           "namespace_variable", "GROUP", "POLICY_KIND", "BINDING_KIND"]
