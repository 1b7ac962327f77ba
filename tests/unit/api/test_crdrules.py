"""CRD x-kubernetes-validations rules, string formats, ratcheting,
selectableFields and deprecation warnings, with upstream's messages."""

from __future__ import annotations

from typing import Any

import pytest

from pinnace.api import crdformats, crdrules, crdschema, selectors


def _schema(**spec_props: Any) -> dict[str, Any]:
    return {"type": "object", "properties": {"spec": {
        "type": "object", "properties": spec_props,
        "x-kubernetes-validations": [{"rule": "self.replicas <= 10",
                                      "message": "replicas must be at most 10"}]}}}


def _obj(**spec: Any) -> dict[str, Any]:
    return {"apiVersion": "x.example.com/v1", "kind": "Widget", "metadata": {"name": "w"},
            "spec": spec}


def _errors(schema: dict[str, Any], obj: Any, old: Any = None) -> list[str]:
    return [str(e) for e in crdrules.validate(schema, obj, old).errors]


def test_a_failing_rule_gives_upstreams_error() -> None:
    s = _schema(replicas={"type": "integer"})
    assert _errors(s, _obj(replicas=3)) == []
    assert _errors(s, _obj(replicas=11)) == [
        'spec: Invalid value: "object": replicas must be at most 10']


def test_default_message_reason_field_path_and_message_expression() -> None:
    s = {"type": "object", "properties": {"spec": {"type": "object", "properties": {
        "name": {"type": "string", "x-kubernetes-validations": [{"rule": "self.size() < 3"}]},
        "a": {"type": "integer"}},
        "x-kubernetes-validations": [
            {"rule": "self.a > 0", "reason": "FieldValueForbidden", "fieldPath": ".a",
             "messageExpression": "'a is ' + string(self.a)"},
            {"rule": "has(self.name)", "reason": "FieldValueRequired", "message": "name!"}]}}}
    assert _errors(s, _obj(name="long", a=0)) == [
        "spec.a: Forbidden: a is 0",
        'spec.name: Invalid value: "string": failed rule: self.size() < 3']
    assert _errors(s, _obj(a=1)) == ["spec: Required value: name!"]


def test_root_rules_see_apiversion_kind_and_name_only() -> None:
    s = {"type": "object", "x-kubernetes-validations": [
        {"rule": "self.metadata.name.startsWith('w') && self.kind == 'Widget'"},
        {"rule": "!has(self.metadata.labels)"}]}
    obj = _obj()
    obj["metadata"]["labels"] = {"a": "b"}
    assert _errors(s, obj) == []
    obj["metadata"]["name"] = "x"
    assert _errors(s, obj) == [
        "<nil>: Invalid value: \"object\": failed rule: "
        "self.metadata.name.startsWith('w') && self.kind == 'Widget'"]


def test_runtime_errors_are_reported_with_the_rule() -> None:
    s = {"type": "object", "properties": {"spec": {"type": "object", "properties": {
        "m": {"type": "object", "additionalProperties": {"type": "string"}}},
        "x-kubernetes-validations": [{"rule": "self.m.x == 'y'"}]}}}
    assert _errors(s, _obj(m={})) == [
        "spec: Invalid value: \"object\": no such key: x evaluating rule: self.m.x == 'y'"]


def test_transition_rules_run_only_with_an_old_value() -> None:
    s = _schema(replicas={"type": "integer", "x-kubernetes-validations": [
        {"rule": "self >= oldSelf", "message": "may not decrease"}]})
    assert _errors(s, _obj(replicas=2)) == []  # create: no oldSelf
    assert _errors(s, _obj(replicas=3), _obj(replicas=2)) == []
    assert _errors(s, _obj(replicas=1), _obj(replicas=2)) == [
        'spec.replicas: Invalid value: "integer": may not decrease']
    assert _errors(s, _obj(replicas=1), _obj()) == []  # no old value at that path


def test_optional_old_self_runs_on_create_too() -> None:
    s = _schema(replicas={"type": "integer", "x-kubernetes-validations": [
        {"rule": "oldSelf.hasValue() || self == 1", "optionalOldSelf": True,
         "message": "starts at 1"}]})
    assert _errors(s, _obj(replicas=2)) == ['spec.replicas: Invalid value: "integer": starts at 1']
    assert _errors(s, _obj(replicas=2), _obj(replicas=1)) == []


def test_map_lists_correlate_items_by_key() -> None:
    s = {"type": "object", "properties": {"spec": {"type": "object", "properties": {"ports": {
        "type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"],
        "items": {"type": "object", "properties": {
            "name": {"type": "string"}, "port": {"type": "integer"}},
            "x-kubernetes-validations": [{"rule": "self.port == oldSelf.port",
                                          "message": "port is immutable"}]}}}}}}
    old = _obj(ports=[{"name": "a", "port": 1}, {"name": "b", "port": 2}])
    assert _errors(s, _obj(ports=[{"name": "b", "port": 2}, {"name": "a", "port": 1}]), old) == []
    assert _errors(s, _obj(ports=[{"name": "b", "port": 3}]), old) == [
        'spec.ports[0]: Invalid value: "object": port is immutable']


