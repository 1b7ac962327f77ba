"""Authentication: who is asking. Client certificates signed by the cluster
CA (user in CN, groups in O, as Kubernetes' x509 authenticator reads them),
static bearer tokens from DIR/tokens.csv (token,user,uid,"group1,group2",
the format of kube-apiserver's --token-auth-file), service-account
tokens: bound ones from the TokenRequest API and legacy ones the token
controller keeps in Secrets (see tokens.py), and bootstrap tokens kept in
kube-system Secrets (see bootstraptoken.py), which nodes join with.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import csv
import datetime as dt
import hashlib
import hmac
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from aiohttp import web

from pinnace.storage.interface import Store

from . import bootstraptoken as bt
from .tokens import LEGACY_ISSUER, TokenIssuer, bound_claims_valid, legacy_subject

log = logging.getLogger("pinnace.apiserver.authn")

SECRETS = "/registry/core/secrets/"
ACCOUNTS = "/registry/core/serviceaccounts/"
# Set by upstream's legacy token cleaner; a token whose Secret has it is refused.
INVALID_SINCE_LABEL = "kubernetes.io/legacy-token-invalid-since"


@dataclass(frozen=True)
class User:
    name: str
    uid: str = ""
    groups: tuple[str, ...] = field(default_factory=tuple)


# Who made a request, as the server's middleware found it, for the handlers.
USER_NAME: web.RequestKey[str] = web.RequestKey("user", str)
USER_INFO: web.RequestKey[User] = web.RequestKey("userinfo", User)


def service_account_user(namespace: str, name: str, uid: str) -> User:
    return User(f"system:serviceaccount:{namespace}:{name}", uid,
                ("system:serviceaccounts", f"system:serviceaccounts:{namespace}",
                 "system:authenticated"))


class TokenCache:
    """Service-account tokens that passed every check, remembered for at most
    ``TTL`` seconds so that a client's requests do not each pay for a
    signature check and store reads (upstream keeps successful token
    authentications for 10 s too).

    The objects a remembered token depends on (its Secret, its ServiceAccount)
    are followed by one store watch each on secrets and serviceaccounts: a
    change to one drops every token depending on it as soon as the watch
    delivers the event. Nothing is remembered while those watches are not both
    running, nor from a check during which they delivered anything or
    restarted. So a token whose Secret is deleted is accepted from memory only
    until the deletion reaches the watch (normally milliseconds), and never
    longer than ``TTL``. Only hashes of tokens are kept."""

    TTL = 10.0
    MAX_ENTRIES = 10_000
    PREFIXES = (SECRETS, ACCOUNTS)

    def __init__(self, store: Store, clock: Callable[[], float] = time.monotonic):
        self.store = store
        self.clock = clock
        self._entries: dict[bytes, tuple[User, tuple[str, ...], float]] = {}
        self._dependents: dict[str, set[bytes]] = {}
        self._epoch = 0
        self._watching: set[str] = set()
        self._tasks: list[asyncio.Task[None]] = []

    @staticmethod
    def digest(token: str) -> bytes:
        return hashlib.sha256(token.encode()).digest()

    def get(self, digest: bytes) -> User | None:
        entry = self._entries.get(digest)
        if entry is None:
            return None
        if entry[2] <= self.clock() or not self.live:
            self._drop(digest)
            return None
        return entry[0]

    def begin(self) -> int | None:
        """A mark to hand to ``put`` after the checks; None when their result
        may not be remembered. Starts the watches on first use."""
        if not self._tasks:
            loop = asyncio.get_running_loop()
            self._tasks = [loop.create_task(self._follow(p)) for p in self.PREFIXES]
        return self._epoch if self.live else None

    def put(self, digest: bytes, user: User, depends_on: tuple[str, ...],
            expires: float | None, mark: int | None) -> None:
        """Remember ``user`` for the token, unless anything happened since ``mark``."""
        if mark is None or mark != self._epoch or not self.live:
            return
        ttl = self.TTL if expires is None else min(self.TTL, expires - time.time())
        if ttl <= 0:
            return
        while len(self._entries) >= self.MAX_ENTRIES:
            self._drop(next(iter(self._entries)))  # the oldest
        self._entries[digest] = (user, depends_on, self.clock() + ttl)
        for key in depends_on:
            self._dependents.setdefault(key, set()).add(digest)

    def __len__(self) -> int:
        return len(self._entries)

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        self._watching.clear()
        self._forget_all()

    @property
    def live(self) -> bool:
        """Both watches are running: results may be remembered."""
        return len(self._watching) == len(self.PREFIXES)

    def _drop(self, digest: bytes) -> None:
        entry = self._entries.pop(digest, None)
        if entry is None:
            return
        for key in entry[1]:
            dependents = self._dependents.get(key)
            if dependents is not None:
                dependents.discard(digest)
                if not dependents:
                    del self._dependents[key]

    def _changed(self, key: str) -> None:
        self._epoch += 1
        for digest in list(self._dependents.get(key, ())):
            self._drop(digest)

    def _forget_all(self) -> None:
        self._epoch += 1
        self._entries.clear()
        self._dependents.clear()

    async def _follow(self, prefix: str) -> None:
        delay = 0.5
        while True:
            try:
                watch = self.store.watch(prefix, await self.store.revision())
                self._watching.add(prefix)
                try:
                    async for ev in watch:
                        self._changed(ev.kv.key)
                        delay = 0.5
                finally:
                    await watch.close()
                log.info("watch on %s ended; restarting it", prefix)
            except asyncio.CancelledError:
                raise
            except Exception as e:  # noqa: BLE001 - whatever it was, start over
                log.info("watch on %s failed (%s); restarting it", prefix, e)
            # Events may have been missed: forget everything until watching again.
            self._watching.discard(prefix)
            self._forget_all()
            await asyncio.sleep(delay)
            delay = min(delay * 2, 30.0)


class Authenticator:
    def __init__(self, token_file: Path, store: Store | None = None):
        self.store = store
        self.issuer: TokenIssuer | None = None  # set once the signing key is loaded
        self.cache = TokenCache(store) if store is not None else None
        self.tokens: dict[str, User] = {}
        if token_file.exists():
            with token_file.open() as f:
                for row in csv.reader(f):
                    if len(row) >= 2 and not row[0].startswith("#"):
                        groups = tuple(g for g in (row[3] if len(row) > 3 else "").split(",") if g)
                        self.tokens[row[0]] = User(row[1], row[2] if len(row) > 2 else "",
                                                   groups + ("system:authenticated",))

    async def close(self) -> None:
        if self.cache is not None:
            await self.cache.close()

    def user_for_token(self, token: str) -> User | None:
        for known, user in self.tokens.items():
            if hmac.compare_digest(known, token):
                return user
        return None

    async def user_for_bearer(self, token: str) -> User | None:
        if token.count(".") == 2 and self.issuer is not None:
            return await self._service_account(token)
        user = self.user_for_token(token)
        if user is None and bt.TOKEN_RE.fullmatch(token):
            return await self._bootstrap(token)
        return user

    async def _bootstrap(self, token: str) -> User | None:
        """A bootstrap token ``<id>.<secret>``: valid while the Secret
        kube-system/bootstrap-token-<id> of type bootstrap.kubernetes.io/token
        holds that secret, allows authentication and has not expired
        (upstream's bootstrap token authenticator)."""
        if self.store is None or self.cache is None:
            return None
        digest = TokenCache.digest(token)
        user = self.cache.get(digest)
        if user is not None:
            return user
        token_id, secret = token.split(".", 1)
        mark = self.cache.begin()
        key = f"{SECRETS}{bt.NAMESPACE}/{bt.secret_name(token_id)}"
        obj = await self._get(key)
        if obj is None or obj.get("type") != bt.SECRET_TYPE or \
                obj["metadata"].get("deletionTimestamp"):
            log.debug("bootstrap token %s refused: no such secret", token_id)
            return None
        data = bt.secret_data(obj)
        if not hmac.compare_digest(data.get("token-secret", "").encode(), secret.encode()) or \
                data.get("token-id") != token_id:
            log.debug("bootstrap token %s refused: wrong secret", token_id)
            return None
        expires = bt.expiration(data)
        if expires is not None and expires <= dt.datetime.now(dt.UTC):
            log.debug("bootstrap token %s refused: expired at %s", token_id, expires)
            return None
        if data.get("usage-bootstrap-authentication") != "true":
            log.debug("bootstrap token %s refused: not for authentication", token_id)
            return None
        groups = bt.extra_groups(data)
        if groups is None:
            log.debug("bootstrap token %s refused: bad auth-extra-groups", token_id)
            return None
        user = User(bt.USER_PREFIX + token_id, "",
                    (bt.GROUP, *groups, "system:authenticated"))
        self.cache.put(digest, user, (key,),
                       expires.timestamp() if expires is not None else None, mark)
        return user

    async def _service_account(self, token: str) -> User | None:
        assert self.issuer is not None
        if self.store is None or self.cache is None:
            return None
        digest = TokenCache.digest(token)
        user = self.cache.get(digest)
        if user is not None:
            return user
        claims = self.issuer.signed_claims(token)
        if claims is None:
            return None
        mark = self.cache.begin()
        found: tuple[User, tuple[str, ...] | None] | None
        if claims.get("iss") == LEGACY_ISSUER:
            found = await self._legacy(token, claims)
        else:
            found = await self._bound(claims)
        if found is None:
            return None
        user, depends_on = found
        if depends_on is not None:
            exp = claims.get("exp")
            self.cache.put(digest, user, depends_on,
                           float(exp) if isinstance(exp, int | float) else None, mark)
        return user

    async def _get(self, key: str) -> dict[str, Any] | None:
        assert self.store is not None
        kv = await self.store.get(key)
        return None if kv is None else orjson.loads(kv.value)  # type: ignore[no-any-return]

    async def _bound(self, claims: dict[str, Any]
                     ) -> tuple[User, tuple[str, ...] | None] | None:
        """A bound token is valid while unexpired and while its account (and
        the pod or secret it is bound to) still exist with the same uid.
        Returns the user and what it depends on (None: not to be remembered,
        as pods are not followed)."""
        if bound_claims_valid(claims) is None:
            return None
        k8s = claims.get("kubernetes.io") or {}
        ns = k8s.get("namespace", "")
        sa = k8s.get("serviceaccount") or {}
        checks = [(f"{ACCOUNTS}{ns}/{sa.get('name')}", sa.get("uid"))]
        if k8s.get("secret"):
            checks.append((f"{SECRETS}{ns}/{k8s['secret'].get('name')}",
                           k8s["secret"].get("uid")))
        remember = True
        if k8s.get("pod"):
            checks.append((f"/registry/core/pods/{ns}/{k8s['pod'].get('name')}",
                           k8s["pod"].get("uid")))
            remember = False
        for key, uid in checks:
            obj = await self._get(key)
            if obj is None or obj["metadata"].get("uid") != uid:
                return None
        return (service_account_user(ns, str(sa.get("name")), sa.get("uid", "")),
                tuple(k for k, _ in checks) if remember else None)

    async def _legacy(self, token: str, claims: dict[str, Any]
                      ) -> tuple[User, tuple[str, ...]] | None:
        """A legacy token is valid while the Secret it names still holds it
        (and is not being deleted or marked invalid) and its account exists
        with the uid in the token: upstream's legacy validator with lookup."""
        subject = legacy_subject(claims)
        if subject is None:
            return None
        ns, name, uid, secret_name = subject
        secret_key, account_key = f"{SECRETS}{ns}/{secret_name}", f"{ACCOUNTS}{ns}/{name}"
        secret = await self._get(secret_key)
        if secret is None or secret["metadata"].get("deletionTimestamp"):
            log.debug("legacy token of %s/%s refused: secret %s gone", ns, name, secret_name)
            return None
        try:
            held = base64.b64decode((secret.get("data") or {}).get("token") or "", validate=True)
        except (binascii.Error, ValueError):
            return None
        if not hmac.compare_digest(held, token.encode()):
            log.debug("legacy token of %s/%s refused: secret %s holds another", ns, name,
                      secret_name)
            return None
        if (secret["metadata"].get("labels") or {}).get(INVALID_SINCE_LABEL):
            log.debug("legacy token in secret %s/%s refused: marked invalid", ns, secret_name)
            return None
        account = await self._get(account_key)
        if account is None or account["metadata"].get("deletionTimestamp") or \
                account["metadata"].get("uid") != uid:
            log.debug("legacy token of %s/%s refused: no such account", ns, name)
            return None
        return service_account_user(ns, name, uid), (secret_key, account_key)

    async def authenticate(self, request: web.Request) -> User | None:
        auth = request.headers.get("Authorization", "")
        scheme, _, token = auth.partition(" ")
        # The scheme is case-insensitive (RFC 7235): the official Python
        # client's in-cluster configuration sends "bearer".
        if scheme.lower() == "bearer" and token.strip():
            return await self.user_for_bearer(token.strip())
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
