"""managedFields tracking and server-side apply, in the scenarios kubectl
produces (create, apply, apply --server-side, scale, edit, --force-conflicts)."""

from __future__ import annotations

import copy

import pytest

from pinnace.api import schema
from pinnace.api.apply import (
    ApplyConflict,
    ApplyError,
    go_json,
    path_string,
    server_side_apply,
    track_update,
)

DEPLOY = schema.for_gvk("apps", "v1", "Deployment")
POD = schema.for_gvk("", "v1", "Pod")
SERVICE = schema.for_gvk("", "v1", "Service")
CONFIGMAP = schema.for_gvk("", "v1", "ConfigMap")
T0, T1, T2 = "2024-05-01T10:00:00Z", "2024-05-01T10:01:00Z", "2024-05-01T10:02:00Z"


def deployment(image: str = "nginx:1.25", replicas: int | None = 2, **extra_env: str) -> dict:
    c: dict = {"name": "web", "image": image, "ports": [{"containerPort": 80}]}
    if extra_env:
        c["env"] = [{"name": k, "value": v} for k, v in extra_env.items()]
    spec: dict = {"selector": {"matchLabels": {"app": "web"}},
                  "template": {"metadata": {"labels": {"app": "web"}},
                               "spec": {"containers": [c]}}}
    if replicas is not None:
        spec["replicas"] = replicas
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "default", "labels": {"app": "web"}},
            "spec": spec}


def entries(obj: dict) -> dict[tuple[str, str], dict]:
    return {(e["manager"], e["operation"]): e for e in obj["metadata"]["managedFields"]}


def fields(obj: dict, manager: str, operation: str = "Apply") -> dict:
    return entries(obj)[(manager, operation)]["fieldsV1"]


def container(obj: dict) -> dict:
    return obj["spec"]["template"]["spec"]["containers"][0]


# --------------------------------------------------------------- encoding

def test_apply_create_records_fields_v1_like_upstream() -> None:
    applied = deployment()
    before = copy.deepcopy(applied)
    obj = server_side_apply(None, applied, "kubectl", False, DEPLOY, T0)
    assert applied == before
    [entry] = obj["metadata"]["managedFields"]
    assert entry == {
        "manager": "kubectl", "operation": "Apply", "apiVersion": "apps/v1", "time": T0,
        "fieldsType": "FieldsV1",
        "fieldsV1": {
            "f:metadata": {"f:labels": {"f:app": {}}},
            "f:spec": {
                "f:replicas": {},
                "f:selector": {},
                "f:template": {
                    "f:metadata": {"f:labels": {"f:app": {}}},
                    "f:spec": {"f:containers": {'k:{"name":"web"}': {
                        ".": {}, "f:image": {}, "f:name": {},
                        "f:ports": {'k:{"containerPort":80,"protocol":"TCP"}': {
                            ".": {}, "f:containerPort": {}}}}}}}}},
    }
    assert obj["spec"]["replicas"] == 2


def test_create_update_records_what_kubectl_create_would() -> None:
    pod = {"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": "p", "namespace": "default", "labels": {"run": "p"},
                        "uid": "u", "resourceVersion": "1",
                        "creationTimestamp": "2024-05-01T10:00:00Z"},
           "spec": {"containers": [{"name": "nginx", "image": "nginx",
                                    "imagePullPolicy": "Always", "resources": {}}],
                    "restartPolicy": "Always", "securityContext": {}},
           "status": {}}
    obj = track_update(None, pod, "kubectl-run", "Update", "v1", POD, T0)
    assert obj["metadata"]["managedFields"] == [{
        "manager": "kubectl-run", "operation": "Update", "apiVersion": "v1", "time": T0,
        "fieldsType": "FieldsV1",
        "fieldsV1": {
            "f:metadata": {"f:labels": {".": {}, "f:run": {}}},
            "f:spec": {"f:containers": {'k:{"name":"nginx"}': {
                ".": {}, "f:image": {}, "f:imagePullPolicy": {}, "f:name": {},
                "f:resources": {}}},
                "f:restartPolicy": {}, "f:securityContext": {}}}}]
    assert "managedFields" not in pod["metadata"]