def test_unchanged_values_ratchet_to_warnings() -> None:
    s = _schema(replicas={"type": "integer"}, other={"type": "string"})
    res = crdrules.validate(s, _obj(replicas=11, other="b"), _obj(replicas=11, other="a"))
    assert [str(e) for e in res.errors] == [
        'spec: Invalid value: "object": replicas must be at most 10']  # spec changed
    s = _schema(replicas={"type": "integer", "x-kubernetes-validations": [{"rule": "self < 5"}]},
                other={"type": "string"})
    res = crdrules.validate(s, _obj(replicas=11, other="b"), _obj(replicas=11, other="a"))
    assert res.warnings == ['spec.replicas: Invalid value: "integer": failed rule: self < 5']


def test_blocking_schema_errors_leave_rules_unchecked() -> None:
    s = _schema(replicas={"type": "integer"})
    from pinnace.api import field
    res = crdrules.validate(s, _obj(replicas=11), None, [field.required("spec.x")])
    assert [str(e) for e in res.errors] == [
        "<nil>: Invalid value: null: some validation rules were not checked because the "
        "object was invalid; correct the existing errors to complete validation"]


def test_crd_refuses_rules_that_do_not_compile() -> None:
    sch = {"type": "object", "properties": {"spec": {"type": "object",
           "x-kubernetes-validations": [{"rule": "self.x >"}, {"rule": "nope(self)"}]}}}
    errs = [str(e) for e in crdschema._structural(sch, "p", root=True)]
    assert len(errs) == 2
    assert errs[0].startswith(
        'p.properties[spec].x-kubernetes-validations[0].rule: Invalid value: {"Rule":"self.x >",'
        '"Message":"","MessageExpression":"","Reason":null,"FieldPath":"","OptionalOldSelf":null}:'
        " compilation failed: ERROR: <input>:1:")
    assert "undeclared reference to 'nope'" in errs[1]


def test_crd_rule_entries_are_checked() -> None:
    sch = {"type": "object", "properties": {
        "l": {"type": "array", "items": {"type": "integer", "x-kubernetes-validations": [
            {"rule": "self >= oldSelf"}]}},
        "s": {"type": "object", "x-kubernetes-validations": [
            {"rule": ""}, {"rule": "true", "reason": "Nope"}, {"rule": "true", "fieldPath": ".x"},
            {"rule": "a ||\nb"}]}},
        "x-kubernetes-validations": [{"rule": "true", "optionalOldSelf": True}]}
    errs = [str(e) for e in crdschema._structural(sch, "p", root=True)]
    assert errs == [
        'p.properties[l].items.x-kubernetes-validations[0].rule: Invalid value: '
        '"self >= oldSelf": oldSelf cannot be used on the uncorrelatable portion of the schema '
        'within p.properties[l]',
        "p.properties[s].x-kubernetes-validations[0].rule: Required value: rule is not specified",
        'p.properties[s].x-kubernetes-validations[1].reason: Unsupported value: "Nope": '
        'supported values: "FieldValueDuplicate", "FieldValueForbidden", "FieldValueInvalid", '
        '"FieldValueRequired"',
        'p.properties[s].x-kubernetes-validations[2].fieldPath: Invalid value: ".x": '
        "must be a valid path",
        "p.properties[s].x-kubernetes-validations[3].message: Required value: "
        "message must be specified if rule contains line breaks",
        "p.x-kubernetes-validations[0].optionalOldSelf: Invalid value: true: "
        "may not be set if oldSelf is not used in rule"]


@pytest.mark.parametrize("fmt,good,bad", [
    ("date-time", "2024-05-01T10:00:00Z", "tomorrow"),
    ("date", "2024-02-29", "2023-02-29"),
    ("ipv4", "10.0.0.1", "::1"),
    ("ipv6", "fe80::1", "10.0.0.1"),
    ("cidr", "10.0.0.0/8", "10.0.0.0/33"),
    ("uuid", "123e4567-e89b-12d3-a456-426614174000", "123"),
    ("uuid4", "123e4567-e89b-42d3-a456-426614174000", "123e4567-e89b-12d3-a456-426614174000"),
    ("hostname", "example.com", "-bad"),
    ("email", "a@example.com", "nobody"),
    ("uri", "https://example.com/x", "not a uri"),
    ("byte", "aGVsbG8=", "@@"),
    ("duration", "1h30m", "soon"),
    ("mac", "00:11:22:33:44:55", "00:11"),
    ("k8s-short-name", "my-name", "My_Name"),
])
def test_formats(fmt: str, good: str, bad: str) -> None:
    assert crdformats.check(fmt, good) is True
    assert crdformats.check(fmt, bad) is False


