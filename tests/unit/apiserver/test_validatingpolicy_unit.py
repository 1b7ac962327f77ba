"""ValidatingAdmissionPolicy: matching, params, variables, actions and the exact
refusal and warning texts kube-apiserver gives (kubectl shows them), plus the
CEL environment underneath (pinnace.api.cel)."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from pinnace.api import cel
from pinnace.api.resources import BUILTIN, ResourceInfo
from pinnace.apiserver.admission import CREATE, DELETE, UPDATE, Attributes
from pinnace.apiserver.admission.validatingpolicy import ValidatingAdmissionPolicies
from pinnace.apiserver.authn import User
from pinnace.apiserver.status import APIError

Obj = dict[str, Any]

INFO = {(r.group, r.resource): r for r in BUILTIN if r.version in ("v1", "v2")}
DEPLOYMENTS = INFO[("apps", "deployments")]
CONFIGMAPS = INFO[("", "configmaps")]
NAMESPACES = INFO[("", "namespaces")]
ALICE = User("alice", "u-1", ("devs", "system:authenticated"))


def deployment(name: str = "web", replicas: int = 3, namespace: str = "apps",
               labels: dict[str, str] | None = None) -> Obj:
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": name, "namespace": namespace, "labels": labels or {"app": name}},
            "spec": {"replicas": replicas, "template": {"spec": {"containers": [
                {"name": "c", "image": "busybox"}]}}}}


def attrs(obj: Obj | None, op: str = CREATE, old: Obj | None = None,
          info: ResourceInfo = DEPLOYMENTS, namespace: str = "apps", user: User | None = ALICE,
          subresource: str = "") -> Attributes:
    src = obj if obj is not None else old
    name = (src or {}).get("metadata", {}).get("name", "")
    return Attributes(op, info, namespace, name, obj, old, user, subresource)


RULES = [{"apiGroups": ["apps"], "apiVersions": ["v1"], "operations": ["CREATE", "UPDATE"],
          "resources": ["deployments"]}]


def policy(name: str = "demo-policy", validations: list[Obj] | None = None, rv: str = "1",
           **spec: Any) -> Obj:
    body: Obj = {"matchConstraints": {"resourceRules": copy.deepcopy(RULES)},
                 "validations": validations if validations is not None else
                 [{"expression": "object.spec.replicas <= 5"}]}
    body.update(spec)
    return {"apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingAdmissionPolicy",
            "metadata": {"name": name, "resourceVersion": rv, "generation": 1}, "spec": body}


def binding(name: str = "demo-binding", policy_name: str = "demo-policy",
            actions: tuple[str, ...] = ("Deny",), **spec: Any) -> Obj:
    return {"apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "ValidatingAdmissionPolicyBinding", "metadata": {"name": name},
            "spec": {"policyName": policy_name, "validationActions": list(actions), **spec}}


class World:
    """The objects the plugin reads: namespaces and ConfigMaps."""

    def __init__(self) -> None:
        self.namespaces: dict[str, Obj] = {
            "apps": {"metadata": {"name": "apps", "labels": {"env": "prod"}, "uid": "ns-uid"},
                     "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active"}},
            "dev": {"metadata": {"name": "dev", "labels": {"env": "dev"}}},
        }
        self.configmaps: dict[tuple[str, str], Obj] = {}

    def resolve(self, api_version: str, kind: str) -> ResourceInfo | None:
        return CONFIGMAPS if (api_version, kind) == ("v1", "ConfigMap") else None

    async def read(self, info: ResourceInfo, namespace: str, name: str) -> list[Obj]:
        assert info is CONFIGMAPS
        return [o for (ns, n), o in sorted(self.configmaps.items())
                if ns == namespace and (not name or n == name)]

    async def namespace(self, name: str) -> Obj | None:
        return self.namespaces.get(name)

    def plugin(self, *objs: Obj) -> ValidatingAdmissionPolicies:
        p = ValidatingAdmissionPolicies(self.resolve, self.read, self.namespace)
        for o in objs:
            p.event("ADDED", o)
        return p


async def refused(plugin: ValidatingAdmissionPolicies, a: Attributes) -> APIError:
    with pytest.raises(APIError) as e:
        await plugin.validate(a)
    return e.value


# ---- the texts kubectl shows ----------------------------------------------------------------

async def test_deny_refuses_with_kube_apiserver_message_and_invalid_reason():
    p = World().plugin(policy(), binding())
    err = await refused(p, attrs(deployment(replicas=10)))
    msg = ("deployments.apps \"web\" is forbidden: ValidatingAdmissionPolicy 'demo-policy' with "
           "binding 'demo-binding' denied request: failed expression: object.spec.replicas <= 5")
    assert err.message == msg
    assert (err.code, err.reason) == (422, "Invalid")
    assert err.details == {"name": "web", "group": "apps", "kind": "deployments",
                           "causes": [{"message": msg.split("forbidden: ", 1)[1]}]}
    await p.validate(attrs(deployment(replicas=3)))


@pytest.mark.parametrize("reason,code", [("Forbidden", 403), ("Unauthorized", 401),
                                         ("RequestEntityTooLarge", 413), ("Invalid", 422)])
async def test_reason_chooses_the_code(reason: str, code: int):
    p = World().plugin(policy(validations=[{"expression": "false", "reason": reason,
                                            "message": "no"}]), binding())
    err = await refused(p, attrs(deployment()))
    assert (err.code, err.reason) == (code, reason)
    assert err.message.endswith("denied request: no")


async def test_message_expression_then_message_then_expression():
    v = {"expression": "object.spec.replicas <= 5",
         "messageExpression": "'replicas ' + string(object.spec.replicas) + ' > 5'",
         "message": "too many"}
    p = World().plugin(policy(validations=[v]), binding())
    assert (await refused(p, attrs(deployment(replicas=9)))).message.endswith(
        "denied request: replicas 9 > 5")
    # A messageExpression that fails, is not a string, is blank or has a newline: the message.
    for bad in ("object.nope", "1", "'  '", "'a\\nb'"):
        p = World().plugin(policy(validations=[{**v, "messageExpression": bad}]), binding())
        assert (await refused(p, attrs(deployment(replicas=9)))).message.endswith(
            "denied request: too many"), bad
    p = World().plugin(policy(validations=[{"expression": "  object.spec.replicas <= 5 ",
                                            "message": "   "}]), binding())
    assert (await refused(p, attrs(deployment(replicas=9)))).message.endswith(
        "denied request: failed expression: object.spec.replicas <= 5")


async def test_warn_adds_upstreams_warning_and_admits():
    p = World().plugin(policy(validations=[{"expression": "object.spec.replicas <= 5",
                                            "message": "max 5 replicas"}]),
                       binding(actions=("Warn",)))
    a = attrs(deployment(replicas=10))
    await p.validate(a)
    assert a.warnings == ["Validation failed for ValidatingAdmissionPolicy 'demo-policy' with "
                          "binding 'demo-binding': max 5 replicas"]


async def test_deny_and_warn_together_and_audit():
    p = World().plugin(policy(validations=[{"expression": "true"}, {"expression": "false",
                                                                     "message": "m"}]),
                       binding(actions=("Deny", "Warn", "Audit")))
    a = attrs(deployment())
    err = await refused(p, a)
    assert err.message.endswith("denied request: m")
    assert len(a.warnings) == 1
    key, value = p.audit_annotations[-1]
    assert key == "validation.policy.admission.k8s.io/validation_failure"
    assert json.loads(value) == [{"message": "m", "policy": "demo-policy",
                                  "binding": "demo-binding", "expressionIndex": 1,
                                  "validationActions": ["Deny", "Warn", "Audit"]}]


async def test_first_denial_names_the_message_but_all_are_evaluated():
    p = World().plugin(policy("a-policy", [{"expression": "false", "message": "first"}]),
                       policy("b-policy", [{"expression": "false", "message": "second"}]),
                       binding("b1", "a-policy"), binding("b2", "b-policy", actions=("Warn",)))
    a = attrs(deployment())
    err = await refused(p, a)
    assert err.message.endswith("'a-policy' with binding 'b1' denied request: first")
    assert a.warnings == ["Validation failed for ValidatingAdmissionPolicy 'b-policy' with "
                          "binding 'b2': second"]


# ---- errors and failurePolicy --------------------------------------------------------------

async def test_runtime_error_fails_closed_by_default_and_ignore_admits():
    p = World().plugin(policy(validations=[{"expression": "object.spec.missing > 1"}]), binding())
    err = await refused(p, attrs(deployment()))
    assert err.message.endswith("denied request: expression 'object.spec.missing > 1' resulted "
                                "in error: no such key: missing")
    assert err.code == 422
    p = World().plugin(policy(validations=[{"expression": "object.spec.missing > 1"}],
                              failurePolicy="Ignore"), binding())
    await p.validate(attrs(deployment()))


async def test_compile_error_is_reported_per_expression():
    p = World().plugin(policy(validations=[{"expression": "params.max > 1"}]), binding())
    err = await refused(p, attrs(deployment()))
    assert err.message.endswith(
        "denied request: compilation error: compilation failed: ERROR: <input>:1:1: "
        "undeclared reference to 'params' (in container '')\n | params.max > 1\n | ^")


async def test_non_bool_validation_is_an_error():
    p = World().plugin(policy(validations=[{"expression": "object.spec.replicas"}]), binding())
    assert (await refused(p, attrs(deployment()))).message.endswith(
        "compilation error: must evaluate to bool but got int")


# ---- matching -----------------------------------------------------------------------------

async def test_resource_rules_operations_groups_and_subresources():
    p = World().plugin(policy(validations=[{"expression": "false"}]), binding())
    await p.validate(attrs(deployment(), op=DELETE, old=deployment()))  # not in operations
    await p.validate(attrs({"metadata": {"name": "c"}}, info=CONFIGMAPS))  # other resource
    await p.validate(attrs(deployment(), op=UPDATE, old=deployment(), subresource="status"))
    await refused(p, attrs(deployment(), op=UPDATE, old=deployment()))
    star = policy(validations=[{"expression": "false"}], matchConstraints={"resourceRules": [
        {"apiGroups": ["*"], "apiVersions": ["*"], "operations": ["*"], "resources": ["*/*"]}]})
    p = World().plugin(star, binding())
    await refused(p, attrs(deployment(), op=UPDATE, old=deployment(), subresource="status"))
    sub = policy(validations=[{"expression": "false"}], matchConstraints={"resourceRules": [
        {"apiGroups": ["apps"], "apiVersions": ["v1"], "operations": ["UPDATE"],
         "resources": ["deployments/scale"]}]})
    p = World().plugin(sub, binding())
    await p.validate(attrs(deployment(), op=UPDATE, old=deployment()))
    await refused(p, attrs(deployment(), op=UPDATE, old=deployment(), subresource="scale"))


async def test_exclude_rules_resource_names_and_scope():
    rules = [{"apiGroups": ["*"], "apiVersions": ["*"], "operations": ["CREATE"],
              "resources": ["*"], "scope": "Namespaced"}]
    excl = [{"apiGroups": [""], "apiVersions": ["v1"], "operations": ["*"],
             "resources": ["configmaps"], "resourceNames": ["allowed"]}]
    p = World().plugin(policy(validations=[{"expression": "false"}], matchConstraints={
        "resourceRules": rules, "excludeResourceRules": excl}), binding())
    await p.validate(attrs({"metadata": {"name": "allowed"}}, info=CONFIGMAPS))
    await refused(p, attrs({"metadata": {"name": "other"}}, info=CONFIGMAPS))
    await p.validate(attrs({"metadata": {"name": "ns1"}}, info=NAMESPACES, namespace=""))


async def test_namespace_selector_on_policy_and_binding():
    w = World()
    p = w.plugin(policy(), binding(matchResources={"namespaceSelector": {
        "matchLabels": {"env": "prod"}}}))
    await refused(p, attrs(deployment(replicas=10)))
    await p.validate(attrs(deployment(replicas=10, namespace="dev"), namespace="dev"))
    sel = {"matchExpressions": [{"key": "env", "operator": "In", "values": ["dev"]}]}
    p = w.plugin(policy(matchConstraints={"resourceRules": RULES, "namespaceSelector": sel}),
                 binding())
    await p.validate(attrs(deployment(replicas=10)))
    await refused(p, attrs(deployment(replicas=10, namespace="dev"), namespace="dev"))


async def test_object_selector_matches_new_or_old():
    p = World().plugin(policy(), binding(matchResources={"objectSelector": {
        "matchLabels": {"tier": "web"}}}))
    await p.validate(attrs(deployment(replicas=10)))
    await refused(p, attrs(deployment(replicas=10, labels={"tier": "web"})))
    await refused(p, attrs(deployment(replicas=10), op=UPDATE,
                           old=deployment(labels={"tier": "web"})))


async def test_binding_resource_rules_narrow():
    narrow = {"resourceRules": [{"apiGroups": ["apps"], "apiVersions": ["v1"],
                                 "operations": ["UPDATE"], "resources": ["deployments"]}]}
    p = World().plugin(policy(), binding(matchResources=narrow))
    await p.validate(attrs(deployment(replicas=10)))
    await refused(p, attrs(deployment(replicas=10), op=UPDATE, old=deployment()))


async def test_match_conditions():
    cond = [{"name": "not-system", "expression": "!request.userInfo.username.startsWith('system:')"}]
    p = World().plugin(policy(matchConditions=cond), binding())
    await refused(p, attrs(deployment(replicas=10)))
    await p.validate(attrs(deployment(replicas=10), user=User("system:admin")))
    bad = [{"name": "err", "expression": "object.nope == 1"}]
    p = World().plugin(policy(matchConditions=bad), binding())
    err = await refused(p, attrs(deployment()))
    assert err.message.endswith("with binding 'demo-binding' denied request: expression "
                                "'object.nope == 1' resulted in error: no such key: nope")
    # a false condition wins over an error; Ignore skips the policy on error
    p = World().plugin(policy(matchConditions=bad + [{"name": "f", "expression": "false"}]),
                       binding())
    await p.validate(attrs(deployment()))
    p = World().plugin(policy(matchConditions=bad, failurePolicy="Ignore"), binding())
    await p.validate(attrs(deployment(replicas=10)))


async def test_policy_objects_and_server_writes_are_left_alone():
    star = policy(validations=[{"expression": "false"}], matchConstraints={"resourceRules": [
        {"apiGroups": ["*"], "apiVersions": ["*"], "operations": ["*"], "resources": ["*"]}]})
    p = World().plugin(star, binding())
    vap = ResourceInfo("admissionregistration.k8s.io", "v1", "validatingadmissionpolicies",
                       "ValidatingAdmissionPolicy", False)
    await p.validate(attrs(policy("x"), info=vap, namespace=""))
    await refused(p, attrs(deployment()))


async def test_binding_without_policy_and_unbound_policy_do_nothing():
    p = World().plugin(policy(), binding(policy_name="nope"))
    await p.validate(attrs(deployment(replicas=10)))
    p = World().plugin(policy())
    await p.validate(attrs(deployment(replicas=10)))


# ---- params ----------------------------------------------------------------------------------

PARAM_POLICY = dict(paramKind={"apiVersion": "v1", "kind": "ConfigMap"},
                    validations=[{"expression": "object.spec.replicas <= int(params.data.max)",
                                  "messageExpression": "'max is ' + params.data.max"}])


async def test_params_by_name_from_request_namespace_or_ref_namespace():
    w = World()
    w.configmaps[("apps", "limits")] = {"metadata": {"name": "limits", "namespace": "apps"},
                                        "data": {"max": "4"}}
    w.configmaps[("cfg", "limits")] = {"metadata": {"name": "limits", "namespace": "cfg"},
                                       "data": {"max": "8"}}
    ref = {"name": "limits", "parameterNotFoundAction": "Deny"}
    p = w.plugin(policy(**PARAM_POLICY), binding(paramRef=ref))
    err = await refused(p, attrs(deployment(replicas=6)))
    assert err.message.endswith("denied request: max is 4")
    p = w.plugin(policy(**PARAM_POLICY), binding(paramRef={**ref, "namespace": "cfg"}))
    await p.validate(attrs(deployment(replicas=6)))
    # params carry apiVersion and kind even when the reader's objects lack them
    p = w.plugin(policy(paramKind={"apiVersion": "v1", "kind": "ConfigMap"}, validations=[
        {"expression": "params.kind == 'ConfigMap' && params.apiVersion == 'v1'"}]),
        binding(paramRef=ref))
    await p.validate(attrs(deployment()))


async def test_params_not_found_actions():
    w = World()
    ref = {"name": "missing", "parameterNotFoundAction": "Deny"}
    p = w.plugin(policy(**PARAM_POLICY), binding(paramRef=ref))
    err = await refused(p, attrs(deployment()))
    assert err.message.endswith("ValidatingAdmissionPolicy 'demo-policy' with binding "
                                "'demo-binding' denied request: failed to configure binding: no "
                                "params found for policy binding with `Deny` "
                                "parameterNotFoundAction")
    p = w.plugin(policy(**PARAM_POLICY), binding(paramRef={**ref, "parameterNotFoundAction":
                                                              "Allow"}))
    await p.validate(attrs(deployment(replicas=100)))


async def test_params_by_selector_each_evaluated():
    w = World()
    for n, m in (("a", "9"), ("b", "2"), ("c", "1")):
        w.configmaps[("apps", n)] = {"metadata": {"name": n, "namespace": "apps",
                                                  "labels": {"use": "yes" if n != "c" else "no"}},
                                     "data": {"max": m}}
    ref = {"selector": {"matchLabels": {"use": "yes"}}, "parameterNotFoundAction": "Deny"}
    p = w.plugin(policy(**PARAM_POLICY), binding(paramRef=ref, validationActions=["Warn"]))
    a = attrs(deployment(replicas=5))
    await p.validate(a)
    assert a.warnings == ["Validation failed for ValidatingAdmissionPolicy 'demo-policy' with "
                          "binding 'demo-binding': max is 2"]


async def test_param_kind_not_served_and_namespaced_params_for_cluster_objects():
    w = World()
    p = w.plugin(policy(paramKind={"apiVersion": "example.com/v1", "kind": "Limits"}),
                 binding(paramRef={"name": "x", "parameterNotFoundAction": "Deny"}))
    err = await refused(p, attrs(deployment()))
    assert err.message.endswith("ValidatingAdmissionPolicy 'demo-policy' denied request: failed "
                                "to configure policy: failed to find resource referenced by "
                                "paramKind: 'example.com/v1, Kind=Limits'")
    star = {"resourceRules": [{"apiGroups": [""], "apiVersions": ["v1"], "operations": ["*"],
                               "resources": ["namespaces"]}]}
    p = w.plugin(policy(matchConstraints=star, **PARAM_POLICY),
                 binding(paramRef={"name": "x", "parameterNotFoundAction": "Deny"}))
    err = await refused(p, attrs({"metadata": {"name": "n"}}, info=NAMESPACES, namespace=""))
    assert err.message.endswith("failed to configure binding: cannot use namespaced paramRef in "
                                "policy binding that matches cluster-scoped resources")


async def test_policy_with_param_kind_and_binding_without_ref_sees_null_params():
    p = World().plugin(policy(paramKind={"apiVersion": "v1", "kind": "ConfigMap"},
                              validations=[{"expression": "params == null"}]), binding())
    await p.validate(attrs(deployment()))


# ---- variables and the request -------------------------------------------------------------

async def test_variables_are_lazy_ordered_and_reported():
    variables = [{"name": "replicas", "expression": "object.spec.replicas"},
                 {"name": "big", "expression": "variables.replicas > 5"},
                 {"name": "broken", "expression": "object.nope"}]
    p = World().plugin(policy(variables=variables, validations=[
        {"expression": "!variables.big", "messageExpression":
         "'too big: ' + string(variables.replicas)"}]), binding())
    assert (await refused(p, attrs(deployment(replicas=7)))).message.endswith(
        "denied request: too big: 7")
    await p.validate(attrs(deployment(replicas=2)))  # "broken" never evaluated
    p = World().plugin(policy(variables=variables, validations=[
        {"expression": "variables.broken == 1"}]), binding())
    assert (await refused(p, attrs(deployment()))).message.endswith(
        "expression 'variables.broken == 1' resulted in error: composited variable \"broken\" "
        "fails to evaluate: no such key: nope")
    p = World().plugin(policy(variables=[{"name": "a", "expression": "variables.b"},
                                         {"name": "b", "expression": "1"}],
                              validations=[{"expression": "variables.a == 1"}]), binding())
    assert "composited variable \"a\" fails to compile: compilation failed: ERROR: <input>:1:10:" \
           " undefined field 'b'" in (await refused(p, attrs(deployment()))).message


async def test_request_old_object_and_namespace_object():
    checks = [
        "request.kind == {'group': 'apps', 'version': 'v1', 'kind': 'Deployment'}",
        "request.resource.resource == 'deployments' && request.subResource == ''",
        "request.name == 'web' && request.namespace == 'apps' && request.operation == 'UPDATE'",
        "request.userInfo.username == 'alice' && 'devs' in request.userInfo.groups",
        "request.userInfo.uid == 'u-1' && request.dryRun == false",
        "request.options.kind == 'UpdateOptions'",
        "oldObject.spec.replicas == 1 && object.spec.replicas == 3",
        "namespaceObject.metadata.labels.env == 'prod' && namespaceObject.status.phase == 'Active'",
    ]
    p = World().plugin(policy(validations=[{"expression": c} for c in checks]), binding())
    await p.validate(attrs(deployment(), op=UPDATE, old=deployment(replicas=1)))


async def test_delete_sees_old_object_and_null_object():
    rules = [{"apiGroups": ["apps"], "apiVersions": ["v1"], "operations": ["DELETE"],
              "resources": ["deployments"]}]
    p = World().plugin(policy(matchConstraints={"resourceRules": rules}, validations=[
        {"expression": "object == null && oldObject.metadata.name != 'keep'",
         "reason": "Forbidden", "message": "keep stays"}]), binding())
    await p.validate(attrs(None, op=DELETE, old=deployment("gone")))
    err = await refused(p, attrs(None, op=DELETE, old=deployment("keep")))
    assert err.message == ("deployments.apps \"keep\" is forbidden: ValidatingAdmissionPolicy "
                           "'demo-policy' with binding 'demo-binding' denied request: keep stays")
    assert err.code == 403


async def test_audit_annotations_kept():
    p = World().plugin(policy(auditAnnotations=[
        {"key": "high-replicas", "valueExpression":
         "object.spec.replicas > 2 ? 'replicas ' + string(object.spec.replicas) : null"}],
        validations=[{"expression": "true"}]), binding())
    await p.validate(attrs(deployment(replicas=1)))
    assert list(p.audit_annotations) == []
    await p.validate(attrs(deployment(replicas=4)))
    assert list(p.audit_annotations) == [("demo-policy/high-replicas", "replicas 4")]


# ---- following the objects -------------------------------------------------------------------

async def test_events_compile_once_per_resource_version_and_delete():
    p = World().plugin()
    p.event("ADDED", policy())
    p.event("MODIFIED", policy())
    assert p.compilations == 1
    p.event("MODIFIED", policy(rv="2", validations=[{"expression": "object.spec.replicas <= 20"}]))
    assert p.compilations == 2
    p.event("ADDED", binding())
    await p.validate(attrs(deployment(replicas=10)))
    p.event("MODIFIED", policy(rv="3"))
    await refused(p, attrs(deployment(replicas=10)))
    p.event("DELETED", binding())
    await p.validate(attrs(deployment(replicas=10)))


# ---- the CEL environment ---------------------------------------------------------------------

def ev(expr: str, **activation: Any) -> Any:
    prog = cel.compile_expression(expr, list(activation))
    return cel.from_cel(prog.evaluate({k: cel.to_cel(v) for k, v in activation.items()}))


@pytest.mark.parametrize("expr,want", [
    ("object.spec.replicas <= 5", False),
    ("object.spec.replicas == 10.0", True),
    ("object.spec.replicas > 9.5", True),
    ("object.spec.replicas == '10'", False),
    ("object.spec.containers.all(c, c.image.contains(':'))", False),
    ("object.spec.containers.exists_one(c, c.name == 'a')", True),
    ("object.spec.containers.map(c, c.name)", ["a", "b"]),
    ("object.spec.containers.map(c, c.name == 'a', c.image)", ["nginx:1"]),
    ("object.spec.containers.filter(c, c.name != 'a').size()", 1),
    ("has(object.metadata.labels) && !has(object.metadata.annotations)", True),
    ("'app.kubernetes.io/name' in object.metadata.labels", True),
    ("'Hello'.lowerAscii() + 'x'.upperAscii()", "helloX"),
    ("'a,b,c'.split(',')", ["a", "b", "c"]),
    ("'a,b,c'.split(',', 2)", ["a", "b,c"]),
    ("['a', 'b'].join('-')", "a-b"),
    ("' x '.trim() + 'hello'.substring(1, 3) + 'abc'.charAt(2)", "xelc"),
    ("'hello'.indexOf('l') + 'hello'.lastIndexOf('l')", 5),
    ("'aaa'.replace('a', 'b', 2)", "bba"),
    ("[1, 2, 3].isSorted() && ![2, 1].isSorted()", True),
    ("[1, 2, 3].sum() + [4, 1].min() + [4, 9].max()", 16),
    ("[1, 2, 3].indexOf(2)", 1),
    ("'v1.2.3'.find('[0-9]+') + string('a1b22'.findAll('[0-9]+').size())", "12"),
    ("'abc'.matches('^a.c$')", True),
    ("isURL('https://example.com/a?x=1') && !isURL('example')", True),
    ("url('https://u@example.com:8443/p?x=1&x=2').getHostname()", "example.com"),
    ("url('https://example.com:8443/p').getPort() + url('http://h/a/b').getEscapedPath()",
     "8443/a/b"),
    ("url('https://h/?x=1&x=2').getQuery()", {"x": ["1", "2"]}),
    ("quantity('1Gi').isGreaterThan(quantity('1G')) && isQuantity('100m') && !isQuantity('1x')",
     True),
    ("quantity('1') == quantity('1000m') && quantity('2').compareTo(quantity('1')) == 1", True),
    ("quantity('1.5').add(quantity('500m')).asInteger()", 2),
    ("quantity(object.spec.mem).isLessThan(quantity('1Gi'))", True),
    ("ip('10.0.0.1').family() == 4 && isIP('::1') && !isIP('10.0.0.300')", True),
    ("cidr('10.0.0.0/8').containsIP(ip('10.2.3.4')) && !cidr('10.0.0.0/8').containsIP('11.0.0.1')",
     True),
    ("ip('127.0.0.1').isLoopback() && cidr('10.1.0.0/16').prefixLength() == 16", True),
    ("duration('1h') > duration('30m')", True),
    ("1 in [1.0, 2.0]", True),
])
def test_cel_library(expr: str, want: Any):
    obj = {"metadata": {"labels": {"app.kubernetes.io/name": "web"}},
           "spec": {"replicas": 10, "mem": "512Mi", "containers": [
               {"name": "a", "image": "nginx:1"}, {"name": "b", "image": "busybox"}]}}
    assert ev(expr, object=obj) == want


@pytest.mark.parametrize("expr,error", [
    ("object.spec.nope", "no such key: nope"),
    ("1 / 0 == 1", "division by zero"),
    ("9223372036854775807 + 1 > 0", "integer overflow"),
    ("'a' + 1", "no such overload"),
    ("quantity('1x')", "quantities must match the regular expression"),
    ("'abc'.substring(2, 1)", "invalid substring range. start: 2, end: 1"),
    ("[].max()", "max called on empty list"),
])
def test_cel_errors(expr: str, error: str):
    with pytest.raises(cel.EvalError) as e:
        ev(expr, object={"spec": {}})
    assert str(e.value).startswith(error)


@pytest.mark.parametrize("expr,where", [
    ("nope > 1", "1:1: undeclared reference to 'nope'"),
    ("object.frob()", "1:8: undeclared reference to 'frob'"),
    ("object.x &&", "Syntax error"),
])
def test_cel_compile_errors(expr: str, where: str):
    with pytest.raises(cel.CompileError) as e:
        cel.compile_expression(expr, ["object"])
    assert where in str(e.value)


def test_macro_variables_are_declared():
    assert ev("object.items.all(i, i > 0) && object.items.exists(j, j == 2)",
              object={"items": [1, 2]}) is True
