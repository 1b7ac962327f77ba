"""CEL for Kubernetes: compiling and evaluating expressions over JSON objects.

The language itself is cel-python's (``celpy``, docs/decisions/0014-cel.md);
this module adds what kube-apiserver's CEL environment has on top of the
standard one and what cel-python lacks, and fixes the boundary:

- JSON values become CEL values (ints stay int, so ``object.spec.replicas <= 5``
  compares ints); numbers of different types compare by value, as with
  kube-apiserver's CrossTypeNumericComparisons, and ``==`` of unrelated types
  is false rather than an error (heterogeneous equality).
- A compile step that refuses undeclared variables and functions the way
  cel-go's checker does, with its message shape. cel-python has no type
  checker: everything else (wrong result types, wrong argument types) shows
  up at evaluation.
- Kubernetes' library: the strings extension (charAt, indexOf, lastIndexOf,
  lowerAscii, upperAscii, replace, split, substring, trim, join, reverse),
  lists (isSorted, sum, min, max, indexOf, lastIndexOf), regex (find, findAll),
  URLs (url, isURL and the getters), quantities (quantity, isQuantity and the
  arithmetic and comparisons), IP addresses and CIDRs (ip, isIP, cidr,
  isCIDR and their methods), and the three-argument map macro.

Optional values reach expressions only as values (``hasValue()``, ``value()``,
``orValue()``: oldSelf under a CRD rule's optionalOldSelf). Not provided: the
``?.`` syntax and ``optional.of``, format(), semver, authorizer checks, and
upstream's cost model: an evaluation is stopped past STEP_LIMIT steps
instead, and no cost is estimated when a rule is written.
"""

from __future__ import annotations

import ipaddress
import re
import urllib.parse
from collections.abc import Callable, Iterable, Mapping
from fractions import Fraction
from typing import Any, cast

import celpy
import lark
from celpy import celtypes
from celpy.evaluation import CELEvalError, Evaluator, base_functions

from pinnace.api import quantity as q

__all__ = ["Budget", "CompileError", "EvalError", "Program", "compile_expression", "to_cel", "from_cel",
           "LazyMap", "type_name", "error_value", "Optional"]


class CompileError(Exception):
    """The expression does not compile; str() is the text after "compilation failed: "."""


class EvalError(Exception):
    """Evaluation failed; str() is cel-go's wording where we know it."""


# ---- values at the boundary -------------------------------------------------------------

def to_cel(value: Any) -> Any:
    """A JSON value (as json.loads makes it) as a CEL value."""
    if value is None:
        return None
    if isinstance(value, bool):
        return celtypes.BoolType(value)
    if isinstance(value, int):
        return celtypes.IntType(value)
    if isinstance(value, float):
        return celtypes.DoubleType(value)
    if isinstance(value, str):
        return celtypes.StringType(value)
    if isinstance(value, Mapping):
        return celtypes.MapType({celtypes.StringType(k): to_cel(v) for k, v in value.items()})
    if isinstance(value, (list, tuple)):
        return celtypes.ListType([to_cel(v) for v in value])
    return value


def from_cel(value: Any) -> Any:
    """A CEL value as plain Python (str, int, float, bool, None, list, dict)."""
    if value is None:
        return None
    if isinstance(value, celtypes.BoolType):
        return bool(value)
    if isinstance(value, (celtypes.IntType, celtypes.UintType)):
        return int(value)
    if isinstance(value, celtypes.DoubleType):
        return float(value)
    if isinstance(value, celtypes.StringType):
        return str(value)
    if isinstance(value, dict):
        return {from_cel(k): from_cel(v) for k, v in value.items()}
    if isinstance(value, list):
        return [from_cel(v) for v in value]
    return value


def type_name(value: Any) -> str:
    """The CEL type name of a value, as cel-go prints it."""
    if value is None:
        return "null_type"
    for cls, name in ((celtypes.BoolType, "bool"), (celtypes.UintType, "uint"),
                      (celtypes.IntType, "int"), (celtypes.DoubleType, "double"),
                      (celtypes.StringType, "string"), (celtypes.BytesType, "bytes"),
                      (celtypes.TimestampType, "google.protobuf.Timestamp"),
                      (celtypes.DurationType, "google.protobuf.Duration"),
                      (celtypes.ListType, "list"), (celtypes.MapType, "map"),
                      (Quantity, "kubernetes.Quantity"), (URL, "kubernetes.URL"),
                      (IP, "net.IP"), (CIDR, "net.CIDR"), (Optional, "optional_type")):
        if isinstance(value, cls):
            return name
    return type(value).__name__


