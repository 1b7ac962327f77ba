"""Matchers shared by plugins: label selectors, node selector terms and
tolerations, each compiled once per pod into a small predicate so the
per-node work is a few dict look-ups."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

LabelPred = Callable[[Mapping[str, str]], bool]


def _everything(_labels: Mapping[str, str]) -> bool:
    return True


def _nothing(_labels: Mapping[str, str]) -> bool:
    return False


def compile_label_selector(sel: Mapping[str, Any] | None, extra: Mapping[str, str] | None = None) -> LabelPred:
    """metav1.LabelSelectorAsSelector: None matches nothing, {} everything.
    ``extra`` adds equality requirements (matchLabelKeys)."""
    if sel is None:
        return _nothing
    eq = dict(sel.get("matchLabels") or {})
    if extra:
        eq.update(extra)
    exprs: list[tuple[str, str, frozenset[str]]] = []
    for e in sel.get("matchExpressions") or []:
        exprs.append((e.get("key", ""), e.get("operator", ""), frozenset(e.get("values") or ())))
    if not eq and not exprs:
        return _everything
    eq_items = tuple(eq.items())

    def match(labels: Mapping[str, str]) -> bool:
        for k, v in eq_items:
            if labels.get(k) != v:
                return False
        for k, op, vals in exprs:
            if op == "In":
                if labels.get(k) not in vals:
                    return False
            elif op == "NotIn":
                if k in labels and labels[k] in vals:
                    return False
            elif op == "Exists":
                if k not in labels:
                    return False
            elif op == "DoesNotExist":
                if k in labels:
                    return False
            else:
                return False
        return True

    return match


Alternatives = list[tuple[tuple[str, str], ...]]


def selector_alternatives(sel: Mapping[str, Any] | None,
                          extra: Mapping[str, str] | None = None) -> Alternatives | None:
    """Ways to find a selector's pods through the label index: each
    alternative is a set of (key, value) labels, and every matching pod
    carries one of them (an equality gives one label, ``In`` one per value).
    None when the selector has no such requirement (only NotIn, Exists,
    DoesNotExist, or nothing): its pods must be scanned. A None selector
    matches nothing: one empty alternative."""
    if sel is None:
        return [()]
    eq = dict(sel.get("matchLabels") or {})
    if extra:
        eq.update(extra)
    out: Alternatives = [((k, v),) for k, v in eq.items()]
    for e in sel.get("matchExpressions") or []:
        if e.get("operator") == "In":
            out.append(tuple((e.get("key", ""), v) for v in e.get("values") or ()))
    return out or None


def _go_int(s: str) -> int | None:
    try:
        return int(s)
    except (TypeError, ValueError):
        return None


def _node_requirement(key: str, op: str, values: Sequence[str], field: bool) -> Callable[[Any], bool]:
    vals = frozenset(values)
    if field:
        # matchFields supports metadata.name with In/NotIn only.
        if key != "metadata.name" or op not in ("In", "NotIn"):
            return lambda ni: False
        if op == "In":
            return lambda ni: ni.name in vals
        return lambda ni: ni.name not in vals
    if op == "In":
        return lambda ni: ni.labels.get(key) in vals
    if op == "NotIn":
        return lambda ni: ni.labels.get(key) not in vals
    if op == "Exists":
        return lambda ni: key in ni.labels
    if op == "DoesNotExist":
        return lambda ni: key not in ni.labels
    if op in ("Gt", "Lt") and len(values) == 1:
        bound = _go_int(values[0])
        if bound is None:
            return lambda ni: False
        gt = op == "Gt"

        def cmp(ni: Any) -> bool:
            v = _go_int(ni.labels.get(key, ""))
            if v is None:
                return False
            return v > bound if gt else v < bound  # type: ignore[operator]
        return cmp
    return lambda ni: False


def compile_node_selector_terms(terms: Sequence[Mapping[str, Any]]) -> Callable[[Any], bool]:
    """v1.NodeSelector: terms are ORed, requirements within a term ANDed; a
    term with no requirements matches no node."""
    compiled: list[list[Callable[[Any], bool]]] = []
    for t in terms or ():
        reqs = [_node_requirement(e.get("key", ""), e.get("operator", ""), e.get("values") or (), False)
                for e in t.get("matchExpressions") or ()]
        reqs += [_node_requirement(e.get("key", ""), e.get("operator", ""), e.get("values") or (), True)
                 for e in t.get("matchFields") or ()]
        if reqs:
            compiled.append(reqs)
    if not compiled:
        return lambda ni: False

    def match(ni: Any) -> bool:
        for reqs in compiled:
            for r in reqs:
                if not r(ni):
                    break
            else:
                return True
        return False

    return match


def tolerates(tolerations: Sequence[Mapping[str, Any]], taint: Mapping[str, Any]) -> bool:
    """v1.Toleration.ToleratesTaint for any of ``tolerations``."""
    key = taint.get("key", "")
    effect = taint.get("effect", "")
    for t in tolerations:
        te = t.get("effect") or ""
        if te and te != effect:
            continue
        tk = t.get("key") or ""
        if tk and tk != key:
            continue
        op = t.get("operator") or "Equal"
        if op == "Exists":
            return True
        if op == "Equal" and (t.get("value") or "") == (taint.get("value") or ""):
            return True
    return False
