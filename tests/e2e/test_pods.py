"""Pods on a real node, seen through kubectl as a user sees them."""

from __future__ import annotations

import json
import os
import re
import subprocess
import time

from pinnace.kubelet.network import PodNetwork
from tests.e2e.conftest import cstate, phase, pod_json, until_answers, wait_pod

IMAGE = "busybox:1.36"


def _pod(name: str, command: str, **spec) -> str:  # type: ignore[no-untyped-def]
    body = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {"terminationGracePeriodSeconds": 1,
                     "containers": [{"name": "c", "image": IMAGE, "command": ["sh", "-c", command]}],
                     **spec}}
    return json.dumps(body)


def _pid_of(p: dict) -> int:
    """The container's main process, found on the host by its container id.
    Running as soon as it is started, the container's process may still be
    the runtime's init for a moment before it execs `sleep`: waited for."""
    cid = p["status"]["containerStatuses"][0]["containerID"].split("://", 1)[1]
    deadline = time.monotonic() + 10
    while True:
        for d in os.listdir("/proc"):
            if d.isdigit():
                try:
                    with open(f"/proc/{d}/cgroup") as f:
                        if cid in f.read():
                            with open(f"/proc/{d}/cmdline", "rb") as c:
                                if b"sleep" in c.read():
                                    return int(d)
                except OSError:
                    continue
        if time.monotonic() > deadline:
            return 0
        time.sleep(0.05)


def test_the_servers_own_node_has_the_control_plane_role(node):
    """As k3s and kubeadm label theirs (a kubelet may not label itself so)."""
    def role() -> str:
        out = node.kubectl("get", "nodes").stdout
        assert "control-plane" in out, out
        return out

    until_answers(role, "the node's ROLES to say control-plane")
    n = json.loads(node.kubectl("get", "nodes", "-o", "json").stdout)["items"][0]
    assert n["metadata"]["labels"]["node-role.kubernetes.io/control-plane"] == "true"


def test_the_node_tells_its_start_in_events_as_a_kubelets_does(node):
    """`kubectl describe node`'s Events: the kubelet's start and conditions,
    the node controller's registration, kube-proxy's start."""
    name = json.loads(node.kubectl("get", "nodes", "-o", "json").stdout)["items"][0]["metadata"]["name"]

    def described() -> str:
        out = node.kubectl("describe", "node", name).stdout
        events = out.split("Events:", 1)[1]
        for reason, source, message in (
                ("Starting", "kubelet", "Starting kubelet."),
                ("NodeAllocatableEnforced", "kubelet", "Updated Node Allocatable limit across pods"),
                ("NodeHasSufficientMemory", "kubelet", f"Node {name} status is now: NodeHasSufficientMemory"),
                ("NodeReady", "kubelet", f"Node {name} status is now: NodeReady"),
                ("RegisteredNode", "node-controller",
                 f"Node {name} event: Registered Node {name} in Controller"),
                ("Starting", "kube-proxy", "")):
            assert any(line.split()[:2] == ["Normal", reason] and f" {source} " in f"{line} "
                       and line.rstrip().endswith(message) for line in events.splitlines()), events
        return out

    until_answers(described, "the node's events")


def test_busybox_pod_runs_with_an_ip_and_its_output_logged(node, ns):
    node.kubectl("apply", "-n", ns, "-f", "-", input=_pod("bb", "echo hello from $HOSTNAME; sleep 3600"))
    p = wait_pod(node, ns, "bb", lambda p: phase(p) == "Running" and cstate(p).get("running"),
                 what="busybox Running")
    st = p["status"]
    assert st["podIP"].startswith("10.244.")
    assert st["hostIP"] and st["startTime"]
    c = st["containerStatuses"][0]
    assert c["ready"] and c["started"] and c["restartCount"] == 0
    assert c["containerID"].split("://")[0] in ("runc", "crun")
    assert c["image"] == "docker.io/library/busybox:1.36"
    assert c["imageID"].startswith("sha256:") or "@sha256:" in c["imageID"]
    # The service account token's mount, read-only and (no runtime support) not recursively.
    assert {"name": p["spec"]["containers"][0]["volumeMounts"][0]["name"],
            "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount", "readOnly": True,
            "recursiveReadOnly": "Disabled"} in c["volumeMounts"]
    conds = {x["type"]: x["status"] for x in st["conditions"]}
    assert conds == {"PodReadyToStartContainers": "True", "Initialized": "True", "Ready": "True",
                     "ContainersReady": "True", "PodScheduled": "True"}
    assert _pid_of(p) > 0
    get = node.kubectl("get", "pod", "bb", "-n", ns).stdout
    assert "Running" in get and "1/1" in get
    prev = node.kubectl("logs", "bb", "-n", ns, "--previous", check=False)
    assert 'Error from server (BadRequest): previous terminated container "c" in pod "bb" ' \
        "not found" in prev.stderr, prev.stderr