def test_sets_and_granular_maps() -> None:
    cm = {"apiVersion": "v1", "kind": "ConfigMap",
          "metadata": {"name": "c", "finalizers": ["example.com/f"],
                       "annotations": {"example.com/a": "1"}},
          "data": {"k": "v"}}
    obj = server_side_apply(None, cm, "tool", False, CONFIGMAP, T0)
    assert fields(obj, "tool") == {
        "f:data": {"f:k": {}},
        "f:metadata": {"f:annotations": {"f:example.com/a": {}},
                       "f:finalizers": {'v:"example.com/f"': {}}}}


def test_path_string() -> None:
    assert path_string(["f:spec", "f:template", "f:spec", "f:containers", 'k:{"name":"web"}',
                        "f:image"]) == '.spec.template.spec.containers[name="web"].image'
    assert path_string(["f:spec", "f:ports", 'k:{"port":80,"protocol":"TCP"}']) == \
        '.spec.ports[port=80,protocol="TCP"]'
    assert path_string(["f:metadata", "f:finalizers", 'v:"a"']) == '.metadata.finalizers[="a"]'


# ----------------------------------------------------------- kubectl apply --server-side

def test_reapply_changed_field_keeps_ownership() -> None:
    obj = server_side_apply(None, deployment(), "kubectl", False, DEPLOY, T0)
    obj2 = server_side_apply(obj, deployment(image="nginx:1.26"), "kubectl", False, DEPLOY, T1)
    assert container(obj2)["image"] == "nginx:1.26"
    assert fields(obj2, "kubectl") == fields(obj, "kubectl")
    assert entries(obj2)[("kubectl", "Apply")]["time"] == T1


def test_field_removed_from_config_is_removed_from_object() -> None:
    obj = server_side_apply(None, deployment(A="1", B="2"), "kubectl", False, DEPLOY, T0)
    cfg = deployment(A="1")
    del cfg["metadata"]["labels"]
    obj2 = server_side_apply(obj, cfg, "kubectl", False, DEPLOY, T1)
    assert container(obj2)["env"] == [{"name": "A", "value": "1"}]
    assert {k: v for k, v in obj2["metadata"].items() if k != "managedFields"} == {
        "name": "web", "namespace": "default"}
    assert "f:metadata" not in fields(obj2, "kubectl")
    # Dropping replicas from the config removes it (the API server defaults it again).
    obj3 = server_side_apply(obj2, deployment(replicas=None, A="1"), "kubectl", False, DEPLOY, T2)
    assert "replicas" not in obj3["spec"]


def test_removed_field_owned_by_another_manager_stays() -> None:
    obj = server_side_apply(None, deployment(), "kubectl", False, DEPLOY, T0)
    obj = server_side_apply(obj, {"apiVersion": "apps/v1", "kind": "Deployment",
                                  "metadata": {"name": "web", "labels": {"app": "web"}}},
                            "other", False, DEPLOY, T1)
    cfg = deployment()
    del cfg["metadata"]["labels"]
    obj2 = server_side_apply(obj, cfg, "kubectl", False, DEPLOY, T2)
    assert obj2["metadata"]["labels"] == {"app": "web"}


def test_removing_container_from_config_removes_it() -> None:
    cfg = deployment()
    cfg["spec"]["template"]["spec"]["containers"].append({"name": "side", "image": "busybox"})
    obj = server_side_apply(None, cfg, "kubectl", False, DEPLOY, T0)
    obj2 = server_side_apply(obj, deployment(), "kubectl", False, DEPLOY, T1)
    assert [c["name"] for c in obj2["spec"]["template"]["spec"]["containers"]] == ["web"]


def test_second_manager_conflicts_with_upstream_message() -> None:
    obj = server_side_apply(None, deployment(), "kubectl", False, DEPLOY, T0)
    with pytest.raises(ApplyConflict) as e:
        server_side_apply(obj, deployment(replicas=5), "ci", False, DEPLOY, T1)
    assert str(e.value) == 'Apply failed with 1 conflict: conflict with "kubectl": .spec.replicas'
    assert e.value.conflicts == [("kubectl", ".spec.replicas")]
    assert e.value.causes() == [{"reason": "FieldManagerConflict",
                                 "message": 'conflict with "kubectl"',
                                 "field": ".spec.replicas"}]