class LazyMap(celtypes.MapType):
    """A map whose values are computed on first access (the ``variables`` of a
    policy): a failing computation yields an error value, as cel-go's lazy map."""

    def __init__(self, compute: Mapping[str, Callable[[], Any]]):
        super().__init__({celtypes.StringType(k): None for k in compute})
        self._compute = dict(compute)
        self._done: dict[str, Any] = {}

    def __getitem__(self, key: Any) -> Any:
        k = str(key)
        if k not in self._compute:
            raise KeyError(key)
        if k not in self._done:
            self._done[k] = self._compute[k]()
        return self._done[k]

    def get(self, key: Any, default: Any = None) -> Any:
        try:
            return self[key]
        except KeyError:
            return default


# ---- numbers and equality ---------------------------------------------------------------

_NUMBERS = (celtypes.IntType, celtypes.UintType, celtypes.DoubleType)


def _is_number(v: Any) -> bool:
    return isinstance(v, _NUMBERS) and not isinstance(v, celtypes.BoolType)


def _equal(a: Any, b: Any) -> bool:
    if a is None or b is None:
        return a is None and b is None
    if _is_number(a) and _is_number(b):
        return float(a) == float(b) if isinstance(a, float) or isinstance(b, float) \
            else int(a) == int(b)
    if isinstance(a, celtypes.BoolType) != isinstance(b, celtypes.BoolType):
        return False
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        if len(a) != len(b):
            return False
        for k in a:
            if k not in b or not _equal(a[k], b[k]):
                return False
        return True
    if isinstance(a, (list, dict)) or isinstance(b, (list, dict)):
        return False
    if type(a) is not type(b) and not (isinstance(a, type(b)) or isinstance(b, type(a))):
        return False
    try:
        return bool(a == b)
    except TypeError:
        return False


def _ordered(op: Callable[[Any, Any], bool], base: Callable[[Any, Any], Any]
             ) -> Callable[[Any, Any], Any]:
    def compare(a: Any, b: Any) -> Any:
        if _is_number(a) and _is_number(b) and type(a) is not type(b):
            return celtypes.BoolType(op(Fraction(a), Fraction(b)))
        return base(a, b)
    return compare


def _eq(a: Any, b: Any) -> Any:
    if isinstance(a, CELEvalError):
        return a
    if isinstance(b, CELEvalError):
        return b
    return celtypes.BoolType(_equal(a, b))


def _ne(a: Any, b: Any) -> Any:
    if isinstance(a, CELEvalError):
        return a
    if isinstance(b, CELEvalError):
        return b
    return celtypes.BoolType(not _equal(a, b))


def _in(item: Any, container: Any) -> Any:
    if isinstance(container, list):
        return celtypes.BoolType(any(_equal(item, x) for x in container))
    return base_functions["_in_"](item, container)


# ---- strings (cel-go ext.Strings) --------------------------------------------------------

def _s(v: Any) -> str:
    if not isinstance(v, str):
        raise TypeError(f"no such overload: {type_name(v)}")
    return v


def _i(v: Any) -> int:
    if not isinstance(v, int) or isinstance(v, bool):
        raise TypeError(f"no such overload: {type_name(v)}")
    return int(v)


def _char_at(s: Any, i: Any) -> Any:
    s, i = _s(s), _i(i)
    if i < 0 or i > len(s):
        raise EvalError(f"index out of range: {i}")
    return celtypes.StringType(s[i:i + 1])


def _index_of(target: Any, sub: Any, offset: Any = 0) -> Any:
    if isinstance(target, list):
        for n, x in enumerate(target):
            if _equal(x, sub):
                return celtypes.IntType(n)
        return celtypes.IntType(-1)
    s, sub, off = _s(target), _s(sub), _i(offset)
    if off < 0 or off > len(s):
        raise EvalError(f"index out of range: {off}")
    return celtypes.IntType(s.find(sub, off))


def _last_index_of(target: Any, sub: Any, offset: Any = None) -> Any:
    if isinstance(target, list):
        for n in range(len(target) - 1, -1, -1):
            if _equal(target[n], sub):
                return celtypes.IntType(n)
        return celtypes.IntType(-1)
    s, sub = _s(target), _s(sub)
    off = len(s) if offset is None else _i(offset)
    if off < 0 or off > len(s):
        raise EvalError(f"index out of range: {off}")
    return celtypes.IntType(s.rfind(sub, 0, off + len(sub)))