def test_a_containers_identity_is_in_its_status_as_its_process_has_it(node, ns):
    """1.33+: status.containerStatuses[].user is the uid, gid and groups the
    process was given; with supplementalGroupsPolicy Strict no group comes
    from the image's /etc/group. The node says it can honour Strict. What
    runs in the container later (kubectl exec, a probe) runs as it does."""
    features = node.kubectl("get", "node", "-o", "jsonpath={.items[0].status.features}").stdout
    assert json.loads(features) == {"supplementalGroupsPolicy": True}
    sc = {"runAsUser": 1000, "runAsGroup": 3000, "supplementalGroups": [4000], "fsGroup": 5000,
          "supplementalGroupsPolicy": "Strict"}
    pod = json.loads(_pod("who", "id -u; id -g; id -G; sleep 3600", securityContext=sc))
    # An exec probe runs as the container's process does: Ready only as uid 1000.
    pod["spec"]["containers"][0].update(workingDir="/tmp", readinessProbe={
        "exec": {"command": ["sh", "-c", "test $(id -u) = 1000"]}, "periodSeconds": 1})
    node.kubectl("apply", "-n", ns, "-f", "-", input=json.dumps(pod))
    p = wait_pod(node, ns, "who", lambda p: cstate(p).get("running") and
                 p["status"]["containerStatuses"][0]["ready"], what="who Running and Ready")
    user = p["status"]["containerStatuses"][0]["user"]
    assert user == {"linux": {"uid": 1000, "gid": 3000, "supplementalGroups": [3000, 4000, 5000]}}
    deadline = time.monotonic() + 10
    while len(lines := node.kubectl("logs", "who", "-n", ns).stdout.split("\n")) < 3 and \
            time.monotonic() < deadline:
        time.sleep(0.1)
    uid, gid, groups = lines[:3]
    assert (int(uid), int(gid)) == (user["linux"]["uid"], user["linux"]["gid"])
    assert sorted(int(g) for g in groups.split()) == user["linux"]["supplementalGroups"]
    # kubectl exec too: the container's user, groups and working directory
    # (crun 1.8 left to its flags ran it as root).
    out = node.kubectl("exec", "who", "-n", ns, "--", "sh", "-c", "id -u; id -G; pwd").stdout
    assert out.split("\n")[:3] == ["1000", "3000 4000 5000", "/tmp"]


