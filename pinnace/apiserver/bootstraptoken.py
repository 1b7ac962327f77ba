"""Bootstrap tokens and the join token built on them.

A bootstrap token is ``<id>.<secret>`` (6 and 16 characters of [a-z0-9]),
kept as upstream keeps it: a Secret ``bootstrap-token-<id>`` of type
``bootstrap.kubernetes.io/token`` in kube-system, with the data keys
token-id, token-secret, expiration (RFC 3339, optional), description,
usage-bootstrap-authentication, usage-bootstrap-signing and
auth-extra-groups. The API server authenticates it as
``system:bootstrap:<id>`` in the group ``system:bootstrappers`` (authn.py).

The join token a user hands to `pinnace agent` adds what the agent needs to
trust the server before it sends anything secret, as k3s's tokens do:

    K10<sha256 of the cluster CA's public key (SubjectPublicKeyInfo, DER), hex>::<id>.<secret>

The hash is kubeadm's ``--discovery-token-ca-cert-hash`` (without its
``sha256:``), so the same openssl pipeline computes both.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import re
import secrets
import string
from dataclasses import dataclass
from typing import Any

SECRET_TYPE = "bootstrap.kubernetes.io/token"
SECRET_PREFIX = "bootstrap-token-"
NAMESPACE = "kube-system"
USER_PREFIX = "system:bootstrap:"
GROUP = "system:bootstrappers"
# The group every token pinnace makes for joining nodes carries (as kubeadm's
# system:bootstrappers:kubeadm:default-node-token).
NODE_GROUP = "system:bootstrappers:pinnace:default-node-token"
JOIN_PREFIX = "K10"

TOKEN_RE = re.compile(r"([a-z0-9]{6})\.([a-z0-9]{16})")
_EXTRA_GROUP_RE = re.compile(r"system:bootstrappers:[a-z0-9:-]{0,255}[a-z0-9]")
_HASH_RE = re.compile(r"[0-9a-f]{64}")
_ALPHABET = string.ascii_lowercase + string.digits
_UNITS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}


@dataclass(frozen=True)
class JoinToken:
    ca_hash: str  # hex sha256 of the CA's SubjectPublicKeyInfo
    token_id: str
    secret: str

    @property
    def bearer(self) -> str:
        """What goes into ``Authorization: Bearer``."""
        return f"{self.token_id}.{self.secret}"

    def __str__(self) -> str:
        return f"{JOIN_PREFIX}{self.ca_hash}::{self.bearer}"


def parse_join_token(text: str) -> JoinToken:
    """The parts of ``K10<hash>::<id>.<secret>``; ValueError saying what is wrong."""
    text = text.strip()
    head, sep, bearer = text.partition("::")
    if not sep or not head.startswith(JOIN_PREFIX):
        raise ValueError("a join token looks like K10<CA hash>::<id>.<secret> (the server "
                         "writes one to DATA/node-token; `pinnace token create` makes more)")
    ca_hash = head[len(JOIN_PREFIX):].lower()
    if ca_hash.startswith("sha256:"):
        ca_hash = ca_hash[len("sha256:"):]
    if not _HASH_RE.fullmatch(ca_hash):
        raise ValueError("the CA hash in the join token is not 64 hexadecimal digits")
    m = TOKEN_RE.fullmatch(bearer)
    if m is None:
        raise ValueError("the token after '::' in the join token is not <id>.<secret> "
                         "(6 and 16 characters of a-z and 0-9)")
    return JoinToken(ca_hash, m.group(1), m.group(2))


def token_id_of(text: str) -> str:
    """The token id in a join token, a bootstrap token or a bare id."""
    text = text.strip()
    if "::" in text:
        text = text.split("::", 1)[1]
    tid = text.split(".", 1)[0]
    if not re.fullmatch(r"[a-z0-9]{6}", tid):
        raise ValueError(f"{text!r} is not a token id (6 characters of a-z and 0-9)")
    return tid


def generate() -> tuple[str, str]:
    """A new (id, secret) from the system's random source."""
    return ("".join(secrets.choice(_ALPHABET) for _ in range(6)),
            "".join(secrets.choice(_ALPHABET) for _ in range(16)))


