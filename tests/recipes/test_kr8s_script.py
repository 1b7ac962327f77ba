"""Recipe: a kr8s script against a cluster with simulated nodes, so its
pods get scheduled, run and turn Ready."""

import pytest
from kr8s.objects import Deployment

from pinnace.testing import Cluster


@pytest.mark.pinnace(nodes=2)
def test_scale_with_kr8s(pinnace_cluster: Cluster, pinnace_namespace: str) -> None:
    api = pinnace_cluster.kr8s()
    deploy = Deployment({
        "metadata": {"name": "web", "namespace": pinnace_namespace},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web"}},
                              "spec": {"containers": [{"name": "web", "image": "nginx"}]}}},
    }, api=api)
    deploy.create()
    deploy.scale(3)
    pinnace_cluster.wait("deployment/web", condition="Available", namespace=pinnace_namespace,
                         check=lambda d: d["status"].get("readyReplicas") == 3)
    pods = list(api.get("pods", namespace=pinnace_namespace, label_selector={"app": "web"}))
    assert len(pods) == 3 and all(p.status.phase == "Running" for p in pods)