def test_the_kubelet_api_is_reached_through_nodes_proxy(node, ns):
    """`kubectl get --raw /api/v1/nodes/N/proxy/...`: the API server passes
    the request to the node's kubelet and its answer back, as upstream."""
    name = node.kubectl("get", "nodes", "-o", "jsonpath={.items[0].metadata.name}").stdout
    node.kubectl("apply", "-n", ns, "-f", "-", input=_pod("px", "echo proxied; sleep 3600"))
    wait_pod(node, ns, "px", lambda p: cstate(p).get("running"), what="px Running")
    assert node.kubectl("get", "--raw", f"/api/v1/nodes/{name}/proxy/healthz").stdout == "ok"
    summary = json.loads(node.kubectl("get", "--raw",
                                      f"/api/v1/nodes/{name}/proxy/stats/summary").stdout)
    assert summary["node"]["nodeName"] == name
    assert {"name": "px", "namespace": ns} in [
        {k: p["podRef"][k] for k in ("name", "namespace")} for p in summary["pods"]]
    # The query goes along: the last line of the container's log.
    deadline = time.monotonic() + 10
    while (log := node.kubectl("get", "--raw", f"/api/v1/nodes/{name}/proxy/containerLogs/"
                                               f"{ns}/px/c?tailLines=1").stdout) != "proxied\n" \
            and time.monotonic() < deadline:
        time.sleep(0.1)
    assert log == "proxied\n"
    # The kubelet's own 404 comes back as it is; a node that does not exist is the API's.
    missing = node.kubectl("get", "--raw", f"/api/v1/nodes/{name}/proxy/nosuch", check=False)
    assert missing.returncode != 0 and "NotFound" in missing.stderr
    gone = node.kubectl("get", "--raw", "/api/v1/nodes/nosuchnode/proxy/healthz", check=False)
    assert 'nodes "nosuchnode" not found' in gone.stderr


def test_job_runs_to_completion(node, ns):
    node.kubectl("create", "job", "j", "-n", ns, f"--image={IMAGE}", "--", "sh", "-c", "echo done")
    node.kubectl("wait", "-n", ns, "--for=condition=complete", "job/j", "--timeout=60s", timeout=70)
    pods = node.kubectl("get", "pods", "-n", ns, "-l", "job-name=j").stdout
    assert "Completed" in pods, pods
    p = json.loads(node.kubectl("get", "pods", "-n", ns, "-l", "job-name=j", "-o", "json").stdout)["items"][0]
    term = p["status"]["containerStatuses"][0]["state"]["terminated"]
    assert term["exitCode"] == 0 and term["reason"] == "Completed"
    assert p["status"]["phase"] == "Succeeded"


def test_failing_command_is_restarted_with_back_off(node, ns):
    node.kubectl("apply", "-n", ns, "-f", "-", input=_pod("crash", "echo bye; exit 3"))
    p = wait_pod(node, ns, "crash", lambda p: p["status"].get("containerStatuses", [{}])[0]
                 .get("restartCount", 0) >= 1 and cstate(p).get("waiting", {}).get("reason")
                 == "CrashLoopBackOff", what="CrashLoopBackOff")
    last = p["status"]["containerStatuses"][0]["lastState"]["terminated"]
    assert last["exitCode"] == 3 and last["reason"] == "Error"
    assert "back-off 10s restarting failed container=c" in cstate(p)["waiting"]["message"]
    assert "CrashLoopBackOff" in node.kubectl("get", "pod", "crash", "-n", ns).stdout
    back_off = _events(node, ns, "crash", "BackOff")["BackOff"][0]
    assert back_off["involvedObject"].get("fieldPath") == "spec.containers{c}"
    assert back_off["message"].startswith("Back-off restarting failed container c in pod crash_")


def test_missing_executable_is_a_run_container_error(node, ns):
    body = json.loads(_pod("nocmd", ""))
    body["spec"]["containers"][0]["command"] = ["/no/such/binary"]
    body["spec"]["restartPolicy"] = "Never"
    node.kubectl("apply", "-n", ns, "-f", "-", input=json.dumps(body))
    p = wait_pod(node, ns, "nocmd", lambda p: phase(p) == "Failed", what="pod Failed")
    term = cstate(p)["terminated"]
    assert term["reason"] == "StartError" and term["exitCode"] == 128
    assert "no such file or directory" in term["message"] or "not found" in term["message"]


