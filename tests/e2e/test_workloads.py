"""What users do with pods on a real node, each through real kubectl:
configuration in env and files, containers sharing localhost, probes,
logs -f, exec with a tty, cp, init containers, and a reboot."""

from __future__ import annotations

import json
import os
import pty
import select
import subprocess
import time

from pinnace.kubelet.oci import state_dir
from tests.conftest import KUBECTL, start_server, wait_for
from tests.e2e.conftest import cstate, phase, pod_json, until_answers, wait_pod

IMAGE = "busybox:1.36"


def _apply(node, ns, obj) -> None:  # type: ignore[no-untyped-def]
    node.kubectl("apply", "-n", ns, "-f", "-", input=json.dumps(obj))


def _pod(name: str, *containers: dict, **spec) -> dict:  # type: ignore[no-untyped-def]
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {"terminationGracePeriodSeconds": 1, "containers": list(containers), **spec}}


def _c(name: str, command: str, **extra) -> dict:  # type: ignore[no-untyped-def]
    return {"name": name, "image": IMAGE, "command": ["sh", "-c", command], **extra}


def _running(p: dict) -> bool:
    return phase(p) == "Running" and all("running" in s["state"] for s in p["status"]["containerStatuses"])



def _wait_events(node, ns: str, name: str, *texts: str) -> str:  # type: ignore[no-untyped-def]
    """The pod's events once they say all of ``texts``. Events are recorded
    after the work they tell of (the agent's recorder lets a burst's own
    writes go first): the pod may be Running, or restarted, before."""
    def events() -> str:
        out = node.kubectl("get", "events", "-n", ns, "--field-selector",
                           f"involvedObject.name={name}").stdout
        assert all(t in out for t in texts), out
        return out

    return until_answers(events, f"events saying {texts}")  # type: ignore[no-any-return]


def test_configmap_and_secret_arrive_as_env_and_files_and_updates_follow(node, ns):
    node.kubectl("create", "configmap", "cfg", "-n", ns, "--from-literal=greeting=hello")
    node.kubectl("create", "secret", "generic", "sec", "-n", ns, "--from-literal=password=s3cret")
    c = _c("c", "sleep 3600", env=[
        {"name": "GREETING", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "greeting"}}},
        {"name": "PASSWORD", "valueFrom": {"secretKeyRef": {"name": "sec", "key": "password"}}},
        {"name": "MY_POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}],
        envFrom=[{"configMapRef": {"name": "cfg"}, "prefix": "CFG_"}],
        volumeMounts=[{"name": "cfg", "mountPath": "/etc/cfg"}, {"name": "sec", "mountPath": "/etc/sec"}])
    _apply(node, ns, _pod("conf", c, volumes=[{"name": "cfg", "configMap": {"name": "cfg"}},
                                               {"name": "sec", "secret": {"secretName": "sec"}}]))
    wait_pod(node, ns, "conf", _running, what="Running")
    env = node.kubectl("exec", "conf", "-n", ns, "--", "env").stdout
    for line in ("GREETING=hello", "PASSWORD=s3cret", "MY_POD=conf", "CFG_greeting=hello"):
        assert line in env.splitlines(), env
    assert node.kubectl("exec", "conf", "-n", ns, "--", "cat", "/etc/cfg/greeting").stdout == "hello"
    assert node.kubectl("exec", "conf", "-n", ns, "--", "cat", "/etc/sec/password").stdout == "s3cret"
    node.kubectl("patch", "configmap", "cfg", "-n", ns, "-p", '{"data":{"greeting":"bonjour"}}')
    wait_for(lambda: node.kubectl("exec", "conf", "-n", ns, "--", "cat", "/etc/cfg/greeting",
                                  check=False).stdout == "bonjour", timeout=40, interval=1,
             what="the changed ConfigMap in the file")


def test_two_containers_talk_over_localhost(node, ns):
    server = _c("web", "mkdir -p /www && echo hi-from-web > /www/index.html && httpd -f -p 8080 -h /www")
    client = _c("client", "sleep 3600")
    _apply(node, ns, _pod("duo", server, client))
    wait_pod(node, ns, "duo", _running, what="both containers Running")
    out = wait_for(lambda: node.kubectl("exec", "duo", "-c", "client", "-n", ns, "--", "wget", "-qO-",
                                        "http://127.0.0.1:8080/", check=False).stdout, timeout=20,
                   what="the web container from the client")
    assert out.strip() == "hi-from-web"
    # One IPC namespace, one /dev/shm.
    node.kubectl("exec", "duo", "-c", "web", "-n", ns, "--", "sh", "-c", "echo in-shm > /dev/shm/f")
    assert node.kubectl("exec", "duo", "-c", "client", "-n", ns, "--", "cat", "/dev/shm/f").stdout == "in-shm\n"


