"""node.k8s.io RuntimeClass (issue 11, item 5), through kubectl: the kind is
served and validated, and pods naming one get its overhead and scheduling
constraints, or a refusal, from the RuntimeClass admission plugin."""

from __future__ import annotations

import json

from tests.conftest import Server

RUNTIME_CLASS = """
apiVersion: node.k8s.io/v1
kind: RuntimeClass
metadata: {name: %(name)s}
handler: runsc
overhead:
  podFixed: {cpu: 250m, memory: 120Mi}
scheduling:
  nodeSelector: {sandbox: gvisor}
  tolerations: [{key: sandbox, operator: Exists, effect: NoSchedule}]
"""


def _pod(name: str, ns: str, runtime_class: str, **spec: object) -> str:
    return json.dumps({"apiVersion": "v1", "kind": "Pod",
                       "metadata": {"name": name, "namespace": ns},
                       "spec": {"runtimeClassName": runtime_class,
                                "containers": [{"name": "c", "image": "busybox"}], **spec}})


def test_a_pod_naming_a_runtime_class_gets_its_overhead_and_scheduling(
        server: Server, namespace: str) -> None:
    k = server.kubectl
    rc = f"gvisor-{namespace}"
    k("apply", "-f", "-", input=RUNTIME_CLASS % {"name": rc})
    table = k("get", "runtimeclass", rc).stdout.split()
    assert table[:3] == ["NAME", "HANDLER", "AGE"] and table[4] == "runsc"
    k("create", "-f", "-", input=_pod("sandboxed", namespace, rc, nodeSelector={"zone": "a"}))
    pod = json.loads(k("get", "pod", "sandboxed", "-n", namespace, "-o", "json").stdout)
    assert pod["spec"]["overhead"] == {"cpu": "250m", "memory": "120Mi"}
    assert pod["spec"]["nodeSelector"] == {"zone": "a", "sandbox": "gvisor"}
    assert {"key": "sandbox", "operator": "Exists", "effect": "NoSchedule"} in \
        pod["spec"]["tolerations"]

    missing = k("create", "-f", "-", input=_pod("lost", namespace, "nope"), check=False)
    assert 'pods "lost" is forbidden: pod rejected: RuntimeClass "nope" not found' in \
        missing.stderr
    clash = k("create", "-f", "-", input=_pod("clash", namespace, rc,
                                              nodeSelector={"sandbox": "kata"}), check=False)
    assert "conflict: runtimeClass.scheduling.nodeSelector[sandbox] = gvisor; " \
           "pod.spec.nodeSelector[sandbox] = kata" in clash.stderr
    wrong = k("create", "-f", "-", input=_pod("wrong", namespace, rc,
                                              overhead={"cpu": "1"}), check=False)
    assert "Pod's Overhead doesn't match RuntimeClass's defined Overhead" in wrong.stderr


def test_runtime_classes_are_validated(server: Server, namespace: str) -> None:
    k = server.kubectl
    bad = k("apply", "-f", "-", input="apiVersion: node.k8s.io/v1\nkind: RuntimeClass\n"
                                       f"metadata: {{name: bad-{namespace}}}\nhandler: Not_A_Label\n",
            check=False)
    assert 'The RuntimeClass "bad-' in bad.stderr and "handler: Invalid value" in bad.stderr
    k("apply", "-f", "-", input=RUNTIME_CLASS % {"name": f"fixed-{namespace}"})
    changed = k("patch", "runtimeclass", f"fixed-{namespace}", "--type=merge",
                "-p", '{"handler": "kata"}', check=False)
    assert "handler: Invalid value" in changed.stderr and "field is immutable" in changed.stderr
