"""A container's environment, as the kubelet builds it (makeEnvironmentVariables).

Order of the returned "K=V" list (the kubelet's own order is a Go map's, so
any order is faithful; this one is stable and readable): service variables
first, then envFrom sources in order, then ``env`` in declaration order. A
name defined twice keeps its last value, placed where that value came from.

Rules kept exactly:
- ``env`` values expand ``$(VAR)`` against what came before in this list
  (envFrom and earlier ``env`` entries, then the service variables); ``$$``
  is a literal ``$``; an unknown or unclosed reference stays as written.
- A missing ConfigMap or Secret, or a missing key, fails the container with
  the kubelet's words (``configmap "x" not found``, ``couldn't find key k in
  ConfigMap ns/x``) unless the reference is ``optional``.
- envFrom takes every key (with its prefix), as the kubelet does since
  RelaxedEnvironmentVariableValidation went GA; only names no runtime could
  carry (empty, '=' or non-printable characters) are skipped.
- Service variables: see ``service_env``.

The field and resource helpers here are shared with the downward API volume.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import os
from collections.abc import Callable, Mapping
from typing import Any

import aiohttp

from pinnace.api.quantity import QuantityError, milli_value, parse_quantity, value
from pinnace.client.rest import ApiError

from . import ocispec

log = logging.getLogger("pinnace.kubelet.envvars")

Obj = dict[str, Any]

__all__ = ["ConfigError", "container_env", "expand", "field_value", "format_map",
           "go_quote", "merge_image_env", "metadata_field", "resource_value", "service_env"]

# Services whose variables every pod gets, whatever enableServiceLinks says.
MASTER_SERVICES = frozenset({"kubernetes"})

# The resources a missing limit is defaulted to node allocatable for.
_DEFAULTED_LIMITS = ("cpu", "memory", "ephemeral-storage")


class ConfigError(Exception):
    """The container cannot be configured (CreateContainerConfigError); the
    message is the kubelet's."""


# -- service links ------------------------------------------------------------------

def _env_name(name: str) -> str:
    return name.upper().replace("-", "_")


def _service_ip_set(svc: Obj) -> bool:
    ip = (svc.get("spec") or {}).get("clusterIP") or ""
    return ip not in ("", "None")


def _join_host_port(host: str, port: Any) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _from_service(svc: Obj, out: dict[str, str]) -> None:
    spec = svc.get("spec") or {}
    ip = spec["clusterIP"]
    ports = [p for p in spec.get("ports") or [] if isinstance(p, dict)]
    if not ports:
        return
    prefix = _env_name(svc["metadata"]["name"])
    out[f"{prefix}_SERVICE_HOST"] = ip
    out[f"{prefix}_SERVICE_PORT"] = str(ports[0].get("port"))
    for p in ports:
        if p.get("name"):
            out[f"{prefix}_SERVICE_PORT_{_env_name(p['name'])}"] = str(p.get("port"))
    # Docker links.
    for i, p in enumerate(ports):
        proto = p.get("protocol") or "TCP"
        url = f"{proto.lower()}://{_join_host_port(ip, p.get('port'))}"
        if i == 0:
            out[f"{prefix}_PORT"] = url
        pp = f"{prefix}_PORT_{p.get('port')}_{proto.upper()}"
        out[pp] = url
        out[f"{pp}_PROTO"] = proto.lower()
        out[f"{pp}_PORT"] = str(p.get("port"))
        out[f"{pp}_ADDR"] = ip


def service_env(services: list[Obj], namespace: str, enable_service_links: bool) -> dict[str, str]:
    """The variables the kubelet injects for Services: those with a cluster
    IP in the pod's namespace (when links are enabled) and "kubernetes" in
    "default" always; a same-named service in the pod's namespace wins."""
    chosen: dict[str, Obj] = {}
    for svc in services:
        if not _service_ip_set(svc):
            continue
        meta = svc.get("metadata") or {}
        name, ns = meta.get("name") or "", meta.get("namespace") or ""
        if ns == "default" and name in MASTER_SERVICES:
            chosen.setdefault(name, svc)
        elif ns == namespace and enable_service_links:
            chosen[name] = svc
    out: dict[str, str] = {}
    for name in sorted(chosen):
        _from_service(chosen[name], out)
    return out


# -- $(VAR) expansion ---------------------------------------------------------------

