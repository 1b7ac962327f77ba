"""The audit policy (parsing, first-match rules), event rendering, and the
log file's rotation, without a server."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import orjson
import pytest

from pinnace.apiserver.audit import _Lazy, _without_managed_fields, microtime, render
from pinnace.apiserver.audit.log import AuditLog, backup_name, list_backups
from pinnace.apiserver.audit.policy import PolicyError, load_policy, parse_policy
from pinnace.apiserver.authn import User
from pinnace.apiserver.requestinfo import request_info

ALICE = User("alice", "u-1", ("devs", "system:authenticated"))
BOB = User("bob", "", ("ops", "system:authenticated"))


def policy(rules: list[dict[str, Any]], **top: Any) -> Any:
    return parse_policy(json.dumps({"apiVersion": "audit.k8s.io/v1", "kind": "Policy",
                                    "rules": rules, **top}))


def level(p: Any, user: User | None, method: str, path: str, **query: str) -> str:
    return str(p.evaluate(user, request_info(method, path, query)).level)


# -- parsing -----------------------------------------------------------------------


def test_yaml_policy_parses() -> None:
    p = parse_policy(b"""
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: ["RequestReceived"]
rules:
- level: None
  nonResourceURLs: ["/healthz*"]
- level: RequestResponse
  resources:
  - group: ""
    resources: ["configmaps"]
