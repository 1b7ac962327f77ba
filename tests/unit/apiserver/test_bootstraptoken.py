"""Bootstrap tokens and join tokens: their format, the Secrets that hold
them, durations; and what the API server lets a bootstrap token do."""

from __future__ import annotations

import datetime as dt
import hashlib
import re

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from pinnace.apiserver import bootstrappolicy
from pinnace.apiserver import bootstraptoken as bt
from pinnace.apiserver.authn import User
from pinnace.apiserver.authz import Authorizer
from pinnace.apiserver.rbac import RBAC
from pinnace.apiserver.requestinfo import request_info
from pinnace.cli.token import format_table, token_rows

HASH = "ab" * 32


def test_join_token_round_trip() -> None:
    jt = bt.JoinToken(HASH, "abc123", "0123456789abcdef")
    assert str(jt) == f"K10{HASH}::abc123.0123456789abcdef"
    assert jt.bearer == "abc123.0123456789abcdef"
    assert bt.parse_join_token(f" {jt}\n") == jt
    # kubeadm's spelling of the hash, and upper-case hex, are read too.
    assert bt.parse_join_token(f"K10sha256:{HASH.upper()}::abc123.0123456789abcdef") == jt


@pytest.mark.parametrize("text, says", [
    ("abc123.0123456789abcdef", "looks like K10<CA hash>::<id>.<secret>"),
    (f"{HASH}::abc123.0123456789abcdef", "looks like K10"),
    ("K10abcd::abc123.0123456789abcdef", "not 64 hexadecimal digits"),
    (f"K10{HASH}::abc123.0123456789", "not <id>.<secret>"),
    (f"K10{HASH}::ABC123.0123456789abcdef", "not <id>.<secret>"),
    (f"K10{HASH}::server:password", "not <id>.<secret>"),
])
def test_malformed_join_tokens_say_what_is_wrong(text: str, says: str) -> None:
    with pytest.raises(ValueError, match=re.escape(says)):
        bt.parse_join_token(text)


def test_generated_tokens_have_the_upstream_shape() -> None:
    seen = set()
    for _ in range(50):
        tid, secret = bt.generate()
        assert bt.TOKEN_RE.fullmatch(f"{tid}.{secret}")
        seen.add(tid)
    assert len(seen) > 45  # random, not fixed


def test_token_id_of_accepts_ids_tokens_and_join_tokens() -> None:
    assert bt.token_id_of("abc123") == "abc123"
    assert bt.token_id_of("abc123.0123456789abcdef") == "abc123"
    assert bt.token_id_of(f"K10{HASH}::abc123.0123456789abcdef") == "abc123"
    with pytest.raises(ValueError, match="not a token id"):
        bt.token_id_of("nope")