def test_same_value_is_shared_not_a_conflict() -> None:
    obj = server_side_apply(None, deployment(), "kubectl", False, DEPLOY, T0)
    obj2 = server_side_apply(obj, deployment(), "ci", False, DEPLOY, T1)
    assert fields(obj2, "ci") == fields(obj2, "kubectl")


def test_force_conflicts_takes_ownership() -> None:
    obj = server_side_apply(None, deployment(), "kubectl", False, DEPLOY, T0)
    obj2 = server_side_apply(obj, {"apiVersion": "apps/v1", "kind": "Deployment",
                                   "metadata": {"name": "web"}, "spec": {"replicas": 7}},
                             "hpa-like", True, DEPLOY, T1)
    assert obj2["spec"]["replicas"] == 7
    assert "f:replicas" not in fields(obj2, "kubectl")["f:spec"]
    assert fields(obj2, "hpa-like") == {"f:spec": {"f:replicas": {}}}
    # kubectl applying again without replicas no longer conflicts nor removes it.
    obj3 = server_side_apply(obj2, deployment(replicas=None), "kubectl", False, DEPLOY, T2)
    assert obj3["spec"]["replicas"] == 7


def test_multiple_conflicts_message() -> None:
    obj = server_side_apply(None, deployment(), "kubectl", False, DEPLOY, T0)
    with pytest.raises(ApplyConflict) as e:
        server_side_apply(obj, deployment(image="x", replicas=3), "ci", False, DEPLOY, T1)
    assert str(e.value) == (
        'Apply failed with 2 conflicts: conflicts with "kubectl":\n'
        "- .spec.replicas\n"
        '- .spec.template.spec.containers[name="web"].image')


def test_scale_then_apply_conflicts_on_replicas() -> None:
    obj = server_side_apply(None, deployment(), "kubectl", False, DEPLOY, T0)
    scaled = copy.deepcopy(obj)
    scaled["spec"]["replicas"] = 4
    scaled = track_update(obj, scaled, "kubectl", "Update", "apps/v1", DEPLOY, T1,
                          subresource="scale")
    e = entries(scaled)
    assert e[("kubectl", "Update")]["subresource"] == "scale"
    assert e[("kubectl", "Update")]["fieldsV1"] == {"f:spec": {"f:replicas": {}}}
    assert "f:replicas" not in e[("kubectl", "Apply")]["fieldsV1"]["f:spec"]
    with pytest.raises(ApplyConflict) as err:
        server_side_apply(scaled, deployment(), "kubectl", False, DEPLOY, T2)
    assert str(err.value) == ('Apply failed with 1 conflict: conflict with "kubectl" with '
                              'subresource "scale" using apps/v1: .spec.replicas')


def test_client_side_apply_then_server_side_apply_conflict() -> None:
    created = track_update(None, deployment(), "kubectl-client-side-apply", "Update",
                           "apps/v1", DEPLOY, T0)
    with pytest.raises(ApplyConflict) as e:
        server_side_apply(created, deployment(replicas=3), "kubectl", False, DEPLOY, T1)
    assert str(e.value) == ('Apply failed with 1 conflict: conflict with '
                            '"kubectl-client-side-apply" using apps/v1: .spec.replicas')
    assert e.value.causes()[0]["message"] == \
        'conflict with "kubectl-client-side-apply" using apps/v1'


def test_update_moves_ownership_and_noop_update_changes_nothing() -> None:
    obj = server_side_apply(None, deployment(), "kubectl", False, DEPLOY, T0)
    edited = copy.deepcopy(obj)
    container(edited)["image"] = "nginx:edited"
    edited = track_update(obj, edited, "kubectl-edit", "Update", "apps/v1", DEPLOY, T1)
    img = 'k:{"name":"web"}'
    assert fields(edited, "kubectl-edit", "Update") == {"f:spec": {"f:template": {"f:spec": {
        "f:containers": {img: {"f:image": {}}}}}}}
    assert "f:image" not in fields(edited, "kubectl")["f:spec"]["f:template"]["f:spec"][
        "f:containers"][img]
    again = track_update(edited, copy.deepcopy(edited), "other", "Update", "apps/v1", DEPLOY, T2)
    assert again["metadata"]["managedFields"] == edited["metadata"]["managedFields"]


