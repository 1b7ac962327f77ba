"""CustomResourceDefinitions: CRD validation, served resources, and custom
object validation / defaulting / pruning / printer columns."""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from typing import Any

from pinnace.api.crdschema import (
    column_definitions,
    crd_resource_infos,
    default_crd,
    default_custom_object,
    human_duration,
    jsonpath,
    printer_columns,
    prune_custom_object,
    row,
    validate_crd,
    validate_custom_object,
    version_schema,
)

SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "spec": {
            "type": "object",
            "required": ["cronSpec"],
            "properties": {
                "cronSpec": {"type": "string", "pattern": "^(\\d+|\\*)(/\\d+)?(\\s+(\\d+|\\*)"
                             "(/\\d+)?){4}$", "maxLength": 20, "minLength": 3},
                "image": {"type": "string"},
                "replicas": {"type": "integer", "minimum": 1, "maximum": 10, "default": 1},
                "mode": {"type": "string", "enum": ["Fast", "Slow"], "default": "Fast"},
                "tags": {"type": "array", "maxItems": 2, "minItems": 1,
                         "items": {"type": "string"}},
                "port": {"x-kubernetes-int-or-string": True},
                "note": {"type": "string", "nullable": True},
                "extra": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
                "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                "template": {"type": "object", "x-kubernetes-embedded-resource": True,
                             "properties": {"spec": {"type": "object", "properties": {
                                 "x": {"type": "integer"}}}}},
                "items": {"type": "array", "items": {"type": "object", "properties": {
                    "name": {"type": "string"}, "size": {"type": "integer", "default": 5}}}},
            },
        },
        "status": {"type": "object", "properties": {
            "ready": {"type": "integer"},
            "conditions": {"type": "array", "items": {"type": "object",
                                                       "x-kubernetes-preserve-unknown-fields":
                                                           True}}}},
    },
}


def _crd(**over: Any) -> dict[str, Any]:
    crd: dict[str, Any] = {
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "crontabs.stable.example.com"},
        "spec": {
            "group": "stable.example.com", "scope": "Namespaced",
            "names": {"plural": "crontabs", "kind": "CronTab", "shortNames": ["ct"],
                      "categories": ["all"]},
            "versions": [
                {"name": "v1", "served": True, "storage": True,
                 "schema": {"openAPIV3Schema": SCHEMA},
                 "subresources": {"status": {}, "scale": {
                     "specReplicasPath": ".spec.replicas",
                     "statusReplicasPath": ".status.ready"}},
                 "additionalPrinterColumns": [
                     {"name": "Spec", "type": "string", "jsonPath": ".spec.cronSpec"},
                     {"name": "Replicas", "type": "integer", "jsonPath": ".spec.replicas"},
                     {"name": "Ready", "type": "string",
                      "jsonPath": '.status.conditions[?(@.type=="Ready")].status'},
                     {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
                 ]},
                {"name": "v1beta1", "served": True, "storage": False,
                 "schema": {"openAPIV3Schema": SCHEMA}},
                {"name": "v1alpha1", "served": False, "storage": False,
                 "schema": {"openAPIV3Schema": SCHEMA}},
            ],
        },
    }
    crd["spec"].update(over)
    default_crd(crd)
    return crd


def _msgs(errs: list[Any]) -> list[str]:
    return [str(e) for e in errs]


# ------------------------------------------------------------ the CRD

def test_valid_crd_passes_and_defaults_names() -> None:
    crd = _crd()
    assert validate_crd(crd, None) == []
    assert crd["spec"]["names"]["singular"] == "crontab"
    assert crd["spec"]["names"]["listKind"] == "CronTabList"


def test_crd_name_must_be_plural_dot_group() -> None:
    crd = _crd()
    crd["metadata"]["name"] = "crontab.stable.example.com"
    assert _msgs(validate_crd(crd, None)) == [
        'metadata.name: Invalid value: "crontab.stable.example.com": '
        'must be spec.names.plural+"."+spec.group']


def test_crd_group_scope_and_names() -> None:
    crd = _crd(group="example", scope="Global")
    crd["metadata"]["name"] = "crontabs.example"
    crd["spec"]["names"]["plural"] = "CronTabs"
    crd["metadata"]["name"] = "CronTabs.example"
    msgs = _msgs(validate_crd(crd, None))
    assert 'spec.group: Invalid value: "example": should be a domain with at least one dot' \
        in msgs
    assert 'spec.scope: Unsupported value: "Global": supported values: "Cluster", ' \
        '"Namespaced"' in msgs
    assert any(m.startswith('spec.names.plural: Invalid value: "CronTabs": a DNS-1035 label')
               for m in msgs)


