"""CustomResourceDefinitions: validating the CRD itself, the resources it
serves, and validating / defaulting / pruning custom objects against a
version's openAPIV3Schema, plus its additionalPrinterColumns.

Messages follow the apiextensions-apiserver, which turns kube-openapi's
validation results into field errors, e.g.
``spec.replicas: Invalid value: "string": spec.replicas in body must be of
type integer: "string"``.
"""

from __future__ import annotations

import copy
import re
from datetime import UTC, datetime
from typing import Any

import orjson

from pinnace.api import crdformats, crdrules, field
from pinnace.api.duration import human_duration
from pinnace.api.field import FieldError
from pinnace.api.fieldcheck import check_definition
from pinnace.api.resources import ResourceInfo

Schema = dict[str, Any]
_OBJECT_META = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"

# ------------------------------------------------------------ the CRD itself

_DNS1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
_DNS1123_SUB = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_DNS1035_MSG = ("a DNS-1035 label must consist of lower case alphanumeric characters or '-', "
                "start with an alphabetic character, and end with an alphanumeric character "
                "(e.g. 'my-name',  or 'abc-123', regex used for validation is "
                "'[a-z]([-a-z0-9]*[a-z0-9])?')")
_DNS1123_SUB_MSG = ("a lowercase RFC 1123 subdomain must consist of lower case alphanumeric "
                    "characters, '-' or '.', and must start and end with an alphanumeric "
                    "character (e.g. 'example.com', regex used for validation is "
                    "'[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')")


def default_crd(crd: dict[str, Any]) -> None:
    """Apply the API defaults of a CRD in place (singular, listKind,
    conversion strategy), as the server does before validating."""
    spec = crd.setdefault("spec", {})
    names = spec.setdefault("names", {})
    if names.get("kind"):
        names.setdefault("singular", names["kind"].lower())
        names.setdefault("listKind", names["kind"] + "List")
    spec.setdefault("conversion", {"strategy": "None"})
    for v in spec.get("versions") or []:
        if isinstance(v, dict):
            v.setdefault("served", True)
            v.setdefault("storage", False)


def validate_crd(crd: dict[str, Any], old: dict[str, Any] | None = None) -> list[FieldError]:
    """The essential CustomResourceDefinition validation. Call default_crd first."""
    errs: list[FieldError] = []
    spec = crd.get("spec") or {}
    names = spec.get("names") or {}
    group = spec.get("group") or ""
    plural = names.get("plural") or ""
    name = (crd.get("metadata") or {}).get("name") or ""

    if not group:
        errs.append(field.required("spec.group"))
    elif "." not in group:
        errs.append(field.invalid("spec.group", group,
                                  "should be a domain with at least one dot"))
    elif not _DNS1123_SUB.match(group):
        errs.append(field.invalid("spec.group", group, _DNS1123_SUB_MSG))
    if name != f"{plural}.{group}":
        errs.append(field.invalid("metadata.name", name,
                                  'must be spec.names.plural+"."+spec.group'))

    for key in ("plural", "singular", "kind", "listKind"):
        val = names.get(key) or ""
        path = f"spec.names.{key}"
        if not val:
            errs.append(field.required(path))
        elif key in ("plural", "singular") and not _DNS1035.match(val):
            errs.append(field.invalid(path, val, _DNS1035_MSG))
        elif key in ("kind", "listKind") and not _DNS1035.match(val.lower()):
            # Upstream checks the lower-cased kind as a DNS-1035 label.
            errs.append(field.invalid(path, val, _DNS1035_MSG))
    if names.get("kind") and names.get("listKind") == names.get("kind"):
        errs.append(field.invalid("spec.names.listKind", names["listKind"],
                                  "kind and listKind may not be the same"))
    for i, s in enumerate(names.get("shortNames") or []):
        if not _DNS1035.match(str(s)):
            errs.append(field.invalid(f"spec.names.shortNames[{i}]", s, _DNS1035_MSG))

    scope = spec.get("scope")
    if not scope:
        errs.append(field.required("spec.scope"))
    elif scope not in ("Cluster", "Namespaced"):
        errs.append(field.not_supported("spec.scope", scope, ["Cluster", "Namespaced"]))
    if old is not None:
        old_spec = old.get("spec") or {}
        if old_spec.get("scope") and scope != old_spec.get("scope"):
            errs.append(field.invalid("spec.scope", scope, "field is immutable"))

    errs.extend(_validate_versions(spec))
    return errs