def test_update_removing_a_field_drops_it_from_every_manager() -> None:
    obj = server_side_apply(None, deployment(), "kubectl", False, DEPLOY, T0)
    upd = copy.deepcopy(obj)
    del upd["metadata"]["labels"]
    upd = track_update(obj, upd, "editor", "Update", "apps/v1", DEPLOY, T1)
    assert "f:metadata" not in fields(upd, "kubectl")
    assert ("editor", "Update") not in entries(upd)


def test_user_can_reset_managed_fields() -> None:
    obj = server_side_apply(None, deployment(), "kubectl", False, DEPLOY, T0)
    upd = copy.deepcopy(obj)
    upd["metadata"]["managedFields"] = [{}]
    upd = track_update(obj, upd, "editor", "Update", "apps/v1", DEPLOY, T1)
    assert "managedFields" not in upd["metadata"]


def test_managed_fields_in_apply_body_are_rejected() -> None:
    cfg = deployment()
    cfg["metadata"]["managedFields"] = [{"manager": "x"}]
    with pytest.raises(ApplyError, match="metadata.managedFields must be nil"):
        server_side_apply(None, cfg, "kubectl", False, DEPLOY, T0)


def test_reset_fields_ignore_status() -> None:
    cfg = deployment()
    cfg["status"] = {"replicas": 9}
    obj = server_side_apply(None, cfg, "kubectl", False, DEPLOY, T0, reset_fields=[("status",)])
    assert "status" not in obj
    assert "f:status" not in fields(obj, "kubectl")


def test_first_apply_on_untracked_object() -> None:
    live = deployment()
    obj = server_side_apply(live, deployment(replicas=2), "kubectl", False, DEPLOY, T0)
    assert ("before-first-apply", "Update") in entries(obj)


def test_service_ports_keyed_by_port_and_protocol() -> None:
    svc = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"},
           "spec": {"selector": {"app": "web"},
                    "ports": [{"port": 80, "targetPort": 8080},
                              {"port": 53, "protocol": "UDP"}]}}
    obj = server_side_apply(None, svc, "kubectl", False, SERVICE, T0)
    ports = fields(obj, "kubectl")["f:spec"]["f:ports"]
    assert set(ports) == {'k:{"port":80,"protocol":"TCP"}', 'k:{"port":53,"protocol":"UDP"}'}
    # A second applier adds a port; the list merges by key, keeping both.
    obj2 = server_side_apply(obj, {"apiVersion": "v1", "kind": "Service",
                                   "metadata": {"name": "s"},
                                   "spec": {"ports": [{"port": 443, "protocol": "TCP"}]}},
                             "other", False, SERVICE, T1)
    assert [p["port"] for p in obj2["spec"]["ports"]] == [80, 53, 443]


def test_list_merge_order_follows_config_and_keeps_live_only_items() -> None:
    cfg = deployment()
    cs = cfg["spec"]["template"]["spec"]["containers"]
    cs.append({"name": "b", "image": "b"})
    obj = server_side_apply(None, cfg, "kubectl", False, DEPLOY, T0)
    injected = copy.deepcopy(obj)
    injected["spec"]["template"]["spec"]["containers"].insert(1, {"name": "mesh", "image": "m"})
    injected = track_update(obj, injected, "injector", "Update", "apps/v1", DEPLOY, T1)
    cfg2 = copy.deepcopy(cfg)
    cfg2["spec"]["template"]["spec"]["containers"][1]["image"] = "b2"
    obj2 = server_side_apply(injected, cfg2, "kubectl", False, DEPLOY, T2)
    assert [(c["name"], c["image"]) for c in obj2["spec"]["template"]["spec"]["containers"]] == \
        [("web", "nginx:1.25"), ("mesh", "m"), ("b", "b2")]


# ----------------------------------------------------------- custom resources

CRD_SCHEMA = {
    "type": "object",
    "properties": {
        "spec": {"type": "object", "properties": {
            "size": {"type": "integer"},
            "items": {"type": "array", "x-kubernetes-list-type": "map",
                      "x-kubernetes-list-map-keys": ["id"],
                      "items": {"type": "object", "properties": {
                          "id": {"type": "string"}, "v": {"type": "string"}}}},
            "tags": {"type": "array", "items": {"type": "string"}},
        }},
    },
}


