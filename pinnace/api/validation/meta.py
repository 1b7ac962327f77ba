"""ObjectMeta, labels, annotations and label selectors, as
apimachinery's ValidateObjectMeta / ValidateObjectMetaUpdate check them."""

from __future__ import annotations

from typing import Any

from . import names
from ._common import (
    Errs,
    GoRepr,
    Obj,
    as_dict,
    as_list,
    duplicate,
    forbidden,
    go_repr,
    immutable,
    invalid,
    non_negative,
    not_supported,
    required,
    too_long,
)

TOTAL_ANNOTATION_SIZE = 256 * 1024
STANDARD_FINALIZERS = {"kubernetes", "orphan", "foregroundDeletion"}


def validate_labels(labels: Any, path: str) -> Errs:
    errs: Errs = []
    for k, v in as_dict(labels).items():
        errs += names.messages_to_errors(names.is_qualified_name(k), path, k)
        if not isinstance(v, str):
            errs.append(invalid(path, v, "label values must be strings"))
            continue
        errs += names.messages_to_errors(names.is_label_value(v), path, v)
    return errs


def validate_annotations(annotations: Any, path: str) -> Errs:
    errs: Errs = []
    total = 0
    for k, v in as_dict(annotations).items():
        errs += names.messages_to_errors(names.is_qualified_name(k.lower()), path, k)
        total += len(k) + len(v if isinstance(v, str) else "")
    if total > TOTAL_ANNOTATION_SIZE:
        errs.append(too_long(path, TOTAL_ANNOTATION_SIZE))
    return errs


def validate_finalizers(finalizers: Any, path: str) -> Errs:
    errs: Errs = []
    items = [f for f in as_list(finalizers) if isinstance(f, str)]
    for f in items:
        errs += names.messages_to_errors(names.is_qualified_name(f), path, f)
    if "orphan" in items and "foregroundDeletion" in items:
        errs.append(invalid(path, GoRepr(go_repr(items)),
                            "finalizer orphan and foregroundDeletion cannot be both set"))
    return errs


def validate_owner_references(refs: Any, path: str) -> Errs:
    errs: Errs = []
    controllers = []
    for i, ref in enumerate(as_list(refs)):
        ref = as_dict(ref)
        p = f"{path}[{i}]"
        for key, what in (("apiVersion", "version"), ("kind", "kind"), ("name", "name"),
                          ("uid", "uid")):
            if not ref.get(key):
                errs.append(invalid(f"{p}.{key}", ref.get(key, ""), f"{what} must not be empty"))
        if ref.get("controller") is True:
            controllers.append(ref)
    if len(controllers) > 1:
        desc = ", ".join(f"{r.get('kind')}/{r.get('name')}" for r in controllers)
        errs.append(invalid(path, GoRepr("[]v1.OwnerReference{...}"),
                            'Only one reference can have Controller set to true. Found "true" '
                            f"in references for {desc}"))
    return errs


def _common_meta(meta: Obj, path: str) -> Errs:
    errs: Errs = []
    errs += non_negative(meta.get("generation"), f"{path}.generation")
    errs += validate_labels(meta.get("labels"), f"{path}.labels")
    errs += validate_annotations(meta.get("annotations"), f"{path}.annotations")
    errs += validate_owner_references(meta.get("ownerReferences"), f"{path}.ownerReferences")
    errs += validate_finalizers(meta.get("finalizers"), f"{path}.finalizers")
    return errs


def validate_object_meta(meta: Any, name_check: names.NameCheck, path: str = "metadata",
                         name_required: bool = True) -> Errs:
    meta = as_dict(meta)
    errs: Errs = []
    gen = meta.get("generateName") or ""
    if gen:
        errs += names.messages_to_errors(name_check(gen, True), f"{path}.generateName", gen)
    name = meta.get("name") or ""
    if not name:
        if name_required:
            errs.append(required(f"{path}.name", "name or generateName is required"))
    else:
        errs += names.messages_to_errors(name_check(name, False), f"{path}.name", name)
    ns = meta.get("namespace") or ""
    if ns:
        errs += names.messages_to_errors(names.name_is_dns_label(ns, False),
                                         f"{path}.namespace", ns)
    errs += _common_meta(meta, path)
    return errs