def test_crd_needs_exactly_one_storage_version_and_schemas() -> None:
    crd = _crd()
    crd["spec"]["versions"][1]["storage"] = True
    del crd["spec"]["versions"][2]["schema"]
    msgs = _msgs(validate_crd(crd, None))
    assert any("must have exactly one version marked as storage version" in m for m in msgs)
    assert "spec.versions[2].schema.openAPIV3Schema: Required value: schemas are required" \
        in msgs


def test_crd_schema_must_be_structural() -> None:
    crd = _crd()
    crd["spec"]["versions"] = [{"name": "v1", "served": True, "storage": True, "schema": {
        "openAPIV3Schema": {"properties": {"spec": {"properties": {}}}}}}]
    crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["type"] = ""
    msgs = _msgs(validate_crd(crd, None))
    assert "spec.versions[0].schema.openAPIV3Schema.type: Required value: must not be empty " \
        "at the root" in msgs
    assert "spec.versions[0].schema.openAPIV3Schema.properties[spec].type: Required value: " \
        "must not be empty for specified object fields" in msgs


def test_crd_scope_is_immutable() -> None:
    old = _crd()
    new = _crd(scope="Cluster")
    assert _msgs(validate_crd(new, old)) == [
        'spec.scope: Invalid value: "Cluster": field is immutable']


def test_resource_infos_one_per_served_version() -> None:
    infos = crd_resource_infos(_crd())
    assert [i.version for i in infos] == ["v1", "v1beta1"]
    v1 = infos[0]
    assert (v1.group, v1.resource, v1.kind, v1.namespaced) == (
        "stable.example.com", "crontabs", "CronTab", True)
    assert v1.short_names == ("ct",) and v1.categories == ("all",)
    assert v1.subresources == ("status", "scale")
    assert v1.singular_name == "crontab"
    assert infos[1].subresources == () and infos[1].storage_version == "v1"
    assert v1.key("ns", "a") == "/registry/stable.example.com/crontabs/ns/a"
    assert version_schema(_crd(), "v1beta1") is SCHEMA


# ------------------------------------------------------- custom objects

def _obj(**spec: Any) -> dict[str, Any]:
    return {"apiVersion": "stable.example.com/v1", "kind": "CronTab",
            "metadata": {"name": "a", "namespace": "default"},
            "spec": {"cronSpec": "* * * * */5", **spec}}


def test_valid_object_passes() -> None:
    obj = _obj(replicas=3, tags=["a"], port="http", note=None, extra={"any": {"thing": 1}},
               labels={"a": "b"}, template={"apiVersion": "v1", "kind": "Pod",
                                            "spec": {"x": 1}})
    assert validate_custom_object(SCHEMA, obj) == []


def test_type_errors_are_worded_like_upstream() -> None:
    msgs = _msgs(validate_custom_object(SCHEMA, _obj(replicas="string", image=None)))
    assert msgs == [
        'spec.replicas: Invalid value: "string": spec.replicas in body must be of type '
        'integer: "string"',
        'spec.image: Invalid value: "null": spec.image in body must be of type string: "null"',
    ]


def test_bounds_enum_pattern_and_lengths() -> None:
    obj = _obj(replicas=11, mode="Medium", tags=["a", "b", "c"], port=1.5)
    obj["spec"]["cronSpec"] = "xx"
    msgs = _msgs(validate_custom_object(SCHEMA, obj))
    assert msgs == [
        'spec.cronSpec: Invalid value: "xx": spec.cronSpec in body should be at least 3 chars '
        'long',
        "spec.cronSpec: Invalid value: \"xx\": spec.cronSpec in body should match "
        "'^(\\d+|\\*)(/\\d+)?(\\s+(\\d+|\\*)(/\\d+)?){4}$'",
        "spec.replicas: Invalid value: 11: spec.replicas in body should be less than or "
        "equal to 10",
        'spec.mode: Unsupported value: "Medium": supported values: "Fast", "Slow"',
        "spec.tags: Too many: 3: must have at most 2 items",
        'spec.port: Invalid value: "number": spec.port in body must be of type '
        'integer,string: "number"',
    ]
    low = _msgs(validate_custom_object(SCHEMA, _obj(replicas=0, tags=[])))
    assert low == [
        "spec.replicas: Invalid value: 0: spec.replicas in body should be greater than or "
        "equal to 1",
        "spec.tags: Invalid value: []: spec.tags in body should have at least 1 items",
    ]


def test_required_and_too_long() -> None:
    obj = _obj()
    del obj["spec"]["cronSpec"]
    assert _msgs(validate_custom_object(SCHEMA, obj)) == ["spec.cronSpec: Required value"]
    obj = _obj()
    obj["spec"]["cronSpec"] = "1 2 3 4 5" + " " * 20
    assert "spec.cronSpec: Too long: may not be more than 20 bytes" in _msgs(
        validate_custom_object(SCHEMA, obj))