def test_missing_configmap_is_a_config_error(node, ns):
    body = json.loads(_pod("nocm", "sleep 3600"))
    body["spec"]["containers"][0]["env"] = [{"name": "X", "valueFrom": {
        "configMapKeyRef": {"name": "absent", "key": "k"}}}]
    node.kubectl("apply", "-n", ns, "-f", "-", input=json.dumps(body))
    p = wait_pod(node, ns, "nocm", lambda p: cstate(p).get("waiting", {}).get("reason")
                 == "CreateContainerConfigError", what="CreateContainerConfigError")
    assert cstate(p)["waiting"]["message"] == 'configmap "absent" not found'
    logs = node.kubectl("logs", "nocm", "-n", ns, check=False)
    assert logs.returncode == 1 and 'Error from server (BadRequest): container "c" in pod "nocm" ' \
        "is waiting to start: CreateContainerConfigError" in logs.stderr, logs.stderr
    node.kubectl("create", "configmap", "absent", "-n", ns, "--from-literal=k=v")
    wait_pod(node, ns, "nocm", lambda p: phase(p) == "Running", what="Running once the ConfigMap exists")


def test_missing_configmap_volume_holds_the_pod_in_container_creating(node, ns):
    body = json.loads(_pod("novol", "cat /cfg/k; sleep 3600"))
    body["spec"]["volumes"] = [{"name": "cfg", "configMap": {"name": "absent-vol"}}]
    body["spec"]["containers"][0]["volumeMounts"] = [{"name": "cfg", "mountPath": "/cfg"}]
    node.kubectl("apply", "-n", ns, "-f", "-", input=json.dumps(body))
    p = wait_pod(node, ns, "novol", lambda p: "FailedMount" in node.kubectl(
        "get", "events", "-n", ns, "--field-selector", "involvedObject.name=novol").stdout,
        what="a FailedMount event")
    events = node.kubectl("get", "events", "-n", ns, "--field-selector",
                          "involvedObject.name=novol").stdout
    assert 'MountVolume.SetUp failed for volume "cfg" : configmap "absent-vol" not found' in events
    # As the kubelet, which makes the sandbox only once the volumes are
    # mounted: waiting, with no address and no sandbox ready.
    assert cstate(p)["waiting"]["reason"] == "ContainerCreating"
    assert "podIP" not in p["status"]
    conds = {x["type"]: x["status"] for x in p["status"]["conditions"]}
    assert conds["PodReadyToStartContainers"] == "False"
    node.kubectl("create", "configmap", "absent-vol", "-n", ns, "--from-literal=k=v")
    p = wait_pod(node, ns, "novol", lambda p: phase(p) == "Running", timeout=30,
                 what="Running once the ConfigMap exists")
    assert p["status"]["podIP"].startswith("10.244.")
    assert node.kubectl("logs", "novol", "-n", ns).stdout.startswith("v")


def _events(node, ns: str, name: str, *wanted: str) -> dict[str, list[dict]]:  # type: ignore[no-untyped-def]
    """The pod's events by reason, once every reason in ``wanted`` is there
    (the agent sends its events a moment after the work they tell of)."""
    def get() -> dict[str, list[dict]]:
        out = node.kubectl("get", "events", "-n", ns, "-o", "json", "--field-selector",
                           f"involvedObject.name={name}").stdout
        by: dict[str, list[dict]] = {}
        for e in json.loads(out)["items"]:
            by.setdefault(e["reason"], []).append(e)
        assert set(wanted) <= set(by), sorted(by)
        return by

    return until_answers(get, f"events {wanted} of {name}")  # type: ignore[no-any-return]


def test_the_kubelet_events_name_the_container_as_upstream_does(node, ns):
    """What `kubectl describe` and `get events` show of a pod's start and
    stop: the container as the event's field path, 1.37's messages."""
    node.kubectl("apply", "-n", ns, "-f", "-", input=_pod("ev", "sleep 3600"))
    wait_pod(node, ns, "ev", lambda p: phase(p) == "Running", what="Running")
    ev = _events(node, ns, "ev", "Scheduled", "Pulled", "Created", "Started")
    assert "fieldPath" not in ev["Scheduled"][0]["involvedObject"]  # the pod itself
    said = {r: (ev[r][0]["involvedObject"].get("fieldPath"), ev[r][0]["message"])
            for r in ("Pulled", "Created", "Started")}
    assert said == {
        "Pulled": ("spec.containers{c}", f'Container image "{IMAGE}" already present on '
                   "machine and can be accessed by the pod"),
        "Created": ("spec.containers{c}", "Container created"),
        "Started": ("spec.containers{c}", "Container started")}
    wide = node.kubectl("get", "events", "-n", ns, "-o", "wide", "--field-selector",
                        "involvedObject.name=ev,reason=Started").stdout
    assert "spec.containers{c}" in wide  # the SUBOBJECT column
    node.kubectl("delete", "pod", "ev", "-n", ns, "--timeout=30s", timeout=40)
    killing = _events(node, ns, "ev", "Killing")["Killing"][0]
    assert (killing["involvedObject"].get("fieldPath"), killing["message"]) == \
        ("spec.containers{c}", "Stopping container c")


