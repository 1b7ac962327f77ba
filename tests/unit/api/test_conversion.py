"""HPA v1 <-> v2 and core/v1 <-> events.k8s.io/v1 Event conversion."""

import orjson

from pinnace.api.conversion import (
    CONDITIONS_ANNOTATION,
    METRICS_ANNOTATION,
    convert,
    to_internal,
)


def hpa_v2():
    return {"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": "web", "namespace": "default"},
            "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment",
                                        "name": "web"},
                     "minReplicas": 1, "maxReplicas": 10,
                     "metrics": [
                         {"type": "Resource", "resource": {"name": "cpu", "target": {
                             "type": "Utilization", "averageUtilization": 50}}},
                         {"type": "Pods", "pods": {"metric": {"name": "qps"}, "target": {
                             "type": "AverageValue", "averageValue": "1k"}}}]},
            "status": {"currentReplicas": 2, "desiredReplicas": 3,
                       "currentMetrics": [{"type": "Resource", "resource": {
                           "name": "cpu", "current": {"averageUtilization": 42,
                                                      "averageValue": "100m"}}}],
                       "conditions": [{"type": "AbleToScale", "status": "True"}]}}


def test_hpa_v2_to_v1_keeps_other_metrics_in_annotations():
    v1 = convert("autoscaling", "HorizontalPodAutoscaler", hpa_v2(), "v1")
    assert v1["apiVersion"] == "autoscaling/v1"
    assert v1["spec"]["targetCPUUtilizationPercentage"] == 50
    assert v1["status"]["currentCPUUtilizationPercentage"] == 42
    ann = v1["metadata"]["annotations"]
    assert orjson.loads(ann[METRICS_ANNOTATION]) == [
        {"type": "Pods", "pods": {"metricName": "qps", "targetAverageValue": "1k"}}]
    assert orjson.loads(ann[CONDITIONS_ANNOTATION])[0]["type"] == "AbleToScale"


def test_hpa_round_trip():
    original = hpa_v2()
    back = convert("autoscaling", "HorizontalPodAutoscaler",
                   convert("autoscaling", "HorizontalPodAutoscaler", original, "autoscaling/v1"),
                   "autoscaling/v2")
    assert back["metadata"] == original["metadata"]
    # upstream puts the annotation metrics first and the CPU target last
    assert back["spec"]["metrics"] == original["spec"]["metrics"][::-1]
    assert back["status"]["conditions"] == original["status"]["conditions"]
    assert back["status"]["currentMetrics"][0]["resource"]["current"]["averageUtilization"] == 42


def test_hpa_v1_to_v2_simple():
    v1 = {"apiVersion": "autoscaling/v1", "kind": "HorizontalPodAutoscaler",
          "metadata": {"name": "w"},
          "spec": {"scaleTargetRef": {"kind": "Deployment", "name": "w"}, "maxReplicas": 4,
                   "targetCPUUtilizationPercentage": 70}}
    v2 = convert("autoscaling", "HorizontalPodAutoscaler", v1, "v2")
    assert v2["spec"]["metrics"] == [{"type": "Resource", "resource": {
        "name": "cpu", "target": {"type": "Utilization", "averageUtilization": 70}}}]
    assert "annotations" not in v2["metadata"]
    assert v1["spec"]["targetCPUUtilizationPercentage"] == 70  # input untouched


