"""The cronjob controller with a clock the test moves, so nothing waits for
minutes to pass. Jobs are finished by the test (no job controller runs)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest

from pinnace.controllers.base import Controller
from pinnace.controllers.cronjob import SCHEDULED_TS, CronJobController
from tests.conftest import Server, wait_for
from tests.integration.controllers.batch_harness import Controllers


class FakeClock:
    def __init__(self) -> None:
        self.now = float(int(time.time()) // 60 * 60 + 1)  # just past a minute boundary

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def ctrl(server: Server, clock: FakeClock) -> Iterator[Controllers]:
    def prepare(c: Controller) -> None:
        c.clock = clock  # type: ignore[attr-defined]
    with Controllers(server, [CronJobController], prepare=prepare) as h:
        yield h


def cronjob(name: str, **spec: object) -> str:
    return json.dumps({"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": name},
                       "spec": {"schedule": "* * * * *", "jobTemplate": {
                           "metadata": {"labels": {"from": name}},
                           "spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [
                               {"name": "c", "image": "busybox"}]}}}}, **spec}})


def get(server: Server, ns: str, *args: str) -> dict:
    return json.loads(server.kubectl("-n", ns, "get", *args, "-o", "json").stdout)


def jobs(server: Server, ns: str, name: str) -> list[dict]:
    return sorted(get(server, ns, "jobs", "-l", f"from={name}")["items"],
                  key=lambda j: j["metadata"]["name"])


def tick(ctrl: Controllers, clock: FakeClock, ns: str, name: str, seconds: float = 60) -> None:
    clock.now += seconds
    ctrl.call(lambda: ctrl.get(CronJobController).queue.add(f"{ns}/{name}"))


def complete(server: Server, ns: str, job: str) -> None:
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    conds = [{"type": t, "status": "True", "reason": "CompletionsReached",
              "message": "Reached expected number of succeeded pods",
              "lastTransitionTime": now, "lastProbeTime": now}
             for t in ("SuccessCriteriaMet", "Complete")]
    server.kubectl("-n", ns, "patch", "job", job, "--subresource=status", "--type=merge", "-p",
                   json.dumps({"status": {"startTime": now, "completionTime": now,
                                          "succeeded": 1, "conditions": conds}}))


def test_schedules_forbids_and_keeps_history(server: Server, namespace: str,
                                             ctrl: Controllers, clock: FakeClock) -> None:
    k, ns = server.kubectl, namespace
    k("-n", ns, "create", "-f", "-", input=cronjob(
        "tick", concurrencyPolicy="Forbid", successfulJobsHistoryLimit=1))
    time.sleep(0.3)
    assert not jobs(server, ns, "tick")  # not due yet
    tick(ctrl, clock, ns, "tick")
    first = wait_for(lambda: jobs(server, ns, "tick"), what="first job")[0]
    minute = int(clock.now) // 60
    assert first["metadata"]["name"] == f"tick-{minute}"
    assert first["metadata"]["annotations"][SCHEDULED_TS] .startswith(
        time.strftime("%Y-%m-%dT", time.gmtime(minute * 60)))
    assert first["metadata"]["ownerReferences"][0]["kind"] == "CronJob"
    cj = wait_for(lambda: (c := get(server, ns, "cronjob", "tick"))["status"].get("active") and c,
                  what="active job in status")
    assert cj["status"]["active"][0]["name"] == first["metadata"]["name"]
    assert cj["status"]["lastScheduleTime"] == time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                                             time.gmtime(minute * 60))
    # Forbid: the first job is still running, so the next minute starts nothing
    tick(ctrl, clock, ns, "tick")
    wait_for(lambda: "JobAlreadyActive" in k("-n", ns, "describe", "cronjob", "tick").stdout,
             what="JobAlreadyActive event")
    assert len(jobs(server, ns, "tick")) == 1
    complete(server, ns, first["metadata"]["name"])
    cj = wait_for(lambda: (c := get(server, ns, "cronjob", "tick"))["status"].get(
        "lastSuccessfulTime") and c, what="lastSuccessfulTime")
    # the run Forbid held back starts as soon as the first one has finished
    second = wait_for(lambda: len(j := jobs(server, ns, "tick")) == 2 and j[1], what="2nd job")
    assert second["metadata"]["name"] == f"tick-{int(clock.now) // 60}"
    complete(server, ns, second["metadata"]["name"])
    # history limit 1: the older finished job goes
    wait_for(lambda: [j["metadata"]["name"] for j in jobs(server, ns, "tick")] ==
             [second["metadata"]["name"]], what="history trimmed")
    events = k("-n", ns, "describe", "cronjob", "tick").stdout
    for reason in ("SuccessfulCreate", "SawCompletedJob", "SuccessfulDelete"):
        assert reason in events


def test_replace_and_suspend(server: Server, namespace: str, ctrl: Controllers,
                             clock: FakeClock) -> None:
    k, ns = server.kubectl, namespace
    k("-n", ns, "create", "-f", "-", input=cronjob("rep", concurrencyPolicy="Replace"))
    tick(ctrl, clock, ns, "rep")
    first = wait_for(lambda: jobs(server, ns, "rep"), what="first job")[0]
    tick(ctrl, clock, ns, "rep")
    wait_for(lambda: [j["metadata"]["name"] for j in jobs(server, ns, "rep")
                      if not j["metadata"].get("deletionTimestamp")] ==
             [f"rep-{int(clock.now) // 60}"], what="replaced job")
    assert first["metadata"]["name"] != f"rep-{int(clock.now) // 60}"
    k("-n", ns, "patch", "cronjob", "rep", "--type=merge", "-p", '{"spec":{"suspend":true}}')
    time.sleep(0.3)
    before = [j["metadata"]["name"] for j in jobs(server, ns, "rep")]
    tick(ctrl, clock, ns, "rep", 120)
    time.sleep(0.5)
    assert [j["metadata"]["name"] for j in jobs(server, ns, "rep")] == before


def test_unexpected_job_is_adopted_into_active(server: Server, namespace: str,
                                               ctrl: Controllers, clock: FakeClock) -> None:
    k, ns = server.kubectl, namespace
    k("-n", ns, "create", "-f", "-", input=cronjob("adopt", suspend=True))
    cj = get(server, ns, "cronjob", "adopt")
    job = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {
        "name": "stray", "labels": {"from": "adopt"}, "ownerReferences": [{
            "apiVersion": "batch/v1", "kind": "CronJob", "name": "adopt",
            "uid": cj["metadata"]["uid"], "controller": True}]},
        "spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [
            {"name": "c", "image": "busybox"}]}}}}
    k("-n", ns, "create", "-f", "-", input=json.dumps(job))
    wait_for(lambda: [r["name"] for r in get(server, ns, "cronjob", "adopt")["status"].get(
        "active") or []] == ["stray"], what="stray job in active")
    assert "UnexpectedJob" in k("-n", ns, "describe", "cronjob", "adopt").stdout