def test_unknown_image_is_err_image_pull_then_back_off(node, ns):
    body = json.loads(_pod("noimg", "true"))
    body["spec"]["containers"][0]["image"] = "127.0.0.1:1/nothing:1"
    node.kubectl("apply", "-n", ns, "-f", "-", input=json.dumps(body))
    p = wait_pod(node, ns, "noimg", lambda p: cstate(p).get("waiting", {}).get("reason")
                 in ("ErrImagePull", "ImagePullBackOff"), what="ErrImagePull")
    assert '127.0.0.1:1/nothing:1' in cstate(p)["waiting"]["message"]
    p = wait_pod(node, ns, "noimg", lambda p: cstate(p).get("waiting", {}).get("reason")
                 == "ImagePullBackOff", timeout=30, what="ImagePullBackOff")
    # The back-off says what the last pull said, as the kubelet's does.
    assert cstate(p)["waiting"]["message"].startswith(
        'Back-off pulling image "127.0.0.1:1/nothing:1": ErrImagePull: Failed to pull image')
    logs = node.kubectl("logs", "noimg", "-n", ns, check=False).stderr
    assert 'Error from server (BadRequest): container "c" in pod "noimg" is waiting to ' \
        "start: " in logs, logs
    assert logs.rstrip().endswith(("trying and failing to pull image", "image can't be pulled"))
    # No process to exec in: refused as the kubelet refuses it.
    ex = node.kubectl("exec", "noimg", "-n", ns, "--", "true", check=False)
    assert ex.returncode != 0
    assert 'unable to upgrade connection: container not found ("c")' in ex.stderr, ex.stderr
    ev = _events(node, ns, "noimg", "Pulling", "Failed", "BackOff")
    assert {e["involvedObject"].get("fieldPath") for r in ("Pulling", "Failed", "BackOff")
            for e in ev[r]} == {"spec.containers{c}"}
    failed = {e["message"] for e in ev["Failed"]}
    assert {"Error: ErrImagePull", "Error: ImagePullBackOff"} <= failed
    assert any(m.startswith('Failed to pull image "127.0.0.1:1/nothing:1": ') for m in failed)
    assert ev["BackOff"][0]["message"] == 'Back-off pulling image "127.0.0.1:1/nothing:1"'
    assert ev["BackOff"][0]["type"] == "Normal"


def test_memory_limit_ends_greedy_container_as_oom_killed(node, ns):
    body = json.loads(_pod("greedy", "sleep 1; head -c 200m /dev/zero | tail"))
    body["spec"]["restartPolicy"] = "Never"
    body["spec"]["containers"][0]["resources"] = {"limits": {"memory": "32Mi"}}
    node.kubectl("apply", "-n", ns, "-f", "-", input=json.dumps(body))
    p = wait_pod(node, ns, "greedy", lambda p: phase(p) == "Failed", what="greedy pod Failed")
    term = cstate(p)["terminated"]
    assert term["reason"] == "OOMKilled" and term["exitCode"] == 137, term


def test_deleting_a_pod_leaves_nothing_behind(node, ns):
    node.kubectl("apply", "-n", ns, "-f", "-", input=_pod("gone", "sleep 3600"))
    p = wait_pod(node, ns, "gone", lambda p: phase(p) == "Running", what="Running")
    uid, pid = p["metadata"]["uid"], _pid_of(p)
    assert pid
    t = time.monotonic()
    node.kubectl("delete", "pod", "gone", "-n", ns, "--timeout=30s", timeout=40)
    assert time.monotonic() - t < 20
    assert not os.path.exists(f"/proc/{pid}")
    with open("/proc/self/mountinfo") as f:
        assert uid not in f.read()
    netns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert uid[:12] not in netns


