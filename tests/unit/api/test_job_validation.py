"""Job validation for the policy fields and the status the job controller
writes, worded as a real kube-apiserver words it (field path first)."""

from __future__ import annotations

import copy
from typing import Any

from pinnace.api.defaults import apply_defaults
from pinnace.api.validation import validate, validate_status


def job(**spec: Any) -> dict[str, Any]:
    obj = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "pi", "uid": "u"},
           "spec": {"selector": {"matchLabels": {"batch.kubernetes.io/controller-uid": "u"}},
                    "template": {"metadata": {"labels": {
                        "batch.kubernetes.io/controller-uid": "u"}},
                        "spec": {"restartPolicy": "Never", "initContainers": [
                            {"name": "setup", "image": "busybox"}],
                            "containers": [{"name": "main", "image": "perl"}]}}, **spec}}
    apply_defaults("batch", "Job", obj)
    return obj


def check(obj: dict[str, Any], old: dict[str, Any] | None = None) -> list[str]:
    return [str(e) for e in validate("batch", "Job", obj, old)]


def fields(obj: dict[str, Any]) -> list[str]:
    return [e.field for e in validate("batch", "Job", obj, None)]


INDEXED = {"completionMode": "Indexed", "completions": 4, "parallelism": 4}


def test_valid_policies() -> None:
    assert check(job(**INDEXED, backoffLimitPerIndex=1, maxFailedIndexes=2, podFailurePolicy={
        "rules": [{"action": "FailIndex", "onExitCodes": {"containerName": "setup",
                                                          "operator": "In", "values": [1, 2]}},
                  {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]}]},
        successPolicy={"rules": [{"succeededIndexes": "0,2-3", "succeededCount": 2}]})) == []


def test_pod_failure_policy_rules() -> None:
    j = job(podFailurePolicy={"rules": [
        {"action": "", "onExitCodes": {"operator": "In", "values": [0, 3, 3, 1],
                                       "containerName": "nope"}},
        {"action": "Retry", "onExitCodes": {"operator": "", "values": []},
         "onPodConditions": [{"type": "Bad Type", "status": "Maybe"}]},
        {"action": "FailIndex"}]})
    assert check(j) == [
        'spec.podFailurePolicy.rules[0].action: Required value: valid values: '
        '["Count" "FailIndex" "FailJob" "Ignore"]',
        'spec.podFailurePolicy.rules[0].onExitCodes.containerName: Invalid value: "nope": must '
        'be one of the container or initContainer names in the pod template',
        "spec.podFailurePolicy.rules[0].onExitCodes.values[0]: Invalid value: 0: must not be 0 "
        "for the In operator",
        "spec.podFailurePolicy.rules[0].onExitCodes.values[2]: Duplicate value: 3",
        "spec.podFailurePolicy.rules[0].onExitCodes.values: Invalid value: []int32{0, 3, 3, 1}: "
        "must be ordered",
        'spec.podFailurePolicy.rules[1].action: Unsupported value: "Retry": supported values: '
        '"Count", "FailIndex", "FailJob", "Ignore"',
        'spec.podFailurePolicy.rules[1].onExitCodes.operator: Required value: valid values: '
        '["In" "NotIn"]',
        "spec.podFailurePolicy.rules[1].onExitCodes.values: Invalid value: []int32{}: at least "
        "one value is required",
        'spec.podFailurePolicy.rules[1].onPodConditions[0].type: Invalid value: "Bad Type": '
        "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and "
        "end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex "
        "used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')",
        'spec.podFailurePolicy.rules[1].onPodConditions[0].status: Unsupported value: "Maybe": '
        'supported values: "False", "True", "Unknown"',
        "spec.podFailurePolicy.rules[1]: Invalid value: specifying both OnExitCodes and "
        "OnPodConditions is not supported",
        'spec.podFailurePolicy.rules[2].action: Invalid value: "FailIndex": requires the '
        "backoffLimitPerIndex to be set",
        "spec.podFailurePolicy.rules[2]: Invalid value: specifying one of OnExitCodes and "
        "OnPodConditions is required"]


def test_pod_failure_policy_limits_and_restart_policy() -> None:
    rule = {"action": "Count", "onExitCodes": {"operator": "NotIn", "values": list(range(256))}}
    j = job(podFailurePolicy={"rules": [rule] * 21}, podReplacementPolicy="TerminatingOrFailed")
    j["spec"]["template"]["spec"]["restartPolicy"] = "OnFailure"
    errs = check(j)
    assert errs[0] == "spec.podFailurePolicy.rules: Too many: 21: must have at most 20 items"
    assert errs[1] == ("spec.podFailurePolicy.rules[0].onExitCodes.values: Too many: 256: must "
                       "have at most 255 items")
    assert errs[-2:] == [
        'spec.podReplacementPolicy: Unsupported value: "TerminatingOrFailed": supported values: '
        '"Failed"',
        'spec.template.spec.restartPolicy: Invalid value: "OnFailure": only "Never" is supported '
        "when podFailurePolicy is specified"]
    assert job(podFailurePolicy={"rules": []})["spec"]["podReplacementPolicy"] == "Failed"