def _ca() -> tuple[bytes, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test-ca")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(1).not_valid_before(now)
            .not_valid_after(now + dt.timedelta(days=1)).sign(key, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.PEM), key


def test_ca_hash_is_kubeadms_public_key_pin() -> None:
    pem, key = _ca()
    spki = key.public_key().public_bytes(serialization.Encoding.DER,
                                         serialization.PublicFormat.SubjectPublicKeyInfo)
    assert bt.ca_hash(pem) == hashlib.sha256(spki).hexdigest()
    assert bt.ca_hash(pem) != bt.ca_hash(_ca()[0])


def test_token_secret_is_what_kubeadm_writes() -> None:
    when = dt.datetime(2030, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
    s = bt.token_secret("abc123", "0123456789abcdef", expires=when, description="for n1")
    assert s["metadata"] == {"name": "bootstrap-token-abc123", "namespace": "kube-system"}
    assert s["type"] == "bootstrap.kubernetes.io/token"
    assert bt.secret_data(s) == {
        "token-id": "abc123", "token-secret": "0123456789abcdef",
        "expiration": "2030-01-02T03:04:05Z", "description": "for n1",
        "usage-bootstrap-authentication": "true", "usage-bootstrap-signing": "true",
        "auth-extra-groups": "system:bootstrappers:pinnace:default-node-token"}
    assert bt.expiration(bt.secret_data(s)) == when
    assert bt.expiration({}) is None
    # An expiration that does not parse counts as expired (as upstream).
    assert bt.expiration({"expiration": "soon"}) < dt.datetime.now(dt.UTC)


def test_extra_groups_must_be_bootstrappers() -> None:
    assert bt.extra_groups({}) == ()
    assert bt.extra_groups({"auth-extra-groups": "system:bootstrappers:a, system:bootstrappers:b-c"}
                           ) == ("system:bootstrappers:a", "system:bootstrappers:b-c")
    assert bt.extra_groups({"auth-extra-groups": "system:masters"}) is None
    assert bt.extra_groups({"auth-extra-groups": "system:bootstrappers:"}) is None


@pytest.mark.parametrize("text, seconds", [
    ("0", 0), ("24h", 86400), ("1h30m", 5400), ("90s", 90), ("1.5h", 5400), ("500ms", 0.5),
    ("-1h", -3600),
])
def test_parse_duration(text: str, seconds: float) -> None:
    assert bt.parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["1d", "h", "24", "1h 30m", "abc"])
def test_parse_duration_refuses(text: str) -> None:
    with pytest.raises(ValueError, match="invalid duration"):
        bt.parse_duration(text)


@pytest.mark.parametrize("seconds, shown", [
    (-5, "<invalid>"), (-0.5, "0s"), (59, "59s"), (3599, "59m"), (86399, "23h"),
    (86400 * 3, "3d"), (86400 * 800, "2y"),
])
def test_short_duration(seconds: float, shown: str) -> None:
    assert bt.short_duration(seconds) == shown


def test_token_list_rows_and_table() -> None:
    now = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)
    forever = bt.token_secret("aaaaaa", "0123456789abcdef", description="the server's")
    day = bt.token_secret("bbbbbb", "0123456789abcdef", expires=now + dt.timedelta(hours=23,
                                                                                    minutes=5))
    gone = bt.token_secret("cccccc", "0123456789abcdef", expires=now - dt.timedelta(hours=1),
                           usages=("authentication",), groups=())
    other = {"type": "Opaque", "metadata": {"name": "x"}, "data": {}}
    rows = token_rows([forever, day, gone, other], now)
    assert rows == [
        ["aaaaaa", "<forever>", "<never>", "authentication,signing", "the server's",
         bt.NODE_GROUP],
        ["bbbbbb", "23h", "2030-01-01T23:05:00Z", "authentication,signing", "<none>",
         bt.NODE_GROUP],
        ["cccccc", "<invalid>", "2029-12-31T23:00:00Z", "authentication", "<none>", "<none>"]]
    table = format_table(["TOKEN ID", "TTL"], [r[:2] for r in rows])
    assert table.splitlines() == ["TOKEN ID   TTL", "aaaaaa     <forever>", "bbbbbb     23h",
                                  "cccccc     <invalid>"]


@pytest.mark.parametrize("method, path, allowed", [
    ("POST", "/apis/certificates.k8s.io/v1/certificatesigningrequests", True),
    ("GET", "/apis/certificates.k8s.io/v1/certificatesigningrequests", True),
    ("GET", "/apis/certificates.k8s.io/v1/certificatesigningrequests/node-csr-1", True),
    ("GET", "/apis/certificates.k8s.io/v1/watch/certificatesigningrequests", True),
    ("POST", "/apis/authentication.k8s.io/v1/selfsubjectreviews", True),
    ("GET", "/api", True), ("GET", "/apis", True), ("GET", "/api/v1", True),
    ("GET", "/apis/certificates.k8s.io/v1", True), ("GET", "/version", True),
    ("GET", "/openapi/v2", True),
    ("PUT", "/apis/certificates.k8s.io/v1/certificatesigningrequests/node-csr-1/approval", False),
    ("PUT", "/apis/certificates.k8s.io/v1/certificatesigningrequests/node-csr-1/status", False),
    ("DELETE", "/apis/certificates.k8s.io/v1/certificatesigningrequests/node-csr-1", False),
    ("GET", "/api/v1/namespaces/kube-system/secrets", False),
    ("GET", "/api/v1/secrets", False),
    ("POST", "/api/v1/namespaces/default/pods", False),
    ("GET", "/apis/apps/v1/watch/deployments", False),
])
def test_what_a_bootstrap_token_may_do(method: str, path: str, allowed: bool) -> None:
    """The default policy gives a bootstrap token what kubeadm's does: ask
    for a node certificate, discovery, and `kubectl auth whoami`."""
    rbac = RBAC()
    for obj in (*bootstrappolicy.cluster_roles(), *bootstrappolicy.cluster_role_bindings()):
        rbac.event("ADDED", obj)
    user = User(bt.USER_PREFIX + "abcdef", "", (bt.GROUP, bt.NODE_GROUP, "system:authenticated"))
    assert Authorizer(rbac).allowed(user, request_info(method, path))[0] is allowed
