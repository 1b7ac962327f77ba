"""The string formats kube-apiserver checks in custom resources.

The set is apiextensions-apiserver's (the formats it keeps in a CRD's
schema; any other is ignored) and the checks are those of kube-openapi's
strfmt registry, which names them without dashes: ``date-time`` and
``datetime`` are one format. Go's parsers are mirrored where Python's
differ (IPv4 with leading zeros is accepted, as Go's "sloppy" parser does;
durations in Go's and Scala's spellings).
"""

from __future__ import annotations

import binascii
import ipaddress
import re
import urllib.parse
from collections.abc import Callable
from datetime import date
from typing import Any

_UUID = {
    "uuid": re.compile(r"(?i)^[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}$"),
    "uuid3": re.compile(r"(?i)^[0-9a-f]{8}-?[0-9a-f]{4}-?3[0-9a-f]{3}-?[0-9a-f]{4}-?[0-9a-f]{12}$"),
    "uuid4": re.compile(
        r"(?i)^[0-9a-f]{8}-?[0-9a-f]{4}-?4[0-9a-f]{3}-?[89ab][0-9a-f]{3}-?[0-9a-f]{12}$"),
    "uuid5": re.compile(
        r"(?i)^[0-9a-f]{8}-?[0-9a-f]{4}-?5[0-9a-f]{3}-?[89ab][0-9a-f]{3}-?[0-9a-f]{12}$"),
}
_TIME = re.compile(r"^([0-9]{2}):([0-9]{2}):([0-9]{2})(.[0-9]+)?(z|([+-][0-9]{2}:[0-9]{2}))$")
_BASE64 = re.compile(r"^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=|"
                     r"[A-Za-z0-9+/]{4})$")
_MAC = re.compile(r"^(?:[0-9A-Fa-f]{2}(?:[:-][0-9A-Fa-f]{2}){5}|[0-9A-Fa-f]{2}(?:[:-][0-9A-Fa-f]{2}){7}"
                  r"|[0-9A-Fa-f]{2}(?:[:-][0-9A-Fa-f]{2}){19}"
                  r"|[0-9A-Fa-f]{4}(?:\.[0-9A-Fa-f]{4}){2,9})$")
_HEXCOLOR = re.compile(r"^#?([0-9a-fA-F]{3}|[0-9a-fA-F]{6})$")
_RGB = re.compile(r"^rgb\(\s*(0|[1-9]\d?|1\d\d?|2[0-4]\d|25[0-5])\s*,\s*(0|[1-9]\d?|1\d\d?|2[0-4]\d"
                  r"|25[0-5])\s*,\s*(0|[1-9]\d?|1\d\d?|2[0-4]\d|25[0-5])\s*\)$")
_SSN = re.compile(r"^\d{3}[- ]?\d{2}[- ]?\d{4}$")
_CREDITCARD = re.compile(r"^(?:4[0-9]{12}(?:[0-9]{3})?|5[1-5][0-9]{14}|6(?:011|5[0-9][0-9])[0-9]{12}"
                         r"|3[47][0-9]{13}|3(?:0[0-5]|[68][0-9])[0-9]{11}"
                         r"|(?:2131|1800|35\d{3})\d{11})$")
_SHORT_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_LONG_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_EMAIL = re.compile(r"^\s*(?:[^<>@\s]*<)?[^\s@<>\"(),:;\[\]\\]+@[^\s@<>\"(),:;\[\]\\]+>?\s*$")
_GO_DURATION = re.compile(r"^[-+]?((\d+\.?\d*|\.\d+)(ns|us|µs|μs|ms|s|m|h))+$|^[-+]?0$")
_SCALA_DURATION = re.compile(r"(\d+)\s*([A-Za-zµ]+)")
_UNITS = (("ns", "nano"), ("us", "µs", "micro"), ("ms", "milli"), ("s", "sec"), ("m", "min"),
          ("h", "hr", "hour"), ("d", "day"), ("w", "wk", "week"))


def _date(s: str) -> bool:
    if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", s):
        return False
    try:
        date(int(s[:4]), int(s[5:7]), int(s[8:10]))
    except ValueError:
        return False
    return True


def _datetime(s: str) -> bool:
    if len(s) < 4:
        return False
    parts = s.lower().split("t")
    if len(parts) < 2 or not _date(parts[0]):
        return False
    m = _TIME.match(parts[1])
    return m is not None and m.group(1) <= "23" and m.group(2) <= "59" and m.group(3) <= "59"


def _duration(s: str) -> bool:
    if _GO_DURATION.match(s):
        return True
    for _, unit in _SCALA_DURATION.findall(s):
        unit = unit.strip().lower()
        for variants in _UNITS:
            if any(unit == v or (i == len(variants) - 1 and unit.startswith(v))
                   for i, v in enumerate(variants)):
                return True
    return False