def widget(**spec: object) -> dict:
    return {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"},
            "spec": spec}


def test_custom_resource_without_schema_has_atomic_lists() -> None:
    obj = server_side_apply(None, widget(tags=["a", "b"], size=1), "kubectl", False, None, T0)
    assert fields(obj, "kubectl") == {"f:spec": {".": {}, "f:size": {}, "f:tags": {}}}
    obj2 = server_side_apply(obj, widget(tags=["c"]), "kubectl", False, None, T1)
    assert obj2["spec"] == {"tags": ["c"]}


def test_custom_resource_with_crd_schema_list_map() -> None:
    obj = server_side_apply(None, widget(items=[{"id": "x", "v": "1"}], tags=["a"]), "a",
                            False, CRD_SCHEMA, T0)
    assert fields(obj, "a") == {"f:spec": {
        "f:items": {'k:{"id":"x"}': {".": {}, "f:id": {}, "f:v": {}}}, "f:tags": {}}}
    obj2 = server_side_apply(obj, widget(items=[{"id": "y", "v": "2"}]), "b", False,
                             CRD_SCHEMA, T1)
    assert obj2["spec"]["items"] == [{"id": "x", "v": "1"}, {"id": "y", "v": "2"}]
    with pytest.raises(ApplyConflict) as e:
        server_side_apply(obj2, widget(items=[{"id": "x", "v": "9"}]), "b", False,
                          CRD_SCHEMA, T2)
    assert e.value.conflicts == [("a", '.spec.items[id="x"].v')]


def test_managed_fields_sorted_apply_before_update() -> None:
    obj = track_update(None, deployment(), "creator", "Update", "apps/v1", DEPLOY, T0)
    obj = server_side_apply(obj, {"apiVersion": "apps/v1", "kind": "Deployment",
                                  "metadata": {"name": "web", "annotations": {"x": "y"}}},
                            "applier", False, DEPLOY, T1)
    assert [e["operation"] for e in obj["metadata"]["managedFields"]] == ["Apply", "Update"]


def test_update_managers_are_capped_at_ten() -> None:
    obj = track_update(None, {"apiVersion": "v1", "kind": "ConfigMap",
                              "metadata": {"name": "c"}, "data": {}}, "m0", "Update", "v1",
                       CONFIGMAP, "2024-05-01T10:00:00Z")
    for i in range(1, 13):
        new = copy.deepcopy(obj)
        new["data"][f"k{i}"] = "v"
        obj = track_update(obj, new, f"m{i}", "Update", "v1", CONFIGMAP,
                           f"2024-05-01T10:{i:02d}:00Z")
    managers = [e["manager"] for e in obj["metadata"]["managedFields"]]
    assert len(managers) == 10
    assert "ancient-changes" in managers and "m12" in managers and "m1" not in managers
    ancient = entries(obj)[("ancient-changes", "Update")]["fieldsV1"]["f:data"]
    assert {"f:k1", "f:k2", "f:k3"} <= set(ancient)


def test_manager_from_user_agent() -> None:
    from pinnace.api.apply import manager_or_user_agent
    assert manager_or_user_agent("", "kubectl/v1.37.0 (linux/amd64) kubernetes/abc") == "kubectl"
    assert manager_or_user_agent(None, "OpenAPI-Generator/31.0.0/python") == "OpenAPI-Generator"
    assert manager_or_user_agent("mine", "kubectl/v1.37.0") == "mine"


def test_apply_keeps_metadata_when_labels_dropped_and_server_fields() -> None:
    live = server_side_apply(None, deployment(), "kubectl", False, DEPLOY, T0)
    live = {**live, "metadata": {**live["metadata"], "uid": "u1", "resourceVersion": "5",
                                 "creationTimestamp": T0}, "status": {"replicas": 2}}
    cfg = deployment()
    cfg["metadata"].pop("labels")
    out = server_side_apply(live, cfg, "kubectl", False, DEPLOY, T1)
    assert out["metadata"]["uid"] == "u1" and out["metadata"]["resourceVersion"] == "5"
    assert out["status"] == {"replicas": 2}
    assert "labels" not in out["metadata"]


