"""This host's addresses, as the components advertise them: light enough
for any process to import (the DNS server, the CLI), which the API server
module is not."""

from __future__ import annotations

import ipaddress
import logging
import socket

log = logging.getLogger("pinnace.hostaddr")
_warned: set[str] = set()


def primary_ip() -> str:
    """The address this host uses to reach other hosts: the source address of
    the default route (found with a UDP connect, which sends nothing)."""
    for target in ("192.0.2.1", "2001:db8::1"):  # documentation ranges: never reached
        family = socket.AF_INET6 if ":" in target else socket.AF_INET
        try:
            with socket.socket(family, socket.SOCK_DGRAM) as s:
                s.connect((target, 9))
                return str(s.getsockname()[0])
        except OSError:
            continue
    return "127.0.0.1"


def advertised_address(listen_host: str) -> str:
    """The address pods and other nodes should use for a server listening on
    ``listen_host``: that address when it is a single one, else the source
    address of the default route (as kube-apiserver picks it). A loopback
    address is returned as it is, with a warning (once): nothing off this
    host can reach it."""
    try:
        ip = ipaddress.ip_address(listen_host)
    except ValueError:
        return primary_ip()
    if ip.is_unspecified:
        return primary_ip()
    if ip.is_loopback and listen_host not in _warned:
        _warned.add(listen_host)
        log.warning("listening on %s only: pods and other nodes cannot reach it (use --listen "
                    "0.0.0.0:PORT or --advertise-address)", ip)
    return str(ip)
