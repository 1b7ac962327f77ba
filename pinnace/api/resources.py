"""The registry of resource types: what each resource is called, how it is
scoped and which verbs and subresources it serves.

Built-in kinds are data (the table below); CustomResourceDefinitions add
entries at run time through the same ``ResourceInfo``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

STANDARD_VERBS = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")


@dataclass(frozen=True)
class ResourceInfo:
    group: str  # "" for the core group
    version: str
    resource: str  # plural, lower case: "pods"
    kind: str
    namespaced: bool
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    verbs: tuple[str, ...] = STANDARD_VERBS
    subresources: tuple[str, ...] = ()  # "status", "scale", "binding", "eviction", ...
    # Subresources that are connections to a node or a pod (pods/log, exec,
    # attach, portforward; nodes, pods and services proxy): nothing stored,
    # listed in discovery as upstream lists them.
    connect: tuple[str, ...] = ()
    singular: str = ""
    # Resources served in several versions (or groups) share one storage
    # location; objects are stored in the storage version.
    storage_version: str = ""
    storage_resource: str = ""  # "<group>/<resource>" when stored elsewhere
    crd: dict[str, Any] | None = field(default=None, compare=False, hash=False, repr=False)
    # Create-only resources answered by the server and never stored
    # (TokenReview, SubjectAccessReview, ...).
    virtual: bool = False

    @property
    def group_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def storage_group(self) -> str:
        """The group whose schema stored objects follow ("" for core)."""
        if "/" in self.storage_version:
            group = self.storage_version.rsplit("/", 1)[0]
            return "" if group == "core" else group
        return self.group

    @property
    def singular_name(self) -> str:
        return self.singular or self.kind.lower()

    @property
    def key_prefix(self) -> str:
        """Storage key prefix, ending in '/'. Keys are prefix + [namespace/] + name."""
        if self.storage_resource:
            group, _, resource = self.storage_resource.partition("/")
        else:
            group, resource = self.group, self.resource
        return f"/registry/{group or 'core'}/{resource}/"

    def key(self, namespace: str | None, name: str) -> str:
        if self.namespaced:
            return f"{self.key_prefix}{namespace}/{name}"
        return f"{self.key_prefix}{name}"

    def list_prefix(self, namespace: str | None) -> str:
        if self.namespaced and namespace:
            return f"{self.key_prefix}{namespace}/"
        return self.key_prefix


def _r(group: str, version: str, resource: str, kind: str, namespaced: bool = True,
       short: str = "", cats: str = "", sub: str = "", verbs: tuple[str, ...] = STANDARD_VERBS,
       **kw: Any) -> ResourceInfo:
    return ResourceInfo(group, version, resource, kind, namespaced,
                        tuple(short.split()), tuple(cats.split()), verbs, tuple(sub.split()), **kw)


NO_WATCH = ("create", "delete", "deletecollection", "get", "list", "patch", "update")

BUILTIN: list[ResourceInfo] = [
    # core/v1
    _r("", "v1", "bindings", "Binding", verbs=("create",)),
    _r("", "v1", "configmaps", "ConfigMap", short="cm"),
    _r("", "v1", "endpoints", "Endpoints", short="ep"),
    _r("", "v1", "events", "Event", short="ev"),
    _r("", "v1", "limitranges", "LimitRange", short="limits"),
    _r("", "v1", "namespaces", "Namespace", False, short="ns", sub="status finalize",
       verbs=("create", "delete", "get", "list", "patch", "update", "watch")),
    _r("", "v1", "nodes", "Node", False, short="no", sub="status", connect=("proxy",)),
    _r("", "v1", "persistentvolumeclaims", "PersistentVolumeClaim", short="pvc", sub="status"),
    _r("", "v1", "persistentvolumes", "PersistentVolume", False, short="pv", sub="status"),
    _r("", "v1", "pods", "Pod", short="po", cats="all",
       sub="status binding eviction ephemeralcontainers resize",
       connect=("attach", "exec", "log", "portforward", "proxy")),
    _r("", "v1", "podtemplates", "PodTemplate"),
    _r("", "v1", "replicationcontrollers", "ReplicationController", short="rc", cats="all",
       sub="status scale"),
    _r("", "v1", "resourcequotas", "ResourceQuota", short="quota", sub="status"),
    _r("", "v1", "secrets", "Secret"),
    _r("", "v1", "serviceaccounts", "ServiceAccount", short="sa", sub="token"),
    _r("", "v1", "componentstatuses", "ComponentStatus", False, short="cs",
       verbs=("get", "list"), virtual=True),
    _r("", "v1", "services", "Service", short="svc", cats="all", sub="status",
       verbs=("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"),
       connect=("proxy",)),
    # apps/v1
    _r("apps", "v1", "controllerrevisions", "ControllerRevision"),
    _r("apps", "v1", "daemonsets", "DaemonSet", short="ds", cats="all", sub="status"),
    _r("apps", "v1", "deployments", "Deployment", short="deploy", cats="all", sub="status scale"),
    _r("apps", "v1", "replicasets", "ReplicaSet", short="rs", cats="all", sub="status scale"),
    _r("apps", "v1", "statefulsets", "StatefulSet", short="sts", cats="all", sub="status scale"),
    # batch/v1
    _r("batch", "v1", "cronjobs", "CronJob", short="cj", cats="all", sub="status"),
    _r("batch", "v1", "jobs", "Job", cats="all", sub="status"),
    # autoscaling: v2 is the storage version, v1 is served by conversion
    _r("autoscaling", "v2", "horizontalpodautoscalers", "HorizontalPodAutoscaler", short="hpa",
       cats="all", sub="status"),
    _r("autoscaling", "v1", "horizontalpodautoscalers", "HorizontalPodAutoscaler", short="hpa",
       cats="all", sub="status", storage_version="v2"),
    _r("certificates.k8s.io", "v1", "certificatesigningrequests", "CertificateSigningRequest",
       False, short="csr", sub="status approval"),
    _r("coordination.k8s.io", "v1", "leases", "Lease"),
    _r("discovery.k8s.io", "v1", "endpointslices", "EndpointSlice"),
    # events.k8s.io/v1 events are core events seen through another schema
    _r("events.k8s.io", "v1", "events", "Event", short="ev", storage_resource="/events",
       storage_version="core/v1"),
    _r("policy", "v1", "poddisruptionbudgets", "PodDisruptionBudget", short="pdb", sub="status"),
    _r("networking.k8s.io", "v1", "ingressclasses", "IngressClass", False),
    _r("networking.k8s.io", "v1", "ingresses", "Ingress", short="ing", sub="status"),
    _r("networking.k8s.io", "v1", "networkpolicies", "NetworkPolicy", short="netpol"),
    _r("rbac.authorization.k8s.io", "v1", "clusterrolebindings", "ClusterRoleBinding", False),
    _r("rbac.authorization.k8s.io", "v1", "clusterroles", "ClusterRole", False),
    _r("rbac.authorization.k8s.io", "v1", "rolebindings", "RoleBinding"),
    _r("rbac.authorization.k8s.io", "v1", "roles", "Role"),
    _r("storage.k8s.io", "v1", "csidrivers", "CSIDriver", False),
    _r("storage.k8s.io", "v1", "csinodes", "CSINode", False),
    _r("storage.k8s.io", "v1", "csistoragecapacities", "CSIStorageCapacity"),
    _r("storage.k8s.io", "v1", "storageclasses", "StorageClass", False, short="sc"),
    _r("storage.k8s.io", "v1", "volumeattachments", "VolumeAttachment", False, sub="status"),
    _r("scheduling.k8s.io", "v1", "priorityclasses", "PriorityClass", False, short="pc"),
    _r("node.k8s.io", "v1", "runtimeclasses", "RuntimeClass", False),
    _r("flowcontrol.apiserver.k8s.io", "v1", "flowschemas", "FlowSchema", False, sub="status"),
    _r("flowcontrol.apiserver.k8s.io", "v1", "prioritylevelconfigurations",
       "PriorityLevelConfiguration", False, sub="status"),
    _r("admissionregistration.k8s.io", "v1", "mutatingwebhookconfigurations",
       "MutatingWebhookConfiguration", False, cats="api-extensions"),
    _r("admissionregistration.k8s.io", "v1", "validatingwebhookconfigurations",
       "ValidatingWebhookConfiguration", False, cats="api-extensions"),
    _r("apiregistration.k8s.io", "v1", "apiservices", "APIService", False, cats="api-extensions",
       sub="status"),
    _r("apiextensions.k8s.io", "v1", "customresourcedefinitions", "CustomResourceDefinition",
       False, short="crd crds", cats="api-extensions", sub="status"),
    # admissionregistration.k8s.io/v1: ValidatingAdmissionPolicy
    _r("admissionregistration.k8s.io", "v1", "validatingadmissionpolicies",
       "ValidatingAdmissionPolicy", False, cats="api-extensions", sub="status"),
    _r("admissionregistration.k8s.io", "v1", "validatingadmissionpolicybindings",
       "ValidatingAdmissionPolicyBinding", False, cats="api-extensions"),
    _r("authentication.k8s.io", "v1", "selfsubjectreviews", "SelfSubjectReview", False,
       verbs=("create",), virtual=True),
    _r("authentication.k8s.io", "v1", "tokenreviews", "TokenReview", False, verbs=("create",),
       virtual=True),
    _r("authorization.k8s.io", "v1", "localsubjectaccessreviews", "LocalSubjectAccessReview",
       verbs=("create",), virtual=True),
    _r("authorization.k8s.io", "v1", "selfsubjectaccessreviews", "SelfSubjectAccessReview",
       False, verbs=("create",), virtual=True),
    _r("authorization.k8s.io", "v1", "selfsubjectrulesreviews", "SelfSubjectRulesReview", False,
       verbs=("create",), virtual=True),
    _r("authorization.k8s.io", "v1", "subjectaccessreviews", "SubjectAccessReview", False,
       verbs=("create",), virtual=True),
]

# Preferred version per group, in the order discovery lists groups.
GROUP_ORDER = [
    "", "apiregistration.k8s.io", "apps", "events.k8s.io", "authentication.k8s.io",
    "authorization.k8s.io", "autoscaling",
    "batch", "certificates.k8s.io", "networking.k8s.io", "policy", "rbac.authorization.k8s.io",
    "storage.k8s.io", "admissionregistration.k8s.io", "apiextensions.k8s.io",
    "scheduling.k8s.io", "coordination.k8s.io", "discovery.k8s.io",
    "flowcontrol.apiserver.k8s.io",
]
