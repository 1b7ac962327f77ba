"""`pinnace secrets reencrypt`: rewrite every Secret under the current write
key, after a key rotation (upstream's recipe is
`kubectl get secrets -A -o json | kubectl replace -f -`).

Each Secret is written back unchanged through the API server. The server
skips writes that change nothing, except for a value it read with a key that
is no longer the write key (KeyValue.stale): that one it stores again, under
the write key. So the Secrets whose resourceVersion moved are exactly those
that were re-encrypted, and running the command twice rewrites nothing the
second time.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

CONCURRENCY = 8  # Secrets in flight: enough to hide round trips, gentle on the server


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add `secrets` and its subcommands to the `pinnace` command's subparsers."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "secrets", help="manage Secrets at rest (reencrypt)",
        description="Manage how Secrets are stored (docs/security.md: encryption at rest).")
    sub = parser.add_subparsers(dest="secrets_command", required=True)
    reencrypt = sub.add_parser(
        "reencrypt", help="rewrite every Secret under the current write key (after putting a "
        "new key first in the encryption config and restarting the server)")
    reencrypt.add_argument("--kubeconfig", default=None,
                           help="how to reach the API server (default: $KUBECONFIG, else the "
                                "server's DATA/kubeconfig.yaml, else ~/.kube/config)")
    reencrypt.add_argument("--data-dir", type=Path, default=None,
                           help="the data dir of `pinnace server`, to find its admin kubeconfig")
    return parser


@dataclass
class Tally:
    total: int = 0
    rewritten: int = 0
    current: int = 0  # already under the write key: the server wrote nothing
    gone: int = 0  # deleted while we went
    failed: list[str] = field(default_factory=list)

    @property
    def done(self) -> int:
        return self.rewritten + self.current + self.gone + len(self.failed)


def run(args: argparse.Namespace, out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> int:
    """Run the `secrets` subcommand; returns the exit code."""
    from pinnace.client import ApiError, load_kubeconfig

    from .token import kubeconfig_for

    # --data-dir names a server: its admin kubeconfig then wins over $KUBECONFIG.
    admin = args.data_dir / "kubeconfig.yaml" if args.data_dir and not args.kubeconfig else None
    try:
        config = load_kubeconfig(str(admin) if admin else kubeconfig_for(args))
    except (OSError, ValueError, KeyError) as e:
        print(f"pinnace secrets: no kubeconfig to reach the API server ({e}); pass --kubeconfig",
              file=err)
        return 1
    try:
        return asyncio.run(reencrypt(config, out, err))
    except ApiError as e:
        print(f"pinnace secrets: {e.status.get('message') or e}", file=err)
        return 1
    except OSError as e:
        print(f"pinnace secrets: cannot reach the API server: {e}", file=err)
        return 1


async def reencrypt(config: Any, out: TextIO, err: TextIO) -> int:
    from pinnace.client import Client

    started = time.monotonic()
    async with Client(config) as client:
        secrets = client.resource("v1", "secrets")
        items = (await secrets.list())["items"]
        tally = Tally(total=len(items))
        progress = _Progress(err, tally)
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        for item in items:
            queue.put_nowait(item)

        async def worker() -> None:
            while not queue.empty():
                await _rewrite(secrets, queue.get_nowait(), tally, err)
                progress.show()

        await asyncio.gather(*(worker() for _ in range(min(CONCURRENCY, len(items)) or 1)))
        progress.finish()
    seconds = time.monotonic() - started
    print(f"{tally.total} secrets: {tally.rewritten} re-encrypted, {tally.current} already "
          f"under the current key, {tally.gone} deleted meanwhile, {len(tally.failed)} failed "
          f"({seconds:.1f}s)", file=out)
    return 1 if tally.failed else 0


async def _rewrite(secrets: Any, obj: dict[str, Any], tally: Tally, err: TextIO) -> None:
    from pinnace.client import ApiError

    meta = obj["metadata"]
    ns, name = meta.get("namespace"), meta["name"]
    for _attempt in range(8):
        before = obj["metadata"].get("resourceVersion")
        # List items carry no kind; a PUT body must.
        obj.update(apiVersion="v1", kind="Secret")
        try:
            written = await secrets.replace(obj, namespace=ns)
        except ApiError as e:
            if e.not_found:
                tally.gone += 1
                return
            if not e.conflict:
                tally.failed.append(f"{ns}/{name}")
                print(f"pinnace secrets: {ns}/{name}: {e.status.get('message') or e}",
                      file=err)
                return
            try:  # changed since the list: write back what is there now
                obj = await secrets.get(name, namespace=ns)
            except ApiError as again:
                if again.not_found:
                    tally.gone += 1
                    return
                raise
            continue
        if written["metadata"].get("resourceVersion") != before:
            tally.rewritten += 1
        else:
            tally.current += 1
        return
    tally.failed.append(f"{ns}/{name}")
    print(f"pinnace secrets: {ns}/{name}: kept changing; run the command again", file=err)


class _Progress:
    """One self-rewriting line on a terminal; a line per tenth elsewhere."""

    def __init__(self, stream: TextIO, tally: Tally):
        self.stream = stream
        self.tally = tally
        self.tty = stream.isatty()
        self.last = 0.0
        self.tenth = 0

    def show(self) -> None:
        t = self.tally
        if self.tty:
            now = time.monotonic()
            if now - self.last >= 0.1 or t.done == t.total:
                self.last = now
                self.stream.write(f"\rre-encrypting secrets: {t.done}/{t.total} "
                                  f"({t.rewritten} rewritten)")
                self.stream.flush()
        elif t.total and t.done * 10 // t.total > self.tenth:
            self.tenth = t.done * 10 // t.total
            print(f"re-encrypting secrets: {t.done}/{t.total}", file=self.stream)

    def finish(self) -> None:
        if self.tty and self.tally.total:
            self.stream.write("\n")
            self.stream.flush()
