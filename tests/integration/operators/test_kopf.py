"""A real third-party operator framework (kopf) reconciles a custom resource
against pinnace: CRD watch, handlers, status patches, ownerReferences."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import Server, wait_for

# Status keeps what kopf writes (handler results), as operator CRDs usually allow.
CRD = """
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: crontabs.ops.example.com
spec:
  group: ops.example.com
  scope: Namespaced
  names: {plural: crontabs, singular: crontab, kind: CronTab, shortNames: [oct]}
  versions:
  - name: v1
    served: true
    storage: true
    subresources: {status: {}}
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            properties:
              cronSpec: {type: string}
          status:
            type: object
            x-kubernetes-preserve-unknown-fields: true
"""

OPERATOR = Path(__file__).with_name("crontab_operator.py")


def test_kopf_operator_reconciles_custom_resources(server: Server, namespace: str) -> None:
    k = server.kubectl
    k("apply", "-f", "-", input=CRD)
    k("wait", "--for=condition=Established", "crd/crontabs.ops.example.com", "--timeout=10s")
    log = server.data_dir / f"kopf-{namespace}.log"
    env = dict(os.environ, KUBECONFIG=str(server.kubeconfig))
    with log.open("w") as out:
        op = subprocess.Popen([sys.executable, "-m", "kopf", "run", "--standalone",
                               "--namespace", namespace, str(OPERATOR)],
                              stdout=out, stderr=subprocess.STDOUT, env=env,
                              start_new_session=True)
    try:
        k("-n", namespace, "apply", "-f", "-", input="""
apiVersion: ops.example.com/v1
kind: CronTab
metadata: {name: nightly}
spec: {cronSpec: "0 3 * * *"}
""")
        cm = wait_for(lambda: (r := k("-n", namespace, "get", "cm", "nightly-schedule", "-o",
                                       "json", check=False)).returncode == 0 and json.loads(
            r.stdout), timeout=30, what="the operator's ConfigMap")
        assert cm["data"] == {"schedule": "0 3 * * *"}
        assert cm["metadata"]["ownerReferences"][0]["kind"] == "CronTab"
        status = wait_for(lambda: json.loads(k("-n", namespace, "get", "oct", "nightly", "-o",
                                               "json").stdout).get("status", {}).get(
            "reconcile"), timeout=30, what="kopf's handler result in status")
        assert status == {"configMap": "nightly-schedule"}
        k("-n", namespace, "patch", "oct", "nightly", "--type=merge",
          "-p", '{"spec":{"cronSpec":"*/5 * * * *"}}')
        wait_for(lambda: json.loads(k("-n", namespace, "get", "cm", "nightly-schedule", "-o",
                                      "json").stdout)["data"]["schedule"] == "*/5 * * * *",
                 timeout=30, what="the update reconciled")
    finally:
        op.terminate()
        try:
            op.wait(15)
        except subprocess.TimeoutExpired:
            op.kill()
            op.wait()
    assert "Traceback" not in log.read_text() or "CancelledError" in log.read_text(), \
        log.read_text()[-3000:]
