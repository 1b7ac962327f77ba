"""The default RBAC policy: upstream's bootstrap roles and bindings, and the
few pinnace adds for its own components."""

from __future__ import annotations

from typing import Any

import pytest

from pinnace.apiserver import bootstrappolicy as bp

Obj = dict[str, Any]

SA_KIND = "ServiceAccount"


def by_name(objects: list[Obj]) -> dict[str, Obj]:
    return {o["metadata"]["name"]: o for o in objects}


ROLES = by_name(bp.cluster_roles())
BINDINGS = by_name(bp.cluster_role_bindings())


def aggregated(name: str, roles: dict[str, Obj] = ROLES) -> list[Obj]:
    """The rules an aggregated role ends up with once aggregation has settled
    (view feeds edit, edit feeds admin), as the aggregation controller leaves them."""
    role = roles[name]
    if "aggregationRule" not in role:
        return role["rules"]
    out: list[Obj] = []
    for selector in role["aggregationRule"]["clusterRoleSelectors"]:
        for other_name, other in sorted(roles.items()):
            labels = other["metadata"].get("labels", {})
            if other_name != name and all(labels.get(k) == v for k, v in selector["matchLabels"].items()):
                out += [r for r in aggregated(other_name, roles) if r not in out]
    return out


def allows(rules: list[Obj], verb: str, group: str, resource: str, name: str = "") -> bool:
    for rule in rules:
        if "resources" not in rule:
            continue
        if not ({verb, "*"} & set(rule["verbs"]) and {group, "*"} & set(rule["apiGroups"])):
            continue
        if not ({resource, "*"} & set(rule["resources"])):
            continue
        if rule.get("resourceNames") and name not in rule["resourceNames"]:
            continue
        return True
    return False


def allows_url(rules: list[Obj], verb: str, path: str) -> bool:
    return any({verb, "*"} & set(r["verbs"]) and any(
        u == path or u == "*" or (u.endswith("*") and path.startswith(u[:-1]))
        for u in r.get("nonResourceURLs", ())) for r in rules)


def subjects(binding: Obj) -> list[tuple[str, str]]:
    return [(s["kind"], f'{s["namespace"]}/{s["name"]}' if s["kind"] == SA_KIND else s["name"])
            for s in binding.get("subjects") or ()]


# -- the shape of every object -------------------------------------------------

def all_objects() -> list[Obj]:
    return [*bp.cluster_roles(), *bp.cluster_role_bindings(), *bp.roles(), *bp.role_bindings()]


def test_every_object_is_a_labelled_autoupdating_rbac_v1_object() -> None:
    for obj in all_objects():
        meta = obj["metadata"]
        assert obj["apiVersion"] == "rbac.authorization.k8s.io/v1", meta["name"]
        assert obj["kind"] in ("ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding")
        assert meta["labels"]["kubernetes.io/bootstrapping"] == "rbac-defaults", meta["name"]
        assert meta["annotations"] == {"rbac.authorization.kubernetes.io/autoupdate": "true"}, meta["name"]
        assert ("namespace" in meta) == (obj["kind"] in ("Role", "RoleBinding")), meta["name"]


def test_names_are_unique_per_kind() -> None:
    for objects in (bp.cluster_roles(), bp.cluster_role_bindings(), bp.roles(), bp.role_bindings()):
        keys = [(o["metadata"].get("namespace"), o["metadata"]["name"]) for o in objects]
        assert len(keys) == len(set(keys)), sorted(k for k in keys if keys.count(k) > 1)


def test_rules_have_upstreams_json_form() -> None:
    for role in [*bp.cluster_roles(), *bp.roles()]:
        for rule in role["rules"]:
            assert rule["verbs"] and rule["verbs"] == sorted(rule["verbs"]), role["metadata"]["name"]
            if "nonResourceURLs" in rule:
                assert set(rule) == {"verbs", "nonResourceURLs"}
                continue
            assert set(rule) <= {"verbs", "apiGroups", "resources", "resourceNames"}
            assert rule["resources"] == sorted(rule["resources"])
            assert rule["apiGroups"] == sorted(rule["apiGroups"])
            assert rule.get("resourceNames", ["x"]), "an empty resourceNames would mean no names"


def test_every_binding_refers_to_a_default_role() -> None:
    for binding in bp.cluster_role_bindings():
        assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                                      "name": binding["roleRef"]["name"]}
        assert binding["roleRef"]["name"] in ROLES, binding["metadata"]["name"]
    namespaced = {(r["metadata"]["namespace"], r["metadata"]["name"]) for r in bp.roles()}
    for binding in bp.role_bindings():
        ref = binding["roleRef"]
        assert ref["kind"] == "Role"
        assert (binding["metadata"]["namespace"], ref["name"]) in namespaced, binding["metadata"]["name"]


