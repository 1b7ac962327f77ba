"""Pod Security Standards: each check failing and passing on realistic pods, the
level/version registry, namespace label parsing, and the exact texts upstream's
pod-security-admission gives (kubectl shows them to users)."""

from __future__ import annotations

import copy
import time
from typing import Any

import pytest

from pinnace.apiserver.admission import podsecurity as ps

Obj = dict[str, Any]

RESTRICTED_SC = {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}


def hardened() -> Obj:
    """A pod that meets restricted: what `kubectl run` users are told to write."""
    return {
        "metadata": {"name": "web", "namespace": "apps"},
        "spec": {
            "securityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
            "initContainers": [{"name": "init", "image": "busybox", "securityContext": copy.deepcopy(RESTRICTED_SC)}],
            "containers": [{"name": "app", "image": "nginx", "ports": [{"containerPort": 8080}],
                            "securityContext": copy.deepcopy(RESTRICTED_SC)}],
            "volumes": [{"name": "cfg", "configMap": {"name": "cfg"}}, {"name": "tmp", "emptyDir": {}}],
        },
    }


def plain(**spec: Any) -> Obj:
    """A pod with one container "c" and nothing hardened."""
    return {"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "nginx"}], **spec}}


def results(level: str, pod: Obj, version: str = "latest") -> list[tuple[str, str, str]]:
    return [(r.check_id, r.reason, r.detail) for r in ps.evaluate(level, version, pod["metadata"], pod["spec"])]


def ids(level: str, pod: Obj, version: str = "latest") -> list[str]:
    return [r[0] for r in results(level, pod, version)]


def container(pod: Obj, name: str = "app") -> Obj:
    spec = pod["spec"]
    for c in spec.get("initContainers", []) + spec["containers"] + spec.get("ephemeralContainers", []):
        if c["name"] == name:
            return c
    raise KeyError(name)


# --- whole pods ------------------------------------------------------------------

def test_hardened_pod_passes_every_level_and_version() -> None:
    pod = hardened()
    for level in ps.LEVELS:
        for version in ["latest"] + [f"v1.{n}" for n in range(0, 40)]:
            assert ps.evaluate(level, version, pod["metadata"], pod["spec"]) == [], (level, version)


def test_privileged_pod_is_refused_by_baseline_with_upstreams_text() -> None:
    pod = plain(hostNetwork=True, hostPID=True,
                volumes=[{"name": "root", "hostPath": {"path": "/"}}])
    pod["metadata"]["name"] = "debug"
    pod["spec"]["containers"][0]["securityContext"] = {"privileged": True, "capabilities": {"add": ["SYS_ADMIN"]}}
    found = ps.evaluate("baseline", "latest", pod["metadata"], pod["spec"])
    assert ps.enforce_message("debug", ps.LevelVersion("baseline"), found) == (
        'pods "debug" is forbidden: violates PodSecurity "baseline:latest": '
        'non-default capabilities (container "c" must not include "SYS_ADMIN" in securityContext.capabilities.add), '
        "host namespaces (hostNetwork=true, hostPID=true), "
        'hostPath volumes (volume "root"), '
        'privileged (container "c" must not set securityContext.privileged=true)')
    assert ps.evaluate("privileged", "latest", pod["metadata"], pod["spec"]) == []


def test_unhardened_pod_under_restricted_reads_as_kubectl_shows_it() -> None:
    pod = plain()
    found = ps.evaluate("restricted", "latest", pod["metadata"], pod["spec"])
    assert ps.would_violate(ps.LevelVersion("restricted"), found) == (
        'would violate PodSecurity "restricted:latest": '
        'allowPrivilegeEscalation != false (container "c" must set securityContext.allowPrivilegeEscalation=false), '
        'unrestricted capabilities (container "c" must set securityContext.capabilities.drop=["ALL"]), '
        'runAsNonRoot != true (pod or container "c" must set securityContext.runAsNonRoot=true), '
        'seccompProfile (pod or container "c" must set securityContext.seccompProfile.type to '
        '"RuntimeDefault" or "Localhost")')
    assert ps.forbidden_reasons(found) == (
        "allowPrivilegeEscalation != false, unrestricted capabilities, runAsNonRoot != true, seccompProfile")
    assert ps.evaluate("baseline", "latest", pod["metadata"], pod["spec"]) == []


def test_baseline_failures_come_before_restricted_ones_under_restricted() -> None:
    pod = hardened()
    container(pod)["securityContext"]["allowPrivilegeEscalation"] = True
    pod["spec"]["hostIPC"] = True
    assert ids("restricted", pod) == ["hostNamespaces", "allowPrivilegeEscalation"]


def test_check_ids_per_level_and_version() -> None:
    assert ps.check_ids("privileged") == []
    assert ps.check_ids("baseline") == [
        "appArmorProfile", "capabilities_baseline", "hostNamespaces", "hostPathVolumes", "hostPorts",
        "hostProbesAndHostLifecycle", "privileged", "procMount", "seLinuxOptions", "seccompProfile_baseline",
        "sysctls", "windowsHostProcess"]
    # Restricted swaps out the baseline checks its own ones replace.
    assert ps.check_ids("restricted") == [
        "appArmorProfile", "hostNamespaces", "hostPorts", "hostProbesAndHostLifecycle", "privileged",
        "seLinuxOptions", "sysctls", "windowsHostProcess", "allowPrivilegeEscalation", "capabilities_restricted",
        "procMount_restricted", "restrictedVolumes", "runAsNonRoot", "runAsUser", "seccompProfile_restricted"]
    # Before v1.22 restricted kept the baseline capabilities rule; before v1.19
    # the baseline seccomp (annotation) rule; before v1.8 no privilege escalation rule.
    old = ps.check_ids("restricted", "v1.7")
    assert "capabilities_baseline" in old and "seccompProfile_baseline" in old
    assert "allowPrivilegeEscalation" not in old and "runAsUser" not in old and "procMount" in old


def test_versions_newer_than_latest_mean_latest() -> None:
    assert ps.check_ids("restricted", "v1.99") == ps.check_ids("restricted", "latest")
    assert ps.LATEST_MINOR == 37


@pytest.mark.parametrize("level,version", [("bogus", "latest"), ("baseline", "1.30"), ("baseline", "v1.05"),
                                           ("restricted", "v2.0"), ("restricted", "")])
def test_evaluate_refuses_unparsed_levels_and_versions(level: str, version: str) -> None:
    with pytest.raises(ValueError):
        ps.evaluate(level, version, {}, {"containers": []})


# --- containers and inheritance ------------------------------------------------

def test_pod_level_run_as_non_root_satisfies_containers() -> None:
    pod = hardened()
    assert "runAsNonRoot" not in container(pod)["securityContext"]
    assert ids("restricted", pod) == []
    del pod["spec"]["securityContext"]["runAsNonRoot"]
    assert results("restricted", pod) == [
        ("runAsNonRoot", "runAsNonRoot != true",
         'pod or containers "init", "app" must set securityContext.runAsNonRoot=true')]
    # Each container may opt in by itself instead.
    for c in ("init", "app"):
        container(pod, c)["securityContext"]["runAsNonRoot"] = True
    assert ids("restricted", pod) == []


def test_explicit_false_beats_pod_level_true() -> None:
    pod = hardened()
    container(pod)["securityContext"]["runAsNonRoot"] = False
    assert results("restricted", pod) == [
        ("runAsNonRoot", "runAsNonRoot != true", 'container "app" must not set securityContext.runAsNonRoot=false')]
    pod["spec"]["securityContext"]["runAsNonRoot"] = False
    assert results("restricted", pod)[0][2] == (
        'pod and container "app" must not set securityContext.runAsNonRoot=false')


def test_pod_level_seccomp_satisfies_containers_and_container_level_works_alone() -> None:
    pod = hardened()
    del pod["spec"]["securityContext"]["seccompProfile"]
    assert results("restricted", pod) == [
        ("seccompProfile_restricted", "seccompProfile",
         'pod or containers "init", "app" must set securityContext.seccompProfile.type to '
         '"RuntimeDefault" or "Localhost"')]
    for c in ("init", "app"):
        container(pod, c)["securityContext"]["seccompProfile"] = {"type": "Localhost",
                                                                  "localhostProfile": "p.json"}
    assert ids("restricted", pod) == []


def test_ephemeral_containers_are_checked() -> None:
    pod = hardened()
    pod["spec"]["ephemeralContainers"] = [{"name": "debugger", "image": "busybox", "targetContainerName": "app"}]
    assert results("restricted", pod) == [
        ("allowPrivilegeEscalation", "allowPrivilegeEscalation != false",
         'container "debugger" must set securityContext.allowPrivilegeEscalation=false'),
        ("capabilities_restricted", "unrestricted capabilities",
         'container "debugger" must set securityContext.capabilities.drop=["ALL"]')]
    pod["spec"]["ephemeralContainers"][0]["securityContext"] = {"privileged": True}
    assert results("baseline", pod) == [
        ("privileged", "privileged", 'container "debugger" must not set securityContext.privileged=true')]


def test_containers_are_named_init_then_regular_then_ephemeral() -> None:
    pod = plain()
    pod["spec"]["initContainers"] = [{"name": "i"}]
    pod["spec"]["ephemeralContainers"] = [{"name": "e"}]
    assert results("restricted", pod)[0][2] == (
        'containers "i", "c", "e" must set securityContext.allowPrivilegeEscalation=false')


def test_windows_pod_skips_the_linux_only_restricted_checks() -> None:
    pod: Obj = {"metadata": {"name": "win"},
           "spec": {"os": {"name": "windows"}, "securityContext": {"runAsNonRoot": True},
                    "containers": [{"name": "iis", "image": "mcr.microsoft.com/windows/servercore/iis"}]}}
    assert ids("restricted", pod) == []
    # runAsNonRoot still applies to Windows pods.
    del pod["spec"]["securityContext"]
    assert ids("restricted", pod) == ["runAsNonRoot"]
    pod["spec"]["securityContext"] = {"runAsNonRoot": True}
    # Before v1.25 the skip did not exist.
    assert ids("restricted", pod, "v1.24") == [
        "allowPrivilegeEscalation", "capabilities_restricted", "seccompProfile_restricted"]
    # A Linux pod gets no such pass.
    pod["spec"]["os"]["name"] = "linux"
    assert ids("restricted", pod) == ["allowPrivilegeEscalation", "capabilities_restricted",
                                      "seccompProfile_restricted"]


def test_windows_host_process() -> None:
    pod = plain(os={"name": "windows"}, securityContext={"windowsOptions": {"hostProcess": True}})
    pod["spec"]["containers"].append({"name": "d", "securityContext": {"windowsOptions": {"hostProcess": True}}})
    assert results("baseline", pod) == [
        ("windowsHostProcess", "hostProcess",
         'pod and container "d" must not set securityContext.windowsOptions.hostProcess=true')]
    pod["spec"]["securityContext"]["windowsOptions"]["hostProcess"] = False
    pod["spec"]["containers"][1]["securityContext"]["windowsOptions"]["hostProcess"] = False
    assert results("baseline", pod) == []


# --- baseline checks one by one ------------------------------------------------

def test_host_namespaces_false_is_fine() -> None:
    assert ids("baseline", plain(hostNetwork=False, hostPID=False, hostIPC=False)) == []
    assert results("baseline", plain(hostIPC=True)) == [("hostNamespaces", "host namespaces", "hostIPC=true")]


def test_capabilities_baseline_allows_the_default_set_only() -> None:
    pod = plain()
    pod["spec"]["containers"][0]["securityContext"] = {
        "capabilities": {"add": sorted(ps.BASELINE_CAPABILITIES), "drop": ["NET_RAW"]}}
    assert ids("baseline", pod) == []
    pod["spec"]["containers"].append({"name": "d", "securityContext": {"capabilities": {"add": ["NET_RAW", "CHOWN",
                                                                                                "BPF"]}}})
    pod["spec"]["containers"].append({"name": "e", "securityContext": {"capabilities": {"add": ["NET_RAW"]}}})
    assert results("baseline", pod) == [
        ("capabilities_baseline", "non-default capabilities",
         'containers "d", "e" must not include "BPF", "NET_RAW" in securityContext.capabilities.add')]


def test_host_ports_are_listed_sorted_as_strings() -> None:
    pod = plain()
    pod["spec"]["containers"][0]["ports"] = [{"containerPort": 80, "hostPort": 80}, {"containerPort": 9}]
    pod["spec"]["containers"].append({"name": "d", "ports": [{"containerPort": 8443, "hostPort": 8443},
                                                             {"containerPort": 9, "hostPort": 0}]})
    assert results("baseline", pod) == [("hostPorts", "hostPort", 'containers "c", "d" use hostPorts 80, 8443')]
    pod["spec"]["containers"] = pod["spec"]["containers"][1:]
    assert results("baseline", pod) == [("hostPorts", "hostPort", 'container "d" uses hostPort 8443')]
    pod["spec"]["containers"][0]["ports"] = [{"containerPort": 10, "hostPort": 10},
                                             {"containerPort": 9, "hostPort": 9}]
    assert results("baseline", pod)[0][2] == 'container "d" uses hostPorts 10, 9'


def test_probe_and_lifecycle_hosts_since_v1_34() -> None:
    pod = plain()
    pod["spec"]["containers"][0].update({
        "livenessProbe": {"httpGet": {"port": 80, "host": "localhost"}},
        "readinessProbe": {"tcpSocket": {"port": 80, "host": "::1"}},
        "lifecycle": {"preStop": {"httpGet": {"port": 80, "host": "127.0.0.1"}}}})
    pod["spec"]["initContainers"] = [{"name": "b", "startupProbe": {"httpGet": {"port": 80, "host": "localhost"}}},
                                     {"name": "ok", "startupProbe": {"httpGet": {"port": 80, "host": ""}}}]
    expected = ("hostProbesAndHostLifecycle", "probe or lifecycle host",
                'containers "b", "c" use probe or lifecycle hosts "127.0.0.1", "::1", "localhost"')
    assert results("baseline", pod) == [expected]
    assert results("restricted", pod)[0] == expected
    assert ids("baseline", pod, "v1.33") == []


def test_privileged_false_is_fine() -> None:
    pod = plain()
    pod["spec"]["containers"][0]["securityContext"] = {"privileged": False}
    assert ids("baseline", pod) == []


def test_app_armor_fields_and_annotations() -> None:
    pod = plain(securityContext={"appArmorProfile": {"type": "Unconfined"}})
    pod["spec"]["containers"].append({"name": "d", "securityContext": {"appArmorProfile": {"type": "Bogus"}}})
    pod["spec"]["containers"].append({"name": "e", "securityContext": {"appArmorProfile": {
        "type": "Localhost", "localhostProfile": "k8s-nginx"}}})
    pod["metadata"]["annotations"] = {
        "container.apparmor.security.beta.kubernetes.io/c": "unconfined",
        "container.apparmor.security.beta.kubernetes.io/d": "runtime/default",
        "container.apparmor.security.beta.kubernetes.io/e": "localhost/k8s-nginx",
        "container.apparmor.security.beta.kubernetes.io/f": ""}
    assert results("baseline", pod) == [
        ("appArmorProfile", "forbidden AppArmor profiles",
         'pod and container "d" and annotation must not set AppArmor profile type to '
         '"Bogus", "Unconfined", "container.apparmor.security.beta.kubernetes.io/c="unconfined""')]
    pod["spec"]["securityContext"]["appArmorProfile"]["type"] = "RuntimeDefault"
    del pod["spec"]["containers"][1]["securityContext"]
    assert results("baseline", pod) == [
        ("appArmorProfile", "forbidden AppArmor profile",
         'annotation must not set AppArmor profile type to '
         '"container.apparmor.security.beta.kubernetes.io/c="unconfined""')]


def test_annotation_values_are_quoted_as_go_does() -> None:
    pod = plain()
    pod["metadata"]["annotations"] = {"container.apparmor.security.beta.kubernetes.io/c": 'a"b\n\u00e9\x01'}
    assert results("baseline", pod)[0][2].endswith('c="a\\"b\\n\u00e9\\x01""')


def test_selinux_options() -> None:
    pod = plain(securityContext={"seLinuxOptions": {"type": "spc_t", "level": "s0:c123,c456"}})
    pod["spec"]["containers"].append({"name": "d", "securityContext": {"seLinuxOptions": {
        "type": "unconfined_t", "user": "system_u", "role": "system_r"}}})
    pod["spec"]["containers"].append({"name": "e", "securityContext": {"seLinuxOptions": {"type": "container_t"}}})
    assert results("baseline", pod) == [
        ("seLinuxOptions", "seLinuxOptions",
         'pod and container "d" set forbidden securityContext.seLinuxOptions: types "spc_t", "unconfined_t"; '
         "user may not be set; role may not be set")]
    engine = plain(securityContext={"seLinuxOptions": {"type": "container_engine_t"}})
    assert ids("baseline", engine) == []
    assert results("baseline", engine, "v1.30") == [
        ("seLinuxOptions", "seLinuxOptions", 'pod set forbidden securityContext.seLinuxOptions: type '
                                             '"container_engine_t"')]


def test_proc_mount_and_user_namespaces() -> None:
    pod = hardened()
    container(pod)["securityContext"]["procMount"] = "Unmasked"
    detail = 'container "app" must not set securityContext.procMount to "Unmasked"'
    assert results("baseline", pod) == [("procMount", "procMount", detail)]
    pod["spec"]["hostUsers"] = False
    # Baseline trusts a user namespace from v1.35; restricted never does.
    assert results("baseline", pod) == []
    assert results("restricted", pod) == [("procMount_restricted", "procMount", detail)]
    assert ids("baseline", pod, "v1.34") == ["procMount"]
    assert ids("restricted", pod, "v1.34") == ["procMount"]
    container(pod)["securityContext"]["procMount"] = "Default"
    del pod["spec"]["hostUsers"]
    assert ids("restricted", pod) == []


def test_seccomp_baseline_rejects_unconfined_only() -> None:
    pod = plain(securityContext={"seccompProfile": {"type": "Unconfined"}})
    pod["spec"]["initContainers"] = [{"name": "i", "securityContext": {"seccompProfile": {"type": "Unconfined"}}}]
    assert results("baseline", pod) == [
        ("seccompProfile_baseline", "seccompProfile",
         'pod and container "i" must not set securityContext.seccompProfile.type to "Unconfined"')]
    assert ids("baseline", plain()) == []
    assert ids("baseline", plain(securityContext={"seccompProfile": {"type": "RuntimeDefault"}})) == []


def test_seccomp_annotations_count_before_v1_19_only() -> None:
    pod = plain()
    pod["metadata"]["annotations"] = {"seccomp.security.alpha.kubernetes.io/pod": "unconfined",
                                      "container.seccomp.security.alpha.kubernetes.io/c": "localhost/x.json",
                                      "container.seccomp.security.alpha.kubernetes.io/gone": "unconfined"}
    assert results("baseline", pod, "v1.18") == [
        ("seccompProfile_baseline", "seccompProfile",
         'forbidden annotation seccomp.security.alpha.kubernetes.io/pod="unconfined"')]
    assert ids("baseline", pod, "v1.19") == []


def test_run_as_user_zero_and_user_namespaces() -> None:
    pod = hardened()
    pod["spec"]["securityContext"]["runAsUser"] = 0
    container(pod)["securityContext"]["runAsUser"] = 0
    container(pod, "init")["securityContext"]["runAsUser"] = 1000
    assert results("restricted", pod) == [
        ("runAsUser", "runAsUser=0", 'pod and container "app" must not set runAsUser=0')]
    pod["spec"]["hostUsers"] = False
    assert ids("restricted", pod) == []
    assert ids("restricted", pod, "v1.34") == ["runAsUser"]
    assert ids("restricted", pod, "v1.22") == []  # runAsUser arrived in v1.23


def test_capabilities_restricted() -> None:
    pod = hardened()
    container(pod)["securityContext"]["capabilities"] = {"drop": ["ALL"], "add": ["NET_BIND_SERVICE"]}
    assert ids("restricted", pod) == []
    container(pod)["securityContext"]["capabilities"] = {"drop": ["NET_RAW"], "add": ["CHOWN", "NET_BIND_SERVICE"]}
    container(pod, "init")["securityContext"]["capabilities"] = {"drop": ["all"]}
    assert results("restricted", pod) == [
        ("capabilities_restricted", "unrestricted capabilities",
         'containers "init", "app" must set securityContext.capabilities.drop=["ALL"]; '
         'container "app" must not include "CHOWN" in securityContext.capabilities.add')]
    # Under v1.21 restricted only had baseline's rule, which allows CHOWN.
    assert ids("restricted", pod, "v1.21") == []


def test_allow_privilege_escalation_must_be_false() -> None:
    pod = hardened()
    container(pod)["securityContext"]["allowPrivilegeEscalation"] = True
    del container(pod, "init")["securityContext"]["allowPrivilegeEscalation"]
    assert results("restricted", pod) == [
        ("allowPrivilegeEscalation", "allowPrivilegeEscalation != false",
         'containers "init", "app" must set securityContext.allowPrivilegeEscalation=false')]


# --- sysctls -------------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(ps.SAFE_SYSCTLS_1_37))
def test_each_safe_sysctl_passes_baseline(name: str) -> None:
    assert ids("baseline", plain(securityContext={"sysctls": [{"name": name, "value": "1"}]})) == []


@pytest.mark.parametrize("name,since", [
    ("kernel.shm_rmid_forced", 0), ("net.ipv4.ip_local_port_range", 0), ("net.ipv4.tcp_syncookies", 0),
    ("net.ipv4.ping_group_range", 0), ("net.ipv4.ip_unprivileged_port_start", 0),
    ("net.ipv4.ip_local_reserved_ports", 27),
    ("net.ipv4.tcp_keepalive_time", 29), ("net.ipv4.tcp_fin_timeout", 29), ("net.ipv4.tcp_keepalive_intvl", 29),
    ("net.ipv4.tcp_keepalive_probes", 29),
    ("net.ipv4.tcp_rmem", 32), ("net.ipv4.tcp_wmem", 32),
    ("net.ipv4.tcp_slow_start_after_idle", 37), ("net.ipv4.tcp_notsent_lowat", 37)])
def test_each_safe_sysctl_is_safe_from_its_version(name: str, since: int) -> None:
    pod = plain(securityContext={"sysctls": [{"name": name, "value": "1"}]})
    assert ids("baseline", pod, f"v1.{since}") == []
    if since:
        assert results("baseline", pod, f"v1.{since - 1}") == [("sysctls", "forbidden sysctls", name)]


@pytest.mark.parametrize("name", ["kernel.msgmax", "net.ipv4.ip_forward", "vm.swappiness", "net.core.somaxconn",
                                  "kernel.shm_rmid_forced.x", "net.ipv4.tcp_keepalive_intvl2"])
def test_unsafe_sysctls_fail_baseline(name: str) -> None:
    pod = plain(securityContext={"sysctls": [{"name": name, "value": "1"}]})
    assert results("baseline", pod) == [("sysctls", "forbidden sysctls", name)]


def test_forbidden_sysctls_listed_in_pod_order() -> None:
    pod = hardened()
    pod["spec"]["securityContext"]["sysctls"] = [
        {"name": "vm.b", "value": "1"}, {"name": "net.ipv4.tcp_rmem", "value": "4096 87380 6291456"},
        {"name": "kernel.a", "value": "1"}, {"name": "vm.b", "value": "2"}]
    assert results("restricted", pod) == [("sysctls", "forbidden sysctls", "vm.b, kernel.a, vm.b")]


# --- volumes -------------------------------------------------------------------

ALLOWED_VOLUMES = {
    "configMap": {"name": "cm"}, "csi": {"driver": "inline.storage.k8s.io"}, "downwardAPI": {"items": []},
    "emptyDir": {}, "ephemeral": {"volumeClaimTemplate": {"spec": {}}}, "image": {"reference": "busybox"},
    "persistentVolumeClaim": {"claimName": "data"}, "projected": {"sources": []}, "secret": {"secretName": "s"}}

RESTRICTED_VOLUMES = [
    "hostPath", "gcePersistentDisk", "awsElasticBlockStore", "gitRepo", "nfs", "iscsi", "glusterfs", "rbd",
    "flexVolume", "cinder", "cephfs", "flocker", "fc", "azureFile", "vsphereVolume", "quobyte", "azureDisk",
    "photonPersistentDisk", "portworxVolume", "scaleIO", "storageos"]


@pytest.mark.parametrize("kind", sorted(ALLOWED_VOLUMES))
def test_each_allowed_volume_type_passes_restricted(kind: str) -> None:
    pod = hardened()
    pod["spec"]["volumes"] = [{"name": "v", kind: ALLOWED_VOLUMES[kind]}]
    assert ids("restricted", pod) == []


@pytest.mark.parametrize("kind", RESTRICTED_VOLUMES)
def test_each_other_volume_type_fails_restricted(kind: str) -> None:
    pod = hardened()
    pod["spec"]["volumes"].append({"name": "v", kind: {}})
    assert results("restricted", pod) == [
        ("restrictedVolumes", "restricted volume types", f'volume "v" uses restricted volume type "{kind}"')]
    assert ids("baseline", pod) == (["hostPathVolumes"] if kind == "hostPath" else [])


def test_volume_details_group_names_and_types() -> None:
    pod = hardened()
    pod["spec"]["volumes"] += [{"name": "b", "nfs": {"server": "s", "path": "/"}},
                               {"name": "a", "hostPath": {"path": "/var/run"}},
                               {"name": "c", "nfs": {"server": "s", "path": "/x"}},
                               {"name": "unnamed-source"},
                               {"name": "nulls", "hostPath": None, "secret": None}]
    assert results("restricted", pod) == [
        ("restrictedVolumes", "restricted volume types",
         'volumes "b", "a", "c", "unnamed-source", "nulls" use restricted volume types '
         '"hostPath", "nfs", "unknown"')]
    assert results("baseline", pod) == [("hostPathVolumes", "hostPath volumes", 'volume "a"')]


# --- labels --------------------------------------------------------------------

def lv(level: str, version: str = "latest") -> ps.LevelVersion:
    return ps.LevelVersion(level, version)


def test_labels_select_levels_and_versions() -> None:
    assert ps.policy_to_evaluate({}) == (ps.DEFAULT_POLICY, [])
    assert ps.policy_to_evaluate(None) == (ps.DEFAULT_POLICY, [])
    policy, errors = ps.policy_to_evaluate({
        ps.ENFORCE_LABEL: "baseline", ps.ENFORCE_VERSION_LABEL: "v1.30",
        ps.AUDIT_LABEL: "restricted", ps.WARN_LABEL: "restricted", ps.WARN_VERSION_LABEL: "v1.0"})
    assert errors == []
    assert policy == ps.Policy(lv("baseline", "v1.30"), lv("restricted"), lv("restricted", "v1.0"))


def test_warn_follows_a_stricter_enforce_unless_set() -> None:
    policy, _ = ps.policy_to_evaluate({ps.ENFORCE_LABEL: "restricted", ps.ENFORCE_VERSION_LABEL: "v1.29"})
    assert policy.warn == lv("restricted", "v1.29")
    assert policy.audit == lv("privileged")
    policy, _ = ps.policy_to_evaluate({ps.ENFORCE_LABEL: "baseline", ps.WARN_VERSION_LABEL: "v1.30"})
    assert policy.warn == lv("baseline", "v1.30")
    policy, _ = ps.policy_to_evaluate({ps.ENFORCE_LABEL: "restricted", ps.WARN_LABEL: "privileged"})
    assert policy.warn == lv("privileged")
    # Warn is never lowered to a laxer enforce.
    defaults = ps.Policy(warn=lv("restricted"))
    policy, _ = ps.policy_to_evaluate({ps.ENFORCE_LABEL: "baseline"}, defaults)
    assert policy.warn == lv("restricted")


def test_bad_labels_fail_closed_for_enforce_and_open_for_audit_and_warn() -> None:
    policy, errors = ps.policy_to_evaluate({ps.ENFORCE_LABEL: "bogus", ps.ENFORCE_VERSION_LABEL: "1.30",
                                            ps.AUDIT_LABEL: "Restricted", ps.WARN_LABEL: "strict",
                                            ps.WARN_VERSION_LABEL: "v1.030"})
    assert policy == ps.Policy(lv("restricted"), lv("privileged"), lv("privileged"))
    assert [str(e) for e in errors] == [
        'metadata.labels[pod-security.kubernetes.io/enforce]: Invalid value: "bogus": '
        "must be one of privileged, baseline, restricted",
        'metadata.labels[pod-security.kubernetes.io/enforce-version]: Invalid value: "1.30": '
        'must be "latest" or "v1.x"',
        'metadata.labels[pod-security.kubernetes.io/audit]: Invalid value: "Restricted": '
        "must be one of privileged, baseline, restricted",
        'metadata.labels[pod-security.kubernetes.io/warn]: Invalid value: "strict": '
        "must be one of privileged, baseline, restricted",
        'metadata.labels[pod-security.kubernetes.io/warn-version]: Invalid value: "v1.030": '
        'must be "latest" or "v1.x"']
    # A bad enforce level does not drag warn along.
    policy, _ = ps.policy_to_evaluate({ps.ENFORCE_LABEL: "bogus"})
    assert policy.warn == lv("privileged")


@pytest.mark.parametrize("value,expected", [("latest", ("latest", None)), ("v1.0", ("v1.0", None)),
                                            ("v1.37", ("v1.37", None)), ("v1.120", ("v1.120", None)),
                                            ("v1.37\n", ("latest", 'must be "latest" or "v1.x"')),
                                            ("v1.99999999999999999999", ("latest", 'must be "latest" or "v1.x"')),
                                            ("Latest", ("latest", 'must be "latest" or "v1.x"'))])
def test_parse_version(value: str, expected: tuple[str, str | None]) -> None:
    assert ps.parse_version(value) == expected


# --- namespaces ----------------------------------------------------------------

def test_creating_a_namespace_with_a_bad_level_is_refused_as_upstream_words_it() -> None:
    decision = ps.validate_namespace("x", {ps.ENFORCE_LABEL: "bogus"})
    assert (decision.allowed, decision.code, decision.reason) == (False, 422, "Invalid")
    assert decision.message == (
        'Namespace "x" is invalid: metadata.labels[pod-security.kubernetes.io/enforce]: Invalid value: "bogus": '
        "must be one of privileged, baseline, restricted")
    assert [(c.type, c.field, c.body()) for c in decision.causes] == [
        ("FieldValueInvalid", "metadata.labels[pod-security.kubernetes.io/enforce]",
         'Invalid value: "bogus": must be one of privileged, baseline, restricted')]
    two = ps.validate_namespace("x", {ps.ENFORCE_LABEL: "bogus", ps.WARN_VERSION_LABEL: "v2"})
    assert two.message == (
        'Namespace "x" is invalid: [metadata.labels[pod-security.kubernetes.io/enforce]: Invalid value: "bogus": '
        "must be one of privileged, baseline, restricted, "
        'metadata.labels[pod-security.kubernetes.io/warn-version]: Invalid value: "v2": must be "latest" or "v1.x"]')


def test_labelling_an_existing_namespace_with_a_bad_level_is_refused() -> None:
    decision = ps.validate_namespace("x", {"team": "a", ps.ENFORCE_LABEL: "bogus"}, {"team": "a"})
    assert not decision.allowed and decision.code == 422
    # Unrelated edits to a namespace that already had the bad label go through.
    kept = ps.validate_namespace("x", {"team": "b", ps.ENFORCE_LABEL: "bogus"}, {ps.ENFORCE_LABEL: "bogus"})
    assert kept.allowed
    changed = ps.validate_namespace("x", {ps.ENFORCE_LABEL: "bogus2"}, {ps.ENFORCE_LABEL: "bogus"})
    assert not changed.allowed


def test_tightening_enforce_dry_runs_existing_pods() -> None:
    privileged_pod = plain(hostNetwork=True)
    privileged_pod["metadata"]["name"] = "agent"
    decision = ps.validate_namespace("x", {ps.ENFORCE_LABEL: "restricted"}, {},
                                     pods=[hardened(), privileged_pod])
    assert decision.allowed
    assert decision.check_existing_pods == lv("restricted")
    assert decision.warnings == [
        'existing pods in namespace "x" violate the new PodSecurity enforce level "restricted:latest"',
        "agent: host namespaces, allowPrivilegeEscalation != false, unrestricted capabilities, "
        "runAsNonRoot != true, seccompProfile"]
    clean = ps.validate_namespace("x", {ps.ENFORCE_LABEL: "restricted"}, {}, pods=[hardened()])
    assert clean.allowed and clean.warnings == []


@pytest.mark.parametrize("old,new", [
    ({ps.ENFORCE_LABEL: "restricted"}, {ps.ENFORCE_LABEL: "restricted", "other": "x"}),
    ({ps.ENFORCE_LABEL: "restricted"}, {ps.ENFORCE_LABEL: "baseline"}),
    ({ps.ENFORCE_LABEL: "baseline"}, {ps.ENFORCE_LABEL: "privileged", ps.ENFORCE_VERSION_LABEL: "v1.0"}),
    ({ps.ENFORCE_LABEL: "baseline"}, {}),
    ({}, {ps.WARN_LABEL: "restricted", ps.AUDIT_LABEL: "restricted"})])
def test_changes_that_do_not_tighten_enforce_skip_the_dry_run(old: dict[str, str], new: dict[str, str]) -> None:
    decision = ps.validate_namespace("x", new, old, pods=[plain(hostPID=True)])
    assert decision.allowed and decision.warnings == [] and decision.check_existing_pods is None


def test_a_version_change_at_the_same_level_dry_runs() -> None:
    decision = ps.validate_namespace("x", {ps.ENFORCE_LABEL: "baseline", ps.ENFORCE_VERSION_LABEL: "v1.30"},
                                     {ps.ENFORCE_LABEL: "baseline"})
    assert decision.check_existing_pods == lv("baseline", "v1.30")
    assert decision.warnings == []  # no pods given: the caller runs existing_pods_warnings


def test_exempt_namespaces_get_a_warning_instead_of_a_dry_run() -> None:
    exemptions = ps.Exemptions(namespaces=frozenset({"kube-system"}))
    decision = ps.validate_namespace("kube-system", {ps.ENFORCE_LABEL: "restricted"}, exemptions=exemptions)
    assert decision.warnings == [
        'namespace "kube-system" is exempt from Pod Security, and the policy (enforce=restricted:latest) '
        "will be ignored"]
    decision = ps.validate_namespace(
        "kube-system", {ps.ENFORCE_LABEL: "restricted", ps.ENFORCE_VERSION_LABEL: "v1.0",
                        ps.AUDIT_LABEL: "restricted", ps.WARN_LABEL: "baseline"}, {},
        exemptions=exemptions, pods=[plain(hostPID=True)])
    assert decision.check_existing_pods is None
    assert decision.warnings == [
        'namespace "kube-system" is exempt from Pod Security, and the policy '
        "(enforce=restricted:v1.0, audit=restricted:latest, warn=baseline:latest) will be ignored"]
    assert ps.validate_namespace("kube-system", {ps.ENFORCE_LABEL: "privileged"},
                                 exemptions=exemptions).warnings == []
    assert ps.validate_namespace("other", {ps.ENFORCE_LABEL: "restricted"}, exemptions=exemptions).warnings == []


def test_namespace_subresources_are_not_checked() -> None:
    assert ps.validate_namespace("x", {ps.ENFORCE_LABEL: "bogus"}, subresource="status").allowed


def pod_named(name: str, pod: Obj, controller: str | None = None, runtime_class: str | None = None) -> Obj:
    pod = copy.deepcopy(pod)
    pod["metadata"]["name"] = name
    if controller:
        pod["metadata"]["ownerReferences"] = [{"kind": "ReplicaSet", "name": controller, "uid": controller,
                                               "controller": True}]
    if runtime_class:
        pod["spec"]["runtimeClassName"] = runtime_class
    return pod


def test_existing_pod_warnings_group_pods_by_reasons() -> None:
    host = plain(hostNetwork=True)
    priv = plain()
    priv["spec"]["containers"][0]["securityContext"] = {"privileged": True}
    pods = [pod_named("web-2", host), pod_named("web-1", host), pod_named("db", priv),
            pod_named("web-0", host), pod_named("api", priv), pod_named("ok", hardened()),
            pod_named("solo", plain(hostIPC=True, volumes=[{"name": "h", "hostPath": {"path": "/"}}]))]
    # Grouped by the reasons alone: hostNetwork and hostIPC both read "host namespaces".
    assert ps.existing_pods_warnings("x", lv("baseline"), pods) == [
        'existing pods in namespace "x" violate the new PodSecurity enforce level "baseline:latest"',
        "api (and 1 other pod): privileged",
        "solo: host namespaces, hostPath volumes",
        "web-0 (and 2 other pods): host namespaces"]


def test_existing_pod_warnings_prefer_one_pod_per_controller_and_skip_exempt_runtime_classes() -> None:
    bad = plain(hostPID=True)
    pods = [pod_named(f"rs-{i}", bad, controller="rs") for i in range(5)]
    pods += [pod_named("kata", bad, runtime_class="kata"), pod_named("lone", plain(volumes=[{"name": "h", "hostPath": {"path": "/"}}]))]
    exemptions = ps.Exemptions(runtime_classes=frozenset({"kata"}))
    assert ps.existing_pods_warnings("x", lv("baseline"), pods, exemptions=exemptions, max_pods=2) == [
        "new PodSecurity enforce level only checked against the first 2 of 6 existing pods",
        'existing pods in namespace "x" violate the new PodSecurity enforce level "baseline:latest"',
        "lone: hostPath volumes",
        "rs-0: host namespaces"]
    # Further replicas follow in the order listed, after every controller's first pod.
    pods = [pod_named(n, bad, controller="rs") for n in ("rs-z", "rs-b", "rs-a")] + [pods[-1]]
    assert ps.existing_pods_warnings("x", lv("baseline"), pods, max_pods=3)[2:] == [
        "lone: hostPath volumes", "rs-b (and 1 other pod): host namespaces"]


def test_existing_pod_warnings_stop_at_the_deadline() -> None:
    pods = [pod_named(f"p{i}", plain(hostPID=True)) for i in range(4)]
    assert ps.existing_pods_warnings("x", lv("baseline"), pods, deadline=time.monotonic() - 1) == [
        "new PodSecurity enforce level only checked against the first 1 of 4 existing pods",
        'existing pods in namespace "x" violate the new PodSecurity enforce level "baseline:latest"',
        "p0: host namespaces"]


# --- pods and workloads --------------------------------------------------------

RESTRICTED_NS = {ps.ENFORCE_LABEL: "restricted"}


def test_enforce_refuses_with_forbidden_and_no_warnings() -> None:
    decision = ps.admit_pod(plain(), RESTRICTED_NS, namespace="apps")
    assert (decision.allowed, decision.code, decision.reason) == (False, 403, "Forbidden")
    assert decision.message.startswith(
        'pods "p" is forbidden: violates PodSecurity "restricted:latest": allowPrivilegeEscalation != false '
        '(container "c" must set securityContext.allowPrivilegeEscalation=false), unrestricted capabilities (')
    assert decision.warnings == []
    assert decision.audit_annotations == {"pod-security.kubernetes.io/enforce-policy": "restricted:latest"}


def test_warn_and_audit_modes_let_the_pod_in() -> None:
    labels = {ps.ENFORCE_LABEL: "baseline", ps.WARN_LABEL: "restricted", ps.WARN_VERSION_LABEL: "v1.30",
              ps.AUDIT_LABEL: "restricted"}
    decision = ps.admit_pod(plain(), labels, namespace="apps")
    assert decision.allowed
    expected = ps.would_violate(lv("restricted", "v1.30"), ps.evaluate("restricted", "v1.30", {}, plain()["spec"]))
    assert decision.warnings == [expected]
    assert decision.warnings[0].startswith('would violate PodSecurity "restricted:v1.30": allowPrivilegeEscalation')
    assert decision.audit_annotations["pod-security.kubernetes.io/enforce-policy"] == "baseline:latest"
    assert decision.audit_annotations["pod-security.kubernetes.io/audit-violations"].startswith(
        'would violate PodSecurity "restricted:latest": ')
    assert ps.admit_pod(hardened(), labels, namespace="apps") == ps.Decision(
        audit_annotations={"pod-security.kubernetes.io/enforce-policy": "baseline:latest"})


def test_exemptions_and_privileged_namespaces() -> None:
    exemptions = ps.Exemptions(usernames=frozenset({"system:serviceaccount:kube-system:daemon-set-controller"}),
                               namespaces=frozenset({"kube-system"}), runtime_classes=frozenset({"kata"}))
    pod = plain()
    assert ps.admit_pod(pod, RESTRICTED_NS, namespace="kube-system", exemptions=exemptions).audit_annotations == {
        "pod-security.kubernetes.io/exempt": "namespace"}
    by_user = ps.admit_pod(pod, RESTRICTED_NS, namespace="apps", exemptions=exemptions,
                           username="system:serviceaccount:kube-system:daemon-set-controller")
    assert by_user.allowed and by_user.audit_annotations == {"pod-security.kubernetes.io/exempt": "user"}
    kata = plain(runtimeClassName="kata")
    assert ps.admit_pod(kata, RESTRICTED_NS, namespace="apps", exemptions=exemptions).audit_annotations == {
        "pod-security.kubernetes.io/exempt": "runtimeClass"}
    assert not ps.admit_pod(pod, RESTRICTED_NS, namespace="apps", exemptions=exemptions, username="alice").allowed
    unlabelled = ps.admit_pod(plain(hostPID=True), {"team": "a"}, namespace="apps")
    assert unlabelled.allowed and unlabelled.audit_annotations == {
        "pod-security.kubernetes.io/enforce-policy": "privileged:latest"}


def test_cluster_defaults_apply_to_unlabelled_namespaces() -> None:
    defaults = ps.Policy(enforce=lv("baseline"))
    assert not ps.admit_pod(plain(hostPID=True), None, namespace="apps", defaults=defaults).allowed
    assert ps.admit_pod(plain(hostPID=True), {ps.ENFORCE_LABEL: "privileged"}, namespace="apps",
                        defaults=defaults).allowed


def test_a_namespace_with_a_bad_label_enforces_restricted_and_records_the_error() -> None:
    decision = ps.admit_pod(plain(), {ps.ENFORCE_LABEL: "bogus"}, namespace="apps")
    assert not decision.allowed
    assert decision.audit_annotations["pod-security.kubernetes.io/error"] == (
        'Failed to parse policy: metadata.labels[pod-security.kubernetes.io/enforce]: Invalid value: "bogus": '
        "must be one of privileged, baseline, restricted")
    # An invalid warn label alone still parses as fully privileged, but is not
    # waved through: the error is recorded.
    decision = ps.admit_pod(plain(), {ps.WARN_LABEL: "bogus"}, namespace="apps")
    assert decision.allowed and "pod-security.kubernetes.io/error" in decision.audit_annotations


def test_pod_updates_are_checked_only_when_images_or_containers_change() -> None:
    old = plain()
    same = copy.deepcopy(old)
    same["metadata"]["labels"] = {"a": "b"}
    assert ps.admit_pod(same, RESTRICTED_NS, namespace="apps", old_pod=old).allowed
    new_image = copy.deepcopy(old)
    new_image["spec"]["containers"][0]["image"] = "nginx:2"
    assert not ps.admit_pod(new_image, RESTRICTED_NS, namespace="apps", old_pod=old).allowed
    debug = copy.deepcopy(old)
    debug["spec"]["ephemeralContainers"] = [{"name": "dbg", "image": "busybox"}]
    assert ps.significant_pod_update(debug, old)
    assert not ps.significant_pod_update(debug, copy.deepcopy(debug))
    assert not ps.admit_pod(debug, RESTRICTED_NS, namespace="apps", old_pod=old,
                            subresource="ephemeralcontainers").allowed
    for sub in ("status", "binding", "exec", "log", "eviction"):
        assert ps.admit_pod(new_image, RESTRICTED_NS, namespace="apps", old_pod=old, subresource=sub).allowed


def deployment(spec: Obj) -> Obj:
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
            "spec": {"replicas": 2, "template": {"metadata": {"labels": {"app": "web"}}, "spec": spec}}}


