"""Objects made up from the API server's own OpenAPI v3 schemas, mostly
well-formed and sometimes not (a wrong type, an unknown field, a huge
number, an odd string), for the fuzz test and bench/fuzz.py."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

Obj = dict[str, Any]

# Strings that have broken parsers somewhere: empty, long, unicode, control
# characters, path and selector syntax, numbers in disguise.
ODD_STRINGS = ["", " ", "a" * 300, "ü∂😀", "\x00", "\n", "../..", "a=b,c!=d", "a in ()", "~",
               "null", "1e23", "-1", "9223372036854775808", "{\"a\":1}", "%zz", "*"]
ODD_NUMBERS = [0, -1, 2**31, 2**63, -(2**63) - 1, 2**70, 1.5, float("1e300")]
NAME = st.one_of(st.from_regex(r"\A[a-z][a-z0-9-]{0,20}[a-z0-9]\Z"), st.sampled_from(ODD_STRINGS))


def _text() -> st.SearchStrategy[str]:
    return st.one_of(st.text(alphabet="abcxyz0123-./:=", max_size=12), st.sampled_from(ODD_STRINGS))


def _any_scalar() -> st.SearchStrategy[Any]:
    return st.one_of(st.none(), st.booleans(), st.sampled_from(ODD_NUMBERS), st.integers(-5, 5),
                     _text())


def _under(base: Any, made: Any) -> Any:
    """``made`` with ``base`` laid over it: base's values win, made's extra
    fields stay (in objects; lists are base's)."""
    if isinstance(base, dict) and isinstance(made, dict):
        out = dict(made)
        for k, v in base.items():
            out[k] = _under(v, made.get(k))
        return out
    return base


class Schemas:
    """Strategies for the definitions of one OpenAPI v3 document."""

    def __init__(self, doc: Obj):
        self.defs: dict[str, Obj] = (doc.get("components") or {}).get("schemas") or {}

    def _resolve(self, node: Obj) -> Obj:
        for _ in range(5):
            ref = node.get("$ref")
            if ref is None:
                all_of = node.get("allOf")
                if all_of and len(all_of) == 1:
                    node = all_of[0]
                    continue
                return node
            node = self.defs.get(ref.rsplit("/", 1)[-1], {})
        return node

    def value(self, node: Obj, depth: int) -> st.SearchStrategy[Any]:
        """Usually what ``node`` describes; one time in ten, anything."""
        return st.one_of(self._typed(node, depth), _any_scalar()) if depth else \
            self._typed(node, depth)

    def _typed(self, node: Obj, depth: int) -> st.SearchStrategy[Any]:
        node = self._resolve(node)
        kind = node.get("type")
        if depth > 4:
            return _any_scalar()
        if kind == "object" or "properties" in node:
            props = node.get("properties") or {}
            if props:
                return self.obj(node, depth + 1)
            extra = node.get("additionalProperties")
            item = self.value(extra, depth + 1) if isinstance(extra, dict) else _any_scalar()
            return st.dictionaries(_text(), item, max_size=3)
        if kind == "array":
            return st.lists(self.value(node.get("items") or {}, depth + 1), max_size=3)
        if kind == "string":
            if node.get("enum"):
                return st.one_of(st.sampled_from(node["enum"]), _text())
            return _text()
        if kind == "integer":
            return st.one_of(st.integers(-3, 70000), st.sampled_from(ODD_NUMBERS))
        if kind == "number":
            return st.one_of(st.floats(allow_nan=False, allow_infinity=False), st.integers())
        if kind == "boolean":
            return st.booleans()
        if "x-kubernetes-int-or-string" in node:
            return st.one_of(st.integers(-1, 70000), _text())
        return _any_scalar()

    def obj(self, node: Obj, depth: int) -> st.SearchStrategy[Obj]:
        props = {k: v for k, v in (node.get("properties") or {}).items()
                 if k not in ("apiVersion", "kind", "metadata", "status")}
        if not props:
            return st.just({})
        keys = sorted(props)
        chosen = st.lists(st.sampled_from(keys), max_size=min(4, len(keys)), unique=True)

        @st.composite
        def build(draw: Any) -> Obj:
            out = {k: draw(self.value(props[k], depth)) for k in draw(chosen)}
            if draw(st.integers(0, 9)) == 0:  # now and then a field no schema has
                out[draw(_text())] = draw(_any_scalar())
            return out
        return build()

    def kind(self, definition: str, api_version: str, kind: str,
             base: Obj | None = None) -> st.SearchStrategy[Obj]:
        """A whole object of ``definition``: apiVersion, kind and a name set,
        the rest made up; half of them grown from ``base`` (a valid object's
        fields, which win), so that some get past validation."""
        body = self.obj(self.defs[definition], 1)

        @st.composite
        def build(draw: Any) -> Obj:
            obj = draw(body)
            if base and draw(st.booleans()):
                obj = _under(base, obj)
            meta: Obj = {"name": draw(NAME)}
            if draw(st.booleans()):
                meta["labels"] = draw(st.dictionaries(_text(), _text(), max_size=2))
            if draw(st.integers(0, 4)) == 0:
                meta["annotations"] = draw(st.dictionaries(_text(), _any_scalar(), max_size=2))
            return {"apiVersion": api_version, "kind": kind, "metadata": meta, **obj}
        return build()
