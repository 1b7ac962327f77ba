"""JSON patch, merge patch and strategic merge patch as kubectl uses them."""

from __future__ import annotations

import copy

import pytest

from pinnace.api import schema
from pinnace.api.patch import PatchError, json_patch, merge_patch, strategic_merge_patch

DEPLOY = schema.for_gvk("apps", "v1", "Deployment")
POD = schema.for_gvk("", "v1", "Pod")
SERVICE = schema.for_gvk("", "v1", "Service")


def deployment() -> dict:
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "default",
                     "labels": {"app": "web", "tier": "front"},
                     "annotations": {"a": "1"}, "finalizers": ["x/a", "x/b"]},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "web"}},
            "strategy": {"type": "RollingUpdate",
                         "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {
                    "containers": [
                        {"name": "web", "image": "nginx:1.25",
                         "ports": [{"containerPort": 80, "protocol": "TCP"}],
                         "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}],
                         "args": ["--x", "--y"]},
                        {"name": "sidecar", "image": "busybox"},
                    ],
                    "volumes": [{"name": "data", "emptyDir": {}}],
                },
            },
        },
    }


# ---------------------------------------------------------------- JSON patch

def test_json_patch_operations_and_no_mutation() -> None:
    d = deployment()
    before = copy.deepcopy(d)
    out = json_patch(d, [
        {"op": "replace", "path": "/spec/replicas", "value": 5},
        {"op": "add", "path": "/metadata/labels/new", "value": "x"},
        {"op": "remove", "path": "/metadata/labels/tier"},
        {"op": "add", "path": "/spec/template/spec/containers/0/args/-", "value": "--z"},
        {"op": "add", "path": "/spec/template/spec/containers/0/args/0", "value": "--first"},
        {"op": "copy", "from": "/metadata/labels", "path": "/metadata/annotations"},
        {"op": "move", "from": "/metadata/finalizers/1", "path": "/metadata/finalizers/0"},
        {"op": "test", "path": "/spec/replicas", "value": 5},
    ])
    assert d == before
    assert out["spec"]["replicas"] == 5
    assert out["metadata"]["labels"] == {"app": "web", "new": "x"}
    assert out["metadata"]["annotations"] == {"app": "web", "new": "x"}
    assert out["metadata"]["finalizers"] == ["x/b", "x/a"]
    assert out["spec"]["template"]["spec"]["containers"][0]["args"] == ["--first", "--x", "--y",
                                                                        "--z"]


def test_json_patch_escapes() -> None:
    obj = {"metadata": {"annotations": {"example.com/a~b": "1"}}}
    out = json_patch(obj, [
        {"op": "replace", "path": "/metadata/annotations/example.com~1a~0b", "value": "2"}])
    assert out["metadata"]["annotations"] == {"example.com/a~b": "2"}


def test_json_patch_test_failure_message() -> None:
    with pytest.raises(PatchError) as e:
        json_patch(deployment(), [{"op": "test", "path": "/spec/replicas", "value": 3}])
    assert str(e.value) == "testing value /spec/replicas failed: test failed"


def test_json_patch_missing_path_messages() -> None:
    with pytest.raises(PatchError) as e:
        json_patch({"spec": {}}, [{"op": "add", "path": "/spec/a/b", "value": 1}])
    assert str(e.value) == 'add operation does not apply: doc is missing path: "/spec/a/b": ' \
        "missing value"
    with pytest.raises(PatchError) as e:
        json_patch({"spec": {}}, [{"op": "remove", "path": "/spec/x"}])
    assert str(e.value) == "error in remove for path: '/spec/x': " \
        "Unable to remove nonexistent key: x: missing value"
    with pytest.raises(PatchError) as e:
        json_patch({"a": [1]}, [{"op": "add", "path": "/a/5", "value": 1}])
    assert "Unable to access invalid index: 5" in str(e.value)
    with pytest.raises(PatchError) as e:
        json_patch({}, [{"op": "frob", "path": "/a"}])
    assert str(e.value) == "Unexpected kind: frob"


def test_json_patch_replace_missing_member_adds_it_like_upstream() -> None:
    assert json_patch({"spec": {}}, [{"op": "replace", "path": "/spec/x", "value": 1}]) == \
        {"spec": {"x": 1}}


