"""resource.Quantity: parsing, canonical formatting and rounding, as
apimachinery does them.

A quantity is held as an exact ``Fraction`` plus the format its suffix
chose (binary "Ki", decimal "k", or exponent "e3"). The API server re-encodes
every quantity it decodes, so "0.5" is stored as "500m" and "1024Mi" as
"1Gi"; ``canonical`` reproduces that.
"""

from __future__ import annotations

import functools
import math
import re
from fractions import Fraction
from typing import Any

__all__ = [
    "ERR_FORMAT",
    "ERR_SUFFIX",
    "QuantityError",
    "canonical",
    "compare",
    "format_quantity",
    "milli_value",
    "parse_quantity",
    "parse_with_format",
    "round_up",
    "value",
]

ERR_FORMAT = ("quantities must match the regular expression "
              "'^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'")
ERR_SUFFIX = "unable to parse quantity's suffix"
ERR_NUMERIC = "unable to parse numeric value"

BINARY_SI = "BinarySI"
DECIMAL_SI = "DecimalSI"
DECIMAL_EXPONENT = "DecimalExponent"

_SPLIT = re.compile(r"^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$")
_NUMBER = re.compile(r"^[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)$")
_BINARY = {"Ki": 10, "Mi": 20, "Gi": 30, "Ti": 40, "Pi": 50, "Ei": 60}
_DECIMAL = {"n": -9, "u": -6, "m": -3, "": 0, "k": 3, "M": 6, "G": 9, "T": 12, "P": 15, "E": 18}
_DECIMAL_SUFFIX = {v: k for k, v in _DECIMAL.items()}
_BINARY_SUFFIX = ["", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei"]
_EXPONENT = re.compile(r"^[eE]([+-]?[0-9]+)$")


class QuantityError(ValueError):
    """A string that is not a quantity; str() is upstream's wording."""


def _as_text(q: Any) -> str:
    if isinstance(q, bool):
        raise QuantityError(ERR_FORMAT)
    if isinstance(q, int):
        return str(q)
    if isinstance(q, float):
        return repr(q) if not q.is_integer() else str(int(q))
    if isinstance(q, str):
        return q.strip()
    raise QuantityError(ERR_FORMAT)


def parse_with_format(q: Any) -> tuple[Fraction, str]:
    """The exact value and format (BinarySI/DecimalSI/DecimalExponent)."""
    return _parse_text(_as_text(q))


# Quantities repeat ("100m", "128Mi"): parsing each distinct string once
# matters on the create path, where every pod's resources are defaulted.
@functools.lru_cache(maxsize=4096)
def _parse_text(s: str) -> tuple[Fraction, str]:
    m = _SPLIT.match(s)
    if not m:
        raise QuantityError(ERR_FORMAT)
    number, suffix = m.group(1), m.group(2)
    if not _NUMBER.match(number):
        raise QuantityError(ERR_NUMERIC)
    base = Fraction(number)
    if suffix in _BINARY:
        return base * (2 ** _BINARY[suffix]), BINARY_SI
    if suffix in _DECIMAL:
        return base * Fraction(10) ** _DECIMAL[suffix], DECIMAL_SI
    em = _EXPONENT.match(suffix)
    if em:
        return base * Fraction(10) ** int(em.group(1)), DECIMAL_EXPONENT
    raise QuantityError(ERR_SUFFIX)


def parse_quantity(q: Any) -> Fraction:
    """The exact value of a quantity string (or JSON number)."""
    return parse_with_format(q)[0]


def _ceil_away(x: Fraction) -> int:
    """Round away from zero, as inf.Dec RoundUp does."""
    return math.ceil(x) if x >= 0 else -math.ceil(-x)


def round_up(v: Fraction, scale: int) -> Fraction:
    """Round to a multiple of 10**scale, away from zero (Quantity.RoundUp)."""
    unit = Fraction(10) ** scale
    return _ceil_away(v / unit) * unit


def _decimal(v: Fraction, exponent_form: bool) -> str:
    # Quantities carry at most nano precision; the remainder rounds up.
    mant = _ceil_away(v * 10 ** 9)
    exp = -9
    if mant == 0:
        return "0"
    while mant % 1000 == 0 and exp < 18:
        mant //= 1000
        exp += 3
    if exponent_form:
        return f"{mant}e{exp}" if exp else str(mant)
    return f"{mant}{_DECIMAL_SUFFIX[exp]}"


def format_quantity(v: Fraction, fmt: str = DECIMAL_SI) -> str:
    """The canonical string of value ``v`` in format ``fmt``."""
    if v == 0:
        return "0"
    if fmt == BINARY_SI:
        # Small or fractional binary values are written in decimal.
        if -1024 < v < 1024 or v.denominator != 1:
            return _decimal(v, False)
        n = int(v)
        i = 0
        while i < 6 and n % 1024 == 0:
            n //= 1024
            i += 1
        return f"{n}{_BINARY_SUFFIX[i]}"
    return _decimal(v, fmt == DECIMAL_EXPONENT)


def canonical(q: Any, milli: bool = False) -> str:
    """What the API server writes back for quantity ``q``; ``milli`` first
    rounds up to milli precision, as core/v1 defaulting does for resource lists."""
    if isinstance(q, str):
        return _canonical_text(q.strip(), milli)
    return _canonical(q, milli)


@functools.lru_cache(maxsize=4096)
def _canonical_text(q: str, milli: bool) -> str:
    return _canonical(q, milli)


def _canonical(q: Any, milli: bool) -> str:
    v, fmt = parse_with_format(q)
    if milli:
        v = round_up(v, -3)
    return format_quantity(v, fmt)


def milli_value(q: Any) -> int:
    """Quantity.MilliValue: the value in thousandths, rounded up."""
    return _ceil_away(parse_quantity(q) * 1000)


def value(q: Any) -> int:
    """Quantity.Value: the value rounded up to an integer."""
    return _ceil_away(parse_quantity(q))


def compare(a: Any, b: Any) -> int:
    """-1, 0 or 1 as a is less than, equal to or more than b."""
    x, y = parse_quantity(a), parse_quantity(b)
    return (x > y) - (x < y)
