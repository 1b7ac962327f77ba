"""Real kubectl against a real pinnace API server: what a user types and sees."""

from __future__ import annotations

import hashlib
import json
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import yaml

from tests.conftest import Server

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "classic"


def test_version_and_cluster_info(server: Server) -> None:
    out = server.kubectl("version", "-o", "json").stdout
    info = json.loads(out)
    assert info["serverVersion"]["major"] == "1"
    assert info["serverVersion"]["minor"] == "37"
    assert "Kubernetes control plane is running at https://127.0.0.1" in \
        server.kubectl("cluster-info").stdout


def test_readyz_and_health(server: Server) -> None:
    assert server.kubectl("get", "--raw", "/readyz").stdout.strip() == "ok"
    verbose = server.kubectl("get", "--raw", "/readyz?verbose").stdout
    assert "[+]etcd ok" in verbose and "readyz check passed" in verbose
    assert server.kubectl("get", "--raw", "/livez").stdout.strip() == "ok"


def test_builtin_namespaces(server: Server) -> None:
    names = server.kubectl("get", "ns", "-o", "name").stdout.split()
    for ns in ("default", "kube-system", "kube-public", "kube-node-lease"):
        assert f"namespace/{ns}" in names
    table = server.kubectl("get", "ns", "default").stdout
    assert table.split("\n")[0].split() == ["NAME", "STATUS", "AGE"]
    assert "Active" in table


def test_api_resources_and_versions(server: Server) -> None:
    res = server.kubectl("api-resources").stdout
    for line in ("pods", "deployments", "replicationcontrollers", "customresourcedefinitions",
                 "leases", "cronjobs"):
        assert line in res
    rc_line = next(ln for ln in res.splitlines() if ln.startswith("replicationcontrollers"))
    assert rc_line.split()[1] == "rc"
    versions = server.kubectl("api-versions").stdout.split()
    for gv in ("v1", "apps/v1", "batch/v1", "autoscaling/v2", "autoscaling/v1",
               "rbac.authorization.k8s.io/v1", "apiextensions.k8s.io/v1"):
        assert gv in versions


def test_unauthenticated_requests_are_refused(server: Server) -> None:
    import ssl
    import urllib.error
    import urllib.request

    ctx = ssl.create_default_context(cafile=str(server.data_dir / "tls" / "ca.crt"))
    try:
        urllib.request.urlopen(f"{server.url}/api/v1/namespaces", context=ctx, timeout=10)
        raise AssertionError("expected 401")
    except urllib.error.HTTPError as e:
        assert e.code == 401
        body = json.loads(e.read())
        assert body["kind"] == "Status" and body["reason"] == "Unauthorized"


def test_configmap_lifecycle(server: Server, namespace: str) -> None:
    k = server.kubectl
    assert "configmap/cfg created" in k("-n", namespace, "create", "configmap", "cfg",
                                        "--from-literal=a=1").stdout
    got = json.loads(k("-n", namespace, "get", "cm", "cfg", "-o", "json").stdout)
    assert got["data"] == {"a": "1"}
    assert got["metadata"]["uid"] and got["metadata"]["resourceVersion"].isdigit()
    k("-n", namespace, "label", "cm", "cfg", "tier=web")
    k("-n", namespace, "annotate", "cm", "cfg", "note=hello")
    assert k("-n", namespace, "get", "cm", "-l", "tier=web", "-o", "name").stdout.strip() == \
        "configmap/cfg"
    assert k("-n", namespace, "get", "cm", "-l", "tier=db", "-o", "name").stdout.strip() == ""
    k("-n", namespace, "patch", "cm", "cfg", "--type=merge", "-p", '{"data":{"b":"2"}}')
    k("-n", namespace, "patch", "cm", "cfg", "--type=json",
      "-p", '[{"op":"remove","path":"/data/a"}]')
    got = json.loads(k("-n", namespace, "get", "cm", "cfg", "-o", "json").stdout)
    assert got["data"] == {"b": "2"}
    assert got["metadata"]["annotations"]["note"] == "hello"
    assert k("-n", namespace, "get", "cm", "cfg", "-o", "jsonpath={.data.b}").stdout == "2"
    assert "configmap \"cfg\" deleted" in k("-n", namespace, "delete", "cm", "cfg").stdout
    missing = k("-n", namespace, "get", "cm", "cfg", check=False)
    assert missing.returncode != 0
    assert 'configmaps "cfg" not found' in missing.stderr


