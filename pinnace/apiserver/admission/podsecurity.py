"""Pod Security Standards, as upstream's k8s.io/pod-security-admission does them:
the checks of the baseline and restricted levels at every policy version up to
latest (v1.37), the namespace labels that choose a level and version per mode
(enforce, audit, warn), and the decisions and texts upstream's admission gives
for pods, for workloads with pod templates and for namespaces.

Pods are plain API dicts (camelCase, as stored). Nothing here reads storage: the
caller passes the namespace's labels, the exemptions of its configuration and,
for a namespace whose enforce level tightens, the pods already in it. The
admission plugin at the end (PodSecurity) is given readers for those."""

from __future__ import annotations

import functools
import re
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from pinnace.api.field import invalid as field_invalid

from .. import status
from ..status import APIError
from . import CREATE, UPDATE, Attributes

Obj = dict[str, Any]
# A check returns (forbidden reason, forbidden detail) when the pod fails it.
CheckFn = Callable[[Obj, Obj], "tuple[str, str] | None"]

PRIVILEGED = "privileged"
BASELINE = "baseline"
RESTRICTED = "restricted"
LEVELS = (PRIVILEGED, BASELINE, RESTRICTED)
LATEST = "latest"

LABEL_PREFIX = "pod-security.kubernetes.io/"
ENFORCE_LABEL = LABEL_PREFIX + "enforce"
ENFORCE_VERSION_LABEL = LABEL_PREFIX + "enforce-version"
AUDIT_LABEL = LABEL_PREFIX + "audit"
AUDIT_VERSION_LABEL = LABEL_PREFIX + "audit-version"
WARN_LABEL = LABEL_PREFIX + "warn"
WARN_VERSION_LABEL = LABEL_PREFIX + "warn-version"

# Audit annotation keys as kube-apiserver records them (the library's keys with
# the label prefix in front).
EXEMPT_ANNOTATION = LABEL_PREFIX + "exempt"
ENFORCE_POLICY_ANNOTATION = LABEL_PREFIX + "enforce-policy"
AUDIT_VIOLATIONS_ANNOTATION = LABEL_PREFIX + "audit-violations"
ERROR_ANNOTATION = LABEL_PREFIX + "error"

UNKNOWN_FORBIDDEN_REASON = "unknown forbidden reason"
DEFAULT_MAX_PODS_TO_CHECK = 3000
# Upstream gives the dry run of existing pods one second (or half what is left
# of the request's deadline, whichever is less).
DEFAULT_POD_CHECK_SECONDS = 1.0


# --- message helpers shared by the checks -------------------------------------

def _go_quote(s: str) -> str:
    """Go's %q, which upstream uses for names and values in its messages."""
    out = ['"']
    for ch in s:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ch in _GO_ESCAPES:
            out.append(_GO_ESCAPES[ch])
        elif ch.isprintable():
            out.append(ch)
        elif ord(ch) < 0x80:
            out.append(f"\\x{ord(ch):02x}")
        elif ord(ch) <= 0xFFFF:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(f"\\U{ord(ch):08x}")
    out.append('"')
    return "".join(out)


