"""RBAC through real kubectl, as a cluster admin and as users with their own
certificates, obtained the way Kubernetes' docs tell a new user to get one:
a CertificateSigningRequest for signer kubernetes.io/kube-apiserver-client,
approved with `kubectl certificate approve`."""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.conftest import Server, wait_for


class User:
    """kubectl as someone else: a kubeconfig with that user's certificate."""

    def __init__(self, admin: Server, name: str, kubeconfig: Path):
        self.admin, self.name, self.kubeconfig = admin, name, kubeconfig

    def kubectl(self, *args: str, check: bool = True, input: str | None = None):  # type: ignore[no-untyped-def]
        saved = self.admin.kubeconfig
        self.admin.kubeconfig = self.kubeconfig
        try:
            return self.admin.kubectl(*args, check=check, input=input)
        finally:
            self.admin.kubeconfig = saved


def new_user(cluster: Server, name: str, groups: tuple[str, ...] = ()) -> User:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([*(x509.NameAttribute(NameOID.ORGANIZATION_NAME, g) for g in groups),
                         x509.NameAttribute(NameOID.COMMON_NAME, name)])
    csr = x509.CertificateSigningRequestBuilder().subject_name(subject).sign(key, hashes.SHA256())
    csr_name = f"user-{name.replace(':', '-')}-{os.getpid()}"
    cluster.kubectl("apply", "-f", "-", input=json.dumps({
        "apiVersion": "certificates.k8s.io/v1", "kind": "CertificateSigningRequest",
        "metadata": {"name": csr_name},
        "spec": {"request": base64.b64encode(csr.public_bytes(serialization.Encoding.PEM)).decode(),
                 "signerName": "kubernetes.io/kube-apiserver-client",
                 "usages": ["client auth"]}}))
    cluster.kubectl("certificate", "approve", csr_name)
    cert = wait_for(lambda: cluster.kubectl(
        "get", "csr", csr_name, "-o", "jsonpath={.status.certificate}").stdout,
        what=f"a certificate for {name}")
    home = cluster.data_dir / "users" / name.replace(":", "-")  # KUBECONFIG splits at ":"
    home.mkdir(parents=True, exist_ok=True)
    (home / "user.crt").write_bytes(base64.b64decode(cert))
    (home / "user.key").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    kubeconfig = home / "kubeconfig"
    cfg = json.loads(cluster.kubectl("config", "view", "--raw", "--minify", "-o", "json").stdout)
    cfg["users"] = [{"name": name, "user": {"client-certificate": str(home / "user.crt"),
                                            "client-key": str(home / "user.key")}}]
    cfg["contexts"][0]["context"]["user"] = name
    kubeconfig.write_text(json.dumps(cfg))
    return User(cluster, name, kubeconfig)


@pytest.fixture
def two_namespaces(cluster: Server, cluster_ns: str) -> tuple[str, str]:
    other = f"{cluster_ns}-b"
    cluster.kubectl("create", "namespace", other)
    yield cluster_ns, other
    cluster.kubectl("delete", "namespace", other, "--wait=false")


def forbidden(user: User, *args: str) -> str:
    proc = user.kubectl(*args, check=False)
    assert proc.returncode != 0, f"{args} was allowed: {proc.stdout}"
    # kubectl's create subcommands say "failed to create" instead of "(Forbidden)".
    assert "(Forbidden)" in proc.stderr or " is forbidden: " in proc.stderr, proc.stderr
    return proc.stderr.strip()


