"""The CSR approver's decision, the signer's checks and certificates, and
CertificateSigningRequest validation, without a server."""

from __future__ import annotations

import base64
import datetime as dt
import ipaddress
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from pinnace.api import validation
from pinnace.apiserver.certs import ensure_pki
from pinnace.controllers.certificates import (
    APISERVER_CLIENT,
    KUBELET_CLIENT,
    NODE_MESSAGE,
    SELF_MESSAGE,
    Signer,
    apiserver_client_problem,
    approval_candidates,
    kubelet_client_problem,
    parse_request,
)
from pinnace.kubelet.bootstrap import csr_pem

GROUP = "certificates.k8s.io"
KIND = "CertificateSigningRequest"
EC_USAGES = ["digital signature", "client auth"]


def request_pem(cn: str = "system:node:n1", orgs: tuple[str, ...] = ("system:nodes",),
                key: Any = None, sans: list[x509.GeneralName] | None = None) -> bytes:
    key = key or ec.generate_private_key(ec.SECP256R1())
    attrs = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in orgs]
    attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, cn))
    b = x509.CertificateSigningRequestBuilder().subject_name(x509.Name(attrs))
    if sans:
        b = b.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return b.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)


def csr(pem: bytes | None = None, *, signer: str = KUBELET_CLIENT, usages: list[str] | None = None,
        username: str = "system:bootstrap:abc123",
        groups: tuple[str, ...] = ("system:bootstrappers", "system:authenticated"),
        conditions: list[dict[str, Any]] | None = None, **spec: Any) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "apiVersion": "certificates.k8s.io/v1", "kind": KIND, "metadata": {"name": "c"},
        "spec": {"request": base64.b64encode(pem or request_pem()).decode(),
                 "signerName": signer, "usages": EC_USAGES if usages is None else usages,
                 "username": username, "groups": list(groups), **spec}}
    if conditions is not None:
        obj["status"] = {"conditions": conditions}
    return obj


APPROVED = {"type": "Approved", "status": "True", "reason": "R"}


def test_a_bootstrapping_node_asks_for_nodeclient() -> None:
    assert approval_candidates(csr()) == [("nodeclient", NODE_MESSAGE)]
    # The agent's own request is one.
    own = csr_pem(ec.generate_private_key(ec.SECP256R1()), "worker-1")
    assert approval_candidates(csr(own))
    assert parse_request(csr(own)).subject.rfc4514_string() == \
        "CN=system:node:worker-1,O=system:nodes"


def test_a_node_renewing_its_own_certificate_asks_for_selfnodeclient_first() -> None:
    renew = csr(username="system:node:n1", groups=("system:nodes", "system:authenticated"))
    assert approval_candidates(renew) == [("selfnodeclient", SELF_MESSAGE),
                                          ("nodeclient", NODE_MESSAGE)]


@pytest.mark.parametrize("case", [
    "another signer", "server auth",
    "key encipherment with EC too many", "wrong organization", "extra organization",
    "not a node name", "bare prefix", "with a DNS name", "already approved", "denied",
    "already issued", "garbage request"])
def test_left_for_a_human(case: str) -> None:
    obj = {
        "another signer": lambda: csr(signer=APISERVER_CLIENT),
        "server auth": lambda: csr(usages=["digital signature", "server auth"]),
        "key encipherment with EC too many": lambda: csr(
            usages=["digital signature", "client auth", "server auth"]),
        "wrong organization": lambda: csr(request_pem(orgs=("system:masters",))),
        "extra organization": lambda: csr(request_pem(orgs=("system:nodes", "x"))),
        "not a node name": lambda: csr(request_pem(cn="admin")),
        "bare prefix": lambda: csr(request_pem(cn="system:node:")),
        "with a DNS name": lambda: csr(request_pem(sans=[x509.DNSName("n1")])),
        "already approved": lambda: csr(conditions=[APPROVED]),
        "denied": lambda: csr(conditions=[{"type": "Denied", "status": "True"}]),
        "already issued": lambda: {**csr(), "status": {"certificate": "eA=="}},
        "garbage request": lambda: {**csr(), "spec": {**csr()["spec"], "request": "eA=="}},
    }[case]()
    assert approval_candidates(obj) == []


def test_kubelet_usages_as_upstream() -> None:
    req = x509.load_pem_x509_csr(request_pem())
    assert kubelet_client_problem(req, ["digital signature", "client auth"]) == ""
    assert kubelet_client_problem(req, ["key encipherment", "digital signature", "client auth"]
                                  ) == ""
    assert "usages did not match" in kubelet_client_problem(req, ["client auth"])
    assert apiserver_client_problem(["client auth"]) == ""
    assert apiserver_client_problem(["server auth", "client auth"]) == \
        "invalid usage for client certificate: server auth"
    assert apiserver_client_problem(["digital signature"]) == \
        "missing required usage for client certificate: client auth"


