"""Label and field selectors, parsed, matched and printed the way
apimachinery does (k8s.io/apimachinery/pkg/labels and pkg/fields), so that
``kubectl get -l ...`` / ``--field-selector ...`` behave, and fail, as they
do against kube-apiserver.

Label selectors: ``a=b``, ``a==b``, ``a!=b``, ``a in (x,y)``,
``a notin (x)``, ``a``, ``!a``, ``a>1``, ``a<1``, joined by commas.
Field selectors: ``f=v``, ``f==v``, ``f!=v`` joined by commas, with ``\\``,
``\\,`` and ``\\=`` escapes in values; which fields a resource supports is
data below (upstream's field label conversion functions and SelectableFields).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from pinnace.api.field import FieldError, aggregate, invalid, not_supported
from pinnace.api.resources import BUILTIN


class SelectorError(ValueError):
    """A selector that does not parse or validate; str() is upstream's message."""


# --- label key / value validation (apimachinery util/validation) -------------

_QNAME_FMT = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]"
_QNAME_RE = re.compile(f"^{_QNAME_FMT}$")
_QNAME_MSG = ("must consist of alphanumeric characters, '-', '_' or '.', and must start "
              "and end with an alphanumeric character")
_DNS1123_LABEL_FMT = "[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_DNS1123_SUBDOMAIN_FMT = f"{_DNS1123_LABEL_FMT}(\\.{_DNS1123_LABEL_FMT})*"
_DNS1123_SUBDOMAIN_RE = re.compile(f"^{_DNS1123_SUBDOMAIN_FMT}$")
_DNS1123_SUBDOMAIN_MSG = ("a lowercase RFC 1123 subdomain must consist of lower case alphanumeric "
                          "characters, '-' or '.', and must start and end with an alphanumeric "
                          "character")
_LABEL_VALUE_FMT = f"({_QNAME_FMT})?"
_LABEL_VALUE_RE = re.compile(f"^{_LABEL_VALUE_FMT}$")
_LABEL_VALUE_MSG = ("a valid label must be an empty string or consist of alphanumeric characters, "
                    "'-', '_' or '.', and must start and end with an alphanumeric character")


def _regex_error(msg: str, fmt: str, *examples: str) -> str:
    # Upstream's wording, including its double space between examples.
    if not examples:
        return f"{msg} (regex used for validation is '{fmt}')"
    msg += " (e.g. "
    for i, ex in enumerate(examples):
        if i:
            msg += " or "
        msg += f"'{ex}', "
    return msg + f"regex used for validation is '{fmt}')"


def _max_len(n: int) -> str:
    return f"must be no more than {n} characters"


def label_key_errors(key: str) -> list[str]:
    """Problems with a label key (a qualified name), worded as upstream."""
    errs: list[str] = []
    parts = key.split("/")
    if len(parts) == 1:
        name = parts[0]
    elif len(parts) == 2:
        prefix, name = parts
        if not prefix:
            errs.append("prefix part must be non-empty")
        else:
            if len(prefix) > 253:
                errs.append("prefix part " + _max_len(253))
            if not _DNS1123_SUBDOMAIN_RE.match(prefix):
                errs.append("prefix part " + _regex_error(
                    _DNS1123_SUBDOMAIN_MSG, _DNS1123_SUBDOMAIN_FMT, "example.com"))
    else:
        return ["a qualified name " + _regex_error(_QNAME_MSG, _QNAME_FMT, "MyName", "my.name",
                                                  "123-abc")
                + " with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"]
    if not name:
        errs.append("name part must be non-empty")
    elif len(name) > 63:
        errs.append("name part " + _max_len(63))
    if not _QNAME_RE.match(name):
        errs.append("name part " + _regex_error(_QNAME_MSG, _QNAME_FMT, "MyName", "my.name",
                                                "123-abc"))
    return errs


def label_value_errors(value: str) -> list[str]:
    errs: list[str] = []
    if len(value) > 63:
        errs.append(_max_len(63))
    if not _LABEL_VALUE_RE.match(value):
        errs.append(_regex_error(_LABEL_VALUE_MSG, _LABEL_VALUE_FMT, "MyValue", "my_value",
                                 "12345"))
    return errs