_GO_ESCAPES = {"\a": "\\a", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t", "\v": "\\v"}


def _join_quote(items: Iterable[str]) -> str:
    # Deliberately no escaping: upstream wraps the items in bare quotes, so an
    # item that already holds quotes (a forbidden annotation) shows them nested.
    items = list(items)
    return '"' + '", "'.join(items) + '"' if items else ""


def _plural(singular: str, plural: str, count: int) -> str:
    return singular if count == 1 else plural


def _containers_phrase(names: list[str]) -> str:
    return f'{_plural("container", "containers", len(names))} {_join_quote(names)}'


def _containers(spec: Obj) -> Iterator[Obj]:
    # Upstream's visiting order, which fixes the order names appear in details.
    for key in ("initContainers", "containers", "ephemeralContainers"):
        for container in spec.get(key) or ():
            yield container


def _name(container: Obj) -> str:
    return str(container.get("name") or "")


def _sc(obj: Obj) -> Obj:
    return obj.get("securityContext") or {}


def _is_windows(spec: Obj) -> bool:
    return (spec.get("os") or {}).get("name") == "windows"


def _in_user_namespace(spec: Obj) -> bool:
    return spec.get("hostUsers") is False


def _unless_windows(check: CheckFn) -> CheckFn:
    # From v1.25 the Linux-only restricted checks pass a pod that declares
    # spec.os.name=windows: API validation forbids it those fields anyway.
    def wrapped(meta: Obj, spec: Obj) -> tuple[str, str] | None:
        return None if _is_windows(spec) else check(meta, spec)
    return wrapped


def _unless_user_namespace(check: CheckFn) -> CheckFn:
    # From v1.35 a pod in its own user namespace (hostUsers: false) may run as
    # root and unmask /proc: root inside is not root on the node.
    def wrapped(meta: Obj, spec: Obj) -> tuple[str, str] | None:
        return None if _in_user_namespace(spec) else check(meta, spec)
    return wrapped


# --- baseline checks -----------------------------------------------------------

_APPARMOR_ANNOTATION_PREFIX = "container.apparmor.security.beta.kubernetes.io/"


def _app_armor(meta: Obj, spec: Obj) -> tuple[str, str] | None:
    def allowed_type(profile: Obj) -> bool:
        return profile.get("type") in ("RuntimeDefault", "Localhost")

    setters: list[str] = []
    bad_values: set[str] = set()
    pod_profile = _sc(spec).get("appArmorProfile")
    if pod_profile is not None and not allowed_type(pod_profile):
        setters.append("pod")
        bad_values.add(str(pod_profile.get("type") or ""))
    bad_containers = []
    for c in _containers(spec):
        profile = _sc(c).get("appArmorProfile")
        if profile is not None and not allowed_type(profile):
            bad_containers.append(_name(c))
            bad_values.add(str(profile.get("type") or ""))
    if bad_containers:
        setters.append(_containers_phrase(bad_containers))
    annotations = sorted(
        f"{key}={_go_quote(value)}" for key, value in (meta.get("annotations") or {}).items()
        if key.startswith(_APPARMOR_ANNOTATION_PREFIX)
        and not (value in ("", "runtime/default") or value.startswith("localhost/")))
    values = sorted(bad_values) + annotations
    if annotations:
        setters.append(_plural("annotation", "annotations", len(annotations)))
    if not setters:
        return None
    return (_plural("forbidden AppArmor profile", "forbidden AppArmor profiles", len(values)),
            f"{' and '.join(setters)} must not set AppArmor profile type to {_join_quote(values)}")


# The container runtime's default capability set.
BASELINE_CAPABILITIES = frozenset({
    "AUDIT_WRITE", "CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "MKNOD", "NET_BIND_SERVICE",
    "SETFCAP", "SETGID", "SETPCAP", "SETUID", "SYS_CHROOT"})


def _capabilities_baseline(meta: Obj, spec: Obj) -> tuple[str, str] | None:
    bad_containers = []
    added: set[str] = set()
    for c in _containers(spec):
        capabilities = _sc(c).get("capabilities")
        if capabilities is None:
            continue
        extra = [cap for cap in capabilities.get("add") or () if cap not in BASELINE_CAPABILITIES]
        if extra:
            bad_containers.append(_name(c))
            added.update(extra)
    if not bad_containers:
        return None
    return ("non-default capabilities",
            f"{_containers_phrase(bad_containers)} must not include {_join_quote(sorted(added))} "
            "in securityContext.capabilities.add")


def _host_namespaces(meta: Obj, spec: Obj) -> tuple[str, str] | None:
    shared = [f"{key}=true" for key in ("hostNetwork", "hostPID", "hostIPC") if spec.get(key) is True]
    return ("host namespaces", ", ".join(shared)) if shared else None


def _host_path_volumes(meta: Obj, spec: Obj) -> tuple[str, str] | None:
    names = [str(v.get("name") or "") for v in spec.get("volumes") or () if v.get("hostPath") is not None]
    if not names:
        return None
    return "hostPath volumes", f'{_plural("volume", "volumes", len(names))} {_join_quote(names)}'


def _host_ports(meta: Obj, spec: Obj) -> tuple[str, str] | None:
    bad_containers = []
    ports: set[str] = set()
    for c in _containers(spec):
        used = [str(p["hostPort"]) for p in c.get("ports") or () if p.get("hostPort")]
        if used:
            bad_containers.append(_name(c))
            ports.update(used)
    if not bad_containers:
        return None
    # Sorted as strings, as upstream's string set sorts them ("10", "8080", "9").
    return ("hostPort",
            f"{_containers_phrase(bad_containers)} {_plural('uses', 'use', len(bad_containers))} "
            f"{_plural('hostPort', 'hostPorts', len(ports))} {', '.join(sorted(ports))}")


def _host_probes(meta: Obj, spec: Obj) -> tuple[str, str] | None:
    def hosts(handler: Obj | None) -> list[str]:
        handler = handler or {}
        return [h for h in ((handler.get(kind) or {}).get("host") for kind in ("httpGet", "tcpSocket")) if h]

    bad_containers: set[str] = set()
    forbidden: set[str] = set()
    for c in _containers(spec):
        lifecycle = c.get("lifecycle") or {}
        handlers = [c.get("livenessProbe"), c.get("readinessProbe"), c.get("startupProbe"),
                    lifecycle.get("postStart"), lifecycle.get("preStop")]
        for handler in handlers:
            found = hosts(handler)
            if found:
                bad_containers.add(_name(c))
                forbidden.update(found)
    if not bad_containers:
        return None
    # Unlike the other checks, upstream lists these containers sorted and once each.
    return ("probe or lifecycle host",
            f"{_containers_phrase(sorted(bad_containers))} {_plural('uses', 'use', len(bad_containers))} "
            f"{_plural('probe or lifecycle host', 'probe or lifecycle hosts', len(forbidden))} "
            f"{_join_quote(sorted(forbidden))}")


def _privileged(meta: Obj, spec: Obj) -> tuple[str, str] | None:
    bad = [_name(c) for c in _containers(spec) if _sc(c).get("privileged") is True]
    if not bad:
        return None
    return "privileged", f"{_containers_phrase(bad)} must not set securityContext.privileged=true"


def _proc_mount(meta: Obj, spec: Obj) -> tuple[str, str] | None:
    bad_containers = []
    kinds: set[str] = set()
    for c in _containers(spec):
        proc_mount = _sc(c).get("procMount")
        if proc_mount is not None and proc_mount != "Default":
            bad_containers.append(_name(c))
            kinds.add(str(proc_mount))
    if not bad_containers:
        return None
    return ("procMount",
            f"{_containers_phrase(bad_containers)} must not set securityContext.procMount to "
            f"{_join_quote(sorted(kinds))}")


_SELINUX_TYPES_1_0 = frozenset({"", "container_t", "container_init_t", "container_kvm_t"})
_SELINUX_TYPES_1_31 = _SELINUX_TYPES_1_0 | {"container_engine_t"}


def _selinux_options(allowed_types: frozenset[str]) -> CheckFn:
    def check(meta: Obj, spec: Obj) -> tuple[str, str] | None:
        bad_types: set[str] = set()
        set_user = set_role = False

        def valid(options: Obj) -> bool:
            nonlocal set_user, set_role
            ok = True
            kind = str(options.get("type") or "")
            if kind not in allowed_types:
                ok = False
                bad_types.add(kind)
            if options.get("user"):
                set_user = True
                ok = False
            if options.get("role"):
                set_role = True
                ok = False
            return ok

        setters = []
        pod_options = _sc(spec).get("seLinuxOptions")
        if pod_options is not None and not valid(pod_options):
            setters.append("pod")
        bad_containers = []
        for c in _containers(spec):
            options = _sc(c).get("seLinuxOptions")
            if options is not None and not valid(options):
                bad_containers.append(_name(c))
        if bad_containers:
            setters.append(_containers_phrase(bad_containers))
        if not setters:
            return None
        problems = []
        if bad_types:
            problems.append(f'{_plural("type", "types", len(bad_types))} {_join_quote(sorted(bad_types))}')
        if set_user:
            problems.append("user may not be set")
        if set_role:
            problems.append("role may not be set")
        return ("seLinuxOptions",
                f"{' and '.join(setters)} set forbidden securityContext.seLinuxOptions: {'; '.join(problems)}")
    return check


_SECCOMP_POD_ANNOTATION = "seccomp.security.alpha.kubernetes.io/pod"
_SECCOMP_CONTAINER_ANNOTATION_PREFIX = "container.seccomp.security.alpha.kubernetes.io/"


def _seccomp_annotations(meta: Obj, spec: Obj) -> tuple[str, str] | None:
    """Before v1.19 seccomp was set only through the alpha annotations."""
    annotations = meta.get("annotations") or {}

    def allowed(value: str) -> bool:
        return value in ("runtime/default", "docker/default") or value.startswith("localhost/")

    keys = [_SECCOMP_POD_ANNOTATION] + [_SECCOMP_CONTAINER_ANNOTATION_PREFIX + _name(c) for c in _containers(spec)]
    forbidden = sorted({f"{key}={_go_quote(annotations[key])}" for key in keys
                        if key in annotations and not allowed(annotations[key])})
    if not forbidden:
        return None
    return ("seccompProfile",
            f"forbidden {_plural('annotation', 'annotations', len(forbidden))} {', '.join(forbidden)}")


def _valid_seccomp(profile: Obj) -> bool:
    return profile.get("type") in ("RuntimeDefault", "Localhost")


def _seccomp(meta: Obj, spec: Obj, *, required: bool) -> tuple[str, str] | None:
    setters = []
    bad_values: set[str] = set()
    pod_set = False
    pod_profile = _sc(spec).get("seccompProfile")
    if pod_profile is not None:
        if _valid_seccomp(pod_profile):
            pod_set = True
        else:
            setters.append("pod")
            bad_values.add(str(pod_profile.get("type") or ""))
    explicit = []
    implicit = []
    for c in _containers(spec):
        profile = _sc(c).get("seccompProfile")
        if profile is not None:
            if not _valid_seccomp(profile):
                explicit.append(_name(c))
                bad_values.add(str(profile.get("type") or ""))
        elif not pod_set:
            implicit.append(_name(c))
    if explicit:
        setters.append(_containers_phrase(explicit))
    if setters:
        return ("seccompProfile",
                f"{' and '.join(setters)} must not set securityContext.seccompProfile.type to "
                f"{_join_quote(sorted(bad_values))}")
    if required and implicit:
        return ("seccompProfile",
                f"pod or {_containers_phrase(implicit)} must set securityContext.seccompProfile.type to "
                '"RuntimeDefault" or "Localhost"')
    return None


def _seccomp_baseline(meta: Obj, spec: Obj) -> tuple[str, str] | None:
    return _seccomp(meta, spec, required=False)


def _seccomp_restricted(meta: Obj, spec: Obj) -> tuple[str, str] | None:
    return _seccomp(meta, spec, required=True)


# The namespaced sysctls each policy version considers safe.
SAFE_SYSCTLS_1_0 = frozenset({
    "kernel.shm_rmid_forced", "net.ipv4.ip_local_port_range", "net.ipv4.tcp_syncookies",
    "net.ipv4.ping_group_range", "net.ipv4.ip_unprivileged_port_start"})
SAFE_SYSCTLS_1_27 = SAFE_SYSCTLS_1_0 | {"net.ipv4.ip_local_reserved_ports"}
SAFE_SYSCTLS_1_29 = SAFE_SYSCTLS_1_27 | {
    "net.ipv4.tcp_keepalive_time", "net.ipv4.tcp_fin_timeout", "net.ipv4.tcp_keepalive_intvl",
    "net.ipv4.tcp_keepalive_probes"}
SAFE_SYSCTLS_1_32 = SAFE_SYSCTLS_1_29 | {"net.ipv4.tcp_rmem", "net.ipv4.tcp_wmem"}
SAFE_SYSCTLS_1_37 = SAFE_SYSCTLS_1_32 | {"net.ipv4.tcp_slow_start_after_idle", "net.ipv4.tcp_notsent_lowat"}


def _sysctls(safe: frozenset[str]) -> CheckFn:
    def check(meta: Obj, spec: Obj) -> tuple[str, str] | None:
        # In the pod's order, repeats kept, as upstream lists them.
        bad = [str(s.get("name") or "") for s in _sc(spec).get("sysctls") or () if s.get("name") not in safe]
        return ("forbidden sysctls", ", ".join(bad)) if bad else None
    return check


def _windows_host_process(meta: Obj, spec: Obj) -> tuple[str, str] | None:
    def host_process(obj: Obj) -> bool:
        return (_sc(obj).get("windowsOptions") or {}).get("hostProcess") is True

    setters = ["pod"] if host_process(spec) else []
    bad = [_name(c) for c in _containers(spec) if host_process(c)]
    if bad:
        setters.append(_containers_phrase(bad))
    if not setters:
        return None
    return "hostProcess", f"{' and '.join(setters)} must not set securityContext.windowsOptions.hostProcess=true"


# --- restricted checks ---------------------------------------------------------

def _allow_privilege_escalation(meta: Obj, spec: Obj) -> tuple[str, str] | None:
    bad = [_name(c) for c in _containers(spec) if _sc(c).get("allowPrivilegeEscalation") is not False]
    if not bad:
        return None
    return ("allowPrivilegeEscalation != false",
            f"{_containers_phrase(bad)} must set securityContext.allowPrivilegeEscalation=false")


def _capabilities_restricted(meta: Obj, spec: Obj) -> tuple[str, str] | None:
    missing_drop = []
    adding = []
    forbidden: set[str] = set()
    for c in _containers(spec):
        capabilities = _sc(c).get("capabilities")
        if capabilities is None:
            missing_drop.append(_name(c))
            continue
        if "ALL" not in (capabilities.get("drop") or ()):
            missing_drop.append(_name(c))
        extra = [cap for cap in capabilities.get("add") or () if cap != "NET_BIND_SERVICE"]
        if extra:
            adding.append(_name(c))
            forbidden.update(extra)
    details = []
    if missing_drop:
        details.append(f'{_containers_phrase(missing_drop)} must set securityContext.capabilities.drop=["ALL"]')
    if adding:
        details.append(f"{_containers_phrase(adding)} must not include {_join_quote(sorted(forbidden))} "
                       "in securityContext.capabilities.add")
    return ("unrestricted capabilities", "; ".join(details)) if details else None


# Inline volume sources the restricted level allows; any other source is named
# by the first key of _RESTRICTED_VOLUME_TYPES it has (upstream's order).
ALLOWED_VOLUME_TYPES = frozenset({
    "configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "image", "persistentVolumeClaim", "projected",
    "secret"})
_RESTRICTED_VOLUME_TYPES = (
    "hostPath", "gcePersistentDisk", "awsElasticBlockStore", "gitRepo", "nfs", "iscsi", "glusterfs", "rbd",
    "flexVolume", "cinder", "cephfs", "flocker", "fc", "azureFile", "vsphereVolume", "quobyte", "azureDisk",
    "photonPersistentDisk", "portworxVolume", "scaleIO", "storageos")


def _restricted_volumes(meta: Obj, spec: Obj) -> tuple[str, str] | None:
    bad_volumes = []
    kinds: set[str] = set()
    for volume in spec.get("volumes") or ():
        if any(volume.get(key) is not None for key in ALLOWED_VOLUME_TYPES):
            continue
        bad_volumes.append(str(volume.get("name") or ""))
        kinds.add(next((key for key in _RESTRICTED_VOLUME_TYPES if volume.get(key) is not None), "unknown"))
    if not bad_volumes:
        return None
    return ("restricted volume types",
            f"{_plural('volume', 'volumes', len(bad_volumes))} {_join_quote(bad_volumes)} "
            f"{_plural('uses', 'use', len(bad_volumes))} "
            f"{_plural('restricted volume type', 'restricted volume types', len(kinds))} "
            f"{_join_quote(sorted(kinds))}")


def _run_as_non_root(meta: Obj, spec: Obj) -> tuple[str, str] | None:
    setters = []
    pod_value = _sc(spec).get("runAsNonRoot")
    if pod_value is False:
        setters.append("pod")
    explicit = []
    implicit = []
    for c in _containers(spec):
        value = _sc(c).get("runAsNonRoot")
        if value is False:
            explicit.append(_name(c))
        elif value is None and pod_value is not True:
            implicit.append(_name(c))
    if explicit:
        setters.append(_containers_phrase(explicit))
    if setters:
        return "runAsNonRoot != true", f"{' and '.join(setters)} must not set securityContext.runAsNonRoot=false"
    if implicit:
        return ("runAsNonRoot != true",
                f"pod or {_containers_phrase(implicit)} must set securityContext.runAsNonRoot=true")
    return None


def _is_root_uid(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value == 0


def _run_as_user(meta: Obj, spec: Obj) -> tuple[str, str] | None:
    setters = ["pod"] if _is_root_uid(_sc(spec).get("runAsUser")) else []
    bad = [_name(c) for c in _containers(spec) if _is_root_uid(_sc(c).get("runAsUser"))]
    if bad:
        setters.append(_containers_phrase(bad))
    if not setters:
        return None
    return "runAsUser=0", f"{' and '.join(setters)} must not set runAsUser=0"


# --- the registry of checks by level and version -------------------------------

@dataclass(frozen=True)
class _Check:
    id: str
    level: str
    # (first minor version of v1 it applies to, implementation), ascending.
    versions: tuple[tuple[int, CheckFn], ...]
    # Baseline checks this one replaces in the restricted level while it applies.
    overrides: tuple[str, ...] = ()

    def at(self, minor: int) -> CheckFn | None:
        chosen = None
        for first, fn in self.versions:
            if first <= minor:
                chosen = fn
        return chosen


_CHECKS = (
    _Check("appArmorProfile", BASELINE, ((0, _app_armor),)),
    _Check("capabilities_baseline", BASELINE, ((0, _capabilities_baseline),)),
    _Check("hostNamespaces", BASELINE, ((0, _host_namespaces),)),
    _Check("hostPathVolumes", BASELINE, ((0, _host_path_volumes),)),
    _Check("hostPorts", BASELINE, ((0, _host_ports),)),
    _Check("hostProbesAndHostLifecycle", BASELINE, ((34, _host_probes),)),
    _Check("privileged", BASELINE, ((0, _privileged),)),
    _Check("procMount", BASELINE, ((0, _proc_mount), (35, _unless_user_namespace(_proc_mount)))),
    _Check("seLinuxOptions", BASELINE,
           ((0, _selinux_options(_SELINUX_TYPES_1_0)), (31, _selinux_options(_SELINUX_TYPES_1_31)))),
    _Check("seccompProfile_baseline", BASELINE, ((0, _seccomp_annotations), (19, _seccomp_baseline))),
    _Check("sysctls", BASELINE, ((0, _sysctls(SAFE_SYSCTLS_1_0)), (27, _sysctls(SAFE_SYSCTLS_1_27)),
                                 (29, _sysctls(SAFE_SYSCTLS_1_29)), (32, _sysctls(SAFE_SYSCTLS_1_32)),
                                 (37, _sysctls(SAFE_SYSCTLS_1_37)))),
    _Check("windowsHostProcess", BASELINE, ((0, _windows_host_process),)),
    _Check("allowPrivilegeEscalation", RESTRICTED,
           ((8, _allow_privilege_escalation), (25, _unless_windows(_allow_privilege_escalation)))),
    _Check("capabilities_restricted", RESTRICTED,
           ((22, _capabilities_restricted), (25, _unless_windows(_capabilities_restricted))),
           overrides=("capabilities_baseline",)),
    # The unconditional /proc rule, kept for restricted once baseline relaxed it.
    _Check("procMount_restricted", RESTRICTED, ((35, _proc_mount),), overrides=("procMount",)),
    _Check("restrictedVolumes", RESTRICTED, ((0, _restricted_volumes),), overrides=("hostPathVolumes",)),
    _Check("runAsNonRoot", RESTRICTED, ((0, _run_as_non_root), (35, _unless_user_namespace(_run_as_non_root)))),
    _Check("runAsUser", RESTRICTED, ((23, _run_as_user), (35, _unless_user_namespace(_run_as_user)))),
    _Check("seccompProfile_restricted", RESTRICTED,
           ((19, _seccomp_restricted), (25, _unless_windows(_seccomp_restricted))),
           overrides=("seccompProfile_baseline",)),
)

# "latest", and any version newer than the newest check, mean this one.
LATEST_MINOR = max(first for check in _CHECKS for first, _ in check.versions)

# Results come baseline checks first, each level's in ID order (byte order, as
# Go sorts), whatever level is evaluated.
_ORDER = {c.id: i for i, c in enumerate(sorted(_CHECKS, key=lambda c: (c.level == RESTRICTED, c.id)))}


@functools.cache
def _checks_for(level: str, minor: int) -> tuple[tuple[str, CheckFn], ...]:
    chosen: dict[str, CheckFn] = {}
    for check in _CHECKS:
        fn = check.at(minor)
        if fn is not None and (check.level == BASELINE or level == RESTRICTED):
            chosen[check.id] = fn
    if level == RESTRICTED:
        for check in _CHECKS:
            if check.level == RESTRICTED and check.id in chosen:
                for replaced in check.overrides:
                    chosen.pop(replaced, None)
    return tuple(sorted(chosen.items(), key=lambda item: _ORDER[item[0]]))


def check_ids(level: str, version: str = LATEST) -> list[str]:
    """The IDs of the checks a level runs at a version, in the order results come."""
    _require(level, version)
    if level == PRIVILEGED:
        return []
    return [check_id for check_id, _ in _checks_for(level, _minor(version))]


# --- levels, versions, evaluation ----------------------------------------------

_VERSION = re.compile(r"v1\.([0-9]|[1-9][0-9]*)")
_LEVEL_ERROR = f"must be one of {', '.join(LEVELS)}"
_VERSION_ERROR = 'must be "latest" or "v1.x"'


def parse_level(value: str) -> tuple[str, str | None]:
    """(level, error). An unknown level comes back as restricted, with the
    error text upstream puts in the namespace's validation error."""
    if value in LEVELS:
        return value, None
    return RESTRICTED, _LEVEL_ERROR


def parse_version(value: str) -> tuple[str, str | None]:
    """(version, error): "latest" or "v1.N"; anything else is latest, with an error."""
    if value == LATEST:
        return LATEST, None
    match = _VERSION.fullmatch(value)
    # Go's strconv.Atoi refuses what does not fit an int64.
    if match is None or int(match.group(1)) >= 2**63:
        return LATEST, _VERSION_ERROR
    return value, None


def _minor(version: str) -> int:
    if version == LATEST:
        return LATEST_MINOR
    return min(int(version.removeprefix("v1.")), LATEST_MINOR)


def _require(level: str, version: str) -> None:
    if level not in LEVELS:
        raise ValueError(f"PodSecurity level {level!r}: {_LEVEL_ERROR}")
    if parse_version(version)[1] is not None:
        raise ValueError(f"PodSecurity version {version!r}: {_VERSION_ERROR}")


@dataclass(frozen=True)
class Result:
    """A failed check: its ID and what upstream tells the user."""
    check_id: str
    reason: str
    detail: str


def evaluate(level: str, version: str, pod_metadata: Obj | None, pod_spec: Obj | None) -> list[Result]:
    """The checks the pod (or pod template) fails at level:version, in upstream's
    order; empty when it passes. Raises ValueError for an unknown level or a
    version that is neither "latest" nor "v1.N" (parse namespace labels with
    policy_to_evaluate, which maps bad values the way upstream does)."""
    _require(level, version)
    if level == PRIVILEGED:
        return []
    meta, spec = pod_metadata or {}, pod_spec or {}
    results = []
    for check_id, check in _checks_for(level, _minor(version)):
        failed = check(meta, spec)
        if failed is not None:
            results.append(Result(check_id, *failed))
    return results


# --- the texts upstream builds from results ------------------------------------

@dataclass(frozen=True)
class LevelVersion:
    level: str
    version: str = LATEST

    def __str__(self) -> str:
        return f"{self.level}:{self.version}"

    def equivalent(self, other: LevelVersion) -> bool:
        return (self.level == other.level == PRIVILEGED) or self == other


def forbidden_reasons(results: Iterable[Result]) -> str:
    """The reasons alone, joined by ", " (what the namespace dry run reports per pod)."""
    return ", ".join(r.reason or UNKNOWN_FORBIDDEN_REASON for r in results)


def forbidden_detail(results: Iterable[Result]) -> str:
    """`reason (detail), reason (detail)`; a result without detail shows its reason alone."""
    return ", ".join(f"{r.reason or UNKNOWN_FORBIDDEN_REASON} ({r.detail})" if r.detail
                     else r.reason or UNKNOWN_FORBIDDEN_REASON for r in results)


def violation(policy: LevelVersion, results: Iterable[Result]) -> str:
    """`violates PodSecurity "restricted:latest": ...`, the cause of an enforce refusal."""
    return f"violates PodSecurity {_go_quote(str(policy))}: {forbidden_detail(results)}"


def would_violate(policy: LevelVersion, results: Iterable[Result]) -> str:
    """`would violate PodSecurity "restricted:latest": ...`: the warn-mode warning
    (the same for pods and for workloads' pod templates) and the audit annotation."""
    return f"would violate PodSecurity {_go_quote(str(policy))}: {forbidden_detail(results)}"


def forbidden_message(resource: str, name: str, cause: str) -> str:
    """A 403 Status message as apimachinery's NewForbidden words it."""
    if not resource:
        return f"forbidden: {cause}"
    if not name:
        return f"{resource} is forbidden: {cause}"
    return f"{resource} {_go_quote(name)} is forbidden: {cause}"


def enforce_message(pod_name: str, policy: LevelVersion, results: Iterable[Result]) -> str:
    """`pods "NAME" is forbidden: violates PodSecurity "restricted:latest": ...`"""
    return forbidden_message("pods", pod_name, violation(policy, results))


# --- namespace labels ----------------------------------------------------------

@dataclass(frozen=True)
class FieldError:
    """An invalid namespace label, as upstream's field.Invalid reports it."""
    field: str
    value: str
    detail: str
    type: str = "FieldValueInvalid"

    def body(self) -> str:
        """The Status cause's message: `Invalid value: "bogus": must be ...`."""
        return f"Invalid value: {_go_quote(self.value)}: {self.detail}"

    def __str__(self) -> str:
        return f"{self.field}: {self.body()}"


def _aggregate(errors: Iterable[object]) -> str:
    messages = list(dict.fromkeys(str(e) for e in errors))
    return messages[0] if len(messages) == 1 else "[" + ", ".join(messages) + "]"


def invalid_namespace_message(name: str, errors: list[FieldError]) -> str:
    """The 422 Status message: `Namespace "x" is invalid: metadata.labels[...]: Invalid value: ...`."""
    if not errors:
        return f"Namespace {_go_quote(name)} is invalid"
    return f"Namespace {_go_quote(name)} is invalid: {_aggregate(errors)}"


@dataclass(frozen=True)
class Policy:
    enforce: LevelVersion = LevelVersion(PRIVILEGED)
    audit: LevelVersion = LevelVersion(PRIVILEGED)
    warn: LevelVersion = LevelVersion(PRIVILEGED)

    def fully_privileged(self) -> bool:
        return self.enforce.level == self.audit.level == self.warn.level == PRIVILEGED

    def equivalent(self, other: Policy) -> bool:
        return (self.enforce.equivalent(other.enforce) and self.audit.equivalent(other.audit)
                and self.warn.equivalent(other.warn))


# Upstream's configuration defaults: privileged:latest in every mode.
DEFAULT_POLICY = Policy()


def _compare_levels(a: str, b: str) -> int:
    return LEVELS.index(a) - LEVELS.index(b)


def policy_to_evaluate(labels: Mapping[str, str] | None,
                       defaults: Policy = DEFAULT_POLICY) -> tuple[Policy, list[FieldError]]:
    """The policy a namespace's labels select, and the labels' errors (as
    upstream's api.PolicyToEvaluate). A bad enforce level enforces restricted
    (fail closed); a bad audit or warn level means privileged (fail open); a bad
    version means latest. Without a warn label, warn is raised to a stricter
    enforce level (and its version, unless warn-version is set)."""
    if not labels:
        return defaults, []
    errors: list[FieldError] = []

    def parse(label: str, parser: Callable[[str], tuple[str, str | None]], current: str) -> tuple[str, bool]:
        if label not in labels:
            return current, False
        value, error = parser(labels[label])
        if error is not None:
            errors.append(FieldError(f"metadata.labels[{label}]", labels[label], error))
        return value, error is None

    enforce_level, has_enforce_level = parse(ENFORCE_LABEL, parse_level, defaults.enforce.level)
    enforce_version, _ = parse(ENFORCE_VERSION_LABEL, parse_version, defaults.enforce.version)
    audit_level, ok = parse(AUDIT_LABEL, parse_level, defaults.audit.level)
    if not ok and AUDIT_LABEL in labels:
        audit_level = PRIVILEGED
    audit_version, _ = parse(AUDIT_VERSION_LABEL, parse_version, defaults.audit.version)
    warn_level, ok = parse(WARN_LABEL, parse_level, defaults.warn.level)
    if not ok and WARN_LABEL in labels:
        warn_level = PRIVILEGED
    warn_version, _ = parse(WARN_VERSION_LABEL, parse_version, defaults.warn.version)
    if WARN_LABEL not in labels and has_enforce_level and _compare_levels(enforce_level, warn_level) > 0:
        warn_level = enforce_level
        if WARN_VERSION_LABEL not in labels:
            warn_version = enforce_version
    return Policy(LevelVersion(enforce_level, enforce_version), LevelVersion(audit_level, audit_version),
                  LevelVersion(warn_level, warn_version)), errors


# --- exemptions and decisions --------------------------------------------------

@dataclass(frozen=True)
class Exemptions:
    """The configuration's exemptions: requests by these users, pods in these
    namespaces, and pods with these runtime classes skip every mode."""
    usernames: frozenset[str] = frozenset()
    namespaces: frozenset[str] = frozenset()
    runtime_classes: frozenset[str] = frozenset()

    def user(self, username: str | None) -> bool:
        return bool(username) and username in self.usernames

    def namespace(self, namespace: str | None) -> bool:
        return bool(namespace) and namespace in self.namespaces

    def runtime_class(self, name: str | None) -> bool:
        return bool(name) and name in self.runtime_classes


NO_EXEMPTIONS = Exemptions()


@dataclass
class Decision:
    """What upstream's admission answers: a refusal (code, reason, message and,
    for invalid labels, causes) or an allowance, with warnings for the client and
    audit annotations (keys carry the pod-security.kubernetes.io/ prefix)."""
    allowed: bool = True
    code: int = 200
    reason: str = ""
    message: str = ""
    causes: list[FieldError] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    audit_annotations: dict[str, str] = field(default_factory=dict)
    # Set on a namespace change when upstream dry-runs the new enforce level
    # against the namespace's pods (see existing_pods_warnings).
    check_existing_pods: LevelVersion | None = None


# Pod subresources that cannot change the pod spec; any other is evaluated, so
# an unknown subresource fails safe.
IGNORED_POD_SUBRESOURCES = frozenset({
    "exec", "attach", "binding", "eviction", "log", "portforward", "proxy", "status"})


def _exempt(why: str) -> Decision:
    return Decision(audit_annotations={EXEMPT_ANNOTATION: why})


def admit_pod(pod: Obj, namespace_labels: Mapping[str, str] | None, *, namespace: str, username: str = "",
              exemptions: Exemptions = NO_EXEMPTIONS, defaults: Policy = DEFAULT_POLICY,
              old_pod: Obj | None = None, subresource: str = "") -> Decision:
    """Upstream's decision on creating (old_pod None) or updating a pod. The pod
    must carry its final name: the refusal names it."""
    if subresource in IGNORED_POD_SUBRESOURCES:
        return Decision()
    if exemptions.namespace(namespace):
        return _exempt("namespace")
    if exemptions.user(username):
        return _exempt("user")
    policy, errors = policy_to_evaluate(namespace_labels, defaults)
    if not errors and policy.fully_privileged():
        return Decision(audit_annotations={ENFORCE_POLICY_ANNOTATION: str(LevelVersion(PRIVILEGED))})
    if old_pod is not None and not significant_pod_update(pod, old_pod):
        return Decision()
    meta = pod.get("metadata") or {}
    return _evaluate_pod(policy, errors, meta, pod.get("spec") or {}, str(meta.get("name") or ""),
                         exemptions, enforce=True)


# Resources (group, plural) whose objects carry a pod template that upstream
# checks in audit and warn modes (never enforce: the pods they make are).
WORKLOAD_RESOURCES = frozenset({
    ("", "replicationcontrollers"), ("", "podtemplates"), ("apps", "replicasets"), ("apps", "deployments"),
    ("apps", "statefulsets"), ("apps", "daemonsets"), ("batch", "jobs"), ("batch", "cronjobs")})


def pod_template(group: str, resource: str, obj: Obj) -> tuple[Obj, Obj] | None:
    """(metadata, spec) of a workload's pod template, None when it has none."""
    if (group, resource) not in WORKLOAD_RESOURCES:
        return None
    if resource == "podtemplates":
        template = obj.get("template")
    elif resource == "cronjobs":
        template = ((((obj.get("spec") or {}).get("jobTemplate") or {}).get("spec") or {}).get("template"))
    else:
        template = (obj.get("spec") or {}).get("template")
    if not isinstance(template, dict):
        return None
    return template.get("metadata") or {}, template.get("spec") or {}


def admit_workload(group: str, resource: str, obj: Obj, namespace_labels: Mapping[str, str] | None, *,
                   namespace: str, username: str = "", exemptions: Exemptions = NO_EXEMPTIONS,
                   defaults: Policy = DEFAULT_POLICY, subresource: str = "") -> Decision:
    """Upstream's answer for a workload with a pod template: always allowed, with
    the warn mode's warning and the audit mode's annotation."""
    if subresource or (group, resource) not in WORKLOAD_RESOURCES:
        return Decision()
    if exemptions.namespace(namespace):
        return _exempt("namespace")
    if exemptions.user(username):
        return _exempt("user")
    policy, errors = policy_to_evaluate(namespace_labels, defaults)
    if not errors and policy.warn.level == PRIVILEGED and policy.audit.level == PRIVILEGED:
        return Decision()
    template = pod_template(group, resource, obj)
    if template is None:
        return Decision()
    return _evaluate_pod(policy, errors, *template, str((obj.get("metadata") or {}).get("name") or ""),
                         exemptions, enforce=False)


def _evaluate_pod(policy: Policy, errors: list[FieldError], meta: Obj, spec: Obj, name: str,
                  exemptions: Exemptions, *, enforce: bool) -> Decision:
    if exemptions.runtime_class(spec.get("runtimeClassName")):
        return _exempt("runtimeClass")
    decision = Decision()
    if errors:
        decision.audit_annotations[ERROR_ANNOTATION] = f"Failed to parse policy: {_aggregate(errors)}"
    # Modes sharing a level and version share one evaluation.
    cache: dict[LevelVersion, list[Result]] = {}

    def results(lv: LevelVersion) -> list[Result]:
        if lv not in cache:
            cache[lv] = evaluate(lv.level, lv.version, meta, spec)
        return cache[lv]

    if enforce:
        decision.audit_annotations[ENFORCE_POLICY_ANNOTATION] = str(policy.enforce)
        failed = results(policy.enforce)
        if failed:
            decision.allowed = False
            decision.code = 403
            decision.reason = "Forbidden"
            decision.message = enforce_message(name, policy.enforce, failed)
    failed = results(policy.audit)
    if failed:
        decision.audit_annotations[AUDIT_VIOLATIONS_ANNOTATION] = would_violate(policy.audit, failed)
    # A request that is refused gets no warnings on top.
    if decision.allowed:
        failed = results(policy.warn)
        if failed:
            decision.warnings.append(would_violate(policy.warn, failed))
    return decision


def significant_pod_update(pod: Obj, old_pod: Obj) -> bool:
    """Whether a pod update can change what the checks see. Upstream re-checks
    only when containers are added or removed or an image changes, since the
    other fields the checks read are immutable."""
    spec, old_spec = pod.get("spec") or {}, old_pod.get("spec") or {}
    for key in ("containers", "initContainers"):
        new, old = spec.get(key) or [], old_spec.get(key) or []
        if len(new) != len(old) or any(n.get("image") != o.get("image") for n, o in zip(new, old)):
            return True
    old_ephemeral = {_name(c): c for c in reversed(old_spec.get("ephemeralContainers") or [])}
    for container in spec.get("ephemeralContainers") or ():
        before = old_ephemeral.get(_name(container))
        if before is None or before.get("image") != container.get("image"):
            return True
    return False


def _exempt_namespace_warning(name: str, policy: Policy, labels: Mapping[str, str], defaults: Policy) -> str:
    if policy.fully_privileged() or policy.equivalent(defaults):
        return ""
    parts = []
    for mode, lv, level_label, version_label in (
            ("enforce", policy.enforce, ENFORCE_LABEL, ENFORCE_VERSION_LABEL),
            ("audit", policy.audit, AUDIT_LABEL, AUDIT_VERSION_LABEL),
            ("warn", policy.warn, WARN_LABEL, WARN_VERSION_LABEL)):
        if lv.level != PRIVILEGED and (level_label in labels or version_label in labels):
            parts.append(f"{mode}={lv}")
    return (f"namespace {_go_quote(name)} is exempt from Pod Security, and the policy ({', '.join(parts)}) "
            "will be ignored")


def validate_namespace(name: str, labels: Mapping[str, str] | None, old_labels: Mapping[str, str] | None = None,
                       *, exemptions: Exemptions = NO_EXEMPTIONS, defaults: Policy = DEFAULT_POLICY,
                       subresource: str = "", pods: Iterable[Obj] | None = None) -> Decision:
    """Upstream's answer to creating (old_labels None) or updating a namespace:
    invalid pod-security labels are refused (422) on create, and on update when
    they changed; a tightened enforce level sets check_existing_pods, and when
    `pods` is given the dry run's warnings are filled in."""
    labels = labels or {}
    if subresource:
        return Decision()
    policy, errors = policy_to_evaluate(labels, defaults)
    if old_labels is None:
        if errors:
            return _invalid(name, errors)
        return _exempt_namespace_decision(name, policy, labels, exemptions, defaults)
    old_policy, old_errors = policy_to_evaluate(old_labels, defaults)
    if errors and (not old_errors or errors != old_errors):
        return _invalid(name, errors)
    if (policy.enforce == old_policy.enforce or policy.enforce.level == PRIVILEGED
            or (policy.enforce.version == old_policy.enforce.version
                and _compare_levels(policy.enforce.level, old_policy.enforce.level) <= 0)):
        return Decision()
    if exemptions.namespace(name):
        return _exempt_namespace_decision(name, policy, labels, exemptions, defaults)
    decision = Decision(check_existing_pods=policy.enforce)
    if pods is not None:
        decision.warnings = existing_pods_warnings(name, policy.enforce, pods, exemptions=exemptions)
    return decision


def _invalid(name: str, errors: list[FieldError]) -> Decision:
    return Decision(allowed=False, code=422, reason="Invalid", message=invalid_namespace_message(name, errors),
                    causes=list(errors))


def _exempt_namespace_decision(name: str, policy: Policy, labels: Mapping[str, str], exemptions: Exemptions,
                               defaults: Policy) -> Decision:
    if exemptions.namespace(name):
        warning = _exempt_namespace_warning(name, policy, labels, defaults)
        if warning:
            return Decision(warnings=[warning])
    return Decision()


def _controller_uid(pod: Obj) -> str | None:
    for ref in (pod.get("metadata") or {}).get("ownerReferences") or ():
        if ref.get("controller") is True:
            return str(ref.get("uid") or "")
    return None


def existing_pods_warnings(namespace: str, enforce: LevelVersion, pods: Iterable[Obj], *,
                           exemptions: Exemptions = NO_EXEMPTIONS, max_pods: int = DEFAULT_MAX_PODS_TO_CHECK,
                           deadline: float | None = None) -> list[str]:
    """The warnings upstream gives when a namespace's enforce level tightens:
    `existing pods in namespace "x" violate the new PodSecurity enforce level
    "restricted:latest"`, then one line per distinct set of reasons, prefixed
    with the lexically first pod name and how many other pods share it. Pods of
    exempt runtime classes are skipped; one pod per controller goes first, so a
    big ReplicaSet cannot crowd out the rest within max_pods. `deadline` is a
    time.monotonic() instant after which the dry run stops early."""
    first: list[Obj] = []
    replicas: list[Obj] = []
    seen_controllers: set[str] = set()
    for pod in pods:
        if exemptions.runtime_class((pod.get("spec") or {}).get("runtimeClassName")):
            continue
        uid = _controller_uid(pod)
        if uid is not None and uid in seen_controllers:
            replicas.append(pod)
            continue
        if uid is not None:
            seen_controllers.add(uid)
        first.append(pod)
    ordered = first + replicas
    total = len(ordered)
    ordered = ordered[:max_pods]
    checked = len(ordered)
    by_reasons: dict[str, tuple[str, int]] = {}
    for i, pod in enumerate(ordered):
        meta = pod.get("metadata") or {}
        failed = evaluate(enforce.level, enforce.version, meta, pod.get("spec") or {})
        if failed:
            reasons = forbidden_reasons(failed)
            pod_name = str(meta.get("name") or "")
            if reasons in by_reasons:
                lowest, count = by_reasons[reasons]
                by_reasons[reasons] = (min(lowest, pod_name), count + 1)
            else:
                by_reasons[reasons] = (pod_name, 1)
        if deadline is not None and time.monotonic() >= deadline:
            checked = i + 1
            break
    warnings = []
    if checked < total:
        warnings.append(f"new PodSecurity enforce level only checked against the first {checked} of {total} "
                        "existing pods")
    if by_reasons:
        warnings.append(f"existing pods in namespace {_go_quote(namespace)} violate the new PodSecurity enforce "
                        f"level {_go_quote(str(enforce))}")
    per_pods = []
    for reasons, (pod_name, count) in by_reasons.items():
        if count == 1:
            per_pods.append(f"{pod_name}: {reasons}")
        elif count == 2:
            per_pods.append(f"{pod_name} (and 1 other pod): {reasons}")
        else:
            per_pods.append(f"{pod_name} (and {count - 1} other pods): {reasons}")
    return warnings + sorted(per_pods)


# -- the admission plugin ------------------------------------------------------

# Reads a namespace's labels (None when it does not exist), and lists its pods.
LabelsReader = Callable[[str], Awaitable[Mapping[str, str] | None]]
PodsLister = Callable[[str], Awaitable[list[Obj]]]


class PodSecurity:
    """The PodSecurity admission plugin: the decisions above applied to pods,
    workloads and namespaces, with their warnings told to the client."""

    resources = frozenset({("", "pods"), ("", "namespaces"), *WORKLOAD_RESOURCES})

    def __init__(self, namespace_labels: LabelsReader, namespace_pods: PodsLister,
                 exemptions: Exemptions = NO_EXEMPTIONS, defaults: Policy = DEFAULT_POLICY):
        self.namespace_labels = namespace_labels
        self.namespace_pods = namespace_pods
        self.exemptions = exemptions
        self.defaults = defaults

    async def validate(self, a: Attributes) -> None:
        if a.operation not in (CREATE, UPDATE) or a.obj is None:
            return
        gr, user = (a.info.group, a.info.resource), a.user.name if a.user else ""
        if gr == ("", "namespaces"):
            decision = await self._namespace(a)
        elif gr == ("", "pods"):
            labels = await self.namespace_labels(a.namespace)
            if self._privileged(labels):
                return
            decision = admit_pod(
                a.obj, labels, namespace=a.namespace,
                username=user, exemptions=self.exemptions, defaults=self.defaults,
                old_pod=a.old if a.operation == UPDATE else None, subresource=a.subresource)
        elif gr in WORKLOAD_RESOURCES:
            decision = admit_workload(
                a.info.group, a.info.resource, a.obj, await self.namespace_labels(a.namespace),
                namespace=a.namespace, username=user, exemptions=self.exemptions,
                defaults=self.defaults, subresource=a.subresource)
        else:
            return
        a.warnings.extend(decision.warnings)
        a.annotations.update(decision.audit_annotations)
        if decision.allowed:
            return
        if decision.code == 422:
            name = (a.obj.get("metadata") or {}).get("name") or a.name
            raise status.invalid("Namespace", "", name, [
                field_invalid(e.field, e.value, e.detail) for e in decision.causes])
        raise APIError(decision.code, decision.reason, decision.message,
                       {"name": a.name or (a.obj.get("metadata") or {}).get("name", ""),
                        "kind": a.info.resource})

    def _privileged(self, labels: Mapping[str, str] | None) -> bool:
        """A namespace without pod-security labels under the default policy
        (privileged everywhere): nothing to check, the common case."""
        return labels is not None and self.defaults == DEFAULT_POLICY and \
            DEFAULT_POLICY.fully_privileged() and \
            not any(k.startswith(LABEL_PREFIX) for k in labels)

    async def _namespace(self, a: Attributes) -> Decision:
        assert a.obj is not None
        name = (a.obj.get("metadata") or {}).get("name") or a.name
        labels = (a.obj.get("metadata") or {}).get("labels") or {}
        old = ((a.old or {}).get("metadata") or {}).get("labels") or {} \
            if a.operation == UPDATE else None
        decision = validate_namespace(name, labels, old, exemptions=self.exemptions,
                                      defaults=self.defaults, subresource=a.subresource)
        if decision.check_existing_pods is not None:
            # Upstream's dry run of the new level: at most 3,000 pods, one second.
            decision.warnings = existing_pods_warnings(
                name, decision.check_existing_pods, await self.namespace_pods(name),
                exemptions=self.exemptions,
                deadline=time.monotonic() + DEFAULT_POD_CHECK_SECONDS)
        return decision