def test_view_in_one_namespace(cluster: Server, two_namespaces: tuple[str, str]) -> None:
    a, b = two_namespaces
    alice = new_user(cluster, f"alice-{a}")
    cluster.kubectl("run", "web", "--image=busybox", "-n", a)
    cluster.kubectl("create", "secret", "generic", "s", "--from-literal=k=v", "-n", a)

    msg = forbidden(alice, "get", "pods", "-n", a)
    assert f'pods is forbidden: User "{alice.name}" cannot list resource "pods" in API group "" ' \
           f'in the namespace "{a}"' in msg

    cluster.kubectl("create", "rolebinding", "alice-view", "--clusterrole=view",
                    f"--user={alice.name}", "-n", a)
    assert "web" in alice.kubectl("get", "pods", "-n", a).stdout
    assert alice.kubectl("get", "pod", "web", "-n", a, "-o", "name").stdout.strip() == "pod/web"
    forbidden(alice, "get", "pods", "-n", b)
    msg = forbidden(alice, "get", "secret", "s", "-n", a)
    assert f'secrets "s" is forbidden: User "{alice.name}" cannot get resource "secrets" in API ' \
           f'group "" in the namespace "{a}"' in msg
    msg = forbidden(alice, "delete", "pod", "web", "-n", a)
    assert 'cannot delete resource "pods"' in msg
    msg = forbidden(alice, "get", "nodes")
    assert 'cannot list resource "nodes" in API group "" at the cluster scope' in msg
    # A non-resource path no role grants.
    msg = forbidden(alice, "get", "--raw", "/metrics")
    assert f'forbidden: User "{alice.name}" cannot get path "/metrics"' in msg

    # can-i agrees with what happened, asked by alice and about alice.
    def can_i(*args: str, who: User | None = None) -> str:
        runner = who or cluster
        return runner.kubectl("auth", "can-i", *args, check=False).stdout.strip()

    assert can_i("list", "pods", "-n", a, who=alice) == "yes"
    assert can_i("list", "pods", "-n", b, who=alice) == "no"
    assert can_i("get", "secrets", "-n", a, who=alice) == "no"
    assert can_i("list", "pods", "-n", a, f"--as={alice.name}") == "yes"
    assert can_i("create", "deployments.apps", "-n", a, f"--as={alice.name}") == "no"
    listed = alice.kubectl("auth", "can-i", "--list", "-n", a).stdout
    pods_line = next(line for line in listed.splitlines() if line.startswith("pods "))
    assert "[get list watch]" in pods_line
    assert not any(line.startswith("secrets ") for line in listed.splitlines())
    whoami = alice.kubectl("auth", "whoami", "-o", "json").stdout
    assert json.loads(whoami)["status"]["userInfo"]["username"] == alice.name


def test_impersonation_needs_its_own_right(cluster: Server, two_namespaces: tuple[str, str]) -> None:
    a, _ = two_namespaces
    alice = new_user(cluster, f"alice2-{a}")
    bob = f"bob-{a}"
    cluster.kubectl("create", "rolebinding", "bob-view", "--clusterrole=view", f"--user={bob}",
                    "-n", a)
    msg = forbidden(alice, "get", "pods", "-n", a, f"--as={bob}")
    assert f'users "{bob}" is forbidden: User "{alice.name}" cannot impersonate resource ' \
           '"users" in API group "" at the cluster scope' in msg
    cluster.kubectl("create", "clusterrole", f"impersonate-{bob}", "--verb=impersonate",
                    "--resource=users", f"--resource-name={bob}")
    cluster.kubectl("create", "clusterrolebinding", f"alice-as-{bob}",
                    f"--clusterrole=impersonate-{bob}", f"--user={alice.name}")
    try:
        alice.kubectl("get", "pods", "-n", a, f"--as={bob}")
        # Bob's rights, not alice's (she has none here) and not more.
        forbidden(alice, "get", "secrets", "-n", a, f"--as={bob}")
        forbidden(alice, "get", "pods", "-n", a, "--as=carol")
        forbidden(alice, "get", "pods", "-n", a, f"--as={bob}", "--as-group=system:masters")
    finally:
        cluster.kubectl("delete", "clusterrolebinding", f"alice-as-{bob}")
        cluster.kubectl("delete", "clusterrole", f"impersonate-{bob}")


