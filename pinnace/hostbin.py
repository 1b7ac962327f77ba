"""Finding the host's system commands (nft, iptables-restore, ...): on PATH,
or in /usr/sbin and /sbin, which a non-login root shell or a service's
environment may leave off PATH."""

from __future__ import annotations

import shutil


def which(name: str) -> str | None:
    return shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin")
