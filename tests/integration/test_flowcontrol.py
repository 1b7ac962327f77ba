"""flowcontrol.apiserver.k8s.io: kube-apiserver's default flow schemas and
priority levels exist, read through kubectl as on Kubernetes, and bad ones
are refused. (pinnace stores them; it does not queue requests by them.)"""

from __future__ import annotations

import json

from tests.conftest import Server


def test_the_default_configuration_is_there(server: Server) -> None:
    table = server.kubectl("get", "flowschemas").stdout.splitlines()
    assert table[0].split() == ["NAME", "PRIORITYLEVEL", "MATCHINGPRECEDENCE",
                                "DISTINGUISHERMETHOD", "AGE", "MISSINGPL"]
    rows = {line.split()[0]: line.split() for line in table[1:]}
    assert set(rows) == {"exempt", "probes", "system-leader-election", "endpoint-controller",
                          "workload-leader-election", "system-node-high", "system-nodes",
                          "kube-controller-manager", "kube-scheduler",
                          "kube-system-service-accounts", "service-accounts", "global-default",
                          "catch-all"}
    assert rows["catch-all"][1:4] == ["catch-all", "10000", "ByUser"]
    assert rows["probes"][1:4] == ["exempt", "2", "<none>"]
    assert all(r[-1] == "False" for r in rows.values())
    levels = server.kubectl("get", "prioritylevelconfigurations").stdout.splitlines()
    assert levels[0].split() == ["NAME", "TYPE", "NOMINALCONCURRENCYSHARES", "QUEUES",
                                 "HANDSIZE", "QUEUELENGTHLIMIT", "AGE"]
    by_name = {line.split()[0]: line.split()[1:6] for line in levels[1:]}
    assert by_name["workload-low"] == ["Limited", "100", "128", "6", "50"]
    assert by_name["exempt"] == ["Exempt", "<none>", "<none>", "<none>", "<none>"]
    assert by_name["catch-all"] == ["Limited", "5", "<none>", "<none>", "<none>"]


def test_a_chart_adds_its_own_and_bad_ones_are_refused(server: Server) -> None:
    level = {"apiVersion": "flowcontrol.apiserver.k8s.io/v1", "kind": "PriorityLevelConfiguration",
             "metadata": {"name": "chart-level"},
             "spec": {"type": "Limited", "limited": {
                 "nominalConcurrencyShares": 10, "limitResponse": {
                     "type": "Queue", "queuing": {"queues": 4, "handSize": 8,
                                                  "queueLengthLimit": 10}}}}}
    proc = server.kubectl("create", "-f", "-", input=json.dumps(level), check=False)
    assert "spec.limited.limitResponse.queuing.handSize: Invalid value: 8: should not be " \
           "greater than queues (4)" in proc.stderr
    level["spec"]["limited"]["limitResponse"]["queuing"]["handSize"] = 2  # type: ignore[index]
    server.kubectl("create", "-f", "-", input=json.dumps(level))
    schema = {"apiVersion": "flowcontrol.apiserver.k8s.io/v1", "kind": "FlowSchema",
              "metadata": {"name": "chart-schema"},
              "spec": {"priorityLevelConfiguration": {"name": "chart-level"},
                       "matchingPrecedence": 20000,
                       "rules": [{"subjects": [{"kind": "Group", "group": {"name": "ops"}}],
                                  "nonResourceRules": [{"verbs": ["*"],
                                                        "nonResourceURLs": ["*"]}]}]}}
    proc = server.kubectl("create", "-f", "-", input=json.dumps(schema), check=False)
    assert "spec.matchingPrecedence: Invalid value: 20000: must not be greater than 10000" \
        in proc.stderr
    schema["spec"]["matchingPrecedence"] = 5000  # type: ignore[index]
    server.kubectl("create", "-f", "-", input=json.dumps(schema))
    server.kubectl("delete", "flowschema", "chart-schema")
    server.kubectl("delete", "prioritylevelconfiguration", "chart-level")