# --- label selectors ---------------------------------------------------------

EXISTS = "exists"
DOES_NOT_EXIST = "!"
EQUALS = "="
DOUBLE_EQUALS = "=="
NOT_EQUALS = "!="
IN = "in"
NOT_IN = "notin"
GT = "gt"
LT = "lt"
_BINARY_OPS = ["in", "notin", "=", "==", "!=", "gt", "lt"]
_ALL_OPS = _BINARY_OPS + ["exists", "!"]


@dataclass(frozen=True, slots=True)
class Requirement:
    key: str
    operator: str  # one of the constants above
    values: tuple[str, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        op = self.operator
        if op in (IN, EQUALS, DOUBLE_EQUALS):
            v = labels.get(self.key)
            return v is not None and v in self.values
        if op in (NOT_IN, NOT_EQUALS):
            v = labels.get(self.key)
            return v is None or v not in self.values
        if op == EXISTS:
            return self.key in labels
        if op == DOES_NOT_EXIST:
            return self.key not in labels
        if op in (GT, LT):
            v = labels.get(self.key)
            if v is None or len(self.values) != 1:
                return False
            try:
                have, want = _go_int(v), _go_int(self.values[0])
            except ValueError:
                return False
            return have > want if op == GT else have < want
        return False

    def __str__(self) -> str:
        op = self.operator
        if op == EXISTS:
            return self.key
        if op == DOES_NOT_EXIST:
            return "!" + self.key
        vals = self.values[0] if len(self.values) == 1 else ",".join(sorted(self.values))
        if op in (IN, NOT_IN):
            return f"{self.key} {op} ({vals})"
        sym = {EQUALS: "=", DOUBLE_EQUALS: "==", NOT_EQUALS: "!=", GT: ">", LT: "<"}[op]
        return f"{self.key}{sym}{vals}"


def _go_int(s: str) -> int:
    # strconv.ParseInt(s, 10, 64): optional sign, decimal digits only.
    if not re.fullmatch(r"[+-]?[0-9]+", s):
        raise ValueError(s)
    n = int(s)
    if not -(2 ** 63) <= n < 2 ** 63:
        raise ValueError(s)
    return n


def new_requirement(key: str, operator: str, values: Iterable[str] = ()) -> Requirement:
    """labels.NewRequirement: validate and build; raises SelectorError."""
    vals = list(values)
    errs: list[FieldError] = []
    kerrs = label_key_errors(key)
    if kerrs:
        errs.append(invalid("key", key, "; ".join(kerrs)))
    if operator in (IN, NOT_IN):
        if not vals:
            errs.append(invalid("values", vals,
                                "for 'in', 'notin' operators, values set can't be empty"))
    elif operator in (EQUALS, DOUBLE_EQUALS, NOT_EQUALS):
        if len(vals) != 1:
            errs.append(invalid("values", vals, "exact-match compatibility requires one single value"))
    elif operator in (EXISTS, DOES_NOT_EXIST):
        if vals:
            errs.append(invalid("values", vals,
                                "values set must be empty for exists and does not exist"))
    elif operator in (GT, LT):
        if len(vals) != 1:
            errs.append(invalid("values", vals,
                                "for 'Gt', 'Lt' operators, exactly one value is required"))
        for i, v in enumerate(vals):
            try:
                _go_int(v)
            except ValueError:
                errs.append(invalid(f"values[{i}]", v,
                                    "for 'Gt', 'Lt' operators, the value must be an integer"))
    else:
        errs.append(not_supported("operator", operator, _ALL_OPS))
    for i, v in enumerate(vals):
        verrs = label_value_errors(v)
        if verrs:
            errs.append(invalid(f"values[{i}][{key}]", v, "; ".join(verrs)))
    if errs:
        raise SelectorError(aggregate(errs))
    return Requirement(key, operator, tuple(vals))


class LabelSelector:
    """An AND of requirements. ``LabelSelector.nothing()`` matches nothing
    (a nil metav1.LabelSelector); no requirements matches everything."""

    __slots__ = ("_exact", "_nothing", "requirements")

    def __init__(self, requirements: Iterable[Requirement] = (), *, nothing: bool = False):
        self.requirements: tuple[Requirement, ...] = tuple(sorted(requirements,
                                                                 key=lambda r: r.key))
        self._nothing = nothing
        # Pure equality selectors (the common case: RC/Service/matchLabels)
        # match with one dict lookup per key.
        exact: dict[str, str] | None = {}
        for r in self.requirements:
            if r.operator in (EQUALS, DOUBLE_EQUALS, IN) and len(r.values) == 1 \
                    and r.key not in exact:  # type: ignore[operator]
                exact[r.key] = r.values[0]  # type: ignore[index]
            else:
                exact = None
                break
        self._exact = exact

    @classmethod
    def nothing(cls) -> LabelSelector:
        return cls(nothing=True)

    @classmethod
    def everything(cls) -> LabelSelector:
        return cls()

    def matches(self, labels: Mapping[str, str] | None) -> bool:
        if self._nothing:
            return False
        if labels is None:
            labels = {}
        exact = self._exact
        if exact is not None:
            get = labels.get
            for k, v in exact.items():
                if get(k) != v:
                    return False
            return True
        return all(r.matches(labels) for r in self.requirements)

    def empty(self) -> bool:
        """True when the selector does not restrict anything."""
        return not self._nothing and not self.requirements

    def matches_nothing(self) -> bool:
        return self._nothing

    def requires_exact_match(self, key: str) -> str | None:
        for r in self.requirements:
            if r.key == key:
                if r.operator in (EQUALS, DOUBLE_EQUALS, IN) and len(r.values) == 1:
                    return r.values[0]
                return None
        return None

    def __str__(self) -> str:
        return ",".join(str(r) for r in self.requirements)

    def __repr__(self) -> str:
        return f"LabelSelector({str(self)!r})" if not self._nothing else "LabelSelector.nothing()"

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, LabelSelector) and self._nothing == other._nothing
                and self.requirements == other.requirements)

    def __hash__(self) -> int:
        return hash((self._nothing, self.requirements))


