"""Name checks with apimachinery's exact messages: DNS-1123 labels and
subdomains, DNS-1035 labels, qualified names (label and annotation keys),
label values, port names, path segments, config keys.

Each ``is_*`` returns the list of messages (empty when valid), as
k8s.io/apimachinery/pkg/util/validation does.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from typing import Any

from ._common import Errs, invalid

NameCheck = Callable[[str, bool], list[str]]


def regex_error(msg: str, fmt: str, *examples: str) -> str:
    if not examples:
        return f"{msg} (regex used for validation is '{fmt}')"
    out = msg + " (e.g. "
    for i, ex in enumerate(examples):
        if i:
            out += " or "
        out += f"'{ex}', "
    return out + f"regex used for validation is '{fmt}')"


def max_len_error(n: int) -> str:
    return f"must be no more than {n} characters"


EMPTY_ERROR = "must be non-empty"

DNS1123_LABEL_FMT = "[a-z0-9]([-a-z0-9]*[a-z0-9])?"
DNS1123_LABEL_MSG = ("a lowercase RFC 1123 label must consist of lower case alphanumeric "
                     "characters or '-', and must start and end with an alphanumeric character")
DNS1123_SUBDOMAIN_FMT = DNS1123_LABEL_FMT + r"(\." + DNS1123_LABEL_FMT + ")*"
DNS1123_SUBDOMAIN_MSG = ("a lowercase RFC 1123 subdomain must consist of lower case alphanumeric "
                         "characters, '-' or '.', and must start and end with an alphanumeric "
                         "character")
DNS1035_LABEL_FMT = "[a-z]([-a-z0-9]*[a-z0-9])?"
DNS1035_LABEL_MSG = ("a DNS-1035 label must consist of lower case alphanumeric characters or "
                     "'-', start with an alphabetic character, and end with an alphanumeric "
                     "character")
QNAME_CHAR_FMT = "[A-Za-z0-9]"
QNAME_EXT_CHAR_FMT = "[-A-Za-z0-9_.]"
QUALIFIED_NAME_FMT = f"({QNAME_CHAR_FMT}{QNAME_EXT_CHAR_FMT}*)?{QNAME_CHAR_FMT}"
QUALIFIED_NAME_MSG = ("must consist of alphanumeric characters, '-', '_' or '.', and must start "
                      "and end with an alphanumeric character")
LABEL_VALUE_FMT = f"({QUALIFIED_NAME_FMT})?"
LABEL_VALUE_MSG = ("a valid label must be an empty string or consist of alphanumeric characters, "
                   "'-', '_' or '.', and must start and end with an alphanumeric character")
CONFIG_KEY_FMT = "[-._a-zA-Z0-9]+"
CONFIG_KEY_MSG = "a valid config key must consist of alphanumeric characters, '-', '_' or '.'"
PERCENT_FMT = "[0-9]+%"
PERCENT_MSG = "a valid percent string must be a numeric string followed by an ending '%'"

def _memo(fn: Callable[[str], list[str]]) -> Callable[[str], list[str]]:
    """The same strings come back in request after request (label keys,
    container and port names): remember the answers. Each caller gets a
    list of its own."""
    cached = functools.lru_cache(maxsize=8192)(lambda v: tuple(fn(v)))

    @functools.wraps(fn)
    def check(v: str) -> list[str]:
        if type(v) is not str:  # malformed input (1 and True would share a key): as is
            return fn(v)
        got = cached(v)
        return list(got) if got else []

    return check


_label_re = re.compile(f"^{DNS1123_LABEL_FMT}$")
_subdomain_re = re.compile(f"^{DNS1123_SUBDOMAIN_FMT}$")
_dns1035_re = re.compile(f"^{DNS1035_LABEL_FMT}$")
_qname_re = re.compile(f"^{QUALIFIED_NAME_FMT}$")
_label_value_re = re.compile(f"^{LABEL_VALUE_FMT}$")
_config_key_re = re.compile(f"^{CONFIG_KEY_FMT}$")
_percent_re = re.compile(f"^{PERCENT_FMT}$")
_port_name_chars = re.compile("^[-a-z0-9]+$")
_port_name_letter = re.compile("[a-z]")
_wildcard_re = re.compile(r"^\*\." + DNS1123_SUBDOMAIN_FMT + "$")


@_memo
def is_dns1123_label(v: str) -> list[str]:
    errs: list[str] = []
    if len(v) > 63:
        errs.append(max_len_error(63))
    if not _label_re.match(v):
        if _subdomain_re.match(v):
            # A valid subdomain that is not a label can only be failing on dots.
            errs.append("must not contain dots")
        else:
            errs.append(regex_error(DNS1123_LABEL_MSG, DNS1123_LABEL_FMT, "my-name", "123-abc"))
    return errs


@_memo
def is_dns1123_subdomain(v: str) -> list[str]:
    errs: list[str] = []
    if len(v) > 253:
        errs.append(max_len_error(253))
    if not _subdomain_re.match(v):
        errs.append(regex_error(DNS1123_SUBDOMAIN_MSG, DNS1123_SUBDOMAIN_FMT, "example.com"))
    return errs


@_memo
def is_dns1035_label(v: str) -> list[str]:
    errs: list[str] = []
    if len(v) > 63:
        errs.append(max_len_error(63))
    if not _dns1035_re.match(v):
        errs.append(regex_error(DNS1035_LABEL_MSG, DNS1035_LABEL_FMT, "my-name", "abc-123"))
    return errs


def is_wildcard_dns1123_subdomain(v: str) -> list[str]:
    errs: list[str] = []
    if len(v) > 253:
        errs.append(max_len_error(253))
    if not _wildcard_re.match(v):
        errs.append(regex_error(
            "a wildcard DNS-1123 subdomain must start with '*.', followed by a valid DNS "
            "subdomain, which must consist of lower case alphanumeric characters, '-' or '.' "
            "and end with an alphanumeric character", r"\*\." + DNS1123_SUBDOMAIN_FMT,
            "*.example.com"))
    return errs


@_memo
def is_qualified_name(v: str) -> list[str]:
    errs: list[str] = []
    parts = v.split("/")
    if len(parts) == 1:
        name = parts[0]
    elif len(parts) == 2:
        prefix, name = parts
        if not prefix:
            errs.append("prefix part " + EMPTY_ERROR)
        else:
            errs.extend("prefix part " + m for m in is_dns1123_subdomain(prefix))
    else:
        return ["a qualified name " + regex_error(QUALIFIED_NAME_MSG, QUALIFIED_NAME_FMT,
                                                  "MyName", "my.name", "123-abc")
                + " with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"]
    if not name:
        errs.append("name part " + EMPTY_ERROR)
    elif len(name) > 63:
        errs.append("name part " + max_len_error(63))
    if name and not _qname_re.match(name):
        errs.append("name part " + regex_error(QUALIFIED_NAME_MSG, QUALIFIED_NAME_FMT,
                                               "MyName", "my.name", "123-abc"))
    return errs


@_memo
def is_label_value(v: str) -> list[str]:
    errs: list[str] = []
    if len(v) > 63:
        errs.append(max_len_error(63))
    if not _label_value_re.match(v):
        errs.append(regex_error(LABEL_VALUE_MSG, LABEL_VALUE_FMT, "MyValue", "my_value", "12345"))
    return errs


@_memo
def is_config_map_key(v: str) -> list[str]:
    errs: list[str] = []
    if len(v) > 253:
        errs.append(max_len_error(253))
    if not _config_key_re.match(v):
        errs.append(regex_error(CONFIG_KEY_MSG, CONFIG_KEY_FMT, "key.name", "KEY_NAME", "key-name"))
    if v == ".":
        errs.append("must not be '.'")
    elif v == "..":
        errs.append("must not be '..'")
    elif v.startswith(".."):
        errs.append("must not start with '..'")
    return errs


@_memo
def is_valid_port_name(v: str) -> list[str]:
    errs: list[str] = []
    if len(v) > 15:
        errs.append("must be no more than 15 characters")
    if not _port_name_chars.match(v):
        errs.append("must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)")
    if not _port_name_letter.search(v):
        errs.append("must contain at least one letter (a-z)")
    if "--" in v:
        errs.append("must not contain consecutive hyphens")
    if v.startswith("-") or v.endswith("-"):
        errs.append("must not begin or end with a hyphen")
    return errs


def is_valid_percent(v: str) -> list[str]:
    if not _percent_re.match(v):
        return [regex_error(PERCENT_MSG, PERCENT_FMT, "1%", "93%")]
    return []


@_memo
def is_env_var_name(v: str) -> list[str]:
    # Relaxed validation (GA in 1.34): any printable ASCII except '='.
    if not v or any(c == "=" or not " " <= c <= "~" for c in v):
        return [("a valid environment variable name must consist only of printable ASCII "
                 "characters other than '='")]
    return []


@_memo
def is_valid_ip(v: str) -> list[str]:
    import ipaddress
    try:
        ipaddress.ip_address(v)
    except ValueError:
        return ["must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)"]
    return []


# Name validators for ObjectMeta: (name, prefix) -> messages. ``prefix`` is
# set for generateName, whose trailing dash is allowed.

def _mask_dash(name: str) -> str:
    return name[:-1] + "a" if len(name) > 1 and name.endswith("-") else name


def name_is_dns_subdomain(name: str, prefix: bool) -> list[str]:
    return is_dns1123_subdomain(_mask_dash(name) if prefix else name)


def name_is_dns_label(name: str, prefix: bool) -> list[str]:
    return is_dns1123_label(_mask_dash(name) if prefix else name)


def name_is_dns1035_label(name: str, prefix: bool) -> list[str]:
    return is_dns1035_label(_mask_dash(name) if prefix else name)


def path_segment_name(name: str, prefix: bool) -> list[str]:
    if not prefix and name in (".", ".."):
        return [f"may not be '{name}'"]
    errs = []
    for bad in ("/", "%"):
        if bad in name:
            errs.append(f"may not contain '{bad}'")
    return errs


def messages_to_errors(msgs: list[str], path: str, value: Any) -> Errs:
    return [invalid(path, value, m) for m in msgs] if msgs else []


def dns1123_label(v: str, path: str) -> Errs:
    return messages_to_errors(is_dns1123_label(v), path, v)


def dns1123_subdomain(v: str, path: str) -> Errs:
    return messages_to_errors(is_dns1123_subdomain(v), path, v)


def qualified_name(v: str, path: str) -> Errs:
    return messages_to_errors(is_qualified_name(v), path, v)
