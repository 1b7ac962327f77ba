"""The components `pinnace server` runs reach its API server by a Unix
socket in the data dir, each with a token of its own; the socket
authenticates every request as the HTTPS port does, and the components'
kubeconfigs still work with kubectl over HTTPS."""

from __future__ import annotations

import json
import socket
import stat
from pathlib import Path

from pinnace.testing.cluster import run_kubectl
from tests.conftest import Server, tcp_connections_to, wait_for


def _over_socket(path: Path, method: str, url: str, token: str | None = None,
                 body: dict | None = None) -> tuple[int, dict]:
    """One HTTP/1.1 request over the Unix socket: (status, JSON body)."""
    data = json.dumps(body).encode() if body is not None else b""
    head = [f"{method} {url} HTTP/1.1", "Host: localhost", "Connection: close",
            "Accept: application/json", f"Content-Length: {len(data)}"]
    if body is not None:
        head.append("Content-Type: application/json")
    if token is not None:
        head.append(f"Authorization: Bearer {token}")
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(10)
        s.connect(str(path))
        s.sendall(("\r\n".join(head) + "\r\n\r\n").encode() + data)
        raw = b""
        while chunk := s.recv(65536):
            raw += chunk
    headers, _, payload = raw.partition(b"\r\n\r\n")
    status = int(headers.split(b" ", 2)[1])
    if b"transfer-encoding: chunked" in headers.lower():
        decoded, rest = b"", payload
        while rest:
            size_line, _, rest = rest.partition(b"\r\n")
            size = int(size_line, 16)
            if size == 0:
                break
            decoded, rest = decoded + rest[:size], rest[size + 2:]
        payload = decoded
    return status, json.loads(payload) if payload.strip() else {}


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

    code, status = _over_socket(sock, "GET", "/api/v1/namespaces")
    assert code == 401 and status["reason"] == "Unauthorized"
    code, status = _over_socket(sock, "GET", "/api/v1/namespaces", token=token[:-2] + "xx")
    assert code == 401

    review = {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"}
    code, out = _over_socket(sock, "POST",
                             "/apis/authentication.k8s.io/v1/selfsubjectreviews", token, review)
    assert code == 201, out
    assert out["status"]["userInfo"]["username"] == "system:kube-scheduler"
    # With the scheduler's rights, not more: it reads no Secrets.
    code, status = _over_socket(sock, "GET", "/api/v1/secrets", token)
    assert code == 403, status
    assert 'User "system:kube-scheduler" cannot list resource "secrets"' in status["message"]


def test_a_components_kubeconfig_works_with_kubectl_over_https(cluster: Server) -> None:
    kubeconfig = cluster.data_dir / "scheduler.kubeconfig"
    assert "pinnace.io/local-socket" in kubeconfig.read_text()
    out = run_kubectl(kubeconfig, "auth", "whoami", "-o", "jsonpath={.status.userInfo.username}")
    assert out.stdout == "system:kube-scheduler"