def test_classic_example_applies_and_pods_stay_pending(server: Server, namespace: str) -> None:
    k = server.kubectl
    out = k("-n", namespace, "apply", "-f", str(EXAMPLES)).stdout
    for line in ("replicationcontroller/mysql created", "service/mysql created",
                 "replicationcontroller/myweb created", "service/myweb created"):
        assert line in out
    svc = json.loads(k("-n", namespace, "get", "svc", "myweb", "-o", "json").stdout)
    assert svc["spec"]["type"] == "NodePort"
    assert svc["spec"]["ports"][0]["nodePort"] == 30001
    assert svc["spec"]["ports"][0]["targetPort"] == 8080
    assert svc["spec"]["clusterIP"].startswith("10.")
    table = k("-n", namespace, "get", "svc").stdout
    assert "8080:30001/TCP" in table
    rc = json.loads(k("-n", namespace, "get", "rc", "myweb", "-o", "json").stdout)
    assert rc["spec"]["replicas"] == 2
    # Tagged images (not :latest) default to IfNotPresent: built locally, never pulled.
    assert rc["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy"] == "IfNotPresent"
    mysql = json.loads(k("-n", namespace, "get", "rc", "mysql", "-o", "json").stdout)
    assert mysql["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy"] == "IfNotPresent"
    # An untagged image means :latest, which is pulled every time.
    k("-n", namespace, "create", "deployment", "latest", "--image=mysql")
    dep = json.loads(k("-n", namespace, "get", "deployment", "latest", "-o", "json").stdout)
    assert dep["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy"] == "Always"
    # A second apply changes nothing.
    again = k("-n", namespace, "apply", "-f", str(EXAMPLES)).stdout
    assert "replicationcontroller/myweb unchanged" in again
    k("-n", namespace, "scale", "rc", "myweb", "--replicas=3")
    assert k("-n", namespace, "get", "rc", "myweb", "-o",
             "jsonpath={.spec.replicas}").stdout == "3"


def test_nodeport_conflict_is_rejected(server: Server, namespace: str) -> None:
    k = server.kubectl
    first = yaml.safe_load((EXAMPLES / "myweb-svc.yaml").read_text())
    first["spec"]["ports"][0]["nodePort"] = 30555  # the classic test owns 30001
    k("-n", namespace, "create", "-f", "-", input=yaml.safe_dump(first))
    other = dict(first, metadata={"name": "myweb2"})
    res = k("-n", namespace, "create", "-f", "-", input=yaml.safe_dump(other), check=False)
    assert res.returncode != 0
    assert "spec.ports[0].nodePort: Invalid value: 30555: provided port is already allocated" \
        in res.stderr
    assert k("-n", namespace, "get", "svc", "myweb2", check=False).returncode != 0


def test_invalid_objects_name_every_wrong_field(server: Server, namespace: str) -> None:
    bad = {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "Bad_Name"},
        "spec": {"containers": [{"name": "a"}, {"name": "a", "image": "x",
                                                "ports": [{"containerPort": 70000}]}]},
    }
    res = server.kubectl("-n", namespace, "create", "-f", "-", input=json.dumps(bad),
                         check=False)
    assert res.returncode != 0
    err = res.stderr
    assert 'The Pod "Bad_Name" is invalid' in err
    assert "metadata.name: Invalid value: \"Bad_Name\"" in err
    assert "spec.containers[0].image: Required value" in err
    assert "spec.containers[1].name: Duplicate value: \"a\"" in err
    assert "spec.containers[1].ports[0].containerPort: Invalid value: 70000" in err


def test_unknown_field_strict_and_warn(server: Server, namespace: str) -> None:
    svc = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"},
           "spec": {"prots": [{"port": 80}], "ports": [{"port": 80}]}}
    res = server.kubectl("-n", namespace, "create", "-f", "-", input=json.dumps(svc),
                         check=False)
    assert res.returncode != 0
    assert 'unknown field "spec.prots"' in res.stderr
    res = server.kubectl("-n", namespace, "create", "--validate=warn", "-f", "-",
                         input=json.dumps(svc))
    assert 'unknown field "spec.prots"' in res.stderr
    assert "service/s created" in res.stdout


