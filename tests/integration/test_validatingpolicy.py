"""ValidatingAdmissionPolicy through kubectl: a Deny binding refuses with
kube-apiserver's message, a Warn binding makes kubectl print the warning,
params come from a ConfigMap, and a namespaceSelector limits where a binding
applies. Policies are cluster-wide, so each test scopes its bindings to its
own namespaces (by the kubernetes.io/metadata.name label) and removes them."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from tests.conftest import Server, wait_for

API = "admissionregistration.k8s.io/v1"
RULES = [{"apiGroups": ["apps"], "apiVersions": ["v1"], "operations": ["CREATE", "UPDATE"],
          "resources": ["deployments"]}]


def _in(*namespaces: str) -> dict[str, Any]:
    return {"namespaceSelector": {"matchExpressions": [
        {"key": "kubernetes.io/metadata.name", "operator": "In", "values": list(namespaces)}]}}


@contextmanager
def applied(cluster: Server, *objs: dict[str, Any]) -> Iterator[None]:
    cluster.kubectl("apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List",
                                                          "items": list(objs)}))
    try:
        yield
    finally:
        for o in reversed(objs):
            cluster.kubectl("delete", o["kind"], o["metadata"]["name"], "--ignore-not-found")


def policy(name: str, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": API, "kind": "ValidatingAdmissionPolicy", "metadata": {"name": name},
            "spec": {"failurePolicy": "Fail", "matchConstraints": {"resourceRules": RULES},
                     **spec}}


def binding(name: str, policy_name: str, actions: list[str], **spec: Any) -> dict[str, Any]:
    return {"apiVersion": API, "kind": "ValidatingAdmissionPolicyBinding",
            "metadata": {"name": name},
            "spec": {"policyName": policy_name, "validationActions": actions, **spec}}


def create_deployment(cluster: Server, ns: str, name: str, replicas: int
                      ) -> subprocess.CompletedProcess[str]:
    return cluster.kubectl("create", "deployment", name, "--image=busybox",
                           f"--replicas={replicas}", "-n", ns, check=False)


def refused_eventually(cluster: Server, ns: str, name: str, replicas: int
                       ) -> subprocess.CompletedProcess[str]:
    """The server learns of a new binding through its watch: retry until it refuses."""
    def attempt() -> subprocess.CompletedProcess[str] | None:
        proc = create_deployment(cluster, ns, name, replicas)
        if proc.returncode == 0:
            cluster.kubectl("delete", "deployment", name, "-n", ns, "--wait=false")
            return None
        return proc
    return wait_for(attempt, what="the policy to refuse")


def test_deny_refuses_with_kube_apiserver_message(cluster: Server, cluster_ns: str) -> None:
    ns, p, b = cluster_ns, f"{cluster_ns}-replicas", f"{cluster_ns}-deny"
    with applied(cluster, policy(p, validations=[{"expression": "object.spec.replicas <= 5"}]),
                 binding(b, p, ["Deny"], matchResources=_in(ns))):
        proc = refused_eventually(cluster, ns, "web", 10)
        assert (f'error: failed to create deployment: deployments.apps "web" is forbidden: '
                f"ValidatingAdmissionPolicy '{p}' with binding '{b}' denied request: "
                "failed expression: object.spec.replicas <= 5") in proc.stderr, proc.stderr
        done = create_deployment(cluster, ns, "web", 3)
        assert done.returncode == 0 and "deployment.apps/web created" in done.stdout
        # An update is judged too. The refusal is Invalid (422) with the message as its
        # one cause, which kubectl prints the way it prints field errors, as it does
        # for kube-apiserver.
        proc = cluster.kubectl("patch", "deployment", "web", "-n", ns, "-p",
                               '{"spec":{"replicas":7}}', check=False)
        assert proc.returncode != 0
        assert (f'The deployments "web" is invalid: : ValidatingAdmissionPolicy \'{p}\' with '
                f"binding '{b}' denied request: failed expression: object.spec.replicas <= 5"
                ) in proc.stderr, proc.stderr


def test_warn_binding_makes_kubectl_print_the_warning(cluster: Server, cluster_ns: str) -> None:
    ns, p, b = cluster_ns, f"{cluster_ns}-warn", f"{cluster_ns}-warn"
    with applied(cluster, policy(p, validations=[{
            "expression": "object.spec.replicas <= 5",
            "messageExpression": "'replicas ' + string(object.spec.replicas) + ' is above 5'"}]),
            binding(b, p, ["Warn"], matchResources=_in(ns))):
        expected = (f"Warning: Validation failed for ValidatingAdmissionPolicy '{p}' with "
                    f"binding '{b}': replicas 8 is above 5")

        def warned() -> subprocess.CompletedProcess[str] | None:
            proc = create_deployment(cluster, ns, "web", 8)
            assert proc.returncode == 0, proc.stderr
            if expected in proc.stderr:
                return proc
            cluster.kubectl("delete", "deployment", "web", "-n", ns, "--wait=false")
            return None
        proc = wait_for(warned, what="the warning")
        assert "deployment.apps/web created" in proc.stdout


def test_params_from_a_configmap(cluster: Server, cluster_ns: str) -> None:
    ns, p, b = cluster_ns, f"{cluster_ns}-params", f"{cluster_ns}-params"
    cluster.kubectl("create", "configmap", "limits", "-n", ns, "--from-literal=max=2")
    with applied(cluster, policy(
            p, paramKind={"apiVersion": "v1", "kind": "ConfigMap"},
            validations=[{"expression": "object.spec.replicas <= int(params.data.max)",
                          "messageExpression": "'at most ' + params.data.max + ' replicas'",
                          "reason": "Forbidden"}]),
            binding(b, p, ["Deny"], matchResources=_in(ns),
                    paramRef={"name": "limits", "parameterNotFoundAction": "Deny"})):
        proc = refused_eventually(cluster, ns, "web", 3)
        assert ('error: failed to create deployment: deployments.apps "web" is forbidden: '
                f"ValidatingAdmissionPolicy '{p}' with binding '{b}' denied request: at most 2 "
                "replicas") in proc.stderr, proc.stderr
        assert create_deployment(cluster, ns, "web", 2).returncode == 0
        cluster.kubectl("patch", "configmap", "limits", "-n", ns, "-p",
                        '{"data":{"max":"4"}}')
        assert create_deployment(cluster, ns, "web3", 3).returncode == 0


def test_namespace_selector_binding_applies_only_to_labelled_namespaces(
        cluster: Server, cluster_ns: str) -> None:
    ns, p, b = cluster_ns, f"{cluster_ns}-sel", f"{cluster_ns}-sel"
    other = f"{ns}-x"
    cluster.kubectl("create", "namespace", other)
    label = f"vap-test={ns}"[:63]
    cluster.kubectl("label", "namespace", ns, label)
    key, value = label.split("=")
    try:
        with applied(cluster, policy(p, validations=[{"expression": "object.spec.replicas <= 1"}]),
                     binding(b, p, ["Deny"], matchResources={
                         "namespaceSelector": {"matchLabels": {key: value}}})):
            proc = refused_eventually(cluster, ns, "web", 2)
            assert "denied request: failed expression: object.spec.replicas <= 1" in proc.stderr
            assert create_deployment(cluster, other, "web", 2).returncode == 0
    finally:
        cluster.kubectl("delete", "namespace", other, "--wait=false")


def test_policy_objects_are_served(cluster: Server) -> None:
    out = cluster.kubectl("api-resources", "--api-group=admissionregistration.k8s.io").stdout
    assert "validatingadmissionpolicies" in out and "validatingadmissionpolicybindings" in out


def test_bad_policies_and_bindings_are_refused(cluster: Server, cluster_ns: str) -> None:
    bad_policy = {"apiVersion": API, "kind": "ValidatingAdmissionPolicy",
                  "metadata": {"name": f"bad-{cluster_ns}"},
                  "spec": {"failurePolicy": "Sometimes",
                           "matchConstraints": {"resourceRules": RULES},
                           "validations": [{"expression": "object.spec.replicas <=",
                                            "reason": "Teapot"}]}}
    proc = cluster.kubectl("create", "-f", "-", input=json.dumps(bad_policy), check=False)
    assert proc.returncode != 0
    for expected in ('spec.failurePolicy: Unsupported value: "Sometimes"',
                     "spec.validations[0].expression: Invalid value: \"object.spec.replicas <=\""
                     ": compilation failed:",
                     'spec.validations[0].reason: Unsupported value: "Teapot"'):
        assert expected in proc.stderr, proc.stderr
    bad_binding = {"apiVersion": API, "kind": "ValidatingAdmissionPolicyBinding",
                   "metadata": {"name": f"bad-{cluster_ns}"},
                   "spec": {"validationActions": ["Deny", "Warn"]}}
    proc = cluster.kubectl("create", "-f", "-", input=json.dumps(bad_binding), check=False)
    assert "spec.policyName: Required value" in proc.stderr
    assert "must not contain both Deny and Warn" in proc.stderr