def _ascii(s: Any, upper: bool) -> Any:
    table = str.maketrans("abcdefghijklmnopqrstuvwxyz", "ABCDEFGHIJKLMNOPQRSTUVWXYZ") if upper \
        else str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")
    return celtypes.StringType(_s(s).translate(table))


def _replace(s: Any, old: Any, new: Any, n: Any = -1) -> Any:
    count = _i(n)
    return celtypes.StringType(_s(s).replace(_s(old), _s(new), count if count >= 0 else -1))


def _split(s: Any, sep: Any, n: Any = -1) -> Any:
    text, sep, limit = _s(s), _s(sep), _i(n)
    if limit == 0:
        return celtypes.ListType([])
    if sep == "":
        parts = list(text)
        if limit > 0 and len(parts) > limit:
            parts = parts[:limit - 1] + ["".join(parts[limit - 1:])]
    else:
        parts = text.split(sep, limit - 1) if limit > 0 else text.split(sep)
    return celtypes.ListType([celtypes.StringType(p) for p in parts])


def _substring(s: Any, start: Any, end: Any = None) -> Any:
    text, b = _s(s), _i(start)
    e = len(text) if end is None else _i(end)
    if b < 0 or b > len(text):
        raise EvalError(f"index out of range: {b}")
    if e < 0 or e > len(text):
        raise EvalError(f"index out of range: {e}")
    if b > e:
        raise EvalError(f"invalid substring range. start: {b}, end: {e}")
    return celtypes.StringType(text[b:e])


def _trim(s: Any) -> Any:
    return celtypes.StringType(_s(s).strip())


def _join(items: Any, sep: Any = "") -> Any:
    if not isinstance(items, list):
        raise TypeError("no such overload")
    return celtypes.StringType(_s(sep).join(_s(x) for x in items))


def _reverse(s: Any) -> Any:
    return celtypes.StringType(_s(s)[::-1])


# ---- lists (Kubernetes' lists library) ---------------------------------------------------

def _list(v: Any) -> list[Any]:
    if not isinstance(v, list):
        raise TypeError(f"no such overload: {type_name(v)}")
    return v


def _is_sorted(v: Any) -> Any:
    items = _list(v)
    return celtypes.BoolType(all(not _lt(items[n + 1], items[n]) for n in range(len(items) - 1)))


def _lt(a: Any, b: Any) -> bool:
    if _is_number(a) and _is_number(b):
        return Fraction(a) < Fraction(b)
    if isinstance(a, Quantity) and isinstance(b, Quantity):
        return a.value < b.value
    return bool(a < b)


def _sum(v: Any) -> Any:
    items = _list(v)
    if not items:
        return celtypes.IntType(0)
    total = items[0]
    for x in items[1:]:
        total = total + x
    return total


def _max(v: Any, *more: Any) -> Any:
    items = _list(v) if not more else [v, *more]
    if not items:
        raise EvalError("max called on empty list")
    best = items[0]
    for x in items[1:]:
        if _lt(best, x):
            best = x
    return best


# ---- regex --------------------------------------------------------------------------------

def _find(s: Any, pattern: Any) -> Any:
    m = re.search(_s(pattern), _s(s))
    return celtypes.StringType(m.group(0) if m else "")


def _find_all(s: Any, pattern: Any, n: Any = -1) -> Any:
    limit = _i(n)
    found = [m.group(0) for m in re.finditer(_s(pattern), _s(s))]
    if limit >= 0:
        found = found[:limit]
    return celtypes.ListType([celtypes.StringType(x) for x in found])


# ---- URLs ---------------------------------------------------------------------------------

class URL:
    """Kubernetes' URL type: a string that Go's url.ParseRequestURI accepts."""

    def __init__(self, text: str):
        if not text or (not text.startswith("/") and not re.match(r"^[A-Za-z][A-Za-z0-9+.-]*:", text)):
            raise EvalError(f"URL parse error during conversion from string: parse {text!r}: "
                            "invalid URI for request")
        self.text = text
        self.parts = urllib.parse.urlsplit(text)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, URL) and other.text == self.text

    def __hash__(self) -> int:
        return hash(self.text)

    def __str__(self) -> str:
        return self.text


def _url(s: Any) -> Any:
    return URL(_s(s))


def _is_url(s: Any) -> Any:
    try:
        URL(_s(s))
    except EvalError:
        return celtypes.BoolType(False)
    return celtypes.BoolType(True)