def test_as_printed_manifests_fail_and_store_nothing(server: Server, namespace: str) -> None:
    data = Path(__file__).resolve().parents[1] / "data" / "classic-as-printed"
    for f in sorted(data.iterdir()):
        res = server.kubectl("-n", namespace, "apply", "-f", str(f), check=False)
        assert res.returncode != 0, f"{f.name} applied: {res.stdout}"
        assert res.stderr.strip(), f.name
    assert server.kubectl("-n", namespace, "get", "rc,svc", "-o", "name").stdout.strip() == ""


def test_as_printed_mistakes_past_the_yaml_are_named(server: Server, namespace: str) -> None:
    """The printed manifests stop at their YAML (comments glued to values,
    wrong indentation: kubectl names the line). With the YAML repaired, each
    remaining mistake of the walk-through gets a message naming it."""
    rc = ("apiVersion: V1\nkind: ReplicationController\nmetadata: {name: mysql}\nspec:\n"
          "  replicas: 1\n  selector: {app: mysql}\n  template:\n    metadata: {labels: {app: mysql}}\n"
          "    spec: {containers: [{name: mysql, image: mysql}]}\n")
    svc = ("apiVersion: v1\nkind: Service\nmetadata: {name: myweb}\nspec:\n  {ports}:\n"
           "  - port: 8080\n    nodePort: 30001\n  selector: {app: myweb}\n")
    for manifest, message in (
            (rc, 'no matches for kind "ReplicationController" in version "V1"'),
            (svc.replace("{ports}", "prots"), 'unknown field "spec.prots"'),
            (svc.replace("{ports}", "ports"),
             "spec.ports[0].nodePort: Forbidden: may not be used when `type` is 'ClusterIP'")):
        res = server.kubectl("-n", namespace, "apply", "-f", "-", input=manifest, check=False)
        assert res.returncode != 0 and message in res.stderr, res.stderr
    assert server.kubectl("-n", namespace, "get", "rc,svc", "-o", "name").stdout.strip() == ""


def test_stale_resource_version_conflicts(server: Server, namespace: str) -> None:
    k = server.kubectl
    k("-n", namespace, "create", "configmap", "c", "--from-literal=x=1")
    obj = json.loads(k("-n", namespace, "get", "cm", "c", "-o", "json").stdout)
    k("-n", namespace, "label", "cm", "c", "v=2")
    obj["data"]["x"] = "3"
    res = k("-n", namespace, "replace", "-f", "-", input=json.dumps(obj), check=False)
    assert res.returncode != 0
    assert "the object has been modified; please apply your changes to the latest version" \
        in res.stderr


def test_server_side_apply_and_conflict(server: Server, namespace: str) -> None:
    k = server.kubectl
    dep = {"apiVersion": "apps/v1", "kind": "Deployment",
           "metadata": {"name": "web", "namespace": namespace},
           "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
                    "template": {"metadata": {"labels": {"app": "web"}},
                                 "spec": {"containers": [{"name": "web", "image": "nginx:1"}]}}}}
    out = k("apply", "--server-side", "-f", "-", input=json.dumps(dep)).stdout
    assert "deployment.apps/web serverside-applied" in out
    k("-n", namespace, "scale", "deploy", "web", "--replicas=5")
    res = k("apply", "--server-side", "-f", "-", input=json.dumps(dep), check=False)
    assert res.returncode != 0
    assert "conflict" in res.stderr.lower() and ".spec.replicas" in res.stderr
    k("apply", "--server-side", "--force-conflicts", "-f", "-", input=json.dumps(dep))
    assert k("-n", namespace, "get", "deploy", "web", "-o",
             "jsonpath={.spec.replicas}").stdout == "2"


def test_dry_run_stores_nothing(server: Server, namespace: str) -> None:
    k = server.kubectl
    out = k("-n", namespace, "create", "configmap", "dry", "--from-literal=a=b",
            "--dry-run=server").stdout
    assert "configmap/dry created (server dry run)" in out
    assert k("-n", namespace, "get", "cm", "dry", check=False).returncode != 0


