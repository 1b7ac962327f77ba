"""Job controller helpers: completed-index strings and the pods it builds."""

from __future__ import annotations

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
