"""The API server's settings (kept apart from the server so that a process
that only starts API servers need not import one)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Config:
    data_dir: Path
    host: str = "0.0.0.0"
    port: int = 6443
    datastore: str = "sqlite"
    service_cidr: str = "10.96.0.0/12"
    node_port_range: tuple[int, int] = (30000, 32767)
    advertise_address: str = ""
    extra_sans: list[str] = field(default_factory=list)
    # What DefaultTolerationSeconds admission gives pods (upstream's flags of the same names).
    default_not_ready_toleration_seconds: int = 300
    default_unreachable_toleration_seconds: int = 300
    # Worker processes serving one port and one datastore (pinnace.cli.apiworkers);
    # worker 0 owns the datastore and runs the bootstrap work.
    workers: int = 1
    worker_index: int = 0
    # The components' Unix socket, listening, handed down by the workers'
    # parent so that every worker takes connections from it (-1: none).
    socket_fd: int = -1
    # The largest object stored, in bytes (etcd's default request limit).
    max_object_bytes: int = 1572864
    # Requests without credentials are system:anonymous, judged by RBAC; off:
    # 401 except on health, /version and kube-public/cluster-info.
    anonymous_auth: bool = False
    # An EncryptionConfiguration file (kube-apiserver's flag of the same name);
    # "" means the data dir's own, written on first start (storage/encryptionconfig.py).
    encryption_provider_config: str = ""
    # What each resource's watch cache window may hold, in bytes of stored values.
    watch_cache_bytes: int = 64 * 1024 * 1024
    # Auditing (kube-apiserver's flags of the same names): no policy file or
    # no log path, no audit events. Only worker 0 rotates the shared file.
    audit_policy_file: str = ""
    audit_log_path: str = ""
    audit_log_maxsize: int = 100
    audit_log_maxbackup: int = 100
    audit_log_maxage: int = 366
    # An AdmissionConfiguration (kube-apiserver's --admission-control-config-file):
    # PodSecurity's defaults and exemptions.
    admission_control_config_file: str = ""

    @property
    def owner(self) -> bool:
        return self.worker_index == 0

    @property
    def serving_sans(self) -> list[str]:
        """Extra names of the serving certificate: the configured ones and the
        kubernetes service's IP, which in-cluster clients connect to (as
        kube-apiserver adds the first address of its service range)."""
        import ipaddress

        first = str(ipaddress.ip_network(self.service_cidr, strict=False).network_address + 1)
        return [*self.extra_sans, *([first] if first not in self.extra_sans else [])]