def _validate_versions(spec: dict[str, Any]) -> list[FieldError]:
    errs: list[FieldError] = []
    versions = spec.get("versions") or []
    if not versions:
        errs.append(field.invalid("spec.versions", versions,
                                  "must have exactly one version marked as storage version"))
        return errs
    seen: set[str] = set()
    storage = 0
    for i, v in enumerate(versions):
        p = f"spec.versions[{i}]"
        vname = v.get("name") or ""
        if not vname:
            errs.append(field.required(f"{p}.name"))
        elif not _DNS1035.match(vname):
            errs.append(field.invalid(f"{p}.name", vname, _DNS1035_MSG))
        elif vname in seen:
            errs.append(field.invalid("spec.versions", [x.get("name") for x in versions],
                                      "must contain unique version names"))
        seen.add(vname)
        if v.get("storage"):
            storage += 1
        errs.extend(_deprecation_warning(v, p))
        sch = (v.get("schema") or {}).get("openAPIV3Schema")
        if sch is None:
            errs.append(field.required(f"{p}.schema.openAPIV3Schema", "schemas are required"))
        else:
            errs.extend(_structural(sch, f"{p}.schema.openAPIV3Schema", root=True))
        if v.get("selectableFields"):
            errs.extend(_selectable_fields(v["selectableFields"], sch, f"{p}.selectableFields"))
        for key in ("status", "scale"):
            sub = (v.get("subresources") or {}).get(key)
            if key == "scale" and sub is not None:
                for req in ("specReplicasPath", "statusReplicasPath"):
                    if not sub.get(req):
                        errs.append(field.required(f"{p}.subresources.scale.{req}"))
        for j, col in enumerate(v.get("additionalPrinterColumns") or []):
            cp = f"{p}.additionalPrinterColumns[{j}]"
            if not col.get("name"):
                errs.append(field.required(f"{cp}.name"))
            if col.get("type") not in _COLUMN_TYPES:
                errs.append(field.not_supported(f"{cp}.type", col.get("type"),
                                                sorted(_COLUMN_TYPES)))
            if not col.get("jsonPath"):
                errs.append(field.required(f"{cp}.jsonPath"))
    if storage != 1:
        errs.append(field.invalid("spec.versions", [x.get("name") for x in versions],
                                  "must have exactly one version marked as storage version"))
    if not any(v.get("served") for v in versions):
        errs.append(field.invalid("spec.versions", [x.get("name") for x in versions],
                                  "must have at least one served version"))
    return errs


def _deprecation_warning(v: dict[str, Any], p: str) -> list[FieldError]:
    text = v.get("deprecationWarning")
    if text is None:
        return []
    path = f"{p}.deprecationWarning"
    if not v.get("deprecated"):
        return [field.invalid(path, text, "can only be set for deprecated versions")]
    errs: list[FieldError] = []
    text = str(text)
    if len(text.encode()) > 256:
        errs.append(field.invalid(path, text, "must be <= 256 characters long"))
    if not text:
        errs.append(field.invalid(path, text, "must not be an empty string"))
    for i, ch in enumerate(text):
        if not ch.isprintable():
            errs.append(field.invalid(
                path, text, "must only contain printable UTF-8 characters; non-printable "
                f"character found at index {len(text[:i].encode())}"))
            break
    return errs


MAX_SELECTABLE_FIELDS = 8


