"""``--admission-control-config-file``: upstream's AdmissionConfiguration,
which gives admission plugins their configuration. Only PodSecurity takes
one here: its PodSecurityConfiguration (the levels for namespaces without
pod-security labels, and the users, namespaces and runtime classes exempt
from it), inline or in a file of its own (``path``).

A bad file stops the server at start, naming the field, as upstream's does:
a typo must not silently leave the cluster unguarded."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from pinnace.api.validation.names import is_dns1123_label, is_dns1123_subdomain

from .podsecurity import (
    DEFAULT_POLICY,
    NO_EXEMPTIONS,
    Exemptions,
    LevelVersion,
    Policy,
    parse_level,
    parse_version,
)

ADMISSION_VERSIONS = ("apiserver.config.k8s.io/v1", "apiserver.k8s.io/v1alpha1")
POD_SECURITY_VERSIONS = tuple(f"pod-security.admission.config.k8s.io/{v}"
                              for v in ("v1", "v1beta1", "v1alpha1"))


class AdmissionConfigError(Exception):
    pass


@dataclass(frozen=True)
class AdmissionConfig:
    pod_security_defaults: Policy = DEFAULT_POLICY
    pod_security_exemptions: Exemptions = NO_EXEMPTIONS


def load(path: str | Path) -> AdmissionConfig:
    """The configuration in ``path`` (YAML or JSON); AdmissionConfigError
    naming the file and the problem."""
    path = Path(path)
    doc = _read(path, "admission configuration")
    if doc.get("kind") != "AdmissionConfiguration" or \
            doc.get("apiVersion") not in ADMISSION_VERSIONS:
        raise AdmissionConfigError(
            f"{path}: want kind AdmissionConfiguration, apiVersion {ADMISSION_VERSIONS[0]}; "
            f"got kind {doc.get('kind')!r}, apiVersion {doc.get('apiVersion')!r}")
    plugins = doc.get("plugins") or []
    if not isinstance(plugins, list):
        raise AdmissionConfigError(f"{path}: plugins: must be a list")
    out = AdmissionConfig()
    for i, plugin in enumerate(plugins):
        if not isinstance(plugin, dict) or not plugin.get("name"):
            raise AdmissionConfigError(f"{path}: plugins[{i}].name: Required value")
        if plugin["name"] != "PodSecurity":
            continue  # no other plugin here takes a configuration
        if "configuration" in plugin:
            conf, where = plugin["configuration"], f"{path}: plugins[{i}].configuration"
        elif plugin.get("path"):
            conf_path = Path(plugin["path"])
            if not conf_path.is_absolute():  # as upstream: relative to this file
                conf_path = path.parent / conf_path
            conf, where = _read(conf_path, "PodSecurity configuration"), str(conf_path)
        else:
            continue
        out = _pod_security(conf, where)
    return out


def _read(path: Path, what: str) -> dict[str, Any]:
    try:
        doc = yaml.safe_load(path.read_bytes())
    except OSError as e:
        raise AdmissionConfigError(f"reading {what} {path}: {e.strerror or e}") from None
    except yaml.YAMLError as e:
        raise AdmissionConfigError(f"{path}: not YAML: {' '.join(str(e).split())}") from None
    if not isinstance(doc, dict):
        raise AdmissionConfigError(f"{path}: must be an object")
    return doc


def _pod_security(conf: Any, where: str) -> AdmissionConfig:
    if not isinstance(conf, dict):
        raise AdmissionConfigError(f"{where}: must be an object")
    if conf.get("kind") != "PodSecurityConfiguration" or \
            conf.get("apiVersion") not in POD_SECURITY_VERSIONS:
        raise AdmissionConfigError(
            f"{where}: want kind PodSecurityConfiguration, apiVersion "
            f"{POD_SECURITY_VERSIONS[0]}; got kind {conf.get('kind')!r}, "
            f"apiVersion {conf.get('apiVersion')!r}")
    errors: list[str] = []
    defaults = conf.get("defaults") or {}
    exemptions = conf.get("exemptions") or {}
    for field, value in (("defaults", defaults), ("exemptions", exemptions)):
        if not isinstance(value, dict):
            raise AdmissionConfigError(f"{where}: {field}: must be an object")
    unknown = set(defaults) - {m + s for m in ("enforce", "audit", "warn") for s in ("", "-version")}
    errors += [f'defaults.{k}: unknown field' for k in sorted(unknown)]

    def mode(name: str) -> LevelVersion:
        level = defaults.get(name, "privileged")
        version = defaults.get(f"{name}-version", "latest")
        if not isinstance(level, str) or parse_level(level)[1]:
            errors.append(f'defaults.{name}: Unsupported value: {json.dumps(level)}: supported '
                          'values: "privileged", "baseline", "restricted"')
        if not isinstance(version, str) or parse_version(version)[1]:
            errors.append(f'defaults.{name}-version: Invalid value: {json.dumps(version)}: '
                          'must be "latest" or "v1.x"')
        return LevelVersion(str(level), str(version))

    policy = Policy(mode("enforce"), mode("audit"), mode("warn"))
    lists: dict[str, frozenset[str]] = {}
    for key, check in (("usernames", None), ("namespaces", is_dns1123_label),
                       ("runtimeClasses", is_dns1123_subdomain)):
        items = exemptions.get(key) or []
        if not isinstance(items, list):
            errors.append(f"exemptions.{key}: must be a list")
            items = []
        seen: set[str] = set()
        for j, item in enumerate(items):
            at = f"exemptions.{key}[{j}]"
            if not isinstance(item, str) or not item.strip():
                errors.append(f"{at}: Invalid value: {json.dumps(item)}: must be a non-empty "
                              "string")
            elif item in seen:
                errors.append(f"{at}: Duplicate value: {json.dumps(item)}")
            elif check is not None and check(item):
                errors.append(f"{at}: Invalid value: {json.dumps(item)}: "
                              f"{'; '.join(check(item))}")
            seen.add(str(item))
        lists[key] = frozenset(seen)
    unknown = set(exemptions) - set(lists)
    errors += [f"exemptions.{k}: unknown field" for k in sorted(unknown)]
    if errors:
        raise AdmissionConfigError(f"{where}: " + "; ".join(errors))
    return AdmissionConfig(policy, Exemptions(usernames=lists["usernames"],
                                              namespaces=lists["namespaces"],
                                              runtime_classes=lists["runtimeClasses"]))
