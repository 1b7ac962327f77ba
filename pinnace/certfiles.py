"""Certificate and key files, without a crypto library: where the PKI keeps
them, how long what we issue lives, writing them whole, and reading a
certificate's expiry.

The node agent and the controllers check expiry often and issue rarely;
the crypto library maps ~10 MB into every process that imports it, so
this module reads the date from the DER itself and the issuing modules
(apiserver/certs.py, kubelet/bootstrap.py, kubelet/servingcert.py) import
the library only when they run.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import os
from dataclasses import dataclass
from pathlib import Path

# The CA lives ten years; what it signs, one, and is made again at a start (or
# by the server's daily check) within its last 90 days, as k3s does. A
# certificate nobody renews (the CA, one given from outside) is warned about
# for its last 30 days.
CA_VALIDITY = dt.timedelta(days=3650)
LEAF_VALIDITY = dt.timedelta(days=365)
RENEW_WITHIN = dt.timedelta(days=90)
WARN_WITHIN = dt.timedelta(days=30)


@dataclass
class PKI:
    dir: Path

    @property
    def ca_cert(self) -> Path:
        return self.dir / "ca.crt"

    @property
    def ca_key(self) -> Path:
        return self.dir / "ca.key"

    @property
    def server_cert(self) -> Path:
        return self.dir / "server.crt"

    @property
    def server_key(self) -> Path:
        return self.dir / "server.key"

    @property
    def admin_cert(self) -> Path:
        return self.dir / "admin.crt"

    @property
    def admin_key(self) -> Path:
        return self.dir / "admin.key"


def write_pem(path: Path, data: bytes, private: bool = False) -> None:
    """Write a certificate or key file whole (a crash leaves the old one or the new one)."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600 if private else 0o644)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _tlv(der: bytes, at: int) -> tuple[int, int, int]:
    """(tag, start of the value, end of the value) of the DER element at ``at``."""
    tag, length = der[at], der[at + 1]
    at += 2
    if length & 0x80:
        n = length & 0x7F
        length = int.from_bytes(der[at:at + n], "big")
        at += n
    if at + length > len(der):
        raise ValueError("truncated DER")
    return tag, at, at + length


def _time(tag: int, raw: bytes) -> dt.datetime:
    text = raw.decode("ascii")
    if tag == 0x17:  # UTCTime, YYMMDDHHMMSSZ: years 1950-2049 (RFC 5280 4.1.2.5.1)
        year = int(text[:2])
        text = f"{1900 + year if year >= 50 else 2000 + year}{text[2:]}"
    elif tag != 0x18:  # GeneralizedTime, YYYYMMDDHHMMSSZ
        raise ValueError("not a time")
    return dt.datetime.strptime(text, "%Y%m%d%H%M%SZ").replace(tzinfo=dt.UTC)


def der_not_after(der: bytes) -> dt.datetime:
    """validity.notAfter of a DER certificate: Certificate -> tbsCertificate
    -> [version], serialNumber, signature, issuer, validity."""
    _, at, _ = _tlv(der, 0)  # Certificate
    _, at, _ = _tlv(der, at)  # tbsCertificate
    if der[at] == 0xA0:  # [0] version, absent for v1
        at = _tlv(der, at)[2]
    for _ in range(3):  # serialNumber, signature, issuer
        at = _tlv(der, at)[2]
    tag, at, _ = _tlv(der, at)
    if tag != 0x30:
        raise ValueError("no validity")
    at = _tlv(der, at)[2]  # notBefore
    tag, start, end = _tlv(der, at)
    return _time(tag, der[start:end])


def not_after(cert_path: Path) -> dt.datetime | None:
    """When the (first) certificate at ``cert_path`` expires; None if there is none to read."""
    try:
        text = cert_path.read_text()
        body = text.split("-----BEGIN CERTIFICATE-----", 1)[1].split("-----END", 1)[0]
        return der_not_after(base64.b64decode("".join(body.split()), validate=True))
    except (OSError, ValueError, IndexError, UnicodeDecodeError, binascii.Error):
        return None


def expires_within(cert_path: Path, delta: dt.timedelta) -> bool:
    """Missing, unreadable, or expiring within ``delta``."""
    end = not_after(cert_path)
    return end is None or end - dt.datetime.now(dt.UTC) < delta


def expiry_warnings(paths: list[Path]) -> list[str]:
    """A line for each certificate in its last WARN_WITHIN, or past it."""
    out = []
    now = dt.datetime.now(dt.UTC)
    for path in paths:
        end = not_after(path)
        if end is not None and end - now < WARN_WITHIN:
            days = (end - now).days
            when = f"expired on {end:%Y-%m-%d}" if end < now else \
                f"expires on {end:%Y-%m-%d} (in {days} days)"
            out.append(f"certificate {path} {when}")
    return out