def test_json_patch_test_distinguishes_bool_from_number() -> None:
    with pytest.raises(PatchError):
        json_patch({"a": True}, [{"op": "test", "path": "/a", "value": 1}])
    json_patch({"a": 1}, [{"op": "test", "path": "/a", "value": 1.0}])


def test_json_patch_failure_leaves_input_untouched() -> None:
    d = deployment()
    before = copy.deepcopy(d)
    with pytest.raises(PatchError):
        json_patch(d, [{"op": "remove", "path": "/metadata/labels/app"},
                       {"op": "test", "path": "/spec/replicas", "value": 9}])
    assert d == before


# --------------------------------------------------------------- merge patch

def test_merge_patch_null_deletes_and_lists_replace() -> None:
    d = deployment()
    before = copy.deepcopy(d)
    out = merge_patch(d, {"metadata": {"labels": {"tier": None, "x": "y"}},
                          "spec": {"replicas": 3, "template": {"spec": {"containers": [
                              {"name": "only", "image": "i"}]}}}})
    assert d == before
    assert out["metadata"]["labels"] == {"app": "web", "x": "y"}
    assert out["spec"]["replicas"] == 3
    assert out["spec"]["template"]["spec"]["containers"] == [{"name": "only", "image": "i"}]
    assert out["spec"]["template"]["spec"]["volumes"] == before["spec"]["template"]["spec"][
        "volumes"]


# ---------------------------------------------------- strategic merge patch

def containers(obj: dict) -> list[dict]:
    return obj["spec"]["template"]["spec"]["containers"]


def test_smp_changes_one_container_image_kubectl_set_image() -> None:
    d = deployment()
    before = copy.deepcopy(d)
    out = strategic_merge_patch(d, {"spec": {"template": {"spec": {"containers": [
        {"name": "web", "image": "nginx:1.26"}]}}}}, DEPLOY)
    assert d == before
    assert [c["image"] for c in containers(out)] == ["nginx:1.26", "busybox"]
    assert containers(out)[0]["ports"] == [{"containerPort": 80, "protocol": "TCP"}]


def test_smp_kubectl_apply_patch_with_set_element_order() -> None:
    # What client-side apply sends after changing the image in the file.
    patch = {"spec": {"template": {"spec": {
        "$setElementOrder/containers": [{"name": "web"}, {"name": "sidecar"}],
        "containers": [{"image": "nginx:1.27", "name": "web"}]}}}}
    out = strategic_merge_patch(deployment(), patch, DEPLOY)
    assert [(c["name"], c["image"]) for c in containers(out)] == [
        ("web", "nginx:1.27"), ("sidecar", "busybox")]


def test_smp_remove_env_var_and_label() -> None:
    patch = {
        "metadata": {"labels": {"tier": None}},
        "spec": {"template": {"spec": {
            "$setElementOrder/containers": [{"name": "web"}, {"name": "sidecar"}],
            "containers": [{"$setElementOrder/env": [{"name": "A"}], "name": "web",
                            "env": [{"$patch": "delete", "name": "B"}]}]}}}}
    out = strategic_merge_patch(deployment(), patch, DEPLOY)
    assert out["metadata"]["labels"] == {"app": "web"}
    assert containers(out)[0]["env"] == [{"name": "A", "value": "1"}]


def test_smp_add_container_and_reorder() -> None:
    patch = {"spec": {"template": {"spec": {
        "$setElementOrder/containers": [{"name": "sidecar"}, {"name": "new"}, {"name": "web"}],
        "containers": [{"name": "new", "image": "redis"}]}}}}
    out = strategic_merge_patch(deployment(), patch, DEPLOY)
    assert [c["name"] for c in containers(out)] == ["sidecar", "new", "web"]


def test_smp_ports_merge_by_container_port() -> None:
    patch = {"spec": {"template": {"spec": {"containers": [
        {"name": "web", "ports": [{"containerPort": 443}]}]}}}}
    out = strategic_merge_patch(deployment(), patch, DEPLOY)
    assert containers(out)[0]["ports"] == [{"containerPort": 80, "protocol": "TCP"},
                                           {"containerPort": 443}]


