"""Bootstrap token authentication against a memory store (upstream's
bootstrap token authenticator): which tokens are accepted, as whom, and
that a token stops working as soon as its Secret changes."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from pinnace.apiserver import bootstraptoken as bt
from pinnace.apiserver.authn import Authenticator
from pinnace.storage.memory import MemoryStore

TID, SECRET = "abc123", "0123456789abcdef"
TOKEN = f"{TID}.{SECRET}"
KEY = f"/registry/core/secrets/kube-system/bootstrap-token-{TID}"


@pytest.fixture
async def env(tmp_path: Path) -> AsyncIterator[tuple[Authenticator, MemoryStore]]:
    store = MemoryStore()
    await store.start()
    authn = Authenticator(tmp_path / "tokens.csv", store)
    yield authn, store
    await authn.close()
    await store.close()


async def put(store: MemoryStore, obj: dict[str, Any], key: str = KEY) -> None:
    kv = await store.get(key)
    if kv is None:
        await store.create(key, orjson.dumps(obj))
    else:
        await store.update(key, orjson.dumps(obj), kv.mod_revision)


def secret(**kw: Any) -> dict[str, Any]:
    return bt.token_secret(TID, SECRET, **kw)


async def test_bootstrap_token_is_a_bootstrapper(env: Any) -> None:
    authn, store = env
    await put(store, secret(expires=dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)))
    user = await authn.user_for_bearer(TOKEN)
    assert user is not None
    assert user.name == "system:bootstrap:abc123"
    assert user.groups == ("system:bootstrappers", bt.NODE_GROUP, "system:authenticated")
    again = await authn.user_for_bearer(TOKEN)  # from memory, the same answer
    assert again == user


@pytest.mark.parametrize("change", [
    "wrong secret", "expired", "expiration unreadable", "not for authentication",
    "not a bootstrap token", "other groups", "being deleted", "no secret", "id mismatch"])
async def test_bootstrap_token_refused(env: Any, change: str) -> None:
    authn, store = env
    token = TOKEN
    obj = secret()
    if change == "wrong secret":
        token = f"{TID}.fedcba9876543210"
    elif change == "expired":
        obj = secret(expires=dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1))
    elif change == "expiration unreadable":
        obj = secret()
        obj["data"]["expiration"] = "c29vbg=="  # "soon"
    elif change == "not for authentication":
        obj = secret(usages=("signing",))
    elif change == "not a bootstrap token":
        obj["type"] = "Opaque"
    elif change == "other groups":
        obj = secret(groups=("system:masters",))
    elif change == "being deleted":
        obj["metadata"]["deletionTimestamp"] = "2030-01-01T00:00:00Z"
    elif change == "no secret":
        obj = None
    elif change == "id mismatch":
        obj = bt.token_secret("zzz999", SECRET)
    if obj is not None:
        await put(store, obj)
    assert await authn.user_for_bearer(token) is None


async def test_token_stops_working_when_its_secret_goes(env: Any) -> None:
    authn, store = env
    await put(store, secret())
    assert await authn.user_for_bearer(TOKEN) is not None
    assert authn.cache is not None
    # Let the cache's watches start, so the next answer is remembered.
    for _ in range(1000):
        if authn.cache.live:
            break
        await _tick()
    assert await authn.user_for_bearer(TOKEN) is not None
    assert len(authn.cache) == 1
    await store.delete(KEY)
    for _ in range(1000):
        if len(authn.cache) == 0:
            break
        await _tick()
    assert await authn.user_for_bearer(TOKEN) is None


async def test_static_tokens_are_tried_first(tmp_path: Path) -> None:
    (tmp_path / "tokens.csv").write_text(f'{TOKEN},alice,u1,"team"\n')
    authn = Authenticator(tmp_path / "tokens.csv", None)
    user = await authn.user_for_bearer(TOKEN)
    assert user is not None and user.name == "alice"
    assert await authn.user_for_bearer("zzz999.0123456789abcdef") is None  # no store: no lookup


async def _tick() -> None:
    await asyncio.sleep(0.001)
