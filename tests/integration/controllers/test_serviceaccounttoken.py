"""Legacy service-account token Secrets, end to end: the token controller
fills them in, real kubectl and the official client authenticate with the
token as the service account, and the token stops working as soon as its
Secret (or account) is gone. TokenRequest tokens (`kubectl create token`)
keep working alongside."""

from __future__ import annotations

import asyncio
import base64
import json
from pathlib import Path
from typing import Any

import yaml

from pinnace.controllers.serviceaccounttoken import TokensController
from tests.conftest import Server
from tests.integration.controllers.nodes_harness import (
    eventually,
    kubectl,
    own_server,
    run_controllers,
)

__all__ = ["own_server"]

Obj = dict[str, Any]


def options(server: Server) -> dict[str, Any]:
    return {"service_account_private_key_file":
            str(server.data_dir / "tls" / "service-account.key")}


def token_secret(name: str, account: str, **annotations: str) -> str:
    return json.dumps({"apiVersion": "v1", "kind": "Secret", "type":
                       "kubernetes.io/service-account-token",
                       "metadata": {"name": name, "annotations": {
                           "kubernetes.io/service-account.name": account, **annotations}}})


async def get(server: Server, ns: str, kind: str, name: str) -> Obj | None:
    out = await kubectl(server, "-n", ns, "get", kind, name, "-o", "json", "--ignore-not-found")
    return json.loads(out) if out.strip() else None


async def filled(server: Server, ns: str, name: str) -> Obj | None:
    secret = await get(server, ns, "secret", name)
    data = (secret or {}).get("data") or {}
    return secret if {"token", "ca.crt", "namespace"} <= set(data) else None


def decoded(secret: Obj, key: str) -> str:
    return base64.b64decode(secret["data"][key]).decode()


def claims_of(token: str) -> Obj:
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def token_kubeconfig(server: Server, token: str, path: Path) -> Path:
    """A kubeconfig that carries nothing but the server, its CA and the token."""
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "sa",
        "clusters": [{"name": "c", "cluster": {
            "server": server.url,
            "certificate-authority": str(server.data_dir / "tls" / "ca.crt")}}],
        "users": [{"name": "u", "user": {"token": token}}],
        "contexts": [{"name": "sa", "context": {"cluster": "c", "user": "u"}}]}))
    return path


async def whoami(server: Server, kubeconfig: Path) -> Obj | None:
    """`kubectl auth whoami` with only the token; None when the server refuses it."""
    proc = await _kubectl_as(server, kubeconfig, "auth", "whoami", "-o", "json")
    if proc.returncode != 0:
        assert "Unauthorized" in proc.stderr or "provide credentials" in proc.stderr, proc.stderr
        return None
    return json.loads(proc.stdout)["status"]["userInfo"]  # type: ignore[no-any-return]


async def _kubectl_as(server: Server, kubeconfig: Path, *args: str) -> Any:
    return await asyncio.to_thread(
        server.kubectl, "--kubeconfig", str(kubeconfig), *args, check=False)


def client_for(server: Server, token: str) -> Any:
    from kubernetes import client

    cfg = client.Configuration()
    cfg.host = server.url
    cfg.ssl_ca_cert = str(server.data_dir / "tls" / "ca.crt")
    cfg.api_key = {"authorization": token}
    cfg.api_key_prefix = {"authorization": "Bearer"}
    return client.ApiClient(cfg)


async def token_review(server: Server, token: str) -> Any:
    """What the API server answers an administrator's TokenReview of ``token``."""
    from kubernetes import client

    def review() -> Any:
        with server.api_client() as api:
            body = client.V1TokenReview(spec=client.V1TokenReviewSpec(token=token))
            return client.AuthenticationV1Api(api).create_token_review(body).status

    return await asyncio.to_thread(review)


