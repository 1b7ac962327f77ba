"""`pinnace image`: pull, import, list and remove the images of this node's agent.

The commands work on the same store the agent uses (DATA/agent/images), so an
image imported here is there for pods with imagePullPolicy IfNotPresent or
Never, as `ctr images import` is on a containerd node. The store locks its
index, so this is safe while the agent runs.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:  # the store (and aiohttp) load only when an image command runs
    from pinnace.kubelet.images import Image, ImageStore


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add `image` and its subcommands to the `pinnace` command's subparsers."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "image", help="manage this node's images (pull, import, ls, rm)",
        description="Manage the images of this node's agent.")
    parser.add_argument("--data-dir", type=Path, default=None,
                        help="the data dir `pinnace server` uses (default: /var/lib/pinnace as root, "
                             "else ~/.local/share/pinnace)")
    # The same option after the subcommand; SUPPRESS keeps it from hiding a value given before it.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--data-dir", type=Path, default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    sub = parser.add_subparsers(dest="image_command", required=True)
    pull = sub.add_parser("pull", parents=[common], help="pull an image from a registry")
    pull.add_argument("ref", help="image reference, e.g. busybox or localhost:5000/app:1")
    pull.add_argument("--insecure-registry", action="append", default=[], metavar="HOST:PORT",
                      help="reach this registry over plain http or unverified TLS (repeatable)")
    pull.add_argument("--creds", metavar="USER[:PASSWORD]", help="registry credentials")
    pull.add_argument("--platform", default="",
                      help="os/arch[/variant] to pick from multi-platform images (default: this host's)")
    imp = sub.add_parser("import", parents=[common],
                         help="load images from docker-archive or oci-archive tarballs or OCI layout dirs")
    imp.add_argument("files", nargs="+", type=Path)
    ls = sub.add_parser("ls", parents=[common], help="list images")
    ls.add_argument("-q", "--quiet", action="store_true", help="only print image ids")
    ls.add_argument("--digests", action="store_true", help="show repo digests")
    rm = sub.add_parser("rm", parents=[common], help="untag or remove images")
    rm.add_argument("refs", nargs="+", metavar="REF", help="tag, digest reference or image id (prefix)")
    return parser


def run(args: argparse.Namespace) -> int:
    """Run the `image` subcommand `args` were parsed for; returns the exit code."""
    data_dir = args.data_dir
    if data_dir is None:
        from .main import default_data_dir  # here, not at the top: main imports this module

        data_dir = default_data_dir()
    from pinnace.kubelet.images import ImageError, ImageStore, image_root

    store = ImageStore(image_root(Path(data_dir).resolve()))
    try:
        if args.image_command == "pull":
            return _pull(store, args)
        if args.image_command == "import":
            return _import(store, args.files)
        if args.image_command == "ls":
            _ls(store.list(), quiet=args.quiet, digests=args.digests)
            return 0
        if args.image_command == "rm":
            return _rm(store, args.refs)
    except ImageError as e:
        print(f"pinnace: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 2


def _pull(store: ImageStore, args: argparse.Namespace) -> int:
    auth = None
    if args.creds:
        user, _, password = args.creds.partition(":")
        auth = {"username": user, "password": password}
    from pinnace.kubelet.images import HOST_PLATFORM

    platform = tuple(args.platform.split("/")) if args.platform else HOST_PLATFORM
    bar = ProgressBar(sys.stderr)
    try:
        image = asyncio.run(store.pull(args.ref, auth=auth, insecure=set(args.insecure_registry),
                                       platform=platform, progress=bar))
    finally:
        bar.close()
    print(f"Image is up to date for {image.id}")
    return 0


def _import(store: ImageStore, files: list[Path]) -> int:
    for path in files:
        bar = ProgressBar(sys.stderr)
        try:
            images = store.import_archive(path, progress=bar)
        finally:
            bar.close()
        for image in images:
            for name in image.repo_tags or [image.id]:
                print(f"Loaded image: {name}")
    return 0


def _rm(store: ImageStore, refs: list[str]) -> int:
    status = 0
    for ref in refs:
        if store.remove(ref):
            print(f"Deleted: {ref}")
        else:
            print(f"pinnace: no such image: {ref}", file=sys.stderr)
            status = 1
    return status


def _ls(images: Sequence[Image], quiet: bool, digests: bool) -> None:
    """A table as `crictl images` prints it: one row per tag."""
    if quiet:
        for image in images:
            print(image.id)
        return
    rows = [["IMAGE", "TAG", *(["DIGEST"] if digests else []), "IMAGE ID", "SIZE"]]
    for image in images:
        digest = image.repo_digests[0].partition("@")[2][7:19] if image.repo_digests else "<none>"
        names = [(t.rpartition(":")[0], t.rpartition(":")[2]) for t in image.repo_tags]
        if not names:
            names = [(image.repo_digests[0].partition("@")[0] if image.repo_digests else "<none>", "<none>")]
        for repo, tag in names:
            rows.append([repo, tag, *([digest] if digests else []), image.id[7:19], human_size(image.size)])
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("   ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())


def human_size(n: float) -> str:
    """Decimal units with three significant digits, as crictl and docker print sizes (1.09MB)."""
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:.3g}{unit}"
        n /= 1000
    raise AssertionError("unreachable")


class ProgressBar:
    """The `progress` callback of ImageStore.pull and import_archive.

    On a terminal, one line redrawn in place (at most ten times a second);
    elsewhere (logs, CI) one line per finished layer.
    """

    def __init__(self, out: TextIO, width: int = 30) -> None:
        self.out, self.width = out, width
        self.tty = out.isatty()
        self.last = 0.0
        self.drawn = False

    def __call__(self, done: int, total: int, what: str) -> None:
        finished = what.endswith((" done", " exists"))
        if not self.tty:
            if finished:
                print(what, file=self.out, flush=True)
            return
        now = time.monotonic()
        if not finished and now - self.last < 0.1 and done < total:
            return
        self.last = now
        frac = done / total if total else 1.0
        filled = int(frac * self.width)
        bar = "=" * filled + (">" if filled < self.width else "") + " " * (self.width - filled - 1)
        line = f"{what[:32]:<32} [{bar[:self.width]}] {human_size(done)}/{human_size(total)}"
        self.out.write("\r" + line + "\x1b[K")
        self.out.flush()
        self.drawn = True

    def close(self) -> None:
        if self.drawn:
            self.out.write("\n")
            self.out.flush()
            self.drawn = False


def main(argv: list[str] | None = None) -> int:
    """`python -m pinnace.cli.image ...`: the same commands without the rest of `pinnace`."""
    parser = argparse.ArgumentParser(prog="pinnace")
    add_parser(parser.add_subparsers(dest="command", required=True))
    return run(parser.parse_args(["image", *(sys.argv[1:] if argv is None else argv)]))


if __name__ == "__main__":
    sys.exit(main())
