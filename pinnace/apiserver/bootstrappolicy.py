"""The default RBAC objects: what kube-apiserver's bootstrap policy creates.

Upstream keeps these in plugin/pkg/auth/authorizer/rbac/bootstrappolicy
(policy.go, controller_policy.go, namespace_policy.go) and records what a
cluster with default feature gates gets in that package's testdata YAML. This
module mirrors that testdata for Kubernetes 1.37: the ClusterRoles every
component is granted (cluster-admin, the aggregated admin/edit/view and the
``system:aggregate-to-*`` roles that feed them, the kubelet's, the scheduler's,
the controller manager's, one ``system:controller:<name>`` role per
controller), their ClusterRoleBindings, and the few namespaced Roles and
RoleBindings in kube-system and kube-public. Roles behind feature gates that
are off by default are left out, as upstream leaves them out.

Every object is a plain dict in the rbac.authorization.k8s.io/v1 JSON form,
labelled ``kubernetes.io/bootstrapping: rbac-defaults`` and annotated
``rbac.authorization.kubernetes.io/autoupdate: "true"`` (so the start-up
reconciliation may add back what a user removed). Rules keep upstream's
order within a role and upstream's sorted lists within a rule. Each call
returns new objects, which callers may change.

The section "pinnace's own components" at the end adds what pinnace needs
because its components are put together differently from upstream's; the
four public functions return upstream's objects followed by pinnace's.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

Obj = dict[str, Any]
Rule = dict[str, Any]

API_VERSION = "rbac.authorization.k8s.io/v1"
RBAC_GROUP = "rbac.authorization.k8s.io"
BOOTSTRAP_LABELS = {"kubernetes.io/bootstrapping": "rbac-defaults"}
AUTOUPDATE_ANNOTATION = "rbac.authorization.kubernetes.io/autoupdate"
AGGREGATE_TO_ADMIN = "rbac.authorization.k8s.io/aggregate-to-admin"
AGGREGATE_TO_EDIT = "rbac.authorization.k8s.io/aggregate-to-edit"
AGGREGATE_TO_VIEW = "rbac.authorization.k8s.io/aggregate-to-view"

CONTROLLER_PREFIX = "system:controller:"
KUBE_SYSTEM = "kube-system"
KUBE_PUBLIC = "kube-public"
KUBE_CONTROLLER_MANAGER = "system:kube-controller-manager"
KUBE_SCHEDULER = "system:kube-scheduler"
NODES_GROUP = "system:nodes"

# -- verbs ---------------------------------------------------------------------

READ = ("get", "list", "watch")
WRITE = ("create", "delete", "deletecollection", "patch", "update")
READ_WRITE = READ + WRITE
READ_UPDATE = READ + ("patch", "update")
LIST_WATCH = ("list", "watch")
UPDATE = ("patch", "update")
ANY = ("*",)

# -- API groups ----------------------------------------------------------------

CORE = ""
ADMISSION = "admissionregistration.k8s.io"
APPS = "apps"
AUTHN = "authentication.k8s.io"
AUTHZ = "authorization.k8s.io"
AUTOSCALING = "autoscaling"
BATCH = "batch"
CERTIFICATES = "certificates.k8s.io"
COORDINATION = "coordination.k8s.io"
DISCOVERY = "discovery.k8s.io"
EVENTS = "events.k8s.io"
EXTENSIONS = "extensions"
NETWORKING = "networking.k8s.io"
NODE = "node.k8s.io"
POLICY = "policy"
RESOURCE = "resource.k8s.io"
STORAGE = "storage.k8s.io"
APPS_BOTH = (APPS, EXTENSIONS)  # workloads still answered under their old group too

# -- building blocks -----------------------------------------------------------


def _rule(verbs: Iterable[str], groups: str | Iterable[str], resources: Iterable[str],
          names: Iterable[str] = ()) -> Rule:
    """A resource rule; lists are sorted, as upstream's rule builder sorts them."""
    rule: Rule = {
        "verbs": sorted(verbs),
        "apiGroups": sorted([groups] if isinstance(groups, str) else groups),
        "resources": sorted(resources),
    }
    names = sorted(names)
    if names:
        rule["resourceNames"] = names
    return rule


def _nonresource(verbs: Iterable[str], urls: Iterable[str]) -> Rule:
    return {"verbs": sorted(verbs), "nonResourceURLs": sorted(urls)}


def _events() -> Rule:
    # Recorders write through either the core or the events.k8s.io API.
    return _rule(("create", "patch", "update"), (CORE, EVENTS), ["events"])


def _metadata(name: str, namespace: str | None = None, labels: dict[str, str] | None = None) -> Obj:
    meta: Obj = {"name": name}
    if namespace is not None:
        meta["namespace"] = namespace
    meta["labels"] = {**BOOTSTRAP_LABELS, **(labels or {})}
    meta["annotations"] = {AUTOUPDATE_ANNOTATION: "true"}
    return meta


def _cluster_role(name: str, rules: list[Rule], labels: dict[str, str] | None = None) -> Obj:
    return {"apiVersion": API_VERSION, "kind": "ClusterRole",
            "metadata": _metadata(name, labels=labels), "rules": rules}


def _aggregated_role(name: str, selects: str, labels: dict[str, str] | None = None) -> Obj:
    """A role whose rules the aggregation controller fills from the roles labelled ``selects``."""
    role = _cluster_role(name, [], labels)
    role["aggregationRule"] = {"clusterRoleSelectors": [{"matchLabels": {selects: "true"}}]}
    return role


def _role(namespace: str, name: str, rules: list[Rule]) -> Obj:
    return {"apiVersion": API_VERSION, "kind": "Role",
            "metadata": _metadata(name, namespace), "rules": rules}


