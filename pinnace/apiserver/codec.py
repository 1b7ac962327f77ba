"""Bytes in and out: request bodies, stored values and response encodings.

Stored values are the object's JSON *without* metadata.resourceVersion, with
apiVersion, kind and metadata first. The revision is spliced into the bytes
on the way out, so an object read from storage or a watch event is encoded
once and never decoded just to be sent.
"""

from __future__ import annotations

import zlib
from typing import Any

import orjson
import yaml

from .status import bad_request, too_large, unsupported_media

MAX_BODY = 3 * 1024 * 1024

try:  # libyaml is ten times faster when present
    _BaseLoader: Any = yaml.CSafeLoader
    _YamlDumper: Any = yaml.CSafeDumper
except AttributeError:  # pragma: no cover
    _BaseLoader = yaml.SafeLoader
    _YamlDumper = yaml.SafeDumper


class _YamlLoader(_BaseLoader):  # type: ignore[misc,valid-type]
    """YAML as sigs.k8s.io/yaml reads it: a timestamp stays the string it
    was written as (go-yaml keeps them strings for untyped values)."""

    yaml_implicit_resolvers = {
        first: [(tag, regexp) for tag, regexp in resolvers
                if tag != "tag:yaml.org,2002:timestamp"]
        for first, resolvers in _BaseLoader.yaml_implicit_resolvers.items()}

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
    # A right-sized copy: orjson's buffer is over-allocated (8 KiB at least)
    # and never shrunk, and stored bytes live long (watch cache, store):
    # a 1.5 KB pod would cost 8 KB.
    return bytes(memoryview(orjson.dumps(out)))


def with_revision(data: bytes, rev: int) -> bytes:
    """Stored bytes -> wire bytes carrying metadata.resourceVersion."""
    i = data.find(_META)
    if i < 0:  # pragma: no cover - every stored object has metadata
        return data
    i += len(_META)
    sep = b"" if data[i:i + 1] == b"}" else b","
    mv = memoryview(data)  # slices without copies: the result is the one copy
    return b"".join((mv[:i], b'"resourceVersion":"%d"' % rev, sep, mv[i:]))


def watch_line(type_: str, data: bytes, rev: int) -> bytes:
    """A JSON watch event line for stored bytes, carrying the revision:
    ``{"type":...,"object":...}\n`` made with one copy of the object."""
    i = data.find(_META)
    if i < 0:  # pragma: no cover - every stored object has metadata
        return b'{"type":"%s","object":%b}\n' % (type_.encode(), data)
    i += len(_META)
    sep = b"" if data[i:i + 1] == b"}" else b","
    mv = memoryview(data)
    return b"".join((b'{"type":"%s","object":' % type_.encode(), mv[:i],
                     b'"resourceVersion":"%d"' % rev, sep, mv[i:], b"}\n"))


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
    """One YAML document as JSON-able data; refused when its aliases would
    expand it past what a body may be (a "billion laughs" of a few hundred
    bytes), before anything is expanded."""
    loader = _YamlLoader(body)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _check_aliases(node, len(body))
        return _string_keys(loader.construct_document(node))
    except yaml.YAMLError as e:
        raise bad_request(f"error converting YAML to JSON: {e}") from None
    finally:
        loader.dispose()


# go-yaml's rule (what sigs.k8s.io/yaml, and so kube-apiserver, decode with):
# past 1,000 nodes and 100 aliases, the share of aliases among the nodes
# decoded may fall from 99 % (up to 400,000 nodes) to 10 % (4,000,000).
_ALIAS_LOW, _ALIAS_HIGH = 400_000, 4_000_000


def _allowed_alias_ratio(decoded: int) -> float:
    if decoded <= _ALIAS_LOW:
        return 0.99
    if decoded >= _ALIAS_HIGH:
        return 0.10
    return 0.99 - 0.89 * (decoded - _ALIAS_LOW) / (_ALIAS_HIGH - _ALIAS_LOW)


