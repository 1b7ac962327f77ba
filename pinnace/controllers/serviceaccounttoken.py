"""The service-account token controller (upstream's TokensController, in
kube-controller-manager as "serviceaccount-token"): it keeps Secrets of type
kubernetes.io/service-account-token in step with their ServiceAccounts.

- A token Secret whose account (named by the kubernetes.io/service-account.name
  annotation, and matching kubernetes.io/service-account.uid when that is set)
  exists gets the data it lacks: ``token`` (a legacy JWT signed with the
  service-account key), ``ca.crt`` (the root CA, kept current) and
  ``namespace``; the uid annotation is set.
- A token Secret whose account does not exist is deleted.
- When an account is deleted, its token Secrets are deleted.
- When a token Secret is deleted, the account's ``secrets`` stops listing it.

Like upstream, the controller runs only when given the signing key
(option ``service_account_private_key_file``, upstream's
--service-account-private-key-file); the API server must verify with the
same key.
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from pinnace.client import ApiError, retry_on_conflict

from .base import Context, Controller
from .serviceaccount import root_ca_pem

if TYPE_CHECKING:
    from pinnace.apiserver.tokens import TokenIssuer

Obj = dict[str, Any]

TOKEN_TYPE = "kubernetes.io/service-account-token"
NAME_ANNOTATION = "kubernetes.io/service-account.name"
UID_ANNOTATION = "kubernetes.io/service-account.uid"


def _annotations(obj: Obj) -> dict[str, str]:
    return obj["metadata"].get("annotations") or {}


def is_token_for(secret: Obj, namespace: str, name: str, uid: str) -> bool:
    """Whether ``secret`` is a token Secret of that account (upstream's
    IsServiceAccountToken): the name annotation matches, and the uid one too
    when set."""
    ann = _annotations(secret)
    return secret.get("type") == TOKEN_TYPE and \
        secret["metadata"].get("namespace") == namespace and \
        ann.get(NAME_ANNOTATION) == name and ann.get(UID_ANNOTATION, "") in ("", uid)


def _data(secret: Obj, key: str) -> bytes:
    raw = (secret.get("data") or {}).get(key)
    return base64.b64decode(raw) if raw else b""


class TokensController(Controller):
    name = "serviceaccount-token"
    event_source = "serviceaccount-token-controller"
    workers = 2

    def __init__(self, ctx: Context):
        super().__init__(ctx)
        self._issuer: TokenIssuer | None = None
        path = ctx.options.get("service_account_private_key_file")
        # The key (and JWT and crypto libraries, ~10 MB) is loaded when the
        # first token is made: most clusters never ask for a legacy one.
        self._key_file: Path | None = None
        if path and not Path(path).is_file():
            self.log.error("service account token controller disabled: %s: no such file", path)
        elif path:
            self._key_file = Path(path)
        else:
            self.log.info("service account token controller disabled: no "
                          "service_account_private_key_file")
        try:
            self.root_ca: bytes = root_ca_pem(ctx).encode()
        except (ValueError, OSError):
            self.root_ca = b""  # upstream too leaves ca.crt alone without a root CA
        # Without a key there is nothing to do: not even following every Secret.
        self.accounts = ctx.informers.informer("v1", "serviceaccounts")
        self.secrets = ctx.informers.informer("v1", "secrets") if self._key_file else None
        self.sa_api = self.client.resource("v1", "serviceaccounts")
        self.secret_api = self.client.resource("v1", "secrets")

    def _token_issuer(self) -> TokenIssuer | None:
        if self._issuer is None and self._key_file is not None:
            from pinnace.apiserver.tokens import TokenIssuer, load_key

            try:
                self._issuer = TokenIssuer(load_key(self._key_file))
            except (OSError, ValueError) as e:
                self.log.error("service account token controller disabled: %s", e)
                self._key_file = None
        return self._issuer

    # Keys carry what a sync needs once the object is gone (as upstream's queue
    # keys): JSON lists, since annotation values may hold any character.
    def setup(self) -> None:
        if self.secrets is None:
            return
        self.accounts.add_handler(self._account_changed,
                                  lambda old, new: self._account_changed(new),
                                  self._account_changed)
        self.secrets.add_handler(self._secret_changed,
                                 lambda old, new: self._secret_changed(new),
                                 self._secret_changed)

    def _account_changed(self, sa: Obj) -> None:
        meta = sa["metadata"]
        self.queue.add(orjson.dumps(["sa", meta["namespace"], meta["name"], meta["uid"]]).decode())

    def _secret_changed(self, secret: Obj) -> None:
        if secret.get("type") != TOKEN_TYPE:
            return
        meta, ann = secret["metadata"], _annotations(secret)
        if not ann.get(NAME_ANNOTATION):
            return
        self.queue.add(orjson.dumps(["secret", meta["namespace"], meta["name"], meta["uid"],
                                     ann[NAME_ANNOTATION], ann.get(UID_ANNOTATION, "")]).decode())

    async def sync(self, key: str) -> None:
        parts = orjson.loads(key)
        if parts[0] == "sa":
            await self._sync_account(*parts[1:])
        else:
            await self._sync_secret(*parts[1:])

    # -- lookups -----------------------------------------------------------------

    async def _account(self, ns: str, name: str, uid: str, live: bool) -> Obj | None:
        """The account, if it exists with ``uid`` (any uid when empty); ``live``
        asks the API server when the cache does not have it (it may be new)."""
        sa = self.accounts.get(f"{ns}/{name}")
        if sa is not None and uid in ("", sa["metadata"]["uid"]):
            return sa
        if not live:
            return None
        try:
            sa = await self.sa_api.get(name, ns)
        except ApiError as e:
            if e.not_found:
                return None
            raise
        return sa if uid in ("", sa["metadata"]["uid"]) else None

    def _cached_secret(self, ns: str, name: str, uid: str) -> Obj | None:
        assert self.secrets is not None
        secret = self.secrets.get(f"{ns}/{name}")
        return secret if secret is not None and secret["metadata"]["uid"] == uid else None

    # -- syncs -------------------------------------------------------------------

    async def _sync_account(self, ns: str, name: str, uid: str) -> None:
        assert self.secrets is not None
        if await self._account(ns, name, uid, live=False) is not None:
            return
        for secret in self.secrets.objects(ns):
            if is_token_for(secret, ns, name, uid):
                await self._delete_secret(secret)

    async def _sync_secret(self, ns: str, name: str, uid: str, sa_name: str,
                           sa_uid: str) -> None:
        secret = self._cached_secret(ns, name, uid)
        if secret is None:
            if await self._account(ns, sa_name, sa_uid, live=False) is not None:
                await self._remove_reference(ns, sa_name, sa_uid, name)
            return
        sa = await self._account(ns, sa_name, sa_uid, live=True)
        if sa is None:
            self.log.info("deleting token secret %s/%s: service account %s does not exist",
                          ns, name, sa_name)
            await self._delete_secret(secret)
            return
        await self._populate(sa, secret)

    def _needs(self, secret: Obj) -> tuple[bool, bool, bool]:
        """(ca.crt, namespace, token): what the Secret lacks."""
        return (bool(self.root_ca) and _data(secret, "ca.crt") != self.root_ca,
                not _data(secret, "namespace"), not _data(secret, "token"))

    async def _populate(self, sa: Obj, cached: Obj) -> None:
        if not any(self._needs(cached)):
            return
        meta = cached["metadata"]
        try:
            live = await self.secret_api.get(meta["name"], meta["namespace"])
        except ApiError as e:
            if e.not_found:
                return
            raise
        if live["metadata"].get("resourceVersion") != meta.get("resourceVersion"):
            return  # our view is behind: the update event brings us back
        needs_ca, needs_ns, needs_token = self._needs(live)
        if not (needs_ca or needs_ns or needs_token):
            return
        issuer = self._token_issuer()
        if issuer is None:
            return
        data = dict(live.get("data") or {})
        if needs_ca:
            data["ca.crt"] = base64.b64encode(self.root_ca).decode()
        if needs_ns:
            data["namespace"] = base64.b64encode(meta["namespace"].encode()).decode()
        if needs_token:
            token = issuer.issue_legacy(sa["metadata"]["namespace"], sa["metadata"]["name"],
                                        sa["metadata"]["uid"], meta["name"])
            data["token"] = base64.b64encode(token.encode()).decode()
        live["data"] = data
        live["metadata"]["annotations"] = {**_annotations(live),
                                           NAME_ANNOTATION: sa["metadata"]["name"],
                                           UID_ANNOTATION: sa["metadata"]["uid"]}
        try:
            await self.secret_api.replace(live, meta["namespace"])
        except ApiError as e:
            # Conflict: someone else changed it, and their update event brings us
            # back. NotFound: nothing left to fill in.
            if e.conflict or e.not_found:
                return
            raise

    async def _delete_secret(self, secret: Obj) -> None:
        meta = secret["metadata"]
        try:
            await self.secret_api.delete(meta["name"], meta["namespace"],
                                         preconditions={"uid": meta["uid"]})
        except ApiError as e:
            # Gone already, or replaced by another Secret of the same name.
            if e.not_found or e.conflict:
                return
            raise

    async def _remove_reference(self, ns: str, sa_name: str, sa_uid: str, secret: str) -> None:
        async def attempt() -> None:
            try:
                sa = await self.sa_api.get(sa_name, ns)
            except ApiError as e:
                if e.not_found:
                    return
                raise
            if sa_uid not in ("", sa["metadata"]["uid"]):
                return
            refs = sa.get("secrets") or []
            kept = [r for r in refs if r.get("name") != secret]
            if len(kept) == len(refs):
                return
            sa["secrets"] = kept
            try:
                await self.sa_api.replace(sa, ns)
            except ApiError as e:
                if not e.not_found:
                    raise

        await retry_on_conflict(attempt)


CONTROLLERS: dict[str, type[Controller]] = {"serviceaccount-token": TokensController}