def test_readiness_probe_flips_ready(node, ns):
    c = _c("c", "sleep 3600", readinessProbe={"exec": {"command": ["test", "-f", "/tmp/ready"]},
                                              "periodSeconds": 1, "failureThreshold": 1})
    _apply(node, ns, _pod("ready", c))
    p = wait_pod(node, ns, "ready", lambda p: phase(p) == "Running", what="Running")
    assert not p["status"]["containerStatuses"][0]["ready"]
    node.kubectl("exec", "ready", "-n", ns, "--", "touch", "/tmp/ready")
    wait_pod(node, ns, "ready", lambda p: p["status"]["containerStatuses"][0]["ready"], timeout=20,
             what="Ready after the file appears")
    node.kubectl("exec", "ready", "-n", ns, "--", "rm", "/tmp/ready")
    p = wait_pod(node, ns, "ready", lambda p: not p["status"]["containerStatuses"][0]["ready"],
                 timeout=20, what="not Ready after the file goes")
    conds = {c["type"]: c for c in p["status"]["conditions"]}
    assert conds["Ready"]["status"] == "False" and conds["Ready"]["reason"] == "ContainersNotReady"


def test_failing_liveness_probe_restarts_the_container(node, ns):
    c = _c("c", "touch /tmp/alive; sleep 3600",
           livenessProbe={"exec": {"command": ["test", "-f", "/tmp/alive"]}, "periodSeconds": 1,
                          "failureThreshold": 2})
    _apply(node, ns, _pod("live", c))
    wait_pod(node, ns, "live", _running, what="Running")
    node.kubectl("exec", "live", "-n", ns, "--", "rm", "/tmp/alive")
    p = wait_pod(node, ns, "live", lambda p: p["status"]["containerStatuses"][0]["restartCount"] >= 1,
                 timeout=40, what="a restart after liveness fails")
    _wait_events(node, ns, "live", "Unhealthy", "failed liveness probe, will be restarted")
    assert p["status"]["containerStatuses"][0]["lastState"]["terminated"]["exitCode"] in (137, 143)


def test_logs_follow_and_previous(node, ns):
    _apply(node, ns, _pod("talk", _c("c", "i=0; while true; do echo line $i; i=$((i+1)); sleep 0.2; done")))
    wait_pod(node, ns, "talk", _running, what="Running")
    env = dict(os.environ, KUBECONFIG=str(node.kubeconfig))
    proc = subprocess.Popen([KUBECTL, "logs", "-f", "talk", "-n", ns], stdout=subprocess.PIPE, env=env)
    try:
        assert proc.stdout is not None
        seen = [proc.stdout.readline().decode().strip() for _ in range(12)]
    finally:
        proc.kill()
        proc.wait()
    assert seen[:2] == ["line 0", "line 1"] and seen[-1] == "line 11"
    tail = node.kubectl("logs", "talk", "-n", ns, "--tail=1", "--timestamps").stdout
    assert tail.count("\n") == 1 and tail.split()[1] == "line" and tail[:4].isdigit()


def test_exec_with_a_tty(node, ns):
    _apply(node, ns, _pod("tty", _c("c", "sleep 3600")))
    wait_pod(node, ns, "tty", _running, what="Running")
    env = dict(os.environ, KUBECONFIG=str(node.kubeconfig))
    primary, secondary = pty.openpty()
    proc = subprocess.Popen([KUBECTL, "exec", "-it", "tty", "-n", ns, "--", "sh"], stdin=secondary,
                            stdout=secondary, stderr=secondary, env=env, start_new_session=True)
    os.close(secondary)
    out = b""
    try:
        os.write(primary, b"tty; echo marker-$((6*7)); exit 5\n")
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and proc.poll() is None:
            if select.select([primary], [], [], 0.2)[0]:
                try:
                    out += os.read(primary, 4096)
                except OSError:
                    break
        proc.wait(5)
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(primary)
    assert b"/dev/pts/" in out and b"marker-42" in out, out
    assert proc.returncode == 5


