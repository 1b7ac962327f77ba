"""Writing the kubeconfigs `pinnace server` hands to its user and to its components."""

from __future__ import annotations

import base64
import os
from pathlib import Path
from typing import Any

import yaml

from pinnace.certfiles import PKI
from pinnace.client.config import SOCKET_EXTENSION


def _b64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode()


def admin_kubeconfig(pki: PKI, server_url: str, name: str = "pinnace") -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": name, "cluster": {
            "server": server_url, "certificate-authority-data": _b64(pki.ca_cert)}}],
        "users": [{"name": "admin", "user": {
            "client-certificate-data": _b64(pki.admin_cert),
            "client-key-data": _b64(pki.admin_key)}}],
        "contexts": [{"name": name, "context": {"cluster": name, "user": "admin"}}],
        "current-context": name,
        "preferences": {},
    }


def component_kubeconfig(pki: PKI, server_url: str, user: str, cert: Path, key: Path,
                         name: str = "pinnace", *, token: str | None = None,
                         unix_socket: Path | None = None) -> dict:
    """``token`` and ``unix_socket``: how the component reaches the API
    server on its own machine (apiserver/localsocket.py)."""
    cluster: dict[str, Any] = {"server": server_url,
                               "certificate-authority-data": _b64(pki.ca_cert)}
    if unix_socket is not None and token:
        # client-go decodes an extension as an object: it has a kind.
        cluster["extensions"] = [{"name": SOCKET_EXTENSION, "extension": {
            "apiVersion": "pinnace.io/v1", "kind": "LocalSocket", "path": str(unix_socket)}}]
    creds = {"client-certificate-data": _b64(cert), "client-key-data": _b64(key),
             **({"token": token} if token else {})}
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": name, "cluster": cluster}],
        "users": [{"name": user, "user": creds}],
        "contexts": [{"name": name, "context": {"cluster": name, "user": user}}],
        "current-context": name,
    }


def write_kubeconfig(path: Path, config: dict) -> None:
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        yaml.safe_dump(config, f, sort_keys=False)
    os.replace(tmp, path)