def expand(s: str, mapping: Callable[[str], str]) -> str:
    """third_party/forked/golang/expansion.Expand: ``$(NAME)`` becomes
    mapping(NAME), ``$$`` a single ``$``; anything else stays as written."""
    out: list[str] = []
    i, n, checkpoint = 0, len(s), 0
    while i < n:
        if s[i] == "$" and i + 1 < n:
            out.append(s[checkpoint:i])
            nxt = s[i + 1]
            if nxt == "$":
                out.append("$")
                advance = 1
            elif nxt == "(":
                close = s.find(")", i + 2)
                if close < 0:
                    out.append("$(")
                    advance = 1
                else:
                    out.append(mapping(s[i + 2:close]))
                    advance = close - i
            else:
                out.append("$" + nxt)
                advance = 1
            i += advance
            checkpoint = i + 1
        i += 1
    out.append(s[checkpoint:])
    return "".join(out)


def _mapping(*contexts: Mapping[str, str]) -> Callable[[str], str]:
    def look(name: str) -> str:
        for ctx in contexts:
            if name in ctx:
                return ctx[name]
        return f"$({name})"
    return look


# -- downward API: fields ----------------------------------------------------------

def go_quote(s: str) -> str:
    """Go's strconv.Quote (what %q prints)."""
    out = ['"']
    for ch in s:
        o = ord(ch)
        if ch in ('"', "\\"):
            out.append("\\" + ch)
        elif ch.isprintable():
            out.append(ch)
        elif ch in _GO_ESCAPES:
            out.append(_GO_ESCAPES[ch])
        elif o < 0x20 or o == 0x7F:
            out.append(f"\\x{o:02x}")
        elif o < 0x10000:
            out.append(f"\\u{o:04x}")
        else:
            out.append(f"\\U{o:08x}")
    out.append('"')
    return "".join(out)


_GO_ESCAPES = {"\a": "\\a", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t",
               "\v": "\\v"}


def format_map(m: Mapping[str, str] | None) -> str:
    """fieldpath.FormatMap: one ``key="value"`` line per entry, sorted by key."""
    return "\n".join(f"{k}={go_quote(str(v))}" for k, v in sorted((m or {}).items()))


def metadata_field(pod: Obj, path: str) -> str:
    """fieldpath.ExtractFieldPathAsString: the metadata fields a downward API
    volume can show. Raises ConfigError for anything else."""
    meta = pod.get("metadata") or {}
    if path.endswith("']"):
        head, sep, sub = path[:-2].partition("['")
        if sep and head:
            if head == "metadata.annotations":
                return str((meta.get("annotations") or {}).get(sub, ""))
            if head == "metadata.labels":
                return str((meta.get("labels") or {}).get(sub, ""))
            raise ConfigError(f'fieldPath "{path}" does not support subscript')
    if path == "metadata.annotations":
        return format_map(meta.get("annotations"))
    if path == "metadata.labels":
        return format_map(meta.get("labels"))
    if path in ("metadata.name", "metadata.namespace", "metadata.uid"):
        return str(meta.get(path.split(".", 1)[1]) or "")
    raise ConfigError(f"unsupported fieldPath: {path}")


def field_value(pod: Obj, field_path: str, *, node_ip: str = "", pod_ip: str = "",
                pod_ips: list[str] | None = None) -> str:
    """podFieldSelectorRuntimeValue: a fieldRef as an env var sees it."""
    spec = pod.get("spec") or {}
    ips = pod_ips if pod_ips is not None else ([pod_ip] if pod_ip else [])
    host_ips = [ip for ip in node_ip.split(",") if ip]
    if field_path == "spec.nodeName":
        return str(spec.get("nodeName") or "")
    if field_path == "spec.serviceAccountName":
        return str(spec.get("serviceAccountName") or "")
    if field_path == "status.hostIP":
        return host_ips[0] if host_ips else ""
    if field_path == "status.hostIPs":
        return ",".join(host_ips)
    if field_path == "status.podIP":
        return ips[0] if ips else pod_ip
    if field_path == "status.podIPs":
        return ",".join(ips)
    return metadata_field(pod, field_path)


# -- downward API: resources -------------------------------------------------------