def _url_of(u: Any) -> URL:
    if not isinstance(u, URL):
        raise TypeError("no such overload")
    return u


def _get_host(u: Any) -> Any:
    return celtypes.StringType(_url_of(u).parts.netloc.rpartition("@")[2])


def _get_hostname(u: Any) -> Any:
    host = _url_of(u).parts.netloc.rpartition("@")[2]
    if host.startswith("["):
        return celtypes.StringType(host[1:host.find("]")])
    return celtypes.StringType(host.rpartition(":")[0] if ":" in host else host)


def _get_port(u: Any) -> Any:
    host = _url_of(u).parts.netloc.rpartition("@")[2]
    if host.startswith("["):
        rest = host[host.find("]") + 1:]
        return celtypes.StringType(rest[1:] if rest.startswith(":") else "")
    return celtypes.StringType(host.rpartition(":")[2] if ":" in host else "")


def _get_query(u: Any) -> Any:
    parsed = urllib.parse.parse_qs(_url_of(u).parts.query, keep_blank_values=True)
    return celtypes.MapType({celtypes.StringType(k): celtypes.ListType(
        [celtypes.StringType(x) for x in v]) for k, v in parsed.items()})


# ---- quantities ---------------------------------------------------------------------------

class Quantity:
    def __init__(self, text: str):
        try:
            self.value = q.parse_quantity(text)
        except q.QuantityError as e:
            raise EvalError(str(e)) from None
        self.text = text

    @classmethod
    def of(cls, value: Fraction) -> Quantity:
        out = cls.__new__(cls)
        out.value = value
        out.text = q.format_quantity(value)
        return out

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Quantity) and other.value == self.value

    def __hash__(self) -> int:
        return hash(self.value)

    def __str__(self) -> str:
        return self.text


def _qty(v: Any) -> Quantity:
    if not isinstance(v, Quantity):
        raise TypeError("no such overload")
    return v


def _qty_arg(v: Any) -> Fraction:
    if isinstance(v, Quantity):
        return v.value
    return Fraction(_i(v))


def _quantity(s: Any) -> Any:
    return Quantity(_s(s))


def _is_quantity(s: Any) -> Any:
    try:
        q.parse_quantity(_s(s))
    except q.QuantityError:
        return celtypes.BoolType(False)
    return celtypes.BoolType(True)


def _as_integer(v: Any) -> Any:
    value = _qty(v).value
    if value.denominator != 1 or not -(2 ** 63) <= value <= 2 ** 63 - 1:
        raise EvalError("cannot convert value to integer")
    return celtypes.IntType(int(value))


def _is_integer(v: Any) -> Any:
    value = _qty(v).value
    return celtypes.BoolType(value.denominator == 1 and -(2 ** 63) <= value <= 2 ** 63 - 1)


def _compare_to(a: Any, b: Any) -> Any:
    x, y = _qty(a).value, _qty(b).value
    return celtypes.IntType((x > y) - (x < y))


# ---- IP addresses and CIDRs ---------------------------------------------------------------

class IP:
    def __init__(self, text: str):
        if "%" in text:
            raise EvalError(f"IP address with zone value is not allowed: {text}")
        try:
            self.addr = ipaddress.ip_address(text)
        except ValueError:
            raise EvalError(f"IP Address {text!r} parse error during conversion from string: "
                            f"ParseAddr({text!r}): unable to parse IP") from None
        if isinstance(self.addr, ipaddress.IPv6Address) and self.addr.ipv4_mapped is not None:
            raise EvalError(f"IPv4-mapped IPv6 address is not allowed: {text}")

    def __eq__(self, other: object) -> bool:
        return isinstance(other, IP) and other.addr == self.addr

    def __hash__(self) -> int:
        return hash(self.addr)

    def __str__(self) -> str:
        return str(self.addr)


class CIDR:
    def __init__(self, text: str):
        try:
            self.net = ipaddress.ip_network(text, strict=False)
            self.ip = ipaddress.ip_address(text.partition("/")[0])
        except ValueError:
            raise EvalError(f"network address {text!r} parse error during conversion from string: "
                            f"netip.ParsePrefix({text!r}): invalid prefix") from None
        if "/" not in text:
            raise EvalError(f"network address {text!r} parse error during conversion from string: "
                            f"netip.ParsePrefix({text!r}): no '/'")

    def __eq__(self, other: object) -> bool:
        return isinstance(other, CIDR) and (other.net, other.ip) == (self.net, self.ip)

    def __hash__(self) -> int:
        return hash(self.net)

    def __str__(self) -> str:
        return f"{self.ip}/{self.net.prefixlen}"


