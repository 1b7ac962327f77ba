"""apiregistration.k8s.io (issue 11, item 5) through kubectl: a Local,
Available APIService for every built-in group version, as kube-apiserver's
autoregister keeps them, and charts' own APIServices stored and validated."""

from __future__ import annotations

import json

from tests.conftest import Server

CUSTOM_METRICS = """
apiVersion: apiregistration.k8s.io/v1
kind: APIService
metadata: {name: v1beta1.custom.metrics.k8s.io}
spec:
  group: custom.metrics.k8s.io
  version: v1beta1
  groupPriorityMinimum: 100
  versionPriority: 100
  insecureSkipTLSVerify: true
  service: {name: adapter, namespace: monitoring}
"""


def test_every_built_in_group_version_has_a_local_available_apiservice(server: Server) -> None:
    rows = {line.split()[0]: line.split()[1:3]
            for line in server.kubectl("get", "apiservices").stdout.splitlines()[1:]}
    for name in ("v1.", "v1.apps", "v1.batch", "v2.autoscaling", "v1.node.k8s.io",
                 "v1beta1.metrics.k8s.io", "v1.apiregistration.k8s.io",
                 "v1.admissionregistration.k8s.io", "v1.flowcontrol.apiserver.k8s.io"):
        assert rows.get(name) == ["Local", "True"], (name, rows)
    # What HPA guides check to see that metrics work.
    metrics = json.loads(server.kubectl("get", "apiservice", "v1beta1.metrics.k8s.io",
                                        "-o", "json").stdout)
    cond = metrics["status"]["conditions"][0]
    assert (cond["type"], cond["status"], cond["reason"]) == ("Available", "True", "Local")


def test_a_charts_apiservice_is_stored_and_a_wrong_one_refused(server: Server) -> None:
    server.kubectl("apply", "-f", "-", input=CUSTOM_METRICS)
    row = server.kubectl("get", "apiservice", "v1beta1.custom.metrics.k8s.io").stdout
    assert "monitoring/adapter" in row
    bad = server.kubectl("apply", "-f", "-", check=False, input="""
apiVersion: apiregistration.k8s.io/v1
kind: APIService
metadata: {name: wrong.name}
spec: {group: x.io, version: v1, groupPriorityMinimum: 0, versionPriority: 5}
""")
    assert 'metadata.name: Invalid value: "wrong.name": must be `spec.version+"."+spec.group`: ' \
           '"v1.x.io"' in bad.stderr
    assert "spec.groupPriorityMinimum: Invalid value: 0: must be positive and less than 20000" \
        in bad.stderr
    server.kubectl("delete", "apiservice", "v1beta1.custom.metrics.k8s.io")