def test_event_core_to_events_and_back():
    core = {"apiVersion": "v1", "kind": "Event",
            "metadata": {"name": "web.17a", "namespace": "default"},
            "involvedObject": {"kind": "Pod", "name": "web", "namespace": "default"},
            "reason": "Scheduled", "message": "Successfully assigned default/web to node1",
            "source": {"component": "default-scheduler"}, "type": "Normal", "count": 1,
            "firstTimestamp": "2024-01-01T00:00:00Z", "lastTimestamp": "2024-01-01T00:00:00Z",
            "reportingComponent": "default-scheduler", "reportingInstance": "sched-1",
            "action": "Binding"}
    ev = convert("", "Event", core, "events.k8s.io/v1")
    assert ev["apiVersion"] == "events.k8s.io/v1"
    assert ev["regarding"] == core["involvedObject"]
    assert ev["note"] == core["message"]
    assert ev["deprecatedSource"] == {"component": "default-scheduler"}
    assert ev["deprecatedCount"] == 1
    assert ev["deprecatedFirstTimestamp"] == "2024-01-01T00:00:00Z"
    assert ev["reportingController"] == "default-scheduler"
    assert "message" not in ev and "involvedObject" not in ev
    back = convert("events.k8s.io", "Event", ev, "v1")
    assert back == core


def test_same_version_is_identity():
    obj = hpa_v2()
    assert convert("autoscaling", "HorizontalPodAutoscaler", obj, "v2") is obj


def test_event_bare_version_as_the_registry_calls_it():
    core = {"apiVersion": "v1", "kind": "Event", "metadata": {"name": "e"},
            "message": "hi", "involvedObject": {"kind": "Pod", "name": "p"}}
    served = convert("events.k8s.io", "Event", core, "v1")
    assert served["apiVersion"] == "events.k8s.io/v1" and served["note"] == "hi"
    stored = convert("events.k8s.io", "Event", served, "v1")
    assert stored["apiVersion"] == "v1" and stored["message"] == "hi"
    assert convert("events.k8s.io", "Event", served, "core/v1")["apiVersion"] == "v1"


def test_secret_string_data_is_merged_into_data():
    secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"},
              "data": {"a": "b2xk", "b": "Yg=="}, "stringData": {"a": "new", "c": "ü", "n": None}}
    out = to_internal("", "Secret", secret)
    assert out == {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"},
                   "data": {"a": "bmV3", "b": "Yg==", "c": "w7w=", "n": ""}}
    assert "stringData" in secret  # the input is left as it was
    assert to_internal("", "Secret", {"stringData": None, "data": {"x": "eA=="}}) == \
        {"data": {"x": "eA=="}}
    assert to_internal("", "Secret", {"stringData": {"k": "v"}}) == {"data": {"k": "dg=="}}
    other = {"stringData": {"k": "v"}}
    assert to_internal("", "ConfigMap", other) is other
    assert to_internal("example.com", "Secret", other) is other


def test_singular_fields_mirror_the_first_list_item():
    assert to_internal("", "Node", {"spec": {"podCIDR": "a"}}) == \
        {"spec": {"podCIDR": "a", "podCIDRs": ["a"]}}
    assert to_internal("", "Node", {"spec": {"podCIDRs": ["a", "b"]}}) == \
        {"spec": {"podCIDR": "a", "podCIDRs": ["a", "b"]}}
    # The singular field wins when they differ (older clients write only it).
    assert to_internal("", "Node", {"spec": {"podCIDR": "c", "podCIDRs": ["a", "b"]}}) == \
        {"spec": {"podCIDR": "c", "podCIDRs": ["c"]}}
    same = {"spec": {"podCIDR": "a", "podCIDRs": ["a", "b"]}}
    assert to_internal("", "Node", same) is same
    pod = {"status": {"podIP": "10.0.0.1", "hostIPs": [{"ip": "192.0.2.1"}, {"ip": "::1"}]}}
    assert to_internal("", "Pod", pod) == {"status": {
        "podIP": "10.0.0.1", "podIPs": [{"ip": "10.0.0.1"}],
        "hostIP": "192.0.2.1", "hostIPs": [{"ip": "192.0.2.1"}, {"ip": "::1"}]}}
    assert pod == {"status": {"podIP": "10.0.0.1",
                              "hostIPs": [{"ip": "192.0.2.1"}, {"ip": "::1"}]}}
    assert to_internal("", "Pod", {"spec": {}}) == {"spec": {}}
