"""Encryption at rest: the providers' stored format, key rotation, the
EncryptionConfiguration checks, and the Store wrapper."""

from __future__ import annotations

import base64
import os
import shutil
import stat
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from pinnace.storage import ciphers
from pinnace.storage.encryption import EncryptedStore, encrypted
from pinnace.storage.encryptionconfig import (
    ConfigError,
    EncryptionConfig,
    for_server,
    load,
    parse,
    write_default,
)
from pinnace.storage.interface import ConflictError, Event
from pinnace.storage.memory import MemoryStore

KEY = "/registry/core/secrets/ns/s"
PLAIN = b'{"kind":"Secret","data":{"password":"aHVudGVyMg=="},"stringData":"hunter2-in-clear"}'


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def provider(kind: str, *keys: tuple[str, bytes]) -> dict[str, Any]:
    if kind == "identity":
        return {"identity": {}}
    return {kind: {"keys": [{"name": n, "secret": b64(s)} for n, s in keys]}}


def config(*providers: dict[str, Any], resources: tuple[str, ...] = ("secrets",)) -> EncryptionConfig:
    return parse({"apiVersion": "apiserver.config.k8s.io/v1", "kind": "EncryptionConfiguration",
                  "resources": [{"resources": list(resources), "providers": list(providers)}]},
                 Path("test.yaml"))


def chain(*providers: dict[str, Any]) -> ciphers.Chain:
    return config(*providers).rules[0].chain


def needs(kind: str) -> None:
    if kind == "secretbox":
        pytest.importorskip("nacl", reason="secretbox needs PyNaCl")


# -- providers -------------------------------------------------------------

@pytest.mark.parametrize("kind,size", [("aescbc", 32), ("aescbc", 16), ("aesgcm", 32),
                                       ("aesgcm", 24), ("secretbox", 32)])
def test_each_provider_round_trips_in_upstreams_format(kind: str, size: int) -> None:
    needs(kind)
    c = chain(provider(kind, ("k1", os.urandom(size))))
    stored = c.to_storage(PLAIN, KEY)
    assert stored.startswith(f"k8s:enc:{kind}:v1:k1:".encode())
    assert b"hunter2" not in stored and b"aHVudGVyMg" not in stored
    assert c.to_storage(PLAIN, KEY) != stored  # a fresh IV or nonce each time
    assert c.from_storage(stored, KEY) == (PLAIN, False)


def test_aescbc_is_iv_then_cbc_with_pkcs7_as_openssl_reads_it() -> None:
    if shutil.which("openssl") is None:
        pytest.skip("no openssl to cross-check with")
    secret = os.urandom(32)
    body = chain(provider("aescbc", ("k1", secret))).to_storage(PLAIN, KEY)
    body = body[len(b"k8s:enc:aescbc:v1:k1:"):]
    out = subprocess.run(["openssl", "enc", "-d", "-aes-256-cbc", "-K", secret.hex(),
                          "-iv", body[:16].hex()], input=body[16:], capture_output=True,
                         check=True)
    assert out.stdout == PLAIN


def test_secretbox_is_nonce_then_nacl_secretbox() -> None:
    nacl_secret = pytest.importorskip("nacl.secret")
    secret = os.urandom(32)
    body = chain(provider("secretbox", ("k1", secret))).to_storage(PLAIN, KEY)
    body = body[len(b"k8s:enc:secretbox:v1:k1:"):]
    assert nacl_secret.SecretBox(secret).decrypt(body[24:], body[:24]) == PLAIN


def test_aesgcm_authenticates_the_storage_key() -> None:
    c = chain(provider("aesgcm", ("k1", os.urandom(32))))
    stored = c.to_storage(PLAIN, KEY)
    with pytest.raises(ciphers.TransformError, match="authentication failed"):
        c.from_storage(stored, "/registry/core/secrets/ns/other")