def _ip(v: Any) -> Any:
    if isinstance(v, CIDR):
        out = IP.__new__(IP)
        out.addr = v.ip
        return out
    return IP(_s(v))


def _is_ip(v: Any) -> Any:
    try:
        IP(_s(v))
    except EvalError:
        return celtypes.BoolType(False)
    return celtypes.BoolType(True)


def _cidr(v: Any) -> Any:
    return CIDR(_s(v))


def _is_cidr(v: Any) -> Any:
    try:
        CIDR(_s(v))
    except EvalError:
        return celtypes.BoolType(False)
    return celtypes.BoolType(True)


def _ip_of(v: Any) -> Any:
    if isinstance(v, IP):
        return v.addr
    if isinstance(v, str):
        return IP(v).addr
    raise TypeError("no such overload")


def _contains_ip(c: Any, v: Any) -> Any:
    if not isinstance(c, CIDR):
        raise TypeError("no such overload")
    addr = _ip_of(v)
    return celtypes.BoolType(addr.version == c.net.version and addr in c.net)


def _contains_cidr(c: Any, v: Any) -> Any:
    if not isinstance(c, CIDR):
        raise TypeError("no such overload")
    other = v if isinstance(v, CIDR) else CIDR(_s(v))
    return celtypes.BoolType(other.net.version == c.net.version
                             and other.net.subnet_of(c.net))  # type: ignore[arg-type]


def _masked(c: Any) -> Any:
    if not isinstance(c, CIDR):
        raise TypeError("no such overload")
    return CIDR(str(c.net))


def _ip_pred(name: str) -> Callable[[Any], Any]:
    def pred(v: Any) -> Any:
        if not isinstance(v, IP):
            raise TypeError("no such overload")
        a = v.addr
        if name == "isUnspecified":
            r = a.is_unspecified
        elif name == "isLoopback":
            r = a.is_loopback
        elif name == "isLinkLocalMulticast":
            r = a.is_multicast and (a in ipaddress.ip_network("224.0.0.0/24") if a.version == 4
                                    else a in ipaddress.ip_network("ff02::/16"))
        elif name == "isLinkLocalUnicast":
            r = a.is_link_local and not a.is_multicast
        else:  # isGlobalUnicast: Go's definition, not "public"
            r = not (a.is_unspecified or a.is_loopback or a.is_multicast or a.is_link_local
                     or (a.version == 4 and a == ipaddress.ip_address("255.255.255.255")))
        return celtypes.BoolType(r)
    return pred


# ---- optional values (what oldSelf is under optionalOldSelf) -----------------------------

class Optional:
    """cel-go's optional value, as far as method calls reach it: ``hasValue()``,
    ``value()`` and ``orValue(x)`` (the ``?.`` syntax does not parse here)."""

    __slots__ = ("present", "item")

    def __init__(self, item: Any = None, present: bool = False):
        self.present, self.item = present, item

    @classmethod
    def of(cls, item: Any) -> Optional:
        return cls(item, True)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Optional) and self.present == other.present \
            and (not self.present or _equal(self.item, other.item))

    def __hash__(self) -> int:
        return hash(self.present)


def _opt(v: Any) -> Optional:
    if not isinstance(v, Optional):
        raise TypeError("no such overload")
    return v


def _opt_value(v: Any) -> Any:
    o = _opt(v)
    if not o.present:
        raise EvalError("optional.none() dereference")
    return o.item


# ---- dispatch: one CEL name, several receivers ---------------------------------------------

def _size(v: Any) -> Any:
    return base_functions["size"](v)


def _string(v: Any) -> Any:
    if isinstance(v, (URL, Quantity, IP, CIDR)):
        return celtypes.StringType(str(v))
    return celtypes.StringType(v)


def _is_less_than(a: Any, b: Any) -> Any:
    return celtypes.BoolType(_qty(a).value < _qty(b).value)


def _is_greater_than(a: Any, b: Any) -> Any:
    return celtypes.BoolType(_qty(a).value > _qty(b).value)


def _family(v: Any) -> Any:
    if isinstance(v, IP):
        return celtypes.IntType(v.addr.version)
    raise TypeError("no such overload")


