"""Behaviours users meet first, as Kubernetes 1.37 has them, through real
kubectl and the official Python client: Secret stringData, StatefulSet
claim templates, pod-template defaults, server-side apply by kubectl."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
import yaml
from kubernetes import client
from kubernetes.client.rest import ApiException

from tests.conftest import Server


def _get(server: Server, ns: str, *what: str) -> Any:
    return json.loads(server.kubectl("-n", ns, "get", *what, "-o", "json").stdout)


def _b64(s: str) -> str:
    return base64.b64encode(s.encode()).decode()


# -- Secret stringData ------------------------------------------------------------


def test_secret_string_data_is_merged_into_data_and_never_returned(
        server: Server, namespace: str) -> None:
    k = server.kubectl
    secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"},
              "data": {"user": _b64("old"), "pw": _b64("hi")},
              "stringData": {"user": "admin", "note": "ünïcode"}}
    created = json.loads(k("-n", namespace, "create", "-f", "-", "-o", "json",
                           input=json.dumps(secret)).stdout)
    # stringData wins over data for the same key, and is not kept.
    want = {"user": _b64("admin"), "pw": _b64("hi"), "note": _b64("ünïcode")}
    assert created["data"] == want and "stringData" not in created
    got = _get(server, namespace, "secret", "s")
    assert got["data"] == want and "stringData" not in got
    # Strategic merge patch, merge patch and JSON patch.
    k("-n", namespace, "patch", "secret", "s", "-p", '{"stringData":{"a":"1"}}')
    k("-n", namespace, "patch", "secret", "s", "--type=merge", "-p", '{"stringData":{"b":"2"}}')
    k("-n", namespace, "patch", "secret", "s", "--type=json",
      "-p", '[{"op":"add","path":"/stringData","value":{"c":"3"}}]')
    got = _get(server, namespace, "secret", "s")
    assert {key: got["data"].get(key) for key in "abc"} == \
        {"a": _b64("1"), "b": _b64("2"), "c": _b64("3")}
    assert "stringData" not in got
    # Update (PUT) through kubectl replace.
    got["stringData"] = {"pw": "new"}
    del got["metadata"]["resourceVersion"]
    replaced = json.loads(k("-n", namespace, "replace", "-f", "-", "-o", "json",
                            input=json.dumps(got)).stdout)
    assert replaced["data"]["pw"] == _b64("new") and "stringData" not in replaced
    # Dry-run answers as the real write would.
    dry = json.loads(k("-n", namespace, "create", "secret", "generic", "dry", "--dry-run=server",
                       "-o", "json", "--from-literal=x=y").stdout)
    assert "stringData" not in dry


def test_secret_string_data_with_client_and_server_side_apply(
        server: Server, namespace: str) -> None:
    k = server.kubectl
    manifest = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "app"},
                "type": "Opaque", "stringData": {"token": "t1"}}
    k("-n", namespace, "apply", "-f", "-", input=json.dumps(manifest))
    assert _get(server, namespace, "secret", "app")["data"] == {"token": _b64("t1")}
    manifest["stringData"] = {"token": "t2", "more": "m"}
    k("-n", namespace, "apply", "-f", "-", input=json.dumps(manifest))
    got = _get(server, namespace, "secret", "app")
    assert got["data"] == {"token": _b64("t2"), "more": _b64("m")}
    assert "stringData" not in got
    ssa = dict(manifest, metadata={"name": "ssa"})
    out = json.loads(k("-n", namespace, "apply", "--server-side", "-f", "-", "-o", "json",
                       input=json.dumps(ssa)).stdout)
    assert out["data"] == {"token": _b64("t2"), "more": _b64("m")}
    assert "stringData" not in out
    ssa["stringData"] = {"token": "t3"}
    k("-n", namespace, "apply", "--server-side", "-f", "-", input=json.dumps(ssa))
    assert _get(server, namespace, "secret", "ssa")["data"]["token"] == _b64("t3")


def test_secret_string_data_through_the_python_client(server: Server, namespace: str) -> None:
    core = client.CoreV1Api(server.api_client())
    made = core.create_namespaced_secret(namespace, client.V1Secret(
        metadata=client.V1ObjectMeta(name="py"), string_data={"k": "v"}))
    assert made.data == {"k": _b64("v")} and made.string_data is None
    made.string_data = {"k": "w"}
    updated = core.replace_namespaced_secret("py", namespace, made)
    assert updated.data == {"k": _b64("w")} and updated.string_data is None
    patched = core.patch_namespaced_secret("py", namespace, {"stringData": {"x": "1"}})
    assert patched.data == {"k": _b64("w"), "x": _b64("1")} and patched.string_data is None
    listed = core.list_namespaced_secret(namespace)
    assert all(s.string_data is None for s in listed.items)
    with pytest.raises(ApiException) as e:
        core.create_namespaced_secret(namespace, client.V1Secret(
            metadata=client.V1ObjectMeta(name="bad"), string_data={"no/slash": "v"}))
    assert e.value.status == 422 and "data[no/slash]" in e.value.body


# -- StatefulSet volumeClaimTemplates ---------------------------------------------


def _statefulset(mount: str) -> dict[str, Any]:
    return {"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "db"},
            "spec": {"serviceName": "db", "selector": {"matchLabels": {"app": "db"}},
                     "template": {"metadata": {"labels": {"app": "db"}}, "spec": {
                         "volumes": [{"name": "scratch", "emptyDir": {}}],
                         "containers": [{"name": "db", "image": "postgres:16", "volumeMounts": [
                             {"name": mount, "mountPath": "/var/lib/data"},
                             {"name": "scratch", "mountPath": "/tmp"}]}]}},
                     "volumeClaimTemplates": [{"metadata": {"name": "data"}, "spec": {
                         "accessModes": ["ReadWriteOnce"],
                         "resources": {"requests": {"storage": "1Gi"}}}}]}}


def test_statefulset_containers_mount_claim_templates(server: Server, namespace: str) -> None:
    k = server.kubectl
    out = k("-n", namespace, "apply", "-f", "-", input=yaml.safe_dump(_statefulset("data"))).stdout
    assert "statefulset.apps/db created" in out
    # A mount naming neither a volume nor a claim template is still refused.
    bad = _statefulset("nothing")
    bad["metadata"]["name"] = "bad"
    res = k("-n", namespace, "apply", "-f", "-", input=yaml.safe_dump(bad), check=False)
    assert res.returncode != 0
    assert 'spec.template.spec.containers[0].volumeMounts[0].name: Not found: "nothing"' \
        in res.stderr
    apps = client.AppsV1Api(server.api_client())
    sts = apps.read_namespaced_stateful_set("db", namespace)
    sts.spec.replicas = 2
    assert apps.replace_namespaced_stateful_set("db", namespace, sts).spec.replicas == 2


# -- requests from limits: Pods only ------------------------------------------------

_LIMITED = {"name": "c", "image": "nginx:1", "ports": [{"containerPort": 80}],
            "resources": {"limits": {"cpu": "500m", "memory": "128Mi"}}}


def _pod_spec(**extra: Any) -> dict[str, Any]:
    return {"containers": [dict(_LIMITED)], "initContainers": [dict(_LIMITED, name="i")],
            **extra}


def _template(restart: str = "Always", **extra: Any) -> dict[str, Any]:
    return {"metadata": {"labels": {"app": "x"}},
            "spec": _pod_spec(restartPolicy=restart, **extra)}


def _workloads() -> list[dict[str, Any]]:
    sel = {"matchLabels": {"app": "x"}}

    def obj(api: str, kind: str, spec: dict[str, Any]) -> dict[str, Any]:
        return {"apiVersion": api, "kind": kind, "metadata": {"name": kind.lower()}, "spec": spec}

    return [
        obj("apps/v1", "Deployment", {"selector": sel, "template": _template()}),
        obj("apps/v1", "ReplicaSet", {"selector": sel, "template": _template()}),
        obj("apps/v1", "StatefulSet", {"selector": sel, "serviceName": "x",
                                       "template": _template()}),
        obj("apps/v1", "DaemonSet", {"selector": sel, "template": _template()}),
        obj("batch/v1", "Job", {"template": _template("Never")}),
        obj("batch/v1", "CronJob", {"schedule": "* * * * *",
                                    "jobTemplate": {"spec": {"template": _template("Never")}}}),
        obj("v1", "ReplicationController", {"selector": {"app": "x"}, "template": _template()}),
        {"apiVersion": "v1", "kind": "PodTemplate", "metadata": {"name": "podtemplate"},
         "template": _template()},
    ]


def _template_spec(obj: dict[str, Any]) -> dict[str, Any]:
    if obj["kind"] == "PodTemplate":
        return obj["template"]["spec"]  # type: ignore[no-any-return]
    if obj["kind"] == "CronJob":
        return obj["spec"]["jobTemplate"]["spec"]["template"]["spec"]  # type: ignore[no-any-return]
    return obj["spec"]["template"]["spec"]  # type: ignore[no-any-return]


def test_pod_templates_keep_requests_unset_pods_get_them(server: Server, namespace: str) -> None:
    k = server.kubectl
    items = _workloads()
    k("-n", namespace, "apply", "-f", "-",
      input=json.dumps({"apiVersion": "v1", "kind": "List", "items": items}))
    for want in items:
        got = _get(server, namespace, want["kind"].lower(), want["metadata"]["name"])
        spec = _template_spec(got)
        for c in spec["containers"] + spec["initContainers"]:
            assert c["resources"] == {"limits": {"cpu": "500m", "memory": "128Mi"}}, want["kind"]
        # Also SetDefaults_Pod's alone: enableServiceLinks.
        assert "enableServiceLinks" not in spec, want["kind"]
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
           "spec": _pod_spec(hostNetwork=True)}
    k("-n", namespace, "create", "-f", "-", input=json.dumps(pod))
    spec = _get(server, namespace, "pod", "p")["spec"]
    for c in spec["containers"] + spec["initContainers"]:
        assert c["resources"]["requests"] == {"cpu": "500m", "memory": "128Mi"}
        assert c["ports"] == [{"containerPort": 80, "hostPort": 80, "protocol": "TCP"}]
    assert spec["enableServiceLinks"] is True
    # A hostNetwork template leaves hostPort to the Pods made from it.
    dep = _workloads()[0]
    dep["metadata"]["name"] = "hostnet"
    dep["spec"]["template"]["spec"]["hostNetwork"] = True
    k("-n", namespace, "create", "-f", "-", input=json.dumps(dep))
    tmpl = _get(server, namespace, "deployment", "hostnet")["spec"]["template"]["spec"]
    assert tmpl["containers"][0]["ports"] == [{"containerPort": 80, "protocol": "TCP"}]


# -- server-side apply by kubectl and the last-applied annotation --------------------

LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"


def _cm(name: str, data: dict[str, str]) -> str:
    return yaml.safe_dump({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name},
                           "data": data})


def test_kubectl_server_side_apply_takes_over_from_client_side_apply(
        server: Server, namespace: str) -> None:
    k = server.kubectl
    k("-n", namespace, "apply", "-f", "-", input=_cm("cfg", {"a": "1", "b": "1"}))
    # The same manifest, changed, now applied server-side: kubectl owned these
    # fields through its last-applied annotation, so nothing conflicts ...
    out = k("-n", namespace, "apply", "--server-side", "-f", "-",
            input=_cm("cfg", {"a": "2", "b": "1"})).stdout
    assert "configmap/cfg serverside-applied" in out
    got = _get(server, namespace, "cm", "cfg")
    assert got["data"] == {"a": "2", "b": "1"}
    # ... and the annotation follows what was applied.
    last = json.loads(got["metadata"]["annotations"][LAST_APPLIED])
    assert last["data"] == {"a": "2", "b": "1"}
    assert LAST_APPLIED not in last["metadata"].get("annotations", {})
    # A field someone else changed since is theirs: that still conflicts.
    k("-n", namespace, "patch", "cm", "cfg", "-p", '{"data":{"b":"5"}}')
    res = k("-n", namespace, "apply", "--server-side", "-f", "-", check=False,
            input=_cm("cfg", {"a": "2", "b": "3"}))
    assert res.returncode != 0 and 'conflict with "kubectl-patch"' in res.stderr
    assert ".data.b" in res.stderr and ".data.a" not in res.stderr


def _apply(api: client.ApiClient, ns: str, name: str, body: dict[str, Any],
           manager: str | None) -> Any:
    core = client.CoreV1Api(api)
    kwargs = {"field_manager": manager} if manager is not None else {}
    return core.patch_namespaced_config_map(name, ns, body,
                                            _content_type="application/apply-patch+yaml",
                                            **kwargs)


def test_last_applied_updated_only_for_kubectl_and_only_when_present(
        server: Server, namespace: str) -> None:
    api = server.api_client()
    body = {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "plain", "annotations": {"note": "<&>"}}, "data": {"a": "1"}}
    # No annotation yet: the manager "kubectl" does not add one.
    made = _apply(api, namespace, "plain", body, "kubectl")
    assert LAST_APPLIED not in made.metadata.annotations
    # With one, "kubectl" rewrites it from the applied configuration, in Go's encoding.
    client.CoreV1Api(api).patch_namespaced_config_map(
        "plain", namespace, {"metadata": {"annotations": {LAST_APPLIED: "{}"}}})
    body["data"] = {"a": "2"}
    out = _apply(api, namespace, "plain", body, "kubectl")
    assert out.metadata.annotations[LAST_APPLIED] == (
        '{"apiVersion":"v1","data":{"a":"2"},"kind":"ConfigMap","metadata":{"annotations":'
        '{"note":"\\u003c\\u0026\\u003e"},"name":"plain"}}\n')
    # Any other manager leaves it alone.
    out = _apply(api, namespace, "plain", {"apiVersion": "v1", "kind": "ConfigMap",
                                           "metadata": {"name": "plain"}, "data": {"b": "3"}},
                 "helm")
    assert out.data == {"a": "2", "b": "3"}
    assert json.loads(out.metadata.annotations[LAST_APPLIED])["data"] == {"a": "2"}


def test_apply_patch_needs_a_field_manager(server: Server, namespace: str) -> None:
    api = server.api_client()
    body = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "nomgr"}}
    with pytest.raises(ApiException) as e:
        _apply(api, namespace, "nomgr", body, None)
    assert e.value.status == 422
    status = json.loads(e.value.body)
    assert status["reason"] == "Invalid"
    assert status["message"] == ('PatchOptions.meta.k8s.io "" is invalid: fieldManager: '
                                 'Required value: is required for apply patch')
    assert status["details"]["causes"] == [{"reason": "FieldValueRequired", "field": "fieldManager",
                                            "message": "Required value: is required for apply patch"}]
    core = client.CoreV1Api(api)
    with pytest.raises(ApiException) as e:
        core.read_namespaced_config_map("nomgr", namespace)
    assert e.value.status == 404
    # Other write options are checked the same way (CreateOptions, PatchOptions).
    with pytest.raises(ApiException) as e:
        core.create_namespaced_config_map(namespace, {"metadata": {"name": "long"}},
                                          field_manager="m" * 129)
    assert e.value.status == 422 and json.loads(e.value.body)["message"] == (
        'CreateOptions.meta.k8s.io "" is invalid: fieldManager: Too long: may not be more '
        'than 128 bytes')
    core.create_namespaced_config_map(namespace, {"metadata": {"name": "c"}})
    with pytest.raises(ApiException) as e:
        core.patch_namespaced_config_map("c", namespace, {"data": {"a": "1"}}, force=True)
    assert e.value.status == 422 and \
        "force: Forbidden: may not be specified for non-apply patch" in e.value.body


def test_delete_options_are_validated(server: Server, namespace: str) -> None:
    core = client.CoreV1Api(server.api_client())
    core.create_namespaced_config_map(namespace, {"metadata": {"name": "d"}})
    with pytest.raises(ApiException) as e:
        core.delete_namespaced_config_map("d", namespace, body=client.V1DeleteOptions(
            propagation_policy="Background", orphan_dependents=False))
    assert e.value.status == 422
    assert json.loads(e.value.body)["message"] == (
        'DeleteOptions.meta.k8s.io "" is invalid: propagationPolicy: Invalid value: '
        '"Background": orphanDependents and deletionPropagation cannot be both set')
    core.delete_namespaced_config_map("d", namespace)


# -- fields the v1 conversion keeps in step ----------------------------------------


def test_singular_fields_mirror_their_lists(server: Server, namespace: str) -> None:
    k = server.kubectl
    name = f"{namespace}-node"[:63]
    node = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name},
            "spec": {"podCIDR": "10.244.7.0/24"}}
    made = json.loads(k("create", "-f", "-", "-o", "json", input=json.dumps(node)).stdout)
    assert made["spec"]["podCIDRs"] == ["10.244.7.0/24"]
    k("delete", "node", name)
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
           "spec": {"containers": [{"name": "c", "image": "nginx:1"}]}}
    k("-n", namespace, "create", "-f", "-", input=json.dumps(pod))
    status = json.loads(k("-n", namespace, "patch", "pod", "p", "--subresource=status",
                          "--type=merge", "-o", "json", "-p", json.dumps({"status": {
                              "podIP": "10.244.7.5", "hostIPs": [{"ip": "192.0.2.1"}]}})).stdout
                        )["status"]
    assert status["podIPs"] == [{"ip": "10.244.7.5"}] and status["hostIP"] == "192.0.2.1"
    assert k("-n", namespace, "get", "pods", "--field-selector=status.podIP=10.244.7.5",
             "-o", "name").stdout.split() == ["pod/p"]