def _user(name: str) -> Obj:
    return {"kind": "User", "apiGroup": RBAC_GROUP, "name": name}


def _group(name: str) -> Obj:
    return {"kind": "Group", "apiGroup": RBAC_GROUP, "name": name}


def _service_account(namespace: str, name: str) -> Obj:
    # No apiGroup: the binding defaulter's "" is left out (omitempty), so a
    # stored default compares equal.
    return {"kind": "ServiceAccount", "name": name, "namespace": namespace}


def _cluster_binding(name: str, subjects: list[Obj] | None, role: str | None = None) -> Obj:
    binding: Obj = {"apiVersion": API_VERSION, "kind": "ClusterRoleBinding", "metadata": _metadata(name),
                    "roleRef": {"apiGroup": RBAC_GROUP, "kind": "ClusterRole", "name": role or name}}
    if subjects is not None:
        binding["subjects"] = subjects
    return binding


def _role_binding(namespace: str, name: str, subjects: list[Obj], role: str | None = None) -> Obj:
    return {"apiVersion": API_VERSION, "kind": "RoleBinding", "metadata": _metadata(name, namespace),
            "roleRef": {"apiGroup": RBAC_GROUP, "kind": "Role", "name": role or name},
            "subjects": subjects}


# -- upstream: the aggregated user-facing roles --------------------------------


def _aggregate_to_admin_rules() -> list[Rule]:
    # What admin has beyond edit: granting access inside its namespace.
    return [
        _rule(["create"], AUTHZ, ["localsubjectaccessreviews"]),
        _rule(READ_WRITE, RBAC_GROUP, ["roles", "rolebindings"]),
    ]


def _aggregate_to_edit_rules() -> list[Rule]:
    # Reading these escalates (secrets, exec, proxies), so view must not get them;
    # edit's write verbs are granted separately from view's read verbs.
    pod_access = ["pods/attach", "pods/exec", "pods/portforward", "pods/proxy"]
    return [
        _rule(READ, CORE, [*pod_access, "secrets", "services/proxy"]),
        _rule(["impersonate"], CORE, ["serviceaccounts"]),
        _rule(WRITE, CORE, ["pods", *pod_access]),
        _rule(["create"], CORE, ["pods/eviction"]),
        _rule(WRITE, CORE, ["configmaps", "events", "persistentvolumeclaims", "replicationcontrollers",
                            "replicationcontrollers/scale", "secrets", "serviceaccounts", "services",
                            "services/proxy"]),
        _rule(["create"], CORE, ["serviceaccounts/token"]),
        _rule(WRITE, APPS, ["daemonsets", "deployments", "deployments/rollback", "deployments/scale",
                            "replicasets", "replicasets/scale", "statefulsets", "statefulsets/scale"]),
        _rule(WRITE, AUTOSCALING, ["horizontalpodautoscalers"]),
        _rule(WRITE, BATCH, ["cronjobs", "jobs"]),
        _rule(WRITE, EXTENSIONS, ["daemonsets", "deployments", "deployments/rollback", "deployments/scale",
                                  "ingresses", "networkpolicies", "replicasets", "replicasets/scale",
                                  "replicationcontrollers/scale"]),
        _rule(WRITE, POLICY, ["poddisruptionbudgets"]),
        _rule(WRITE, NETWORKING, ["ingresses", "networkpolicies"]),
        _rule(READ_WRITE, COORDINATION, ["leases"]),
    ]


def _aggregate_to_view_rules() -> list[Rule]:
    # Read-only, and only what does not escalate: no secrets, no pod exec/attach/proxy.
    return [
        _rule(READ, CORE, ["configmaps", "endpoints", "persistentvolumeclaims", "persistentvolumeclaims/status",
                           "pods", "replicationcontrollers", "replicationcontrollers/scale", "serviceaccounts",
                           "services", "services/status"]),
        _rule(READ, CORE, ["bindings", "events", "limitranges", "namespaces/status", "pods/log", "pods/status",
                           "replicationcontrollers/status", "resourcequotas", "resourcequotas/status"]),
        # Reading its own namespace tells a namespaced user which namespaces it can use.
        _rule(READ, CORE, ["namespaces"]),
        _rule(READ, DISCOVERY, ["endpointslices"]),
        _rule(READ, APPS, ["controllerrevisions", "daemonsets", "daemonsets/status", "deployments",
                           "deployments/scale", "deployments/status", "replicasets", "replicasets/scale",
                           "replicasets/status", "statefulsets", "statefulsets/scale", "statefulsets/status"]),
        _rule(READ, AUTOSCALING, ["horizontalpodautoscalers", "horizontalpodautoscalers/status"]),
        _rule(READ, BATCH, ["cronjobs", "cronjobs/status", "jobs", "jobs/status"]),
        _rule(READ, EXTENSIONS, ["daemonsets", "daemonsets/status", "deployments", "deployments/scale",
                                 "deployments/status", "ingresses", "ingresses/status", "networkpolicies",
                                 "replicasets", "replicasets/scale", "replicasets/status",
                                 "replicationcontrollers/scale"]),
        _rule(READ, POLICY, ["poddisruptionbudgets", "poddisruptionbudgets/status"]),
        _rule(READ, NETWORKING, ["ingresses", "ingresses/status", "networkpolicies"]),
    ]


