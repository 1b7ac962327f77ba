"""Access to the upstream Kubernetes schemas (from the kubernetes-validate
package): the definitions every other module reads for validation,
`kubectl explain`, OpenAPI and strategic-merge metadata.

Loaded lazily, once per process, from the package's single definitions file
for one Kubernetes version.
"""

from __future__ import annotations

import functools
from importlib.util import find_spec
from pathlib import Path
from typing import Any

import orjson

KUBERNETES_VERSION = "1.37.0"
REF_PREFIX = "#/$defs/"


@functools.cache
def definitions() -> dict[str, dict[str, Any]]:
    """All definitions by name, e.g. ``io.k8s.api.core.v1.Pod``."""
    # Found, not imported: the package's own code (jsonschema and all it
    # pulls in, ~4 MB per process) is of no use here.
    spec = find_spec("kubernetes_validate")
    assert spec is not None and spec.submodule_search_locations
    root = Path(list(spec.submodule_search_locations)[0]) / "kubernetes-json-schema"
    path = root / f"v{KUBERNETES_VERSION}-local" / "_definitions.json"
    return orjson.loads(path.read_bytes())["$defs"]  # type: ignore[no-any-return]


@functools.cache
def _by_gvk() -> dict[tuple[str, str, str], str]:
    out: dict[tuple[str, str, str], str] = {}
    for name, d in definitions().items():
        for gvk in d.get("x-kubernetes-group-version-kind", ()):
            out.setdefault((gvk["group"], gvk["version"], gvk["kind"]), name)
    return out


def definition_name(group: str, version: str, kind: str) -> str | None:
    """The definition name for a kind, or None when upstream has no schema."""
    return _by_gvk().get((group, version, kind))


def for_gvk(group: str, version: str, kind: str) -> dict[str, Any] | None:
    name = definition_name(group, version, kind)
    return definitions()[name] if name else None


def resolve(node: dict[str, Any]) -> dict[str, Any]:
    """Follow a ``$ref`` (if any) to the definition it names."""
    ref = node.get("$ref")
    if ref and ref.startswith(REF_PREFIX):
        return definitions()[ref[len(REF_PREFIX):]]
    return node


def ref_name(node: dict[str, Any]) -> str | None:
    ref = node.get("$ref")
    return ref[len(REF_PREFIX):] if ref and ref.startswith(REF_PREFIX) else None
