"""Bytes in and out: request bodies, stored values and response encodings.

Stored values are the object's JSON *without* metadata.resourceVersion, with
apiVersion, kind and metadata first. The revision is spliced into the bytes
on the way out, so an object read from storage or a watch event is encoded
once and never decoded just to be sent.
"""

from __future__ import annotations

from typing import Any

import orjson
import yaml

from .status import bad_request, too_large, unsupported_media

MAX_BODY = 3 * 1024 * 1024

try:  # libyaml is ten times faster when present
    _YamlLoader: Any = yaml.CSafeLoader
    _YamlDumper: Any = yaml.CSafeDumper
except AttributeError:  # pragma: no cover
    _YamlLoader = yaml.SafeLoader
    _YamlDumper = yaml.SafeDumper

_META = b'"metadata":{'


def encode_for_storage(obj: dict[str, Any]) -> bytes:
    meta = {k: v for k, v in obj.get("metadata", {}).items() if k != "resourceVersion"}
    out: dict[str, Any] = {}
    if "apiVersion" in obj:
        out["apiVersion"] = obj["apiVersion"]
    if "kind" in obj:
        out["kind"] = obj["kind"]
    out["metadata"] = meta
    for k, v in obj.items():
        if k not in out:
            out[k] = v
    return orjson.dumps(out)


def with_revision(data: bytes, rev: int) -> bytes:
    """Stored bytes -> wire bytes carrying metadata.resourceVersion."""
    i = data.find(_META)
    if i < 0:  # pragma: no cover - every stored object has metadata
        return data
    i += len(_META)
    sep = b"" if data[i:i + 1] == b"}" else b","
    return b'%s"resourceVersion":"%d"%s%s' % (data[:i], rev, sep, data[i:])


def decode_stored(data: bytes, rev: int) -> dict[str, Any]:
    obj: dict[str, Any] = orjson.loads(data)
    obj["metadata"]["resourceVersion"] = str(rev)
    return obj


def parse_body(body: bytes, content_type: str) -> Any:
    if len(body) > MAX_BODY:
        raise too_large()
    ct = content_type.split(";")[0].strip().lower()
    if ct in ("", "application/json", "application/merge-patch+json",
              "application/strategic-merge-patch+json", "application/json-patch+json", "*/*"):
        try:
            return orjson.loads(body)
        except orjson.JSONDecodeError as e:
            if ct in ("", "*/*"):
                return parse_yaml(body)
            raise bad_request(f"error decoding request body: {e}") from None
    if ct in ("application/yaml", "application/apply-patch+yaml", "application/x-yaml",
              "text/yaml"):
        return parse_yaml(body)
    if ct == "application/vnd.kubernetes.protobuf":
        return parse_protobuf(body)
    raise unsupported_media("the body of the request was in an unknown format - accepted media "
                            "types include: application/json, application/yaml")


def parse_protobuf(body: bytes) -> Any:
    """Kubernetes protobuf (what kubectl's typed clients send) -> the JSON dict."""
    from pinnace.api import protobuf

    try:
        return protobuf.decode(body)
    except protobuf.ProtobufUnavailable as e:
        raise unsupported_media(f"the body of the request was in an unknown format - accepted "
                                f"media types include: application/json, application/yaml "
                                f"({e})") from None
    except protobuf.ProtobufError as e:
        raise bad_request(f"error decoding protobuf request body: {e}") from None


def parse_yaml(body: bytes) -> Any:
    try:
        return yaml.load(body, Loader=_YamlLoader)
    except yaml.YAMLError as e:
        raise bad_request(f"error converting YAML to JSON: {e}") from None


def to_yaml(data: bytes | Any) -> bytes:
    obj = orjson.loads(data) if isinstance(data, bytes) else data
    return yaml.dump(obj, Dumper=_YamlDumper, sort_keys=False, allow_unicode=True).encode()


def dumps(obj: Any) -> bytes:
    return orjson.dumps(obj)