# Lexer / parser: the same token rules and error texts as labels/selector.go.
_T_ERR, _T_EOS, _T_CPAR, _T_COMMA, _T_NOT, _T_DEQ, _T_EQ, _T_GT, _T_ID, _T_IN, _T_LT, _T_NEQ, \
    _T_NOTIN, _T_OPAR = range(14)
_STRING2TOKEN = {")": _T_CPAR, ",": _T_COMMA, "!": _T_NOT, "==": _T_DEQ, "=": _T_EQ, ">": _T_GT,
                 "in": _T_IN, "<": _T_LT, "!=": _T_NEQ, "notin": _T_NOTIN, "(": _T_OPAR}
_SPECIAL = frozenset("=!(),><")
_WHITESPACE = frozenset(" \t\r\n")


def _lex(s: str) -> list[tuple[int, str]]:
    items: list[tuple[int, str]] = []
    pos, n = 0, len(s)
    while True:
        while pos < n and s[pos] in _WHITESPACE:
            pos += 1
        if pos >= n:
            items.append((_T_EOS, ""))
            return items
        ch = s[pos]
        if ch in _SPECIAL:
            # Longest run of special symbols that still forms a token.
            buf = ""
            last: tuple[int, str] | None = None
            while pos < n and s[pos] in _SPECIAL:
                buf += s[pos]
                tok = _STRING2TOKEN.get(buf)
                if tok is not None:
                    last = (tok, buf)
                    pos += 1
                elif last is not None:
                    break
                else:
                    pos += 1
            if last is None:
                items.append((_T_ERR, f"error expected: keyword found '{buf}'"))
            else:
                items.append(last)
        else:
            start = pos
            while pos < n and s[pos] not in _SPECIAL and s[pos] not in _WHITESPACE:
                pos += 1
            lit = s[start:pos]
            items.append((_STRING2TOKEN.get(lit, _T_ID), lit))
        if items[-1][0] == _T_EOS:
            return items