def _user_facing_roles() -> list[Obj]:
    return [
        _cluster_role("cluster-admin", [_rule(ANY, "*", ["*"]), _nonresource(ANY, ["*"])]),
        # admin ⊇ edit ⊇ view: each aggregated role is itself labelled into the next one up.
        _aggregated_role("admin", AGGREGATE_TO_ADMIN),
        _aggregated_role("edit", AGGREGATE_TO_EDIT, {AGGREGATE_TO_ADMIN: "true"}),
        _aggregated_role("view", AGGREGATE_TO_VIEW, {AGGREGATE_TO_EDIT: "true"}),
        _cluster_role("system:aggregate-to-admin", _aggregate_to_admin_rules(), {AGGREGATE_TO_ADMIN: "true"}),
        _cluster_role("system:aggregate-to-edit", _aggregate_to_edit_rules(), {AGGREGATE_TO_EDIT: "true"}),
        _cluster_role("system:aggregate-to-view", _aggregate_to_view_rules(), {AGGREGATE_TO_VIEW: "true"}),
    ]


# -- upstream: roles for every caller and for the components -------------------

_HEALTH_URLS = ("/healthz", "/livez", "/readyz")
_VERSION_URLS = ("/version", "/version/")


def _everyone_roles() -> list[Obj]:
    return [
        # Enough to check the server is up and negotiate API versions.
        _cluster_role("system:discovery", [_nonresource(["get"], [
            *_HEALTH_URLS, *_VERSION_URLS, "/openapi", "/openapi/*", "/api", "/api/*", "/apis", "/apis/*"])]),
        _cluster_role("system:public-info-viewer", [_nonresource(["get"], [*_HEALTH_URLS, *_VERSION_URLS])]),
        # Lets any user ask what it may do and who it is.
        _cluster_role("system:basic-user", [
            _rule(["create"], AUTHZ, ["selfsubjectaccessreviews", "selfsubjectrulesreviews"]),
            _rule(["create"], AUTHN, ["selfsubjectreviews"]),
        ]),
        _cluster_role("system:service-account-issuer-discovery", [_nonresource(["get"], [
            "/.well-known/openid-configuration", "/.well-known/openid-configuration/",
            "/openid/v1/jwks", "/openid/v1/jwks/"])]),
        # The individual health checks (/livez/etcd, ...) may say more than the totals do.
        _cluster_role("system:monitoring", [
            _nonresource(["get"], ["/metrics", "/metrics/slis", *_HEALTH_URLS,
                                   "/livez/*", "/readyz/*", "/healthz/*"]),
            # ComponentStatusz and ComponentFlagz are beta, so on, since 1.36.
            _nonresource(["get"], ["/statusz"]),
            _nonresource(["get"], ["/flagz"]),
        ]),
        _cluster_role("system:auth-delegator", [
            _rule(["create"], AUTHN, ["tokenreviews"]),
            _rule(["create"], AUTHZ, ["subjectaccessreviews"]),
        ]),
    ]


def node_rules() -> list[Rule]:
    # What every node may do (the Node authorizer's static rules), except where
    # that authorizer and NodeRestriction narrow it to the node's own objects.
    return [
        # Delegated authn/authz of kubelet API callers; these creates change nothing.
        _rule(["create"], AUTHN, ["tokenreviews"]),
        _rule(["create"], AUTHZ, ["localsubjectaccessreviews", "subjectaccessreviews"]),
        _rule(READ, CORE, ["services"]),  # service environment variables
        _rule(["create", "get", "list", "watch"], CORE, ["nodes"]),
        _rule(UPDATE, CORE, ["nodes/status"]),
        _rule(UPDATE, CORE, ["nodes"]),
        _rule(["create", "patch", "update"], CORE, ["events"]),
        _rule(READ, CORE, ["pods"]),
        _rule(["create", "delete"], CORE, ["pods"]),  # mirror pods
        _rule(UPDATE, CORE, ["pods/status"]),
        _rule(["create"], CORE, ["pods/eviction"]),
        _rule(READ, CORE, ["configmaps", "secrets"]),  # volumes, env, image pull secrets
        _rule(["get"], CORE, ["persistentvolumeclaims", "persistentvolumes"]),
        _rule(["get"], CORE, ["endpoints"]),
        # The kubelet rotates its own client certificate through CSRs.
        _rule(["create", "get", "list", "watch"], CERTIFICATES, ["certificatesigningrequests"]),
        _rule(["create", "delete", "get", "patch", "update"], COORDINATION, ["leases"]),  # node heartbeats
        _rule(["get"], STORAGE, ["volumeattachments"]),
        _rule(["create"], CORE, ["serviceaccounts/token"]),  # projected service account tokens
        _rule(["get", "patch", "update"], CORE, ["persistentvolumeclaims/status"]),  # online resize
        _rule(READ, STORAGE, ["csidrivers"]),
        _rule(["create", "delete", "get", "patch", "update"], STORAGE, ["csinodes"]),
        _rule(READ, NODE, ["runtimeclasses"]),
        _rule(["get"], RESOURCE, ["resourceclaims"]),
        _rule(["deletecollection"], RESOURCE, ["resourceslices"]),  # the node's slices, at kubelet start
    ]


