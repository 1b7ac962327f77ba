"""Job policies against a real API server: pod failure policy, backoff limit
per index, success policy, pod replacement policy. Pods are finished the way
a kubelet reports them (a status write with the container's terminated exit
code and the pod's conditions)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client

from pinnace.controllers.job import FINALIZER, INDEX_KEY, JobController
from tests.conftest import Server, wait_for
from tests.integration.controllers.batch_harness import Controllers
from tests.integration.controllers.test_job import condition, empty_namespace, get, job, live_pods

FAILURE_COUNT = "batch.kubernetes.io/job-index-failure-count"


@pytest.fixture
def ctrl(server: Server, request: pytest.FixtureRequest) -> Iterator[Controllers]:
    """The job controller; a test may ask for a replacement delay (indirect parameter)."""
    backoff = float(getattr(request, "param", 0))
    with Controllers(server, [JobController], options={
            "job_backoff_seconds": backoff, "job_backoff_max_seconds": backoff}) as h:
        yield h


@pytest.fixture
def ns(server: Server, namespace: str, ctrl: Controllers) -> Iterator[str]:
    """The test's namespace, emptied afterwards (while the controller runs)."""
    yield namespace
    empty_namespace(server, namespace)


def now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def terminate(server: Server, ns: str, pod: str, exit_code: int, container: str = "c",
              conditions: tuple[dict[str, Any], ...] = ()) -> None:
    """Report the pod finished as a kubelet does: its container terminated
    with ``exit_code``, the pod no longer Ready, plus any extra conditions."""
    t = now()
    status = {
        "phase": "Succeeded" if exit_code == 0 else "Failed",
        "conditions": [{"type": "Ready", "status": "False", "reason": "PodCompleted",
                        "lastTransitionTime": t}, *conditions],
        "containerStatuses": [{
            "name": container, "image": "busybox", "imageID": "", "ready": False,
            "restartCount": 0, "started": False,
            "state": {"terminated": {"exitCode": exit_code,
                                     "reason": "Completed" if exit_code == 0 else "Error",
                                     "startedAt": t, "finishedAt": t}}}]}
    server.kubectl("-n", ns, "patch", "pod", pod, "--subresource=status", "--type=merge",
                   "-p", json.dumps({"status": status}))


def disruption() -> dict[str, Any]:
    return {"type": "DisruptionTarget", "status": "True", "reason": "DeletionByTaintManager",
            "message": "Taint manager: deleting due to NoExecute taint",
            "lastTransitionTime": now()}


def by_index(server: Server, ns: str, name: str) -> dict[int, dict]:
    return {int(p["metadata"]["annotations"][INDEX_KEY]): p for p in live_pods(server, ns, name)}


def one_pod(server: Server, ns: str, name: str, seen: set[str]) -> dict:
    """A live pod of the Job not among ``seen`` (which it joins)."""
    pod = wait_for(lambda: [p for p in live_pods(server, ns, name)
                            if p["metadata"]["name"] not in seen], what="a new pod")[0]
    seen.add(pod["metadata"]["name"])
    return pod  # type: ignore[no-any-return]


def finished(server: Server, ns: str, name: str, type_: str) -> dict:
    return wait_for(lambda: condition(j := get(server, ns, "job", name), type_) and j,  # type: ignore[no-any-return]
                    what=f"{name} {type_}")


def types(j: dict) -> list[str]:
    return [c["type"] for c in j["status"].get("conditions") or [] if c["status"] == "True"]


def test_fail_job_rule(server: Server, ns: str) -> None:
    k = server.kubectl
    k("-n", ns, "create", "-f", "-", input=job(
        "fj", parallelism=2, completions=2, podFailurePolicy={"rules": [
            {"action": "FailJob", "onExitCodes": {"containerName": "c", "operator": "In",
                                                  "values": [42]}}]}))
    pods = wait_for(lambda: len(p := live_pods(server, ns, "fj")) == 2 and p, what="2 pods")
    victim = pods[0]["metadata"]["name"]
    terminate(server, ns, victim, 42)
    final = finished(server, ns, "fj", "Failed")
    msg = f"Container c for pod {ns}/{victim} failed with exit code 42 matching FailJob rule at index 0"
    assert types(final) == ["FailureTarget", "Failed"]
    for t in ("FailureTarget", "Failed"):
        c = condition(final, t)
        assert c["reason"] == "PodFailurePolicy" and c["message"] == msg
    # The other pod was stopped, and counts as failed too.
    assert final["status"]["failed"] == 2 and "active" not in final["status"]
    assert final["status"]["terminating"] == 0 and "completionTime" not in final["status"]
    wait_for(lambda: not live_pods(server, ns, "fj"), what="pods removed")
    events = k("-n", ns, "get", "events", "--field-selector", "involvedObject.name=fj",
               "-o", "json").stdout
    assert msg in events