async def test_legacy_token_secret_is_filled_and_authenticates(own_server: Server,
                                                               tmp_path: Path) -> None:
    k, ns = own_server, "legacy-a"
    await kubectl(k, "create", "namespace", ns)
    await kubectl(k, "-n", ns, "create", "serviceaccount", "robot")
    sa = await get(k, ns, "sa", "robot")
    assert sa is not None
    async with run_controllers(k, TokensController, options=options(k)):
        await kubectl(k, "-n", ns, "create", "-f", "-", input=token_secret("robot-token", "robot"))
        secret = await eventually(lambda: filled(k, ns, "robot-token"), what="the token filled in")
    annotations = secret["metadata"]["annotations"]
    assert annotations["kubernetes.io/service-account.uid"] == sa["metadata"]["uid"]
    assert annotations["kubernetes.io/service-account.name"] == "robot"
    assert decoded(secret, "ca.crt") == (k.data_dir / "tls" / "ca.crt").read_text()
    assert decoded(secret, "namespace") == ns
    token = decoded(secret, "token")
    assert claims_of(token) == {
        "iss": "kubernetes/serviceaccount",
        "sub": f"system:serviceaccount:{ns}:robot",
        "kubernetes.io/serviceaccount/namespace": ns,
        "kubernetes.io/serviceaccount/secret.name": "robot-token",
        "kubernetes.io/serviceaccount/service-account.name": "robot",
        "kubernetes.io/serviceaccount/service-account.uid": sa["metadata"]["uid"]}
    header = json.loads(base64.urlsafe_b64decode(token.split(".")[0] + "=="))
    assert header["alg"] == "ES256" and header["kid"]
    assert "token:" in await kubectl(k, "-n", ns, "describe", "secret", "robot-token")

    # kubectl with nothing but the token is the service account (the controller is
    # stopped by now: authentication is the API server's business alone).
    kc = token_kubeconfig(k, token, tmp_path / "sa.kubeconfig")
    for _ in range(3):  # the first check and the remembered ones agree
        user = await whoami(k, kc)
        assert user is not None
        assert user["username"] == f"system:serviceaccount:{ns}:robot"
        assert user["uid"] == sa["metadata"]["uid"]
        assert set(user["groups"]) == {"system:serviceaccounts",
                                       f"system:serviceaccounts:{ns}", "system:authenticated"}
    # It has exactly the rights RBAC gives it: none until bound to a role.
    refused = await _kubectl_as(k, kc, "-n", ns, "get", "serviceaccounts", "-o", "name")
    assert f'User "system:serviceaccount:{ns}:robot" cannot list resource "serviceaccounts"' \
        in refused.stderr
    await kubectl(k, "-n", ns, "create", "rolebinding", "robot-edit", "--clusterrole=edit",
                  f"--serviceaccount={ns}:robot")
    listed = await _kubectl_as(k, kc, "-n", ns, "get", "serviceaccounts", "-o", "name")
    assert "serviceaccount/robot" in listed.stdout

    # The official client, and a TokenReview by an administrator, agree.
    from kubernetes import client

    def secret_names() -> list[str]:
        with client_for(k, token) as api:
            return [s.metadata.name for s in client.CoreV1Api(api).list_namespaced_secret(ns).items]

    assert "robot-token" in await asyncio.to_thread(secret_names)
    review = await token_review(k, token)
    assert review.authenticated is True
    assert review.user.username == f"system:serviceaccount:{ns}:robot"

    # Deleting the Secret revokes the token (within the documented window).
    await kubectl(k, "-n", ns, "delete", "secret", "robot-token")
    assert await eventually(lambda: _refused(k, kc), timeout=15, what="the token refused")
    assert (await token_review(k, token)).authenticated is not True
    await kubectl(k, "delete", "namespace", ns, "--wait=false")


async def _refused(server: Server, kubeconfig: Path) -> bool:
    return await whoami(server, kubeconfig) is None


