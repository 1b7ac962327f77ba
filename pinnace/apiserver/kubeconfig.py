"""Writing the admin kubeconfig that `pinnace server` hands to its user."""

from __future__ import annotations

import base64
import os
from pathlib import Path

import yaml

from pinnace.certfiles import PKI


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
                         name: str = "pinnace") -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": name, "cluster": {
            "server": server_url, "certificate-authority-data": _b64(pki.ca_cert)}}],
        "users": [{"name": user, "user": {
            "client-certificate-data": _b64(cert), "client-key-data": _b64(key)}}],
        "contexts": [{"name": name, "context": {"cluster": name, "user": user}}],
        "current-context": name,
    }


def write_kubeconfig(path: Path, config: dict) -> None:
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        yaml.safe_dump(config, f, sort_keys=False)
    os.replace(tmp, path)
