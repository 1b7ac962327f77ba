"""How a pod's container becomes an OCI config: the rules Kubernetes users rely on."""

from pathlib import Path

import pytest

from pinnace.kubelet import ocispec


def test_command_replaces_entrypoint_and_args_replace_cmd():
    image = {"Entrypoint": ["/entry"], "Cmd": ["serve"]}
    assert ocispec.process_args({}, image) == ["/entry", "serve"]
    assert ocispec.process_args({"args": ["x"]}, image) == ["/entry", "x"]
    assert ocispec.process_args({"command": ["sh"]}, image) == ["sh"]  # CMD is dropped
    assert ocispec.process_args({"command": ["sh"], "args": ["-c", "x"]}, image) == ["sh", "-c", "x"]


def test_env_overrides_image_and_keeps_a_path():
    env = ocispec.merge_env(["A=1", "B=2"], ["B=3", "C=4"])
    assert env[:3] == ["A=1", "B=3", "C=4"]
    assert any(e.startswith("PATH=") for e in env)


def _rootfs(tmp_path: Path) -> Path:
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc/passwd").write_text("root:x:0:0::/root:/bin/sh\napp:x:1000:1001::/:/bin/sh\n")
    (tmp_path / "etc/group").write_text("root:x:0:\napp:x:1001:\nextra:x:2000:app\n")
    return tmp_path


def test_user_from_image_and_security_context(tmp_path):
    rootfs = _rootfs(tmp_path)
    pod = {"metadata": {"name": "p", "namespace": "d", "uid": "u"}, "spec": {}}
    assert ocispec.resolve_user(pod, {}, {"User": "app"}, rootfs) == (1000, 1001, [1001, 2000])
    c = {"name": "c", "securityContext": {"runAsUser": 42, "runAsGroup": 43}}
    assert ocispec.resolve_user(pod, c, {"User": "app"}, rootfs)[:2] == (42, 43)
    with pytest.raises(ocispec.SpecError, match="unable to find user nobody2"):
        ocispec.resolve_user(pod, {}, {"User": "nobody2"}, rootfs)


def test_strict_supplemental_groups_leave_out_the_images_groups(tmp_path):
    rootfs = _rootfs(tmp_path)
    sc = {"supplementalGroups": [4000], "fsGroup": 5000}
    pod = {"metadata": {"name": "p", "namespace": "d", "uid": "u"}, "spec": {"securityContext": sc}}
    # Merge (the default): the image's /etc/group lists app in "extra" (2000).
    assert ocispec.resolve_user(pod, {}, {"User": "app"}, rootfs) == (1000, 1001,
                                                                      [1001, 2000, 4000, 5000])
    sc["supplementalGroupsPolicy"] = "Strict"
    assert ocispec.resolve_user(pod, {}, {"User": "app"}, rootfs) == (1000, 1001, [1001, 4000, 5000])


def test_run_as_non_root_refuses_root(tmp_path):
    rootfs = _rootfs(tmp_path)
    pod = {"metadata": {"name": "p", "namespace": "d", "uid": "u"},
           "spec": {"securityContext": {"runAsNonRoot": True}}}
    with pytest.raises(ocispec.SpecError, match="runAsNonRoot and image will run as root"):
        ocispec.resolve_user(pod, {"name": "c"}, {}, rootfs)
    assert ocispec.resolve_user(pod, {"name": "c"}, {"User": "1000"}, rootfs)[0] == 1000


def test_cpu_and_memory_become_cgroup_limits():
    c = {"resources": {"requests": {"cpu": "250m"}, "limits": {"cpu": "500m", "memory": "64Mi"}}}
    res = ocispec.resources(c, "Burstable")
    assert res["cpu"] == {"shares": 256, "quota": 50_000, "period": 100_000}
    assert res["memory"] == {"limit": 64 * 1024 * 1024}
    assert ocispec.resources({}, "BestEffort")["cpu"] == {"shares": 2}


def test_capabilities_default_add_drop_and_privileged():
    assert "CAP_NET_ADMIN" not in ocispec.capabilities({})["effective"]
    caps = ocispec.capabilities({"securityContext": {"capabilities": {"add": ["NET_ADMIN"], "drop": ["KILL"]}}})
    assert "CAP_NET_ADMIN" in caps["effective"] and "CAP_KILL" not in caps["effective"]
    assert ocispec.capabilities({"securityContext": {"capabilities": {"drop": ["ALL"]}}})["bounding"] == []
    assert "CAP_SYS_ADMIN" in ocispec.capabilities({"securityContext": {"privileged": True}})["bounding"]


def test_qos_classes():
    def pod(*res):
        return {"spec": {"containers": [{"name": str(i), "resources": r} for i, r in enumerate(res)]}}
    assert ocispec.qos_class(pod({})) == "BestEffort"
    g = {"requests": {"cpu": "1", "memory": "1Gi"}, "limits": {"cpu": "1", "memory": "1Gi"}}
    assert ocispec.qos_class(pod(g)) == "Guaranteed"
    assert ocispec.qos_class(pod(g, {"requests": {"cpu": "1"}})) == "Burstable"


def test_volume_mounts_override_base_mounts():
    cfg = ocispec.config(args=["sh"], env=[], cwd="", uid=0, gid=0, groups=[], rootfs="/r",
                         readonly_root=True, hostname="h", namespaces=[], cgroups_path="/x",
                         linux_resources={}, caps=ocispec.capabilities({}), privileged=False,
                         no_new_privileges=True, mounts=[ocispec.bind("/host/shm", "/dev/shm")])
    shm = [m for m in cfg["mounts"] if m["destination"] == "/dev/shm"]
    assert shm == [ocispec.bind("/host/shm", "/dev/shm")]
    assert cfg["root"] == {"path": "/r", "readonly": True} and cfg["process"]["cwd"] == "/"
    assert "/proc/kcore" in cfg["linux"]["maskedPaths"]