def test_embedded_resource_needs_apiversion_and_kind() -> None:
    msgs = _msgs(validate_custom_object(SCHEMA, _obj(template={"spec": {"x": "no"}})))
    assert msgs == [
        "spec.template.apiVersion: Required value: must not be empty",
        "spec.template.kind: Required value: must not be empty",
        'spec.template.spec.x: Invalid value: "string": spec.template.spec.x in body must be '
        'of type integer: "string"',
    ]


def test_validate_with_path_prefix() -> None:
    status_schema = SCHEMA["properties"]["status"]
    assert _msgs(validate_custom_object(status_schema, {"ready": "x"}, "status")) == [
        'status.ready: Invalid value: "string": status.ready in body must be of type integer: '
        '"string"']


def test_defaults_are_applied_recursively() -> None:
    obj = _obj(items=[{"name": "a"}, {"name": "b", "size": 2}])
    default_custom_object(SCHEMA, obj)
    assert obj["spec"]["replicas"] == 1 and obj["spec"]["mode"] == "Fast"
    assert obj["spec"]["items"] == [{"name": "a", "size": 5}, {"name": "b", "size": 2}]
    nulled = _obj(replicas=None)
    default_custom_object(SCHEMA, nulled)
    assert nulled["spec"]["replicas"] == 1


def test_defaults_are_copies() -> None:
    schema = {"type": "object", "properties": {"l": {"type": "array", "default": ["a"],
                                                     "items": {"type": "string"}}}}
    a: dict[str, Any] = {}
    b: dict[str, Any] = {}
    default_custom_object(schema, a)
    default_custom_object(schema, b)
    a["l"].append("b")
    assert b["l"] == ["a"]


def test_pruning_drops_unknown_fields_and_reports_paths() -> None:
    obj = _obj(prots=1, extra={"kept": True}, items=[{"name": "a", "zzz": 1}],
               template={"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "x", "q": 1},
                         "spec": {"x": 1, "y": 2}})
    obj["metadata"]["bogus"] = 1
    obj["status"] = {"conditions": [{"type": "Ready", "anything": 1}], "what": 1}
    pruned = prune_custom_object(SCHEMA, obj)
    # Document order: the object's keys as given.
    assert pruned == ["metadata.bogus", "spec.prots", "spec.items[0].zzz",
                      "spec.template.metadata.q", "spec.template.spec.y", "status.what"]
    assert "bogus" not in obj["metadata"]
    assert obj["spec"]["extra"] == {"kept": True}
    assert obj["spec"]["items"] == [{"name": "a"}]
    assert obj["status"]["conditions"] == [{"type": "Ready", "anything": 1}]
    assert obj["spec"]["template"] == {"apiVersion": "v1", "kind": "Pod",
                                       "metadata": {"name": "x"}, "spec": {"x": 1}}


def test_pruning_a_clean_object_changes_nothing() -> None:
    obj = _obj(replicas=2)
    before = copy.deepcopy(obj)
    assert prune_custom_object(SCHEMA, obj) == []
    assert obj == before


# ------------------------------------------------------- printer columns

def test_printer_columns_and_rows() -> None:
    cols = printer_columns(_crd(), "v1")
    assert [c["name"] for c in cols] == ["Name", "Spec", "Replicas", "Ready", "Age"]
    defs = column_definitions(cols)
    assert defs[0]["format"] == "name" and set(defs[1]) == {
        "name", "type", "format", "description", "priority"}
    obj = _obj(replicas=3)
    obj["metadata"]["creationTimestamp"] = "2024-01-01T00:00:00Z"
    obj["status"] = {"conditions": [{"type": "Synced", "status": "False"},
                                    {"type": "Ready", "status": "True"}]}
    now = datetime(2024, 1, 1, 0, 5, tzinfo=UTC)
    assert row(cols, obj, now) == ["a", "* * * * */5", 3, "True", "5m"]
    del obj["status"]
    assert row(cols, obj, now)[3] is None


def test_default_columns_without_printer_columns() -> None:
    cols = printer_columns(_crd(), "v1beta1")
    assert [c["name"] for c in cols] == ["Name", "Age"]


def test_jsonpath_forms() -> None:
    doc = {"spec": {"list": [{"a": 1}, {"a": 2}], "m": {"k.x": "v"}}}
    assert jsonpath(".spec.list[1].a", doc) == [2]
    assert jsonpath("{.spec.list[*].a}", doc) == [1, 2]
    assert jsonpath(".spec.list[-1].a", doc) == [2]
    assert jsonpath(".spec.m['k.x']", doc) == ["v"]
    assert jsonpath(".spec.missing.x", doc) == []
    assert jsonpath('.spec.list[?(@.a==2)].a', doc) == [2]


def test_human_duration() -> None:
    assert [human_duration(s) for s in (5, 119, 300, 3600 * 3 + 60, 3600 * 30, 86400 * 3,
                                        86400 * 400)] == ["5s", "119s", "5m", "3h1m", "30h",
                                                          "3d", "400d"]
