"""The kubelet API's serving certificate: kubelet.crt / kubelet.key,
self-signed for the node's name and addresses, made when missing (upstream's
kubelet does the same when it is given no certificate).

The agent makes it in a child process (``python -m
pinnace.kubelet.servingcert TLS_DIR NODE [HOST]``), once: the crypto library
would otherwise stay mapped in the long-lived agent for nothing (~10 MB,
pinnace/certfiles.py).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import ipaddress
import socket
import subprocess
import sys
import time
from pathlib import Path

from pinnace.certfiles import write_pem


def ensure(tls_dir: Path, node_name: str, host: str = "") -> tuple[Path, Path]:
    """The certificate and key paths, made first (in a child process) when missing."""
    cert_path, key_path = tls_dir / "kubelet.crt", tls_dir / "kubelet.key"
    if not (cert_path.exists() and key_path.exists()):
        subprocess.run([sys.executable, "-m", __name__, str(tls_dir), node_name, host],
                       check=True)
    return cert_path, key_path


def make(tls_dir: Path, node_name: str, host: str = "") -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    tls_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    names = [node_name, "localhost", socket.gethostname()]
    ips = {"127.0.0.1", "::1"}
    if host and host not in ("0.0.0.0", "::"):
        ips.add(host)
    with contextlib.suppress(OSError):
        for info in socket.getaddrinfo(socket.gethostname(), None):
            ips.add(str(info[4][0]))
    sans: list[x509.GeneralName] = []
    for n in dict.fromkeys(names):
        try:
            ips.add(str(ipaddress.ip_address(n)))
        except ValueError:
            sans.append(x509.DNSName(n))
    sans.extend(x509.IPAddress(ipaddress.ip_address(i.split("%")[0])) for i in sorted(ips))
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME,
                                         f"{node_name}@{int(time.time())}")])
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now).not_valid_after(now + dt.timedelta(days=365))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]),
                           critical=False)
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
            .sign(key, hashes.SHA256()))
    # The key first: a crash in between leaves no certificate, so the next start makes both.
    write_pem(tls_dir / "kubelet.key", key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()), private=True)
    write_pem(tls_dir / "kubelet.crt", cert.public_bytes(serialization.Encoding.PEM))


if __name__ == "__main__":
    make(Path(sys.argv[1]), sys.argv[2], sys.argv[3] if len(sys.argv) > 3 else "")