class _Parser:
    def __init__(self, s: str):
        self.items = _lex(s)
        self.pos = 0

    def _tok(self, i: int, values: bool) -> tuple[int, str]:
        tok, lit = self.items[i]
        if values and tok in (_T_IN, _T_NOTIN):
            tok = _T_ID
        return tok, lit

    def lookahead(self, values: bool = True) -> tuple[int, str]:
        return self._tok(self.pos, values)

    def consume(self, values: bool = True) -> tuple[int, str]:
        self.pos += 1
        return self._tok(self.pos - 1, values)

    def parse(self) -> list[Requirement]:
        reqs: list[Requirement] = []
        while True:
            tok, lit = self.lookahead()
            if tok in (_T_ID, _T_NOT):
                try:
                    reqs.append(self.parse_requirement())
                except SelectorError as e:
                    raise SelectorError(f"unable to parse requirement: {e}") from None
                t, lit2 = self.consume()
                if t == _T_EOS:
                    return reqs
                if t == _T_COMMA:
                    t2, l2 = self.lookahead()
                    if t2 not in (_T_ID, _T_NOT):
                        raise SelectorError(f"found '{l2}', expected: identifier after ','")
                else:
                    raise SelectorError(f"found '{lit2}', expected: ',' or 'end of string'")
            elif tok == _T_EOS:
                return reqs
            else:
                raise SelectorError(f"found '{lit}', expected: !, identifier, or 'end of string'")

    def parse_requirement(self) -> Requirement:
        op = ""
        tok, lit = self.consume()
        if tok == _T_NOT:
            op = DOES_NOT_EXIST
            tok, lit = self.consume()
        if tok != _T_ID:
            raise SelectorError(f"found '{lit}', expected: identifier")
        kerrs = label_key_errors(lit)
        if kerrs:
            # Upstream validates against a nil field path, which prints as "<nil>".
            raise SelectorError(f"<nil>: {invalid('', lit, '; '.join(kerrs)).body()}")
        key = lit
        t, _ = self.lookahead()
        if op == DOES_NOT_EXIST or t in (_T_EOS, _T_COMMA):
            # "!a=b" stops after "!a"; the caller then trips over "=".
            return new_requirement(key, op or EXISTS, [])
        tok, lit = self.consume(values=False)
        ops = {_T_IN: IN, _T_EQ: EQUALS, _T_DEQ: DOUBLE_EQUALS, _T_GT: GT, _T_LT: LT,
               _T_NOTIN: NOT_IN, _T_NEQ: NOT_EQUALS}
        if tok not in ops:
            raise SelectorError(f"found '{lit}', expected: {', '.join(_BINARY_OPS)}")
        op = ops[tok]
        values = self.parse_values() if op in (IN, NOT_IN) else self.parse_exact_value()
        return new_requirement(key, op, sorted(values))

    def parse_values(self) -> set[str]:
        tok, lit = self.consume()
        if tok != _T_OPAR:
            raise SelectorError(f"found '{lit}' expected: '('")
        tok, lit = self.lookahead()
        if tok in (_T_ID, _T_COMMA):
            s = self.parse_identifiers_list()
            if self.consume()[0] != _T_CPAR:
                raise SelectorError(f"found '{lit}', expected: ')'")
            return s
        if tok == _T_CPAR:
            self.consume()
            return {""}
        raise SelectorError(f"found '{lit}', expected: ',', ')' or identifier")

    def parse_identifiers_list(self) -> set[str]:
        s: set[str] = set()
        while True:
            tok, lit = self.consume()
            if tok == _T_ID:
                s.add(lit)
                tok2, lit2 = self.lookahead()
                if tok2 == _T_COMMA:
                    continue
                if tok2 == _T_CPAR:
                    return s
                raise SelectorError(f"found '{lit2}', expected: ',' or ')'")
            if tok == _T_COMMA:
                if not s:
                    s.add("")
                tok2, _ = self.lookahead()
                if tok2 == _T_CPAR:
                    s.add("")
                    return s
                if tok2 == _T_COMMA:
                    s.add("")
                continue
            raise SelectorError(f"found '{lit}', expected: ',', or identifier")

    def parse_exact_value(self) -> set[str]:
        tok, _ = self.lookahead()
        if tok in (_T_EOS, _T_COMMA):
            return {""}
        tok, lit = self.consume()
        if tok == _T_ID:
            return {lit}
        raise SelectorError(f"found '{lit}', expected: identifier")


