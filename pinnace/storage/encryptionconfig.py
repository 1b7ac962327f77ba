"""kube-apiserver's EncryptionConfiguration (apiserver.config.k8s.io/v1):
read and validate one, or write the default a new data dir gets.

Resources name ``resource`` (core group) or ``resource.group``, or a
wildcard: ``*.group`` for a whole group, ``*.`` for the core group, ``*.*``
for everything. Each becomes a key prefix of the store
(``/registry/<group or core>/<resource>/``); entries are matched in order,
the first that names a key's resource wins (as upstream: earlier lists take
precedence). KMS providers are not supported.
"""

from __future__ import annotations

import base64
import binascii
import os
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from . import ciphers

API_VERSION = "apiserver.config.k8s.io/v1"
KIND = "EncryptionConfiguration"
DEFAULT_NAME = "encryption-config.yaml"

_PROVIDERS: dict[str, tuple[tuple[int, ...], Callable[[str, bytes], ciphers.Entry]]] = {
    "aescbc": (ciphers.AES_KEY_SIZES, ciphers.aescbc),
    "aesgcm": (ciphers.AES_KEY_SIZES, ciphers.aesgcm),
    "secretbox": (ciphers.SECRETBOX_KEY_SIZES, ciphers.secretbox),
}
# Stored apart from any REST resource: upstream refuses to encrypt them.
_NOT_REST = ("apiserveripinfo", "serviceipallocations", "servicenodeportallocations")


class ConfigError(ValueError):
    """The configuration is unusable; the message names the file and the field."""


@dataclass(frozen=True, slots=True)
class Rule:
    resource: str  # as written in the config
    prefix: str  # the store keys it covers
    chain: ciphers.Chain


@dataclass(frozen=True, slots=True)
class EncryptionConfig:
    source: Path
    rules: tuple[Rule, ...]


def load(path: str | os.PathLike[str]) -> EncryptionConfig:
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as e:
        raise ConfigError(f"cannot read encryption provider configuration {p}: "
                          f"{e.strerror or e}") from None
    if not text.strip():
        raise ConfigError(f"encryption provider configuration file {p} is empty")
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ConfigError(f"{p}: not YAML or JSON: {e}") from None
    return parse(doc, p)


def parse(doc: Any, source: Path) -> EncryptionConfig:
    problems: list[str] = []
    rules = _rules(doc, problems)
    if problems:
        raise ConfigError(f"{source}: " + "; ".join(problems))
    return EncryptionConfig(source, tuple(rules))


def _rules(doc: Any, problems: list[str]) -> list[Rule]:
    if not isinstance(doc, dict):
        problems.append(f"expected a {KIND} object")
        return []
    if doc.get("apiVersion") != API_VERSION or doc.get("kind") != KIND:
        problems.append(f"expected apiVersion {API_VERSION} and kind {KIND}, got "
                        f"{doc.get('apiVersion')!r} and {doc.get('kind')!r}")
        return []
    entries = doc.get("resources")
    if not isinstance(entries, list) or not entries:
        problems.append("resources: at least one resources is required")
        return []
    rules: list[Rule] = []
    for i, entry in enumerate(entries):
        path = f"resources[{i}]"
        if not isinstance(entry, dict):
            problems.append(f"{path}: expected an object with resources and providers")
            continue
        names = entry.get("resources")
        if not isinstance(names, list) or not names:
            problems.append(f"{path}.resources: at least one resource is required")
            names = []
        prefixes = [_prefix(n, f"{path}.resources[{j}]", problems) for j, n in enumerate(names)]
        _check_overlap(names, f"{path}.resources", problems)
        chain = _chain(entry.get("providers"), f"{path}.providers", problems)
        if chain is None:
            continue
        rules += [Rule(str(n), p, chain) for n, p in zip(names, prefixes) if p]
    return rules


def _prefix(name: Any, path: str, problems: list[str]) -> str:
    """The store key prefix a resource name covers ("" when it is refused)."""
    if not isinstance(name, str) or not name:
        problems.append(f"{path}: expected a resource name")
        return ""
    if name != name.lower():
        problems.append(f"{path}: {name!r}: resource name should not contain capital letters")
        return ""
    if name == "*":
        problems.append(f"{path}: use '*.' to encrypt all the resources from core API group "
                        "or '*.*' to encrypt all resources")
        return ""
    if name in _NOT_REST:
        problems.append(f"{path}: {name!r}: resources which do not have REST API/s cannot be "
                        "encrypted")
        return ""
    resource, _, group = name.partition(".")
    if group == "events.k8s.io":
        problems.append(f"{path}: '*.events.k8s.io' objects are stored using the 'events' API "
                        "group; use 'events' instead")
        return ""
    if group == "extensions":
        problems.append(f"{path}: 'extensions' group has been removed and cannot be used for "
                        "encryption")
        return ""
    if group == "*" and resource != "*":
        problems.append(f"{path}: {name!r}: encrypting the same resource across groups is not "
                        "supported")
        return ""
    if resource == "*" and group == "*":
        return "/registry/"
    if resource == "*":
        return f"/registry/{group or 'core'}/"
    return f"/registry/{group or 'core'}/{resource}/"