def test_custom_resource_metadata_is_typed_as_object_meta() -> None:
    cr = widget(size=1)
    cr["metadata"]["labels"] = {"a": "b"}
    obj = track_update(None, cr, "op", "Update", "example.com/v1", CRD_SCHEMA, T0)
    assert fields(obj, "op", "Update") == {"f:metadata": {"f:labels": {".": {}, "f:a": {}}},
                                           "f:spec": {".": {}, "f:size": {}}}


# ------------------------------------------- kubectl's last-applied annotation

LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"


def client_side_applied(cfg: dict) -> dict:
    """What `kubectl apply` (client-side) creates: the annotation holds the
    manifest, the fields belong to kubectl-client-side-apply."""
    obj = copy.deepcopy(cfg)
    obj["metadata"].setdefault("annotations", {})[LAST_APPLIED] = go_json(cfg)
    return track_update(None, obj, "kubectl-client-side-apply", "Update", "apps/v1", DEPLOY, T0)


def test_kubectl_takes_over_fields_its_annotation_still_matches() -> None:
    live = client_side_applied(deployment())
    obj = server_side_apply(live, deployment(replicas=3, LOG="1"), "kubectl", False, DEPLOY, T1)
    assert obj["spec"]["replicas"] == 3
    # The takeover is a forced apply: kubectl owns replicas alone now.
    assert "f:replicas" in fields(obj, "kubectl")["f:spec"]
    assert "f:replicas" not in fields(obj, "kubectl-client-side-apply", "Update")["f:spec"]
    # And the annotation is the applied configuration now.
    assert obj["metadata"]["annotations"][LAST_APPLIED] == go_json(deployment(replicas=3, LOG="1"))
    # Another manager gets no such allowance.
    with pytest.raises(ApplyConflict):
        server_side_apply(live, deployment(replicas=3), "ci", False, DEPLOY, T1)


def test_fields_changed_since_the_annotation_still_conflict() -> None:
    live = client_side_applied(deployment())
    scaled = copy.deepcopy(live)
    scaled["spec"]["replicas"] = 5
    scaled = track_update(live, scaled, "kubectl", "Update", "apps/v1", DEPLOY, T1,
                          subresource="scale")
    with pytest.raises(ApplyConflict) as e:
        server_side_apply(scaled, deployment(replicas=3, image="nginx:2"), "kubectl", False,
                          DEPLOY, T2)
    # The image still holds the annotation's value: only replicas is refused.
    assert [p for _, p in e.value.conflicts] == [".spec.replicas"]


def test_annotation_of_another_version_or_unreadable_allows_nothing() -> None:
    for text in ("not json", go_json({**deployment(), "apiVersion": "apps/v1beta1"})):
        live = client_side_applied(deployment())
        live["metadata"]["annotations"][LAST_APPLIED] = text
        with pytest.raises(ApplyConflict):
            server_side_apply(live, deployment(replicas=3), "kubectl", False, DEPLOY, T1)


def test_last_applied_is_rewritten_only_when_present() -> None:
    cfg = {"apiVersion": "v1", "kind": "ConfigMap",
           "metadata": {"name": "c", "annotations": {"a": "<b>", LAST_APPLIED: "stale"}},
           "data": {"n": "1"}}
    made = server_side_apply(None, cfg, "kubectl", False, CONFIGMAP, T0)
    assert made["metadata"]["annotations"][LAST_APPLIED] == (
        '{"apiVersion":"v1","data":{"n":"1"},"kind":"ConfigMap",'
        '"metadata":{"annotations":{"a":"\\u003cb\\u003e"},"name":"c"}}\n')
    plain = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}}
    assert "annotations" not in server_side_apply(None, plain, "kubectl", False, CONFIGMAP,
                                                  T0)["metadata"]
    assert server_side_apply(None, cfg, "other", False, CONFIGMAP,
                             T0)["metadata"]["annotations"][LAST_APPLIED] == "stale"


def test_go_json_matches_go_encoder() -> None:
    assert go_json({"b": [1.0, 2.5, None, True], "a": "x&y\u2028é"}) == \
        '{"a":"x\\u0026y\\u2028é","b":[1,2.5,null,true]}\n'