def test_generators_and_output_formats(server: Server, namespace: str) -> None:
    k = server.kubectl
    k("-n", namespace, "create", "deployment", "nginx", "--image=nginx:1.25", "--replicas=2")
    k("-n", namespace, "create", "service", "clusterip", "nginx", "--tcp=80:80")
    k("-n", namespace, "create", "secret", "generic", "s", "--from-literal=p=q")
    dep = yaml.safe_load(k("-n", namespace, "get", "deploy", "nginx", "-o", "yaml").stdout)
    assert dep["spec"]["strategy"]["type"] == "RollingUpdate"
    assert dep["spec"]["template"]["spec"]["containers"][0]["image"] == "nginx:1.25"
    wide = k("-n", namespace, "get", "deploy", "-o", "wide").stdout
    assert wide.split("\n")[0].split() == ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE",
                                           "CONTAINERS", "IMAGES", "SELECTOR"]
    assert "nginx:1.25" in wide
    cc = k("-n", namespace, "get", "deploy", "-o",
           "custom-columns=N:.metadata.name,R:.spec.replicas").stdout
    assert cc.split("\n")[1].split() == ["nginx", "2"]
    allns = k("get", "secrets", "-A").stdout
    assert namespace in allns
    shown = k("-n", namespace, "get", "deploy", "--show-labels").stdout
    assert "app=nginx" in shown
    desc = k("-n", namespace, "describe", "deploy", "nginx").stdout
    assert "Replicas:" in desc and "nginx:1.25" in desc


def test_explain(server: Server) -> None:
    out = server.kubectl("explain", "pod.spec.containers").stdout
    assert "KIND:" in out and "Pod" in out
    assert "image" in out


def test_python_client_crud_and_watch(server: Server, namespace: str) -> None:
    from kubernetes import client, watch

    api = client.CoreV1Api(server.api_client())
    cm = client.V1ConfigMap(metadata=client.V1ObjectMeta(name="py"), data={"k": "v"})
    created = api.create_namespaced_config_map(namespace, cm)
    rv = created.metadata.resource_version
    api.patch_namespaced_config_map("py", namespace, {"data": {"k": "w"}})
    api.delete_namespaced_config_map("py", namespace)
    w = watch.Watch()
    seen = []
    for ev in w.stream(api.list_namespaced_config_map, namespace, resource_version=rv,
                       timeout_seconds=5):
        seen.append((ev["type"], ev["object"].data))
        if len(seen) == 2:
            w.stop()
    assert seen == [("MODIFIED", {"k": "w"}), ("DELETED", {"k": "w"})]
    items = api.list_namespaced_config_map(namespace).items
    assert all(i.metadata.name != "py" for i in items)


def test_restart_keeps_objects(sqlite_server: Server) -> None:
    from tests.conftest import start_server

    k = sqlite_server.kubectl
    k("create", "namespace", "keep")
    k("-n", "keep", "create", "configmap", "c", "--from-literal=a=1")
    k("-n", "keep", "apply", "-f", str(EXAMPLES / "mysql-svc.yaml"))
    ip = k("-n", "keep", "get", "svc", "mysql", "-o", "jsonpath={.spec.clusterIP}").stdout
    assert sqlite_server.stop() == 0
    again = start_server(sqlite_server.data_dir)
    try:
        assert again.kubectl("-n", "keep", "get", "cm", "c", "-o",
                             "jsonpath={.data.a}").stdout == "1"
        assert again.kubectl("-n", "keep", "get", "svc", "mysql", "-o",
                             "jsonpath={.spec.clusterIP}").stdout == ip
    finally:
        again.stop()


def test_body_too_large(server: Server, namespace: str) -> None:
    big = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "big"},
           "data": {"x": "a" * (3 * 1024 * 1024 + 10)}}
    res = server.kubectl("-n", namespace, "create", "-f", "-", input=json.dumps(big),
                         check=False)
    assert res.returncode != 0
    assert "too large" in res.stderr.lower()