def test_rules_apply_in_order(server: Server, ns: str) -> None:
    """The first matching rule decides: Count before a FailJob NotIn that also matches."""
    k = server.kubectl
    k("-n", ns, "create", "-f", "-", input=job("order", podFailurePolicy={"rules": [
        {"action": "Count", "onExitCodes": {"operator": "In", "values": [5]}},
        {"action": "FailJob", "onExitCodes": {"operator": "NotIn", "values": [1]}}]}))
    seen: set[str] = set()
    terminate(server, ns, one_pod(server, ns, "order", seen)["metadata"]["name"], 5)
    j = wait_for(lambda: (j := get(server, ns, "job", "order"))["status"].get("failed") == 1
                 and j, what="failure counted")
    assert not condition(j, "FailureTarget")
    terminate(server, ns, one_pod(server, ns, "order", seen)["metadata"]["name"], 1)
    wait_for(lambda: get(server, ns, "job", "order")["status"].get("failed") == 2,
             what="exit code 1 counted (NotIn excludes it)")
    last = one_pod(server, ns, "order", seen)["metadata"]["name"]
    terminate(server, ns, last, 7)
    final = finished(server, ns, "order", "Failed")
    assert condition(final, "Failed")["message"] == (
        f"Container c for pod {ns}/{last} failed with exit code 7 matching FailJob rule at index 1")
    assert final["status"]["failed"] == 3


