"""Pod status as the kubelet would report it."""

from __future__ import annotations

from typing import Any

from pinnace.kubelet.podstatus import container_id, image_id, normalize_image, running_status, terminated_status
from pinnace.kubelet.sim import parse_duration, slim_pod

NOW = "2026-01-02T03:04:05Z"
LATER = "2026-01-02T03:09:05Z"


def pod(**spec: Any) -> dict[str, Any]:
    status = spec.pop("status", {"phase": "Pending", "qosClass": "Burstable"})
    return {"metadata": {"name": "web", "namespace": "ns", "uid": "u-1"},
            "spec": {"containers": [{"name": "app", "image": "nginx"},
                                    {"name": "side", "image": "quay.io/org/tool:v2"}],
                     **spec},
            "status": status}


def conds(status: dict[str, Any]) -> dict[str, str]:
    return {c["type"]: c["status"] for c in status["conditions"]}


def test_images_are_fully_qualified_like_containerd() -> None:
    assert normalize_image("nginx") == "docker.io/library/nginx:latest"
    assert normalize_image("nginx:1.27") == "docker.io/library/nginx:1.27"
    assert normalize_image("bitnami/redis") == "docker.io/bitnami/redis:latest"
    assert normalize_image("quay.io/org/tool:v2") == "quay.io/org/tool:v2"
    assert normalize_image("localhost:5000/x") == "localhost:5000/x:latest"
    digest = "sha256:" + "a" * 64
    assert normalize_image(f"nginx@{digest}") == f"docker.io/library/nginx@{digest}"
    assert image_id("nginx").startswith("docker.io/library/nginx@sha256:")
    assert image_id("nginx") == image_id("docker.io/library/nginx:latest")
    assert image_id("nginx:1") != image_id("nginx:2")


def test_container_ids_are_stable_and_distinct() -> None:
    a = container_id("u-1", "app")
    assert a == container_id("u-1", "app") and a.startswith("sim://")
    assert a != container_id("u-1", "side") != container_id("u-2", "app")


def test_running_pod_has_the_kubelet_conditions_and_addresses() -> None:
    st = running_status(pod(), host_ip="10.200.0.1", pod_ip="10.244.0.2", now=NOW)
    assert st["phase"] == "Running"
    assert [c["type"] for c in st["conditions"]] == [
        "PodReadyToStartContainers", "Initialized", "Ready", "ContainersReady", "PodScheduled"]
    assert set(conds(st).values()) == {"True"}
    assert all(c["lastTransitionTime"] == NOW for c in st["conditions"])
    assert st["podIP"] == "10.244.0.2" and st["podIPs"] == [{"ip": "10.244.0.2"}]
    assert st["hostIP"] == "10.200.0.1" and st["hostIPs"] == [{"ip": "10.200.0.1"}]
    assert st["startTime"] == NOW and st["qosClass"] == "Burstable"
    app, side = st["containerStatuses"]
    assert app["name"] == "app" and app["image"] == "docker.io/library/nginx:latest"
    assert app["ready"] is True and app["started"] is True and app["restartCount"] == 0
    assert app["state"] == {"running": {"startedAt": NOW}} and app["lastState"] == {}
    assert app["containerID"] != side["containerID"]
    assert side["imageID"].startswith("quay.io/org/tool@sha256:")


def test_transition_times_survive_a_repeated_report() -> None:
    first = running_status(pod(), host_ip="h", pod_ip="p", now=NOW)
    again = running_status(pod(status={"phase": "Running", **first}), host_ip="h",
                           pod_ip="p", now=LATER)
    assert all(c["lastTransitionTime"] == NOW for c in again["conditions"])
    assert again["startTime"] == NOW


def test_scheduler_condition_and_foreign_conditions_are_kept() -> None:
    p = pod(status={"phase": "Pending", "conditions": [
        {"type": "PodScheduled", "status": "True", "lastTransitionTime": "2020-01-01T00:00:00Z"},
        {"type": "example.com/gate", "status": "True", "lastTransitionTime": NOW}]},
        readinessGates=[{"conditionType": "example.com/gate"}])
    st = running_status(p, host_ip="h", pod_ip="p", now=LATER)
    by = {c["type"]: c for c in st["conditions"]}
    assert by["PodScheduled"]["lastTransitionTime"] == "2020-01-01T00:00:00Z"
    assert by["example.com/gate"]["status"] == "True"
    assert by["Ready"]["status"] == "True"


def test_unmet_readiness_gate_keeps_the_pod_unready() -> None:
    st = running_status(pod(readinessGates=[{"conditionType": "example.com/lb"}]),
                        host_ip="h", pod_ip="p", now=NOW)
    ready = next(c for c in st["conditions"] if c["type"] == "Ready")
    assert ready["status"] == "False" and ready["reason"] == "ReadinessGatesNotReady"
    assert ready["message"] == \
        'corresponding condition of pod readiness gate "example.com/lb" does not exist.'
    assert conds(st)["ContainersReady"] == "True"