def _selectable_fields(fields: Any, sch: Schema | None, p: str) -> list[FieldError]:
    """A version's selectableFields: JSON paths (no array notation) to a
    string, integer or boolean field of the schema, outside metadata, at most 8."""
    if sch is None:
        return [field.invalid(p, "", "may only be set when `version.schema.openAPIV3Schema` "
                                     "is not included")]
    errs: list[FieldError] = []
    seen: set[str] = set()
    for i, f in enumerate(fields if isinstance(fields, list) else []):
        jp = str((f or {}).get("jsonPath") or "") if isinstance(f, dict) else ""
        ip = f"{p}[{i}].jsonPath"
        if not jp:
            errs.append(field.required(ip))
            continue
        try:
            if "[" in jp:
                raise ValueError("array notation is not allowed")
            norm, found = crdrules.normalize_field_path(jp, sch)
        except ValueError as e:
            errs.append(field.invalid(ip, jp, f"is an invalid path: {e}"))
            continue
        if norm.split(".")[0].split("[")[0] == "metadata":
            errs.append(field.invalid(ip, jp, "must not point to fields in metadata"))
        if found.get("type") not in ("string", "boolean", "integer"):
            errs.append(field.invalid(ip, jp, "must point to a field of type string, boolean or "
                                              "integer. Enum string fields and strings with "
                                              "formats are allowed."))
        if norm in seen:
            errs.append(field.duplicate(ip, jp))
        seen.add(norm)
    if len(seen) > MAX_SELECTABLE_FIELDS:
        errs.append(FieldError("FieldValueTooMany", p,
                               detail=f"{len(seen)}: must have at most {MAX_SELECTABLE_FIELDS} "
                                      "items"))
    return errs


def selectable_fields(crd: dict[str, Any], version: str) -> tuple[str, ...]:
    """The field-selector labels a version declares (``spec.color`` for ``.spec.color``)."""
    for v in (crd.get("spec") or {}).get("versions") or []:
        if v.get("name") == version:
            return tuple(str(f.get("jsonPath", "")).lstrip(".")
                         for f in v.get("selectableFields") or () if isinstance(f, dict))
    return ()


def deprecation_warning(crd: dict[str, Any], version: str) -> str | None:
    """The Warning every request to a deprecated version gets: its
    deprecationWarning, or upstream's default naming the newest served,
    non-deprecated version that sorts after it."""
    spec = crd.get("spec") or {}
    versions = spec.get("versions") or []
    v = next((x for x in versions if x.get("name") == version), None)
    if v is None or not v.get("deprecated"):
        return None
    if v.get("deprecationWarning") is not None:
        return str(v["deprecationWarning"])
    group, kind = spec.get("group", ""), (spec.get("names") or {}).get("kind", "")
    msg = f"{group}/{version} {kind} is deprecated"
    newer = [x["name"] for x in versions if x.get("served") and not x.get("deprecated")
             and _version_key(version) < _version_key(x.get("name", ""))]
    if newer:
        msg += f"; use {group}/{max(newer, key=_version_key)} {kind}"
    return msg


def _version_key(v: str) -> tuple[int, int, int, str]:
    """Kubernetes' version order, ascending: non-matching names < alpha < beta < GA."""
    m = re.fullmatch(r"v(\d+)(?:(alpha|beta)(\d+))?", v)
    if not m:
        return (-1, 0, 0, "~" + v)  # sorted after each other reversed alphabetically upstream
    stage = {"alpha": 0, "beta": 1, None: 2}[m.group(2)]
    return (stage, int(m.group(1)), int(m.group(3) or 0), "")