async def test_token_needs_its_account_with_the_same_uid(own_server: Server,
                                                         tmp_path: Path) -> None:
    k, ns = own_server, "legacy-b"
    await kubectl(k, "create", "namespace", ns)
    await kubectl(k, "-n", ns, "create", "serviceaccount", "robot")
    async with run_controllers(k, TokensController, options=options(k)):
        await kubectl(k, "-n", ns, "create", "-f", "-", input=token_secret("robot-token", "robot"))
        secret = await eventually(lambda: filled(k, ns, "robot-token"), what="the token filled in")
    kc = token_kubeconfig(k, decoded(secret, "token"), tmp_path / "sa.kubeconfig")
    assert await whoami(k, kc) is not None
    # Without the controller the Secret survives, but a new account of the same
    # name is another account: the old token is not its credential.
    await kubectl(k, "-n", ns, "delete", "serviceaccount", "robot")
    await kubectl(k, "-n", ns, "create", "serviceaccount", "robot")
    assert await get(k, ns, "secret", "robot-token") is not None
    assert await eventually(lambda: _refused(k, kc), timeout=15, what="the token refused")

    # A token Secret whose data was replaced no longer vouches for the old token.
    await kubectl(k, "-n", ns, "create", "serviceaccount", "other")
    async with run_controllers(k, TokensController, options=options(k)):
        await kubectl(k, "-n", ns, "create", "-f", "-", input=token_secret("other-token", "other"))
        other = await eventually(lambda: filled(k, ns, "other-token"), what="filled in")
    kc2 = token_kubeconfig(k, decoded(other, "token"), tmp_path / "other.kubeconfig")
    assert await whoami(k, kc2) is not None
    await kubectl(k, "-n", ns, "patch", "secret", "other-token", "--type=merge", "-p",
                  json.dumps({"data": {"token": base64.b64encode(b"x.y.z").decode()}}))
    assert await eventually(lambda: _refused(k, kc2), timeout=15, what="the token refused")
    await kubectl(k, "delete", "namespace", ns, "--wait=false")


async def test_secrets_without_their_account_are_deleted(own_server: Server,
                                                         tmp_path: Path) -> None:
    k, ns = own_server, "legacy-c"
    await kubectl(k, "create", "namespace", ns)
    await kubectl(k, "-n", ns, "create", "serviceaccount", "robot")
    async with run_controllers(k, TokensController, options=options(k)):
        # No such account: the controller deletes the Secret.
        await kubectl(k, "-n", ns, "create", "-f", "-", input=token_secret("ghost-token", "ghost"))
        assert await eventually(lambda: _gone(k, ns, "ghost-token"), what="ghost-token deleted")
        # A uid annotation that names another incarnation of the account: deleted too.
        await kubectl(k, "-n", ns, "create", "-f", "-", input=token_secret(
            "stale-token", "robot", **{"kubernetes.io/service-account.uid": "not-the-uid"}))
        assert await eventually(lambda: _gone(k, ns, "stale-token"), what="stale-token deleted")

        # Deleting the account deletes its token Secrets (and the token stops working).
        await kubectl(k, "-n", ns, "create", "-f", "-", input=token_secret("robot-token", "robot"))
        secret = await eventually(lambda: filled(k, ns, "robot-token"), what="filled in")
        await kubectl(k, "-n", ns, "create", "-f", "-", input=json.dumps({
            "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "plain"},
            "stringData": {"token": "not a service account token"}}))
        kc = token_kubeconfig(k, decoded(secret, "token"), tmp_path / "sa.kubeconfig")
        assert await whoami(k, kc) is not None
        await kubectl(k, "-n", ns, "delete", "serviceaccount", "robot")
        assert await eventually(lambda: _gone(k, ns, "robot-token"), what="robot-token deleted")
        assert await _refused(k, kc)
        assert await get(k, ns, "secret", "plain") is not None  # other Secrets are left alone
    await kubectl(k, "delete", "namespace", ns, "--wait=false")


async def _gone(server: Server, ns: str, name: str) -> bool:
    return await get(server, ns, "secret", name) is None


