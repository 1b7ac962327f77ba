"""Joining nodes with a token, against a real `pinnace server` (API server
and controller manager): the server's node-token, the agent's bootstrap
(cluster-info, CA pin, CSR approved and signed, its own kubeconfig), the
refusals (wrong secret, expired token, wrong CA, a rogue server never sees
the token), what a bootstrap token may do, `pinnace token`, and `kubectl
certificate approve` for a request nobody approves automatically."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import json
import os
import shutil
import ssl
import stat
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from pinnace.apiserver import bootstraptoken as bt
from pinnace.apiserver.certs import ensure_pki
from pinnace.kubelet.bootstrap import REFUSED, JoinError, join
from tests.conftest import KUBECTL, Server, start_server

HAVE_KUBECTL = shutil.which(KUBECTL) is not None


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    s = start_server(tmp_path_factory.mktemp("join") / "server", command="server")
    yield s
    s.stop()


def node_token(srv: Server) -> str:
    return (srv.data_dir / "node-token").read_text().strip()


def pinnace(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pinnace.cli.main", *args], capture_output=True,
                          text=True, timeout=120, env={**os.environ, **(env or {})})


def join_now(srv: Server, token: str, data_dir: Path, node: str) -> Path:
    return asyncio.run(join(srv.url, token, data_dir, node, timeout=60))


def whoami(kubeconfig: Path) -> dict[str, Any]:
    """SelfSubjectReview (`kubectl auth whoami`) with this kubeconfig."""
    from pinnace.client import Client, load_kubeconfig

    async def ask() -> dict[str, Any]:
        async with Client(load_kubeconfig(kubeconfig)) as client:
            return await client.request(  # type: ignore[no-any-return]
                "POST", "/apis/authentication.k8s.io/v1/selfsubjectreviews",
                body={"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"})
    return asyncio.run(ask())["status"]["userInfo"]


def bearer_call(srv: Server, token: str, method: str, path: str,
                body: Any = None) -> tuple[int, Any]:
    ctx = ssl.create_default_context(cafile=str(srv.data_dir / "tls" / "ca.crt"))
    req = urllib.request.Request(srv.url + path, method=method,
                                 data=None if body is None else json.dumps(body).encode(),
                                 headers={"Authorization": f"Bearer {token}",
                                          "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, context=ctx, timeout=30) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def test_server_keeps_a_join_token(srv: Server) -> None:
    path = srv.data_dir / "node-token"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    jt = bt.parse_join_token(path.read_text())
    assert jt.ca_hash == bt.ca_hash((srv.data_dir / "tls" / "ca.crt").read_bytes())
    secret = json.loads(srv.kubectl("-n", "kube-system", "get", "secret",
                                    f"bootstrap-token-{jt.token_id}", "-o", "json").stdout)
    assert secret["type"] == "bootstrap.kubernetes.io/token"
    data = bt.secret_data(secret)
    assert data["token-secret"] == jt.secret and "expiration" not in data
    assert data["description"] == "the server's node join token"
    # cluster-info: readable with no credentials at all, and nothing else is.
    ctx = ssl.create_default_context(cafile=str(srv.data_dir / "tls" / "ca.crt"))
    with urllib.request.urlopen(srv.url + "/api/v1/namespaces/kube-public/configmaps/"
                                "cluster-info", context=ctx, timeout=30) as resp:
        info = json.loads(resp.read())
    assert "certificate-authority-data" in info["data"]["kubeconfig"]
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(srv.url + "/api/v1/namespaces/kube-public/configmaps",
                               context=ctx, timeout=30)
    assert e.value.code == 401


def test_agent_joins_as_its_own_node(srv: Server, tmp_path: Path) -> None:
    kubeconfig = join_now(srv, node_token(srv), tmp_path / "node", "node-a")
    assert kubeconfig == tmp_path / "node" / "agent" / "kubeconfig"
    assert stat.S_IMODE(kubeconfig.stat().st_mode) == 0o600
    key = tmp_path / "node" / "agent" / "tls" / "kubelet-client.key"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert whoami(kubeconfig) == {"username": "system:node:node-a",
                                  "groups": ["system:nodes", "system:authenticated"]}
    csrs = json.loads(srv.kubectl("get", "csr", "-o", "json").stdout)["items"]
    mine = [c for c in csrs if base64.b64decode(c.get("status", {}).get("certificate", "")) ==
            (tmp_path / "node" / "agent" / "tls" / "kubelet-client.crt").read_bytes()]
    assert len(mine) == 1
    csr = mine[0]
    tid = bt.parse_join_token(node_token(srv)).token_id
    assert csr["spec"]["username"] == f"system:bootstrap:{tid}"
    assert csr["spec"]["signerName"] == "kubernetes.io/kube-apiserver-client-kubelet"
    assert [(c["type"], c["reason"]) for c in csr["status"]["conditions"]] == \
        [("Approved", "AutoApproved")]
    if HAVE_KUBECTL:  # kubectl shows it as on a real cluster
        row = srv.kubectl("get", "csr", csr["metadata"]["name"]).stdout.splitlines()[1]
        assert f"system:bootstrap:{tid}" in row and row.endswith("Approved,Issued")


def test_a_node_renews_its_own_certificate(srv: Server, tmp_path: Path) -> None:
    from pinnace.kubelet.bootstrap import renew

    data = tmp_path / "node"
    kubeconfig = join_now(srv, node_token(srv), data, "node-r")
    cert_path = data / "agent" / "tls" / "kubelet-client.crt"
    first = cert_path.read_bytes()
    assert not asyncio.run(renew(data))  # a year left: nothing to do
    assert cert_path.read_bytes() == first
    # As if in its last months: a new key and certificate, asked for as the node itself.
    assert asyncio.run(asyncio.wait_for(renew(data, within=dt.timedelta(days=400)), 60))
    assert cert_path.read_bytes() != first
    assert whoami(kubeconfig)["username"] == "system:node:node-r"
    csrs = json.loads(srv.kubectl("get", "csr", "-o", "json").stdout)["items"]
    mine = [c for c in csrs if base64.b64decode(c.get("status", {}).get("certificate", "")) ==
            cert_path.read_bytes()]
    assert [c["spec"]["username"] for c in mine] == ["system:node:node-r"]
    assert [(c["type"], c["reason"]) for c in mine[0]["status"]["conditions"]] == \
        [("Approved", "AutoApproved")]


def test_agent_cli_joins_once(srv: Server, tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(node_token(srv) + "\n")
    args = ["agent", "--join-only", "--server", srv.url, "--token-file", str(token_file),
            "--data-dir", str(tmp_path / "node"), "--node-name", "Node-B"]
    first = pinnace(*args)
    assert first.returncode == 0, first.stderr
    assert "joined" in first.stdout and "node-b" in first.stdout
    kubeconfig = tmp_path / "node" / "agent" / "kubeconfig"
    assert whoami(kubeconfig)["username"] == "system:node:node-b"
    again = pinnace(*args[:-4], "--token", "garbage", "--data-dir", str(tmp_path / "node"))
    assert again.returncode == 0 and "already joined" in again.stdout  # no token needed


def test_wrong_secret_is_refused(srv: Server, tmp_path: Path) -> None:
    jt = bt.parse_join_token(node_token(srv))
    wrong = str(bt.JoinToken(jt.ca_hash, jt.token_id, "x" * 16))
    with pytest.raises(JoinError, match=f"^{REFUSED}$"):
        join_now(srv, wrong, tmp_path / "n", "n1")
    out = pinnace("agent", "--join-only", "--server", srv.url, "--token", wrong,
                  "--data-dir", str(tmp_path / "n"))
    assert out.returncode == 1
    assert "the join token was refused: it is wrong or has expired" in out.stderr
    assert not (tmp_path / "n" / "agent" / "kubeconfig").exists()


def test_expired_token_is_refused(srv: Server, tmp_path: Path) -> None:
    tid, secret = bt.generate()
    past = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)
    srv.kubectl("create", "-f", "-", input=json.dumps(bt.token_secret(tid, secret,
                                                                       expires=past)))
    jt = bt.parse_join_token(node_token(srv))
    with pytest.raises(JoinError, match=f"^{REFUSED}$"):
        join_now(srv, str(bt.JoinToken(jt.ca_hash, tid, secret)), tmp_path / "n", "n1")
    srv.kubectl("-n", "kube-system", "delete", "secret", f"bootstrap-token-{tid}")


def test_wrong_ca_hash_is_refused(srv: Server, tmp_path: Path) -> None:
    jt = bt.parse_join_token(node_token(srv))
    other = str(bt.JoinToken("0" * 64, jt.token_id, jt.secret))
    with pytest.raises(JoinError, match="the server's CA does not match the token"):
        join_now(srv, other, tmp_path / "n", "n1")
    out = pinnace("agent", "--join-only", "--server", srv.url, "--token", other,
                  "--data-dir", str(tmp_path / "n"))
    assert out.returncode == 1 and "the server's CA does not match the token" in out.stderr


def test_a_rogue_server_never_sees_the_token(srv: Server, tmp_path: Path) -> None:
    """A server with another CA (a man in the middle) gets the anonymous
    cluster-info read, and nothing else: no token, no CSR."""
    rogue_pki = ensure_pki(tmp_path / "rogue", "127.0.0.1")
    seen: list[tuple[str, str, str]] = []

    async def handler(request: web.Request) -> web.Response:
        seen.append((request.method, request.path, request.headers.get("Authorization", "")))
        if request.path.endswith("/cluster-info"):
            ca = base64.b64encode(rogue_pki.ca_cert.read_bytes()).decode()
            kubeconfig = ("apiVersion: v1\nkind: Config\nclusters:\n- name: ''\n  cluster:\n"
                          f"    certificate-authority-data: {ca}\n    server: x\n")
            return web.json_response({"kind": "ConfigMap", "data": {"kubeconfig": kubeconfig}})
        return web.json_response({"kind": "Status", "code": 404}, status=404)

    async def run() -> str:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(rogue_pki.server_cert, rogue_pki.server_key)
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", handler)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ctx)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        try:
            await join(f"https://127.0.0.1:{port}", node_token(srv), tmp_path / "n", "n1")
        except JoinError as e:
            return str(e)
        finally:
            await runner.cleanup()
        return "joined"

    message = asyncio.run(run())
    assert "the server's CA does not match the token" in message
    assert seen == [("GET", "/api/v1/namespaces/kube-public/configmaps/cluster-info", "")]


def test_a_bootstrap_token_only_requests_certificates(srv: Server) -> None:
    bearer = bt.parse_join_token(node_token(srv)).bearer
    code, st = bearer_call(srv, bearer, "GET", "/api/v1/namespaces/kube-system/secrets")
    assert code == 403 and st["message"] == (
        f'secrets is forbidden: User "system:bootstrap:{bearer.split(".")[0]}" cannot list '
        'resource "secrets" in API group "" in the namespace "kube-system"')
    code, st = bearer_call(srv, bearer, "POST", "/api/v1/namespaces/default/configmaps",
                           {"metadata": {"name": "x"}})
    assert code == 403
    code, review = bearer_call(srv, bearer, "POST",
                               "/apis/authentication.k8s.io/v1/selfsubjectreviews",
                               {"apiVersion": "authentication.k8s.io/v1",
                                "kind": "SelfSubjectReview"})
    assert code == 201
    assert review["status"]["userInfo"]["username"].startswith("system:bootstrap:")
    assert "system:bootstrappers" in review["status"]["userInfo"]["groups"]


def test_token_commands(srv: Server, tmp_path: Path) -> None:
    base = ["token", "--data-dir", str(srv.data_dir)]
    made = pinnace(*base, "create", "--ttl", "1h", "--description", "for node-c")
    assert made.returncode == 0, made.stderr
    jt = bt.parse_join_token(made.stdout)
    assert jt.ca_hash == bt.parse_join_token(node_token(srv)).ca_hash
    listed = pinnace(*base, "list")
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    assert lines[0].split()[:5] == ["TOKEN", "ID", "TTL", "EXPIRES", "USAGES"]
    row = next(line for line in lines if line.startswith(jt.token_id))
    assert "for node-c" in row and "authentication,signing" in row and "<forever>" not in row
    server_row = next(line for line in lines
                      if line.startswith(bt.parse_join_token(node_token(srv)).token_id))
    assert "<forever>" in server_row and "the server's node join token" in server_row
    # The new token joins a node; deleted, it joins no more.
    kubeconfig = join_now(srv, made.stdout.strip(), tmp_path / "c", "node-c")
    assert whoami(kubeconfig)["username"] == "system:node:node-c"
    gone = pinnace(*base, "delete", jt.token_id)
    assert gone.returncode == 0 and f'bootstrap token "{jt.token_id}" deleted' in gone.stdout
    assert jt.token_id not in pinnace(*base, "list").stdout
    with pytest.raises(JoinError, match=f"^{REFUSED}$"):
        join_now(srv, made.stdout.strip(), tmp_path / "d", "node-d")
    missing = pinnace(*base, "delete", jt.token_id)
    assert missing.returncode == 1 and "not found" in missing.stderr
    # Through $KUBECONFIG too, as kubectl finds it.
    via_env = pinnace("token", "list", env={"KUBECONFIG": str(srv.kubeconfig)})
    assert via_env.returncode == 0 and "TOKEN ID" in via_env.stdout


@pytest.mark.skipif(not HAVE_KUBECTL, reason="kubectl is not installed")
def test_kubectl_certificate_approve(srv: Server, tmp_path: Path) -> None:
    """A client certificate for a person: not auto-approved; once a human
    approves it, signed, and the API server knows its holder."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    req = (x509.CertificateSigningRequestBuilder().subject_name(x509.Name([
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "devs"),
        x509.NameAttribute(NameOID.COMMON_NAME, "bob")])).sign(key, hashes.SHA256()))
    srv.kubectl("create", "-f", "-", input=json.dumps({
        "apiVersion": "certificates.k8s.io/v1", "kind": "CertificateSigningRequest",
        "metadata": {"name": "bob"},
        "spec": {"request": base64.b64encode(req.public_bytes(
            serialization.Encoding.PEM)).decode(),
            "signerName": "kubernetes.io/kube-apiserver-client", "expirationSeconds": 86400,
            "usages": ["client auth"]}}))
    try:
        csr = json.loads(srv.kubectl("get", "csr", "bob", "-o", "json").stdout)
        assert csr["spec"]["username"] == "admin"  # the requester, set by the server
        assert "system:masters" in csr["spec"]["groups"]
        assert "conditions" not in csr.get("status", {})
        out = srv.kubectl("certificate", "approve", "bob").stdout
        assert "approved" in out

        def issued() -> dict[str, Any] | None:
            c = json.loads(srv.kubectl("get", "csr", "bob", "-o", "json").stdout)
            return c if c.get("status", {}).get("certificate") else None

        from tests.conftest import wait_for

        csr = wait_for(issued, what="bob's certificate")
        assert [c["type"] for c in csr["status"]["conditions"]] == ["Approved"]
        assert csr["status"]["conditions"][0]["reason"] == "KubectlApprove"
        # The certificate authenticates bob (in group devs).
        (tmp_path / "bob.crt").write_bytes(base64.b64decode(csr["status"]["certificate"]))
        (tmp_path / "bob.key").write_bytes(key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption()))
        kubeconfig = tmp_path / "bob.kubeconfig"
        kubeconfig.write_text(json.dumps({
            "apiVersion": "v1", "kind": "Config", "current-context": "c",
            "clusters": [{"name": "c", "cluster": {
                "server": srv.url,
                "certificate-authority": str(srv.data_dir / "tls" / "ca.crt")}}],
            "users": [{"name": "bob", "user": {"client-certificate": str(tmp_path / "bob.crt"),
                                               "client-key": str(tmp_path / "bob.key")}}],
            "contexts": [{"name": "c", "context": {"cluster": "c", "user": "bob"}}]}))
        assert whoami(kubeconfig) == {"username": "bob",
                                      "groups": ["devs", "system:authenticated"]}
        assert "Approved,Issued" in srv.kubectl("get", "csr", "bob").stdout
    finally:
        srv.kubectl("delete", "csr", "bob", check=False)