def parse_label_selector(s: str) -> LabelSelector:
    """labels.Parse. Raises SelectorError with upstream's message."""
    if not s.strip():
        return LabelSelector()
    return LabelSelector(_Parser(s).parse())


_SELECTOR_OPS = {"In": IN, "NotIn": NOT_IN, "Exists": EXISTS, "DoesNotExist": DOES_NOT_EXIST}


def label_selector_from_dict(sel: Mapping[str, Any] | None, *, plain_map: bool | None = None
                             ) -> LabelSelector:
    """A selector from a metav1.LabelSelector ({matchLabels, matchExpressions})
    or, for RC/Service selectors, a plain map of label -> value.

    metav1.LabelSelectorAsSelector semantics: None matches nothing, an empty
    selector matches everything. A plain map (None or empty) matches
    everything, as labels.SelectorFromSet does. ``plain_map`` forces the
    reading; by default a dict is a LabelSelector when it only has the
    matchLabels/matchExpressions keys.
    """
    if plain_map is None:
        plain_map = sel is not None and not (
            set(sel) <= {"matchLabels", "matchExpressions"}
            and all(isinstance(v, (dict, list)) or v is None for v in sel.values()))
    if plain_map:
        # Already validated objects: no validation, like SelectorFromValidatedSet.
        return LabelSelector(Requirement(k, EQUALS, (str(v),)) for k, v in (sel or {}).items())
    if sel is None:
        return LabelSelector.nothing()
    match_labels = sel.get("matchLabels") or {}
    exprs = sel.get("matchExpressions") or []
    if not match_labels and not exprs:
        return LabelSelector()
    reqs = [new_requirement(k, EQUALS, [v]) for k, v in match_labels.items()]
    for e in exprs:
        op = _SELECTOR_OPS.get(e.get("operator", ""))
        if op is None:
            raise SelectorError(f'"{e.get("operator", "")}" is not a valid label selector operator')
        reqs.append(new_requirement(e.get("key", ""), op, list(e.get("values") or [])))
    return LabelSelector(reqs)


def format_labels(labels: Mapping[str, str] | None) -> str:
    """labels.FormatLabels: "k=v,..." sorted by key, or "<none>"."""
    if not labels:
        return "<none>"
    return ",".join(f"{k}={labels[k]}" for k in sorted(labels))


def format_label_selector(sel: Mapping[str, Any] | None) -> str:
    """metav1.FormatLabelSelector: the selector's string, "<none>" when empty,
    "<error>" when it does not convert."""
    try:
        s = str(label_selector_from_dict(sel, plain_map=False))
    except SelectorError:
        return "<error>"
    return s or "<none>"


# --- field selectors ---------------------------------------------------------

@dataclass(frozen=True, slots=True)
class FieldTerm:
    field: str
    operator: str  # "=", "==" or "!="
    value: str

    def matches(self, fields: Mapping[str, str]) -> bool:
        have = fields.get(self.field, "")
        return have != self.value if self.operator == NOT_EQUALS else have == self.value

    def __str__(self) -> str:
        op = "!=" if self.operator == NOT_EQUALS else "="
        return f"{self.field}{op}{escape_field_value(self.value)}"


class FieldSelector:
    __slots__ = ("terms",)

    def __init__(self, terms: Iterable[FieldTerm] = ()):
        self.terms: tuple[FieldTerm, ...] = tuple(terms)

    def matches(self, fields: Mapping[str, str]) -> bool:
        for t in self.terms:
            if not t.matches(fields):
                return False
        return True

    def empty(self) -> bool:
        return not self.terms

    def requires_exact_match(self, field: str) -> str | None:
        for t in self.terms:
            if t.field == field and t.operator != NOT_EQUALS:
                return t.value
        return None

    def transform(self, fn: Callable[[str, str], tuple[str, str]]) -> FieldSelector:
        out = []
        for t in self.terms:
            f, v = fn(t.field, t.value)
            out.append(FieldTerm(f, t.operator, v))
        return FieldSelector(out)

    def fields(self) -> list[str]:
        return [t.field for t in self.terms]

    def __str__(self) -> str:
        return ",".join(str(t) for t in self.terms)

    def __repr__(self) -> str:
        return f"FieldSelector({str(self)!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, FieldSelector) and self.terms == other.terms

    def __hash__(self) -> int:
        return hash(self.terms)


