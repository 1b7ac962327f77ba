"""Stored bytes, revisions spliced in, request bodies."""

from __future__ import annotations

import orjson
import pytest

from pinnace.apiserver import codec
from pinnace.apiserver.status import APIError


def test_storage_encoding_round_trips_with_revision() -> None:
    obj = {"kind": "Pod", "apiVersion": "v1", "spec": {"a": 1},
           "metadata": {"name": "p", "resourceVersion": "7"}}
    data = codec.encode_for_storage(obj)
    assert b"resourceVersion" not in data
    assert data.startswith(b'{"apiVersion":"v1","kind":"Pod","metadata":')
    wire = orjson.loads(codec.with_revision(data, 42))
    assert wire["metadata"] == {"resourceVersion": "42", "name": "p"}
    assert wire["spec"] == {"a": 1}
    assert codec.decode_stored(data, 42) == wire


def test_revision_splices_into_empty_metadata() -> None:
    assert orjson.loads(codec.with_revision(b'{"metadata":{}}', 3)) == {
        "metadata": {"resourceVersion": "3"}}


def test_bodies() -> None:
    assert codec.parse_body(b"a: 1\n", "application/yaml") == {"a": 1}
    assert codec.parse_body(b'{"a":1}', "application/json") == {"a": 1}
    with pytest.raises(APIError) as e:
        codec.parse_body(b"{nope", "application/json")
    assert e.value.code == 400
    with pytest.raises(APIError) as e:
        codec.parse_body(b"x" * (codec.MAX_BODY + 1), "application/json")
    assert e.value.code == 413
    with pytest.raises(APIError) as e:
        codec.parse_body(b"\x00", "application/cbor")
    assert e.value.code == 415
