"""The official Python client inside a pod, configured the way operators are
(load_incluster_config: KUBERNETES_SERVICE_HOST/PORT from the service
links, the service-account token and CA from the kube-api-access volume),
talking to the API server through the kubernetes service's virtual IP. The
image is Debian's python3-kubernetes (scripts/test-kubeclient-image.sh)."""

from __future__ import annotations

import json
import subprocess

import pytest

from tests.e2e.conftest import REPO, phase, pinnace, require_node, wait_pod

CLIENT = r"""
import json, os
from kubernetes import client, config, watch
config.load_incluster_config()
ns = open("/var/run/secrets/kubernetes.io/serviceaccount/namespace").read()
core = client.CoreV1Api()
pods = [p.metadata.name for p in core.list_namespaced_pod(ns).items]
core.create_namespaced_config_map(ns, client.V1ConfigMap(
    metadata=client.V1ObjectMeta(name="made-inside"), data={"by": os.environ["HOSTNAME"]}))
events = [e["type"] for e in watch.Watch().stream(
    core.list_namespaced_config_map, ns, field_selector="metadata.name=made-inside",
    timeout_seconds=5)]
print(json.dumps({"host": os.environ["KUBERNETES_SERVICE_HOST"], "pods": pods,
                  "events": events, "server": client.VersionApi().get_code().git_version}))
"""


@pytest.fixture(scope="module")
def kubeclient_image(node) -> str:  # type: ignore[no-untyped-def]
    require_node()
    out = subprocess.run(["bash", str(REPO / "scripts/test-kubeclient-image.sh")],
                         capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stderr[-3000:]
    pinnace("image", "import", "--data-dir", str(node.data_dir), out.stdout.split()[-1],
            timeout=300)
    return "pinnace-test/kubeclient:1"


def test_the_official_client_works_in_cluster(node, ns, kubeclient_image):
    node.kubectl("create", "serviceaccount", "operator", "-n", ns)
    # What RBAC will ask for (not enforced yet): the operator's own namespace.
    node.kubectl("create", "role", "operator", "-n", ns, "--verb=get,list,watch,create",
                 "--resource=pods,configmaps")
    node.kubectl("create", "rolebinding", "operator", "-n", ns, "--role=operator",
                 f"--serviceaccount={ns}:operator")
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "operator"},
           "spec": {"serviceAccountName": "operator", "restartPolicy": "Never",
                    "containers": [{"name": "c", "image": kubeclient_image,
                                    "command": ["python3", "-c", CLIENT]}]}}
    node.kubectl("apply", "-n", ns, "-f", "-", input=json.dumps(pod))
    done = wait_pod(node, ns, "operator", lambda p: phase(p) in ("Succeeded", "Failed"),
                    timeout=120, what="the client pod to finish")
    logs = node.kubectl("logs", "operator", "-n", ns).stdout
    assert phase(done) == "Succeeded", logs
    got = json.loads(logs.strip().splitlines()[-1])
    assert got["host"] == "10.96.0.1"            # through the service, not the node's address
    assert "operator" in got["pods"]
    assert got["events"][:1] == ["ADDED"]
    assert got["server"].startswith("v1.")
    cm = json.loads(node.kubectl("get", "configmap", "made-inside", "-n", ns, "-o", "json").stdout)
    assert cm["data"]["by"] == "operator"