def _prefix_length(v: Any) -> Any:
    if isinstance(v, CIDR):
        return celtypes.IntType(v.net.prefixlen)
    raise TypeError("no such overload")


def _sign(v: Any) -> Any:
    x = _qty(v).value
    return celtypes.IntType((x > 0) - (x < 0))


FUNCTIONS: dict[str, Callable[..., Any]] = {
    "_==_": _eq, "_!=_": _ne, "_in_": _in,
    "_<_": _ordered(lambda a, b: a < b, base_functions["_<_"]),
    "_<=_": _ordered(lambda a, b: a <= b, base_functions["_<=_"]),
    "_>_": _ordered(lambda a, b: a > b, base_functions["_>_"]),
    "_>=_": _ordered(lambda a, b: a >= b, base_functions["_>=_"]),
    "string": _string,
    # strings
    "charAt": _char_at, "indexOf": _index_of, "lastIndexOf": _last_index_of,
    "lowerAscii": lambda s: _ascii(s, False), "upperAscii": lambda s: _ascii(s, True),
    "replace": _replace, "split": _split, "substring": _substring, "trim": _trim,
    "join": _join, "reverse": _reverse,
    # lists ("min" is cel-python's own macro)
    "isSorted": _is_sorted, "sum": _sum, "max": _max,
    # regex
    "find": _find, "findAll": _find_all,
    # URLs
    "url": _url, "isURL": _is_url,
    "getScheme": lambda u: celtypes.StringType(_url_of(u).parts.scheme),
    "getHost": _get_host, "getHostname": _get_hostname, "getPort": _get_port,
    "getEscapedPath": lambda u: celtypes.StringType(_url_of(u).parts.path),
    "getQuery": _get_query,
    # quantities
    "quantity": _quantity, "isQuantity": _is_quantity, "sign": _sign,
    "isInteger": _is_integer, "asInteger": _as_integer,
    "asApproximateFloat": lambda v: celtypes.DoubleType(float(_qty(v).value)),
    "add": lambda a, b: Quantity.of(_qty(a).value + _qty_arg(b)),
    "sub": lambda a, b: Quantity.of(_qty(a).value - _qty_arg(b)),
    "isLessThan": _is_less_than, "isGreaterThan": _is_greater_than, "compareTo": _compare_to,
    # IPs and CIDRs
    "ip": _ip, "isIP": _is_ip, "cidr": _cidr, "isCIDR": _is_cidr, "family": _family,
    "containsIP": _contains_ip, "containsCIDR": _contains_cidr, "prefixLength": _prefix_length,
    "masked": _masked,
    # optionals
    "hasValue": lambda v: celtypes.BoolType(_opt(v).present), "value": _opt_value,
    "orValue": lambda v, d: _opt(v).item if _opt(v).present else d,
    **{name: _ip_pred(name) for name in ("isUnspecified", "isLoopback", "isLinkLocalMulticast",
                                         "isLinkLocalUnicast", "isGlobalUnicast")},
}

# Names the checker accepts as functions or macros (cel-python's and ours).
_MACROS = frozenset({"has", "dyn", "all", "exists", "exists_one", "map", "filter", "min"})
_KNOWN_FUNCTIONS = frozenset(base_functions) | frozenset(FUNCTIONS) | _MACROS
# Type names usable as identifiers (type(x) == int).
_TYPE_IDENTS = frozenset({"int", "uint", "double", "bool", "string", "bytes", "list", "map",
                          "null_type", "type", "google"})


# ---- evaluation -------------------------------------------------------------------------

# Evaluation steps (syntax-tree nodes visited, macro bodies once per item)
# one evaluation may take. kube-apiserver stops an expression past 10^6 cost
# units (PerCallLimit); cel-python is far slower than cel-go, so the bound is
# set by time instead: under a second of the API server's event loop, far
# past what real rules use (a rule over a list of 1,000 items takes ~10^4).
STEP_LIMIT = 50_000
COST_EXCEEDED = "operation cancelled: actual cost limit exceeded"


class Budget:
    """Evaluation steps left, shared by several evaluations (one object's
    CRD rules: upstream bounds those together too)."""

    __slots__ = ("left",)

    def __init__(self, steps: int):
        self.left = steps


class _OverBudget(Exception):
    pass