def test_no_escalation_through_roles_or_bindings(cluster: Server,
                                                 two_namespaces: tuple[str, str]) -> None:
    a, _ = two_namespaces
    dana = new_user(cluster, f"dana-{a}")
    cluster.kubectl("create", "rolebinding", "dana-admin", "--clusterrole=admin",
                    f"--user={dana.name}", "-n", a)
    # What she holds she may grant...
    dana.kubectl("create", "role", "pod-reader", "--verb=get,list", "--resource=pods", "-n", a)
    dana.kubectl("create", "rolebinding", "friend-edit", "--clusterrole=edit", "--user=friend",
                 "-n", a)
    # ...but not what she does not.
    msg = forbidden(dana, "create", "role", "node-reader", "--verb=get", "--resource=nodes",
                    "-n", a)
    assert f'roles.rbac.authorization.k8s.io "node-reader" is forbidden: user "{dana.name}"' in msg
    assert "is attempting to grant RBAC permissions not currently held" in msg
    assert '{APIGroups:[""], Resources:["nodes"], Verbs:["get"]}' in msg
    forbidden(dana, "create", "rolebinding", "friend-admin", "--clusterrole=cluster-admin",
              "--user=friend", "-n", a)
    assert cluster.kubectl("get", "rolebinding", "friend-admin", "-n", a,
                           check=False).returncode != 0


def test_service_account_token_has_exactly_its_rights(cluster: Server, cluster_ns: str,
                                                      tmp_path: Path) -> None:
    ns = cluster_ns
    cluster.kubectl("create", "serviceaccount", "robot", "-n", ns)
    token = cluster.kubectl("create", "token", "robot", "-n", ns).stdout.strip()
    cfg = json.loads(cluster.kubectl("config", "view", "--raw", "--minify", "-o", "json").stdout)
    cfg["users"] = [{"name": "robot", "user": {"token": token}}]
    cfg["contexts"][0]["context"]["user"] = "robot"
    (tmp_path / "kubeconfig").write_text(json.dumps(cfg))
    robot = User(cluster, f"system:serviceaccount:{ns}:robot", tmp_path / "kubeconfig")
    msg = forbidden(robot, "get", "configmaps", "-n", ns)
    assert f'User "system:serviceaccount:{ns}:robot" cannot list resource "configmaps"' in msg
    cluster.kubectl("create", "role", "cm-reader", "--verb=get,list", "--resource=configmaps",
                    "-n", ns)
    cluster.kubectl("create", "rolebinding", "robot-cm", "--role=cm-reader",
                    f"--serviceaccount={ns}:robot", "-n", ns)
    assert "kube-root-ca.crt" in robot.kubectl("get", "configmaps", "-n", ns).stdout
    forbidden(robot, "get", "pods", "-n", ns)
    forbidden(robot, "create", "configmap", "x", "-n", ns)


def test_aggregated_roles_follow_labelled_roles(cluster: Server, cluster_ns: str) -> None:
    """A CRD's author labels a role aggregate-to-view; view then grants it."""
    group = f"{cluster_ns}.example.com"
    cluster.kubectl("apply", "-f", "-", input=json.dumps({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": f"widgets.{group}"},
        "spec": {"group": group, "scope": "Namespaced",
                 "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
                 "versions": [{"name": "v1", "served": True, "storage": True, "schema": {
                     "openAPIV3Schema": {"type": "object"}}}]}}))
    name = f"widgets-view-{cluster_ns}"
    cluster.kubectl("apply", "-f", "-", input=json.dumps({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
        "metadata": {"name": name,
                     "labels": {"rbac.authorization.k8s.io/aggregate-to-view": "true"}},
        "rules": [{"apiGroups": [group], "resources": ["widgets"], "verbs": ["get", "list"]}]}))

    def aggregated() -> bool:
        rules = json.loads(cluster.kubectl("get", "clusterrole", "view", "-o", "json").stdout)
        return any(group in r.get("apiGroups", []) for r in rules["rules"])

    def viewer_can_list() -> str:
        return cluster.kubectl("auth", "can-i", "list", f"widgets.{group}", "-n", cluster_ns,
                               "--as=viewer", "--as-group=viewers", check=False).stdout.strip()

    try:
        wait_for(aggregated, what="view to gather the labelled role's rules")
        assert viewer_can_list() == "no"
        cluster.kubectl("create", "rolebinding", "viewers", "--clusterrole=view",
                        "--group=viewers", "-n", cluster_ns)
        assert viewer_can_list() == "yes"
    finally:
        cluster.kubectl("delete", "clusterrole", name)
        cluster.kubectl("delete", "crd", f"widgets.{group}")
    wait_for(lambda: not aggregated(), what="view to drop the deleted role's rules")
    assert viewer_can_list() == "no"


