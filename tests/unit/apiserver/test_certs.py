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


def _replace_with_short_lived(pki_dir: Path, name: str, days: int) -> None:
    """Put a certificate for ``name`` (server or admin) that ends in ``days``."""
    import datetime as dt

    from cryptography.hazmat.primitives import serialization

    from pinnace.apiserver import certs

    ca = x509.load_pem_x509_certificate((pki_dir / "ca.crt").read_bytes())
    ca_key = serialization.load_pem_private_key((pki_dir / "ca.key").read_bytes(), None)
    key = serialization.load_pem_private_key((pki_dir / f"{name}.key").read_bytes(), None)
    old = x509.load_pem_x509_certificate((pki_dir / f"{name}.crt").read_bytes())
    sans = old.extensions.get_extension_for_class(x509.SubjectAlternativeName).value \
        if name == "server" else None
    cert = certs._issue(old.subject, key, ca, ca_key, server=name == "server",  # type: ignore[arg-type]
                        client=name == "admin", sans=list(sans) if sans else None,
                        validity=dt.timedelta(days=days))
    (pki_dir / f"{name}.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def test_certificates_are_renewed_in_their_last_90_days(tmp_path: Path) -> None:
    from pinnace.certfiles import expiry_warnings, not_after

    pki = ensure_pki(tmp_path, "127.0.0.1")
    end = not_after(pki.server_cert)
    assert end is not None and 364 <= (end - end.now(end.tzinfo)).days <= 365  # a year
    ca_end = not_after(pki.ca_cert)
    assert ca_end is not None and (ca_end - end).days > 3000  # the CA: ten
    assert expiry_warnings(sorted(tmp_path.glob("*.crt"))) == []

    _replace_with_short_lived(tmp_path, "server", 100)
    kept = pki.server_cert.read_bytes()
    ensure_pki(tmp_path, "127.0.0.1")
    assert pki.server_cert.read_bytes() == kept  # 100 days left: not yet
    _replace_with_short_lived(tmp_path, "server", 20)
    _replace_with_short_lived(tmp_path, "admin", 20)
    warnings = expiry_warnings([pki.server_cert, pki.admin_cert])
    assert len(warnings) == 2 and "(in 19 days)" in warnings[0]
    ensure_pki(tmp_path, "127.0.0.1")
    for path in (pki.server_cert, pki.admin_cert):
        renewed = not_after(path)
        assert renewed is not None and (renewed - renewed.now(renewed.tzinfo)).days >= 364
    assert expiry_warnings([pki.server_cert, pki.admin_cert]) == []


def test_expiry_is_read_without_the_crypto_library_as_it_reads_it(tmp_path: Path) -> None:
    """certfiles reads notAfter from the DER itself: the same date as the
    crypto library's, for UTCTime (before 2050), GeneralizedTime (from 2050)
    and an RSA certificate; None for what is not a certificate."""
    import datetime as dt
    import subprocess
    import sys

    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec, rsa
    from cryptography.x509.oid import NameOID

    from pinnace.certfiles import not_after

    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "t")])
    start = dt.datetime(2020, 1, 1, tzinfo=dt.UTC)
    for i, (key, end) in enumerate([
            (ec.generate_private_key(ec.SECP256R1()), dt.datetime(2049, 12, 31, 23, 59, 58)),
            (ec.generate_private_key(ec.SECP256R1()), dt.datetime(2051, 6, 7, 8, 9, 10)),
            (rsa.generate_private_key(65537, 2048), dt.datetime(2031, 2, 3, 4, 5, 6))]):
        cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
                .public_key(key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(start).not_valid_after(end.replace(tzinfo=dt.UTC))
                .sign(key, hashes.SHA256()))
        path = tmp_path / f"{i}.crt"
        path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        assert not_after(path) == cert.not_valid_after_utc
    (tmp_path / "junk.crt").write_text("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
    assert not_after(tmp_path / "junk.crt") is None
    assert not_after(tmp_path / "missing.crt") is None
    # And reading it loads no crypto library.
    code = ("import sys; from pathlib import Path; from pinnace.certfiles import not_after; "
            f"assert not_after(Path({str(tmp_path / '0.crt')!r})); "
            "assert 'cryptography' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)