class _Evaluator(Evaluator):
    """cel-python's interpreter with the three-argument map macro, its
    sub-evaluators (macro bodies) of this same class, and a step budget
    shared with them."""

    budget: Budget | None = None

    def sub_evaluator(self, ast: lark.Tree) -> Evaluator:
        sub = _Evaluator(ast, activation=self.activation)
        sub.budget = self.budget
        return sub

    def _visit_tree(self, tree: Any) -> Any:
        budget = self.budget
        if budget is not None:
            budget.left -= 1
            if budget.left < 0:
                raise _OverBudget
        return super()._visit_tree(tree)

    def member_dot_arg(self, tree: lark.Tree) -> Any:
        name = cast(lark.Token, tree.children[1]).value
        args = tree.children[2] if len(tree.children) > 2 else None
        if name == "map" and isinstance(args, lark.Tree) and len(args.children) == 3:
            items = self.visit(cast(lark.Tree, tree.children[0]))
            if isinstance(items, CELEvalError):
                return items
            var_tree, pred_tree, expr_tree = cast(list[lark.Tree], args.children)
            var = cast(lark.Token, next(var_tree.find_data("ident")).children[0]).value
            pred, expr = self.sub_evaluator(pred_tree), self.sub_evaluator(expr_tree)
            out = []
            for item in items:
                keep = pred.evaluate({var: item})
                if not isinstance(keep, celtypes.BoolType):
                    return CELEvalError("no such overload", TypeError, None, tree=tree)
                if keep:
                    out.append(expr.evaluate({var: item}))
            return celtypes.ListType(out)
        if name in ("all", "exists", "exists_one", "map", "filter") and (
                args is None or len(cast(lark.Tree, args).children) != 2):
            return CELEvalError(f"no such overload: {name}", TypeError, None, tree=tree)
        return super().member_dot_arg(tree)


_ENV = celpy.Environment()


def _error_text(e: BaseException) -> str:
    """cel-go's wording for the errors cel-python reports its own way."""
    if isinstance(e, EvalError):
        return str(e)
    if isinstance(e, CELEvalError):
        cause = e.args[1] if len(e.args) > 1 else None
        detail = e.args[2] if len(e.args) > 2 else None
        text = str(e.args[0]) if e.args else "error"
        if isinstance(e.__cause__, EvalError):
            return str(e.__cause__)
        m = re.match(r"no such member in mapping: '(.*)'$", text)
        if m:
            return f"no such key: {m.group(1)}"
        if cause is KeyError and text == "no such key" and detail:
            return f"no such key: {detail[0]}"
        if cause is ZeroDivisionError:
            return "modulus by zero" if detail and "modulo" in str(detail[0]) and "division" \
                not in str(detail[0]) else "division by zero"
        if text == "return error for overflow":
            return "integer overflow"
        if cause is IndexError:
            return "index out of bounds"
        if text.startswith("found no matching overload") or text.startswith("no such overload"):
            return "no such overload"
        if text.startswith("undeclared reference to"):
            return text.split(" (in activation", 1)[0]
        return text
    return str(e) or type(e).__name__


class Program:
    """A compiled expression."""

    __slots__ = ("expression", "_runner", "_idents")

    def __init__(self, expression: str, ast: lark.Tree):
        self.expression = expression
        self._runner = _Runner(_ENV, ast, FUNCTIONS)
        self._idents = frozenset(cast(lark.Token, n.children[0]).value
                                 for n in ast.find_data("ident"))

    def uses(self, name: str) -> bool:
        """Whether the expression names the variable ``name`` (a CRD rule that
        names oldSelf is a transition rule)."""
        return name in self._idents

    def evaluate(self, activation: Mapping[str, Any], total: Budget | None = None) -> Any:
        """The value, or EvalError (also past STEP_LIMIT steps, or past what
        is ``total`` left, which the steps taken are taken from). The
        activation's values are CEL values (to_cel)."""
        steps = STEP_LIMIT if total is None else min(STEP_LIMIT, total.left)
        budget = Budget(steps)
        try:
            try:
                value = self._runner.evaluate(dict(activation), budget)
            finally:
                if total is not None:
                    total.left -= steps - max(budget.left, 0)
        except _OverBudget:
            raise EvalError(COST_EXCEEDED) from None
        except CELEvalError as e:
            raise EvalError(_error_text(e)) from None
        except EvalError:
            raise
        except RecursionError:
            raise EvalError("expression too deeply nested") from None
        except Exception as e:  # cel-python raises plain exceptions for some misuse
            raise EvalError(_error_text(e)) from None
        if isinstance(value, CELEvalError):
            raise EvalError(_error_text(value))
        return value


