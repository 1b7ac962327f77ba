"""Where the published root CA comes from, which namespaces get defaults, and
what the token controller needs and which Secrets it counts as an account's."""

from __future__ import annotations

from pathlib import Path

import pytest

from pinnace.client import Client, ClientConfig, InformerFactory
from pinnace.controllers.base import Context
from pinnace.controllers.serviceaccount import namespace_active, root_ca_pem

PEM = "-----BEGIN CERTIFICATE-----\nZm9v\n-----END CERTIFICATE-----\n"


def ctx(ca: bytes | None, **options: object) -> Context:
    client = Client(ClientConfig(server="http://127.0.0.1:1", ca_data=ca))
    return Context(client, InformerFactory(client), dict(options))


def test_root_ca_from_file_option_wins(tmp_path: Path) -> None:
    path = tmp_path / "ca.pem"
    path.write_text(PEM)
    assert root_ca_pem(ctx(b"other", root_ca_file=str(path))) == PEM


def test_root_ca_from_client_config() -> None:
    assert root_ca_pem(ctx(PEM.encode())) == PEM
    with pytest.raises(ValueError):
        root_ca_pem(ctx(None))


def test_only_active_namespaces_get_defaults() -> None:
    assert namespace_active({"metadata": {"name": "a"}, "status": {"phase": "Active"}})
    assert namespace_active({"metadata": {"name": "a"}})
    assert not namespace_active({"metadata": {"name": "a"}, "status": {"phase": "Terminating"}})
    assert not namespace_active({"metadata": {"name": "a",
                                              "deletionTimestamp": "2030-01-01T00:00:00Z"}})
    assert not namespace_active(None)


def test_token_controller_needs_the_signing_key(tmp_path: Path) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    from pinnace.controllers.serviceaccounttoken import TokensController

    assert TokensController(ctx(PEM.encode())).secrets is None  # disabled, follows nothing
    missing = TokensController(ctx(PEM.encode(), service_account_private_key_file=str(
        tmp_path / "missing.key")))
    assert missing.secrets is None and missing._token_issuer() is None
    key = tmp_path / "sa.key"
    key.write_bytes(ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    c = TokensController(ctx(PEM.encode(), service_account_private_key_file=str(key)))
    assert c._token_issuer() is not None and c.secrets is not None
    (tmp_path / "bad.key").write_text("not a key")
    bad = TokensController(ctx(PEM.encode(), service_account_private_key_file=str(
        tmp_path / "bad.key")))
    assert bad._token_issuer() is None  # said so in the log, at the first token it would make
    assert c.root_ca == PEM.encode()
    assert not (tmp_path / "missing.key").exists()  # never made up


def test_which_secrets_are_an_accounts_tokens() -> None:
    from pinnace.controllers.serviceaccounttoken import is_token_for

    def secret(type_: str = "kubernetes.io/service-account-token", ns: str = "a",
               **annotations: str) -> dict:
        return {"type": type_, "metadata": {"name": "s", "namespace": ns,
                                            "annotations": annotations}}
    name = "kubernetes.io/service-account.name"
    uid = "kubernetes.io/service-account.uid"
    assert is_token_for(secret(**{name: "robot"}), "a", "robot", "u1")
    assert is_token_for(secret(**{name: "robot", uid: "u1"}), "a", "robot", "u1")
    assert not is_token_for(secret(**{name: "robot", uid: "u0"}), "a", "robot", "u1")
    assert not is_token_for(secret(**{name: "other"}), "a", "robot", "u1")
    assert not is_token_for(secret(ns="b", **{name: "robot"}), "a", "robot", "u1")
    assert not is_token_for(secret("Opaque", **{name: "robot"}), "a", "robot", "u1")