def _kube_scheduler_rules() -> list[Rule]:
    return [
        _events(),
        # Leader election.
        _rule(["create"], COORDINATION, ["leases"]),
        _rule(["get", "list", "update", "watch"], COORDINATION, ["leases"], ["kube-scheduler"]),
        _rule(READ_WRITE, COORDINATION, ["leasecandidates"]),
        _rule(READ, CORE, ["nodes"]),
        _rule(["delete", "get", "list", "watch"], CORE, ["pods"]),  # delete: preemption
        _rule(["create"], CORE, ["bindings", "pods/binding"]),
        _rule(UPDATE, CORE, ["pods/status"]),
        # Spreading pods of one owner.
        _rule(READ, CORE, ["replicationcontrollers", "services"]),
        _rule(READ, APPS_BOTH, ["replicasets"]),
        _rule(READ, APPS, ["statefulsets"]),
        _rule(READ, POLICY, ["poddisruptionbudgets"]),
        _rule(READ, CORE, ["persistentvolumeclaims", "persistentvolumes"]),
        # Delegated authn/authz of its own secure port.
        _rule(["create"], AUTHN, ["tokenreviews"]),
        _rule(["create"], AUTHZ, ["subjectaccessreviews"]),
        _rule(READ, STORAGE, ["csinodes"]),
        _rule(READ, STORAGE, ["volumeattachments"]),
        _rule(READ, CORE, ["namespaces"]),
        _rule(READ, STORAGE, ["csidrivers"]),
        _rule(READ, STORAGE, ["csistoragecapacities"]),
        # Dynamic resource allocation (on by default since 1.34).
        _rule(READ, RESOURCE, ["deviceclasses"]),
        _rule(READ_UPDATE, RESOURCE, ["resourceclaims"]),
        _rule(READ_UPDATE, RESOURCE, ["resourceclaims/status"]),
        _rule(READ_UPDATE, CORE, ["pods/finalizers"]),
        _rule(READ, RESOURCE, ["resourceslices"]),
        # Writing status.allocation/reservedFor also needs this (granular status authorization, 1.36).
        _rule(UPDATE, RESOURCE, ["resourceclaims/binding"]),
    ]


def _kube_controller_manager_rules() -> list[Rule]:
    # Only what it needs before it has the per-controller service accounts;
    # the controllers themselves run with the system:controller:* roles.
    return [
        _events(),
        _rule(["create"], COORDINATION, ["leases"]),
        _rule(["get", "update"], COORDINATION, ["leases"], ["kube-controller-manager"]),
        _rule(["create"], CORE, ["secrets", "serviceaccounts"]),
        _rule(["delete"], CORE, ["secrets"]),
        _rule(["get"], CORE, ["configmaps", "namespaces", "secrets", "serviceaccounts"]),
        _rule(["update"], CORE, ["secrets", "serviceaccounts"]),
        _rule(["create"], AUTHN, ["tokenreviews"]),
        _rule(["create"], AUTHZ, ["subjectaccessreviews"]),
        _rule(LIST_WATCH, "*", ["*"]),  # shared informers
        _rule(["create"], CORE, ["serviceaccounts/token"]),
    ]


def _component_roles() -> list[Obj]:
    return [
        _cluster_role("system:heapster", [
            _rule(READ, CORE, ["events", "namespaces", "nodes", "pods"]),
            _rule(READ, EXTENSIONS, ["deployments"]),
        ]),
        _cluster_role("system:node", node_rules()),
        _cluster_role("system:node-problem-detector", [
            _rule(["get"], CORE, ["nodes"]),
            _rule(["patch"], CORE, ["nodes/status"]),
            _events(),
        ]),
        _cluster_role("system:kubelet-api-admin", [
            _rule(READ, CORE, ["nodes"]),
            _rule(["proxy"], CORE, ["nodes"]),
            _rule(ANY, CORE, ["nodes/log", "nodes/metrics", "nodes/proxy", "nodes/stats"]),
            # Fine-grained kubelet API authorization (GA in 1.36).
            _rule(ANY, CORE, ["nodes/configz", "nodes/healthz", "nodes/pods"]),
        ]),
        _cluster_role("system:node-bootstrapper", [
            _rule(["create", "get", "list", "watch"], CERTIFICATES, ["certificatesigningrequests"]),
        ]),
        _cluster_role("system:kube-aggregator", [_rule(READ, CORE, ["endpoints", "services"])]),
        _cluster_role("system:kube-controller-manager", _kube_controller_manager_rules()),
        _cluster_role("system:kube-dns", [_rule(LIST_WATCH, CORE, ["endpoints", "services"])]),
        _cluster_role("system:kube-scheduler", _kube_scheduler_rules()),
        _cluster_role("system:persistent-volume-provisioner", [
            _rule(["create", "delete", "get", "list", "watch"], CORE, ["persistentvolumes"]),
            _rule(["get", "list", "update", "watch"], CORE, ["persistentvolumeclaims"]),
            _rule(READ, STORAGE, ["storageclasses"]),
            _rule(["watch"], CORE, ["events"]),
            _events(),
        ]),
        _cluster_role("system:volume-scheduler", [
            _rule(READ_UPDATE, CORE, ["persistentvolumes"]),
            _rule(READ, STORAGE, ["storageclasses"]),
            _rule(READ_UPDATE, CORE, ["persistentvolumeclaims"]),
        ]),
        _cluster_role("system:node-proxier", [
            _rule(LIST_WATCH, CORE, ["endpoints", "services"]),
            _rule(READ, CORE, ["nodes"]),
            _events(),
            _rule(LIST_WATCH, DISCOVERY, ["endpointslices"]),
        ]),
    ]


_SIGNERS = {
    "kubelet-serving": "kubernetes.io/kubelet-serving",
    "kube-apiserver-client": "kubernetes.io/kube-apiserver-client",
    "kube-apiserver-client-kubelet": "kubernetes.io/kube-apiserver-client-kubelet",
    "legacy-unknown": "kubernetes.io/legacy-unknown",
}