def test_cp_both_ways(node, ns, tmp_path):
    _apply(node, ns, _pod("cp", _c("c", "sleep 3600")))
    wait_pod(node, ns, "cp", _running, what="Running")
    src = tmp_path / "in.txt"
    src.write_text("to the pod\n")
    node.kubectl("cp", str(src), f"{ns}/cp:/tmp/in.txt")
    assert node.kubectl("exec", "cp", "-n", ns, "--", "cat", "/tmp/in.txt").stdout == "to the pod\n"
    node.kubectl("exec", "cp", "-n", ns, "--", "sh", "-c", "echo from the pod > /tmp/out.txt")
    node.kubectl("cp", f"{ns}/cp:/tmp/out.txt", str(tmp_path / "out.txt"))
    assert (tmp_path / "out.txt").read_text() == "from the pod\n"


def test_init_containers_run_first_in_order(node, ns):
    init = [_c("one", "echo one > /work/order", volumeMounts=[{"name": "w", "mountPath": "/work"}]),
            _c("two", "echo two >> /work/order", volumeMounts=[{"name": "w", "mountPath": "/work"}])]
    main = _c("main", "cat /work/order; sleep 3600", volumeMounts=[{"name": "w", "mountPath": "/work"}])
    _apply(node, ns, _pod("inits", main, initContainers=init, volumes=[{"name": "w", "emptyDir": {}}]))
    p = wait_pod(node, ns, "inits", _running, what="Running after its init containers")
    assert [s["state"]["terminated"]["reason"] for s in p["status"]["initContainerStatuses"]] == \
        ["Completed", "Completed"]
    assert wait_for(lambda: node.kubectl("logs", "inits", "-n", ns, check=False).stdout, timeout=10) == "one\ntwo\n"


def test_reboot_brings_pods_back(node, ns):
    """Processes, mounts and network namespaces go; the data dir stays."""
    _apply(node, ns, _pod("survivor", _c("c", "sleep 3600")))
    before = wait_pod(node, ns, "survivor", _running, what="Running")
    node.stop()
    data = node.data_dir / "agent"
    runtime = before["status"]["containerStatuses"][0]["containerID"].split("://")[0]  # crun or runc
    for b in (data / "runtime" / "containers").iterdir():
        subprocess.run([runtime, "--root", str(state_dir(data / "runtime")), "delete", "-f", b.name],
                       capture_output=True, timeout=30)
        try:
            os.kill(int((b / "conmon.pid").read_text()), 9)
        except (OSError, ValueError):
            pass
        subprocess.run(["umount", "-l", str(b / "rootfs")], capture_output=True)
    for n in os.listdir("/run/netns"):
        if n.startswith("pinnace-"):
            subprocess.run(["ip", "netns", "delete", n], capture_output=True)
    subprocess.run(["ip", "link", "delete", "pinnace0"], capture_output=True)
    # The runtime's state is on a tmpfs: a reboot empties it.
    subprocess.run(["umount", "-l", str(data / "runtime" / "run")], capture_output=True)
    pinned = "/run/pinnace/pods"  # the pods' IPC and UTS namespaces, in /run like netns
    for name in os.listdir(pinned) if os.path.isdir(pinned) else ():
        subprocess.run(["umount", "-l", f"{pinned}/{name}"], capture_output=True)
    again = start_server(node.data_dir, *node.extra_args, command="server", agent=True, timeout=60)
    node.proc, node.url = again.proc, again.url
    after = wait_pod(node, ns, "survivor", lambda p: _running(p) and
                     p["status"]["containerStatuses"][0]["containerID"] !=
                     before["status"]["containerStatuses"][0]["containerID"], timeout=90,
                     what="Running again after the reboot")
    assert after["status"]["podIP"] == before["status"]["podIP"]
    assert after["status"]["containerStatuses"][0]["restartCount"] >= 1
    assert cstate(after)["running"]
    assert pod_json(node, ns, "survivor")["metadata"]["uid"] == before["metadata"]["uid"]
    _wait_events(node, ns, "survivor", "SandboxChanged",
                 "Pod sandbox changed, it will be killed and re-created.")