@pytest.fixture
def signer(tmp_path: Path) -> Signer:
    pki = ensure_pki(tmp_path / "tls", "127.0.0.1")
    return Signer(pki.ca_cert, pki.ca_key, 365 * 86400.0)


def test_signer_issues_a_year_long_client_certificate(signer: Signer) -> None:
    key = rsa.generate_private_key(65537, 2048)
    req = x509.load_pem_x509_csr(request_pem(key=key))
    cert = x509.load_pem_x509_certificate(
        signer.sign(req, ["digital signature", "key encipherment", "client auth"], None))
    assert cert.subject == req.subject and cert.issuer == signer.cert.subject
    assert cert.public_key() == key.public_key()
    days = (cert.not_valid_after_utc - dt.datetime.now(dt.UTC)).days
    assert 364 <= days <= 365
    ku = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    assert ku.digital_signature and ku.key_encipherment and not ku.key_cert_sign
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    cert.verify_directly_issued_by(signer.cert)


def test_signer_honours_a_shorter_expiration_and_keeps_names(signer: Signer) -> None:
    ip = x509.IPAddress(ipaddress.ip_address("10.0.0.1"))
    req = x509.load_pem_x509_csr(request_pem(cn="bob", orgs=("devs",), sans=[ip]))
    cert = x509.load_pem_x509_certificate(signer.sign(req, ["client auth"], 3600))
    left = cert.not_valid_after_utc - dt.datetime.now(dt.UTC)
    assert dt.timedelta(minutes=55) < left <= dt.timedelta(hours=1)
    assert list(cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value) == \
        [ip]
    # Only "client auth": no KeyUsage at all (Go's x509 leaves an empty one out).
    with pytest.raises(x509.ExtensionNotFound):
        cert.extensions.get_extension_for_class(x509.KeyUsage)


# -- validation ---------------------------------------------------------------------


def fields(errs: list[Any]) -> list[str]:
    return [e.field for e in errs]


def test_a_good_request_is_valid() -> None:
    assert validation.validate(GROUP, KIND, csr()) == []


@pytest.mark.parametrize("change, field", [
    ({"request": ""}, "spec.request"),
    ({"request": base64.b64encode(b"not pem").decode()}, "spec.request"),
    ({"usages": []}, "spec.usages"),
    ({"usages": ["client auth", "flying"]}, "spec.usages[1]"),
    ({"usages": ["client auth", "client auth"]}, "spec.usages[1]"),
    ({"signerName": ""}, "spec.signerName"),
    ({"signerName": "no-slash"}, "spec.signerName"),
    ({"expirationSeconds": 599}, "spec.expirationSeconds"),
])
def test_invalid_requests(change: dict[str, Any], field: str) -> None:
    obj = csr()
    obj["spec"].update(change)
    assert field in fields(validation.validate(GROUP, KIND, obj))


def test_conditions_rules() -> None:
    both = csr(conditions=[APPROVED, {"type": "Denied", "status": "True"}])
    assert "status.conditions" in fields(validation.validate(GROUP, KIND, both))
    false = csr(conditions=[{"type": "Approved", "status": "False"}])
    assert "status.conditions[0].status" in fields(validation.validate(GROUP, KIND, false))
    old = csr(conditions=[APPROVED])
    removed = csr(conditions=[])
    errs = validation.validate(GROUP, KIND, removed, old)
    assert "status.conditions" in fields(errs)
    # Approval goes through /approval: a /status write may not add it.
    added = validation.validate_status(GROUP, KIND, csr(conditions=[APPROVED]), csr())
    assert "status.conditions" in fields(added)


def test_certificate_rules(signer: Signer) -> None:
    pem = signer.sign(x509.load_pem_x509_csr(request_pem()), EC_USAGES, None)
    issued = csr(conditions=[APPROVED])
    issued["status"]["certificate"] = base64.b64encode(pem).decode()
    assert validation.validate_status(GROUP, KIND, issued, csr(conditions=[APPROVED])) == []
    bad = csr(conditions=[APPROVED])
    bad["status"]["certificate"] = base64.b64encode(b"junk").decode()
    assert "status.certificate" in fields(
        validation.validate_status(GROUP, KIND, bad, csr(conditions=[APPROVED])))
    other = csr(conditions=[APPROVED])
    other["status"]["certificate"] = base64.b64encode(
        signer.sign(x509.load_pem_x509_csr(request_pem()), EC_USAGES, None)).decode()
    assert "status.certificate" in fields(validation.validate_status(GROUP, KIND, other, issued))
