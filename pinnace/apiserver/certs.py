"""The cluster's PKI: a CA, the API server's serving certificate and the
admin client certificate, created on first start and kept in DIR/tls
(pinnace/certfiles.py: the files and their expiry, without crypto).

Client certificates carry the user in the CN and groups in O, as
Kubernetes' x509 authenticator reads them.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import socket
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from pinnace.certfiles import (
    CA_VALIDITY,
    LEAF_VALIDITY,
    PKI,
    RENEW_WITHIN,
    expires_within,
    write_pem,
)


def _key() -> ec.EllipticCurvePrivateKey:
    # P-256 keys are fast to make, so a first start stays well under a second.
    return ec.generate_private_key(ec.SECP256R1())


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _name(cn: str, orgs: list[str] = []) -> x509.Name:  # noqa: B006 - read only
    attrs = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in orgs]
    attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, cn))
    return x509.Name(attrs)


def _issue(subject: x509.Name, key: ec.EllipticCurvePrivateKey, ca_cert: x509.Certificate | None,
           ca_key: ec.EllipticCurvePrivateKey, *, is_ca: bool = False, server: bool = False,
           client: bool = False, sans: list[x509.GeneralName] | None = None,
           validity: dt.timedelta | None = None) -> x509.Certificate:
    now = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)
    validity = validity or (CA_VALIDITY if is_ca else LEAF_VALIDITY)
    b = (x509.CertificateBuilder()
         .subject_name(subject)
         .issuer_name(ca_cert.subject if ca_cert else subject)
         .public_key(key.public_key())
         .serial_number(x509.random_serial_number())
         .not_valid_before(now)
         .not_valid_after(now + validity)
         .add_extension(x509.BasicConstraints(ca=is_ca, path_length=None), critical=True))
    if is_ca:
        b = b.add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False,
                                          key_encipherment=False, data_encipherment=False,
                                          key_agreement=False, key_cert_sign=True, crl_sign=True,
                                          encipher_only=False, decipher_only=False),
                            critical=True)
    else:
        b = b.add_extension(x509.KeyUsage(True, False, True, False, False, False, False, False,
                                          False), critical=True)
        usages = ([ExtendedKeyUsageOID.SERVER_AUTH] if server else []) + (
            [ExtendedKeyUsageOID.CLIENT_AUTH] if client else [])
        b = b.add_extension(x509.ExtendedKeyUsage(usages), critical=False)
    if sans:
        b = b.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return b.sign(ca_key, hashes.SHA256())


def _sans(hosts: list[str]) -> list[x509.GeneralName]:
    out: list[x509.GeneralName] = []
    for h in dict.fromkeys(hosts):
        try:
            out.append(x509.IPAddress(ipaddress.ip_address(h)))
        except ValueError:
            out.append(x509.DNSName(h))
    return out


def _covers(cert_path: Path, sans: list[x509.GeneralName]) -> bool:
    """The certificate is valid for every one of ``sans`` (else it is made
    again, e.g. after --tls-san or the host's address changed)."""
    try:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        have = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (OSError, ValueError, x509.ExtensionNotFound):
        return False
    return all(san in have for san in sans)


def ensure_pki(dir: Path, listen_host: str, extra_sans: list[str] = ()) -> PKI:  # type: ignore[assignment]
    """Create whatever of the PKI is missing; existing files are kept, but
    for a serving certificate that lacks one of the names it should have and
    for certificates in their last RENEW_WITHIN."""
    dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    pki = PKI(dir)
    if pki.ca_cert.exists() and pki.ca_key.exists():
        ca_cert = x509.load_pem_x509_certificate(pki.ca_cert.read_bytes())
        ca_key = serialization.load_pem_private_key(pki.ca_key.read_bytes(), None)
        assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    else:
        ca_key = _key()
        ca_cert = _issue(_name("pinnace-ca"), ca_key, None, ca_key, is_ca=True)
        write_pem(pki.ca_key, _pem_key(ca_key), private=True)
        write_pem(pki.ca_cert, ca_cert.public_bytes(serialization.Encoding.PEM))
    hosts = ["127.0.0.1", "localhost", "::1", socket.gethostname(), "kubernetes",
             "kubernetes.default", "kubernetes.default.svc",
             "kubernetes.default.svc.cluster.local", *extra_sans]
    if listen_host not in ("", "0.0.0.0", "::"):
        hosts.insert(0, listen_host)
    else:
        from pinnace.kubelet.host import primary_ip

        hosts.append(primary_ip())  # where other machines (joining nodes) reach it
    if not pki.server_key.exists() or expires_within(pki.server_cert, RENEW_WITHIN) or \
            not _covers(pki.server_cert, _sans(hosts)):
        key = _key()
        cert = _issue(_name("pinnace-apiserver"), key, ca_cert, ca_key, server=True,
                      sans=_sans(hosts))
        write_pem(pki.server_key, _pem_key(key), private=True)
        write_pem(pki.server_cert, cert.public_bytes(serialization.Encoding.PEM))
    if not pki.admin_key.exists() or expires_within(pki.admin_cert, RENEW_WITHIN):
        key = _key()
        cert = _issue(_name("admin", ["system:masters"]), key, ca_cert, ca_key, client=True)
        write_pem(pki.admin_key, _pem_key(key), private=True)
        write_pem(pki.admin_cert, cert.public_bytes(serialization.Encoding.PEM))
    return pki


def issue_client_cert(pki: PKI, user: str, groups: list[str]) -> tuple[bytes, bytes]:
    """A client certificate (PEM cert, PEM key) signed by the cluster CA."""
    ca_cert = x509.load_pem_x509_certificate(pki.ca_cert.read_bytes())
    ca_key = serialization.load_pem_private_key(pki.ca_key.read_bytes(), None)
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    key = _key()
    cert = _issue(_name(user, groups), key, ca_cert, ca_key, client=True)
    return cert.public_bytes(serialization.Encoding.PEM), _pem_key(key)
