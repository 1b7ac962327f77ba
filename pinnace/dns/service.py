"""The `kube-dns` Service that pods' resolv.conf names (the tenth address of
the service range, 10.96.0.10 by default, as kubeadm and k3s choose it),
and its EndpointSlice pointing at wherever this DNS server listens. The
Service has no selector: the server is not a pod, so `pinnace dns` keeps
the slice itself, as the API server keeps the `kubernetes` one. Every node's
proxy then carries 10.96.0.10:53 to it.
"""

from __future__ import annotations

import ipaddress
import logging
from typing import Any

from pinnace.client import ApiError, Client

log = logging.getLogger("pinnace.dns.service")

NAMESPACE = "kube-system"
NAME = "kube-dns"
MANAGER = "pinnace-dns"


def cluster_dns_ip(service_cidr: str) -> str:
    """The cluster DNS address of a service range: its tenth address."""
    return str(ipaddress.ip_network(service_cidr, strict=False).network_address + 10)


def service(cluster_ip: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": NAME, "namespace": NAMESPACE,
                         "labels": {"k8s-app": "kube-dns", "kubernetes.io/name": "CoreDNS",
                                    "kubernetes.io/cluster-service": "true"}},
            "spec": {"clusterIP": cluster_ip, "ports": [
                {"name": "dns", "port": 53, "protocol": "UDP"},
                {"name": "dns-tcp", "port": 53, "protocol": "TCP"}]}}


def endpoint_slice(address: str, port: int) -> dict[str, Any]:
    return {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": NAME, "namespace": NAMESPACE,
                         "labels": {"kubernetes.io/service-name": NAME,
                                    "endpointslice.kubernetes.io/managed-by": MANAGER}},
            "addressType": "IPv6" if ":" in address else "IPv4",
            "endpoints": [{"addresses": [address], "conditions": {"ready": True}}],
            "ports": [{"name": "dns", "port": port, "protocol": "UDP"},
                      {"name": "dns-tcp", "port": port, "protocol": "TCP"}]}


async def publish(client: Client, port: int, *, cluster_ip: str, address: str) -> None:
    """Create the Service if missing (one a user made is left as it is) and
    point its slice at ``address:port``."""
    services = client.resource("v1", "services")
    try:
        await services.get(NAME, NAMESPACE)
    except ApiError as e:
        if not e.not_found:
            raise
        # Asked only when missing: creating it again would be refused for its
        # cluster IP (already allocated, 422) before its name (409).
        try:
            await services.create(service(cluster_ip), NAMESPACE)
            log.info("service %s/%s created at %s", NAMESPACE, NAME, cluster_ip)
        except ApiError as e:
            if not e.conflict:
                raise
    slices = client.resource("discovery.k8s.io/v1", "endpointslices")
    want = endpoint_slice(address, port)
    try:
        await slices.create(want, NAMESPACE)
    except ApiError as e:
        if not e.conflict:
            raise
        have = await slices.get(NAME, NAMESPACE)
        if any(have.get(k) != want[k] for k in ("addressType", "endpoints", "ports")):
            have.update({k: want[k] for k in ("addressType", "endpoints", "ports")})
            await slices.replace(have, NAMESPACE)
    log.info("cluster DNS %s:53 answered at %s:%d", cluster_ip, address, port)
