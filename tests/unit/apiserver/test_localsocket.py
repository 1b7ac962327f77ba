from __future__ import annotations

import socket
import stat
from pathlib import Path

import yaml

from pinnace.apiserver import localsocket
from pinnace.client.config import load_kubeconfig


def test_tokens_are_made_once_private_and_name_the_component_users(tmp_path: Path) -> None:
    first = localsocket.ensure_tokens(tmp_path)
    assert set(first) == set(localsocket.COMPONENT_USERS)
    for component in first:
        assert stat.S_IMODE((tmp_path / f"{component}.token").stat().st_mode) == 0o600
    assert localsocket.ensure_tokens(tmp_path) == first  # kept across restarts
    assert len(set(first.values())) == len(first)
    users = localsocket.token_users(first)
    assert users[first["scheduler"]].name == "system:kube-scheduler"
    agent = users[first["agent"]]
    assert agent.name.startswith("system:node:")
    assert set(agent.groups) == {"system:nodes", "system:authenticated"}


def test_a_data_dir_too_long_for_a_unix_socket_gets_none(tmp_path: Path) -> None:
    assert localsocket.socket_path(tmp_path) == tmp_path / "apiserver.sock"
    assert localsocket.socket_path(tmp_path / ("d" * 120)) is None


def _kubeconfig(tmp_path: Path, user: dict, sock: Path) -> Path:
    path = tmp_path / "kubeconfig"
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "c",
        "clusters": [{"name": "c", "cluster": {
            "server": "https://127.0.0.1:6443",
            "extensions": [{"name": "pinnace.io/local-socket", "extension": {
                "apiVersion": "pinnace.io/v1", "kind": "LocalSocket",
                "path": str(sock)}}]}}],
        "users": [{"name": "u", "user": user}],
        "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}]}))
    return path


def test_the_client_takes_the_socket_only_with_a_token_and_where_it_is(tmp_path: Path) -> None:
    sock = tmp_path / "apiserver.sock"
    with socket.socket(socket.AF_UNIX) as listening:
        listening.bind(str(sock))
        with_token = load_kubeconfig(_kubeconfig(tmp_path, {"token": "t"}, sock))
        assert with_token.unix_socket == str(sock)
        assert with_token.server == "https://127.0.0.1:6443"
        # A socket carries no client certificate: without a token, HTTPS.
        assert load_kubeconfig(_kubeconfig(tmp_path, {}, sock)).unix_socket is None
    # Taken to another machine, or read before the server is up: HTTPS.
    sock.unlink()
    assert load_kubeconfig(_kubeconfig(tmp_path, {"token": "t"}, sock)).unix_socket is None