def _certificate_roles() -> list[Obj]:
    # Approving a CSR for a signer takes "approve" on that signer; these are for binding to approvers.
    roles = [_cluster_role(f"system:certificates.k8s.io:{short}-approver",
                           [_rule(["approve"], CERTIFICATES, ["signers"], [signer])])
             for short, signer in _SIGNERS.items()]
    # The legacy ways of saying a node may have its client certificate auto-approved.
    for kind in ("nodeclient", "selfnodeclient"):
        roles.append(_cluster_role(f"system:certificates.k8s.io:certificatesigningrequests:{kind}",
                                   [_rule(["create"], CERTIFICATES, [f"certificatesigningrequests/{kind}"])]))
    return roles


# -- upstream: one role per controller of kube-controller-manager -------------
#
# Each is bound to the controller's own service account in kube-system; the
# role name is "system:controller:" + that account's name.


def _controller_rules() -> dict[str, list[Rule]]:
    pvc, pv = "persistentvolumeclaims", "persistentvolumes"
    rs_pods = ["create", "delete", "list", "patch", "watch"]  # what the replica managers do to pods
    return {
        "attachdetach-controller": [
            _rule(LIST_WATCH, CORE, [pvc, pv]),
            _rule(READ, CORE, ["nodes"]),
            _rule(UPDATE, CORE, ["nodes/status"]),
            _rule(LIST_WATCH, CORE, ["pods"]),
            _events(),
            _rule(["create", "delete", "get", "list", "watch"], STORAGE, ["volumeattachments"]),
            _rule(READ, STORAGE, ["csidrivers"]),
            _rule(READ, STORAGE, ["csinodes"]),
        ],
        "certificate-controller": [
            _rule(["delete", "get", "list", "watch"], CERTIFICATES, ["certificatesigningrequests"]),
            _rule(["update"], CERTIFICATES,
                  ["certificatesigningrequests/approval", "certificatesigningrequests/status"]),
            # It auto-approves only kubelet client certificates, but signs for all built-in signers.
            _rule(["approve"], CERTIFICATES, ["signers"], [_SIGNERS["kube-apiserver-client-kubelet"]]),
            _rule(["sign"], CERTIFICATES, ["signers"], _SIGNERS.values()),
            _rule(["create"], AUTHZ, ["subjectaccessreviews"]),
            _events(),
        ],
        "clusterrole-aggregation-controller": [
            # escalate: it writes rules into admin/edit/view that it does not hold itself.
            _rule(["escalate", "get", "list", "patch", "update", "watch"], RBAC_GROUP, ["clusterroles"]),
        ],
        "cronjob-controller": [
            _rule(["get", "list", "update", "watch"], BATCH, ["cronjobs"]),
            _rule(["create", "delete", "get", "list", "patch", "update", "watch"], BATCH, ["jobs"]),
            _rule(["update"], BATCH, ["cronjobs/status"]),
            _rule(["update"], BATCH, ["cronjobs/finalizers"]),
            _rule(["delete", "list", "watch"], CORE, ["pods"]),
            _events(),
        ],
        "daemon-set-controller": [
            _rule(READ, APPS_BOTH, ["daemonsets"]),
            _rule(["update"], APPS_BOTH, ["daemonsets/status"]),
            _rule(["update"], APPS_BOTH, ["daemonsets/finalizers"]),
            _rule(LIST_WATCH, CORE, ["nodes"]),
            _rule(rs_pods, CORE, ["pods"]),
            _rule(["create"], CORE, ["pods/binding"]),
            _rule(["create", "delete", "get", "list", "patch", "update", "watch"], APPS, ["controllerrevisions"]),
            _events(),
        ],
        "deployment-controller": [
            _rule(["get", "list", "update", "watch"], APPS_BOTH, ["deployments"]),
            _rule(["update"], APPS_BOTH, ["deployments/status"]),
            _rule(["update"], APPS_BOTH, ["deployments/finalizers"]),
            _rule(["create", "delete", "get", "list", "patch", "update", "watch"], APPS_BOTH, ["replicasets"]),
            _rule(["get", "list", "update", "watch"], CORE, ["pods"]),
            _events(),
        ],
        "device-taint-eviction-controller": [
            _rule(["delete", "get", "list", "watch"], CORE, ["pods"]),
            _rule(UPDATE, CORE, ["pods/status"]),
            _rule(READ, RESOURCE, ["resourceclaims"]),
            _rule(READ, RESOURCE, ["resourceslices"]),
            _rule(READ, RESOURCE, ["deviceclasses"]),
            _events(),
        ],
        "disruption-controller": [
            _rule(READ, APPS_BOTH, ["deployments"]),
            _rule(READ, APPS_BOTH, ["replicasets"]),
            _rule(READ, CORE, ["replicationcontrollers"]),
            _rule(READ, POLICY, ["poddisruptionbudgets"]),
            _rule(READ, APPS, ["statefulsets"]),
            _rule(["update"], POLICY, ["poddisruptionbudgets/status"]),
            _rule(UPDATE, CORE, ["pods/status"]),
            _rule(["get"], "*", ["*/scale"]),  # expected replicas of any scalable owner
            _events(),
        ],
        "endpoint-controller": [
            _rule(READ, CORE, ["pods", "services"]),
            _rule(["create", "delete", "get", "list", "update", "watch"], CORE, ["endpoints"]),
            _rule(["create"], CORE, ["endpoints/restricted"]),
            _events(),
        ],
        "endpointslice-controller": [
            _rule(READ, CORE, ["nodes", "pods", "services"]),
            # Its slices block the owning Service's deletion, which takes update on the finalizers.
            _rule(["update"], CORE, ["services/finalizers"]),
            _rule(["create", "delete", "get", "list", "update", "watch"], DISCOVERY, ["endpointslices"]),
            _events(),
        ],
        "endpointslicemirroring-controller": [
            _rule(READ, CORE, ["endpoints", "services"]),
            _rule(["update"], CORE, ["services/finalizers"]),
            _rule(["update"], CORE, ["endpoints/finalizers"]),
            _rule(["create", "delete", "get", "list", "update", "watch"], DISCOVERY, ["endpointslices"]),
            _events(),
        ],
        "ephemeral-volume-controller": [
            _rule(READ, CORE, ["pods"]),
            _rule(["update"], CORE, ["pods/finalizers"]),
            _rule(["create", "get", "list", "watch"], CORE, [pvc]),
            _events(),
        ],
        "expand-controller": [
            _rule(READ_UPDATE, CORE, [pv]),
            _rule(UPDATE, CORE, ["persistentvolumeclaims/status"]),
            _rule(READ, CORE, [pvc]),
            _events(),
            _rule(["get"], CORE, ["services"]),
        ],
        "generic-garbage-collector": [
            _rule(["delete", "get", "list", "patch", "update", "watch"], "*", ["*"]),
            _events(),
        ],
        "horizontal-pod-autoscaler": [
            _rule(READ, AUTOSCALING, ["horizontalpodautoscalers"]),
            _rule(["update"], AUTOSCALING, ["horizontalpodautoscalers/status"]),
            _rule(["get", "update"], "*", ["*/scale"]),
            _rule(LIST_WATCH, CORE, ["pods"]),
            _rule(LIST_WATCH, "metrics.k8s.io", ["pods"]),
            _rule(READ, "custom.metrics.k8s.io", ["*"]),
            _rule(READ, "external.metrics.k8s.io", ["*"]),
            _events(),
        ],
        "job-controller": [
            _rule(READ_UPDATE, BATCH, ["jobs"]),
            _rule(["update"], BATCH, ["jobs/status"]),
            _rule(["update"], BATCH, ["jobs/finalizers"]),
            _rule(rs_pods, CORE, ["pods"]),
            _events(),
        ],
        "legacy-service-account-token-cleaner": [
            # The ConfigMap in which kube-apiserver records when it began tracking legacy token use.
            _rule(["get"], CORE, ["configmaps"], ["kube-apiserver-legacy-service-account-token-tracking"]),
            _rule(["delete", "patch"], CORE, ["secrets"]),
        ],
        "namespace-controller": [
            _rule(["delete", "get", "list", "watch"], CORE, ["namespaces"]),
            _rule(["update"], CORE, ["namespaces/finalize", "namespaces/status"]),
            _rule(["delete", "deletecollection", "get", "list", "watch"], "*", ["*"]),
        ],
        "node-controller": [
            _rule(["delete", "get", "list", "patch", "update", "watch"], CORE, ["nodes"]),
            _rule(UPDATE, CORE, ["nodes/status"]),
            _rule(UPDATE, CORE, ["pods/status"]),
            _rule(["delete", "get", "list", "watch"], CORE, ["pods"]),
            _events(),
        ],
        "persistent-volume-binder": [
            _rule(["create", "delete", "get", "list", "update", "watch"], CORE, [pv]),
            _rule(["update"], CORE, ["persistentvolumes/status"]),
            _rule(["get", "list", "update", "watch"], CORE, [pvc]),
            _rule(["update"], CORE, ["persistentvolumeclaims/status"]),
            _rule(["create", "delete", "get", "list", "watch"], CORE, ["pods"]),  # recycler pods
            _rule(READ, STORAGE, ["storageclasses"]),
            _rule(LIST_WATCH, CORE, ["nodes"]),
            _events(),
            _rule(["watch"], CORE, ["events"]),  # the recycler follows its pod's events
        ],
        "pod-garbage-collector": [
            _rule(["delete", "list", "watch"], CORE, ["pods"]),
            _rule(READ, CORE, ["nodes"]),
            _rule(["patch"], CORE, ["pods/status"]),
        ],
        "pv-protection-controller": [
            _rule(["get", "list", "update", "watch"], CORE, [pv]),
            _events(),
        ],
        "pvc-protection-controller": [
            _rule(["get", "list", "update", "watch"], CORE, [pvc]),
            _rule(["update"], CORE, ["persistentvolumeclaims/status"]),
            _rule(READ, CORE, ["pods"]),
            _events(),
        ],
        "replicaset-controller": [
            _rule(["get", "list", "update", "watch"], APPS_BOTH, ["replicasets"]),
            _rule(["update"], APPS_BOTH, ["replicasets/status"]),
            _rule(["update"], APPS_BOTH, ["replicasets/finalizers"]),
            _rule(rs_pods, CORE, ["pods"]),
            _events(),
        ],
        "replication-controller": [
            _rule(["get", "list", "update", "watch"], CORE, ["replicationcontrollers"]),
            _rule(["update"], CORE, ["replicationcontrollers/status"]),
            _rule(["update"], CORE, ["replicationcontrollers/finalizers"]),
            _rule(rs_pods, CORE, ["pods"]),
            _events(),
        ],
        "resource-claim-controller": [
            _rule(READ, CORE, ["pods"]),
            _rule(["update"], CORE, ["pods/finalizers"]),
            _rule(["create", "delete", "get", "list", "watch"], RESOURCE, ["resourceclaims"]),
            _rule(UPDATE, RESOURCE, ["resourceclaims", "resourceclaims/status"]),
            _rule(UPDATE, CORE, ["pods/status"]),
            _events(),
            _rule(UPDATE, RESOURCE, ["resourceclaims/binding"]),  # it clears reservedFor
        ],
        "resourcequota-controller": [
            _rule(LIST_WATCH, "*", ["*"]),  # quota may count anything
            _rule(["update"], CORE, ["resourcequotas/status"]),
            _events(),
        ],
        "root-ca-cert-publisher": [
            _rule(["create", "update"], CORE, ["configmaps"]),
            _events(),
        ],
        "route-controller": [
            _rule(LIST_WATCH, CORE, ["nodes"]),
            _rule(["patch"], CORE, ["nodes/status"]),
            _events(),
        ],
        "selinux-warning-controller": [
            _events(),
            _rule(READ, CORE, [pv]),
            _rule(READ, CORE, [pvc]),
            _rule(READ, CORE, ["pods"]),
            _rule(READ, STORAGE, ["csidrivers"]),
        ],
        "service-account-controller": [
            _rule(["create"], CORE, ["serviceaccounts"]),
            _events(),
        ],
        "service-cidrs-controller": [
            _rule(READ_UPDATE, NETWORKING, ["servicecidrs"]),
            _rule(UPDATE, NETWORKING, ["servicecidrs/finalizers"]),
            _rule(UPDATE, NETWORKING, ["servicecidrs/status"]),
            _rule(READ, NETWORKING, ["ipaddresses"]),
            _events(),
        ],
        "service-controller": [
            _rule(READ, CORE, ["services"]),
            _rule(UPDATE, CORE, ["services/status"]),
            _rule(LIST_WATCH, CORE, ["nodes"]),
            _events(),
        ],
        "statefulset-controller": [
            _rule(LIST_WATCH, CORE, ["pods"]),
            _rule(READ, APPS, ["statefulsets"]),
            _rule(["update"], APPS, ["statefulsets/status"]),
            _rule(["update"], APPS, ["statefulsets/finalizers"]),
            _rule(["create", "delete", "get", "patch", "update"], CORE, ["pods"]),
            _rule(["create", "delete", "get", "list", "patch", "update", "watch"], APPS, ["controllerrevisions"]),
            _rule(["create", "get", "list", "watch"], CORE, [pvc]),
            _rule(["delete", "update"], CORE, [pvc]),  # persistentVolumeClaimRetentionPolicy
            _rule(["update"], CORE, ["pods/finalizers"]),
            _events(),
        ],
        "ttl-after-finished-controller": [
            _rule(["delete", "get", "list", "watch"], BATCH, ["jobs"]),
            _events(),
        ],
        "ttl-controller": [
            _rule(["list", "patch", "update", "watch"], CORE, ["nodes"]),
            _events(),
        ],
        "validatingadmissionpolicy-status-controller": [
            _rule(READ, ADMISSION, ["validatingadmissionpolicies"]),
            _rule(["get", "patch", "update"], ADMISSION, ["validatingadmissionpolicies/status"]),
            _events(),
        ],
        "volumeattributesclass-protection-controller": [
            _rule(READ, CORE, [pvc]),
            _rule(READ, CORE, [pv]),
            _rule(["get", "list", "update", "watch"], STORAGE, ["volumeattributesclasses"]),
            _events(),
        ],
    }