def test_port_forward_reaches_a_server_in_the_pod(node, ns):
    import socket
    import urllib.request

    _apply(node, ns, _pod("pf", _c("web", "mkdir -p /www && echo forwarded > /www/index.html && "
                                          "httpd -f -p 127.0.0.1:8080 -h /www")))
    wait_pod(node, ns, "pf", _running, what="Running")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        local = s.getsockname()[1]
    env = dict(os.environ, KUBECONFIG=str(node.kubeconfig))
    proc = subprocess.Popen([KUBECTL, "port-forward", "-n", ns, "pod/pf", f"{local}:8080"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
    try:
        def get() -> str:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{local}/", timeout=5) as r:
                    return r.read().decode()
            except OSError:
                return ""
        # The server listens on the pod's loopback only: reached inside its network namespace.
        assert wait_for(get, timeout=20, interval=0.3, what="the forwarded port").strip() == "forwarded"
    finally:
        proc.kill()
        proc.wait()


def test_top_pod_and_node(node, ns):
    _apply(node, ns, _pod("busy", _c("c", "while true; do :; done")))
    wait_pod(node, ns, "busy", _running, what="Running")
    out = wait_for(lambda: node.kubectl("top", "pod", "busy", "-n", ns, check=False).stdout,
                   timeout=30, interval=1, what="kubectl top pod")
    name, cpu, mem = out.splitlines()[1].split()
    assert name == "busy" and cpu.endswith("m") and int(cpu[:-1]) > 50 and mem.endswith("Mi")
    nodes = node.kubectl("top", "node").stdout
    assert "CPU(cores)" in nodes and len(nodes.splitlines()) == 2


def test_service_account_token_is_mounted(node, ns):
    _apply(node, ns, _pod("sa", _c("c", "sleep 3600")))
    wait_pod(node, ns, "sa", _running, what="Running")
    d = "/var/run/secrets/kubernetes.io/serviceaccount"
    assert node.kubectl("exec", "sa", "-n", ns, "--", "cat", f"{d}/namespace").stdout == ns
    token = node.kubectl("exec", "sa", "-n", ns, "--", "cat", f"{d}/token").stdout
    assert token.count(".") == 2
    assert "BEGIN CERTIFICATE" in node.kubectl("exec", "sa", "-n", ns, "--", "cat", f"{d}/ca.crt").stdout
    # The token is the pod's own: the API server accepts it.
    review = node.kubectl("create", "-f", "-", "-o", "json", input=json.dumps({
        "apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": {"token": token}})).stdout
    st = json.loads(review)["status"]
    assert st["authenticated"] and st["user"]["username"] == f"system:serviceaccount:{ns}:default"


def test_sidecar_starts_before_and_runs_beside_the_main_container(node, ns):
    sidecar = _c("side", "echo side-up > /shared/flag; sleep 3600", restartPolicy="Always",
                 volumeMounts=[{"name": "s", "mountPath": "/shared"}])
    main = _c("main", "cat /shared/flag; sleep 3600", volumeMounts=[{"name": "s", "mountPath": "/shared"}])
    _apply(node, ns, _pod("side", main, initContainers=[sidecar], volumes=[{"name": "s", "emptyDir": {}}]))
    p = wait_pod(node, ns, "side", lambda p: _running(p) and p["status"]["initContainerStatuses"][0]
                 ["state"].get("running"), what="sidecar and main container running")
    assert p["status"]["initContainerStatuses"][0]["started"]
    assert "2/2" in node.kubectl("get", "pod", "side", "-n", ns).stdout
    assert wait_for(lambda: node.kubectl("logs", "side", "-c", "main", "-n", ns, check=False).stdout,
                    timeout=10) == "side-up\n"


def test_set_image_on_a_bare_pod_restarts_that_container(node, ns):
    _apply(node, ns, _pod("img", _c("c", "sleep 3600")))
    before = wait_pod(node, ns, "img", _running, what="Running")
    node.kubectl("set", "image", "pod/img", "-n", ns, "c=busybox:latest")
    after = wait_pod(node, ns, "img", lambda p: _running(p) and
                     p["status"]["containerStatuses"][0]["image"].endswith("busybox:latest"),
                     timeout=60, what="running the new image")
    assert after["status"]["containerStatuses"][0]["restartCount"] == 1
    assert after["status"]["containerStatuses"][0]["containerID"] != \
        before["status"]["containerStatuses"][0]["containerID"]


def test_host_network_pod_sees_the_host_interfaces(node, ns):
    _apply(node, ns, _pod("hostnet", _c("c", "sleep 3600"), hostNetwork=True))
    p = wait_pod(node, ns, "hostnet", _running, what="Running")
    assert p["status"]["podIP"] == p["status"]["hostIP"]
    links = node.kubectl("exec", "hostnet", "-n", ns, "--", "ip", "-o", "link").stdout
    assert "pinnace0" in links


def test_image_pulled_from_a_local_registry(node, ns, tmp_path, busybox_archive):
    from tests.e2e.registry import push_oci_archive, run_registry

    with run_registry(tmp_path / "registry") as reg:
        push_oci_archive(reg, busybox_archive, "team/tools", "7")
        ref = f"{reg.host}/team/tools:7"
        _apply(node, ns, _pod("pulled", {"name": "c", "image": ref, "command": ["sleep", "3600"]}))
        p = wait_pod(node, ns, "pulled", _running, timeout=90, what="Running from the pulled image")
    c = p["status"]["containerStatuses"][0]
    assert c["image"] == ref and c["imageID"]
    _wait_events(node, ns, "pulled", "Pulling", "Successfully pulled image")


def test_shared_process_namespace(node, ns):
    _apply(node, ns, _pod("shared", _c("a", "sleep 3601"), _c("b", "sleep 3602"),
                          shareProcessNamespace=True))
    wait_pod(node, ns, "shared", _running, what="both containers Running")
    ps = node.kubectl("exec", "shared", "-c", "b", "-n", ns, "--", "ps", "-o", "pid,args").stdout
    assert "sleep 3601" in ps and "sleep 3602" in ps and "/pause" in ps, ps
    alone = node.kubectl("exec", "shared", "-c", "b", "-n", ns, "--", "hostname").stdout.strip()
    assert alone == "shared"


def test_host_port_reaches_the_pod(node, ns):
    import socket
    import urllib.request

    from pinnace.kubelet.host import primary_ip

    with socket.socket() as s:
        s.bind(("0.0.0.0", 0))
        port = s.getsockname()[1]
    web = _c("web", "mkdir -p /www && echo via-host-port > /www/index.html && httpd -f -p 8080 -h /www",
             ports=[{"containerPort": 8080, "hostPort": port}])
    _apply(node, ns, _pod("hp", web))
    wait_pod(node, ns, "hp", _running, what="Running")
    # The host's own address: a packet to it never leaves the machine.
    host = primary_ip()

    def get() -> str:
        try:
            with urllib.request.urlopen(f"http://{host}:{port}/", timeout=3) as r:
                return r.read().decode()
        except OSError:
            return ""
    assert wait_for(get, timeout=20, interval=0.3, what="the host port").strip() == "via-host-port"
    node.kubectl("delete", "pod", "hp", "-n", ns, "--timeout=30s", timeout=40)
    rules = subprocess.run(["nft", "list", "table", "ip", "pinnace"], capture_output=True, text=True).stdout
    assert f"dport {port}" not in rules


def test_persistent_volume_claim_keeps_data_across_pods(node, ns):
    node.kubectl("apply", "-n", ns, "-f", "-", input=json.dumps({
        "apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "data"},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}))
    vol = [{"name": "d", "persistentVolumeClaim": {"claimName": "data"}}]
    mount = [{"name": "d", "mountPath": "/data"}]
    _apply(node, ns, _pod("writer", _c("c", "echo kept > /data/f; sleep 3600", volumeMounts=mount), volumes=vol))
    wait_pod(node, ns, "writer", _running, timeout=60, what="writer Running on its provisioned volume")
    pvc = json.loads(node.kubectl("get", "pvc", "data", "-n", ns, "-o", "json").stdout)
    assert pvc["status"]["phase"] == "Bound" and pvc["spec"]["storageClassName"] == "local-path"
    node.kubectl("delete", "pod", "writer", "-n", ns, "--timeout=30s", timeout=40)
    _apply(node, ns, _pod("reader", _c("c", "cat /data/f; sleep 3600", volumeMounts=mount), volumes=vol))
    wait_pod(node, ns, "reader", _running, timeout=60, what="reader Running")
    assert wait_for(lambda: node.kubectl("logs", "reader", "-n", ns, check=False).stdout, timeout=10) == "kept\n"
