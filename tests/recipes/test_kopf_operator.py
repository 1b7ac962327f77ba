"""Recipe: test a kopf operator against a real cluster with KopfRunner."""

from pathlib import Path

from pinnace.testing import Cluster, wait_for

OPERATOR = Path(__file__).with_name("widget_operator.py")
CRD = """
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: widgets.example.com}
spec:
  group: example.com
  scope: Namespaced
  names: {plural: widgets, singular: widget, kind: Widget}
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        x-kubernetes-preserve-unknown-fields: true
"""


def test_widget_operator(pinnace_cluster: Cluster, pinnace_namespace: str) -> None:
    cluster, ns = pinnace_cluster, pinnace_namespace
    cluster.install_crds(CRD)
    with cluster.kopf_runner("--standalone", "--namespace", ns, str(OPERATOR)) as runner:
        cluster.apply({"apiVersion": "example.com/v1", "kind": "Widget",
                       "metadata": {"name": "big"}, "spec": {"size": 3}}, namespace=ns)
        cm = cluster.wait("configmap/big-config", namespace=ns)
        assert cm["data"] == {"size": "3"}
        # Deleting the Widget takes its ConfigMap with it: the real garbage collector runs.
        cluster.kubectl("delete", "widget", "big", "-n", ns)
        wait_for(lambda: cluster.get("configmap/big-config", ns) is None, 30,
                 "the ConfigMap to be garbage collected")
    assert runner.exit_code == 0 and runner.exception is None