def _sloppy_ip(s: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(s)
    except ValueError:
        pass
    parts = s.split(".")
    if len(parts) == 4 and all(p.isdigit() and len(p) <= 3 and int(p) < 256 for p in parts):
        return ipaddress.IPv4Address(".".join(str(int(p)) for p in parts))
    return None


def _ipv4(s: str) -> bool:
    return _sloppy_ip(s) is not None and "." in s


def _ipv6(s: str) -> bool:
    return _sloppy_ip(s) is not None and ":" in s


def _cidr(s: str) -> bool:
    addr, sep, bits = s.partition("/")
    ip = _sloppy_ip(addr)
    if not sep or ip is None or not bits.isdigit() or (len(bits) > 1 and bits[0] == "0"):
        return False
    return int(bits) <= (32 if "." in addr and ":" not in addr else 128)


def _uri(s: str) -> bool:
    """Go's url.ParseRequestURI: an absolute URL or an absolute path."""
    if not s or any(ord(c) < 0x20 or c == "\x7f" or c == " " for c in s):
        return False
    if re.search(r"%(?![0-9A-Fa-f]{2})", s):
        return False
    try:
        parts = urllib.parse.urlsplit(s)
    except ValueError:
        return False
    if parts.scheme:
        return bool(re.fullmatch(r"[A-Za-z][A-Za-z0-9+.-]*", parts.scheme))
    return s.startswith("/")


def _hostname(s: str) -> bool:
    """kube-openapi's hostname pattern: one label of a character, an optional
    dash and more characters, or dotted labels ending in a 2-63 letter one."""
    if not s or len(s) > 255 or any(len(p) > 63 for p in s.split(".")):
        return False

    def x(c: str) -> bool:
        return c.isalnum() or (not c.isascii() and not c.isspace())

    labels = s.split(".")
    if len(labels) == 1:
        rest = s[1:].removeprefix("-")
        return x(s[0]) and len(rest) <= 62 and all(x(c) for c in rest) \
            and not (s[1:].startswith("-") and not rest)
    *head, tld = labels
    if not (2 <= len(tld) <= 63 and all(c.isalpha() for c in tld)):
        return False
    return all(p and x(p[0]) and x(p[-1]) and all(x(c) or c == "-" for c in p) for p in head)


def _isbn10(s: str) -> bool:
    s = s.replace("-", "").replace(" ", "")
    if not re.fullmatch(r"\d{9}[\dX]", s):
        return False
    total = sum((10 - i) * (10 if c == "X" else int(c)) for i, c in enumerate(s))
    return total % 11 == 0


def _isbn13(s: str) -> bool:
    s = s.replace("-", "").replace(" ", "")
    if not re.fullmatch(r"\d{13}", s):
        return False
    total = sum(int(c) * (1 if i % 2 == 0 else 3) for i, c in enumerate(s[:12]))
    return (10 - total % 10) % 10 == int(s[12])


def _creditcard(s: str) -> bool:
    digits = re.sub(r"\D", "", s)
    if not _CREDITCARD.match(digits):
        return False
    total = 0
    for i, c in enumerate(reversed(digits)):
        d = int(c)
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def _byte(s: str) -> bool:
    if not _BASE64.match(s):
        return False
    try:
        binascii.a2b_base64(s)
    except binascii.Error:
        return False
    return True


CHECKS: dict[str, Callable[[str], Any]] = {
    "bsonobjectid": lambda s: bool(re.fullmatch(r"[0-9a-fA-F]{24}", s)),
    "uri": _uri,
    "email": lambda s: bool(_EMAIL.match(s)),
    "hostname": _hostname,
    "ipv4": _ipv4,
    "ipv6": _ipv6,
    "cidr": _cidr,
    "mac": lambda s: bool(_MAC.match(s)),
    **{k: rx.match for k, rx in _UUID.items()},
    "isbn": lambda s: _isbn10(s) or _isbn13(s),
    "isbn10": _isbn10,
    "isbn13": _isbn13,
    "creditcard": _creditcard,
    "ssn": lambda s: bool(_SSN.match(s)),
    "hexcolor": lambda s: bool(_HEXCOLOR.match(s)),
    "rgbcolor": lambda s: bool(_RGB.match(s)),
    "byte": _byte,
    "password": lambda s: True,
    "date": _date,
    "duration": _duration,
    "datetime": _datetime,
    "k8sshortname": lambda s: len(s) <= 63 and bool(_SHORT_NAME.match(s)),
    "k8slongname": lambda s: len(s) <= 253 and bool(_LONG_NAME.match(s)),
}


def check(fmt: str, value: str) -> bool | None:
    """Whether ``value`` has string format ``fmt``; None for a format
    kube-apiserver does not know (which it ignores)."""
    fn = CHECKS.get(fmt.replace("-", ""))
    return None if fn is None else bool(fn(value))
