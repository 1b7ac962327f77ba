"""Service account tokens: the TokenRequest API signs short-lived JWTs bound
to a service account (and optionally a pod or secret), and the
authenticator accepts them while they are unexpired and what they are bound
to still exists with the same uid, as Kubernetes' bound tokens work.

Legacy tokens are the long-lived ones the token controller writes into
Secrets of type kubernetes.io/service-account-token: issuer
"kubernetes/serviceaccount", no expiry, no audience, and the
kubernetes.io/serviceaccount/* claims naming the account and the Secret
(upstream's LegacyClaims). They are valid only while that Secret holds them.

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
LEGACY_ISSUER = "kubernetes/serviceaccount"

# The private claims of a legacy token.
LEGACY_NAMESPACE = "kubernetes.io/serviceaccount/namespace"
LEGACY_SECRET_NAME = "kubernetes.io/serviceaccount/secret.name"
LEGACY_SA_NAME = "kubernetes.io/serviceaccount/service-account.name"
LEGACY_SA_UID = "kubernetes.io/serviceaccount/service-account.uid"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def load_key(path: Path) -> ec.EllipticCurvePrivateKey:
    """The service-account signing key at ``path`` (as kube-controller-manager's
    --service-account-private-key-file); never makes one up."""
    key = serialization.load_pem_private_key(path.read_bytes(), None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ValueError(f"{path}: not an EC private key")
    return key


def load_or_create_key(path: Path) -> ec.EllipticCurvePrivateKey:
    if path.exists():
        return load_key(path)
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

    def signed_claims(self, token: str) -> dict[str, Any] | None:
        """The claims of a token this key signed, whatever its issuer; None
        for anything else."""
        parts = token.split(".")
        if len(parts) != 3:
            return None
        try:
            header = orjson.loads(_unb64(parts[0]))
            if not isinstance(header, dict) or header.get("alg") != "ES256":
                return None
            sig = _unb64(parts[2])
            if len(sig) != 64:
                return None
            der = encode_dss_signature(int.from_bytes(sig[:32], "big"),
                                       int.from_bytes(sig[32:], "big"))
            self.key.public_key().verify(der, f"{parts[0]}.{parts[1]}".encode(),
                                         ec.ECDSA(hashes.SHA256()))
            claims = orjson.loads(_unb64(parts[1]))
        except (ValueError, InvalidSignature, orjson.JSONDecodeError):
            return None
        return claims if isinstance(claims, dict) else None

    def verify(self, token: str, audience: str = DEFAULT_AUDIENCE) -> dict[str, Any] | None:
        """The claims of a valid, unexpired token for ``audience``; None otherwise."""
        claims = self.signed_claims(token)
        return None if claims is None else bound_claims_valid(claims, audience)

    def issue_legacy(self, namespace: str, name: str, uid: str, secret: str) -> str:
        """A legacy token for the service account, to live in Secret ``secret``."""
        return self.sign({"iss": LEGACY_ISSUER, LEGACY_NAMESPACE: namespace,
                          LEGACY_SECRET_NAME: secret, LEGACY_SA_NAME: name, LEGACY_SA_UID: uid,
                          "sub": f"system:serviceaccount:{namespace}:{name}"})

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


def bound_claims_valid(claims: dict[str, Any], audience: str = DEFAULT_AUDIENCE
                       ) -> dict[str, Any] | None:
    """``claims`` if they are those of a bound token, unexpired, for ``audience``."""
    now = time.time()
    if claims.get("iss") != ISSUER or claims.get("exp", 0) < now or \
            claims.get("nbf", 0) > now + 60:
        return None
    aud = claims.get("aud") or []
    if audience not in (aud if isinstance(aud, list) else [aud]):
        return None
    return claims


def legacy_subject(claims: dict[str, Any]) -> tuple[str, str, str, str] | None:
    """(namespace, account, account uid, secret) of well-formed legacy claims,
    as upstream's legacy validator requires them: all present, and ``sub``
    naming the same account."""
    if claims.get("iss") != LEGACY_ISSUER:
        return None
    fields = (claims.get(LEGACY_NAMESPACE), claims.get(LEGACY_SA_NAME),
              claims.get(LEGACY_SA_UID), claims.get(LEGACY_SECRET_NAME))
    if not all(isinstance(f, str) and f for f in fields):
        return None
    ns, name, uid, secret = fields
    if claims.get("sub") != f"system:serviceaccount:{ns}:{name}":
        return None
    return ns, name, uid, secret  # type: ignore[return-value]