def test_default_roles_exist(cluster: Server) -> None:
    names = cluster.kubectl("get", "clusterroles", "-o", "name").stdout.split()
    for role in ("cluster-admin", "admin", "edit", "view", "system:basic-user",
                 "system:node", "system:kube-scheduler", "system:controller:job-controller"):
        assert f"clusterrole.rbac.authorization.k8s.io/{role}" in names
    binding = json.loads(cluster.kubectl("get", "clusterrolebinding", "cluster-admin", "-o",
                                         "json").stdout)
    assert binding["subjects"] == [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group",
                                    "name": "system:masters"}]


def test_access_reviews_refuse_malformed_attributes(cluster: Server) -> None:
    path = "/apis/authorization.k8s.io/v1/subjectaccessreviews"
    for spec in ({"user": "jane", "resourceAttributes": "pods"},
                 {"user": "jane"},
                 {"user": "jane", "resourceAttributes": {"verb": "get"},
                  "nonResourceAttributes": {"path": "/x", "verb": "get"}}):
        code, body = cluster.http().call("POST", path, {
            "apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview", "spec": spec})
        assert code == 400, body
        assert "exactly one of nonResourceAttributes or resourceAttributes" in body["message"]


def test_a_user_without_rights_gets_403_from_every_verb(cluster: Server, cluster_ns: str) -> None:
    """Never 404 or 500: authorization answers before existence is looked up."""
    ns = cluster_ns
    nobody = new_user(cluster, f"nobody-{ns}")
    cluster.kubectl("create", "deployment", "web", "--image=busybox", "-n", ns)
    cluster.kubectl("create", "configmap", "cm", "--from-literal=a=b", "-n", ns)
    manifest = json.dumps({"apiVersion": "v1", "kind": "ConfigMap",
                           "metadata": {"name": "cm2", "namespace": ns}, "data": {"a": "b"}})
    role = json.dumps({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
                       "metadata": {"name": "r", "namespace": ns},
                       "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}]})
    verbs = [
        ("get", "pods", "-n", ns), ("get", "pod", "missing", "-n", ns),
        ("get", "deployments", "-A"), ("get", "all", "-n", ns),
        ("describe", "configmap", "cm", "-n", ns),
        ("create", "configmap", "new", "-n", ns),
        ("delete", "configmap", "cm", "-n", ns),
        ("delete", "configmaps", "--all", "-n", ns),
        ("label", "configmap", "cm", "x=y", "-n", ns),
        ("annotate", "configmap", "cm", "x=y", "-n", ns),
        ("patch", "configmap", "cm", "-n", ns, "-p", '{"data":{"a":"c"}}'),
        ("scale", "deployment", "web", "--replicas=3", "-n", ns),
        ("set", "image", "deployment/web", "busybox=busybox:2", "-n", ns),
        ("rollout", "restart", "deployment/web", "-n", ns),
        ("logs", "deployment/web", "-n", ns),
        ("exec", "missing", "-n", ns, "--", "true"),
        ("get", "nodes"), ("get", "namespaces"), ("get", "clusterroles"),
        ("create", "namespace", f"{ns}-x"),
        ("get", "--raw", f"/api/v1/namespaces/{ns}/secrets"),
        ("attach", "missing", "-n", ns),
        ("port-forward", "pod/missing", "18080:80", "-n", ns),
        ("cp", f"{ns}/missing:/etc/hosts", "/tmp/pinnace-rbac-cp"),
        ("debug", "missing", "--image=busybox", "-n", ns),
        ("top", "pods", "-n", ns), ("top", "nodes"),
        ("create", "token", "default", "-n", ns),
        ("auth", "reconcile", "-f", "-"),
        ("edit", "configmap", "cm", "-n", ns),
    ]
    for args in verbs:
        proc = nobody.kubectl(*args, check=False,
                              input=role if args[:2] == ("auth", "reconcile") else None)
        assert proc.returncode != 0, f"kubectl {' '.join(args)} was allowed"
        assert "forbidden" in proc.stderr.lower(), f"kubectl {' '.join(args)}: {proc.stderr}"
        assert "NotFound" not in proc.stderr and "InternalError" not in proc.stderr, proc.stderr
    for args in (("apply", "-f", "-"), ("apply", "--server-side", "-f", "-")):
        proc = nobody.kubectl(*args, check=False, input=manifest)
        assert proc.returncode != 0 and "forbidden" in proc.stderr.lower(), proc.stderr
    # What every authenticated user may do still works.
    assert nobody.kubectl("auth", "whoami", "-o", "name", check=False).returncode == 0
    assert nobody.kubectl("api-resources", check=False).returncode == 0
    assert nobody.kubectl("version", check=False).returncode == 0


def test_anonymous_requests_only_with_the_flag(tmp_path: Path) -> None:
    """By default no credentials is 401 but on health and /version; with
    --anonymous-auth it is system:anonymous, whom RBAC grants only those."""
    import ssl
    import urllib.error
    import urllib.request

    from tests.conftest import start_server

    srv = start_server(tmp_path / "anon", "--datastore", "memory", "--anonymous-auth")
    try:
        ctx = ssl.create_default_context(cafile=str(srv.data_dir / "tls" / "ca.crt"))

        def get(path: str, token: str = "") -> tuple[int, dict[str, object]]:
            req = urllib.request.Request(srv.url + path, headers={
                "Authorization": f"Bearer {token}"} if token else {})
            try:
                with urllib.request.urlopen(req, context=ctx, timeout=10) as resp:
                    body = resp.read()
                    return resp.status, json.loads(body) if body.startswith(b"{") else {}
            except urllib.error.HTTPError as e:
                return e.code, json.loads(e.read())

        assert get("/version")[0] == 200
        assert get("/readyz")[0] == 200
        code, body = get("/api/v1/namespaces/default/pods")
        assert code == 403, body
        assert body["message"] == 'pods is forbidden: User "system:anonymous" cannot list ' \
                                  'resource "pods" in API group "" in the namespace "default"'
        assert get("/api/v1/namespaces/default/pods", token="not-a-token")[0] == 401
        # RBAC decides: bind the anonymous user and it may read.
        srv.kubectl("create", "rolebinding", "anon-view", "--clusterrole=view",
                    "--user=system:anonymous", "-n", "default")
        assert get("/api/v1/namespaces/default/pods")[0] == 200
    finally:
        srv.stop()


def test_service_account_issuer_discovery(cluster: Server, cluster_ns: str,
                                          tmp_path: Path) -> None:
    """A token's signature checks out against the keys the server publishes,
    which every service account may read (as OIDC relying parties do)."""
    import jwt

    ns = cluster_ns
    cluster.kubectl("create", "serviceaccount", "finder", "-n", ns)
    login = cluster.kubectl("create", "token", "finder", "-n", ns).stdout.strip()
    # A token for someone else than the API server, which that someone checks.
    token = cluster.kubectl("create", "token", "finder", "-n", ns,
                            "--audience=https://example.com").stdout.strip()
    cfg = json.loads(cluster.kubectl("config", "view", "--raw", "--minify", "-o", "json").stdout)
    cfg["users"] = [{"name": "finder", "user": {"token": login}}]
    cfg["contexts"][0]["context"]["user"] = "finder"
    (tmp_path / "kubeconfig").write_text(json.dumps(cfg))
    finder = User(cluster, f"system:serviceaccount:{ns}:finder", tmp_path / "kubeconfig")

    discovery = json.loads(finder.kubectl("get", "--raw",
                                          "/.well-known/openid-configuration").stdout)
    assert discovery["issuer"] == "https://kubernetes.default.svc.cluster.local"
    assert discovery["jwks_uri"].endswith("/openid/v1/jwks")
    keys = json.loads(finder.kubectl("get", "--raw", "/openid/v1/jwks").stdout)["keys"]
    header = jwt.get_unverified_header(token)
    key = next(k for k in keys if k["kid"] == header["kid"])
    claims = jwt.decode(token, jwt.PyJWK(key).key, algorithms=[key["alg"]],
                        audience="https://example.com", issuer=discovery["issuer"])
    assert claims["sub"] == f"system:serviceaccount:{ns}:finder"
    # Not for anyone without credentials.
    alice = new_user(cluster, f"alice-oidc-{ns}")
    forbidden(alice, "get", "--raw", "/openid/v1/jwks")
