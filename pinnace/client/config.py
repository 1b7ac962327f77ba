"""Where a component finds the API server and how it proves who it is:
a kubeconfig file (the current context, or a named one) or, inside a pod,
the service account's token and CA."""

from __future__ import annotations

import base64
import os
import ssl
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

SA_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")
# A kubeconfig cluster extension naming a Unix socket the API server listens
# on for the components `pinnace server` runs (apiserver/localsocket.py).
# kubectl and client-go ignore it and use the cluster's HTTPS URL.
SOCKET_EXTENSION = "pinnace.io/local-socket"


@dataclass
class ClientConfig:
    server: str
    ca_data: bytes | None = None
    cert_data: bytes | None = None
    key_data: bytes | None = None
    token: str | None = None
    token_file: str | None = None
    insecure: bool = False
    user_agent: str = "pinnace"
    # Reach the API server over this Unix socket instead of ``server`` (with
    # the bearer token: a socket carries no client certificate).
    unix_socket: str | None = None

    def ssl_context(self) -> ssl.SSLContext | bool:
        if not self.server.startswith("https"):
            return False
        # The system's CA bundle is read only when the kubeconfig names no CA
        # (loading it costs more than the rest of a client's start).
        if self.insecure:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        elif self.ca_data:
            ctx = ssl.create_default_context(cadata=self.ca_data.decode())
        else:
            ctx = ssl.create_default_context()
        if self.cert_data and self.key_data:
            # ssl only loads a key pair from files: write them privately, load, remove.
            with tempfile.TemporaryDirectory() as d:
                cert, key = Path(d) / "c.pem", Path(d) / "k.pem"
                cert.write_bytes(self.cert_data)
                key.write_bytes(self.key_data)
                os.chmod(key, 0o600)
                ctx.load_cert_chain(str(cert), str(key))
        return ctx

    def bearer(self) -> str | None:
        if self.token_file:
            return Path(self.token_file).read_text().strip()
        return self.token


def _data(entry: dict[str, Any], key: str, base: Path) -> bytes | None:
    if entry.get(f"{key}-data"):
        return base64.b64decode(entry[f"{key}-data"])
    if entry.get(key):
        path = Path(entry[key])
        return (path if path.is_absolute() else base / path).read_bytes()
    return None


def _socket(cluster: dict[str, Any]) -> str | None:
    """The socket the cluster's extension names, if it is there: a
    kubeconfig taken to another machine, or read before the API server is
    up, leaves the client on the HTTPS URL."""
    for ext in cluster.get("extensions") or ():
        if isinstance(ext, dict) and ext.get("name") == SOCKET_EXTENSION:
            path = (ext.get("extension") or {}).get("path")
            return str(path) if path and Path(path).is_socket() else None
    return None


def load_kubeconfig(path: str | os.PathLike[str] | None = None,
                    context: str | None = None) -> ClientConfig:
    """The config of ``context`` (default: current-context) in ``path``
    (default: $KUBECONFIG, then ~/.kube/config)."""
    p = Path(path or os.environ.get("KUBECONFIG", "").split(os.pathsep)[0]
             or Path.home() / ".kube" / "config")
    doc = yaml.safe_load(p.read_text()) or {}
    name = context or doc.get("current-context")
    ctx = next((c["context"] for c in doc.get("contexts", []) if c["name"] == name), None)
    if ctx is None:
        raise ValueError(f"kubeconfig {p}: no context {name!r}")
    cluster = next(c["cluster"] for c in doc.get("clusters", []) if c["name"] == ctx["cluster"])
    user: dict[str, Any] = next(
        (u["user"] for u in doc.get("users", []) if u["name"] == ctx.get("user")), {})
    base = p.parent
    return ClientConfig(
        server=cluster["server"].rstrip("/"),
        ca_data=_data(cluster, "certificate-authority", base),
        cert_data=_data(user, "client-certificate", base),
        key_data=_data(user, "client-key", base),
        token=user.get("token"),
        token_file=user.get("tokenFile"),
        insecure=bool(cluster.get("insecure-skip-tls-verify")),
        unix_socket=_socket(cluster) if user.get("token") or user.get("tokenFile") else None,
    )


def in_cluster_config() -> ClientConfig:
    host, port = os.environ["KUBERNETES_SERVICE_HOST"], os.environ["KUBERNETES_SERVICE_PORT"]
    if ":" in host:
        host = f"[{host}]"
    return ClientConfig(server=f"https://{host}:{port}", ca_data=(SA_DIR / "ca.crt").read_bytes(),
                        token_file=str(SA_DIR / "token"))


def auto_config(kubeconfig: str | None = None) -> ClientConfig:
    """A kubeconfig when one is given or found, else the in-cluster config."""
    if kubeconfig or os.environ.get("KUBECONFIG") or not os.environ.get("KUBERNETES_SERVICE_HOST"):
        return load_kubeconfig(kubeconfig)
    return in_cluster_config()