def test_a_pod_deleted_at_once_has_its_containers_stopped_as_the_deletion_arrives(node, ns):
    """`--grace-period=0 --force` takes the pod out of the API before the node
    stopped anything, as in Kubernetes: the agent stops its containers when
    the deletion reaches it (the kubelet's REMOVE), not when its housekeeping
    next looks for leftovers."""
    node.kubectl("apply", "-n", ns, "-f", "-", input=_pod("forced", "sleep 3600"))
    p = wait_pod(node, ns, "forced", lambda p: phase(p) == "Running", what="Running")
    uid, pid = p["metadata"]["uid"], _pid_of(p)
    assert pid
    node.kubectl("delete", "pod", "forced", "-n", ns, "--grace-period=0", "--force")
    deadline = time.monotonic() + 30
    while os.path.exists(f"/proc/{pid}") and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not os.path.exists(f"/proc/{pid}")
    deadline = time.monotonic() + 30
    while uid in open("/proc/self/mountinfo").read() and time.monotonic() < deadline:
        time.sleep(0.1)
    with open("/proc/self/mountinfo") as f:
        assert uid not in f.read()


def test_agent_restart_keeps_containers_running(node, ns):
    node.kubectl("apply", "-n", ns, "-f", "-", input=_pod("stay", "sleep 3600"))
    p = wait_pod(node, ns, "stay", lambda p: phase(p) == "Running", what="Running")
    pid = _pid_of(p)
    assert pid, p["status"]
    # What the agent counted before it was killed: a first start that failed
    # on a busy machine is a restart of its own, not one the agent's restart made.
    restarts = p["status"]["containerStatuses"][0]["restartCount"]
    agent = [int(x) for x in subprocess.run(["pgrep", "-f", "pinnace.cli.main.* agent"],
                                           capture_output=True, text=True).stdout.split()]
    assert agent, "no agent process"
    for a in agent:
        os.kill(a, 9)
    time.sleep(1)
    # The supervisor starts a new agent; it finds the container and carries on.
    node.kubectl("apply", "-n", ns, "-f", "-", input=_pod("after", "sleep 3600"))
    wait_pod(node, ns, "after", lambda p: phase(p) == "Running", timeout=60, what="a new pod Running")
    p2 = pod_json(node, ns, "stay")
    assert _pid_of(p2) == pid
    assert p2["status"]["containerStatuses"][0]["restartCount"] == restarts, (
        p["status"], p2["status"], node.kubectl("get", "events", "-n", ns).stdout)


def test_a_second_agent_on_the_nodes_network_is_refused_and_touches_nothing(node, tmp_path):
    from tests.e2e.conftest import pinnace

    data = tmp_path / "second"
    out = pinnace("agent", "--kubeconfig", str(node.kubeconfig), "--data-dir", str(data),
                  check=False, timeout=60)
    assert out.returncode == 1, out.stdout + out.stderr
    assert "another pinnace agent already runs a node in this network namespace" in out.stderr
    assert re.search(r"\(pid \d+, data dir /", out.stderr), out.stderr
    assert not (data / "agent").exists()


def test_resetting_another_data_dir_leaves_the_running_nodes_network_alone(node, ns, tmp_path):
    from tests.e2e.conftest import guard_routes, pinnace

    node.kubectl("apply", "-n", ns, "-f", "-", input=_pod("keep", "sleep 3600"))
    wait_pod(node, ns, "keep", lambda p: phase(p) == "Running", what="Running")

    # The running pod's port on the bridge (other tests' pods may still be
    # going away meanwhile: only this one's is compared).
    veth = PodNetwork.host_veth_name(pod_json(node, ns, "keep")["metadata"]["uid"])

    def network() -> tuple:
        ports = subprocess.run(["ip", "-j", "link", "show", "master", "pinnace0"],
                               capture_output=True, text=True)
        table = subprocess.run(["nft", "list", "table", "ip", "pinnace-proxy"], capture_output=True)
        return (ports.returncode, veth in {link["ifname"] for link in json.loads(ports.stdout or "[]")},
                table.returncode, guard_routes())

    before = network()
    assert before[0] == 0 and before[1] and before[2] == 0, before
    # A node stopped long ago, reset while this one runs.
    out = pinnace("agent", "--reset", "--data-dir", str(tmp_path / "old-node"), check=False)
    assert out.returncode == 0, out.stderr
    assert "another agent runs in this network namespace" in out.stderr
    assert network() == before
    assert phase(pod_json(node, ns, "keep")) == "Running"