def test_init_containers_completed_and_sidecars_running() -> None:
    p = pod(initContainers=[{"name": "setup", "image": "busybox"},
                            {"name": "proxy", "image": "envoy", "restartPolicy": "Always"}])
    st = running_status(p, host_ip="h", pod_ip="p", now=NOW)
    setup, proxy = st["initContainerStatuses"]
    assert setup["state"]["terminated"]["reason"] == "Completed"
    assert setup["state"]["terminated"]["exitCode"] == 0 and setup["ready"] is True
    assert proxy["state"] == {"running": {"startedAt": NOW}} and proxy["started"] is True


def test_generation_is_observed_when_the_pod_has_one() -> None:
    p = pod()
    p["metadata"]["generation"] = 3
    st = running_status(p, host_ip="h", pod_ip="p", now=NOW)
    assert st["observedGeneration"] == 3
    assert st["conditions"][0]["observedGeneration"] == 3


def test_succeeded_pod_shows_completed_containers() -> None:
    running = running_status(pod(), host_ip="h", pod_ip="p", now=NOW)
    st = terminated_status(pod(status={"phase": "Running", **running}), host_ip="h",
                           pod_ip="p", now=LATER)
    assert st["phase"] == "Succeeded"
    by = {c["type"]: c for c in st["conditions"]}
    assert by["Ready"]["status"] == "False" and by["Ready"]["reason"] == "PodCompleted"
    assert by["ContainersReady"]["reason"] == "PodCompleted"
    assert by["Initialized"]["lastTransitionTime"] == NOW
    term = st["containerStatuses"][0]["state"]["terminated"]
    assert term == {"exitCode": 0, "reason": "Completed", "startedAt": NOW, "finishedAt": LATER,
                    "containerID": st["containerStatuses"][0]["containerID"]}
    assert st["containerStatuses"][0]["ready"] is False


def test_failed_pod_names_its_unready_containers() -> None:
    st = terminated_status(pod(), exit_code=2, host_ip="h", pod_ip="p", now=NOW)
    assert st["phase"] == "Failed"
    ready = next(c for c in st["conditions"] if c["type"] == "Ready")
    assert ready["reason"] == "ContainersNotReady"
    assert ready["message"] == "containers with unready status: [app side]"
    assert st["containerStatuses"][0]["state"]["terminated"]["reason"] == "Error"


def test_go_durations() -> None:
    assert parse_duration("5s") == 5
    assert parse_duration("1m30s") == 90
    assert parse_duration("250ms") == 0.25
    assert parse_duration("1h") == 3600
    assert parse_duration("0") == 0
    assert parse_duration("5") is None and parse_duration("soon") is None


def test_slim_pod_keeps_what_status_needs() -> None:
    full = pod(restartPolicy="Never", hostNetwork=False, nodeName="n1",
               volumes=[{"name": "big", "configMap": {"name": "x"}}])
    full["metadata"]["annotations"] = {"pinnace.dev/sim-complete-after": "5s",
                                       "kubectl.kubernetes.io/last-applied-configuration": "{}"}
    full["metadata"]["managedFields"] = [{"manager": "kubectl"}]
    slim = slim_pod(full)
    assert slim["metadata"]["annotations"] == {"pinnace.dev/sim-complete-after": "5s"}
    assert "managedFields" not in slim["metadata"] and "volumes" not in slim["spec"]
    assert slim["spec"]["nodeName"] == "n1" and slim["spec"]["restartPolicy"] == "Never"
    assert running_status(slim, host_ip="h", pod_ip="p", now=NOW) == \
        running_status(full, host_ip="h", pod_ip="p", now=NOW)


def test_volume_mounts_report_the_resolved_recursive_read_only_mode() -> None:
    from pinnace.kubelet.podstatus import volume_mounts

    c = {"volumeMounts": [
        {"name": "data", "mountPath": "/data"},
        {"name": "cfg", "mountPath": "/cfg", "readOnly": True},
        {"name": "ro", "mountPath": "/ro", "readOnly": True, "recursiveReadOnly": "IfPossible"},
        {"name": "rro", "mountPath": "/rro", "readOnly": True, "recursiveReadOnly": "Enabled"}]}
    modes = {m["name"]: m.get("recursiveReadOnly") for m in volume_mounts(c, True)}
    assert modes == {"data": None, "cfg": "Disabled", "ro": "Enabled", "rro": "Enabled"}
    # A runtime without recursive read-only mounts resolves IfPossible to Disabled.
    assert volume_mounts(c, False)[2] == {"name": "ro", "mountPath": "/ro", "readOnly": True,
                                          "recursiveReadOnly": "Disabled"}
    assert volume_mounts(c, False)[0] == {"name": "data", "mountPath": "/data"}