def test_smp_lists_without_strategy_are_replaced() -> None:
    patch = {"spec": {"template": {"spec": {"containers": [
        {"name": "web", "args": ["--only"]}]}}}}
    out = strategic_merge_patch(deployment(), patch, DEPLOY)
    assert containers(out)[0]["args"] == ["--only"]


def test_smp_primitive_merge_list_and_delete_from_primitive_list() -> None:
    out = strategic_merge_patch(deployment(), {"metadata": {"finalizers": ["x/c", "x/a"]}}, DEPLOY)
    assert out["metadata"]["finalizers"] == ["x/a", "x/b", "x/c"]
    out = strategic_merge_patch(deployment(), {"metadata": {
        "$deleteFromPrimitiveList/finalizers": ["x/a"]}}, DEPLOY)
    assert out["metadata"]["finalizers"] == ["x/b"]


def test_smp_patch_replace_directives() -> None:
    out = strategic_merge_patch(deployment(), {"spec": {"template": {"spec": {"containers": [
        {"name": "solo", "image": "x"}, {"$patch": "replace"}]}}}}, DEPLOY)
    assert containers(out) == [{"name": "solo", "image": "x"}]
    out = strategic_merge_patch(deployment(), {"metadata": {"labels": {
        "$patch": "replace", "only": "me"}}}, DEPLOY)
    assert out["metadata"]["labels"] == {"only": "me"}
    out = strategic_merge_patch(deployment(), {"spec": {"strategy": {"$patch": "delete"}}},
                                DEPLOY)
    assert "strategy" not in out["spec"]


def test_smp_retain_keys_switches_strategy_type() -> None:
    # kubectl apply switching RollingUpdate -> Recreate.
    patch = {"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate",
                                   "rollingUpdate": None}}}
    out = strategic_merge_patch(deployment(), patch, DEPLOY)
    assert out["spec"]["strategy"] == {"type": "Recreate"}


def test_smp_retain_keys_volume_source_change() -> None:
    patch = {"spec": {"template": {"spec": {"volumes": [
        {"$retainKeys": ["configMap", "name"], "name": "data", "configMap": {"name": "cm"}}]}}}}
    out = strategic_merge_patch(deployment(), patch, DEPLOY)
    assert out["spec"]["template"]["spec"]["volumes"] == [
        {"name": "data", "configMap": {"name": "cm"}}]


def test_smp_missing_merge_key_is_an_error() -> None:
    with pytest.raises(PatchError) as e:
        strategic_merge_patch(deployment(), {"spec": {"template": {"spec": {"containers": [
            {"image": "x"}]}}}}, DEPLOY)
    assert "does not contain declared merge key: name" in str(e.value)


def test_smp_service_ports_and_selector() -> None:
    svc = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"},
           "spec": {"selector": {"app": "web"},
                    "ports": [{"port": 80, "targetPort": 8080, "protocol": "TCP"}]}}
    out = strategic_merge_patch(svc, {"spec": {"ports": [{"port": 80, "targetPort": 9090}],
                                               "selector": {"app": None, "x": "y"}}}, SERVICE)
    assert out["spec"]["ports"] == [{"port": 80, "targetPort": 9090, "protocol": "TCP"}]
    assert out["spec"]["selector"] == {"x": "y"}


def test_smp_new_field_with_directives_inside_is_cleaned() -> None:
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
           "spec": {"containers": [{"name": "c", "image": "i"}]}}
    out = strategic_merge_patch(pod, {"spec": {"containers": [
        {"name": "c", "env": [{"name": "A", "value": "1"}, {"name": "B", "$patch": "delete"}],
         "$setElementOrder/env": [{"name": "A"}]}]}}, POD)
    assert out["spec"]["containers"][0]["env"] == [{"name": "A", "value": "1"}]


def test_smp_configmap_data_null_deletes() -> None:
    cm_schema = schema.for_gvk("", "v1", "ConfigMap")
    cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"},
          "data": {"a": "1", "b": "2"}}
    out = strategic_merge_patch(cm, {"data": {"a": None, "c": "3"}}, cm_schema)
    assert out["data"] == {"b": "2", "c": "3"}
    assert cm["data"] == {"a": "1", "b": "2"}