def test_node_token_secret_comes_back(tmp_path: Path) -> None:
    """Deleted, the server's token Secret is made again on the next start,
    for the same token (the file is what nodes were given)."""
    data = tmp_path / "data"
    first = start_server(data)
    try:
        token = node_token(first)
        tid = bt.parse_join_token(token).token_id
        first.kubectl("-n", "kube-system", "delete", "secret", f"bootstrap-token-{tid}")
    finally:
        first.stop()
    second = start_server(data)
    try:
        assert node_token(second) == token
        got = json.loads(second.kubectl("-n", "kube-system", "get", "secret",
                                        f"bootstrap-token-{tid}", "-o", "json").stdout)
        assert bt.secret_data(got)["token-secret"] == bt.parse_join_token(token).secret
    finally:
        second.stop()


def test_csr_subresources(srv: Server) -> None:
    """Who asked is the server's to say; approval only through /approval,
    and the object and /status cannot approve (upstream's strategies)."""
    from cryptography.hazmat.primitives.asymmetric import ec

    from pinnace.kubelet.bootstrap import csr_pem

    http = srv.http()
    base = "/apis/certificates.k8s.io/v1/certificatesigningrequests"
    request = base64.b64encode(csr_pem(ec.generate_private_key(ec.SECP256R1()), "x")).decode()
    code, made = http.call("POST", base, {
        "apiVersion": "certificates.k8s.io/v1", "kind": "CertificateSigningRequest",
        "metadata": {"name": "subres"},
        "spec": {"request": request, "signerName": "example.com/nobody", "usages": ["client auth"],
                 "username": "mallory", "groups": ["system:bootstrappers"]},
        "status": {"conditions": [{"type": "Approved", "status": "True"}]}})
    try:
        assert code == 201, made
        assert made["spec"]["username"] == "admin" and "system:masters" in made["spec"]["groups"]
        assert "status" not in made
        approved = {"type": "Approved", "status": "True", "reason": "Sneaky"}
        code, out = http.call("PUT", f"{base}/subres/status",
                              {**made, "status": {"conditions": [approved]}})
        assert code == 200 and not out.get("status", {}).get("conditions")
        code, out = http.call("PUT", f"{base}/subres",
                              {**out, "spec": {**out["spec"], "usages": ["server auth"]},
                               "status": {"conditions": [approved]}})
        assert code == 200 and out["spec"]["usages"] == ["client auth"] and "status" not in out
        denied = {"type": "Denied", "status": "True", "reason": "NotToday"}
        code, out = http.call("PUT", f"{base}/subres/approval",
                              {**out, "status": {"conditions": [denied]}})
        assert code == 200, out
        cond = out["status"]["conditions"][0]
        assert cond["type"] == "Denied" and cond["lastUpdateTime"] and cond["lastTransitionTime"]
        code, st = http.call("PUT", f"{base}/subres/approval", {**out, "status": {}})
        assert code == 422 and 'may not remove a condition of type "Denied"' in st["message"]
        code, st = http.call("PUT", f"{base}/subres/approval",
                             {**out, "status": {"conditions": [denied, approved]}})
        assert code == 422 and "mutually exclusive" in st["message"]
        code, got = http.call("GET", f"{base}/subres/approval")
        assert code == 200 and got["status"]["conditions"][0]["type"] == "Denied"
    finally:
        http.call("DELETE", f"{base}/subres")
