"""Authentication: who is asking. Client certificates signed by the cluster
CA (user in CN, groups in O, as Kubernetes' x509 authenticator reads them)
and static bearer tokens from DIR/tokens.csv (token,user,uid,"group1,group2",
the format of kube-apiserver's --token-auth-file).
"""

from __future__ import annotations

import csv
import hmac
import logging
from dataclasses import dataclass, field
from pathlib import Path

import orjson
from aiohttp import web

from pinnace.storage.interface import Store

from .tokens import TokenIssuer

log = logging.getLogger("pinnace.apiserver.authn")


@dataclass(frozen=True)
class User:
    name: str
    uid: str = ""
    groups: tuple[str, ...] = field(default_factory=tuple)


class Authenticator:
    def __init__(self, token_file: Path, store: Store | None = None):
        self.store = store
        self.issuer: TokenIssuer | None = None  # set once the signing key is loaded
        self.tokens: dict[str, User] = {}
        if token_file.exists():
            with token_file.open() as f:
                for row in csv.reader(f):
                    if len(row) >= 2 and not row[0].startswith("#"):
                        groups = tuple(g for g in (row[3] if len(row) > 3 else "").split(",") if g)
                        self.tokens[row[0]] = User(row[1], row[2] if len(row) > 2 else "",
                                                   groups + ("system:authenticated",))

    def user_for_token(self, token: str) -> User | None:
        for known, user in self.tokens.items():
            if hmac.compare_digest(known, token):
                return user
        return None

    async def user_for_bearer(self, token: str) -> User | None:
        if token.count(".") == 2 and self.issuer is not None:
            return await self._service_account(token)
        return self.user_for_token(token)

    async def _service_account(self, token: str) -> User | None:
        """A bound service-account token is valid while its account (and the
        pod or secret it is bound to) still exist with the same uid."""
        assert self.issuer is not None
        claims = self.issuer.verify(token)
        if claims is None or self.store is None:
            return None
        k8s = claims.get("kubernetes.io") or {}
        ns = k8s.get("namespace", "")
        sa = k8s.get("serviceaccount") or {}
        checks = [(f"/registry/core/serviceaccounts/{ns}/{sa.get('name')}", sa.get("uid"))]
        for kind, resource in (("pod", "pods"), ("secret", "secrets")):
            if k8s.get(kind):
                checks.append((f"/registry/core/{resource}/{ns}/{k8s[kind].get('name')}",
                               k8s[kind].get("uid")))
        for key, uid in checks:
            kv = await self.store.get(key)
            if kv is None or orjson.loads(kv.value)["metadata"].get("uid") != uid:
                return None
        return User(f"system:serviceaccount:{ns}:{sa.get('name')}", sa.get("uid", ""),
                    ("system:serviceaccounts", f"system:serviceaccounts:{ns}",
                     "system:authenticated"))

    async def authenticate(self, request: web.Request) -> User | None:
        auth = request.headers.get("Authorization", "")
        if auth.startswith("Bearer "):
            return await self.user_for_bearer(auth[7:].strip())
        transport = request.transport
        if transport is None:
            return None
        # Only certificates that verified against the cluster CA appear here.
        cert = transport.get_extra_info("peercert")
        if not cert:
            return None
        cn, orgs = "", []
        for rdn in cert.get("subject", ()):
            for key, value in rdn:
                if key == "commonName":
                    cn = value
                elif key == "organizationName":
                    orgs.append(value)
        if not cn:
            return None
        return User(cn, "", tuple(orgs) + ("system:authenticated",))