def test_each_call_returns_new_objects() -> None:
    first = bp.cluster_roles()
    first[0]["rules"].append({"verbs": ["get"], "nonResourceURLs": ["/x"]})
    by_name(first)["system:basic-user"]["rules"][0]["verbs"].append("delete")
    assert bp.cluster_roles() != first
    assert "delete" not in by_name(bp.cluster_roles())["system:basic-user"]["rules"][0]["verbs"]


# -- what users rely on --------------------------------------------------------

def test_cluster_admin_may_do_everything_and_is_given_to_system_masters() -> None:
    assert ROLES["cluster-admin"]["rules"] == [
        {"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]},
        {"verbs": ["*"], "nonResourceURLs": ["*"]},
    ]
    assert subjects(BINDINGS["cluster-admin"]) == [("Group", "system:masters")]


@pytest.mark.parametrize("name, selects, labelled_into", [
    ("admin", "aggregate-to-admin", None),
    ("edit", "aggregate-to-edit", "aggregate-to-admin"),
    ("view", "aggregate-to-view", "aggregate-to-edit"),
])
def test_admin_edit_and_view_are_aggregated_by_label(name: str, selects: str, labelled_into: str | None) -> None:
    role = ROLES[name]
    assert role["rules"] == []
    assert role["aggregationRule"] == {"clusterRoleSelectors": [
        {"matchLabels": {f"rbac.authorization.k8s.io/{selects}": "true"}}]}
    extra = {k for k in role["metadata"]["labels"] if k.startswith("rbac.authorization.k8s.io/")}
    assert extra == ({f"rbac.authorization.k8s.io/{labelled_into}"} if labelled_into else set())
    # Its rules come from the system:aggregate-to-* role carrying the label it selects.
    feeder = ROLES[f"system:{selects}"]
    assert feeder["metadata"]["labels"][f"rbac.authorization.k8s.io/{selects}"] == "true"
    assert feeder["rules"] and "aggregationRule" not in feeder


def test_view_reads_workloads_but_never_secrets_or_anything_escalating() -> None:
    view = aggregated("view")
    assert allows(view, "list", "", "pods")
    assert allows(view, "get", "apps", "deployments")
    assert allows(view, "watch", "", "pods/log")
    assert allows(view, "get", "", "namespaces")
    for rule in view:
        assert set(rule["verbs"]) <= {"get", "list", "watch"}, rule
        assert "*" not in rule["resources"], rule
        escalating = {"secrets", "pods/exec", "pods/attach", "pods/portforward", "pods/proxy",
                      "services/proxy", "serviceaccounts/token", "roles", "rolebindings"}
        assert not escalating & set(rule["resources"]), rule


def test_edit_and_admin_build_on_view() -> None:
    view, edit, admin = aggregated("view"), aggregated("edit"), aggregated("admin")
    assert all(rule in edit for rule in view)
    assert all(rule in admin for rule in edit)
    assert allows(edit, "create", "apps", "deployments")
    assert allows(edit, "get", "", "secrets") and allows(edit, "create", "", "pods/exec")
    assert not allows(edit, "create", "rbac.authorization.k8s.io", "rolebindings")
    assert allows(admin, "create", "rbac.authorization.k8s.io", "rolebindings")
    assert allows(admin, "create", "authorization.k8s.io", "localsubjectaccessreviews")
    assert not allows(admin, "create", "", "namespaces")  # a namespace admin, not a cluster one


def test_every_user_may_ask_what_it_may_do() -> None:
    rules = ROLES["system:basic-user"]["rules"]
    assert allows(rules, "create", "authorization.k8s.io", "selfsubjectaccessreviews")
    assert allows(rules, "create", "authorization.k8s.io", "selfsubjectrulesreviews")
    assert allows(rules, "create", "authentication.k8s.io", "selfsubjectreviews")
    assert subjects(BINDINGS["system:basic-user"]) == [("Group", "system:authenticated")]


def test_discovery_is_for_authenticated_users_and_health_for_everyone() -> None:
    assert allows_url(ROLES["system:discovery"]["rules"], "get", "/apis/apps/v1")
    assert subjects(BINDINGS["system:discovery"]) == [("Group", "system:authenticated")]
    public = ROLES["system:public-info-viewer"]["rules"]
    assert allows_url(public, "get", "/readyz") and allows_url(public, "get", "/version")
    assert not allows_url(public, "get", "/apis")
    assert subjects(BINDINGS["system:public-info-viewer"]) == [
        ("Group", "system:authenticated"), ("Group", "system:unauthenticated")]
    assert allows_url(ROLES["system:monitoring"]["rules"], "get", "/livez/etcd")
    assert subjects(BINDINGS["system:monitoring"]) == [("Group", "system:monitoring")]
    assert subjects(BINDINGS["system:service-account-issuer-discovery"]) == [("Group", "system:serviceaccounts")]


def test_node_bootstrapper_may_request_and_watch_its_certificate() -> None:
    rules = ROLES["system:node-bootstrapper"]["rules"]
    assert rules == [{"verbs": ["create", "get", "list", "watch"], "apiGroups": ["certificates.k8s.io"],
                      "resources": ["certificatesigningrequests"]}]


def test_approver_roles_name_their_signer() -> None:
    for short in ("kubelet-serving", "kube-apiserver-client", "kube-apiserver-client-kubelet", "legacy-unknown"):
        rules = ROLES[f"system:certificates.k8s.io:{short}-approver"]["rules"]
        assert allows(rules, "approve", "certificates.k8s.io", "signers", f"kubernetes.io/{short}")
        assert not allows(rules, "approve", "certificates.k8s.io", "signers", "example.com/other")


def test_component_bindings_follow_upstream() -> None:
    assert subjects(BINDINGS["system:kube-controller-manager"]) == [("User", "system:kube-controller-manager")]
    assert subjects(BINDINGS["system:kube-scheduler"]) == [("User", "system:kube-scheduler")]
    assert subjects(BINDINGS["system:volume-scheduler"]) == [("User", "system:kube-scheduler")]
    assert subjects(BINDINGS["system:kube-dns"]) == [(SA_KIND, "kube-system/kube-dns")]
    assert subjects(BINDINGS["system:node-proxier"]) == [("User", "system:kube-proxy")]
    # Upstream keeps system:node bound to no one: the Node authorizer grants kubelets their access.
    assert "subjects" not in BINDINGS["system:node"]


def test_scheduler_may_bind_pods_and_allocate_devices() -> None:
    rules = ROLES["system:kube-scheduler"]["rules"]
    assert allows(rules, "create", "", "pods/binding")
    assert allows(rules, "update", "coordination.k8s.io", "leases", "kube-scheduler")
    assert not allows(rules, "update", "coordination.k8s.io", "leases", "kube-controller-manager")
    assert allows(rules, "update", "resource.k8s.io", "resourceclaims/status")
    assert allows(rules, "patch", "resource.k8s.io", "resourceclaims/binding")


CONTROLLERS = [
    "attachdetach-controller", "certificate-controller", "clusterrole-aggregation-controller", "cronjob-controller",
    "daemon-set-controller", "deployment-controller", "disruption-controller", "endpoint-controller",
    "endpointslice-controller", "endpointslicemirroring-controller", "ephemeral-volume-controller",
    "expand-controller", "generic-garbage-collector", "horizontal-pod-autoscaler", "job-controller",
    "legacy-service-account-token-cleaner", "namespace-controller", "node-controller", "persistent-volume-binder",
    "pod-garbage-collector", "pv-protection-controller", "pvc-protection-controller", "replicaset-controller",
    "replication-controller", "resource-claim-controller", "resourcequota-controller", "root-ca-cert-publisher",
    "route-controller", "selinux-warning-controller", "service-account-controller", "service-cidrs-controller",
    "service-controller", "statefulset-controller", "ttl-after-finished-controller", "ttl-controller",
    "validatingadmissionpolicy-status-controller", "volumeattributesclass-protection-controller",
    "device-taint-eviction-controller",
]


def test_every_controller_has_a_role_bound_to_its_account_and_to_the_controller_manager() -> None:
    controller_roles = {n for n in ROLES if n.startswith("system:controller:")}
    assert controller_roles == {f"system:controller:{c}" for c in CONTROLLERS}
    for name in CONTROLLERS:
        binding = BINDINGS[f"system:controller:{name}"]
        assert binding["roleRef"]["name"] == f"system:controller:{name}"
        # Upstream's subject, then pinnace's: its controller manager runs all controllers as one user.
        assert subjects(binding) == [(SA_KIND, f"kube-system/{name}"), ("User", "system:kube-controller-manager")]


def test_controller_roles_grant_what_the_controllers_do() -> None:
    assert allows(ROLES["system:controller:deployment-controller"]["rules"], "create", "apps", "replicasets")
    assert allows(ROLES["system:controller:generic-garbage-collector"]["rules"], "delete", "batch", "jobs")
    aggregation = ROLES["system:controller:clusterrole-aggregation-controller"]["rules"]
    assert allows(aggregation, "escalate", "rbac.authorization.k8s.io", "clusterroles")
    signer = ROLES["system:controller:certificate-controller"]["rules"]
    assert allows(signer, "sign", "certificates.k8s.io", "signers", "kubernetes.io/kubelet-serving")
    assert not allows(signer, "approve", "certificates.k8s.io", "signers", "kubernetes.io/kubelet-serving")
    cleaner = ROLES["system:controller:legacy-service-account-token-cleaner"]["rules"]
    assert allows(cleaner, "get", "", "configmaps", "kube-apiserver-legacy-service-account-token-tracking")
    assert not allows(cleaner, "get", "", "configmaps", "other")


def test_namespaced_defaults() -> None:
    roles = {(r["metadata"]["namespace"], r["metadata"]["name"]): r for r in bp.roles()}
    assert set(roles) == {
        ("kube-system", "extension-apiserver-authentication-reader"),
        ("kube-system", "system::leader-locking-kube-controller-manager"),
        ("kube-system", "system::leader-locking-kube-scheduler"),
        ("kube-system", "system:controller:bootstrap-signer"),
        ("kube-system", "system:controller:cloud-provider"),
        ("kube-system", "system:controller:token-cleaner"),
        ("kube-public", "system:controller:bootstrap-signer"),
        ("kube-system", "system:pinnace-dns"),  # pinnace's DNS publishes kube-dns
    }
    reader = roles[("kube-system", "extension-apiserver-authentication-reader")]["rules"]
    assert allows(reader, "get", "", "configmaps", "extension-apiserver-authentication")
    assert not allows(reader, "get", "", "configmaps", "other")
    signer = roles[("kube-public", "system:controller:bootstrap-signer")]["rules"]
    assert allows(signer, "update", "", "configmaps", "cluster-info")
    assert not allows(signer, "update", "", "configmaps", "other")

    bindings = {(b["metadata"]["namespace"], b["metadata"]["name"]): b for b in bp.role_bindings()}
    reader_binding = bindings[("kube-system", "system::extension-apiserver-authentication-reader")]
    assert reader_binding["roleRef"]["name"] == "extension-apiserver-authentication-reader"
    assert subjects(reader_binding) == [("User", "system:kube-controller-manager"), ("User", "system:kube-scheduler")]
    assert subjects(bindings[("kube-system", "system::leader-locking-kube-scheduler")]) == [
        ("User", "system:kube-scheduler"), (SA_KIND, "kube-system/kube-scheduler")]
    for ns, name in (("kube-system", "bootstrap-signer"), ("kube-system", "cloud-provider"),
                     ("kube-system", "token-cleaner"), ("kube-public", "bootstrap-signer")):
        assert subjects(bindings[(ns, f"system:controller:{name}")]) == [
            (SA_KIND, f"kube-system/{name}"), ("User", "system:kube-controller-manager")]


# -- pinnace's own components --------------------------------------------------

def test_pinnace_dns_may_read_what_coredns_reads() -> None:
    rules = ROLES["system:pinnace-dns"]["rules"]
    for resource in ("services", "endpoints", "pods", "namespaces"):
        assert allows(rules, "watch", "", resource)
    assert allows(rules, "list", "discovery.k8s.io", "endpointslices")
    assert not allows(rules, "get", "", "secrets")
    assert all(set(r["verbs"]) == {"get", "list", "watch"} for r in rules)
    assert subjects(BINDINGS["system:pinnace-dns"]) == [("User", "system:pinnace-dns")]


def test_pinnace_nodes_get_the_proxy_role_and_system_node_only_through_the_node_authorizer(
        ) -> None:
    assert BINDINGS["pinnace:node-proxier"]["roleRef"]["name"] == "system:node-proxier"
    assert subjects(BINDINGS["pinnace:node-proxier"]) == [("Group", "system:nodes")]
    assert "pinnace:node" not in BINDINGS
    assert not any(("Group", "system:nodes") in subjects(b) for b in BINDINGS.values()
                   if b["roleRef"]["name"] == "system:node")
    proxier = ROLES["system:node-proxier"]["rules"]
    assert allows(proxier, "watch", "discovery.k8s.io", "endpointslices")
    assert allows(proxier, "list", "", "services")