def _host_allocatable() -> dict[str, str]:
    from .host import MEMORY_AVAILABLE_MIN, mem_total

    st = os.statvfs("/")
    return {"cpu": str(len(os.sched_getaffinity(0))),
            "memory": str(max(mem_total() - MEMORY_AVAILABLE_MIN, 0)),
            "ephemeral-storage": str(st.f_blocks * st.f_frsize)}


def _is_zero(q: Any) -> bool:
    try:
        return parse_quantity(q) == 0
    except QuantityError:
        return True


def _find_container(pod: Obj, name: str) -> Obj | None:
    spec = pod.get("spec") or {}
    for key in ("containers", "initContainers"):
        for c in spec.get(key) or []:
            if c.get("name") == name:
                return c  # type: ignore[no-any-return]
    return None


def resource_value(pod: Obj, container: Obj | None, ref: Obj,
                   node_allocatable: Mapping[str, Any] | None = None) -> str:
    """The value of a resourceFieldRef: limits defaulted to the pod-level
    limit or node allocatable, divided by the divisor and rounded up
    (cpu in millicores, everything else in units)."""
    cname = ref.get("containerName")
    if cname:
        container = _find_container(pod, cname)
        if container is None:
            raise ConfigError(f"could not find container {cname}")
    if container is None:
        raise ConfigError("no container given for resourceFieldRef")
    resource = ref.get("resource") or ""
    kind, _, name = resource.partition(".")
    res = container.get("resources") or {}
    if kind not in ("limits", "requests") or not name or not (
            name in _DEFAULTED_LIMITS or name.startswith("hugepages-")):
        raise ConfigError(f"unsupported container resource : {resource}")
    q: Any = (res.get(kind) or {}).get(name)
    if kind == "limits" and name in _DEFAULTED_LIMITS and (q is None or _is_zero(q)):
        pod_limits = ((pod.get("spec") or {}).get("resources") or {}).get("limits") or {}
        if pod_limits.get(name) is not None and not _is_zero(pod_limits[name]):
            q = pod_limits[name]
        else:
            alloc = node_allocatable if node_allocatable is not None else _host_allocatable()
            q = alloc.get(name)
    divisor: Any = ref.get("divisor")
    try:
        if divisor is None or _is_zero(divisor):
            divisor = "1"
        q = q if q is not None else "0"
        if name == "cpu":
            num, den = milli_value(q), milli_value(divisor)
        else:
            num, den = value(q), value(divisor)
    except QuantityError as e:
        raise ConfigError(str(e)) from e
    if den == 0:
        raise ConfigError(f"invalid divisor for {resource}")
    return str(-(-num // den))


# -- the environment -----------------------------------------------------------------

def _api_message(e: ApiError) -> str:
    return str(e.status.get("message") or e)


async def _fetch(client: Any, resource: str, kind: str, namespace: str, name: str) -> Obj | None:
    """The object, or None when it does not exist; other failures raise ConfigError."""
    try:
        return await client.resource("v1", resource).get(name, namespace=namespace)  # type: ignore[no-any-return]
    except ApiError as e:
        if e.code == 404:
            return None
        raise ConfigError(_api_message(e)) from e
    except (aiohttp.ClientError, OSError, asyncio.TimeoutError) as e:
        raise ConfigError(f"couldn't get {kind} {namespace}/{name}: {e}") from e


def _secret_data(secret: Obj) -> dict[str, str]:
    out = {}
    for k, v in (secret.get("data") or {}).items():
        try:
            out[k] = base64.b64decode(v or "").decode("utf-8", errors="replace")
        except ValueError:
            out[k] = ""
    return out


def _printable_name(name: str) -> bool:
    return bool(name) and "=" not in name and all(" " <= ch <= "~" for ch in name)


def _put(env: dict[str, str], name: str, val: str) -> None:
    env.pop(name, None)
    env[name] = val


async def container_env(client: Any, pod: Obj, container: Obj, *, node_ip: str, pod_ip: str,
                        service_env: Mapping[str, str], image_env: list[str] | None = None,
                        node_allocatable: Mapping[str, Any] | None = None) -> list[str]:
    """The container's variables as "K=V" strings (see the module doc).

    service_env: what ``service_env()`` gave for the pod's namespace (the
    caller applies enableServiceLinks there). image_env: when given, the
    result is merged over it (``merge_image_env``); by default the pod's
    list alone is returned and the runtime merges. node_allocatable: what
    missing limits default to for resourceFieldRef (default: this host).
    Raises ConfigError with the kubelet's message."""
    meta = pod.get("metadata") or {}
    ns = meta.get("namespace") or "default"
    status = pod.get("status") or {}
    pod_ips = [pod_ip] if pod_ip else []
    for entry in status.get("podIPs") or []:
        ip = entry.get("ip") if isinstance(entry, dict) else None
        if ip and ip not in pod_ips:
            pod_ips.append(ip)
    if not pod_ips and status.get("podIP"):
        pod_ips = [status["podIP"]]

    config_maps: dict[str, Obj | None] = {}
    secrets: dict[str, dict[str, str] | None] = {}

    async def config_map(name: str) -> Obj | None:
        if name not in config_maps:
            config_maps[name] = await _fetch(client, "configmaps", "configMap", ns, name)
        return config_maps[name]

    async def secret(name: str) -> dict[str, str] | None:
        if name not in secrets:
            obj = await _fetch(client, "secrets", "secret", ns, name)
            secrets[name] = _secret_data(obj) if obj is not None else None
        return secrets[name]

    env: dict[str, str] = dict(service_env)
    declared: dict[str, str] = {}   # what the pod itself defines (envFrom, env)
    for src in container.get("envFrom") or []:
        prefix = src.get("prefix") or ""
        data: Mapping[str, str] | None
        if src.get("configMapRef"):
            ref = src["configMapRef"]
            cm = await config_map(ref.get("name") or "")
            if cm is None:
                if ref.get("optional"):
                    continue
                raise ConfigError(f'configmap "{ref.get("name") or ""}" not found')
            data = cm.get("data") or {}
        elif src.get("secretRef"):
            ref = src["secretRef"]
            data = await secret(ref.get("name") or "")
            if data is None:
                if ref.get("optional"):
                    continue
                raise ConfigError(f'secret "{ref.get("name") or ""}" not found')
        else:
            continue
        skipped = []
        for k, v in data.items():
            name = prefix + k
            if not _printable_name(name):
                skipped.append(name)
                continue
            _put(env, name, str(v))
            declared[name] = str(v)
        if skipped:
            log.info("pod %s/%s: skipped envFrom keys %s: not environment variable names",
                     ns, meta.get("name"), sorted(skipped))

    mapping = _mapping(declared, service_env)
    for var in container.get("env") or []:
        name = var.get("name") or ""
        val = var.get("value") or ""
        source = var.get("valueFrom")
        if val:
            val = expand(val, mapping)
        elif source:
            if source.get("fieldRef"):
                val = field_value(pod, source["fieldRef"].get("fieldPath") or "", node_ip=node_ip,
                                  pod_ip=pod_ip, pod_ips=pod_ips)
            elif source.get("resourceFieldRef"):
                val = resource_value(pod, container, source["resourceFieldRef"], node_allocatable)
            elif source.get("configMapKeyRef"):
                ref = source["configMapKeyRef"]
                cname, key = ref.get("name") or "", ref.get("key") or ""
                cm = await config_map(cname)
                if cm is None:
                    if ref.get("optional"):
                        continue
                    raise ConfigError(f'configmap "{cname}" not found')
                found = (cm.get("data") or {}).get(key)
                if found is None:
                    if ref.get("optional"):
                        continue
                    raise ConfigError(f"couldn't find key {key} in ConfigMap {ns}/{cname}")
                val = str(found)
            elif source.get("secretKeyRef"):
                ref = source["secretKeyRef"]
                sname, key = ref.get("name") or "", ref.get("key") or ""
                sdata = await secret(sname)
                if sdata is None:
                    if ref.get("optional"):
                        continue
                    raise ConfigError(f'secret "{sname}" not found')
                if key not in sdata:
                    if ref.get("optional"):
                        continue
                    raise ConfigError(f"couldn't find key {key} in Secret {ns}/{sname}")
                val = sdata[key]
        _put(env, name, val)
        declared[name] = val

    out = [f"{k}={v}" for k, v in env.items()]
    return merge_image_env(image_env, out) if image_env is not None else out


def merge_image_env(image_env: list[str] | None, pod_env: list[str]) -> list[str]:
    """The image's ENV overridden by the pod's, as containerd merges them: a
    name the image sets keeps its place with the pod's value, new names
    follow; PATH defaults to the standard one if neither sets it."""
    return ocispec.merge_env(list(image_env or []), pod_env)