class _Runner(celpy.InterpretedRunner):
    def evaluate(self, context: Any, budget: Budget | None = None) -> Any:
        evaluator = _Evaluator(ast=self.ast, activation=self.new_activation())
        evaluator.budget = budget
        return evaluator.evaluate(context)


def _wrap_library_errors() -> None:
    """Our functions raise EvalError for bad values; cel-python only turns
    TypeError/ValueError into CEL errors, so carry the EvalError as the cause
    of a ValueError and read it back in _error_text."""
    for name, fn in list(FUNCTIONS.items()):
        def wrapped(*args: Any, _fn: Callable[..., Any] = fn) -> Any:
            for a in args:
                if isinstance(a, CELEvalError):
                    return a
            try:
                return _fn(*args)
            except EvalError as e:
                err = CELEvalError(str(e), EvalError, None)
                err.__cause__ = e
                return err
            except re.error as e:
                return CELEvalError(f"invalid regular expression: {e}", ValueError, None)
        FUNCTIONS[name] = wrapped


_wrap_library_errors()


def _syntax_error(text: str, line: int, column: int, message: str) -> CompileError:
    lines = text.split("\n")
    source = lines[line - 1] if 0 < line <= len(lines) else text
    pointer = "." * (column - 1) + "^"
    return CompileError(f"ERROR: <input>:{line}:{column}: {message}\n | {source}\n | {pointer}")


def _bound_names(ast: lark.Tree) -> set[str]:
    """The iteration variables macros introduce."""
    out = set()
    for node in ast.iter_subtrees():
        if node.data == "member_dot_arg" and len(node.children) == 3:
            name = cast(lark.Token, node.children[1]).value
            args = node.children[2]
            if name in _MACROS and isinstance(args, lark.Tree) and args.children:
                first = args.children[0]
                if isinstance(first, lark.Tree):
                    for ident in first.find_data("ident"):
                        out.add(cast(lark.Token, ident.children[0]).value)
    return out


def error_value(message: str) -> Any:
    """An error as a value (what a lazily computed map entry yields when its
    computation fails): using it makes the expression fail with ``message``."""
    err = CELEvalError(message, EvalError, None)
    err.__cause__ = EvalError(message)
    return err


def compile_expression(text: str, names: Iterable[str], fields: Iterable[str] | None = None
                       ) -> Program:
    """Parse and check an expression against the declared variable names; with
    ``fields``, ``variables.<x>`` must name one of them (the policy variables
    declared so far). Raises CompileError with cel-go's message shape."""
    try:
        ast = _ENV.compile(text)
    except celpy.CELParseError as e:
        line, column = getattr(e, "line", None) or 1, getattr(e, "column", None) or 1
        first = str(e.args[0]).splitlines()[0] if e.args else "syntax error"
        raise _syntax_error(text, line, column, f"Syntax error: {first}") from None
    except Exception as e:  # lark's own errors for unexpected input
        raise _syntax_error(text, 1, 1, f"Syntax error: {e}") from None
    declared = set(names) | _bound_names(ast) | _TYPE_IDENTS
    known_fields = None if fields is None else set(fields)
    for node in ast.iter_subtrees_topdown():
        if node.data == "ident":
            tok = cast(lark.Token, node.children[0])
            if tok.value not in declared:
                raise _syntax_error(text, tok.line or 1, tok.column or 1,
                                    f"undeclared reference to '{tok.value}' (in container '')")
        elif node.data in ("ident_arg", "member_dot_arg"):
            tok = cast(lark.Token, node.children[0] if node.data == "ident_arg"
                       else node.children[1])
            if tok.value not in _KNOWN_FUNCTIONS:
                raise _syntax_error(text, tok.line or 1, tok.column or 1,
                                    f"undeclared reference to '{tok.value}' (in container '')")
        elif node.data == "member_dot" and known_fields is not None:
            target, tok = node.children[0], cast(lark.Token, node.children[1])
            if _is_ident(target, "variables") and tok.value not in known_fields:
                raise _syntax_error(text, tok.line or 1, max((tok.column or 1) - 1, 1),
                                    f"undefined field '{tok.value}'")
    return Program(text, ast)


def _is_ident(node: Any, name: str) -> bool:
    """Whether a member subtree is just the identifier ``name``."""
    while isinstance(node, lark.Tree) and node.data in ("member", "primary") \
            and len(node.children) == 1:
        node = node.children[0]
    return isinstance(node, lark.Tree) and node.data == "ident" \
        and cast(lark.Token, node.children[0]).value == name
