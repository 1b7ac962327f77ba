"""The pod phase a real node reports, from its containers' states (the
kubelet's getPhase), as `kubectl get pods` shows it."""

import pytest

from pinnace.kubelet.pods import _phase

RUN = {"running": {"startedAt": "t"}}
OK = {"terminated": {"exitCode": 0}}
BAD = {"terminated": {"exitCode": 1}}
NEW = {"waiting": {"reason": "ContainerCreating"}}


def st(name: str, state: dict, last: dict | None = None) -> dict:
    return {"name": name, "state": state, "lastState": last or {}}


def pod(policy: str = "Always") -> dict:
    return {"spec": {"restartPolicy": policy}}


@pytest.mark.parametrize("policy,states,phase", [
    ("Always", [NEW], "Pending"),
    ("Always", [RUN, NEW], "Pending"),
    ("Always", [RUN], "Running"),
    ("Always", [OK], "Running"),                     # it will be started again
    ("OnFailure", [OK, OK], "Succeeded"),
    ("OnFailure", [BAD], "Running"),                 # restarted
    ("Never", [OK, OK], "Succeeded"),
    ("Never", [OK, BAD], "Failed"),
    ("Never", [RUN, BAD], "Running"),
])
def test_phase_of_containers(policy, states, phase):
    assert _phase(pod(policy), [], [st(f"c{i}", s) for i, s in enumerate(states)], set()) == phase


def test_crash_looping_container_keeps_the_pod_running():
    waiting = st("c", {"waiting": {"reason": "CrashLoopBackOff"}}, {"terminated": {"exitCode": 2}})
    assert _phase(pod("Always"), [], [waiting], set()) == "Running"


def test_init_containers_hold_the_pod_pending_or_fail_it():
    assert _phase(pod(), [st("i", RUN)], [st("c", NEW)], set()) == "Pending"
    assert _phase(pod("Never"), [st("i", BAD)], [st("c", NEW)], set()) == "Failed"
    assert _phase(pod("OnFailure"), [st("i", BAD)], [st("c", NEW)], set()) == "Pending"
    # A sidecar runs on beside the containers.
    assert _phase(pod(), [st("s", RUN), st("i", OK)], [st("c", RUN)], {"s"}) == "Running"
