"""Job controller helpers: completed-index strings and the pods it builds."""

from __future__ import annotations

from pinnace.controllers import jobpolicy as jp
from pinnace.controllers.job import FINALIZER, INDEX_KEY, build_pod, format_indexes, parse_indexes


def test_completed_indexes_round_trip() -> None:
    assert format_indexes({0, 1, 2, 4, 6, 7}) == "0-2,4,6,7"  # a run of two, as upstream
    assert parse_indexes("0-2,4,6-7") == {0, 1, 2, 4, 6, 7}
    assert format_indexes(set()) == "" and parse_indexes(None) == set()


def test_indexed_pod() -> None:
    job = {"apiVersion": "batch/v1", "kind": "Job",
           "metadata": {"name": "j", "namespace": "ns", "uid": "u1"},
           "spec": {"template": {"metadata": {"labels": {"job-name": "j"}},
                                 "spec": {"containers": [{"name": "c", "image": "x"}]}}}}
    pod = build_pod(job, 3)
    meta = pod["metadata"]
    assert meta["generateName"] == "j-3-" and FINALIZER in meta["finalizers"]
    assert meta["annotations"][INDEX_KEY] == "3" and meta["labels"][INDEX_KEY] == "3"
    assert pod["spec"]["hostname"] == "j-3"
    assert pod["spec"]["containers"][0]["env"][0]["name"] == "JOB_COMPLETION_INDEX"
    assert meta["ownerReferences"][0]["uid"] == "u1"
    assert build_pod(job, None)["metadata"]["generateName"] == "j-"


def test_indexes_beyond_completions_are_dropped() -> None:
    assert parse_indexes("0,2-5,9", limit=4) == {0, 2, 3}
    assert parse_indexes("x,1", limit=4) == {1}  # a bad interval is skipped


def failed_pod(code: int, container: str = "main", init: bool = False,
               conditions: tuple[dict, ...] = (), failures: str | None = None) -> dict:
    statuses = [{"name": container, "state": {"terminated": {"exitCode": code}}}]
    ann = {} if failures is None else {jp.FAILURE_COUNT_KEY: failures}
    return {"metadata": {"name": "p", "namespace": "ns", "annotations": ann},
            "status": {"phase": "Failed", "conditions": list(conditions),
                       ("initContainerStatuses" if init else "containerStatuses"): statuses}}


def with_policy(*rules: dict, **spec: object) -> dict:
    return {"spec": {"podFailurePolicy": {"rules": list(rules)}, **spec}}


def test_pod_failure_policy_matching() -> None:
    job = with_policy(
        {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]},
        {"action": "FailJob", "onExitCodes": {"containerName": "side", "operator": "In",
                                              "values": [3]}},
        {"action": "Count", "onExitCodes": {"operator": "NotIn", "values": [3, 4]}},
        {"action": "FailJob", "onExitCodes": {"operator": "In", "values": [3]}})
    disrupted = failed_pod(1, conditions=({"type": "DisruptionTarget", "status": "True"},))
    assert jp.match_pod_failure_policy(job, disrupted) == (None, False, "Ignore")
    not_disrupted = failed_pod(1, conditions=({"type": "DisruptionTarget", "status": "False"},))
    assert jp.match_pod_failure_policy(job, not_disrupted) == (None, True, "Count")
    # containerName limits a rule to that container (app or init).
    assert jp.match_pod_failure_policy(job, failed_pod(3, "side", init=True)) == (
        "Container side for pod ns/p failed with exit code 3 matching FailJob rule at index 1",
        True, "FailJob")
    assert jp.match_pod_failure_policy(job, failed_pod(3))[0] == (
        "Container main for pod ns/p failed with exit code 3 matching FailJob rule at index 3")
    # Exit code 4 matches no rule; exit code 0 never matches (not even NotIn).
    assert jp.match_pod_failure_policy(job, failed_pod(4)) == (None, True, None)
    assert jp.match_pod_failure_policy(job, failed_pod(0)) == (None, True, None)
    cond = with_policy({"action": "FailJob", "onPodConditions": [{"type": "ConfigIssue"}]})
    pod = failed_pod(1, conditions=({"type": "ConfigIssue", "status": "True"},))
    assert jp.fail_job_message(cond, [pod]) == (
        "Pod ns/p has condition ConfigIssue matching FailJob rule at index 0")


def test_index_failures() -> None:
    job = with_policy({"action": "Ignore", "onExitCodes": {"operator": "In", "values": [9]}},
                      {"action": "FailIndex", "onExitCodes": {"operator": "In", "values": [7]}},
                      backoffLimitPerIndex=1)
    first = failed_pod(1, failures="0")
    assert not jp.is_index_failed(job, first)
    assert jp.new_index_failure_counts(job, first) == (1, 0)
    second = failed_pod(1, failures="1")
    assert jp.is_index_failed(job, second)
    ignored = failed_pod(9, failures="1")
    assert not jp.is_index_failed(job, ignored)
    assert jp.new_index_failure_counts(job, ignored) == (1, 1)
    assert jp.is_index_failed(job, failed_pod(7, failures="0"))
    bad = failed_pod(1, failures="-3")
    assert jp.index_failure_count(bad) == 0


def test_success_policy_rules() -> None:
    job = {"spec": {"completions": 6, "successPolicy": {"rules": [
        {"succeededIndexes": "4-5"}, {"succeededIndexes": "0-3", "succeededCount": 3},
        {"succeededCount": 5}]}}}
    assert jp.match_success_policy(job, {0, 1}) is None
    assert jp.match_success_policy(job, {0, 2, 3}) == "Matched rules at index 1"
    assert jp.match_success_policy(job, {4, 5}) == "Matched rules at index 0"
    assert jp.match_success_policy(job, {0, 1, 4, 2, 9}) == "Matched rules at index 1"
    assert jp.match_success_policy(job, set()) is None


def test_replacement_backoff() -> None:
    assert jp.backoff_left(10, 600, 0, None, 100) == 0
    assert jp.backoff_left(10, 600, 1, 100, 104) == 6
    assert jp.backoff_left(10, 600, 3, 100, 100) == 40
    assert jp.backoff_left(10, 600, 30, 100, 100) == 600


def test_failed_indexes_skip_pods_already_accounted_for() -> None:
    """A Job that fails stops its running pods; until they are gone from the
    cache they look failed (terminating, finalizer still on). They were
    counted as the Job finished: they must not turn into failed indexes."""
    job = {"spec": {"completions": 4, "completionMode": "Indexed", "backoffLimitPerIndex": 0}}

    def pod(uid: str, ix: int, **status: object) -> dict:
        meta = {"uid": uid, "finalizers": [FINALIZER], "annotations": {INDEX_KEY: str(ix)}}
        if status.pop("deleting", False):
            meta["deletionTimestamp"] = "2024-01-01T00:00:00Z"
        return {"metadata": meta, "status": status}

    pods = [pod("a", 0, phase="Failed"), pod("b", 1, phase="Running"),
            pod("c", 3, phase="Running", deleting=True)]
    assert jp.failed_indexes(job, pods, None, set()) == {0, 3}
    # "c" was stopped (and its finalizer removal sent) by the finishing Job.
    assert jp.failed_indexes(job, pods, "1", {"c"}) == {0, 1}
    assert jp.failed_indexes(job, pods, "", {"a", "c"}) == set()