async def test_deleted_secret_leaves_the_accounts_secret_list(own_server: Server) -> None:
    k, ns = own_server, "legacy-d"
    await kubectl(k, "create", "namespace", ns)
    await kubectl(k, "-n", ns, "create", "serviceaccount", "robot")
    async with run_controllers(k, TokensController, options=options(k)):
        await kubectl(k, "-n", ns, "create", "-f", "-", input=token_secret("robot-token", "robot"))
        await eventually(lambda: filled(k, ns, "robot-token"), what="filled in")
        await kubectl(k, "-n", ns, "patch", "sa", "robot", "--type=merge", "-p", json.dumps(
            {"secrets": [{"name": "robot-token"}, {"name": "unrelated"}]}))
        await kubectl(k, "-n", ns, "delete", "secret", "robot-token")
        assert await eventually(lambda: _only_unrelated(k, ns), what="reference removed")
    await kubectl(k, "delete", "namespace", ns, "--wait=false")


async def _only_unrelated(server: Server, ns: str) -> bool:
    sa = await get(server, ns, "sa", "robot") or {}
    return [s["name"] for s in sa.get("secrets") or []] == ["unrelated"]


async def test_token_request_tokens_still_work(own_server: Server, tmp_path: Path) -> None:
    k, ns = own_server, "legacy-e"
    await kubectl(k, "create", "namespace", ns)
    await kubectl(k, "-n", ns, "create", "serviceaccount", "robot")
    token = (await kubectl(k, "-n", ns, "create", "token", "robot")).strip()
    claims = claims_of(token)
    assert claims["iss"] == "https://kubernetes.default.svc.cluster.local" and claims["exp"]
    kc = token_kubeconfig(k, token, tmp_path / "sa.kubeconfig")
    for _ in range(2):
        user = await whoami(k, kc)
        assert user is not None and user["username"] == f"system:serviceaccount:{ns}:robot"
    # Bound to a Secret: valid while that Secret exists.
    await kubectl(k, "-n", ns, "create", "secret", "generic", "anchor", "--from-literal=a=b")
    bound = (await kubectl(k, "-n", ns, "create", "token", "robot", "--bound-object-kind=Secret",
                           "--bound-object-name=anchor")).strip()
    kc2 = token_kubeconfig(k, bound, tmp_path / "bound.kubeconfig")
    assert await whoami(k, kc2) is not None
    await kubectl(k, "-n", ns, "delete", "secret", "anchor")
    assert await eventually(lambda: _refused(k, kc2), timeout=15, what="the bound token refused")
    # Deleting the account revokes its tokens.
    await kubectl(k, "-n", ns, "delete", "serviceaccount", "robot")
    assert await eventually(lambda: _refused(k, kc), timeout=15, what="the token refused")
    await kubectl(k, "delete", "namespace", ns, "--wait=false")


def test_pinnace_server_fills_legacy_token_secrets(cluster: Server, cluster_ns: str,
                                                   tmp_path: Path) -> None:
    """`pinnace server` hands its controller manager the signing key: a token
    Secret made there works as the account's credential."""
    from tests.conftest import wait_for

    k, ns = cluster.kubectl, cluster_ns
    k("-n", ns, "create", "serviceaccount", "robot")
    k("-n", ns, "create", "-f", "-", input=token_secret("robot-token", "robot"))

    def token() -> str | None:
        out = k("-n", ns, "get", "secret", "robot-token", "-o", "json").stdout
        data = json.loads(out).get("data") or {}
        return base64.b64decode(data["token"]).decode() if "token" in data else None

    kubeconfig = token_kubeconfig(cluster, wait_for(token, what="the token filled in"),
                                  tmp_path / "robot.kubeconfig")
    who = asyncio.run(whoami(cluster, kubeconfig))
    assert who is not None
    assert who["username"] == f"system:serviceaccount:{ns}:robot"