def test_format_errors_and_unknown_formats() -> None:
    sch = {"type": "object", "properties": {"spec": {"type": "object", "properties": {
        "when": {"type": "string", "format": "date-time"},
        "odd": {"type": "string", "format": "no-such-format"}}}}}
    errs = crdschema.validate_custom_object(sch, _obj(when="x", odd="y"))
    assert [str(e) for e in errs] == [
        'spec.when: Invalid value: "x": spec.when in body must be of type date-time: "x"']
    # Ratcheting: the same bad value, unchanged by an update, is not refused again.
    assert crdschema.validate_custom_object(sch, _obj(when="x", odd="z"),
                                            old=_obj(when="x", odd="y")) == []


def test_selectable_fields_are_validated() -> None:
    sch = {"type": "object", "properties": {"spec": {"type": "object", "properties": {
        "color": {"type": "string"}, "n": {"type": "integer"},
        "o": {"type": "object"}}}}}
    errs = crdschema._selectable_fields(
        [{"jsonPath": ".spec.color"}, {"jsonPath": ".spec.color"}, {"jsonPath": ".spec.o"},
         {"jsonPath": ".spec.nope"}, {"jsonPath": ".metadata.name"}], sch, "sf")
    assert [str(e) for e in errs] == [
        'sf[1].jsonPath: Duplicate value: ".spec.color"',
        'sf[2].jsonPath: Invalid value: ".spec.o": must point to a field of type string, '
        "boolean or integer. Enum string fields and strings with formats are allowed.",
        'sf[3].jsonPath: Invalid value: ".spec.nope": is an invalid path: '
        "does not refer to a valid field",
        'sf[4].jsonPath: Invalid value: ".metadata.name": is an invalid path: '
        "does not refer to a valid field"]
    many = [{"jsonPath": f".spec.f{i}"} for i in range(9)]
    wide = {"type": "object", "properties": {"spec": {"type": "object", "properties": {
        f"f{i}": {"type": "string"} for i in range(9)}}}}
    assert [str(e) for e in crdschema._selectable_fields(many, wide, "sf")] == [
        "sf: Too many: 9: must have at most 8 items"]


def test_custom_field_selectors() -> None:
    allowed = selectors.custom_fields(True, ("spec.color", "spec.n"))
    sel = selectors.parse_field_selector("spec.color=red,spec.n=3")
    selectors.check_custom_selector(sel, allowed)
    with pytest.raises(selectors.SelectorError, match="field label not supported: spec.size"):
        selectors.check_custom_selector(selectors.parse_field_selector("spec.size=1"), allowed)
    fields = selectors.custom_field_set(_obj(color="red", n=3), True, ("spec.color", "spec.n"))
    assert sel.matches(fields)
    assert selectors.custom_field_set(_obj(), False, ("spec.color",)) == {
        "metadata.name": "w", "spec.color": ""}


def test_deprecation_warnings() -> None:
    crd = {"spec": {"group": "x.example.com", "names": {"kind": "Widget"}, "versions": [
        {"name": "v1alpha1", "served": True, "deprecated": True},
        {"name": "v1beta1", "served": True, "deprecated": True, "deprecationWarning": "old!"},
        {"name": "v1", "served": True},
        {"name": "v2", "served": False}]}}
    assert crdschema.deprecation_warning(crd, "v1alpha1") == (
        "x.example.com/v1alpha1 Widget is deprecated; use x.example.com/v1 Widget")
    assert crdschema.deprecation_warning(crd, "v1beta1") == "old!"
    assert crdschema.deprecation_warning(crd, "v1") is None
    crd["spec"]["versions"][2]["deprecated"] = True
    assert crdschema.deprecation_warning(crd, "v1") == "x.example.com/v1 Widget is deprecated"
    v = {"name": "v1", "deprecationWarning": "x"}
    assert [str(e) for e in crdschema._deprecation_warning(v, "p")] == [
        'p.deprecationWarning: Invalid value: "x": can only be set for deprecated versions']


def test_an_expensive_rule_is_stopped_not_left_to_run() -> None:
    """A rule over a big list, quadratic: cut off with upstream's words
    instead of holding the API server's loop for minutes."""
    from pinnace.api import cel

    program = cel.compile_expression("self.all(x, self.all(y, x + y > 0))", ["self"])
    with pytest.raises(cel.EvalError, match="operation cancelled: actual cost limit exceeded"):
        program.evaluate({"self": cel.to_cel(list(range(1, 2000)))})
    assert program.evaluate({"self": cel.to_cel(list(range(1, 20)))})  # small lists pass


def test_one_objects_rules_share_a_budget() -> None:
    """Many items each under the per-rule limit still stop, together, with
    upstream's message, instead of adding up without end."""
    from pinnace.api import crdrules

    schema = {"type": "object", "properties": {"items": {"type": "array", "items": {
        "type": "object", "properties": {"n": {"type": "array", "items": {"type": "integer"}}},
        "x-kubernetes-validations": [{"rule": "self.n.all(x, self.n.all(y, x + y > 0))"}]}}}}
    item = {"n": list(range(1, 30))}  # ~20,000 steps per item: under the per-rule limit
    res = crdrules.validate(schema, {"items": [item] * 200})
    assert any(crdrules.OUT_OF_BUDGET in e.detail for e in res.errors)
    assert not crdrules.validate(schema, {"items": [item] * 2}).errors
