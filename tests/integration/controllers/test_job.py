"""The job controller (and TTL-after-finished) against a real API server,
pods driven to Succeeded/Failed by the test as a kubelet would."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from pinnace.controllers.job import FINALIZER, INDEX_KEY, JobController
from pinnace.controllers.ttlafterfinished import TTLAfterFinishedController
from tests.conftest import Server, wait_for
from tests.integration.controllers.batch_harness import Controllers


@pytest.fixture
def ctrl(server: Server) -> Iterator[Controllers]:
    with Controllers(server, [JobController, TTLAfterFinishedController],
                     options={"job_backoff_seconds": 0}) as h:
        yield h


@pytest.fixture(autouse=True)
def _emptied(server: Server, namespace: str, ctrl: Controllers) -> Iterator[None]:
    yield
    empty_namespace(server, namespace)


def empty_namespace(server: Server, ns: str) -> None:
    """Delete what a test left in its namespace, and the namespace. The job
    controller must still run: it releases the pods of deleted Jobs from
    their tracking finalizer."""
    k = server.kubectl
    k("-n", ns, "delete", "jobs", "--all", "--wait=false", check=False)
    wait_for(lambda: all(FINALIZER not in (p["metadata"].get("finalizers") or [])
                         for p in get(server, ns, "pods")["items"]), what="pods released")
    k("-n", ns, "delete", "pods", "--all", "--force", "--grace-period=0", check=False)
    k("delete", "namespace", ns, "--wait=false", check=False)


def job(name: str, **spec: object) -> str:
    body = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name},
            "spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [
                {"name": "c", "image": "busybox"}]}}, **spec}}
    return json.dumps(body)


def get(server: Server, ns: str, *args: str) -> dict:
    return json.loads(server.kubectl("-n", ns, "get", *args, "-o", "json").stdout)


def live_pods(server: Server, ns: str, job_name: str) -> list[dict]:
    items = get(server, ns, "pods", "-l", f"job-name={job_name}")["items"]
    return [p for p in items if not p["metadata"].get("deletionTimestamp")
            and p.get("status", {}).get("phase") not in ("Succeeded", "Failed")]


def set_phase(server: Server, ns: str, pod: str, phase: str) -> None:
    server.kubectl("-n", ns, "patch", "pod", pod, "--subresource=status", "--type=merge",
                   "-p", json.dumps({"status": {"phase": phase}}))


def condition(obj: dict, type_: str) -> dict | None:
    for c in obj.get("status", {}).get("conditions") or []:
        if c["type"] == type_ and c["status"] == "True":
            return c
    return None


def order(obj: dict) -> list[str]:
    """The types of the Job's true conditions, in the order they were added."""
    return [c["type"] for c in obj["status"].get("conditions") or [] if c["status"] == "True"]


def test_job_runs_to_completion(server: Server, namespace: str, ctrl: Controllers) -> None:
    k, ns = server.kubectl, namespace
    k("-n", ns, "create", "-f", "-", input=job("work", completions=3, parallelism=2))
    pods = wait_for(lambda: len(p := live_pods(server, ns, "work")) == 2 and p, what="2 pods")
    pod = pods[0]
    assert pod["metadata"]["name"].startswith("work-")
    assert FINALIZER in pod["metadata"]["finalizers"]
    assert pod["metadata"]["labels"]["batch.kubernetes.io/job-name"] == "work"
    ref = pod["metadata"]["ownerReferences"][0]
    assert ref["kind"] == "Job" and ref["controller"] is True
    st = wait_for(lambda: (j := get(server, ns, "job", "work"))["status"].get("active") == 2
                  and j["status"], what="active=2")
    assert st["startTime"]
    done: set[str] = set()
    for _ in range(3):
        p = wait_for(lambda: [x for x in live_pods(server, ns, "work")
                              if x["metadata"]["name"] not in done], what="a running pod")[0]
        set_phase(server, ns, p["metadata"]["name"], "Succeeded")
        done.add(p["metadata"]["name"])
    final = wait_for(lambda: condition(j := get(server, ns, "job", "work"), "Complete") and j,
                     what="Complete")
    assert final["status"]["succeeded"] == 3 and "active" not in final["status"]
    assert final["status"].get("completionTime")
    assert condition(final, "SuccessCriteriaMet")["reason"] == "CompletionsReached"
    assert order(final) == ["SuccessCriteriaMet", "Complete"]
    assert condition(final, "Complete")["message"] == "Reached expected number of succeeded pods"
    # every pod released from the tracking finalizer
    wait_for(lambda: all(FINALIZER not in (p["metadata"].get("finalizers") or [])
                         for p in get(server, ns, "pods")["items"]), what="finalizers removed")
    events = k("-n", ns, "describe", "job", "work").stdout
    assert "SuccessfulCreate" in events and "Completed" in events