def _controller_roles() -> list[Obj]:
    return [_cluster_role(CONTROLLER_PREFIX + name, rules) for name, rules in _controller_rules().items()]


def _controller_bindings() -> list[Obj]:
    return [_cluster_binding(CONTROLLER_PREFIX + name, [_service_account(KUBE_SYSTEM, name)])
            for name in _controller_rules()]


# -- upstream: bindings --------------------------------------------------------


def _upstream_cluster_bindings() -> list[Obj]:
    authenticated, unauthenticated = _group("system:authenticated"), _group("system:unauthenticated")
    return [
        _cluster_binding("cluster-admin", [_group("system:masters")]),
        _cluster_binding("system:monitoring", [_group("system:monitoring")]),
        _cluster_binding("system:discovery", [authenticated]),
        _cluster_binding("system:basic-user", [authenticated]),
        _cluster_binding("system:public-info-viewer", [authenticated, unauthenticated]),
        _cluster_binding("system:node-proxier", [_user("system:kube-proxy")]),
        _cluster_binding("system:kube-controller-manager", [_user(KUBE_CONTROLLER_MANAGER)]),
        _cluster_binding("system:kube-dns", [_service_account(KUBE_SYSTEM, "kube-dns")]),
        _cluster_binding("system:kube-scheduler", [_user(KUBE_SCHEDULER)]),
        _cluster_binding("system:volume-scheduler", [_user(KUBE_SCHEDULER)]),
        # Kept without subjects since the Node authorizer took over (1.8), so that
        # reconciliation never adds back the old grant to system:nodes.
        _cluster_binding("system:node", None),
        _cluster_binding("system:service-account-issuer-discovery", [_group("system:serviceaccounts")]),
    ]