CRD = """
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: crontabs.stable.example.com
spec:
  group: stable.example.com
  scope: Namespaced
  names: {plural: crontabs, singular: crontab, kind: CronTab, shortNames: [ct]}
  versions:
  - name: v1
    served: true
    storage: true
    subresources:
      status: {}
      scale: {specReplicasPath: .spec.replicas, statusReplicasPath: .status.replicas}
    additionalPrinterColumns:
    - {name: Spec, type: string, jsonPath: .spec.cronSpec}
    - {name: Replicas, type: integer, jsonPath: .spec.replicas}
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            properties:
              cronSpec: {type: string}
              replicas: {type: integer, default: 1}
          status:
            type: object
            properties:
              replicas: {type: integer}
"""


def test_custom_resources_are_served_at_once(server: Server, namespace: str) -> None:
    k = server.kubectl
    k("apply", "-f", "-", input=CRD)
    k("wait", "--for=condition=Established", "crd/crontabs.stable.example.com", "--timeout=10s")
    k("-n", namespace, "apply", "-f", "-", input="""
apiVersion: stable.example.com/v1
kind: CronTab
metadata: {name: every5}
spec: {cronSpec: "*/5 * * * *"}
""")
    table = k("-n", namespace, "get", "ct").stdout.splitlines()
    assert table[0].split() == ["NAME", "SPEC", "REPLICAS"]
    assert table[1].split() == ["every5", "*/5", "*", "*", "*", "*", "1"]
    k("-n", namespace, "scale", "ct", "every5", "--replicas=3")
    assert k("-n", namespace, "get", "ct", "every5", "-o",
             "jsonpath={.spec.replicas}").stdout == "3"
    bad = k("-n", namespace, "apply", "-f", "-", check=False, input="""
apiVersion: stable.example.com/v1
kind: CronTab
metadata: {name: bad}
spec: {replicas: many}
""")
    assert bad.returncode != 0
    assert "spec.replicas" in bad.stderr and "must be of type integer" in bad.stderr
    explained = k("explain", "crontab.spec").stdout
    assert "cronSpec" in explained


def test_auth_whoami_and_can_i(server: Server) -> None:
    who = server.kubectl("auth", "whoami").stdout
    assert "admin" in who and "system:masters" in who
    assert server.kubectl("auth", "can-i", "create", "pods").stdout.strip() == "yes"


def test_dry_run_service_keeps_no_node_port(server: Server, namespace: str) -> None:
    svc = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "dry"},
           "spec": {"type": "NodePort", "ports": [{"port": 80, "nodePort": 30777}]}}
    for _ in range(2):  # a dry run gives its allocation back, so it can run again
        out = server.kubectl("-n", namespace, "create", "--dry-run=server", "-f", "-",
                             input=json.dumps(svc)).stdout
        assert "(server dry run)" in out
    server.kubectl("-n", namespace, "create", "-f", "-", input=json.dumps(svc))