def test_workloads_are_warned_about_never_refused() -> None:
    decision = ps.admit_workload("apps", "deployments", deployment(plain()["spec"]), RESTRICTED_NS,
                                 namespace="apps")
    assert decision.allowed
    assert decision.warnings == [ps.would_violate(lv("restricted"), ps.evaluate("restricted", "latest", {},
                                                                                 plain()["spec"]))]
    assert decision.warnings[0].startswith('would violate PodSecurity "restricted:latest": ')
    assert "pod-security.kubernetes.io/enforce-policy" not in decision.audit_annotations
    assert ps.admit_workload("apps", "deployments", deployment(hardened()["spec"]), RESTRICTED_NS,
                             namespace="apps").warnings == []
    # Only audit and warn matter: an enforce-only namespace says nothing.
    only_enforce = {ps.ENFORCE_LABEL: "baseline", ps.WARN_LABEL: "privileged"}
    assert ps.admit_workload("apps", "deployments", deployment(plain(hostPID=True)["spec"]), only_enforce,
                             namespace="apps").warnings == []


def test_pod_templates_of_each_workload_kind() -> None:
    spec = plain(hostPID=True)["spec"]
    template = {"metadata": {}, "spec": spec}
    objects = {
        ("", "replicationcontrollers"): {"spec": {"template": template}},
        ("", "podtemplates"): {"template": template},
        ("apps", "replicasets"): {"spec": {"template": template}},
        ("apps", "deployments"): {"spec": {"template": template}},
        ("apps", "statefulsets"): {"spec": {"template": template}},
        ("apps", "daemonsets"): {"spec": {"template": template}},
        ("batch", "jobs"): {"spec": {"template": template}},
        ("batch", "cronjobs"): {"spec": {"jobTemplate": {"spec": {"template": template}}}},
    }
    assert set(objects) == ps.WORKLOAD_RESOURCES
    for (group, resource), obj in objects.items():
        assert ps.pod_template(group, resource, obj) == ({}, spec), resource
        decision = ps.admit_workload(group, resource, obj, {ps.WARN_LABEL: "baseline"}, namespace="apps")
        assert decision.warnings == [
            'would violate PodSecurity "baseline:latest": host namespaces (hostPID=true)'], resource
    assert ps.pod_template("", "replicationcontrollers", {"spec": {}}) is None
    assert ps.admit_workload("", "configmaps", {"data": {}}, {ps.WARN_LABEL: "baseline"}, namespace="a").warnings == []
    assert ps.admit_workload("apps", "deployments", deployment(spec), {ps.WARN_LABEL: "baseline"}, namespace="a",
                             subresource="scale").warnings == []


# --- message helpers -----------------------------------------------------------

def test_forbidden_detail_omits_empty_details_and_names_unknown_reasons() -> None:
    found = [ps.Result("a", "first", "why"), ps.Result("b", "second", ""), ps.Result("c", "", "odd")]
    assert ps.forbidden_detail(found) == "first (why), second, unknown forbidden reason (odd)"
    assert ps.forbidden_reasons(found) == "first, second, unknown forbidden reason"


def test_forbidden_message_without_a_name() -> None:
    assert ps.forbidden_message("pods", "", "violates x") == "pods is forbidden: violates x"
    assert ps.enforce_message("a\"b", lv("baseline", "v1.30"), [ps.Result("x", "r", "d")]) == (
        'pods "a\\"b" is forbidden: violates PodSecurity "baseline:v1.30": r (d)')
