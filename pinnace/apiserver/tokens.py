"""Service account tokens: the TokenRequest API signs short-lived JWTs bound
to a service account (and optionally a pod or secret), and the
authenticator accepts them while they are unexpired and what they are bound
to still exists with the same uid, as Kubernetes' bound tokens work.

Legacy tokens are the long-lived ones the token controller writes into
Secrets of type kubernetes.io/service-account-token: issuer
"kubernetes/serviceaccount", no expiry, no audience, and the
kubernetes.io/serviceaccount/* claims naming the account and the Secret
(upstream's LegacyClaims). They are valid only while that Secret holds them.

ES256 over the cluster's own service-account key, with PyJWT. The public
half is published as the issuer's JWKS (/openid/v1/jwks, next to
/.well-known/openid-configuration), so that other systems can check
pinnace's tokens as they check Kubernetes' (ServiceAccount issuer discovery).
"""

from __future__ import annotations

import base64
import hashlib
import time
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

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
        self.public_key = key.public_key()
        pub = self.public_key.public_bytes(serialization.Encoding.DER,
                                            serialization.PublicFormat.SubjectPublicKeyInfo)
        self.kid = _b64(hashlib.sha256(pub).digest())

    def sign(self, claims: dict[str, Any]) -> str:
        return jwt.encode(claims, self.key, algorithm="ES256", headers={"kid": self.kid})

    def signed_claims(self, token: str) -> dict[str, Any] | None:
        """The claims of a token this key signed, whatever its issuer; None
        for anything else. Expiry, audience and binding are the callers'
        business (legacy tokens have neither expiry nor audience)."""
        try:
            claims = jwt.decode(token, self.public_key, algorithms=["ES256"], options={
                "verify_exp": False, "verify_nbf": False, "verify_iat": False,
                "verify_aud": False, "verify_iss": False})
        except jwt.PyJWTError:
            return None
        return claims if isinstance(claims, dict) else None

    def jwks(self) -> dict[str, Any]:
        """The key set /openid/v1/jwks serves, as kube-apiserver's."""
        key = jwt.algorithms.ECAlgorithm.to_jwk(self.public_key, as_dict=True)
        return {"keys": [{"use": "sig", "kty": key["kty"], "kid": self.kid, "crv": key["crv"],
                          "alg": "ES256", "x": key["x"], "y": key["y"]}]}

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