def _check_aliases(root: yaml.Node, body_size: int) -> None:
    """Count what decoding ``root`` would produce, aliases expanded, without
    expanding them: the nodes, aliases and scalar bytes of every subtree,
    each counted once and reused wherever an alias repeats it."""
    totals: dict[int, tuple[int, int, int]] = {}  # id(node) -> (nodes, aliases, bytes)
    seen: set[int] = set()
    aliased: set[tuple[int, int]] = set()  # (id(parent), child index) that are aliases
    # Visited in document order, so a node's first visit is its anchor.
    stack: list[tuple[yaml.Node, int, int, bool]] = [(root, 0, 0, False)]
    while stack:
        node, parent, index, done = stack.pop()
        kids = _children(node)
        if not done:
            if id(node) in seen:
                aliased.add((parent, index))
                continue
            seen.add(id(node))
            stack.append((node, parent, index, True))
            stack.extend((kids[k], id(node), k, False) for k in range(len(kids) - 1, -1, -1))
            continue
        nodes, aliases = 1, 0
        size = len(node.value) if isinstance(node, yaml.ScalarNode) else 0
        for k, kid in enumerate(kids):
            sub = totals.get(id(kid))
            if sub is None:
                raise yaml.YAMLError("yaml: anchor contains itself")
            nodes, aliases, size = nodes + sub[0], aliases + sub[1], size + sub[2]
            aliases += (id(node), k) in aliased
        totals[id(node)] = (nodes, aliases, size)
    nodes, aliases, size = totals[id(root)]
    if not aliased:
        return
    if aliases > 100 and nodes > 1000 and aliases / nodes > _allowed_alias_ratio(nodes):
        raise yaml.YAMLError("yaml: document contains excessive aliasing")
    if size + nodes > max(MAX_BODY, 4 * body_size):
        raise too_large()


def _string_keys(data: Any) -> Any:
    """JSON has only string keys: integer, float and boolean keys become
    their text as sigs.k8s.io/yaml writes it ("5", "1.5", "true"); a null,
    list or map key is refused."""
    stack = [data]
    while stack:
        cur = stack.pop()
        if isinstance(cur, list):
            stack.extend(v for v in cur if isinstance(v, (dict, list)))
            continue
        if not isinstance(cur, dict):
            continue
        if any(type(k) is not str for k in cur):
            items = list(cur.items())
            cur.clear()
            for k, v in items:
                cur[_key_text(k)] = v
        stack.extend(v for v in cur.values() if isinstance(v, (dict, list)))
    return data


def _key_text(key: Any) -> str:
    if isinstance(key, str):
        return key
    if isinstance(key, bool):
        return "true" if key else "false"
    if isinstance(key, int):
        return str(key)
    if isinstance(key, float):
        text = repr(key)
        return text[:-2] if text.endswith(".0") else text
    what = "null" if key is None else type(key).__name__
    raise yaml.YAMLError(f"unsupported map key of type {what}: {key!r}")


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    return []


def to_yaml(data: bytes | Any) -> bytes:
    obj = orjson.loads(data) if isinstance(data, bytes) else data
    return yaml.dump(obj, Dumper=_YamlDumper, sort_keys=False, allow_unicode=True).encode()


def dumps(obj: Any) -> bytes:
    return orjson.dumps(obj)


# -- response compression (APIResponseCompression, on by default upstream) --

# Bodies up to this size go out as they are (responsewriters' threshold).
GZIP_THRESHOLD = 128 * 1024
# Level 1: upstream's choice, least CPU for nearly the same size.
_GZIP_LEVEL = 1


def accepts_gzip(accept_encoding: str) -> bool:
    """Whether Accept-Encoding lists ``gzip`` as one of its comma-separated
    tokens, as kube-apiserver reads it (a token with parameters, such as
    ``gzip;q=0``, is not ``gzip``)."""
    return "gzip" in accept_encoding and any(
        t.strip() == "gzip" for t in accept_encoding.split(","))


def gzip_compressor() -> Any:
    """A zlib compressor writing one gzip member (feed it, then flush)."""
    return zlib.compressobj(_GZIP_LEVEL, zlib.DEFLATED, 16 + zlib.MAX_WBITS)


def gzip_bytes(data: bytes) -> bytes:
    c = gzip_compressor()
    return c.compress(data) + c.flush()
