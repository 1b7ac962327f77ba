"""`kubectl get componentstatuses` (issue 11, item 5): the datastore, and the
scheduler and controller manager judged by their leader Leases."""

from __future__ import annotations

from tests.conftest import Server


def test_component_statuses_follow_the_leader_leases(cluster: Server, server: Server) -> None:
    # A whole control plane: everything is up (the components take their Leases at start).
    from tests.conftest import wait_for

    def table() -> str:
        return cluster.kubectl("get", "componentstatuses").stdout

    wait_for(lambda: table().count("Healthy") == 3 and "Unhealthy" not in table(), 30,
             what="every component healthy")
    got = cluster.kubectl("get", "cs")
    assert got.stdout.split()[:4] == ["NAME", "STATUS", "MESSAGE", "ERROR"]
    assert "Warning: v1 ComponentStatus is deprecated in v1.19+" in got.stderr
    assert "etcd-0" in got.stdout
    # The API server alone: nobody leads the scheduling or the controllers.
    alone = server.kubectl("get", "componentstatus", "scheduler", "-o", "json").stdout
    assert '"status": "False"' in alone and "kube-scheduler" in alone
    assert server.kubectl("get", "cs", "nothing", check=False).returncode != 0