def escape_field_value(s: str) -> str:
    return s.replace("\\", "\\\\").replace(",", "\\,").replace("=", "\\=")


def unescape_field_value(s: str) -> str:
    if not any(c in s for c in "\\,="):
        return s
    out: list[str] = []
    in_slash = False
    for c in s:
        if in_slash:
            if c in "\\,=":
                out.append(c)
            else:
                raise SelectorError(
                    f"invalid field selector: invalid escape sequence: \\{c}")
            in_slash = False
            continue
        if c == "\\":
            in_slash = True
        elif c in ",=":
            # Upstream prints the rune with %v: its code point.
            raise SelectorError(
                f"invalid field selector: unescaped character in value: {ord(c)}")
        else:
            out.append(c)
    if in_slash:
        raise SelectorError("invalid field selector: invalid escape sequence: \\")
    return "".join(out)


def _split_terms(s: str) -> list[str]:
    if not s:
        return []
    terms: list[str] = []
    start, in_slash = 0, False
    for i, c in enumerate(s):
        if in_slash:
            in_slash = False
        elif c == "\\":
            in_slash = True
        elif c == ",":
            terms.append(s[start:i])
            start = i + 1
    terms.append(s[start:])
    return terms


def _split_term(term: str) -> tuple[str, str, str] | None:
    for i in range(len(term)):
        for op in ("!=", "==", "="):
            if term.startswith(op, i):
                return term[:i], op, term[i + len(op):]
    return None


def parse_field_selector(s: str) -> FieldSelector:
    """fields.ParseSelector. Raises SelectorError with upstream's message."""
    parts = sorted(_split_terms(s))
    terms: list[FieldTerm] = []
    for part in parts:
        if not part:
            continue
        split = _split_term(part)
        if split is None:
            raise SelectorError(f"invalid selector: '{s}'; can't understand '{part}'")
        lhs, op, rhs = split
        terms.append(FieldTerm(lhs, op, unescape_field_value(rhs)))
    return FieldSelector(terms)


# Fields each resource accepts in a field selector (upstream's field label
# conversion functions), keyed by (group, resource). Others accept only
# metadata.name and metadata.namespace, with a differently worded error.
_META = ("metadata.name", "metadata.namespace")
_CORE_EVENT_FIELDS = (
    "involvedObject.kind", "involvedObject.namespace", "involvedObject.name",
    "involvedObject.uid", "involvedObject.apiVersion", "involvedObject.resourceVersion",
    "involvedObject.fieldPath", "reason", "reportingComponent", "source", "type") + _META
SUPPORTED_FIELDS: dict[tuple[str, str], tuple[str, ...]] = {
    ("", "pods"): _META + (
        "spec.nodeName", "spec.restartPolicy", "spec.schedulerName", "spec.serviceAccountName",
        "spec.hostNetwork", "status.phase", "status.podIP", "status.podIPs",
        "status.nominatedNodeName", "spec.host"),
    ("", "nodes"): ("metadata.name", "spec.unschedulable"),
    ("", "replicationcontrollers"): _META + ("status.replicas",),
    ("", "events"): _CORE_EVENT_FIELDS,
    ("", "namespaces"): ("status.phase", "metadata.name"),
    ("", "secrets"): ("type",) + _META,
    ("", "services"): _META + ("spec.clusterIP", "spec.type"),
    ("batch", "jobs"): _META + ("status.successful",),
    ("certificates.k8s.io", "certificatesigningrequests"): _META + ("spec.signerName",),
}
# Labels a resource renames before matching (old names, other schemas).
_RENAMED: dict[tuple[str, str], dict[str, str]] = {
    ("", "pods"): {"spec.host": "spec.nodeName"},
    ("events.k8s.io", "events"): {
        "regarding.kind": "involvedObject.kind",
        "regarding.namespace": "involvedObject.namespace",
        "regarding.name": "involvedObject.name",
        "regarding.uid": "involvedObject.uid",
        "regarding.apiVersion": "involvedObject.apiVersion",
        "regarding.resourceVersion": "involvedObject.resourceVersion",
        "regarding.fieldPath": "involvedObject.fieldPath",
        "reportingController": "reportingComponent",
    },
}
SUPPORTED_FIELDS[("events.k8s.io", "events")] = tuple(
    _RENAMED[("events.k8s.io", "events")]) + ("reason", "type") + _META


