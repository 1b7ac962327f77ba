"""CRD validation rules, formats, selectableFields and deprecated versions,
through kubectl, with kube-apiserver's messages."""

from __future__ import annotations

import json
from typing import Any

from tests.conftest import Server

GROUP = "rules.example.com"


def _crd(versions: list[dict[str, Any]]) -> str:
    return json.dumps({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": f"widgets.{GROUP}"},
        "spec": {"group": GROUP, "scope": "Namespaced",
                 "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
                 "versions": versions}})


SCHEMA = {"type": "object", "properties": {
    "spec": {"type": "object",
             "x-kubernetes-validations": [{"rule": "self.replicas <= 10",
                                           "message": "replicas must be at most 10"}],
             "properties": {
                 "replicas": {"type": "integer", "x-kubernetes-validations": [
                     {"rule": "self >= oldSelf", "message": "replicas may not decrease"}]},
                 "when": {"type": "string", "format": "date-time"},
                 "color": {"type": "string"},
                 "size": {"type": "string"}}}}}


def _widget(name: str, version: str = "v1", **spec: Any) -> str:
    return json.dumps({"apiVersion": f"{GROUP}/{version}", "kind": "Widget",
                       "metadata": {"name": name}, "spec": spec})


def test_crd_rules_formats_selectable_fields_and_deprecation(server: Server,
                                                             namespace: str) -> None:
    k = server.kubectl
    bad = dict(SCHEMA, **{"x-kubernetes-validations": [{"rule": "self.spec.replicas >"}]})
    res = k("apply", "-f", "-", input=_crd([{"name": "v1", "served": True, "storage": True,
                                              "schema": {"openAPIV3Schema": bad}}]), check=False)
    assert res.returncode != 0
    assert ("spec.versions[0].schema.openAPIV3Schema.x-kubernetes-validations[0].rule: "
            "Invalid value: ") in res.stderr
    assert "compilation failed: ERROR: <input>:1:" in res.stderr

    k("apply", "-f", "-", input=_crd([
        {"name": "v1", "served": True, "storage": True, "schema": {"openAPIV3Schema": SCHEMA},
         "selectableFields": [{"jsonPath": ".spec.color"}]},
        {"name": "v1beta1", "served": True, "storage": False, "deprecated": True,
         "schema": {"openAPIV3Schema": SCHEMA}}]))
    k("wait", "--for=condition=Established", f"crd/widgets.{GROUP}", "--timeout=10s")
    try:
        n = ("-n", namespace)
        res = k(*n, "create", "-f", "-", input=_widget("w", replicas=11), check=False)
        assert res.returncode != 0
        assert ('The Widget "w" is invalid: spec: Invalid value: "object": '
                "replicas must be at most 10") in res.stderr

        res = k(*n, "create", "-f", "-", input=_widget("w", replicas=1, when="soon"),
                check=False)
        assert res.returncode != 0
        assert ('spec.when: Invalid value: "soon": spec.when in body must be of type '
                'date-time: "soon"') in res.stderr

        k(*n, "create", "-f", "-", input=_widget("w", replicas=3, color="red", size="s",
                                                  when="2024-05-01T10:00:00Z"))
        k(*n, "create", "-f", "-", input=_widget("v", replicas=3, color="blue"))
        res = k(*n, "patch", f"widget.{GROUP}", "w", "--type=merge", "-p",
                '{"spec": {"replicas": 2}}', check=False)
        assert res.returncode != 0
        assert ('spec.replicas: Invalid value: "integer": replicas may not decrease'
                in res.stderr)
        k(*n, "patch", f"widget.{GROUP}", "w", "--type=merge", "-p", '{"spec": {"replicas": 5}}')

        got = k(*n, "get", f"widgets.{GROUP}", "--field-selector", "spec.color=red", "-o", "name")
        assert got.stdout.split() == [f"widget.{GROUP}/w"]
        got = k(*n, "get", f"widgets.{GROUP}", "--field-selector", "metadata.name=v", "-o", "name")
        assert got.stdout.split() == [f"widget.{GROUP}/v"]
        res = k(*n, "get", f"widgets.{GROUP}", "--field-selector", "spec.size=s", check=False)
        assert res.returncode != 0
        assert "field label not supported: spec.size" in res.stderr

        got = k(*n, "get", f"widgets.v1beta1.{GROUP}", "w", "-o", "name")
        assert (f"Warning: {GROUP}/v1beta1 Widget is deprecated; use {GROUP}/v1 Widget"
                in got.stderr)
        assert "Warning" not in k(*n, "get", f"widgets.v1.{GROUP}", "w").stderr
    finally:
        k("delete", "crd", f"widgets.{GROUP}", "--wait=false", check=False)
