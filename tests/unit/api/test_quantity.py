"""resource.Quantity parsing and canonical forms, as the API server writes them back."""

from fractions import Fraction

import pytest

from pinnace.api import quantity
from pinnace.api.quantity import QuantityError


@pytest.mark.parametrize(("given", "stored"), [
    ("0.5", "500m"), ("1024Mi", "1Gi"), ("1.5Gi", "1536Mi"), ("100m", "100m"), ("1", "1"),
    ("1000", "1k"), ("1500000", "1500k"), ("1e3", "1e3"), ("12e-3", "12e-3"), ("512Ki", "512Ki"),
    ("0.1Ki", "102400m"), ("1000k", "1M"), ("-1.5", "-1500m"), ("0", "0"), ("0Mi", "0"),
    (".5", "500m"), (1, "1"), (0.25, "250m"), ("0.0000000001", "1n"), (" 2Gi ", "2Gi"),
])
def test_canonical(given, stored):
    assert quantity.canonical(given) == stored


def test_values():
    assert quantity.parse_quantity("1.5Gi") == Fraction(3 * 2**29)
    assert quantity.milli_value("0.1") == 100
    assert quantity.milli_value("1Ki") == 1024000
    assert quantity.value("100m") == 1  # rounds up
    assert quantity.value("2") == 2
    assert quantity.compare("1Gi", "1G") > 0
    assert quantity.compare("1000m", "1") == 0


def test_milli_rounding_of_resource_lists():
    assert quantity.canonical("0.0001", milli=True) == "1m"
    assert quantity.canonical("1.0001", milli=True) == "1001m"


@pytest.mark.parametrize("bad", ["abc", "1Kb", "", "--1", "1 Gi"])
def test_format_error_wording(bad):
    with pytest.raises(QuantityError) as e:
        quantity.parse_quantity(bad)
    assert str(e.value) == ("quantities must match the regular expression "
                            "'^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'")


def test_suffix_error():
    with pytest.raises(QuantityError, match="unable to parse quantity's suffix"):
        quantity.parse_quantity("1K")
