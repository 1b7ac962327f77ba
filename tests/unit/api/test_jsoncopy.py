"""json_copy: a deep copy of decoded JSON, exact for what orjson cannot encode too."""

from __future__ import annotations

import datetime

import pytest

from pinnace.api.jsoncopy import json_copy

POD_SPEC = {"containers": [{"name": "c", "image": "busybox", "command": ["sleep", "1"],
                            "resources": {"limits": {"cpu": "1"}}, "stdin": False}],
            "terminationGracePeriodSeconds": 30, "activeDeadlineSeconds": None,
            "overhead": {"ratio": 0.5, "tiny": 1e-300}, "unicode": "ünï ☃ \U0001f600"}


def test_a_copy_is_equal_and_shares_nothing_with_its_original() -> None:
    out = json_copy(POD_SPEC)
    assert out == POD_SPEC and list(out) == list(POD_SPEC)
    out["containers"][0]["command"].append("more")
    out["overhead"]["ratio"] = 2
    assert POD_SPEC["containers"][0]["command"] == ["sleep", "1"]  # type: ignore[index]
    assert POD_SPEC["overhead"]["ratio"] == 0.5  # type: ignore[index]
    assert type(json_copy({"f": 1.0})["f"]) is float


@pytest.mark.parametrize("value", [
    {"big": 2**70, "list": [1]},                  # past 64 bits
    {"s": "\ud800 lone surrogate", "list": [1]},
    {1: "a key that is not a string", "list": [1]},
    {"when": datetime.datetime(2026, 12, 7), "list": [1]},
])
def test_what_orjson_cannot_encode_is_still_copied_exactly(value: dict[object, object]) -> None:
    out = json_copy(value)
    assert out == value and out is not value
    assert [type(k) for k in out] == [type(k) for k in value]
    assert out["list"] is not value["list"]


def test_scalars_come_back_as_they_are() -> None:
    for v in (None, True, 0, 2**70, 1.5, "s"):
        assert json_copy(v) is v