def test_backoff_limit_per_index_fields() -> None:
    assert check(job(backoffLimitPerIndex=1, maxFailedIndexes=1)) == [
        "spec.backoffLimitPerIndex: Invalid value: 1: requires indexed completion mode",
        "spec.maxFailedIndexes: Invalid value: 1: requires indexed completion mode"]
    assert check(job(**INDEXED, maxFailedIndexes=5)) == [
        "spec.backoffLimitPerIndex: Required value: when maxFailedIndexes is specified",
        "spec.maxFailedIndexes: Invalid value: 5: must be less than or equal to completions"]
    big = job(completionMode="Indexed", completions=200_000, parallelism=20_000,
              backoffLimitPerIndex=0)
    big["metadata"]["name"] = "b"
    assert check(big) == [
        "spec.maxFailedIndexes: Required value: must be specified when completions is above "
        "100000",
        "spec.parallelism: Invalid value: 20000: must be less than or equal to 10000 when "
        "completions are above 100000 and used with backoff limit per index"]
    assert job(**INDEXED, backoffLimitPerIndex=1)["spec"]["backoffLimit"] == 2147483647


def test_success_policy_fields() -> None:
    assert fields(job(successPolicy={"rules": [{"succeededCount": 1}]})) == ["spec.successPolicy"]
    assert check(job(**INDEXED, successPolicy={"rules": []})) == [
        "spec.successPolicy.rules: Required value: at least one rules must be specified when "
        "the successPolicy is specified"]
    assert check(job(**INDEXED, successPolicy={"rules": [
        {}, {"succeededIndexes": "0-1-2"}, {"succeededIndexes": "1,x"},
        {"succeededIndexes": "4"}, {"succeededIndexes": "2-1"}, {"succeededIndexes": "1,0"},
        {"succeededIndexes": "1-2", "succeededCount": 3}, {"succeededCount": 5}]})) == [
        "spec.successPolicy.rules[0]: Required value: at least one of succeededCount or "
        "succeededIndexes must be specified",
        'spec.successPolicy.rules[1].succeededIndexes: Invalid value: "0-1-2": error parsing '
        'succeededIndexes: the fragment "0-1-2" violates the requirement that an index interval '
        "can have at most two parts separated by '-'",
        'spec.successPolicy.rules[2].succeededIndexes: Invalid value: "1,x": error parsing '
        'succeededIndexes: cannot convert string to integer for index: "x"',
        'spec.successPolicy.rules[3].succeededIndexes: Invalid value: "4": error parsing '
        'succeededIndexes: too large index: "4"',
        'spec.successPolicy.rules[4].succeededIndexes: Invalid value: "2-1": error parsing '
        "succeededIndexes: non-increasing order, previous: 2, current: 1",
        'spec.successPolicy.rules[5].succeededIndexes: Invalid value: "1,0": error parsing '
        "succeededIndexes: non-increasing order, previous: 1, current: 0",
        "spec.successPolicy.rules[6].succeededCount: Invalid value: 3: must be less than or "
        "equal to 2 (the number of indexes in the specified succeededIndexes field)",
        "spec.successPolicy.rules[7].succeededCount: Invalid value: 5: must be less than or "
        "equal to 4 (the number of specified completions)"]


def test_replacement_policy_and_managed_by() -> None:
    assert check(job(podReplacementPolicy="Sometimes", managedBy="no-slash")) == [
        'spec.managedBy: Invalid value: "no-slash": must be a domain-prefixed path (such as '
        '"acme.io/foo")',
        'spec.podReplacementPolicy: Unsupported value: "Sometimes": supported values: "Failed", '
        '"TerminatingOrFailed"']
    assert check(job(managedBy="kueue.x-k8s.io/multikueue")) == []
    assert fields(job(managedBy="example.com/" + "x" * 60)) == ["spec.managedBy"]


def test_indexed_hostname_must_be_a_label() -> None:
    j = job(completionMode="Indexed", completions=10, parallelism=1)
    j["metadata"]["name"] = "a" * 62
    assert check(j) == [f"metadata.name: Invalid value: \"{'a' * 62}\": will not able to create "
                        f"pod with invalid DNS label: {'a' * 62}-9"]