@pytest.mark.parametrize("kind", ["aescbc", "aesgcm", "secretbox"])
def test_a_wrong_key_under_the_same_name_does_not_read(kind: str) -> None:
    needs(kind)
    right = chain(provider(kind, ("k1", os.urandom(32))))
    wrong = chain(provider(kind, ("k1", os.urandom(32))))
    failures = 0
    for _ in range(5):  # aescbc has no MAC: noise passes its padding check 1 time in ~256
        try:
            assert wrong.from_storage(right.to_storage(PLAIN, KEY), KEY)[0] != PLAIN
        except ciphers.TransformError as e:
            assert f"with {kind}:k1" in str(e)
            failures += 1
    assert failures >= 4


def test_rotation_writes_with_the_first_key_and_reads_every_listed_one() -> None:
    old, new = ("key1", os.urandom(32)), ("key2", os.urandom(32))
    before = chain(provider("aescbc", old))
    stored_old = before.to_storage(PLAIN, KEY)
    after = chain(provider("aesgcm", new), provider("aescbc", old))
    assert after.from_storage(stored_old, KEY) == (PLAIN, True)  # readable, but stale
    stored_new = after.to_storage(PLAIN, KEY)
    assert stored_new.startswith(b"k8s:enc:aesgcm:v1:key2:")
    assert after.from_storage(stored_new, KEY) == (PLAIN, False)
    # The second key of the first provider is stale too: writes use the first.
    two_keys = chain(provider("aescbc", new, old))
    assert two_keys.from_storage(stored_old, KEY) == (PLAIN, True)
    with pytest.raises(ciphers.TransformError, match="no matching prefix found.*aesgcm:v1:key2"):
        before.from_storage(stored_new, KEY)


def test_plain_data_needs_identity_and_identity_never_reads_ciphertext() -> None:
    key = ("key1", os.urandom(32))
    with_identity = chain(provider("aescbc", key), provider("identity"))
    assert with_identity.from_storage(PLAIN, KEY) == (PLAIN, True)
    without = chain(provider("aescbc", key))
    with pytest.raises(ciphers.TransformError, match="unencrypted.*identity provider"):
        without.from_storage(PLAIN, KEY)
    # identity first: writes plain, still reads (and marks stale) what was encrypted.
    decrypting = chain(provider("identity"), provider("aescbc", key))
    assert decrypting.to_storage(PLAIN, KEY) == PLAIN
    assert decrypting.from_storage(without.to_storage(PLAIN, KEY), KEY) == (PLAIN, True)
    only_identity = chain(provider("identity"))
    with pytest.raises(ciphers.TransformError, match="aescbc:v1:key1"):
        only_identity.from_storage(without.to_storage(PLAIN, KEY), KEY)


# -- configuration ---------------------------------------------------------

def _doc(**entry: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"resources": ["secrets"],
                            "providers": [provider("aescbc", ("k", os.urandom(32)))]}
    base.update(entry)
    return {"apiVersion": "apiserver.config.k8s.io/v1", "kind": "EncryptionConfiguration",
            "resources": [base]}