def validate_object_meta_update(new: Any, old: Any, path: str = "metadata") -> Errs:
    new, old = as_dict(new), as_dict(old)
    errs: Errs = []
    for key in ("name", "namespace", "uid", "creationTimestamp"):
        errs += immutable(new.get(key, ""), old.get(key, ""), f"{path}.{key}")
    if new.get("deletionTimestamp") != old.get("deletionTimestamp") and old.get("deletionTimestamp"):
        errs.append(invalid(f"{path}.deletionTimestamp", new.get("deletionTimestamp"),
                            "field is immutable; may only be changed via deletion"))
    if new.get("deletionGracePeriodSeconds") != old.get("deletionGracePeriodSeconds") \
            and old.get("deletionGracePeriodSeconds") is not None:
        errs.append(invalid(f"{path}.deletionGracePeriodSeconds",
                            new.get("deletionGracePeriodSeconds"),
                            "field is immutable; may only be changed via deletion"))
    if old.get("deletionTimestamp"):
        added = [f for f in as_list(new.get("finalizers")) if f not in as_list(old.get("finalizers"))]
        if added:
            errs.append(forbidden(f"{path}.finalizers",
                                  "no new finalizers can be added if the object is being "
                                  f"deleted, found new finalizers {go_repr(added)}"))
    errs += _common_meta(new, path)
    return errs


# Label selectors (metav1.LabelSelector) -------------------------------------

_OPERATORS = ["In", "NotIn", "Exists", "DoesNotExist"]


def validate_label_selector(sel: Any, path: str) -> Errs:
    if sel is None:
        return []
    sel = as_dict(sel)
    errs: Errs = []
    for i, req in enumerate(as_list(sel.get("matchExpressions"))):
        req = as_dict(req)
        p = f"{path}.matchExpressions[{i}]"
        op = req.get("operator", "")
        values = as_list(req.get("values"))
        if op in ("In", "NotIn"):
            if not values:
                errs.append(required(f"{p}.values",
                                     "must be specified when `operator` is 'In' or 'NotIn'"))
        elif op in ("Exists", "DoesNotExist"):
            if values:
                errs.append(forbidden(f"{p}.values",
                                      "may not be specified when `operator` is 'Exists' or "
                                      "'DoesNotExist'"))
        else:
            errs.append(invalid(f"{p}.operator", op, "not a valid selector operator"))
        errs += names.qualified_name(req.get("key", ""), f"{p}.key")
        for v in values:
            errs += names.messages_to_errors(names.is_label_value(v), f"{p}.values", v)
    errs += validate_labels(sel.get("matchLabels"), f"{path}.matchLabels")
    return errs


def selector_is_empty(sel: Any) -> bool:
    sel = as_dict(sel)
    return not sel.get("matchLabels") and not sel.get("matchExpressions")


def selector_matches(sel: Any, labels: Any) -> bool:
    """Whether a LabelSelector selects ``labels``. An empty selector matches all."""
    sel, labels = as_dict(sel), as_dict(labels)
    for k, v in as_dict(sel.get("matchLabels")).items():
        if labels.get(k) != v:
            return False
    for req in as_list(sel.get("matchExpressions")):
        req = as_dict(req)
        key, op, values = req.get("key"), req.get("operator"), as_list(req.get("values"))
        has = key in labels
        if op == "In" and not (has and labels[key] in values):
            return False
        if op == "NotIn" and has and labels[key] in values:
            return False
        if op == "Exists" and not has:
            return False
        if op == "DoesNotExist" and has:
            return False
    return True


def map_selector_matches(sel: Any, labels: Any) -> bool:
    """A plain map selector (RC, Service): every pair must be present."""
    labels = as_dict(labels)
    return all(labels.get(k) == v for k, v in as_dict(sel).items())


def supported(path: str, value: Any, values: list[str]) -> Errs:
    """Required when empty, NotSupported when outside ``values``."""
    if value in (None, ""):
        return [required(path)]
    if value not in values:
        return [not_supported(path, value, values)]
    return []


def unique_names(items: list[Any], path: str, key: str = "name") -> Errs:
    seen: set[Any] = set()
    errs: Errs = []
    for i, it in enumerate(items):
        v = as_dict(it).get(key)
        if v in seen:
            errs.append(duplicate(f"{path}[{i}].{key}", v))
        elif v is not None:
            seen.add(v)
    return errs