def test_backoff_limit_fails_job(server: Server, namespace: str, ctrl: Controllers) -> None:
    k, ns = server.kubectl, namespace
    k("-n", ns, "create", "-f", "-", input=job("flaky", backoffLimit=1))
    for _ in range(2):
        name = wait_for(lambda: live_pods(server, ns, "flaky"), what="a pod")[0]["metadata"]["name"]
        set_phase(server, ns, name, "Failed")
        wait_for(lambda n=name: n not in
                 [x["metadata"]["name"] for x in live_pods(server, ns, "flaky")], what="gone")
    final = wait_for(lambda: condition(j := get(server, ns, "job", "flaky"), "Failed") and j,
                     what="Failed")
    assert final["status"]["failed"] == 2
    assert condition(final, "Failed")["reason"] == "BackoffLimitExceeded"
    assert condition(final, "FailureTarget")["message"] == \
        "Job has reached the specified backoff limit"
    assert "completionTime" not in final["status"]
    assert order(final) == ["FailureTarget", "Failed"]
    assert "BackoffLimitExceeded" in k("-n", ns, "describe", "job", "flaky").stdout


def test_deadline_exceeded(server: Server, namespace: str, ctrl: Controllers) -> None:
    k, ns = server.kubectl, namespace
    k("-n", ns, "create", "-f", "-", input=job("slow", activeDeadlineSeconds=1))
    final = wait_for(lambda: condition(j := get(server, ns, "job", "slow"), "Failed") and j,
                     what="Failed by deadline")
    assert condition(final, "Failed")["reason"] == "DeadlineExceeded"
    assert condition(final, "FailureTarget")["message"] == \
        "Job was active longer than specified deadline"
    assert order(final) == ["FailureTarget", "Failed"]
    assert "active" not in final["status"] and final["status"]["failed"] == 1
    wait_for(lambda: not live_pods(server, ns, "slow"), what="pods removed")


def test_indexed_job(server: Server, namespace: str, ctrl: Controllers) -> None:
    k, ns = server.kubectl, namespace
    k("-n", ns, "create", "-f", "-",
      input=job("idx", completions=3, parallelism=3, completionMode="Indexed"))
    pods = wait_for(lambda: len(p := live_pods(server, ns, "idx")) == 3 and p, what="3 pods")
    by_index = {p["metadata"]["annotations"][INDEX_KEY]: p for p in pods}
    assert set(by_index) == {"0", "1", "2"}
    p1 = by_index["1"]
    assert p1["metadata"]["labels"][INDEX_KEY] == "1"
    assert p1["spec"]["hostname"] == "idx-1"
    assert p1["metadata"]["name"].startswith("idx-1-")
    assert any(e["name"] == "JOB_COMPLETION_INDEX" for e in p1["spec"]["containers"][0]["env"])
    set_phase(server, ns, p1["metadata"]["name"], "Succeeded")
    wait_for(lambda: get(server, ns, "job", "idx")["status"].get("completedIndexes") == "1",
             what="completedIndexes 1")
    set_phase(server, ns, by_index["0"]["metadata"]["name"], "Failed")
    repl = wait_for(lambda: [p for p in live_pods(server, ns, "idx")
                             if p["metadata"]["annotations"][INDEX_KEY] == "0"],
                    what="index 0 replaced")[0]
    for p in (repl, by_index["2"]):
        set_phase(server, ns, p["metadata"]["name"], "Succeeded")
    final = wait_for(lambda: condition(j := get(server, ns, "job", "idx"), "Complete") and j,
                     what="Complete")
    assert final["status"]["completedIndexes"] == "0-2"
    assert final["status"]["succeeded"] == 3 and final["status"]["failed"] == 1


def test_suspend_and_resume(server: Server, namespace: str, ctrl: Controllers) -> None:
    k, ns = server.kubectl, namespace
    k("-n", ns, "create", "-f", "-", input=job("paused", suspend=True, parallelism=2,
                                                completions=4))
    j = wait_for(lambda: condition(j := get(server, ns, "job", "paused"), "Suspended") and j,
                 what="Suspended")
    assert condition(j, "Suspended")["reason"] == "JobSuspended"
    assert not live_pods(server, ns, "paused") and "startTime" not in j["status"]
    k("-n", ns, "patch", "job", "paused", "--type=merge", "-p", '{"spec":{"suspend":false}}')
    wait_for(lambda: len(live_pods(server, ns, "paused")) == 2, what="2 pods after resume")
    j = get(server, ns, "job", "paused")
    k("-n", ns, "patch", "job", "paused", "--type=merge", "-p", '{"spec":{"suspend":true}}')
    wait_for(lambda: not live_pods(server, ns, "paused"), what="pods removed on suspend")
    j = wait_for(lambda: condition(j := get(server, ns, "job", "paused"), "Suspended") and j,
                 what="Suspended again")
    assert j["status"].get("failed", 0) == 0  # pods removed by suspension are not failures


def test_ttl_after_finished_deletes_job(server: Server, namespace: str,
                                        ctrl: Controllers) -> None:
    k, ns = server.kubectl, namespace
    k("-n", ns, "create", "-f", "-", input=job("short", ttlSecondsAfterFinished=0))
    p = wait_for(lambda: live_pods(server, ns, "short"), what="a pod")[0]
    set_phase(server, ns, p["metadata"]["name"], "Succeeded")
    wait_for(lambda: k("-n", ns, "get", "job", "short", check=False).returncode != 0,
             what="job deleted by ttl")
