"""Per-kind validation, worded as the kube-apiserver words it.

``validate`` checks an object on create (``old is None``) or update; the
object must already carry its defaults (see pinnace.api.defaults), as
upstream validates after defaulting. ``validate_status`` checks a write to
the status subresource. Both return FieldErrors with upstream field paths
and messages. Namespace presence for namespaced/cluster-scoped kinds is the
caller's business; only the namespace's format is checked here.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

from pinnace.api.field import FieldError

from . import (
    admissionregistration,
    apps,
    batch,
    certificates,
    core,
    flowcontrol,
    names,
    others,
    pods,
)
from . import meta as m
from ._common import Obj

__all__ = ["FieldError", "validate", "validate_status"]

Validator = Callable[[Obj, "Obj | None"], list[FieldError]]


def _pod(obj: Obj, old: Obj | None) -> list[FieldError]:
    if old is None:
        return pods.validate_pod(obj)
    return pods.validate_pod_update(obj, old)


_VALIDATORS: dict[tuple[str, str], Validator] = {
    ("", "Pod"): _pod,
    ("", "Service"): core.validate_service,
    ("", "ReplicationController"): core.validate_replication_controller,
    ("", "Namespace"): core.validate_namespace,
    ("", "Node"): core.validate_node,
    ("", "ConfigMap"): core.validate_config_map,
    ("", "Secret"): core.validate_secret,
    ("", "ServiceAccount"): core.validate_service_account,
    ("", "Endpoints"): core.validate_endpoints,
    ("", "LimitRange"): core.validate_limit_range,
    ("", "ResourceQuota"): core.validate_resource_quota,
    ("", "PersistentVolume"): core.validate_persistent_volume,
    ("", "PersistentVolumeClaim"): core.validate_persistent_volume_claim,
    ("", "Event"): core.validate_event,
    ("", "PodTemplate"): core.validate_pod_template,
    ("apps", "Deployment"): apps.validate_deployment,
    ("apps", "ReplicaSet"): apps.validate_replica_set,
    ("apps", "StatefulSet"): apps.validate_stateful_set,
    ("apps", "DaemonSet"): apps.validate_daemon_set,
    ("apps", "ControllerRevision"): apps.validate_controller_revision,
    ("batch", "Job"): batch.validate_job,
    ("batch", "CronJob"): batch.validate_cron_job,
    ("coordination.k8s.io", "Lease"): others.validate_lease,
    ("discovery.k8s.io", "EndpointSlice"): others.validate_endpoint_slice,
    ("policy", "PodDisruptionBudget"): others.validate_pdb,
    ("autoscaling", "HorizontalPodAutoscaler"): others.validate_hpa,
    ("networking.k8s.io", "Ingress"): others.validate_ingress,
    ("networking.k8s.io", "IngressClass"): others.validate_ingress_class,
    ("networking.k8s.io", "NetworkPolicy"): others.validate_network_policy,
    ("rbac.authorization.k8s.io", "Role"): others.validate_role,
    ("rbac.authorization.k8s.io", "ClusterRole"): partial(others.validate_role, namespaced=False),
    ("rbac.authorization.k8s.io", "RoleBinding"): others.validate_role_binding,
    ("rbac.authorization.k8s.io", "ClusterRoleBinding"):
        partial(others.validate_role_binding, namespaced=False),
    ("storage.k8s.io", "StorageClass"): others.validate_storage_class,
    ("storage.k8s.io", "CSIDriver"): others.validate_csi_driver,
    ("storage.k8s.io", "VolumeAttachment"): others.validate_volume_attachment,
    ("scheduling.k8s.io", "PriorityClass"): others.validate_priority_class,
    ("node.k8s.io", "RuntimeClass"): others.validate_runtime_class,
    ("apiregistration.k8s.io", "APIService"): others.validate_api_service,
    ("events.k8s.io", "Event"): others.validate_events_v1,
    ("certificates.k8s.io", "CertificateSigningRequest"): certificates.validate_csr,
    ("admissionregistration.k8s.io", "MutatingWebhookConfiguration"):
        partial(admissionregistration.validate_webhook_configuration, mutating=True),
    ("admissionregistration.k8s.io", "ValidatingWebhookConfiguration"):
        admissionregistration.validate_webhook_configuration,
    ("flowcontrol.apiserver.k8s.io", "FlowSchema"): flowcontrol.validate_flow_schema,
    ("flowcontrol.apiserver.k8s.io", "PriorityLevelConfiguration"):
        flowcontrol.validate_priority_level,
    ("admissionregistration.k8s.io", "ValidatingAdmissionPolicy"):
        admissionregistration.validate_validating_admission_policy,
    ("admissionregistration.k8s.io", "ValidatingAdmissionPolicyBinding"):
        admissionregistration.validate_validating_admission_policy_binding,
}

# Built-in groups whose names follow DNS-1123 subdomain rules; any other
# group (custom resources) uses path-segment rules, as upstream does.
_BUILTIN_GROUPS = {"", "apps", "batch", "autoscaling", "policy", "coordination.k8s.io",
                   "discovery.k8s.io", "networking.k8s.io", "storage.k8s.io",
                   "scheduling.k8s.io", "events.k8s.io", "apiextensions.k8s.io",
                   "admissionregistration.k8s.io", "certificates.k8s.io", "node.k8s.io",
                   "resource.k8s.io", "flowcontrol.apiserver.k8s.io", "apiregistration.k8s.io"}


def validate(group: str, kind: str, obj: Obj, old: Obj | None = None) -> list[FieldError]:
    """All errors in ``obj`` (a create when ``old`` is None, else an update)."""
    fn = _VALIDATORS.get((group, kind))
    if fn is not None:
        return list(fn(obj, old))
    if old is not None:
        return m.validate_object_meta_update(obj.get("metadata"), old.get("metadata"))
    check = names.name_is_dns_subdomain if group in _BUILTIN_GROUPS else names.path_segment_name
    return m.validate_object_meta(obj.get("metadata"), check)


_STATUS: dict[tuple[str, str], Callable[[Obj, Obj], list[FieldError]]] = {
    ("", "Pod"): pods.validate_pod_status_update,
    ("", "Service"): core.validate_service_status,
    ("", "Namespace"): core.validate_namespace_status,
    ("", "Node"): core.validate_node_status,
    ("", "ResourceQuota"): core.validate_resource_quota_status,
    ("", "PersistentVolume"): core.validate_pv_status,
    ("", "PersistentVolumeClaim"): core.validate_pvc_status,
    ("certificates.k8s.io", "CertificateSigningRequest"): certificates.validate_csr_status,
    ("", "ReplicationController"): lambda o, p: (
        m.validate_object_meta_update(o.get("metadata"), p.get("metadata"))
        + core.validate_replica_status(o.get("status"))),
}


def validate_pod_subresource(subresource: str, obj: Obj, old: Obj) -> list[FieldError]:
    """A write to pods/ephemeralcontainers or pods/resize."""
    if subresource == "ephemeralcontainers":
        return pods.validate_ephemeral_containers_update(obj, old)
    return pods.validate_pod_resize(obj, old)


def validate_status(group: str, kind: str, obj: Obj, old: Obj) -> list[FieldError]:
    """Errors in a write to the status subresource of ``obj``."""
    fn = _STATUS.get((group, kind))
    if fn is not None:
        return fn(obj, old)
    if group == "apps":
        return apps.validate_status(kind, obj, old)
    if group == "batch":
        return batch.validate_status(kind, obj, old)
    return m.validate_object_meta_update(obj.get("metadata"), old.get("metadata"))