def _check_overlap(names: list[Any], path: str, problems: list[str]) -> None:
    seen = [n for n in names if isinstance(n, str)]
    if len(set(seen)) != len(seen):
        problems.append(f"{path}: the same resource cannot be specified multiple times")
    groups = [n.partition(".")[2] for n in seen]
    wild = [n.partition(".")[2] for n in seen if n.startswith("*.")]
    if ("*.*" in seen and len(seen) > 1) or any(groups.count(g) > 1 for g in wild):
        problems.append(f"{path}: using overlapping resources such as 'secrets' and '*.' in the "
                        "same resource list is not allowed as they will be masked")


def _chain(providers: Any, path: str, problems: list[str]) -> ciphers.Chain | None:
    if not isinstance(providers, list) or not providers:
        problems.append(f"{path}: at least one provider is required")
        return None
    entries: list[ciphers.Entry] = []
    before = len(problems)
    for i, provider in enumerate(providers):
        where = f"{path}[{i}]"
        if not isinstance(provider, dict) or len(provider) != 1:
            problems.append(f"{where}: expected exactly one of aescbc, aesgcm, secretbox, "
                            "identity (split several providers into list elements)")
            continue
        (kind, body), = provider.items()
        if kind == "identity":
            entries.append(ciphers.identity())
        elif kind == "kms":
            problems.append(f"{where}: kms providers are not supported by pinnace; use aescbc, "
                            "aesgcm or secretbox")
        elif kind in _PROVIDERS:
            entries += _keys(kind, body, f"{where}.{kind}", problems)
        else:
            problems.append(f"{where}: unknown provider {kind!r}: expected aescbc, aesgcm, "
                            "secretbox or identity")
    return ciphers.Chain(entries) if entries and len(problems) == before else None


def _keys(kind: str, body: Any, path: str, problems: list[str]) -> list[ciphers.Entry]:
    sizes, make = _PROVIDERS[kind]
    keys = body.get("keys") if isinstance(body, dict) else None
    if not isinstance(keys, list) or not keys:
        problems.append(f"{path}.keys: at least one key is required")
        return []
    out = []
    for i, key in enumerate(keys):
        where = f"{path}.keys[{i}]"
        if not isinstance(key, dict):
            problems.append(f"{where}: expected name and secret")
            continue
        name, secret = key.get("name"), key.get("secret")
        if not isinstance(name, str) or not name:
            problems.append(f"{where}.name: name is a mandatory field for a key")
            continue
        if not isinstance(secret, str) or not secret:
            problems.append(f"{where}.secret: secret is a mandatory field for a key")
            continue
        try:
            raw = base64.b64decode(secret, validate=True)
        except (binascii.Error, ValueError):
            problems.append(f"{where}.secret: secrets must be base64 encoded")
            continue
        if len(raw) not in sizes:
            problems.append(f"{where}.secret: secret is not of the expected length, got "
                            f"{len(raw)}, expected one of {list(sizes)}")
            continue
        try:
            out.append(make(name, raw))
        except ImportError:
            problems.append(f"{path}: the secretbox provider needs PyNaCl (pip install pynacl)")
            return []
    return out


def default_path(data_dir: Path) -> Path:
    return data_dir / DEFAULT_NAME


def write_default(path: Path) -> bool:
    """Write the configuration a new data dir gets, unless one is there: a
    fresh random 32-byte aescbc key for Secrets, and identity to read what
    was stored before. True when written. Safe when several processes try at
    once (the first link wins; the others read it)."""
    if path.exists():
        return False
    key = base64.b64encode(secrets.token_bytes(32)).decode()
    text = (
        "# Written by pinnace for this data dir: Secrets are encrypted at rest with key1\n"
        "# (AES-CBC, 32-byte key). Without this file the Secrets in state.db cannot be\n"
        "# read; with it anyone can read them: back it up, apart from state.db. To\n"
        "# rotate, put a new key first, restart, and run `pinnace secrets reencrypt`.\n"
        + yaml.safe_dump({
            "apiVersion": API_VERSION, "kind": KIND,
            "resources": [{"resources": ["secrets"],
                           "providers": [{"aescbc": {"keys": [{"name": "key1", "secret": key}]}},
                                         {"identity": {}}]}],
        }, sort_keys=False))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.link(tmp, path)
        return True
    except FileExistsError:
        return False
    finally:
        tmp.unlink(missing_ok=True)


def for_server(flag: str, data_dir: Path, datastore: str) -> EncryptionConfig | None:
    """What the API server encrypts with: the file given, else its data
    dir's own (written on first start); nothing for the memory datastore,
    which keeps nothing at rest."""
    if flag:
        return load(flag)
    if datastore.lower().startswith("memory"):
        return None
    path = default_path(data_dir)
    write_default(path)
    return load(path)