def test_kubectl_debug_runs_an_ephemeral_container_beside_its_target(node, ns):
    node.kubectl("apply", "-n", ns, "-f", "-", input=_pod("dbg", "exec sleep 3600"))
    wait_pod(node, ns, "dbg", lambda p: cstate(p).get("running"), what="the pod Running")
    # Targeting "c": the debug container sees c's processes (their PID namespace).
    node.kubectl("debug", "dbg", "-n", ns, f"--image={IMAGE}", "-c", "debugger", "--target=c",
                 "--", "sh", "-c", "echo debugging; ps")
    p = wait_pod(node, ns, "dbg", lambda p: any(
        s["name"] == "debugger" and "terminated" in s["state"]
        for s in (p["status"].get("ephemeralContainerStatuses") or [])),
        what="the debug container ran")
    (st,) = p["status"]["ephemeralContainerStatuses"]
    assert st["state"]["terminated"]["exitCode"] == 0 and st["ready"] is False
    out = node.kubectl("logs", "dbg", "-n", ns, "-c", "debugger").stdout
    assert "debugging" in out and "sleep 3600" in out
    # It ran once; the pod and its own container carry on untouched.
    assert st["restartCount"] == 0 and cstate(p).get("running")


def _cpu_quota(pid: int) -> int:
    """The CPU quota of the cgroup the process is in, read on the host."""
    for line in open(f"/proc/{pid}/cgroup").read().splitlines():
        _, controllers, path = line.split(":", 2)
        if "cpu" in controllers.split(",") or controllers == "":
            for base in ("/sys/fs/cgroup/cpu,cpuacct", "/sys/fs/cgroup/cpu", "/sys/fs/cgroup"):
                for name in ("cpu.cfs_quota_us", "cpu.max"):
                    f = f"{base}{path}/{name}"
                    if os.path.exists(f):
                        return int(open(f).read().split()[0])
    return 0


def test_in_place_resize_changes_the_cgroup_without_a_restart(node, ns):
    node.kubectl("apply", "-n", ns, "-f", "-", input=_pod(
        "rs", "exec sleep 3600", containers=[{
            "name": "c", "image": IMAGE, "command": ["sh", "-c", "exec sleep 3600"],
            "resources": {"requests": {"cpu": "100m", "memory": "32Mi"},
                          "limits": {"cpu": "200m", "memory": "64Mi"}}}]))
    p = wait_pod(node, ns, "rs", lambda p: cstate(p).get("running"), what="the pod Running")
    pid, cid = _pid_of(p), p["status"]["containerStatuses"][0]["containerID"]
    assert _cpu_quota(pid) == 20000  # 200m of a 100 ms period
    node.kubectl("patch", "pod", "rs", "-n", ns, "--subresource=resize", "-p", json.dumps(
        {"spec": {"containers": [{"name": "c", "resources": {"limits": {"cpu": "400m"}}}]}}))
    p = wait_pod(node, ns, "rs", lambda p: (p["status"]["containerStatuses"][0].get(
        "resources") or {}).get("limits", {}).get("cpu") == "400m", what="the resize applied")
    assert _cpu_quota(pid) == 40000
    st = p["status"]["containerStatuses"][0]
    assert st["containerID"] == cid and st["restartCount"] == 0  # the same process, not restarted
    assert st["allocatedResources"] == {"cpu": "100m", "memory": "32Mi"}