def test_diff_edit_wait_sort_and_watch(server: Server, namespace: str) -> None:
    import os
    import subprocess
    import sys

    k = server.kubectl
    k("-n", namespace, "apply", "-f", str(EXAMPLES / "myweb-rc.yaml"))
    same = k("-n", namespace, "diff", "-f", str(EXAMPLES / "myweb-rc.yaml"), check=False)
    assert same.returncode == 0 and same.stdout == ""
    changed = (EXAMPLES / "myweb-rc.yaml").read_text().replace("replicas: 2", "replicas: 5")
    diff = k("-n", namespace, "diff", "-f", "-", input=changed, check=False)
    assert diff.returncode == 1 and "-  replicas: 2" in diff.stdout and "+  replicas: 5" in diff.stdout
    # kubectl edit with a scripted editor.
    env = dict(os.environ, KUBECONFIG=str(server.kubeconfig),
               KUBE_EDITOR=f"{sys.executable} -c \"import sys,re;p=sys.argv[1];"
                           f"s=open(p).read();open(p,'w').write(s.replace('replicas: 2','replicas: 4',1))\"")
    from tests.conftest import KUBECTL
    subprocess.run([KUBECTL, "-n", namespace, "edit", "rc", "myweb"], env=env, check=True,
                   capture_output=True, timeout=60)
    assert k("-n", namespace, "get", "rc", "myweb", "-o", "jsonpath={.spec.replicas}").stdout == "4"
    k("-n", namespace, "wait", "--for=jsonpath={.spec.replicas}=4", "rc/myweb", "--timeout=10s")
    for name, n in (("b", "3"), ("a", "1"), ("c", "2")):
        k("-n", namespace, "create", "configmap", name, f"--from-literal=n={n}")
    by_name = k("-n", namespace, "get", "cm", "--sort-by=.metadata.name", "-o", "name").stdout.split()
    assert [x for x in by_name if x.split("/")[1] in "abc"] == \
        ["configmap/a", "configmap/b", "configmap/c"]
    by_data = k("-n", namespace, "get", "cm", "--sort-by=.data.n", "-o", "name").stdout.split()
    assert [x for x in by_data if x.split("/")[1] in "abc"] == \
        ["configmap/a", "configmap/c", "configmap/b"]
    # kubectl get -w prints the current state, then changes as they happen.
    watcher = subprocess.Popen([KUBECTL, "-n", namespace, "get", "cm", "a", "-w",
                                "--request-timeout=8s"], env=dict(os.environ, KUBECONFIG=str(
                                    server.kubeconfig)), stdout=subprocess.PIPE, text=True)
    try:
        first = watcher.stdout.readline()  # type: ignore[union-attr]
        assert first.split()[:2] == ["NAME", "DATA"]
        assert watcher.stdout.readline().split()[0] == "a"  # type: ignore[union-attr]
        k("-n", namespace, "label", "cm", "a", "seen=yes")
        assert watcher.stdout.readline().split()[0] == "a"  # type: ignore[union-attr]
    finally:
        watcher.kill()
        watcher.wait()


def test_delete_cascade_and_grace_period(server: Server, namespace: str) -> None:
    k = server.kubectl
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "bound"},
           "spec": {"nodeName": "nowhere", "containers": [{"name": "c", "image": "busybox"}]}}
    k("-n", namespace, "create", "-f", "-", input=json.dumps(pod))
    # A pod on a node waits for its kubelet; --wait=false returns at once, Terminating.
    k("-n", namespace, "delete", "pod", "bound", "--grace-period=5", "--wait=false")
    got = json.loads(k("-n", namespace, "get", "pod", "bound", "-o", "json").stdout)
    assert got["metadata"]["deletionGracePeriodSeconds"] == 5
    assert "Terminating" in k("-n", namespace, "get", "pod", "bound").stdout
    k("-n", namespace, "delete", "pod", "bound", "--grace-period=0", "--force")
    assert k("-n", namespace, "get", "pod", "bound", check=False).returncode != 0
    # Background cascade (kubectl's default) deletes the owner at once.
    k("-n", namespace, "create", "configmap", "owner")
    k("-n", namespace, "delete", "configmap", "owner", "--cascade=background")
    assert k("-n", namespace, "get", "cm", "owner", check=False).returncode != 0


def test_crd_with_two_versions_uses_the_none_conversion(server: Server, namespace: str) -> None:
    k = server.kubectl
    schema = {"type": "object", "properties": {"spec": {"type": "object", "properties": {
        "size": {"type": "integer"}}}}}
    crd = {"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
           "metadata": {"name": "widgets.two.example.com"},
           "spec": {"group": "two.example.com", "scope": "Namespaced",
                    "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
                    "versions": [
                        {"name": "v1", "served": True, "storage": True,
                         "schema": {"openAPIV3Schema": schema}},
                        {"name": "v2", "served": True, "storage": False,
                         "schema": {"openAPIV3Schema": schema}}]}}
    k("apply", "-f", "-", input=json.dumps(crd))
    k("wait", "--for=condition=Established", "crd/widgets.two.example.com", "--timeout=10s")
    k("-n", namespace, "create", "-f", "-", input=json.dumps({
        "apiVersion": "two.example.com/v2", "kind": "Widget", "metadata": {"name": "w"},
        "spec": {"size": 3}}))
    v1 = json.loads(k("-n", namespace, "get", "widgets.v1.two.example.com", "w", "-o",
                      "json").stdout)
    v2 = json.loads(k("-n", namespace, "get", "widgets.v2.two.example.com", "w", "-o",
                      "json").stdout)
    assert (v1["apiVersion"], v2["apiVersion"]) == ("two.example.com/v1", "two.example.com/v2")
    assert v1["spec"] == v2["spec"] == {"size": 3}
    stored = json.loads(k("get", "crd", "widgets.two.example.com", "-o", "json").stdout)
    assert stored["status"]["storedVersions"] == ["v1"]


