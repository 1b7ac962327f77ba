"""The serving certificate names every address the server is reached at,
and is made again (same CA) only when one is missing."""

from __future__ import annotations

import ipaddress
from pathlib import Path

from cryptography import x509

from pinnace.apiserver.certs import ensure_pki
from pinnace.kubelet.host import primary_ip


def names(path: Path) -> list[str]:
    cert = x509.load_pem_x509_certificate(path.read_bytes())
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return [str(n.value) for n in sans]


def test_serving_certificate_follows_the_names(tmp_path: Path) -> None:
    pki = ensure_pki(tmp_path, "0.0.0.0", ["10.1.2.3"])
    first, ca = pki.server_cert.read_bytes(), pki.ca_cert.read_bytes()
    # Listening everywhere: the host's own address is named, for other machines.
    assert {"10.1.2.3", "127.0.0.1", "kubernetes.default.svc",
            str(ipaddress.ip_address(primary_ip()))} <= set(names(pki.server_cert))
    ensure_pki(tmp_path, "0.0.0.0", ["10.1.2.3"])
    assert pki.server_cert.read_bytes() == first  # nothing missing: kept
    ensure_pki(tmp_path, "0.0.0.0", ["10.1.2.3", "node.example"])
    assert pki.server_cert.read_bytes() != first
    assert "node.example" in names(pki.server_cert)
    assert pki.ca_cert.read_bytes() == ca  # the CA stays
    cert = x509.load_pem_x509_certificate(pki.server_cert.read_bytes())
    cert.verify_directly_issued_by(x509.load_pem_x509_certificate(ca))
