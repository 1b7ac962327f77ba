"""pinnace.testing as an operator author meets it: the pytest fixtures, a
cluster per test, in a child process, CRDs, waiting with a readable failure."""

from __future__ import annotations

import json
import socket
import textwrap
import threading
from pathlib import Path
from urllib.parse import urlparse

import pytest

from pinnace.testing import Cluster

CRD = {
    "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
    "metadata": {"name": "widgets.example.com"},
    "spec": {"group": "example.com", "scope": "Namespaced",
             "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
             "versions": [{"name": "v1", "served": True, "storage": True, "schema": {
                 "openAPIV3Schema": {"type": "object", "properties": {"spec": {
                     "type": "object", "properties": {"size": {"type": "integer"}}}}}}}]}}


def test_the_session_cluster_and_a_fresh_namespace(pinnace_cluster: Cluster,
                                                   pinnace_namespace: str,
                                                   pinnace_client: object) -> None:
    from kubernetes import client

    v1 = client.CoreV1Api(pinnace_client)
    v1.create_namespaced_config_map(pinnace_namespace, {"metadata": {"name": "settings"},
                                                        "data": {"a": "1"}})
    got = pinnace_cluster.kubectl("get", "configmap", "settings", "-n", pinnace_namespace,
                                  "-o", "jsonpath={.data.a}").stdout
    assert got == "1"
    assert pinnace_namespace.startswith("test-the-session-cluster")


def test_a_namespace_is_deleted_with_its_contents_by_the_namespace_controller(
        pinnace_cluster: Cluster) -> None:
    c = pinnace_cluster
    ns = c.create_namespace("doomed")
    c.kubectl("create", "configmap", "x", "-n", ns, "--from-literal=a=b")
    c.delete_namespace(ns, wait=True, timeout=30)
    assert c.request("GET", f"/api/v1/namespaces/{ns}/configmaps/x")[0] == 404


@pytest.mark.pinnace(controllers=None)
def test_a_marked_test_gets_a_cluster_of_its_own(pinnace_cluster: Cluster,
                                                 request: pytest.FixtureRequest) -> None:
    shared = request.getfixturevalue("pinnace_session_cluster")
    assert pinnace_cluster is not shared and pinnace_cluster.url != shared.url
    # No controllers: nothing gives the default namespace its ServiceAccount.
    pinnace_cluster.kubectl("get", "namespace", "default")
    code, _ = pinnace_cluster.request("GET", "/api/v1/namespaces/default/serviceaccounts/default")
    assert code == 404


def test_a_cluster_stops_cleanly_and_frees_its_port(tmp_path: Path) -> None:
    before = {t.name for t in threading.enumerate()}
    with Cluster(controllers=["namespace"], nodes=1, data_dir=tmp_path / "c") as c:
        port = urlparse(c.url).port
        nodes = json.loads(c.kubectl("get", "nodes", "-o", "json").stdout)["items"]
        assert [n["metadata"]["name"] for n in nodes] == ["node-0"]
    assert port is not None
    with socket.socket() as s:
        assert s.connect_ex(("127.0.0.1", port)) != 0
    assert {t.name for t in threading.enumerate()} - before == set()


def test_a_cluster_in_a_child_process_obeys_the_clock(tmp_path: Path) -> None:
    with Cluster(subprocess=True, nodes=1, controllers=["job", "cronjob"]) as c:
        ns = c.create_namespace("child")
        c.apply("""
apiVersion: batch/v1
kind: CronJob
metadata: {name: hourly}
spec:
  schedule: "0 * * * *"
  jobTemplate:
    spec:
      template:
        spec:
          restartPolicy: Never
          containers: [{name: x, image: busybox}]
""", namespace=ns)
        c.wait("cronjob/hourly", namespace=ns)
        c.advance(3600)
        c.wait("cronjob/hourly", namespace=ns, check=lambda o: o["status"].get("lastScheduleTime"))
        with pytest.raises(RuntimeError, match="no simulated node"):
            c.stop_node("node-9")


