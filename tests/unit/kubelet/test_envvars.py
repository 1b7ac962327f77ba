"""Container environment as the kubelet builds it: service links, envFrom,
$(VAR) expansion, downward API fields and resources, ConfigMap/Secret keys."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from pinnace.client.rest import ApiError
from pinnace.kubelet.envvars import (
    ConfigError,
    container_env,
    expand,
    field_value,
    format_map,
    go_quote,
    merge_image_env,
    resource_value,
    service_env,
)

Obj = dict[str, Any]


class FakeResource:
    def __init__(self, client: "FakeClient", resource: str):
        self.client, self.resource = client, resource

    async def get(self, name: str, namespace: str | None = None, subresource: str = "") -> Obj:
        self.client.gets.append((self.resource, namespace, name))
        obj = self.client.objects.get((self.resource, namespace or "", name))
        if obj is None:
            raise ApiError(404, {"kind": "Status", "reason": "NotFound", "code": 404,
                                 "message": f'{self.resource} "{name}" not found'})
        return obj


class FakeClient:
    def __init__(self) -> None:
        self.objects: dict[tuple[str, str, str], Obj] = {}
        self.gets: list[tuple[str, str | None, str]] = []

    def resource(self, api_version: str, resource: str, namespaced: bool | None = None
                 ) -> FakeResource:
        assert api_version == "v1"
        return FakeResource(self, resource)

    def add_config_map(self, name: str, data: dict[str, str], ns: str = "default") -> None:
        self.objects[("configmaps", ns, name)] = {
            "metadata": {"name": name, "namespace": ns}, "data": data}

    def add_secret(self, name: str, data: dict[str, str], ns: str = "default") -> None:
        self.objects[("secrets", ns, name)] = {
            "metadata": {"name": name, "namespace": ns},
            "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}}


def svc(name: str, ip: str, ports: list[Obj], ns: str = "default") -> Obj:
    return {"metadata": {"name": name, "namespace": ns},
            "spec": {"clusterIP": ip, "ports": ports}}


KUBERNETES = svc("kubernetes", "10.96.0.1", [{"name": "https", "port": 443, "protocol": "TCP"}])


def pod(containers: list[Obj], **spec: Any) -> Obj:
    return {"metadata": {"name": "web-0", "namespace": "default", "uid": "uid-1",
                         "labels": {"app": "web", "tier": "front"},
                         "annotations": {"note": 'say "hi"\n'}},
            "spec": {"nodeName": "node-a", "serviceAccountName": "builder",
                     "containers": containers, **spec},
            "status": {"podIP": "10.244.0.5", "podIPs": [{"ip": "10.244.0.5"}, {"ip": "fd00::5"}]}}


def as_dict(env: list[str]) -> dict[str, str]:
    return dict(e.split("=", 1) for e in env)


# -- service links ---------------------------------------------------------------

def test_service_env_matches_kubelet_names() -> None:
    redis = svc("redis-master", "10.0.0.11", [{"port": 6379, "protocol": "TCP"}])
    env = service_env([KUBERNETES, redis], "default", True)
    assert env == {
        "KUBERNETES_SERVICE_HOST": "10.96.0.1",
        "KUBERNETES_SERVICE_PORT": "443",
        "KUBERNETES_SERVICE_PORT_HTTPS": "443",
        "KUBERNETES_PORT": "tcp://10.96.0.1:443",
        "KUBERNETES_PORT_443_TCP": "tcp://10.96.0.1:443",
        "KUBERNETES_PORT_443_TCP_PROTO": "tcp",
        "KUBERNETES_PORT_443_TCP_PORT": "443",
        "KUBERNETES_PORT_443_TCP_ADDR": "10.96.0.1",
        "REDIS_MASTER_SERVICE_HOST": "10.0.0.11",
        "REDIS_MASTER_SERVICE_PORT": "6379",
        "REDIS_MASTER_PORT": "tcp://10.0.0.11:6379",
        "REDIS_MASTER_PORT_6379_TCP": "tcp://10.0.0.11:6379",
        "REDIS_MASTER_PORT_6379_TCP_PROTO": "tcp",
        "REDIS_MASTER_PORT_6379_TCP_PORT": "6379",
        "REDIS_MASTER_PORT_6379_TCP_ADDR": "10.0.0.11",
    }


def test_service_env_ports_protocols_and_ipv6() -> None:
    dns = svc("kube-dns", "fd00::a", [{"name": "dns", "port": 53, "protocol": "UDP"},
                                      {"name": "dns-tcp", "port": 53, "protocol": "TCP"}],
              ns="kube-system")
    env = service_env([dns], "kube-system", True)
    assert env["KUBE_DNS_SERVICE_PORT"] == "53"
    assert env["KUBE_DNS_SERVICE_PORT_DNS"] == "53"
    assert env["KUBE_DNS_SERVICE_PORT_DNS_TCP"] == "53"
    assert env["KUBE_DNS_PORT"] == "udp://[fd00::a]:53"       # the first port
    assert env["KUBE_DNS_PORT_53_UDP"] == "udp://[fd00::a]:53"
    assert env["KUBE_DNS_PORT_53_TCP_PROTO"] == "tcp"
    assert env["KUBE_DNS_PORT_53_UDP_ADDR"] == "fd00::a"


def test_service_env_selection() -> None:
    other_ns = svc("db", "10.0.0.20", [{"port": 5432}], ns="other")
    headless = svc("peers", "None", [{"port": 7000}])
    external = {"metadata": {"name": "ext", "namespace": "default"},
                "spec": {"type": "ExternalName", "externalName": "example.com"}}
    mine = svc("api", "10.0.0.30", [{"port": 80}])
    services = [KUBERNETES, other_ns, headless, external, mine]
    env = service_env(services, "default", True)
    assert "API_SERVICE_HOST" in env and "KUBERNETES_SERVICE_HOST" in env
    assert not any(k.startswith(("DB_", "PEERS_", "EXT_")) for k in env)
    # links off: only the master service
    env = service_env(services, "default", False)
    assert {k.split("_")[0] for k in env} == {"KUBERNETES"}
    # the pod's namespace sees "kubernetes" from default, not others' services
    env = service_env(services, "other", False)
    assert env["KUBERNETES_SERVICE_HOST"] == "10.96.0.1" and "DB_SERVICE_HOST" not in env
    assert service_env(services, "other", True)["DB_SERVICE_HOST"] == "10.0.0.20"


def test_service_named_kubernetes_in_pod_namespace_wins() -> None:
    local = svc("kubernetes", "10.0.9.9", [{"port": 8443}], ns="team")
    for order in ([KUBERNETES, local], [local, KUBERNETES]):
        assert service_env(order, "team", True)["KUBERNETES_SERVICE_HOST"] == "10.0.9.9"
    assert service_env([local, KUBERNETES], "team", False)["KUBERNETES_SERVICE_HOST"] == \
        "10.96.0.1"


# -- expansion -------------------------------------------------------------------------

@pytest.mark.parametrize("given,want", [
    ("$(VAR_A)", "A"),
    ("___$(VAR_B)___", "___B___"),
    ("$(VAR_A)-$(VAR_A)", "A-A"),
    ("$$(VAR_B)", "$(VAR_B)"),
    ("$$$(VAR_A)", "$A"),
    ("$$$$(VAR_A)", "$$(VAR_A)"),
    ("$(VAR_DNE)", "$(VAR_DNE)"),
    ("$(VAR_A", "$(VAR_A"),
    ("$(VAR_A)$(", "A$("),
    ("$VAR_A", "$VAR_A"),
    ("$", "$"),
    ("$$", "$"),
    ("f000-$$VAR_A", "f000-$VAR_A"),
    ("foo\\$(VAR_C)", "foo\\C"),
    ("$(VAR_EMPTY)x", "x"),
    ("plain", "plain"),
])
def test_expand_like_kubelet(given: str, want: str) -> None:
    ctx = {"VAR_A": "A", "VAR_B": "B", "VAR_C": "C", "VAR_EMPTY": ""}
    assert expand(given, lambda k: ctx.get(k, f"$({k})")) == want


# -- the whole environment --------------------------------------------------------------

async def test_env_order_sources_and_expansion() -> None:
    client = FakeClient()
    client.add_config_map("app-config", {"LOG_LEVEL": "debug", "MODE": "cm", "db": "postgres"})
    client.add_secret("creds", {"PASSWORD": "s3cr3t", "USER": "admin"})
    c = {"name": "app", "envFrom": [{"configMapRef": {"name": "app-config"}},
                                    {"secretRef": {"name": "creds"}, "prefix": "DB_"},
                                    {"configMapRef": {"name": "absent", "optional": True}}],
         "env": [{"name": "MODE", "value": "env"},
                 {"name": "URL", "value": "http://$(KUBERNETES_SERVICE_HOST):$(PORT)/$(MODE)"},
                 {"name": "PORT", "value": "8080"},
                 {"name": "LATER", "value": "$(PORT)-$(DB_USER)-$$(PORT)"},
                 {"name": "EMPTY", "value": ""},
                 {"name": "DB", "valueFrom": {"configMapKeyRef": {"name": "app-config",
                                                                 "key": "db"}}},
                 {"name": "PW", "valueFrom": {"secretKeyRef": {"name": "creds",
                                                               "key": "PASSWORD"}}}]}
    senv = service_env([KUBERNETES], "default", True)
    env = await container_env(client, pod([c]), c, node_ip="192.168.1.10", pod_ip="10.244.0.5",
                              service_env=senv)
    names = [e.split("=", 1)[0] for e in env]
    # service variables first, then envFrom, then env in order
    assert names[:len(senv)] == list(senv)
    assert names[len(senv):] == ["LOG_LEVEL", "db", "DB_PASSWORD", "DB_USER", "MODE", "URL",
                                 "PORT", "LATER", "EMPTY", "DB", "PW"]
    d = as_dict(env)
    assert d["MODE"] == "env"                         # env overrides envFrom
    assert d["URL"] == "http://10.96.0.1:$(PORT)/env"  # MODE as redefined above; PORT not yet
    assert d["LATER"] == "8080-admin-$(PORT)"
    assert d["EMPTY"] == "" and d["DB"] == "postgres" and d["PW"] == "s3cr3t"
    # each ConfigMap and Secret is read once
    assert sorted(client.gets) == [("configmaps", "default", "absent"),
                                   ("configmaps", "default", "app-config"),
                                   ("secrets", "default", "creds")]


async def test_env_var_overrides_service_variable() -> None:
    c = {"name": "app", "env": [{"name": "KUBERNETES_SERVICE_HOST", "value": "override"}]}
    senv = service_env([KUBERNETES], "default", True)
    env = await container_env(FakeClient(), pod([c]), c, node_ip="", pod_ip="", service_env=senv)
    assert [e for e in env if e.startswith("KUBERNETES_SERVICE_HOST=")] == \
        ["KUBERNETES_SERVICE_HOST=override"]
    assert len(env) == len(senv)


async def test_env_field_refs() -> None:
    refs = {"NAME": "metadata.name", "NS": "metadata.namespace", "UID": "metadata.uid",
            "APP": "metadata.labels['app']", "NOTE": "metadata.annotations['note']",
            "MISSING": "metadata.labels['nope']", "LABELS": "metadata.labels",
            "NODE": "spec.nodeName", "SA": "spec.serviceAccountName",
            "HOST_IP": "status.hostIP", "HOST_IPS": "status.hostIPs",
            "POD_IP": "status.podIP", "POD_IPS": "status.podIPs"}
    c = {"name": "app", "env": [{"name": k, "valueFrom": {"fieldRef": {"fieldPath": v}}}
                                for k, v in refs.items()]}
    d = as_dict(await container_env(FakeClient(), pod([c]), c, node_ip="192.168.1.10",
                                    pod_ip="10.244.0.5", service_env={}))
    assert d == {"NAME": "web-0", "NS": "default", "UID": "uid-1", "APP": "web",
                 "NOTE": 'say "hi"\n', "MISSING": "", "LABELS": 'app="web"\ntier="front"',
                 "NODE": "node-a", "SA": "builder", "HOST_IP": "192.168.1.10",
                 "HOST_IPS": "192.168.1.10", "POD_IP": "10.244.0.5",
                 "POD_IPS": "10.244.0.5,fd00::5"}
    assert field_value(pod([c]), "metadata.labels['app']") == "web"
    with pytest.raises(ConfigError, match="unsupported fieldPath: spec.restartPolicy"):
        field_value(pod([c]), "spec.restartPolicy")


async def test_env_resource_field_refs() -> None:
    c = {"name": "app", "resources": {"limits": {"cpu": "250m", "memory": "64Mi"},
                                      "requests": {"cpu": "100m", "memory": "32Mi"}},
         "env": [{"name": n, "valueFrom": {"resourceFieldRef": r}} for n, r in [
             ("CPU_LIMIT", {"resource": "limits.cpu"}),
             ("CPU_LIMIT_M", {"resource": "limits.cpu", "divisor": "1m"}),
             ("CPU_REQ_M", {"resource": "requests.cpu", "divisor": "1m"}),
             ("MEM_LIMIT", {"resource": "limits.memory"}),
             ("MEM_LIMIT_MI", {"resource": "limits.memory", "divisor": "1Mi"}),
             ("MEM_REQ_K", {"resource": "requests.memory", "divisor": "1k"}),
             ("EPH_LIMIT_GI", {"resource": "limits.ephemeral-storage", "divisor": "1Gi"}),
             ("EPH_REQ", {"resource": "requests.ephemeral-storage"}),
             ("OTHER_CPU", {"resource": "limits.cpu", "containerName": "side",
                            "divisor": "1m"})]]}
    side = {"name": "side"}
    p = pod([c, side])
    alloc = {"cpu": "4", "memory": "8Gi", "ephemeral-storage": "100Gi"}
    d = as_dict(await container_env(FakeClient(), p, c, node_ip="", pod_ip="", service_env={},
                                    node_allocatable=alloc))
    assert d == {"CPU_LIMIT": "1",            # 0.25 cores rounds up
                 "CPU_LIMIT_M": "250", "CPU_REQ_M": "100",
                 "MEM_LIMIT": str(64 * 2**20), "MEM_LIMIT_MI": "64",
                 "MEM_REQ_K": str(-(-32 * 2**20 // 1000)),
                 "EPH_LIMIT_GI": "100",       # no limit: node allocatable
                 "EPH_REQ": "0",
                 "OTHER_CPU": "4000"}         # the other container has no limit
    with pytest.raises(ConfigError, match="unsupported container resource : limits.pods"):
        resource_value(p, c, {"resource": "limits.pods"}, alloc)
    # a pod-level limit comes before node allocatable
    p["spec"]["resources"] = {"limits": {"cpu": "2"}}
    assert resource_value(p, side, {"resource": "limits.cpu"}, alloc) == "2"


async def test_env_missing_sources_fail_with_kubelet_words() -> None:
    client = FakeClient()
    client.add_config_map("app-config", {"a": "1"})
    client.add_secret("creds", {"u": "x"})
    cases = [
        ({"envFrom": [{"configMapRef": {"name": "nope"}}]}, 'configmap "nope" not found'),
        ({"envFrom": [{"secretRef": {"name": "x"}}]}, 'secret "x" not found'),
        ({"env": [{"name": "D", "valueFrom": {"configMapKeyRef": {"name": "app-config",
                                                                  "key": "db"}}}]},
         "couldn't find key db in ConfigMap default/app-config"),
        ({"env": [{"name": "D", "valueFrom": {"configMapKeyRef": {"name": "gone",
                                                                  "key": "db"}}}]},
         'configmap "gone" not found'),
        ({"env": [{"name": "D", "valueFrom": {"secretKeyRef": {"name": "creds",
                                                               "key": "p"}}}]},
         "couldn't find key p in Secret default/creds"),
        ({"env": [{"name": "D", "valueFrom": {"secretKeyRef": {"name": "x", "key": "p"}}}]},
         'secret "x" not found'),
    ]
    for extra, message in cases:
        c = {"name": "app", **extra}
        with pytest.raises(ConfigError) as err:
            await container_env(client, pod([c]), c, node_ip="", pod_ip="", service_env={})
        assert str(err.value) == message


async def test_env_optional_sources_are_skipped() -> None:
    client = FakeClient()
    client.add_config_map("app-config", {"a": "1"})
    c = {"name": "app", "env": [
        {"name": "A", "valueFrom": {"configMapKeyRef": {"name": "app-config", "key": "a"}}},
        {"name": "B", "valueFrom": {"configMapKeyRef": {"name": "app-config", "key": "b",
                                                        "optional": True}}},
        {"name": "C", "valueFrom": {"configMapKeyRef": {"name": "gone", "key": "c",
                                                        "optional": True}}},
        {"name": "D", "valueFrom": {"secretKeyRef": {"name": "gone", "key": "d",
                                                     "optional": True}}}],
        "envFrom": [{"secretRef": {"name": "gone", "optional": True}}]}
    env = await container_env(client, pod([c]), c, node_ip="", pod_ip="", service_env={})
    assert env == ["A=1"]


async def test_env_other_api_errors_are_config_errors() -> None:
    class Forbidden(FakeClient):
        def resource(self, api_version: str, resource: str, namespaced: bool | None = None
                     ) -> Any:
            class R:
                async def get(self, name: str, namespace: str | None = None) -> Obj:
                    raise ApiError(403, {"reason": "Forbidden",
                                         "message": 'configmaps "c" is forbidden: no'})
            return R()
    c = {"name": "app", "envFrom": [{"configMapRef": {"name": "c", "optional": True}}]}
    with pytest.raises(ConfigError, match='configmaps "c" is forbidden: no'):
        await container_env(Forbidden(), pod([c]), c, node_ip="", pod_ip="", service_env={})


async def test_env_from_prefix_and_relaxed_names() -> None:
    client = FakeClient()
    client.add_config_map("cfg", {"app.name": "x", "1st": "y", "ok": "z"})
    c = {"name": "app", "envFrom": [{"configMapRef": {"name": "cfg"}, "prefix": "P:"}]}
    env = await container_env(client, pod([c]), c, node_ip="", pod_ip="", service_env={})
    # every key is passed on (RelaxedEnvironmentVariableValidation is GA)
    assert as_dict(env) == {"P:app.name": "x", "P:1st": "y", "P:ok": "z"}


async def test_image_env_merge() -> None:
    assert merge_image_env(["PATH=/img/bin", "LANG=C", "MODE=image"], ["MODE=pod", "X=1"]) == \
        ["PATH=/img/bin", "LANG=C", "MODE=pod", "X=1"]
    merged = merge_image_env(None, ["X=1"])
    assert merged[0] == "X=1" and any(e.startswith("PATH=") for e in merged)
    c = {"name": "app", "env": [{"name": "LANG", "value": "en_US.UTF-8"}]}
    env = await container_env(FakeClient(), pod([c]), c, node_ip="", pod_ip="", service_env={},
                              image_env=["PATH=/bin", "LANG=C"])
    assert env == ["PATH=/bin", "LANG=en_US.UTF-8"]


def test_format_map_and_go_quote() -> None:
    assert format_map({"b": "2", "a": 'x"y'}) == 'a="x\\"y"\nb="2"'
    assert format_map({}) == ""
    assert go_quote("tab\there\nnl\\ é \x01 \x7f \u00a0 \u2028 😀") == \
        '"tab\\there\\nnl\\\\ é \\x01 \\x7f \\u00a0 \\u2028 😀"'