def test_policies_are_immutable() -> None:
    old = job(**INDEXED, backoffLimitPerIndex=1, successPolicy={"rules": [{"succeededCount": 1}]})
    new = copy.deepcopy(old)
    new["spec"]["backoffLimitPerIndex"] = 2
    new["spec"]["successPolicy"]["rules"][0]["succeededCount"] = 2
    new["spec"]["maxFailedIndexes"] = 1  # mutable
    assert [e.split(":")[0] for e in check(new, old)] == ["spec.backoffLimitPerIndex",
                                                          "spec.successPolicy"]


def status_errors(new: dict[str, Any], old: dict[str, Any]) -> list[str]:
    return [str(e) for e in validate_status("batch", "Job", new, old)]


T0, T1 = "2030-01-01T00:00:00Z", "2030-01-01T00:01:00Z"


def cond(type_: str) -> dict[str, str]:
    return {"type": type_, "status": "True", "reason": "R", "message": "m"}


def with_status(obj: dict[str, Any], **status: Any) -> dict[str, Any]:
    out = copy.deepcopy(obj)
    out["status"] = status
    return out


def test_status_two_step_finish() -> None:
    j = job()
    running = with_status(j, startTime=T0, active=1)
    assert status_errors(with_status(j, startTime=T0, conditions=[cond("Failed")]), running) == [
        "status.conditions: Invalid value: cannot set Failed=True condition without the "
        "FailureTarget=true condition"]
    assert status_errors(with_status(j, startTime=T0, completionTime=T1,
                                     conditions=[cond("Complete")], active=1), running) == [
        "status.conditions: Invalid value: cannot set Complete=True condition without the "
        "SuccessCriteriaMet=true condition",
        "status.active: Invalid value: 1: active>0 is invalid for finished job"]
    target = with_status(j, startTime=T0, conditions=[cond("FailureTarget")])
    assert status_errors(target, running) == []
    done = with_status(j, startTime=T0, conditions=[cond("FailureTarget"), cond("Failed")],
                       uncountedTerminatedPods={"failed": ["a"]})
    assert status_errors(done, target) == [
        'status.uncountedTerminatedPods: Invalid value: batch.UncountedTerminatedPods'
        '{Succeeded:[]types.UID(nil), Failed:[]types.UID{"a"}}: uncountedTerminatedPods needs '
        "to be empty for finished job"]
    assert status_errors(with_status(j, startTime=T0, conditions=[
        cond("FailureTarget"), cond("SuccessCriteriaMet")]), target) == [
        "status.conditions: Invalid value: cannot set SuccessCriteriaMet=True and "
        "FailureTarget=true conditions"]
    assert status_errors(with_status(j, startTime=T0), target) == [
        "status.conditions: Invalid value: cannot disable the terminal FailureTarget=True "
        "condition"]
    ok = with_status(j, startTime=T0, completionTime=T1,
                     conditions=[cond("SuccessCriteriaMet"), cond("Complete")], succeeded=1)
    assert status_errors(ok, running) == []
    assert status_errors(with_status(j, startTime=T1, completionTime=T0,
                                     conditions=[cond("SuccessCriteriaMet"), cond("Complete")],
                                     succeeded=1), running) == [
        "status.completionTime: Invalid value: 2030-01-01 00:00:00 +0000 UTC: completionTime "
        "cannot be set before startTime",
        "status.startTime: Required value: startTime cannot be removed for unsuspended job"]


def test_status_indexes_and_counters() -> None:
    per_index = job(**INDEXED, backoffLimitPerIndex=1)
    old = with_status(per_index, startTime=T0, failed=2, succeeded=1, completedIndexes="1")
    assert status_errors(with_status(per_index, startTime=T0, failed=1, succeeded=1,
                                     completedIndexes="1", failedIndexes="1,5"), old) == [
        'status.failedIndexes: Invalid value: "1,5": error parsing failedIndexes: too large '
        'index: "5"',
        'status.failedIndexes: Invalid value: "1,5": failedIndexes and completedIndexes overlap '
        "at index: 1",
        "status.failed: Invalid value: 1: cannot decrease the failed counter"]
    plain = job()
    assert status_errors(with_status(plain, completedIndexes="0", failedIndexes=""),
                         with_status(plain)) == [
        'status.completedIndexes: Invalid value: "0": cannot set non-empty completedIndexes '
        "when non-indexed completion mode",
        'status.failedIndexes: Invalid value: "": cannot set non-null failedIndexes when '
        "backoffLimitPerIndex is null"]
    # Only changed fields are judged: a bad value already stored does not block other writes.
    stored = with_status(plain, completedIndexes="0")
    assert status_errors(with_status(plain, completedIndexes="0", active=1), stored) == []
    assert status_errors(with_status(plain, terminating=-1), with_status(plain)) == [
        "status.terminating: Invalid value: -1: must be greater than or equal to 0"]
