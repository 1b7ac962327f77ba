"""Cluster DNS as pods see it: resolv.conf pointing at kube-dns, which the
proxy carries to the server's DNS. Names resolve through the search path
with the C library (busybox's wget) and record by record with nslookup.

Only names inside the cluster domain are asked: anything else would be
forwarded to this machine's own resolvers, off the machine.
"""

from __future__ import annotations

import json

from tests.conftest import wait_for
from tests.e2e.conftest import phase, wait_pod

IMAGE = "busybox:1.36"


def _apply(node, ns, obj) -> None:  # type: ignore[no-untyped-def]
    node.kubectl("apply", "-n", ns, "-f", "-", input=json.dumps(obj))


def _pod(node, ns, name: str, **spec) -> dict:  # type: ignore[no-untyped-def]
    meta = {"name": name, "labels": spec.pop("labels", {})}
    _apply(node, ns, {"apiVersion": "v1", "kind": "Pod", "metadata": meta,
                      "spec": {"terminationGracePeriodSeconds": 0, "containers": [
                          {"name": "c", "image": IMAGE, "command": ["sleep", "3600"]}], **spec}})
    return wait_pod(node, ns, name, lambda p: phase(p) == "Running", what=f"{name} Running")


def _exec(node, ns, *cmd: str):  # type: ignore[no-untyped-def]
    return node.kubectl("exec", "client", "-n", ns, "--", *cmd, check=False)


def _resolves(node, ns, name: str, want: str, *args: str) -> str:  # type: ignore[no-untyped-def]
    def ask():  # type: ignore[no-untyped-def]
        out = _exec(node, ns, "nslookup", *args, name)
        return out.stdout if want in out.stdout else None
    return wait_for(ask, timeout=20, interval=0.5, what=f"{name} -> {want}")


def test_pods_resolve_services_headless_members_srv_and_ptr(node, ns):
    _pod(node, ns, "client")
    resolv = _exec(node, ns, "cat", "/etc/resolv.conf").stdout
    assert "nameserver 10.96.0.10" in resolv
    assert f"search {ns}.svc.cluster.local svc.cluster.local cluster.local" in resolv
    assert "options ndots:5" in resolv

    _apply(node, ns, {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
                      "spec": {"selector": {"app": "web"}, "ports": [{"name": "http", "port": 80}]}})
    ip = json.loads(node.kubectl("get", "svc", "web", "-n", ns, "-o", "json").stdout)["spec"]["clusterIP"]
    _resolves(node, ns, f"web.{ns}.svc.cluster.local", ip)
    _resolves(node, ns, "kubernetes.default.svc.cluster.local", "10.96.0.1")
    # The search path, as the C library walks it: a short name, and namespace.name.
    for short in ("web", f"web.{ns}"):
        out = wait_for(lambda s=short: (lambda r: r if f"({ip}:80)" in r.stderr + r.stdout else None)(
            _exec(node, ns, "timeout", "5", "wget", "-O", "/dev/null", f"http://{s}/")),
            timeout=20, interval=0.5, what=f"{short} through the search path")
        assert f"Connecting to {short} ({ip}:80)" in out.stderr + out.stdout

    _apply(node, ns, {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "members"},
                      "spec": {"clusterIP": "None", "selector": {"app": "member"},
                               "ports": [{"name": "peer", "port": 7000}]}})
    member = _pod(node, ns, "member", hostname="m0", subdomain="members", labels={"app": "member"})
    member_ip = member["status"]["podIP"]
    _resolves(node, ns, f"members.{ns}.svc.cluster.local", member_ip)
    _resolves(node, ns, f"m0.members.{ns}.svc.cluster.local", member_ip)
    srv = _resolves(node, ns, f"_peer._tcp.members.{ns}.svc.cluster.local", "7000", "-type=srv")
    assert f"m0.members.{ns}.svc.cluster.local" in srv
    _resolves(node, ns, ip, f"web.{ns}.svc.cluster.local")           # PTR
    dashed = member_ip.replace(".", "-")
    _resolves(node, ns, f"{dashed}.{ns}.pod.cluster.local", member_ip)

    missing = _exec(node, ns, "nslookup", f"nothing.{ns}.svc.cluster.local")
    assert "NXDOMAIN" in missing.stdout + missing.stderr