# -- upstream: namespaced roles and bindings -----------------------------------

_LEADER_ELECTION = ["create", "get", "list", "update", "watch"]


def _upstream_roles() -> list[Obj]:
    def leader_locking() -> list[Rule]:
        return [_rule(_LEADER_ELECTION, COORDINATION, ["leases"]),
                _rule(_LEADER_ELECTION, COORDINATION, ["leasecandidates"])]

    return [
        # Extension API servers read the client CA and request-header settings from here.
        _role(KUBE_SYSTEM, "extension-apiserver-authentication-reader", [
            _rule(READ, CORE, ["configmaps"], ["extension-apiserver-authentication"])]),
        _role(KUBE_SYSTEM, "system::leader-locking-kube-controller-manager", leader_locking()),
        _role(KUBE_SYSTEM, "system::leader-locking-kube-scheduler", leader_locking()),
        # The bootstrap signer reads token Secrets here and signs cluster-info in kube-public.
        _role(KUBE_SYSTEM, CONTROLLER_PREFIX + "bootstrap-signer", [_rule(READ, CORE, ["secrets"])]),
        _role(KUBE_SYSTEM, CONTROLLER_PREFIX + "cloud-provider", [
            _rule(["create", "get", "list", "watch"], CORE, ["configmaps"])]),
        _role(KUBE_SYSTEM, CONTROLLER_PREFIX + "token-cleaner", [
            _rule(["delete", "get", "list", "watch"], CORE, ["secrets"]), _events()]),
        _role(KUBE_PUBLIC, CONTROLLER_PREFIX + "bootstrap-signer", [
            _rule(READ, CORE, ["configmaps"]),
            _rule(["update"], CORE, ["configmaps"], ["cluster-info"]),
            _events(),
        ]),
    ]