def test_lightkube_and_an_sqlite_datastore(tmp_path: Path) -> None:
    from lightkube.models.meta_v1 import ObjectMeta
    from lightkube.resources.core_v1 import ConfigMap

    data = tmp_path / "data"
    with Cluster(controllers=None, datastore="sqlite", data_dir=data) as c:
        client = c.lightkube()
        client.create(ConfigMap(metadata=ObjectMeta(name="kept", namespace="default"),
                                data={"k": "v"}))
        assert client.get(ConfigMap, "kept", namespace="default").data == {"k": "v"}
    assert (data / "state.db").exists()
    # The data dir was the test's: a second cluster on it finds the object again.
    with Cluster(controllers=None, datastore="sqlite", data_dir=data) as c:
        assert c.get("configmap/kept", "default")["data"] == {"k": "v"}


def test_install_crds_from_a_file_and_an_object(pinnace_cluster: Cluster, pinnace_namespace: str,
                                                tmp_path: Path) -> None:
    import yaml

    other = json.loads(json.dumps(CRD).replace("widgets", "gadgets").replace("widget", "gadget")
                       .replace("Widget", "Gadget"))
    path = tmp_path / "crds.yaml"
    path.write_text(yaml.safe_dump(other))
    names = pinnace_cluster.install_crds(path, CRD)
    assert names == ["gadgets.example.com", "widgets.example.com"]
    pinnace_cluster.apply({"apiVersion": "example.com/v1", "kind": "Widget",
                           "metadata": {"name": "w"}, "spec": {"size": 3}},
                          namespace=pinnace_namespace)
    assert pinnace_cluster.get("widget/w", pinnace_namespace)["spec"]["size"] == 3


def test_wait_fails_with_what_the_object_looked_like(pinnace_cluster: Cluster,
                                                     pinnace_namespace: str) -> None:
    pinnace_cluster.kubectl("create", "configmap", "plain", "-n", pinnace_namespace,
                            "--from-literal=colour=blue")
    with pytest.raises(AssertionError) as e:
        pinnace_cluster.wait("configmap/plain", condition="Ready", namespace=pinnace_namespace,
                             timeout=0.3)
    text = str(e.value)
    assert f"configmap/plain in namespace {pinnace_namespace}: condition Ready=True" in text
    assert "colour: blue" in text and "managedFields" not in text
    # A check that indexes a field not there yet waits, and says so at the end.
    with pytest.raises(AssertionError, match="the check last raised KeyError"):
        pinnace_cluster.wait("configmap/plain", check=lambda o: o["status"]["ready"],
                             namespace=pinnace_namespace, timeout=0.3)
    with pytest.raises(AssertionError, match=r"\(not found\)"):
        pinnace_cluster.wait("configmap/missing", namespace=pinnace_namespace, timeout=0.2)


def test_the_plugin_works_in_a_users_own_project(pytester: pytest.Pytester) -> None:
    """What a user gets from `pip install pinnace`: the fixtures and the
    marker, configured from their ini file, in their own test run."""
    import yaml

    pytester.makeini(textwrap.dedent("""
        [pytest]
        pinnace_controllers = namespace, serviceaccount
        pinnace_nodes = 2
        pinnace_crds =
            config/crd/*.yaml
    """))
    crd_dir = pytester.path / "config" / "crd"
    crd_dir.mkdir(parents=True)
    (crd_dir / "widgets.yaml").write_text(yaml.safe_dump(CRD))
    pytester.makepyfile(test_user=textwrap.dedent("""
        import json
        import pytest

        def test_session(pinnace_cluster, pinnace_namespace):
            nodes = json.loads(pinnace_cluster.kubectl("get", "nodes", "-o", "json").stdout)
            assert len(nodes["items"]) == 2
            pinnace_cluster.wait("serviceaccount/default", namespace=pinnace_namespace)
            pinnace_cluster.kubectl("get", "widgets", "-n", pinnace_namespace)

        @pytest.mark.pinnace(nodes=0, controllers=None)
        def test_own(pinnace_cluster):
            out = pinnace_cluster.kubectl("get", "nodes").stderr
            assert "No resources found" in out
    """))
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-q")
    result.assert_outcomes(passed=2)