@pytest.mark.parametrize("doc,message", [
    (_doc(providers=[{"aesfoo": {"keys": []}}]), "unknown provider 'aesfoo'"),
    (_doc(providers=[provider("aescbc", ("k", os.urandom(15)))]),
     r"providers\[0\].aescbc.keys\[0\].secret: secret is not of the expected length, got 15, "
     r"expected one of \[16, 24, 32\]"),
    (_doc(providers=[provider("aesgcm", ("k", os.urandom(33)))]), "got 33"),
    (_doc(providers=[provider("secretbox", ("k", os.urandom(16)))]),
     r"got 16, expected one of \[32\]"),
    (_doc(providers=[{"aescbc": {"keys": [{"name": "k", "secret": "not base64!"}]}}]),
     "secrets must be base64 encoded"),
    (_doc(providers=[{"aescbc": {"keys": [{"name": "", "secret": b64(os.urandom(32))}]}}]),
     "name is a mandatory field"),
    (_doc(providers=[{"aescbc": {"keys": []}}]), "at least one key is required"),
    (_doc(providers=[{"kms": {"name": "x", "endpoint": "unix:///k.sock"}}]),
     "kms providers are not supported"),
    (_doc(providers=[{"identity": {}, "aescbc": {}}]), "exactly one of"),
    (_doc(providers=[]), "at least one provider is required"),
    (_doc(resources=["Secrets"]), "capital letters"),
    (_doc(resources=["*"]), r"use '\*.' to encrypt all the resources from core"),
    (_doc(resources=["secrets", "*."]), "overlapping resources"),
    (_doc(resources=["secrets", "secrets"]), "cannot be specified multiple times"),
    (_doc(resources=["events.events.k8s.io"]), "use 'events' instead"),
    (_doc(resources=["serviceipallocations"]), "do not have REST API"),
    ({"apiVersion": "v1", "kind": "EncryptionConfig", "resources": []},
     "expected apiVersion apiserver.config.k8s.io/v1 and kind EncryptionConfiguration"),
    ({"apiVersion": "apiserver.config.k8s.io/v1", "kind": "EncryptionConfiguration"},
     "at least one resources is required"),
])
def test_bad_configs_are_refused_naming_the_problem(doc: dict[str, Any], message: str,
                                                    tmp_path: Path) -> None:
    path = tmp_path / "enc.yaml"
    path.write_text(yaml.safe_dump(doc))
    with pytest.raises(ConfigError, match=message) as info:
        load(path)
    assert str(path) in str(info.value)


def test_unreadable_or_empty_files_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read encryption provider configuration"):
        load(tmp_path / "missing.yaml")
    (tmp_path / "empty.yaml").write_text("\n")
    with pytest.raises(ConfigError, match="is empty"):
        load(tmp_path / "empty.yaml")
    (tmp_path / "junk.yaml").write_text("resources: [")
    with pytest.raises(ConfigError, match="not YAML"):
        load(tmp_path / "junk.yaml")


@pytest.mark.parametrize("resource,key,encrypted_", [
    ("secrets", "/registry/core/secrets/ns/a", True),
    ("secrets", "/registry/core/secretsx/ns/a", False),
    ("configmaps", "/registry/core/configmaps/ns/a", True),
    ("deployments.apps", "/registry/apps/deployments/ns/a", True),
    ("deployments.apps", "/registry/apps/replicasets/ns/a", False),
    ("*.apps", "/registry/apps/replicasets/ns/a", True),
    ("*.", "/registry/core/pods/ns/a", True),
    ("*.", "/registry/apps/deployments/ns/a", False),
    ("*.*", "/registry/stable.example.com/crontabs/ns/a", True),
    ("crontabs.stable.example.com", "/registry/stable.example.com/crontabs/ns/a", True),
])
async def test_resources_name_store_key_prefixes(resource: str, key: str,
                                                 encrypted_: bool) -> None:
    inner = MemoryStore()
    store = EncryptedStore(inner, config(provider("aescbc", ("k", os.urandom(32))),
                                         resources=(resource,)))
    await store.create(key, PLAIN)
    raw = await inner.get(key)
    assert raw is not None
    assert raw.value.startswith(b"k8s:enc:aescbc:v1:k:") is encrypted_
    assert (await store.get(key)).value == PLAIN  # type: ignore[union-attr]


async def test_earlier_resource_lists_take_precedence() -> None:
    cfg = parse({"apiVersion": "apiserver.config.k8s.io/v1", "kind": "EncryptionConfiguration",
                 "resources": [{"resources": ["events"], "providers": [provider("identity")]},
                               {"resources": ["*.*"],
                                "providers": [provider("aesgcm", ("k", os.urandom(16)))]}]},
                Path("x"))
    inner = MemoryStore()
    store = EncryptedStore(inner, cfg)
    await store.create("/registry/core/events/ns/e", PLAIN)
    await store.create("/registry/core/secrets/ns/s", PLAIN)
    assert (await inner.get("/registry/core/events/ns/e")).value == PLAIN  # type: ignore[union-attr]
    assert (await inner.get("/registry/core/secrets/ns/s")).value.startswith(  # type: ignore[union-attr]
        b"k8s:enc:aesgcm:v1:k:")


