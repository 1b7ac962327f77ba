"""Service-account token authentication against a memory store: which legacy
tokens are accepted, and what the authenticator remembers (and forgets)
between requests."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from pinnace.apiserver.authn import Authenticator, TokenCache
from pinnace.apiserver.tokens import LEGACY_ISSUER, TokenIssuer
from pinnace.storage.memory import MemoryStore

NS, SA_UID = "team", "uid-robot"
SECRET_KEY = f"/registry/core/secrets/{NS}/robot-token"
SA_KEY = f"/registry/core/serviceaccounts/{NS}/robot"


class CountingStore(MemoryStore):
    def __init__(self) -> None:
        super().__init__()
        self.gets = 0

    async def get(self, key: str) -> Any:
        self.gets += 1
        return await super().get(key)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def env(tmp_path: Path) -> AsyncIterator[tuple[Authenticator, CountingStore, Clock]]:
    store = CountingStore()
    await store.start()
    authn = Authenticator(tmp_path / "tokens.csv", store)
    authn.issuer = TokenIssuer(ec.generate_private_key(ec.SECP256R1()))
    clock = Clock()
    assert authn.cache is not None
    authn.cache.clock = clock
    yield authn, store, clock
    await authn.close()
    await store.close()


async def put(store: MemoryStore, key: str, obj: dict[str, Any]) -> None:
    kv = await store.get(key)
    if kv is None:
        await store.create(key, orjson.dumps(obj))
    else:
        await store.update(key, orjson.dumps(obj), kv.mod_revision)


def account(uid: str = SA_UID, **meta: Any) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ServiceAccount",
            "metadata": {"name": "robot", "namespace": NS, "uid": uid, **meta}}


def secret(token: str, **meta: Any) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/service-account-token",
            "metadata": {"name": "robot-token", "namespace": NS, "uid": "uid-secret", **meta},
            "data": {"token": base64.b64encode(token.encode()).decode()}}


async def until(cond: Callable[[], bool]) -> None:
    """Let the loop run (the cache's watches) until ``cond`` holds; bounded."""
    for _ in range(1000):
        if cond():
            return
        await asyncio.sleep(0.001)
    raise AssertionError("condition never held")


async def legacy_setup(authn: Authenticator, store: MemoryStore) -> str:
    assert authn.issuer is not None
    token = authn.issuer.issue_legacy(NS, "robot", SA_UID, "robot-token")
    await put(store, SA_KEY, account())
    await put(store, SECRET_KEY, secret(token))
    return token


async def test_legacy_token_is_its_service_account(env: Any) -> None:
    authn, store, _ = env
    token = await legacy_setup(authn, store)
    user = await authn.user_for_bearer(token)
    assert user is not None
    assert user.name == f"system:serviceaccount:{NS}:robot" and user.uid == SA_UID
    assert user.groups == ("system:serviceaccounts", f"system:serviceaccounts:{NS}",
                           "system:authenticated")


@pytest.mark.parametrize("change", [
    "secret deleted", "secret being deleted", "secret holds another token",
    "secret marked invalid", "account deleted", "account recreated", "account being deleted"])
async def test_legacy_token_refused(env: Any, change: str) -> None:
    authn, store, _ = env
    token = await legacy_setup(authn, store)
    if change == "secret deleted":
        await store.delete(SECRET_KEY)
    elif change == "secret being deleted":
        await put(store, SECRET_KEY, secret(token, deletionTimestamp="2030-01-01T00:00:00Z"))
    elif change == "secret holds another token":
        await put(store, SECRET_KEY, secret(token[:-2] + "xx"))
    elif change == "secret marked invalid":
        await put(store, SECRET_KEY, secret(token, labels={
            "kubernetes.io/legacy-token-invalid-since": "2030-01-01"}))
    elif change == "account deleted":
        await store.delete(SA_KEY)
    elif change == "account recreated":
        await put(store, SA_KEY, account(uid="another"))
    elif change == "account being deleted":
        await put(store, SA_KEY, account(deletionTimestamp="2030-01-01T00:00:00Z"))
    assert await authn.user_for_bearer(token) is None


async def test_only_well_formed_tokens_of_our_key(env: Any) -> None:
    authn, store, _ = env
    token = await legacy_setup(authn, store)
    other = TokenIssuer(ec.generate_private_key(ec.SECP256R1()))
    forged = other.issue_legacy(NS, "robot", SA_UID, "robot-token")
    await put(store, SECRET_KEY, secret(forged))
    assert await authn.user_for_bearer(forged) is None  # not signed with our key
    claims = {"iss": LEGACY_ISSUER, "sub": f"system:serviceaccount:{NS}:admin",
              "kubernetes.io/serviceaccount/namespace": NS,
              "kubernetes.io/serviceaccount/secret.name": "robot-token",
              "kubernetes.io/serviceaccount/service-account.name": "robot",
              "kubernetes.io/serviceaccount/service-account.uid": SA_UID}
    mismatched = authn.issuer.sign(claims)
    await put(store, SECRET_KEY, secret(mismatched))
    assert await authn.user_for_bearer(mismatched) is None  # sub names another account
    await put(store, SECRET_KEY, secret(token))
    assert await authn.user_for_bearer(token) is not None


async def test_remembered_until_what_it_depends_on_changes(env: Any) -> None:
    authn, store, clock = env
    token = await legacy_setup(authn, store)
    assert await authn.user_for_bearer(token) is not None
    await until(lambda: authn.cache.live)
    assert await authn.user_for_bearer(token) is not None
    assert len(authn.cache) == 1
    reads = store.gets
    for _ in range(5):
        assert await authn.user_for_bearer(token) is not None
    assert store.gets == reads  # served from memory: no store reads

    await store.delete(SECRET_KEY)
    await until(lambda: len(authn.cache) == 0)  # the watch delivered the deletion
    assert await authn.user_for_bearer(token) is None

    # The account changing drops it too; and whatever happens, at most TTL seconds.
    await put(store, SECRET_KEY, secret(token))
    assert await authn.user_for_bearer(token) is not None
    assert len(authn.cache) == 1
    await put(store, SA_KEY, account(labels={"a": "b"}))
    await until(lambda: len(authn.cache) == 0)
    assert await authn.user_for_bearer(token) is not None
    reads = store.gets
    clock.now += TokenCache.TTL
    assert await authn.user_for_bearer(token) is not None
    assert store.gets > reads  # checked again after the TTL


async def test_nothing_remembered_across_a_change_or_without_watches(env: Any) -> None:
    authn, store, _ = env
    token = await legacy_setup(authn, store)
    cache = authn.cache
    user = await authn.user_for_bearer(token)
    assert user is not None and len(cache) == 0  # the watches were not running yet
    await until(lambda: cache.live)
    digest = TokenCache.digest(token)
    mark = cache.begin()
    await put(store, "/registry/core/secrets/elsewhere/x", {"metadata": {"name": "x"}})
    await asyncio.sleep(0.01)
    cache.put(digest, user, (SECRET_KEY, SA_KEY), None, mark)
    assert len(cache) == 0  # a check that spans any change is not remembered
    cache.put(digest, user, (SECRET_KEY, SA_KEY), None, cache.begin())
    assert len(cache) == 1
    await cache.close()  # no watches: nothing is served from memory, nor remembered
    assert len(cache) == 0 and not cache.live
    cache.put(digest, user, (SECRET_KEY, SA_KEY), None, mark)
    assert cache.get(digest) is None


async def test_bound_tokens_still_work_and_pod_bound_ones_are_not_remembered(env: Any) -> None:
    authn, store, _ = env
    await put(store, SA_KEY, account())
    await put(store, f"/registry/core/pods/{NS}/web", {"metadata": {"name": "web", "uid": "p1"}})
    token, _ = authn.issuer.issue(NS, "robot", SA_UID, [], 3600)
    pod_token, _ = authn.issuer.issue(NS, "robot", SA_UID, [], 3600,
                                      {"kind": "Pod", "name": "web", "uid": "p1"})
    await authn.user_for_bearer(token)
    await until(lambda: authn.cache.live)
    for t in (token, pod_token):
        user = await authn.user_for_bearer(t)
        assert user is not None and user.name == f"system:serviceaccount:{NS}:robot"
    assert len(authn.cache) == 1  # pods are not followed: the pod-bound one is checked each time
    await store.delete(f"/registry/core/pods/{NS}/web")
    assert await authn.user_for_bearer(pod_token) is None
    assert await authn.user_for_bearer(token) is not None
    expired, _ = authn.issuer.issue(NS, "robot", SA_UID, [], -10)
    assert await authn.user_for_bearer(expired) is None