def unsupported_field(group: str, resource: str, field: str) -> bool:
    """True when a field selector on this resource may not name ``field``."""
    return field not in SUPPORTED_FIELDS.get((group, resource), _META)


def field_error_message(group: str, resource: str, field: str) -> str:
    """The message of the 400 upstream answers for an unsupported field."""
    if (group, resource) in SUPPORTED_FIELDS:
        return f"field label not supported: {field}"
    return f'"{field}" is not a known field selector: only "metadata.name", "metadata.namespace"'


def convert_field_selector(group: str, resource: str, sel: FieldSelector) -> FieldSelector:
    """Check every field the selector names and map old/alternate names to
    those ``field_set`` produces. Raises SelectorError (answer 400)."""
    renames = _RENAMED.get((group, resource), {})

    def conv(f: str, v: str) -> tuple[str, str]:
        if unsupported_field(group, resource, f):
            raise SelectorError(field_error_message(group, resource, f))
        return renames.get(f, f), v

    return sel.transform(conv)


def selected_name(sel: FieldSelector | None) -> str | None:
    """The one object name a field selector pins (``metadata.name=x``), as
    SelectionPredicate.MatchesSingle finds it, so a LIST/WATCH can read one key."""
    if sel is None:
        return None
    return sel.requires_exact_match("metadata.name")


