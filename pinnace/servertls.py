"""The TLS and HTTP limits of a pinnace server (API server, kubelet API):
what a Go server has by default, since clients and scanners compare us with
kube-apiserver and the kubelet.

TLS 1.2 and 1.3 only; for TLS 1.2 only Go's default suites (ECDHE with
AES-GCM, ChaCha20-Poly1305, or AES-CBC with SHA-1; none of OpenSSL's
SHA-256/384 CBC suites); no renegotiation. A client certificate is asked
for but optional: a request without one is authenticated otherwise (or
gets a 401 it can read), while one the CA did not sign fails the handshake.
"""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any

# Go's http.Server reads up to 1 MiB of request line and headers
# (DefaultMaxHeaderBytes): long bearer tokens and impersonation headers
# fit, as they do with kube-apiserver. aiohttp's own limit is 8 KiB a line.
HTTP_LIMITS: dict[str, Any] = {"max_line_size": 1 << 20, "max_field_size": 1 << 20,
                               "max_headers": 1024}

# crypto/tls's defaults for TLS 1.2, in its order, by their OpenSSL names.
GO_TLS12_CIPHERS = ":".join((
    "ECDHE-ECDSA-AES128-GCM-SHA256", "ECDHE-RSA-AES128-GCM-SHA256",
    "ECDHE-ECDSA-AES256-GCM-SHA384", "ECDHE-RSA-AES256-GCM-SHA384",
    "ECDHE-ECDSA-CHACHA20-POLY1305", "ECDHE-RSA-CHACHA20-POLY1305",
    "ECDHE-ECDSA-AES128-SHA", "ECDHE-RSA-AES128-SHA",
    "ECDHE-ECDSA-AES256-SHA", "ECDHE-RSA-AES256-SHA"))


def server_context(cert: str | Path, key: str | Path, client_ca: str | Path) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_ciphers(GO_TLS12_CIPHERS)
    ctx.options |= ssl.OP_NO_RENEGOTIATION | ssl.OP_CIPHER_SERVER_PREFERENCE
    ctx.load_cert_chain(str(cert), str(key))
    ctx.load_verify_locations(cafile=str(client_ca))
    ctx.verify_mode = ssl.CERT_OPTIONAL
    ctx.set_alpn_protocols(["http/1.1"])
    return ctx
