"""The components `pinnace server` runs reach its API server by a Unix
socket in the data dir, each with a token of its own; the socket
authenticates every request as the HTTPS port does, and the components'
kubeconfigs still work with kubectl over HTTPS."""

from __future__ import annotations

import stat

from pinnace.testing.cluster import run_kubectl
from tests.conftest import Server, tcp_connections_to, unix_request, wait_for


def test_the_components_use_the_socket_and_the_https_port_is_not_dialled(
        cluster: Server, cluster_ns: str) -> None:
    sock = cluster.data_dir / "apiserver.sock"
    st = sock.stat()
    assert stat.S_ISSOCK(st.st_mode)
    assert stat.S_IMODE(st.st_mode) == 0o600  # the server's user alone
    # The controllers work (a ReplicaSet for a Deployment) ...
    cluster.kubectl("-n", cluster_ns, "create", "deployment", "by-socket", "--image=busybox")
    wait_for(lambda: cluster.kubectl("-n", cluster_ns, "get", "rs", "-l", "app=by-socket",
                                     "-o", "name").stdout.strip(), what="a ReplicaSet")
    # ... and the process they run in holds no connection to the HTTPS port.
    api_port = int(cluster.url.rsplit(":", 1)[1])
    assert tcp_connections_to(api_port, cluster.proc.pid) == 0


def test_the_socket_authenticates_every_request(cluster: Server) -> None:
    sock = cluster.data_dir / "apiserver.sock"
    token = (cluster.data_dir / "tls" / "scheduler.token").read_text().strip()
    assert stat.S_IMODE((cluster.data_dir / "tls" / "scheduler.token").stat().st_mode) == 0o600

    code, status = unix_request(sock, "GET", "/api/v1/namespaces")
    assert code == 401 and status["reason"] == "Unauthorized"
    code, status = unix_request(sock, "GET", "/api/v1/namespaces", token=token[:-2] + "xx")
    assert code == 401

    review = {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"}
    code, out = unix_request(sock, "POST",
                             "/apis/authentication.k8s.io/v1/selfsubjectreviews", token, review)
    assert code == 201, out
    assert out["status"]["userInfo"]["username"] == "system:kube-scheduler"
    # With the scheduler's rights, not more: it reads no Secrets.
    code, status = unix_request(sock, "GET", "/api/v1/secrets", token)
    assert code == 403, status
    assert 'User "system:kube-scheduler" cannot list resource "secrets"' in status["message"]


def test_a_components_kubeconfig_works_with_kubectl_over_https(cluster: Server) -> None:
    kubeconfig = cluster.data_dir / "scheduler.kubeconfig"
    assert "pinnace.io/local-socket" in kubeconfig.read_text()
    out = run_kubectl(kubeconfig, "auth", "whoami", "-o", "jsonpath={.status.userInfo.username}")
    assert out.stdout == "system:kube-scheduler"
