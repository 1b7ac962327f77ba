"""Stages: which behaviour a simulated pod gets, and the crash back-off."""

from __future__ import annotations

import pytest

from pinnace.kubelet.simstages import PLAIN, Behaviour, Stages, crash_backoff, parse_stages


def pod(labels: dict[str, str] | None = None, annotations: dict[str, str] | None = None,
        owner: str | None = None, ns: str = "default") -> dict:
    meta: dict = {"name": "p", "namespace": ns, "labels": labels or {},
                  "annotations": annotations or {}}
    if owner:
        meta["ownerReferences"] = [{"kind": owner, "name": "o", "uid": "u", "controller": True}]
    return {"metadata": meta, "spec": {}}


def test_defaults_job_pods_complete_and_others_run_for_ever() -> None:
    stages = Stages()
    assert stages.for_pod(pod(owner="Job")) == Behaviour(exit_after=1.0)
    assert stages.for_pod(pod(owner="ReplicaSet")).plain
    assert stages.for_pod(pod()) is PLAIN


def test_first_matching_stage_wins_then_annotations_override_it() -> None:
    stages = parse_stages({"stages": [
        {"name": "db", "match": {"labels": {"app": "db"}}, "runningAfter": "2s",
         "readyAfter": "10s"},
        {"name": "crashy", "match": {"namespace": "ci"}, "exitAfter": "1m", "exitCode": 3},
    ]})
    assert stages.for_pod(pod({"app": "db"}, ns="ci")) == Behaviour(running_after=2,
                                                                    ready_after=10)
    assert stages.for_pod(pod(ns="ci")) == Behaviour(exit_after=60, exit_code=3)
    tuned = stages.for_pod(pod({"app": "db"}, {"pinnace.dev/sim-ready-after": "250ms",
                                               "pinnace.dev/sim-exit-code": "1"}))
    assert tuned == Behaviour(running_after=2, ready_after=0.25, exit_code=1)
    # The defaults still follow the file's stages.
    assert stages.for_pod(pod(owner="Job")).exit_after == 1.0
    assert parse_stages({"stages": [], "defaultStages": False}).for_pod(pod(owner="Job")).plain


def test_pods_with_the_same_behaviour_share_one_object() -> None:
    stages = Stages()
    a = stages.for_pod(pod(annotations={"pinnace.dev/sim-exit-after": "5s"}))
    b = stages.for_pod(pod(annotations={"pinnace.dev/sim-exit-after": "5s"}))
    assert a is b and a.exit_after == 5


def test_a_bad_annotation_is_ignored_and_reported() -> None:
    stages = Stages()
    b = stages.for_pod(pod(annotations={"pinnace.dev/sim-exit-after": "soon"}))
    assert b.plain
    assert any("sim-exit-after" in name for name, _ in stages.problems())


@pytest.mark.parametrize("doc, message", [
    ({"stages": [{"exitAfter": "soon"}]}, "stages[0].exitAfter: expected a duration"),
    ({"stages": [{"exitCode": 300}]}, "stages[0].exitCode: exit code must be 0..255"),
    ({"stages": [{"readinessFlap": "0s"}]}, "stages[0].readinessFlap"),
    ({"stages": [{"match": {"image": "x"}}]}, "stages[0].match: only ownerKind"),
    ({"stages": [{"exitafter": "1s"}]}, "stages[0]: unknown field(s) exitafter"),
    ({"stage": []}, "unknown field(s) stage"),
    ({"stages": [{"usage": "cpu=lots"}]}, "stages[0].usage: "),
    ({"stages": [{"usage": "gpu=1"}]}, "usage is cpu=QUANTITY,memory=QUANTITY"),
    ([], "expected a mapping"),
])
def test_a_bad_stage_file_names_the_field(doc: object, message: str) -> None:
    with pytest.raises(ValueError) as e:
        parse_stages(doc, "f.yaml")
    assert message in str(e.value)


def test_crash_backoff_is_the_kubelets() -> None:
    waits, current = [], 0.0
    for _ in range(8):
        wait, current = crash_backoff(current, ran_for=1)
        waits.append(wait)
    assert waits == [0, 10, 20, 40, 80, 160, 300, 300]
    # A container that ran ten minutes starts the count over.
    assert crash_backoff(300, ran_for=600) == (0, 10)
