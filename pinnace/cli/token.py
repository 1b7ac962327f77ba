"""`pinnace token create|list|delete`: the bootstrap tokens nodes join with,
as `kubeadm token` and `k3s token` manage them (Secrets of type
bootstrap.kubernetes.io/token in kube-system; see
pinnace/apiserver/bootstraptoken.py).

The commands talk to the API server with a kubeconfig: --kubeconfig, else
$KUBECONFIG, else the admin kubeconfig `pinnace server` writes to its data
dir, else ~/.kube/config.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import sys
from pathlib import Path
from typing import Any, TextIO

from pinnace.apiserver import bootstraptoken as bt


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add `token` and its subcommands to the `pinnace` command's subparsers."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "token", help="manage the tokens nodes join with (create, list, delete)",
        description="Manage bootstrap tokens: `pinnace agent --server URL --token TOKEN` joins "
                    "a node with one.")
    parser.add_argument("--kubeconfig", default=None,
                        help="how to reach the API server (default: $KUBECONFIG, else the "
                             "server's DATA/kubeconfig.yaml, else ~/.kube/config)")
    parser.add_argument("--data-dir", type=Path, default=None,
                        help="the data dir of `pinnace server`, to find its admin kubeconfig")
    sub = parser.add_subparsers(dest="token_command", required=True)
    create = sub.add_parser("create", help="create a token and print the join token")
    create.add_argument("--ttl", default="24h",
                        help="how long the token is valid, e.g. 30m, 24h, 1h30m; 0: forever "
                             "(default 24h)")
    create.add_argument("--description", default="", help="what the token is for")
    create.add_argument("--groups", default=bt.NODE_GROUP,
                        help="comma-separated extra groups, each system:bootstrappers:... "
                             f"(default {bt.NODE_GROUP})")
    sub.add_parser("list", help="list the tokens")
    delete = sub.add_parser("delete", help="delete tokens")
    delete.add_argument("tokens", nargs="+", metavar="ID",
                        help="token id, id.secret, or the whole join token")
    return parser


def kubeconfig_for(args: argparse.Namespace) -> str | None:
    """The kubeconfig path to use (None: ~/.kube/config)."""
    if args.kubeconfig:
        return str(args.kubeconfig)
    if os.environ.get("KUBECONFIG"):
        return None  # load_kubeconfig reads it
    from .main import default_data_dir  # here: main imports this module

    admin = (args.data_dir or default_data_dir()) / "kubeconfig.yaml"
    return str(admin) if admin.exists() else None


def run(args: argparse.Namespace, out: TextIO = sys.stdout) -> int:
    """Run the `token` subcommand; returns the exit code."""
    from pinnace.client import ApiError, load_kubeconfig

    try:
        config = load_kubeconfig(kubeconfig_for(args))
    except (OSError, ValueError, KeyError) as e:
        print(f"pinnace token: no kubeconfig to reach the API server ({e}); pass --kubeconfig",
              file=sys.stderr)
        return 1
    try:
        if args.token_command == "create":
            return asyncio.run(_create(config, args, out))
        if args.token_command == "list":
            return asyncio.run(_list(config, out))
        if args.token_command == "delete":
            return asyncio.run(_delete(config, args.tokens, out))
    except ApiError as e:
        print(f"pinnace token: {e.status.get('message') or e}", file=sys.stderr)
        return 1
    except OSError as e:
        print(f"pinnace token: cannot reach the API server: {e}", file=sys.stderr)
        return 1
    return 2


async def _create(config: Any, args: argparse.Namespace, out: TextIO) -> int:
    from pinnace.client import ApiError, Client

    try:
        ttl = bt.parse_duration(args.ttl)
    except ValueError as e:
        print(f"pinnace token: --ttl: {e}", file=sys.stderr)
        return 1
    groups = tuple(g.strip() for g in args.groups.split(",") if g.strip())
    if bt.extra_groups({"auth-extra-groups": ",".join(groups)}) is None:
        print("pinnace token: --groups: each group must look like system:bootstrappers:NAME",
              file=sys.stderr)
        return 1
    expires = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=ttl) if ttl > 0 else None
    async with Client(config) as client:
        ca = config.ca_data or await _cluster_ca(client)
        secrets = client.resource("v1", "secrets")
        for _attempt in range(5):
            token_id, secret = bt.generate()
            try:
                await secrets.create(bt.token_secret(token_id, secret, expires=expires,
                                                     description=args.description,
                                                     groups=groups), namespace=bt.NAMESPACE)
                break
            except ApiError as e:
                if not e.conflict:  # a token with this id exists: draw another
                    raise
        else:
            print("pinnace token: could not find a free token id", file=sys.stderr)
            return 1
    print(bt.JoinToken(bt.ca_hash(ca), token_id, secret), file=out)
    return 0


async def _cluster_ca(client: Any) -> bytes:
    """The CA in kube-public/cluster-info, for a kubeconfig that carries none."""
    import base64

    import yaml

    cm = await client.resource("v1", "configmaps").get("cluster-info", namespace="kube-public")
    kubeconfig = yaml.safe_load(cm["data"]["kubeconfig"])
    return base64.b64decode(kubeconfig["clusters"][0]["cluster"]["certificate-authority-data"])


def token_rows(secrets: list[dict[str, Any]], now: dt.datetime) -> list[list[str]]:
    """The `kubeadm token list` rows of these Secrets (others are skipped)."""
    rows = []
    for s in secrets:
        if s.get("type") != bt.SECRET_TYPE:
            continue
        data = bt.secret_data(s)
        token_id = data.get("token-id", "")
        if s["metadata"].get("name") != bt.secret_name(token_id):
            continue
        expires = bt.expiration(data)
        ttl = "<forever>" if expires is None else bt.short_duration(
            (expires - now).total_seconds())
        usages = [k[len("usage-bootstrap-"):] for k, v in sorted(data.items())
                  if k.startswith("usage-bootstrap-") and v == "true"]
        rows.append([token_id, ttl, "<never>" if expires is None else bt.rfc3339(expires),
                     ",".join(usages) or "<none>", data.get("description") or "<none>",
                     data.get("auth-extra-groups") or "<none>"])
    return rows


def format_table(header: list[str], rows: list[list[str]]) -> str:
    """Columns padded as kubectl and kubeadm print them (three spaces apart)."""
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    return "".join("   ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() + "\n"
                   for r in [header, *rows])


async def _list(config: Any, out: TextIO) -> int:
    from pinnace.client import Client

    async with Client(config) as client:
        found = await client.resource("v1", "secrets").list(namespace=bt.NAMESPACE)
    rows = token_rows(found.get("items") or [], dt.datetime.now(dt.UTC))
    out.write(format_table(["TOKEN ID", "TTL", "EXPIRES", "USAGES", "DESCRIPTION",
                            "EXTRA GROUPS"], rows))
    return 0


async def _delete(config: Any, tokens: list[str], out: TextIO) -> int:
    from pinnace.client import ApiError, Client

    code = 0
    async with Client(config) as client:
        secrets = client.resource("v1", "secrets")
        for text in tokens:
            try:
                token_id = bt.token_id_of(text)
            except ValueError as e:
                print(f"pinnace token: {e}", file=sys.stderr)
                code = 1
                continue
            try:
                await secrets.delete(bt.secret_name(token_id), namespace=bt.NAMESPACE)
            except ApiError as e:
                if not e.not_found:
                    raise
                print(f'pinnace token: bootstrap token "{token_id}" not found', file=sys.stderr)
                code = 1
                continue
            print(f'bootstrap token "{token_id}" deleted', file=out)
    return code