def _structural(s: Schema, path: str, root: bool = False,
                uncorrelatable: str | None = None) -> list[FieldError]:
    """The structural-schema rules that matter in practice: every node says
    its type unless it is int-or-string or preserves unknown fields; and its
    x-kubernetes-validations (``uncorrelatable``: the list above this node
    whose items old and new objects cannot pair, where oldSelf is refused)."""
    errs: list[FieldError] = []
    if not isinstance(s, dict):
        return [field.invalid(path, s, "must be an object")]
    typ = s.get("type")
    free = s.get("x-kubernetes-int-or-string") or s.get("x-kubernetes-preserve-unknown-fields")
    if not typ and not free:
        detail = "must not be empty at the root" if root else \
            "must not be empty for specified object fields"
        errs.append(field.required(f"{path}.type", detail))
    if root and typ and typ != "object":
        errs.append(field.invalid(f"{path}.type", typ, "must be object at the root"))
    if typ and typ not in ("object", "array", "string", "integer", "number", "boolean"):
        errs.append(field.not_supported(f"{path}.type", typ, [
            "array", "boolean", "integer", "number", "object", "string"]))
    if "$ref" in s:
        errs.append(field.forbidden(f"{path}.$ref", "$ref is not supported"))
    for key, sub in (s.get("properties") or {}).items():
        errs.extend(_structural(sub, f"{path}.properties[{key}]", uncorrelatable=uncorrelatable))
    if typ == "array":
        if not isinstance(s.get("items"), dict):
            errs.append(field.required(f"{path}.items", "must be specified"))
        else:
            below = uncorrelatable
            if below is None and s.get("x-kubernetes-list-type") != "map":
                below = path
            errs.extend(_structural(s["items"], f"{path}.items", uncorrelatable=below))
    ap = s.get("additionalProperties")
    if isinstance(ap, dict):
        if s.get("properties"):
            errs.append(field.forbidden(f"{path}.additionalProperties",
                                        "additionalProperties and properties are mutual "
                                        "exclusive"))
        errs.extend(_structural(ap, f"{path}.additionalProperties",
                                uncorrelatable=uncorrelatable))
    if s.get("x-kubernetes-validations") and not any(
            "x-kubernetes-validations" not in e.field for e in errs):
        errs.extend(crdrules.check_schema_rules(s, path, uncorrelatable))
    return errs


def crd_resource_infos(crd: dict[str, Any]) -> list[ResourceInfo]:
    """One ResourceInfo per served version of the CRD."""
    spec = crd.get("spec") or {}
    names = spec.get("names") or {}
    versions = spec.get("versions") or []
    storage = next((v["name"] for v in versions if v.get("storage")), "")
    out: list[ResourceInfo] = []
    for v in versions:
        if not v.get("served", True):
            continue
        subs = tuple(k for k in ("status", "scale") if k in (v.get("subresources") or {}))
        out.append(ResourceInfo(
            group=spec.get("group", ""), version=v["name"], resource=names.get("plural", ""),
            kind=names.get("kind", ""), namespaced=spec.get("scope") == "Namespaced",
            short_names=tuple(names.get("shortNames") or ()),
            categories=tuple(names.get("categories") or ()),
            subresources=subs, singular=names.get("singular", ""),
            storage_version=storage if storage != v["name"] else "", crd=crd))
    return out


def version_schema(crd: dict[str, Any], version: str) -> Schema | None:
    for v in (crd.get("spec") or {}).get("versions") or []:
        if v.get("name") == version:
            return (v.get("schema") or {}).get("openAPIV3Schema")  # type: ignore[no-any-return]
    return None


# ---------------------------------------------------------- custom objects