TOKEN_REVIEW = """\
apiVersion: authentication.k8s.io/v1
kind: TokenReview
spec: {token: abc%s}
"""
ACCESS_REVIEW = """\
apiVersion: authorization.k8s.io/v1
kind: SubjectAccessReview
spec:
  user: jane
  resourceAttributes: {verb: get, resource: pods, namespace: default%s}
"""


def test_create_only_kinds_validate_against_openapi_v2(server: Server, tmp_path: Path) -> None:
    # These kinds have no PATCH, so kubectl's field-validation check finds
    # them in neither OpenAPI document, as against Kubernetes, and validates
    # the file itself with the /openapi/v2 protobuf.
    cache = ["--cache-dir", str(tmp_path / "cache")]
    (tmp_path / "tr.yaml").write_text(TOKEN_REVIEW % "")
    (tmp_path / "sar.yaml").write_text(ACCESS_REVIEW % "")
    for _ in range(2):  # the second run revalidates kubectl's cached copy
        out = server.kubectl("create", "-f", str(tmp_path / "tr.yaml"), *cache).stdout
        assert out.strip() == "tokenreview.authentication.k8s.io/<unknown> created"
    out = server.kubectl("create", "-f", str(tmp_path / "sar.yaml"), "-o", "json", *cache).stdout
    assert json.loads(out)["status"]["allowed"] is False  # jane is bound to nothing

    (tmp_path / "tr-bad.yaml").write_text(TOKEN_REVIEW % ", tokn: x")
    (tmp_path / "sar-bad.yaml").write_text(ACCESS_REVIEW % ", verbb: list")
    res = server.kubectl("create", "--validate=strict", "-f", str(tmp_path / "tr-bad.yaml"),
                         *cache, check=False)
    assert res.returncode != 0
    assert ('error validating data: ValidationError(TokenReview.spec): unknown field "tokn" '
            'in io.k8s.api.authentication.v1.TokenReviewSpec') in res.stderr
    res = server.kubectl("create", "--validate=strict", "-f", str(tmp_path / "sar-bad.yaml"),
                         *cache, check=False)
    assert res.returncode != 0
    assert ('ValidationError(SubjectAccessReview.spec.resourceAttributes): unknown field '
            '"verbb" in io.k8s.api.authorization.v1.ResourceAttributes') in res.stderr


def test_openapi_v2_protobuf_etag_and_not_modified(server: Server) -> None:
    http = server.http()
    pb = "application/com.github.proto-openapi.spec.v2@v1.0+protobuf"

    def get(**headers: str) -> tuple[int, Any, bytes]:
        req = urllib.request.Request(server.url + "/openapi/v2", headers=headers)
        try:
            with urllib.request.urlopen(req, context=http.ctx, timeout=30) as resp:
                return resp.status, resp.headers, resp.read()
        except urllib.error.HTTPError as e:
            return e.code, e.headers, e.read()

    code, headers, body = get(Accept=pb)
    assert code == 200
    assert headers["Content-Type"] == "application/com.github.proto-openapi.spec.v2.v1.0+protobuf"
    assert headers["Vary"] == "Accept"
    assert body.startswith(b"\x0a\x032.0")  # Document.swagger = "2.0"
    code, js_headers, js_body = get(Accept="application/json")
    assert code == 200 and js_headers["Content-Type"] == "application/json"
    assert headers["ETag"] == js_headers["ETag"] == \
        '"' + hashlib.sha512(js_body).hexdigest().upper() + '"'
    code, _, body = get(Accept=pb, **{"If-None-Match": headers["ETag"]})
    assert (code, body) == (304, b"")
    assert get(Accept="text/html")[0] == 406
