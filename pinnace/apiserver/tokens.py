"""Service account tokens: the TokenRequest API signs short-lived JWTs bound
to a service account (and optionally a pod or secret), and the
authenticator accepts them while they are unexpired and what they are bound
to still exists with the same uid, as Kubernetes' bound tokens work.

ES256 over the cluster's own service-account key; JWTs are built with
`cryptography` directly (a JWT is three base64url parts: small enough not to
need a library).
"""

from __future__ import annotations

import base64
import hashlib
import time
from pathlib import Path
from typing import Any

import orjson
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)

ISSUER = "https://kubernetes.default.svc.cluster.local"
DEFAULT_AUDIENCE = ISSUER


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def load_or_create_key(path: Path) -> ec.EllipticCurvePrivateKey:
    if path.exists():
        key = serialization.load_pem_private_key(path.read_bytes(), None)
        assert isinstance(key, ec.EllipticCurvePrivateKey)
        return key
    key = ec.generate_private_key(ec.SECP256R1())
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                       serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    path.chmod(0o600)
    return key


class TokenIssuer:
    def __init__(self, key: ec.EllipticCurvePrivateKey):
        self.key = key
        pub = key.public_key().public_bytes(serialization.Encoding.DER,
                                            serialization.PublicFormat.SubjectPublicKeyInfo)
        self.kid = _b64(hashlib.sha256(pub).digest())

    def sign(self, claims: dict[str, Any]) -> str:
        header = _b64(orjson.dumps({"alg": "ES256", "kid": self.kid}))
        payload = _b64(orjson.dumps(claims))
        der = self.key.sign(f"{header}.{payload}".encode(), ec.ECDSA(hashes.SHA256()))
        r, s = decode_dss_signature(der)
        return f"{header}.{payload}.{_b64(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"

    def verify(self, token: str, audience: str = DEFAULT_AUDIENCE) -> dict[str, Any] | None:
        """The claims of a valid, unexpired token for ``audience``; None otherwise."""
        parts = token.split(".")
        if len(parts) != 3:
            return None
        try:
            header = orjson.loads(_unb64(parts[0]))
            if header.get("alg") != "ES256":
                return None
            sig = _unb64(parts[2])
            if len(sig) != 64:
                return None
            der = encode_dss_signature(int.from_bytes(sig[:32], "big"),
                                       int.from_bytes(sig[32:], "big"))
            self.key.public_key().verify(der, f"{parts[0]}.{parts[1]}".encode(),
                                         ec.ECDSA(hashes.SHA256()))
            claims: dict[str, Any] = orjson.loads(_unb64(parts[1]))
        except (ValueError, InvalidSignature, orjson.JSONDecodeError):
            return None
        now = time.time()
        if claims.get("iss") != ISSUER or claims.get("exp", 0) < now or \
                claims.get("nbf", 0) > now + 60:
            return None
        aud = claims.get("aud") or []
        if audience not in (aud if isinstance(aud, list) else [aud]):
            return None
        return claims

    def issue(self, namespace: str, name: str, uid: str, audiences: list[str],
              expiration_seconds: int, bound: dict[str, Any] | None = None) -> tuple[str, int]:
        """(token, expiry as unix time) for the service account."""
        now = int(time.time())
        exp = now + expiration_seconds
        k8s: dict[str, Any] = {"namespace": namespace,
                               "serviceaccount": {"name": name, "uid": uid}}
        if bound and bound.get("kind") in ("Pod", "Secret", "Node"):
            k8s[bound["kind"].lower()] = {"name": bound.get("name"), "uid": bound.get("uid")}
        claims = {"iss": ISSUER, "sub": f"system:serviceaccount:{namespace}:{name}",
                  "aud": audiences or [DEFAULT_AUDIENCE], "iat": now, "nbf": now, "exp": exp,
                  "jti": _b64(hashlib.sha256(f"{uid}{now}{time.perf_counter_ns()}".encode())
                              .digest()[:16]),
                  "kubernetes.io": k8s}
        return self.sign(claims), exp
