"""Server-side field validation of built-in kinds, worded as kube-apiserver's
strict decoder words it."""

from __future__ import annotations

from typing import Any

import orjson

from pinnace.api.fieldcheck import (
    check_definition,
    check_fields,
    decode_error_message,
    strict_error_message,
    strict_issues,
)


def _pod(**spec: Any) -> dict[str, Any]:
    containers = [{"name": f"c{i}", "image": "nginx", "ports": [{"containerPort": 80}],
                   "env": [{"name": "A", "value": "b"}],
                   "resources": {"limits": {"cpu": "1", "memory": "64Mi"}}} for i in range(3)]
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "p", "labels": {"app": "x"}, "annotations": {"a": "b"}},
            "spec": {"containers": containers, **spec}}


def test_valid_pod_has_no_issues() -> None:
    assert check_fields("", "v1", "Pod", _pod(restartPolicy="Always")) == []


def test_unknown_fields_are_named_by_full_path() -> None:
    pod = _pod(prots=[1])
    pod["spec"]["containers"][1]["foo"] = "x"
    pod["metadata"]["bogus"] = True
    issues = check_fields("", "v1", "Pod", pod)
    assert [i.message for i in issues] == [
        'unknown field "metadata.bogus"',
        'unknown field "spec.containers[1].foo"',
        'unknown field "spec.prots"',
    ]
    assert all(i.kind == "unknown" for i in issues)
    assert issues[1].path == "spec.containers[1].foo"


def test_strict_message_matches_conformance_wording() -> None:
    raw = (b'{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"my-dep"},'
           b'"spec":{"unknownField":"foo","replicas":2,"replicas":3,'
           b'"selector":{"matchLabels":{"app":"nginx"}},"template":{"metadata":'
           b'{"labels":{"app":"nginx"}},"spec":{"containers":[{"name":"nginx",'
           b'"image":"nginx:latest"}]}}}}')
    issues = check_fields("apps", "v1", "Deployment", orjson.loads(raw), raw)
    assert [(i.kind, i.path) for i in issues] == [("unknown", "spec.unknownField"),
                                                 ("duplicate", "spec.replicas")]
    assert strict_error_message(issues) == (
        'strict decoding error: unknown field "spec.unknownField", '
        'duplicate field "spec.replicas"')
    assert decode_error_message("Deployment", "v1", strict_error_message(issues)).startswith(
        'Deployment in version "v1" cannot be handled as a Deployment: strict decoding error')


def test_type_mismatch_uses_go_decoder_wording() -> None:
    dep = {"apiVersion": "apps/v1", "kind": "Deployment",
           "spec": {"replicas": "3", "template": {"spec": {"containers": [
               {"name": "a", "env": [{"name": "x", "value": 5}]}]}}}}
    issues = check_fields("apps", "v1", "Deployment", dep)
    assert [i.message for i in issues] == [
        "json: cannot unmarshal string into Go struct field DeploymentSpec.spec.replicas "
        "of type int32",
        "json: cannot unmarshal number into Go struct field "
        "EnvVar.spec.template.spec.containers.env.value of type string",
    ]
    assert issues[1].path == "spec.template.spec.containers[0].env[0].value"
    assert strict_issues(issues) == []


def test_object_where_struct_expected_and_labels_typed() -> None:
    issues = check_fields("", "v1", "Pod", {"metadata": {"labels": {"a": 1}}, "spec": "x"})
    assert [i.message for i in issues] == [
        "json: cannot unmarshal number into Go struct field ObjectMeta.metadata.labels "
        "of type string",
        "json: cannot unmarshal string into Go struct field Pod.spec of type v1.PodSpec",
    ]


def test_int_or_string_quantity_and_nulls_are_accepted() -> None:
    dep = {"spec": {"strategy": {"rollingUpdate": {"maxSurge": "25%", "maxUnavailable": 1}},
                    "template": {"spec": {"containers": [{"name": "a", "resources": {
                        "requests": {"cpu": 0.5, "memory": "1Gi"}}}], "nodeSelector": None}}}}
    assert check_fields("apps", "v1", "Deployment", dep) == []


def test_free_form_fields_accept_anything() -> None:
    obj = {"metadata": {"managedFields": [{"manager": "m", "fieldsV1": {"f:spec": {"x": 1}}}]},
           "data": {"anything": [1, {"goes": True}]}, "revision": 1}
    assert check_fields("apps", "v1", "ControllerRevision", obj) == []


def test_unknown_kind_has_no_schema() -> None:
    assert check_fields("stable.example.com", "v1", "CronTab", {"spec": {"x": 1}}) == []


def test_check_definition_for_embedded_metadata() -> None:
    issues = check_definition("io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta",
                              {"name": "a", "foo": 1}, "spec.template.metadata")
    assert [i.message for i in issues] == ['unknown field "spec.template.metadata.foo"']


def test_definitions_are_compiled_once() -> None:
    from pinnace.api import fieldcheck
    check_fields("", "v1", "Pod", _pod())
    node = fieldcheck._def_node("io.k8s.api.core.v1.Container")
    assert fieldcheck._def_node("io.k8s.api.core.v1.Container") is node
    assert "image" in node.props
