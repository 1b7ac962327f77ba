"""Recipe: apply a Helm-rendered manifest with kubectl and check that the
release comes up, on a cluster with two simulated nodes."""

import base64
from pathlib import Path

import pytest

from pinnace.testing import Cluster

RENDERED = Path(__file__).parent / "rendered" / "guestbook.yaml"


@pytest.mark.pinnace(nodes=2)
def test_guestbook_release(pinnace_cluster: Cluster, pinnace_namespace: str) -> None:
    cluster, ns = pinnace_cluster, pinnace_namespace
    out = cluster.apply(RENDERED, namespace=ns)
    assert "deployment.apps/guestbook created" in out
    cluster.wait("deployment/guestbook", condition="Available", namespace=ns,
                 check=lambda d: d["status"].get("readyReplicas") == 2)
    cluster.wait("statefulset/guestbook-redis", namespace=ns,
                 check=lambda s: s["status"].get("readyReplicas") == 1)
    cluster.wait("job/guestbook-test-connection", condition="Complete", namespace=ns)
    # Services find their pods; the claim template got a bound volume.
    slices = cluster.kubectl("get", "endpointslices", "-n", ns, "-l",
                             "kubernetes.io/service-name=guestbook", "-o",
                             "jsonpath={.items[*].endpoints[*].conditions.ready}").stdout
    assert slices.split() == ["true", "true"]
    cluster.wait("pvc/data-guestbook-redis-0", namespace=ns,
                 check=lambda c: c["status"].get("phase") == "Bound")
    secret = cluster.get("secret/guestbook-redis", ns)
    assert secret is not None and "stringData" not in secret
    assert base64.b64decode(secret["data"]["password"]) == b"not-a-secret"
