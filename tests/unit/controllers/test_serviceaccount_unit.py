"""Where the published root CA comes from, and which namespaces get defaults."""

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