def test_a_new_data_dir_gets_an_aescbc_key_readable_only_by_its_owner(tmp_path: Path) -> None:
    cfg = for_server("", tmp_path, "sqlite")
    assert cfg is not None
    path = tmp_path / "encryption-config.yaml"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    doc = yaml.safe_load(path.read_text())
    aescbc, identity = doc["resources"][0]["providers"]
    assert doc["resources"][0]["resources"] == ["secrets"]
    assert len(base64.b64decode(aescbc["aescbc"]["keys"][0]["secret"])) == 32
    assert identity == {"identity": {}}  # plain Secrets from before stay readable
    text = path.read_text()
    assert not write_default(path) and path.read_text() == text  # never replaced
    again = for_server("", tmp_path, "sqlite")
    assert again is not None
    stored = cfg.rules[0].chain.to_storage(PLAIN, KEY)
    assert again.rules[0].chain.from_storage(stored, KEY) == (PLAIN, False)
    assert for_server("", tmp_path / "mem", "memory") is None
    assert not (tmp_path / "mem").exists()


# -- the Store wrapper -----------------------------------------------------

def _store() -> tuple[MemoryStore, EncryptedStore]:
    inner = MemoryStore()
    return inner, EncryptedStore(inner, config(provider("aesgcm", ("k", os.urandom(32))),
                                               provider("identity")))


async def test_other_keys_pass_through_untouched() -> None:
    inner, store = _store()
    await store.create("/registry/core/configmaps/ns/c", PLAIN)
    assert (await inner.get("/registry/core/configmaps/ns/c")).value == PLAIN  # type: ignore[union-attr]
    listed = await inner.list("/registry/core/configmaps/")
    assert encrypted(inner, None) is inner
    # A list that cannot hold a Secret is handed over as the backend made it.
    inner_list = inner.list

    async def same(prefix: str, **kw: Any) -> Any:
        return listed

    inner.list = same  # type: ignore[method-assign]
    try:
        assert await store.list("/registry/core/configmaps/") is listed
    finally:
        inner.list = inner_list  # type: ignore[method-assign]


async def test_every_read_path_decrypts() -> None:
    inner, store = _store()
    kv = await store.create(KEY, PLAIN)
    assert kv.value == PLAIN
    assert (await inner.get(KEY)).value.startswith(b"k8s:enc:aesgcm:v1:k:")  # type: ignore[union-attr]
    assert (await store.get(KEY)).value == PLAIN  # type: ignore[union-attr]
    assert [k.value for k in (await store.list("/registry/core/")).kvs] == [PLAIN]
    assert [k.value for k in (await store.list("/registry/", revision=kv.mod_revision)).kvs] \
        == [PLAIN]
    updated = await store.update(KEY, PLAIN + b" ", kv.mod_revision)
    with pytest.raises(ConflictError) as info:
        await store.update(KEY, PLAIN, kv.mod_revision)
    assert info.value.current is not None and info.value.current.value == PLAIN + b" "
    deleted = await store.delete(KEY, updated.mod_revision)
    assert deleted.value == PLAIN + b" "
    events: list[Event] = []
    async for ev in store.watch("/registry/core/secrets/", 0):
        events.append(ev)
        if len(events) == 3:
            break
    assert [(e.type, e.kv.value) for e in events] == [
        ("ADDED", PLAIN), ("MODIFIED", PLAIN + b" "), ("DELETED", PLAIN + b" ")]
    assert events[1].prev is not None and events[1].prev.value == PLAIN


async def test_plain_values_from_before_read_as_stale() -> None:
    inner, store = _store()
    await inner.create(KEY, PLAIN)  # written before encryption was enabled
    kv = await store.get(KEY)
    assert kv is not None and kv.value == PLAIN and kv.stale
    await store.update(KEY, kv.value, kv.mod_revision)
    again = await store.get(KEY)
    assert again is not None and not again.stale
    assert (await inner.get(KEY)).value.startswith(b"k8s:enc:aesgcm:")  # type: ignore[union-attr]