def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _json_type(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "boolean"
    if isinstance(v, int):
        return "integer"
    if isinstance(v, float):
        return "integer" if v.is_integer() else "number"
    if isinstance(v, str):
        return "string"
    if isinstance(v, list):
        return "array"
    return "object"


def _type_ok(want: str, v: Any) -> bool:
    got = _json_type(v)
    return got == want or (want == "number" and got == "integer")


def validate_custom_object(schema: Schema, obj: Any, path_prefix: str = "",
                           old: Any = None) -> list[FieldError]:
    """Validate a custom object (or part of one at ``path_prefix``) against
    an openAPIV3Schema. At the root, apiVersion, kind and metadata are left
    to the generic object checks. With ``old`` (an update), values unchanged
    from the old object are not validated again (CRD validation ratcheting:
    map keys and the keys of map-type lists correlate old and new values)."""
    errs: list[FieldError] = []
    _validate(schema, obj, path_prefix, errs, root=not path_prefix,
              old=_NO_OLD if old is None else old)
    return errs


_NO_OLD: Any = object()


def _old_key(old: Any, key: str) -> Any:
    return old.get(key, _NO_OLD) if isinstance(old, dict) else _NO_OLD


def _old_items(s: Schema, v: list[Any], old: Any) -> list[Any]:
    """The old value correlated with each item: by key in a map-type list, none otherwise."""
    keys = s.get("x-kubernetes-list-map-keys") or []
    if s.get("x-kubernetes-list-type") != "map" or not keys or not isinstance(old, list):
        return [_NO_OLD] * len(v)
    olds = {orjson.dumps([x.get(k) for k in keys]): x for x in old if isinstance(x, dict)}
    return [olds.get(orjson.dumps([x.get(k) for k in keys]), _NO_OLD) if isinstance(x, dict)
            else _NO_OLD for x in v]


def _invalid_type(path: str, want: str, v: Any) -> FieldError:
    got = _json_type(v)
    return FieldError("FieldValueTypeInvalid", path, got,
                      f'{path} in body must be of type {want}: "{got}"')


def _validate(s: Schema, v: Any, path: str, errs: list[FieldError], root: bool = False,
              old: Any = _NO_OLD) -> None:
    if old is not _NO_OLD and not root and crdrules.same(v, old):
        return  # ratcheting: an unchanged value is not validated again
    if v is None:
        if s.get("nullable") or not (s.get("type") or s.get("x-kubernetes-int-or-string")):
            return
        errs.append(_invalid_type(path, s.get("type") or "string", v))
        return
    if s.get("x-kubernetes-int-or-string"):
        if _json_type(v) not in ("integer", "string"):
            errs.append(_invalid_type(path, "integer,string", v))
            return
    typ = s.get("type")
    if typ and not _type_ok(typ, v):
        errs.append(_invalid_type(path, typ, v))
        return

    enum = s.get("enum")
    if enum is not None and v not in enum:
        errs.append(field.not_supported(path, v, [e if isinstance(e, str) else
                                                  orjson.dumps(e).decode() for e in enum]))
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        _validate_number(s, v, path, errs)
    elif isinstance(v, str):
        _validate_string(s, v, path, errs)
    elif isinstance(v, list):
        _validate_array(s, v, path, errs, old)
    elif isinstance(v, dict):
        _validate_object(s, v, path, errs, root, old)
    for sub in s.get("allOf") or ():
        _validate(sub, v, path, errs)


def _validate_number(s: Schema, v: float, path: str, errs: list[FieldError]) -> None:
    lo, hi = s.get("minimum"), s.get("maximum")
    if lo is not None:
        if s.get("exclusiveMinimum") and v <= lo:
            errs.append(field.invalid(path, v, f"{path} in body should be greater than {lo}"))
        elif v < lo:
            errs.append(field.invalid(
                path, v, f"{path} in body should be greater than or equal to {lo}"))
    if hi is not None:
        if s.get("exclusiveMaximum") and v >= hi:
            errs.append(field.invalid(path, v, f"{path} in body should be less than {hi}"))
        elif v > hi:
            errs.append(field.invalid(
                path, v, f"{path} in body should be less than or equal to {hi}"))
    mult = s.get("multipleOf")
    if mult and (v / mult) != int(v / mult):
        errs.append(field.invalid(path, v, f"{path} in body should be a multiple of {mult}"))
    fmt = s.get("format")
    if fmt == "int32" and not -2**31 <= v < 2**31 or fmt == "int64" and not -2**63 <= v < 2**63:
        errs.append(field.invalid(path, v, f"{path} in body must be of type {fmt}: \"{v}\""))


def _validate_string(s: Schema, v: str, path: str, errs: list[FieldError]) -> None:
    n = len(v)
    if s.get("maxLength") is not None and n > s["maxLength"]:
        errs.append(field.too_long(path, v, s["maxLength"]))
    if s.get("minLength") is not None and n < s["minLength"]:
        errs.append(field.invalid(
            path, v, f"{path} in body should be at least {s['minLength']} chars long"))
    pat = s.get("pattern")
    if pat and not _compiled(pat).search(v):
        errs.append(field.invalid(path, v, f"{path} in body should match '{pat}'"))
    fmt = s.get("format")
    if fmt and crdformats.check(fmt, v) is False:
        errs.append(FieldError("FieldValueTypeInvalid", path, v,
                               f"{path} in body must be of type {fmt}: {_go_quote(v)}"))


def _go_quote(v: str) -> str:
    """Go's %q of a string (JSON's quoting is the same for printable text)."""
    return orjson.dumps(v).decode()


_patterns: dict[str, re.Pattern[str]] = {}


def _compiled(pat: str) -> re.Pattern[str]:
    p = _patterns.get(pat)
    if p is None:
        p = _patterns[pat] = re.compile(pat)
    return p


def _validate_array(s: Schema, v: list[Any], path: str, errs: list[FieldError],
                    old: Any = _NO_OLD) -> None:
    if s.get("maxItems") is not None and len(v) > s["maxItems"]:
        errs.append(FieldError("FieldValueTooMany", path,
                               detail=f"{len(v)}: must have at most {s['maxItems']} items"))
    if s.get("minItems") is not None and len(v) < s["minItems"]:
        errs.append(field.invalid(
            path, v, f"{path} in body should have at least {s['minItems']} items"))
    if s.get("uniqueItems") or s.get("x-kubernetes-list-type") == "set":
        keys = [orjson.dumps(x, option=orjson.OPT_SORT_KEYS) for x in v]
        for i, k in enumerate(keys):
            if k in keys[:i]:
                errs.append(field.duplicate(f"{path}[{i}]", v[i]))
    if s.get("x-kubernetes-list-type") == "map" and s.get("x-kubernetes-list-map-keys"):
        mk = s["x-kubernetes-list-map-keys"]
        seen: set[bytes] = set()
        for i, x in enumerate(v):
            if isinstance(x, dict):
                k = orjson.dumps([x.get(key) for key in mk])
                if k in seen:
                    errs.append(field.duplicate(f"{path}[{i}]", {key: x.get(key) for key in mk}))
                seen.add(k)
    items = s.get("items")
    if isinstance(items, dict):
        olds = _old_items(s, v, old)
        for i, x in enumerate(v):
            _validate(items, x, f"{path}[{i}]", errs, old=olds[i])


def _validate_object(s: Schema, v: dict[str, Any], path: str, errs: list[FieldError],
                     root: bool, old: Any = _NO_OLD) -> None:
    props = s.get("properties") or {}
    for req in s.get("required") or ():
        if req not in v and not (root and req in ("apiVersion", "kind", "metadata")):
            errs.append(field.required(_join(path, req)))
    if s.get("maxProperties") is not None and len(v) > s["maxProperties"]:
        errs.append(FieldError("FieldValueTooMany", path,
                               detail=f"{len(v)}: must have at most {s['maxProperties']} items"))
    if s.get("minProperties") is not None and len(v) < s["minProperties"]:
        errs.append(field.invalid(
            path, len(v), f"{path} in body should have at least {s['minProperties']} properties"))
    if s.get("x-kubernetes-embedded-resource"):
        for key in ("apiVersion", "kind"):
            if not v.get(key):
                errs.append(field.required(_join(path, key), "must not be empty"))
    ap = s.get("additionalProperties")
    for key, val in v.items():
        if root and key in ("apiVersion", "kind", "metadata"):
            continue
        sub = props.get(key)
        if sub is not None:
            _validate(sub, val, _join(path, key), errs, old=_old_key(old, key))
        elif isinstance(ap, dict):
            _validate(ap, val, _join(path, key), errs, old=_old_key(old, key))


# ---------------------------------------------------------------- defaulting

def default_custom_object(schema: Schema, obj: Any) -> None:
    """Apply ``default:`` values in place, as the server does on create,
    update and read: a missing field (or null one that is not nullable)
    takes its default, then defaulting continues inside it."""
    if isinstance(obj, dict):
        props = schema.get("properties") or {}
        for key, sub in props.items():
            if "default" in sub and (key not in obj or (obj[key] is None
                                                       and not sub.get("nullable"))):
                obj[key] = copy.deepcopy(sub["default"])
        for key, val in obj.items():
            sub = props.get(key)
            if sub is None and isinstance(schema.get("additionalProperties"), dict):
                sub = schema["additionalProperties"]
            if sub is not None and isinstance(val, (dict, list)):
                default_custom_object(sub, val)
    elif isinstance(obj, list) and isinstance(schema.get("items"), dict):
        for x in obj:
            if isinstance(x, (dict, list)):
                default_custom_object(schema["items"], x)


# ------------------------------------------------------------------ pruning

def prune_custom_object(schema: Schema, obj: dict[str, Any]) -> list[str]:
    """Drop fields the schema does not know, unless a node preserves unknown
    fields; returns the dropped paths (``spec.foo``, ``spec.items[0].bar``)
    in document order, for fieldValidation Warn/Strict reporting. Unknown
    metadata fields are dropped too, at the root and in embedded resources."""
    pruned: list[str] = []
    _prune(schema, obj, "", pruned, root=True)
    return pruned


def _prune_meta(obj: dict[str, Any], path: str, pruned: list[str]) -> None:
    meta = obj.get("metadata")
    if not isinstance(meta, dict):
        return
    for issue in check_definition(_OBJECT_META, meta, _join(path, "metadata")):
        if issue.kind != "unknown":
            continue
        pruned.append(issue.path)
        # Only first-level metadata fields can be unknown in practice
        # (managedFields entries aside), so drop by the last segment.
        rel = issue.path[len(_join(path, "metadata")) + 1:]
        if "." not in rel and "[" not in rel:
            meta.pop(rel, None)


def _prune(s: Schema, v: Any, path: str, pruned: list[str], root: bool = False) -> None:
    if isinstance(v, dict):
        embedded = root or s.get("x-kubernetes-embedded-resource")
        if embedded:
            _prune_meta(v, path, pruned)
        props = s.get("properties") or {}
        ap = s.get("additionalProperties")
        preserve = s.get("x-kubernetes-preserve-unknown-fields") or ap is True
        for key in list(v):
            if embedded and key in ("apiVersion", "kind", "metadata"):
                continue
            sub = props.get(key)
            if sub is None and isinstance(ap, dict):
                sub = ap
            if sub is not None:
                _prune(sub, v[key], _join(path, key), pruned)
            elif not preserve:
                del v[key]
                pruned.append(_join(path, key))
    elif isinstance(v, list) and isinstance(s.get("items"), dict):
        for i, x in enumerate(v):
            _prune(s["items"], x, f"{path}[{i}]", pruned)


# ---------------------------------------------------------- printer columns

_COLUMN_TYPES = {"integer", "number", "string", "boolean", "date"}
_NAME_COLUMN = {"name": "Name", "type": "string", "format": "name",
                "description": "Name must be unique within a namespace. Is required when "
                "creating resources, although some resources may allow a client to request the "
                "generation of an appropriate name automatically. Name is primarily intended "
                "for creation idempotence and configuration definition. Cannot be updated. "
                "More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/"
                "names#names", "priority": 0}
_AGE_COLUMN = {"name": "Age", "type": "date", "format": "",
               "description": "CreationTimestamp is a timestamp representing the server time "
               "when this object was created.", "priority": 0,
               "jsonPath": ".metadata.creationTimestamp"}


def printer_columns(crd: dict[str, Any], version: str) -> list[dict[str, Any]]:
    """Table columnDefinitions for a CRD version: Name, then the version's
    additionalPrinterColumns (or Age when it has none). Each definition also
    carries the column's ``jsonPath`` for row(); drop that key when putting
    the definitions on the wire if a strict consumer needs exactly upstream's
    fields."""
    cols: list[dict[str, Any]] = [dict(_NAME_COLUMN, jsonPath=".metadata.name")]
    spec_cols: list[dict[str, Any]] | None = None
    for v in (crd.get("spec") or {}).get("versions") or []:
        if v.get("name") == version:
            spec_cols = v.get("additionalPrinterColumns")
    if not spec_cols:
        cols.append(dict(_AGE_COLUMN))
        return cols
    for c in spec_cols:
        cols.append({"name": c.get("name", ""), "type": c.get("type", "string"),
                     "format": c.get("format", ""), "description": c.get("description", ""),
                     "priority": int(c.get("priority", 0)), "jsonPath": c.get("jsonPath", "")})
    return cols


def column_definitions(columns: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The columns as upstream's Table puts them on the wire."""
    return [{k: c[k] for k in ("name", "type", "format", "description", "priority")}
            for c in columns]


def row(columns: list[dict[str, Any]], obj: dict[str, Any],
        now: datetime | None = None) -> list[Any]:
    """The cells of one Table row for ``obj``."""
    cells: list[Any] = []
    for c in columns:
        values = jsonpath(c.get("jsonPath", ""), obj)
        if not values:
            cells.append(None)
            continue
        val: Any = values[0] if len(values) == 1 else ",".join(_cell_str(x) for x in values)
        typ = c.get("type")
        if typ == "date" and isinstance(val, str):
            val = _age(val, now)
        elif typ == "string" and not isinstance(val, str):
            val = _cell_str(val)
        cells.append(val)
    return cells


def _cell_str(v: Any) -> str:
    if isinstance(v, str):
        return v
    if isinstance(v, bool):
        return "true" if v else "false"
    return orjson.dumps(v).decode()


def _age(ts: str, now: datetime | None) -> str:
    try:
        t = datetime.fromisoformat(ts.replace("Z", "+00:00"))
    except ValueError:
        return ts
    now = now or datetime.now(UTC)
    return human_duration((now - t).total_seconds())


# ----------------------------------------------------------------- JSONPath

_TOKEN = re.compile(r"""\.\.?([A-Za-z0-9_\-/]+|\*)|\[(\*|-?\d+|\?\(.+?\))\]|\['([^']*)'\]""")
_FILTER = re.compile(r"""^\?\(@\.([\w.\-/]+)\s*(==|!=)\s*(?:"([^"]*)"|'([^']*)'|(\S+))\)$""")


def jsonpath(expr: str, obj: Any) -> list[Any]:
    """Evaluate the simple JSONPath printer columns use: ``.spec.x``,
    ``{.a.b}``, ``.items[0]``, ``[*]`` and ``[?(@.type=="Ready")]``
    filters. Returns every match; missing paths give []."""
    expr = expr.strip()
    if expr.startswith("{") and expr.endswith("}"):
        expr = expr[1:-1]
    current = [obj]
    pos = 0
    while pos < len(expr):
        m = _TOKEN.match(expr, pos)
        if m is None:
            return []
        pos = m.end()
        key, index, quoted = m.group(1), m.group(2), m.group(3)
        nxt: list[Any] = []
        if key is not None or quoted is not None:
            k = key if key is not None else quoted
            for c in current:
                if k == "*":
                    if isinstance(c, dict):
                        nxt.extend(c.values())
                    elif isinstance(c, list):
                        nxt.extend(c)
                elif isinstance(c, dict) and k in c:
                    nxt.append(c[k])
        elif index == "*":
            for c in current:
                if isinstance(c, list):
                    nxt.extend(c)
                elif isinstance(c, dict):
                    nxt.extend(c.values())
        elif index.startswith("?"):
            f = _FILTER.match(index)
            if f is None:
                return []
            fpath, op = f.group(1), f.group(2)
            want = next((g for g in f.group(3, 4, 5) if g is not None), "")
            for c in current:
                for item in c if isinstance(c, list) else []:
                    got = jsonpath("." + fpath, item)
                    hit = bool(got) and _cell_str(got[0]) == want
                    if hit == (op == "=="):
                        nxt.append(item)
        else:
            i = int(index)
            for c in current:
                if isinstance(c, list) and -len(c) <= i < len(c):
                    nxt.append(c[i])
        current = nxt
    return [c for c in current]