def _upstream_role_bindings() -> list[Obj]:
    def controller(namespace: str, name: str) -> Obj:
        return _role_binding(namespace, CONTROLLER_PREFIX + name, [_service_account(KUBE_SYSTEM, name)])

    return [
        _role_binding(KUBE_SYSTEM, "system::extension-apiserver-authentication-reader",
                      [_user(KUBE_CONTROLLER_MANAGER), _user(KUBE_SCHEDULER)],
                      role="extension-apiserver-authentication-reader"),
        _role_binding(KUBE_SYSTEM, "system::leader-locking-kube-controller-manager", [
            _user(KUBE_CONTROLLER_MANAGER),
            _service_account(KUBE_SYSTEM, "kube-controller-manager"),
            _service_account(KUBE_SYSTEM, "leader-election-controller"),
        ]),
        _role_binding(KUBE_SYSTEM, "system::leader-locking-kube-scheduler", [
            _user(KUBE_SCHEDULER), _service_account(KUBE_SYSTEM, "kube-scheduler")]),
        controller(KUBE_SYSTEM, "bootstrap-signer"),
        controller(KUBE_SYSTEM, "cloud-provider"),
        controller(KUBE_SYSTEM, "token-cleaner"),
        controller(KUBE_PUBLIC, "bootstrap-signer"),
    ]


# -- pinnace's own components --------------------------------------------------
#
# pinnace puts its components together differently from upstream, so its
# callers arrive under other names than upstream's bootstrap policy expects.

PINNACE_DNS = "system:pinnace-dns"


def _pinnace_cluster_roles() -> list[Obj]:
    # pinnace's DNS server identifies as a user rather than the kube-dns service
    # account, and needs what CoreDNS's kubernetes plugin reads.
    return [_cluster_role(PINNACE_DNS, [
        _rule(READ, CORE, ["endpoints", "namespaces", "nodes", "pods", "services"]),
        _rule(READ, DISCOVERY, ["endpointslices"]),
    ])]


def _pinnace_roles() -> list[Obj]:
    # The DNS server publishes itself as Service and EndpointSlice kube-dns.
    return [_role(KUBE_SYSTEM, PINNACE_DNS, [
        _rule(("create", "get", "update"), CORE, ["services"]),
        _rule(("create", "get", "update"), DISCOVERY, ["endpointslices"]),
    ])]


def _pinnace_role_bindings() -> list[Obj]:
    return [_role_binding(KUBE_SYSTEM, PINNACE_DNS, [_user(PINNACE_DNS)])]


def _pinnace_cluster_bindings() -> list[Obj]:
    return [
        _cluster_binding(PINNACE_DNS, [_user(PINNACE_DNS)]),
        # The node agent runs the service proxy in-process, with the node's identity.
        _cluster_binding("pinnace:node-proxier", [_group(NODES_GROUP)], role="system:node-proxier"),
        # What kubeadm and k3s grant for joining with a bootstrap token: ask
        # for a node certificate, have it approved, and renew it later.
        _cluster_binding("pinnace:node-bootstrapper", [_group("system:bootstrappers")],
                         role="system:node-bootstrapper"),
        _cluster_binding("pinnace:node-autoapprove-bootstrap", [_group("system:bootstrappers")],
                         role="system:certificates.k8s.io:certificatesigningrequests:nodeclient"),
        _cluster_binding("pinnace:node-autoapprove-certificate-rotation", [_group(NODES_GROUP)],
                         role="system:certificates.k8s.io:certificatesigningrequests:"
                              "selfnodeclient"),
    ]


def _run_controllers_as_manager(bindings: list[Obj]) -> None:
    """pinnace's controller manager runs every controller under its own user, not one
    service account per controller, so each controller binding also names that user."""
    for binding in bindings:
        if binding["roleRef"]["name"].startswith(CONTROLLER_PREFIX):
            binding["subjects"].append(_user(KUBE_CONTROLLER_MANAGER))


# -- the defaults --------------------------------------------------------------


def cluster_roles() -> list[Obj]:
    """Every default ClusterRole: upstream's, then pinnace's."""
    return [*_user_facing_roles(), *_everyone_roles(), *_component_roles(), *_certificate_roles(),
            *_controller_roles(), *_pinnace_cluster_roles()]


def cluster_role_bindings() -> list[Obj]:
    """Every default ClusterRoleBinding: upstream's, then pinnace's."""
    bindings = [*_upstream_cluster_bindings(), *_controller_bindings()]
    _run_controllers_as_manager(bindings)
    return [*bindings, *_pinnace_cluster_bindings()]


def roles() -> list[Obj]:
    """The default Roles, in kube-system and kube-public."""
    return [*_upstream_roles(), *_pinnace_roles()]


def role_bindings() -> list[Obj]:
    """The default RoleBindings, in kube-system and kube-public."""
    bindings = _upstream_role_bindings()
    _run_controllers_as_manager(bindings)
    return [*bindings, *_pinnace_role_bindings()]
