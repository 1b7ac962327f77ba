"""pinnace.dns: the cluster DNS server (CoreDNS's `kubernetes` + `forward`).

records.py turns cached Services and EndpointSlices into answers; server.py
serves them over UDP and TCP, forwards other names to the host's resolvers,
and `run_dns` runs it all from a kubeconfig.
"""

from .records import DEFAULT_TTL, Answer, ClusterRecords
from .server import ClusterDNS, read_resolv_conf, run_dns

__all__ = ["DEFAULT_TTL", "Answer", "ClusterDNS", "ClusterRecords", "read_resolv_conf", "run_dns"]