def test_ignored_disruption_does_not_count(server: Server, ns: str) -> None:
    k = server.kubectl
    k("-n", ns, "create", "-f", "-", input=job("ign", backoffLimit=0, podFailurePolicy={
        "rules": [{"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]}]}))
    seen: set[str] = set()
    first = one_pod(server, ns, "ign", seen)["metadata"]["name"]
    terminate(server, ns, first, 137, conditions=(disruption(),))
    # Replaced without counting: with backoffLimit 0 a counted failure would fail the Job.
    second = one_pod(server, ns, "ign", seen)["metadata"]["name"]
    j = get(server, ns, "job", "ign")
    assert j["status"].get("failed", 0) == 0 and not condition(j, "FailureTarget")
    wait_for(lambda: first not in [p["metadata"]["name"] for p in get(server, ns, "pods")["items"]
                                   if FINALIZER in (p["metadata"].get("finalizers") or [])],
             what="ignored pod released")
    terminate(server, ns, second, 1)
    final = finished(server, ns, "ign", "Failed")
    assert condition(final, "Failed")["reason"] == "BackoffLimitExceeded"
    assert final["status"]["failed"] == 1


def test_backoff_limit_per_index(server: Server, ns: str) -> None:
    k = server.kubectl
    k("-n", ns, "create", "-f", "-", input=job(
        "pi", completions=3, parallelism=3, completionMode="Indexed", backoffLimitPerIndex=1))
    j = get(server, ns, "job", "pi")
    assert j["spec"]["backoffLimit"] == 2147483647  # defaulted for per-index limits
    pods = wait_for(lambda: len(p := by_index(server, ns, "pi")) == 3 and p, what="3 pods")
    assert {p["metadata"]["annotations"][FAILURE_COUNT] for p in pods.values()} == {"0"}
    wait_for(lambda: get(server, ns, "job", "pi")["status"].get("failedIndexes") == "",
             what="failedIndexes reported empty")
    terminate(server, ns, pods[0]["metadata"]["name"], 1)
    retry = wait_for(lambda: [p for i, p in by_index(server, ns, "pi").items()
                              if i == 0 and p["metadata"]["name"] != pods[0]["metadata"]["name"]],
                     what="index 0 retried")[0]
    assert retry["metadata"]["annotations"][FAILURE_COUNT] == "1"
    terminate(server, ns, retry["metadata"]["name"], 1)
    j = wait_for(lambda: (j := get(server, ns, "job", "pi"))["status"].get("failedIndexes") == "0"
                 and j, what="index 0 failed")
    assert j["status"]["failed"] == 2 and not condition(j, "FailureTarget")
    assert 0 not in by_index(server, ns, "pi")  # a failed index is not retried
    for i in (1, 2):
        terminate(server, ns, pods[i]["metadata"]["name"], 0)
    final = finished(server, ns, "pi", "Failed")
    assert types(final) == ["FailureTarget", "Failed"]
    assert condition(final, "Failed")["reason"] == "FailedIndexes"
    assert condition(final, "Failed")["message"] == "Job has failed indexes"
    st = final["status"]
    assert st["completedIndexes"] == "1,2" and st["failedIndexes"] == "0"
    assert st["succeeded"] == 2 and st["failed"] == 2
    # The official client reads the same.
    api = client.BatchV1Api(server.api_client())
    seen = api.read_namespaced_job_status("pi", ns)
    assert seen.status.failed_indexes == "0" and seen.status.completed_indexes == "1,2"
    assert seen.spec.backoff_limit_per_index == 1 and seen.status.terminating == 0
    assert [c.type for c in seen.status.conditions] == ["FailureTarget", "Failed"]


@pytest.mark.parametrize("ctrl", [2], indirect=True)
def test_failed_pod_kept_until_its_index_is_retried(server: Server, ns: str) -> None:
    """While an index waits out its backoff, its failed pod keeps the tracking
    finalizer: deleted meanwhile, it still passes its failure count on."""
    k = server.kubectl
    k("-n", ns, "create", "-f", "-", input=job(
        "keep", completions=1, completionMode="Indexed", backoffLimitPerIndex=2))
    first = wait_for(lambda: by_index(server, ns, "keep").get(0), what="a pod")["metadata"]["name"]
    terminate(server, ns, first, 1)
    k("-n", ns, "delete", "pod", first, "--wait=false")
    retry = wait_for(lambda: by_index(server, ns, "keep").get(0), what="index 0 retried")
    assert retry["metadata"]["annotations"][FAILURE_COUNT] == "1"
    wait_for(lambda: first not in [p["metadata"]["name"] for p in get(server, ns, "pods")["items"]],
             what="failed pod released once replaced")
    wait_for(lambda: get(server, ns, "job", "keep")["status"].get("failed") == 1,
             what="its failure counted")


def test_max_failed_indexes(server: Server, ns: str) -> None:
    k = server.kubectl
    k("-n", ns, "create", "-f", "-", input=job(
        "mfi", completions=4, parallelism=4, completionMode="Indexed", backoffLimitPerIndex=0,
        maxFailedIndexes=1))
    pods = wait_for(lambda: len(p := by_index(server, ns, "mfi")) == 4 and p, what="4 pods")
    terminate(server, ns, pods[0]["metadata"]["name"], 1)
    wait_for(lambda: get(server, ns, "job", "mfi")["status"].get("failedIndexes") == "0",
             what="index 0 failed")
    assert not condition(get(server, ns, "job", "mfi"), "FailureTarget")
    terminate(server, ns, pods[1]["metadata"]["name"], 1)
    final = finished(server, ns, "mfi", "Failed")
    c = condition(final, "Failed")
    assert c["reason"] == "MaxFailedIndexesExceeded"
    assert c["message"] == "Job has exceeded the specified maximal number of failed indexes"
    assert final["status"]["failedIndexes"] == "0,1"
    # Indexes 2 and 3 were stopped and count as failed pods (not as failed indexes).
    assert final["status"]["failed"] == 4 and "active" not in final["status"]
    wait_for(lambda: not live_pods(server, ns, "mfi"), what="pods removed")


def test_fail_index_rule(server: Server, ns: str) -> None:
    k = server.kubectl
    k("-n", ns, "create", "-f", "-", input=job(
        "fi", completions=2, parallelism=2, completionMode="Indexed", backoffLimitPerIndex=3,
        podFailurePolicy={"rules": [{"action": "FailIndex", "onExitCodes": {
            "operator": "In", "values": [42]}}]}))
    pods = wait_for(lambda: len(p := by_index(server, ns, "fi")) == 2 and p, what="2 pods")
    terminate(server, ns, pods[1]["metadata"]["name"], 42)
    j = wait_for(lambda: (j := get(server, ns, "job", "fi"))["status"].get("failedIndexes") == "1"
                 and j, what="index 1 failed at once")
    assert 1 not in by_index(server, ns, "fi")  # not retried, though 3 retries were allowed
    assert j["status"]["failed"] == 1 and not condition(j, "FailureTarget")
    terminate(server, ns, pods[0]["metadata"]["name"], 0)
    final = finished(server, ns, "fi", "Failed")
    assert condition(final, "Failed")["reason"] == "FailedIndexes"
    assert final["status"]["completedIndexes"] == "0"


def test_success_policy(server: Server, ns: str) -> None:
    k = server.kubectl
    k("-n", ns, "create", "-f", "-", input=job(
        "sp", completions=5, parallelism=5, completionMode="Indexed", successPolicy={"rules": [
            {"succeededIndexes": "3-4"}, {"succeededIndexes": "0-2", "succeededCount": 2}]}))
    pods = wait_for(lambda: len(p := by_index(server, ns, "sp")) == 5 and p, what="5 pods")
    terminate(server, ns, pods[0]["metadata"]["name"], 0)
    wait_for(lambda: get(server, ns, "job", "sp")["status"].get("completedIndexes") == "0",
             what="index 0 done")
    assert not condition(get(server, ns, "job", "sp"), "SuccessCriteriaMet")
    terminate(server, ns, pods[2]["metadata"]["name"], 0)
    final = finished(server, ns, "sp", "Complete")
    assert types(final) == ["SuccessCriteriaMet", "Complete"]
    for t in ("SuccessCriteriaMet", "Complete"):
        c = condition(final, t)
        assert c["reason"] == "SuccessPolicy" and c["message"] == "Matched rules at index 1"
    st = final["status"]
    assert st["completedIndexes"] == "0,2" and st["succeeded"] == 2
    # The lingering pods were stopped, neither successes nor failures.
    assert "failed" not in st and "active" not in st and st["completionTime"]
    wait_for(lambda: not live_pods(server, ns, "sp"), what="lingering pods removed")


def test_replace_only_failed_pods(server: Server, ns: str) -> None:
    k = server.kubectl
    k("-n", ns, "create", "-f", "-", input=job("rf", podReplacementPolicy="Failed"))
    seen: set[str] = set()
    first = one_pod(server, ns, "rf", seen)["metadata"]["name"]
    k("-n", ns, "delete", "pod", first, "--wait=false")
    # Terminating (held by the tracking finalizer until it is Failed): not replaced, not failed.
    j = wait_for(lambda: (j := get(server, ns, "job", "rf"))["status"].get("terminating") == 1
                 and j, what="terminating counted")
    assert "active" not in j["status"] and j["status"].get("failed", 0) == 0
    assert [p["metadata"]["name"] for p in get(server, ns, "pods")["items"]] == [first]
    terminate(server, ns, first, 137)
    second = one_pod(server, ns, "rf", seen)["metadata"]["name"]
    j = wait_for(lambda: (j := get(server, ns, "job", "rf"))["status"].get("failed") == 1
                 and j["status"].get("terminating") == 0 and j, what="failure counted")
    terminate(server, ns, second, 0)
    final = finished(server, ns, "rf", "Complete")
    assert final["status"]["succeeded"] == 1 and final["status"]["failed"] == 1


def test_replace_terminating_pods(server: Server, ns: str) -> None:
    """By default a terminating pod counts as failed and is replaced at once."""
    k, http = server.kubectl, server.http()
    k("-n", ns, "create", "-f", "-", input=job("rt"))
    j = get(server, ns, "job", "rt")
    assert j["spec"]["podReplacementPolicy"] == "TerminatingOrFailed"
    seen: set[str] = set()
    first = one_pod(server, ns, "rt", seen)["metadata"]["name"]
    # On a node, the pod's deletion waits for its kubelet (grace period).
    code, _ = http.call("POST", f"/api/v1/namespaces/{ns}/pods/{first}/binding", {
        "apiVersion": "v1", "kind": "Binding", "metadata": {"name": first},
        "target": {"apiVersion": "v1", "kind": "Node", "name": "gone-node"}})
    assert code == 201
    k("-n", ns, "delete", "pod", first, "--wait=false")
    one_pod(server, ns, "rt", seen)
    j = wait_for(lambda: (j := get(server, ns, "job", "rt"))["status"].get("terminating") == 1
                 and j["status"].get("active") == 1 and j, what="replaced while terminating")
    assert j["status"]["failed"] == 1
    old = k("-n", ns, "get", "pod", first, "-o", "json").stdout
    assert json.loads(old)["metadata"].get("deletionTimestamp")


def test_invalid_policies_are_refused(server: Server, namespace: str) -> None:
    """kubectl shows the wrong fields; the Status names each of them in its causes."""
    bad = json.loads(job("bad", completions=2, podFailurePolicy={"rules": [
        {"action": "FailIndex", "onExitCodes": {"operator": "In", "values": [0]}}]},
        successPolicy={"rules": [{"succeededCount": 1}]}))
    out = server.kubectl("-n", namespace, "create", "-f", "-", input=json.dumps(bad),
                         check=False)
    assert out.returncode != 0
    assert 'The Job "bad" is invalid' in out.stderr
    assert 'spec.podFailurePolicy.rules[0].action: Invalid value: "FailIndex": requires the ' \
           "backoffLimitPerIndex to be set" in out.stderr
    code, st = server.http().call("POST", f"/apis/batch/v1/namespaces/{namespace}/jobs", bad)
    assert code == 422 and st["reason"] == "Invalid"
    assert [c["field"] for c in st["details"]["causes"]] == [
        "spec.podFailurePolicy.rules[0].action",
        "spec.podFailurePolicy.rules[0].onExitCodes.values[0]",
        "spec.successPolicy"]


def test_status_writes_keep_the_two_step_finish(server: Server, ns: str) -> None:
    """A client cannot mark a Job Failed without the FailureTarget step."""
    k = server.kubectl
    k("-n", ns, "create", "-f", "-", input=job("two", suspend=True))
    wait_for(lambda: condition(get(server, ns, "job", "two"), "Suspended"), what="suspended")
    out = k("-n", ns, "patch", "job", "two", "--subresource=status", "--type=merge", "-p",
            json.dumps({"status": {"conditions": [
                {"type": "Failed", "status": "True", "reason": "Manual", "message": "no"}]}}),
            check=False)
    assert out.returncode != 0
    assert "status.conditions: Invalid value: cannot set Failed=True condition without the " \
           "FailureTarget=true condition" in out.stderr
    assert "status.startTime: Required value: startTime is required for finished job" \
        in out.stderr


def test_scale_down_is_not_failure(server: Server, ns: str) -> None:
    """Pods removed because parallelism dropped are neither failures nor
    successes, and the Job scales back up once they are gone."""
    k = server.kubectl
    k("-n", ns, "create", "-f", "-", input=job("scale", completions=4, parallelism=3))
    wait_for(lambda: len(live_pods(server, ns, "scale")) == 3, what="3 pods")
    k("-n", ns, "patch", "job", "scale", "--type=merge", "-p", '{"spec":{"parallelism":1}}')
    j = wait_for(lambda: (j := get(server, ns, "job", "scale"))["status"].get("active") == 1
                 and j, what="scaled down")
    assert j["status"].get("failed", 0) == 0 and j["status"].get("succeeded", 0) == 0
    wait_for(lambda: len(get(server, ns, "pods")["items"]) == 1, what="removed pods gone")
    k("-n", ns, "patch", "job", "scale", "--type=merge", "-p", '{"spec":{"parallelism":2}}')
    wait_for(lambda: len(live_pods(server, ns, "scale")) == 2, what="scaled up again")
