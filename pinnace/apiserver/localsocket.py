"""How the components `pinnace server` runs reach its API server: a Unix
socket in the data dir, each component proving who it is with a token of
its own (docs/decisions/0019-components-local-socket.md).

The components are the API server's most frequent clients and run on its
machine. Over TLS every new connection costs a handshake (~4 ms of the
client's CPU and ~2.5 ms of the server's with OpenSSL 3) and every request
~0.15 ms on each end; over HTTP/1.1 a burst of
requests opens a connection per request in flight, so the first burst of
pod starts paid a dozen handshakes. Over the socket neither exists.

The socket file is the server user's alone (0600), and a request over it
is authenticated as any other: a client with no credential is anonymous.
There are no client certificates on a Unix socket, so each component has
a bearer token, made once and kept with the keys in DATA/tls (0600), as
its client key is; its kubeconfig carries the token and names the socket
in an extension that kubectl and client-go ignore (they keep using the
HTTPS URL and the certificate beside it)."""

from __future__ import annotations

import os
import secrets
import socket
from pathlib import Path

from pinnace.certfiles import write_pem

from .authn import User

COMPONENT_USERS = {"controller-manager": ("system:kube-controller-manager", []),
                   "scheduler": ("system:kube-scheduler", []),
                   "dns": ("system:pinnace-dns", []),
                   # The node agent `pinnace server` runs on this machine, as a kubelet is known.
                   "agent": (f"system:node:{socket.gethostname().lower()}", ["system:nodes"])}

# sockaddr_un holds 108 bytes with the final NUL; a longer data dir gets no socket.
_MAX_PATH = 107


def socket_path(data_dir: Path) -> Path | None:
    """Where the API server listens for its components, None when the data
    dir's path is too long for a Unix socket (they use HTTPS then)."""
    path = data_dir.absolute() / "apiserver.sock"
    return path if len(os.fsencode(path)) <= _MAX_PATH else None


def listen(data_dir: Path) -> socket.socket | None:
    """The components' socket, listening (None: the data dir's path is too
    long). A socket file left by a server killed before it could remove
    it is replaced; anything else at that path is not."""
    path = socket_path(data_dir)
    if path is None:
        return None
    if path.is_socket():
        path.unlink()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(str(path))
        os.chmod(path, 0o600)
        sock.listen(1024)
    except OSError:
        sock.close()
        raise
    return sock


def ensure_tokens(tls_dir: Path) -> dict[str, str]:
    """Each component's token (component -> token), made on first use; an
    API server started with several workers makes them before its workers
    start, so all of them read the same ones."""
    tokens = {}
    for component in COMPONENT_USERS:
        path = tls_dir / f"{component}.token"
        try:
            token = path.read_text().strip()
        except FileNotFoundError:
            token = ""
        if not token:
            token = secrets.token_urlsafe(32)
            write_pem(path, f"{token}\n".encode(), private=True)
        tokens[component] = token
    return tokens


def token_users(tokens: dict[str, str]) -> dict[str, User]:
    """The users the components' tokens authenticate as (their certificates' users)."""
    users = {}
    for component, token in tokens.items():
        name, groups = COMPONENT_USERS[component]
        users[token] = User(name, "", (*groups, "system:authenticated"))
    return users