def ca_hash(ca_pem: bytes) -> str:
    """sha256 (hex) of the public key of the first certificate in ``ca_pem``."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    cert = x509.load_pem_x509_certificate(ca_pem)
    spki = cert.public_key().public_bytes(serialization.Encoding.DER,
                                          serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(spki).hexdigest()


def secret_name(token_id: str) -> str:
    return SECRET_PREFIX + token_id


def rfc3339(when: dt.datetime) -> str:
    return when.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def token_secret(token_id: str, secret: str, *, expires: dt.datetime | None = None,
                 description: str = "", groups: tuple[str, ...] = (NODE_GROUP,),
                 usages: tuple[str, ...] = ("authentication", "signing")) -> dict[str, Any]:
    """The Secret that makes ``<token_id>.<secret>`` a bootstrap token."""
    data = {"token-id": token_id, "token-secret": secret}
    if expires is not None:
        data["expiration"] = rfc3339(expires)
    if description:
        data["description"] = description
    for usage in usages:
        data[f"usage-bootstrap-{usage}"] = "true"
    if groups:
        data["auth-extra-groups"] = ",".join(groups)
    return {"apiVersion": "v1", "kind": "Secret", "type": SECRET_TYPE,
            "metadata": {"name": secret_name(token_id), "namespace": NAMESPACE},
            "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}}


def secret_data(secret: dict[str, Any]) -> dict[str, str]:
    """A Secret's data decoded to text (keys that do not decode are left out)."""
    out = {}
    for key, value in (secret.get("data") or {}).items():
        try:
            out[key] = base64.b64decode(value, validate=True).decode()
        except (ValueError, TypeError):
            continue
    return out


def expiration(data: dict[str, str]) -> dt.datetime | None:
    """When a token with this (decoded) data expires; None: never. A value
    that does not parse counts as already expired, as upstream counts it."""
    raw = data.get("expiration")
    if not raw:
        return None
    try:
        when = dt.datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        return dt.datetime.fromtimestamp(0, dt.UTC)
    return when if when.tzinfo else when.replace(tzinfo=dt.UTC)


def extra_groups(data: dict[str, str]) -> tuple[str, ...] | None:
    """auth-extra-groups; None when one of them is not a system:bootstrappers: group."""
    groups = tuple(g.strip() for g in data.get("auth-extra-groups", "").split(",") if g.strip())
    if any(not _EXTRA_GROUP_RE.fullmatch(g) for g in groups):
        return None
    return groups


def parse_duration(text: str) -> float:
    """Seconds in a Go-style duration: "24h", "1h30m", "90s", "0"."""
    text = text.strip()
    if text in ("0", ""):
        return 0.0
    sign = -1.0 if text.startswith("-") else 1.0
    body = text.lstrip("+-")
    parts = re.findall(r"(\d+(?:\.\d*)?|\.\d+)(ms|h|m|s)", body)
    if not parts or "".join(n + u for n, u in parts) != body:
        raise ValueError(f"invalid duration {text!r} (use e.g. 24h, 1h30m, 90s, or 0 for "
                         "never)")
    return sign * sum(float(n) * _UNITS[u] for n, u in parts)


def short_duration(seconds: float) -> str:
    """apimachinery's ShortHumanDuration, as `kubeadm token list` shows a TTL."""
    s = int(seconds)
    if s < -1:
        return "<invalid>"
    if s < 0:
        return "0s"
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m"
    if s < 86400:
        return f"{s // 3600}h"
    if s < 86400 * 365:
        return f"{s // 86400}d"
    return f"{s // (86400 * 365)}y"