- level: Metadata
""")
    assert len(p.rules) == 3
    assert p.omit_stages == {"RequestReceived"}


@pytest.mark.parametrize(("doc", "message"), [
    ({"kind": "Policy", "rules": [{"level": "Metadata"}]}, "unknown group version"),
    ({"apiVersion": "audit.k8s.io/v1beta1", "kind": "Policy", "rules": [{"level": "Metadata"}]},
     "unknown group version"),
    ({"apiVersion": "audit.k8s.io/v1", "rules": [{"level": "Metadata"}]}, "'Kind' is missing"),
    ({"apiVersion": "audit.k8s.io/v1", "kind": "Policy", "rules": []},
     "illegal policy with 0 rules"),
    ({"apiVersion": "audit.k8s.io/v1", "kind": "Policy", "rules": [{"level": "Loud"}]},
     'rules[0].level: Unsupported value: "Loud": supported values: "None", "Metadata", '
     '"Request", "RequestResponse"'),
    ({"apiVersion": "audit.k8s.io/v1", "kind": "Policy", "rules": [{"users": ["a"]}]},
     "rules[0].level: Required value"),
    ({"apiVersion": "audit.k8s.io/v1", "kind": "Policy",
      "rules": [{"level": "None", "nonResourceURLs": ["healthz"]}]},
     "rules[0].nonResourceURLs[0]: Invalid value: \"healthz\": non-resource URL rules must "
     "begin with a '/' character"),
    ({"apiVersion": "audit.k8s.io/v1", "kind": "Policy",
      "rules": [{"level": "None", "nonResourceURLs": ["/a*b"]}]},
     "wildcards '*' must be the final character"),
    ({"apiVersion": "audit.k8s.io/v1", "kind": "Policy",
      "rules": [{"level": "None", "nonResourceURLs": ["/x"], "namespaces": ["a"]}]},
     "rules cannot apply to both regular resources and non-resource URLs"),
    ({"apiVersion": "audit.k8s.io/v1", "kind": "Policy",
      "rules": [{"level": "None", "omitStages": ["Finished"]}]},
     'rules[0].omitStages[0]: Invalid value: "Finished": allowed stages are '
     "RequestReceived,ResponseStarted,ResponseComplete,Panic"),
    ({"apiVersion": "audit.k8s.io/v1", "kind": "Policy", "omitStages": ["Nope"],
      "rules": [{"level": "None"}]}, "omitStages[0]: Invalid value"),
    ({"apiVersion": "audit.k8s.io/v1", "kind": "Policy",
      "rules": [{"level": "None", "resources": [{"group": "Apps/v1"}]}]},
     'rules[0].resources.group: Invalid value: "Apps/v1"'),
    ({"apiVersion": "audit.k8s.io/v1", "kind": "Policy",
      "rules": [{"level": "None", "resources": [{"resourceNames": ["x"]}]}]},
     "using resourceNames requires at least one resource"),
    ({"apiVersion": "audit.k8s.io/v1", "kind": "Policy",
      "rules": [{"level": "None", "users": "alice"}]},
     "rules[0].users: expected a list of strings"),
])
def test_invalid_policies_name_the_problem(doc: dict[str, Any], message: str) -> None:
    with pytest.raises(PolicyError) as e:
        parse_policy(json.dumps(doc))
    assert message in str(e.value)


def test_policy_file_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match="failed to read audit policy file"):
        load_policy(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("apiVersion: audit.k8s.io/v1\nkind: Policy\nrules: [{level: Everything}]\n")
    with pytest.raises(PolicyError, match=f"Unsupported value.*from file {bad}"):
        load_policy(bad)
    bad.write_text("rules: [\n")
    with pytest.raises(PolicyError, match="failed decoding"):
        load_policy(bad)


def test_unknown_fields_are_decoded_leniently(caplog: pytest.LogCaptureFixture) -> None:
    p = policy([{"level": "Metadata", "verb": ["get"]}])
    assert level(p, ALICE, "GET", "/api/v1/pods") == "Metadata"
    assert 'unknown field "rules[0].verb"' in caplog.text


# -- matching ----------------------------------------------------------------------


def test_first_matching_rule_wins() -> None:
    p = policy([{"level": "None", "users": ["alice"]},
                {"level": "RequestResponse", "resources": [{"resources": ["configmaps"]}]},
                {"level": "Metadata"}])
    assert level(p, ALICE, "POST", "/api/v1/namespaces/a/configmaps") == "None"
    assert level(p, BOB, "POST", "/api/v1/namespaces/a/configmaps") == "RequestResponse"
    assert level(p, BOB, "GET", "/api/v1/pods") == "Metadata"


def test_no_matching_rule_is_none() -> None:
    p = policy([{"level": "Metadata", "verbs": ["delete"]}])
    assert level(p, ALICE, "GET", "/api/v1/pods") == "None"
    assert level(p, ALICE, "DELETE", "/api/v1/namespaces/a/pods/x") == "Metadata"


def test_users_groups_and_unauthenticated() -> None:
    p = policy([{"level": "Request", "userGroups": ["ops"]},
                {"level": "Metadata", "users": ["alice"]},
                {"level": "RequestResponse"}])
    assert level(p, BOB, "GET", "/api") == "Request"
    assert level(p, ALICE, "GET", "/api") == "Metadata"
    # A request whose credentials were refused has no user: only user-less rules match.
    assert level(p, None, "GET", "/api") == "RequestResponse"


def test_verbs_are_authorization_verbs() -> None:
    p = policy([{"level": "Request", "verbs": ["watch"]}, {"level": "Metadata",
                                                           "verbs": ["list"]}])
    assert level(p, ALICE, "GET", "/api/v1/pods", watch="true") == "Request"
    assert level(p, ALICE, "GET", "/api/v1/watch/pods") == "Request"
    assert level(p, ALICE, "GET", "/api/v1/pods") == "Metadata"
    assert level(p, ALICE, "GET", "/api/v1/namespaces/a/pods/x") == "None"


def test_resources_groups_subresources_and_names() -> None:
    p = policy([
        {"level": "RequestResponse", "resources": [{"group": "", "resources": ["pods/log"]}]},
        {"level": "Request", "resources": [{"group": "apps", "resources": ["*/scale"]}]},
        {"level": "Metadata", "resources": [{"group": "", "resources": ["secrets"],
                                             "resourceNames": ["top"]}]},
        {"level": "None", "resources": [{"group": "*", "resources": ["deployments/*"]}]},
        {"level": "Request", "resources": [{"group": "rbac.authorization.k8s.io"}]},
        {"level": "Metadata", "resources": [{"group": "", "resources": ["*"]}]},
    ])
    assert level(p, ALICE, "GET", "/api/v1/namespaces/a/pods/x/log") == "RequestResponse"
    assert level(p, ALICE, "GET", "/api/v1/namespaces/a/pods/x") == "Metadata"  # via "*"
    assert level(p, ALICE, "PUT", "/apis/apps/v1/namespaces/a/deployments/d/scale") == "Request"
    assert level(p, ALICE, "GET", "/apis/apps/v1/namespaces/a/deployments/d/status") == "None"
    assert level(p, ALICE, "GET", "/apis/apps/v1/namespaces/a/deployments/d") == "None"
    assert level(p, ALICE, "GET", "/api/v1/namespaces/a/secrets/top") == "Metadata"
    assert level(p, ALICE, "GET", "/apis/rbac.authorization.k8s.io/v1/clusterroles") == "Request"
    # "*" in the core group: not another group's resources.
    assert level(p, ALICE, "GET", "/apis/batch/v1/jobs") == "None"


def test_resource_names_limit_the_rule() -> None:
    p = policy([{"level": "Request", "resources": [{"resources": ["secrets"],
                                                    "resourceNames": ["top"]}]}])
    assert level(p, ALICE, "GET", "/api/v1/namespaces/a/secrets/top") == "Request"
    assert level(p, ALICE, "GET", "/api/v1/namespaces/a/secrets/other") == "None"
    assert level(p, ALICE, "GET", "/api/v1/namespaces/a/secrets") == "None"


def test_namespaces_and_cluster_scope() -> None:
    p = policy([{"level": "Request", "namespaces": ["kube-system"]},
                {"level": "Metadata", "namespaces": [""]}])
    assert level(p, ALICE, "GET", "/api/v1/namespaces/kube-system/pods") == "Request"
    assert level(p, ALICE, "GET", "/api/v1/nodes") == "Metadata"
    assert level(p, ALICE, "GET", "/api/v1/namespaces/default/pods") == "None"
    # Resource rules never match non-resource requests.
    assert level(p, ALICE, "GET", "/healthz") == "None"


def test_non_resource_urls() -> None:
    p = policy([{"level": "None", "nonResourceURLs": ["/healthz*", "/version"]},
                {"level": "Request", "nonResourceURLs": ["/apis/*"]},
                {"level": "Metadata", "nonResourceURLs": ["*"]}])
    assert level(p, ALICE, "GET", "/healthz") == "None"
    assert level(p, ALICE, "GET", "/healthz/etcd") == "None"
    assert level(p, ALICE, "GET", "/version") == "None"
    assert level(p, ALICE, "GET", "/versions") == "Metadata"
    assert level(p, ALICE, "GET", "/apis/apps") == "Request"  # discovery is non-resource
    assert level(p, ALICE, "GET", "/apis") == "Metadata"
    assert level(p, ALICE, "GET", "/api/v1/pods") == "None"  # a resource request


def test_omit_stages_and_managed_fields_per_rule() -> None:
    p = policy([{"level": "Request", "users": ["alice"], "omitStages": ["ResponseComplete"],
                 "omitManagedFields": False},
                {"level": "Metadata"}],
               omitStages=["RequestReceived"], omitManagedFields=True)
    a = p.evaluate(ALICE, request_info("GET", "/api/v1/pods"))
    assert a.omit_stages == {"RequestReceived", "ResponseComplete"}
    assert a.omit_managed_fields is False
    b = p.evaluate(BOB, request_info("GET", "/api/v1/pods"))
    assert b.omit_stages == {"RequestReceived"}
    assert b.omit_managed_fields is True


# -- rendering ---------------------------------------------------------------------


def _event(**extra: Any) -> dict[str, Any]:
    ev: dict[str, Any] = {"kind": "Event", "apiVersion": "audit.k8s.io/v1", "level": "Request",
                          "auditID": "a8b5b4b6-0000-4000-8000-000000000001",
                          "stage": "ResponseComplete", "requestURI": "/api/v1/namespaces/a/cm",
                          "verb": "create", "user": {"username": "alice"},
                          "objectRef": {"resource": "configmaps", "namespace": "a",
                                        "apiVersion": "v1"},
                          "responseStatus": {"metadata": {}, "code": 201}}
    ev.update(extra)
    ev.setdefault("requestReceivedTimestamp", 1_800_000_000.123456)
    ev.setdefault("stageTimestamp", 1_800_000_000.5)
    return ev


def test_microtime_has_six_digits_and_z() -> None:
    assert microtime(0.0) == "1970-01-01T00:00:00.000000Z"
    assert microtime(1_800_000_000.25) == "2027-01-15T08:00:00.250000Z"


def test_render_request_object_fills_object_ref_and_keeps_order() -> None:
    body = orjson.dumps({"apiVersion": "v1", "kind": "ConfigMap",
                         "metadata": {"name": "c1", "managedFields": [{"manager": "k"}]}})
    line = render(_event(requestObject=_Lazy(body, "application/json", fills_ref=True)))
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    ev = json.loads(line)
    assert list(ev) == ["kind", "apiVersion", "level", "auditID", "stage", "requestURI", "verb",
                        "user", "objectRef", "responseStatus", "requestObject",
                        "requestReceivedTimestamp", "stageTimestamp"]
    assert ev["objectRef"] == {"resource": "configmaps", "namespace": "a", "name": "c1",
                               "apiVersion": "v1"}
    assert list(ev["objectRef"]) == ["resource", "namespace", "name", "apiVersion"]
    assert ev["requestObject"]["metadata"]["managedFields"] == [{"manager": "k"}]
    assert ev["requestReceivedTimestamp"].endswith(".123456Z")


def test_render_metadata_level_reads_the_body_only_for_the_object_ref() -> None:
    body = b'{"metadata":{"name":"c2","resourceVersion":"7"}}'
    ev = json.loads(render(_event(level="Metadata", requestObject=_Lazy(
        body, "application/json", keep=False, fills_ref=True))))
    assert "requestObject" not in ev
    assert ev["objectRef"]["name"] == "c2"
    assert ev["objectRef"]["resourceVersion"] == "7"


def test_render_omits_managed_fields_when_asked() -> None:
    obj = {"kind": "ConfigMapList", "metadata": {},
           "items": [{"metadata": {"name": "x", "managedFields": [{}]}}]}
    ev = _event(level="RequestResponse",
                responseObject=_Lazy(orjson.dumps(obj), "application/json"),
                requestObject=_Lazy(b'{"metadata":{"name":"x","managedFields":[]}}',
                                    "application/json"))
    ev["\x00omitManagedFields"] = True
    out = json.loads(render(ev))
    assert out["responseObject"]["items"][0]["metadata"] == {"name": "x"}
    assert out["requestObject"]["metadata"] == {"name": "x"}
    assert "\x00omitManagedFields" not in out
    table = {"kind": "Table", "rows": [{"cells": [], "object": {
        "metadata": {"name": "p", "managedFields": []}}}]}
    assert _without_managed_fields(table)["rows"][0]["object"] == {"metadata": {"name": "p"}}


def test_render_drops_a_body_it_cannot_read() -> None:
    ev = json.loads(render(_event(requestObject=_Lazy(b"\x00\x01", "application/json"))))
    assert "requestObject" not in ev


def test_yaml_bodies_become_json() -> None:
    ev = json.loads(render(_event(requestObject=_Lazy(
        b"metadata:\n  name: y\n", "application/apply-patch+yaml", patch=True))))
    assert ev["requestObject"] == {"metadata": {"name": "y"}}


# -- the log file ------------------------------------------------------------------


def test_backup_names_are_lumberjacks() -> None:
    assert backup_name("/var/log/audit.log", 1_800_000_000.123) == \
        "/var/log/audit-2027-01-15T08-00-00.123.log"
    assert backup_name("/x/audit", 0.0) == "/x/audit-1970-01-01T00-00-00.000"


def test_log_writes_whole_lines_with_mode_0600(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "audit.log"
    out = AuditLog(str(path))
    out.start()
    for i in range(100):
        assert out.put(b'{"n":%d}\n' % i)
    out.stop()
    lines = path.read_bytes().splitlines()
    assert [json.loads(x)["n"] for x in lines] == list(range(100))
    assert path.stat().st_mode & 0o777 == 0o600


def test_log_drops_past_its_buffer_without_blocking(tmp_path: Path) -> None:
    out = AuditLog(str(tmp_path / "a.log"), buffer_size=5)
    out.open()  # no writer thread: nothing drains
    assert all(out.put(b"x\n") for _ in range(5))
    assert not out.put(b"y\n")
    assert out.dropped == 1
    out.stop()
    assert (tmp_path / "a.log").read_bytes() == b"x\n" * 5


def _fill(out: AuditLog, n: int, size: int = 1000) -> None:
    for _ in range(n):
        out.put(b"x" * (size - 1) + b"\n")
        out.flush()


def test_rotation_by_size_keeps_max_backups(tmp_path: Path) -> None:
    path = tmp_path / "audit.log"
    clock = [1_800_000_000.0]
    out = AuditLog(str(path), max_size_mb=1, max_backups=2, max_age_days=0,
                   clock=lambda: clock[0])
    out.open()
    for _ in range(4):
        _fill(out, 1048)  # a little over 1 MiB each round
        clock[0] += 1
    out.stop()
    backups = list_backups(str(path))
    assert len(backups) == 2  # the older ones removed
    for _, p in backups:
        assert os.path.getsize(p) <= 1024 * 1024
        assert Path(p).name.startswith("audit-2027-01-15T08-00-0")
        assert Path(p).name.endswith(".log")
    assert path.stat().st_size <= 1024 * 1024


def test_rotation_removes_backups_older_than_max_age(tmp_path: Path) -> None:
    path = tmp_path / "audit.log"
    old = backup_name(str(path), time.time() - 10 * 86400)
    recent = backup_name(str(path), time.time() - 86400)
    Path(old).write_text("old\n")
    Path(recent).write_text("recent\n")
    (tmp_path / "unrelated.log").write_text("keep\n")
    out = AuditLog(str(path), max_size_mb=1, max_backups=0, max_age_days=3)
    out.open()
    _fill(out, 1100)
    out.stop()
    assert not Path(old).exists()
    assert Path(recent).exists()
    assert (tmp_path / "unrelated.log").exists()
    assert len(list_backups(str(path))) == 2  # recent and the one just rotated


def test_a_process_that_does_not_rotate_follows_the_new_file(tmp_path: Path) -> None:
    path = tmp_path / "audit.log"
    owner = AuditLog(str(path), max_size_mb=1, max_backups=0, max_age_days=0)
    other = AuditLog(str(path), max_size_mb=1, rotate=False)
    owner.open()
    other.open()
    _fill(other, 1100)  # the follower never renames, even past the limit
    assert not list_backups(str(path))
    _fill(owner, 1)  # the owner rotates
    assert len(list_backups(str(path))) == 1
    other.put(b"after\n")
    other.flush()
    owner.stop()
    other.stop()
    assert path.read_bytes().endswith(b"after\n")


def test_rotation_off_with_maxsize_zero(tmp_path: Path) -> None:
    path = tmp_path / "audit.log"
    out = AuditLog(str(path), max_size_mb=0)
    out.open()
    _fill(out, 1100)
    out.stop()
    assert not list_backups(str(path))
    assert path.stat().st_size == 1100 * 1000