def _s(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


def field_set(group: str, resource: str, obj: Mapping[str, Any]) -> dict[str, str]:
    """The fields of ``obj`` a field selector matches against (upstream's
    per-resource SelectableFields / GetAttrs)."""
    meta = obj.get("metadata") or {}
    out: dict[str, str] = {"metadata.name": meta.get("name", "")}
    namespaced = _NAMESPACED.get((group, resource))
    ns = meta.get("namespace")
    if namespaced or (namespaced is None and ns is not None):
        out["metadata.namespace"] = ns or ""
    extra = _EXTRA_FIELDS.get((group, resource))
    if extra is not None:
        extra(obj, out)
    return out


_NAMESPACED: dict[tuple[str, str], bool] = {(r.group, r.resource): r.namespaced for r in BUILTIN}


def _pod_fields(obj: Mapping[str, Any], out: dict[str, str]) -> None:
    spec = obj.get("spec") or {}
    status = obj.get("status") or {}
    out["spec.nodeName"] = spec.get("nodeName", "")
    out["spec.restartPolicy"] = spec.get("restartPolicy", "")
    out["spec.schedulerName"] = spec.get("schedulerName", "")
    out["spec.serviceAccountName"] = spec.get("serviceAccountName", "")
    out["spec.hostNetwork"] = "true" if spec.get("hostNetwork") else "false"
    out["status.phase"] = status.get("phase", "")
    ips = status.get("podIPs") or []
    out["status.podIP"] = ips[0].get("ip", "") if ips else status.get("podIP", "") or ""
    out["status.podIPs"] = ",".join(i.get("ip", "") for i in ips)
    out["status.nominatedNodeName"] = status.get("nominatedNodeName", "")


def _node_fields(obj: Mapping[str, Any], out: dict[str, str]) -> None:
    out["spec.unschedulable"] = _s(bool((obj.get("spec") or {}).get("unschedulable")))


def _namespace_fields(obj: Mapping[str, Any], out: dict[str, str]) -> None:
    out["status.phase"] = (obj.get("status") or {}).get("phase", "")
    # Upstream also keeps "name" for backward compatibility.
    out["name"] = out["metadata.name"]


def _secret_fields(obj: Mapping[str, Any], out: dict[str, str]) -> None:
    out["type"] = obj.get("type", "")


def _replicas_fields(obj: Mapping[str, Any], out: dict[str, str]) -> None:
    out["status.replicas"] = str((obj.get("status") or {}).get("replicas", 0) or 0)


def _job_fields(obj: Mapping[str, Any], out: dict[str, str]) -> None:
    out["status.successful"] = str((obj.get("status") or {}).get("succeeded", 0) or 0)


def _service_fields(obj: Mapping[str, Any], out: dict[str, str]) -> None:
    spec = obj.get("spec") or {}
    out["spec.clusterIP"] = spec.get("clusterIP", "")
    out["spec.type"] = spec.get("type", "")


def _csr_fields(obj: Mapping[str, Any], out: dict[str, str]) -> None:
    out["spec.signerName"] = (obj.get("spec") or {}).get("signerName", "")


def _event_fields(obj: Mapping[str, Any], out: dict[str, str]) -> None:
    # Stored events are core/v1; an events.k8s.io/v1 shaped one is read too.
    if "regarding" in obj or ("involvedObject" not in obj and "note" in obj):
        io = obj.get("regarding") or {}
        src = obj.get("deprecatedSource") or {}
    else:
        io = obj.get("involvedObject") or {}
        src = obj.get("source") or {}
    reporting = obj.get("reportingController") or obj.get("reportingComponent") or ""
    out["involvedObject.kind"] = io.get("kind", "")
    out["involvedObject.namespace"] = io.get("namespace", "")
    out["involvedObject.name"] = io.get("name", "")
    out["involvedObject.uid"] = io.get("uid", "")
    out["involvedObject.apiVersion"] = io.get("apiVersion", "")
    out["involvedObject.resourceVersion"] = io.get("resourceVersion", "")
    out["involvedObject.fieldPath"] = io.get("fieldPath", "")
    out["reason"] = obj.get("reason", "")
    out["reportingComponent"] = reporting
    out["source"] = src.get("component") or reporting
    out["type"] = obj.get("type", "")


_EXTRA_FIELDS: dict[tuple[str, str], Callable[[Mapping[str, Any], dict[str, str]], None]] = {
    ("", "pods"): _pod_fields,
    ("", "nodes"): _node_fields,
    ("", "namespaces"): _namespace_fields,
    ("", "secrets"): _secret_fields,
    ("", "replicationcontrollers"): _replicas_fields,
    ("apps", "replicasets"): _replicas_fields,
    ("batch", "jobs"): _job_fields,
    ("", "services"): _service_fields,
    ("", "events"): _event_fields,
    ("events.k8s.io", "events"): _event_fields,
    ("certificates.k8s.io", "certificatesigningrequests"): _csr_fields,
}


# ---- custom resources ---------------------------------------------------------------------

def custom_fields(namespaced: bool, selectable: Iterable[str]) -> tuple[str, ...]:
    """The labels a field selector on a custom resource may name: metadata.name,
    metadata.namespace when namespaced, and the version's selectableFields."""
    return ("metadata.name",) + (("metadata.namespace",) if namespaced else ()) + \
        tuple(selectable)


def check_custom_selector(sel: FieldSelector, allowed: tuple[str, ...]) -> None:
    """Refuse a label the custom resource does not declare, with the
    apiextensions-apiserver's message. Raises SelectorError (answer 400)."""
    for f in sel.fields():
        if f not in allowed:
            raise SelectorError(f"field label not supported: {f}")


def custom_field_set(obj: Mapping[str, Any], namespaced: bool,
                     selectable: Iterable[str]) -> dict[str, str]:
    """The fields of a custom object a selector matches: an absent field
    (or null) is the empty string, others print as Go's fmt.Sprint."""
    meta = obj.get("metadata") or {}
    out: dict[str, str] = {"metadata.name": meta.get("name", "")}
    if namespaced:
        out["metadata.namespace"] = meta.get("namespace") or ""
    for label in selectable:
        v: Any = obj
        for part in label.split("."):
            v = v.get(part) if isinstance(v, Mapping) else None
        out[label] = _s(v) if not isinstance(v, (Mapping, list)) else ""
    return out
