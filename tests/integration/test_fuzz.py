"""A bounded fuzz run in every test run: objects made up from our own
OpenAPI v3 schemas (often wrong), created, read back, patched and listed
with odd parameters. The server must never answer 5xx, and an object it
accepted must read back. Fixed seed: the same cases every run;
bench/fuzz.py runs many more."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import Server
from tests.fuzzing import ODD_STRINGS, Schemas

POD_SPEC = {"containers": [{"name": "c", "image": "busybox"}]}
KINDS = [  # (OpenAPI document, definition, apiVersion, kind, collection, a valid object's fields)
    ("api/v1", "io.k8s.api.core.v1.ConfigMap", "v1", "ConfigMap", "configmaps", {}),
    ("api/v1", "io.k8s.api.core.v1.Secret", "v1", "Secret", "secrets", {}),
    ("api/v1", "io.k8s.api.core.v1.Service", "v1", "Service", "services",
     {"spec": {"ports": [{"port": 80}]}}),
    ("api/v1", "io.k8s.api.core.v1.Pod", "v1", "Pod", "pods", {"spec": POD_SPEC}),
    ("apis/apps/v1", "io.k8s.api.apps.v1.Deployment", "apps/v1", "Deployment", "deployments",
     {"spec": {"selector": {"matchLabels": {"app": "f"}},
               "template": {"metadata": {"labels": {"app": "f"}}, "spec": POD_SPEC}}}),
]
SETTINGS = settings(max_examples=60, derandomize=True, deadline=None, database=None,
                    suppress_health_check=list(HealthCheck))


def _base(api_version: str, ns: str) -> str:
    prefix = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
    return f"{prefix}/namespaces/{ns}"


@pytest.mark.parametrize("doc, definition, api_version, kind, plural, base", KINDS,
                         ids=[k[3] for k in KINDS])
def test_made_up_objects_never_get_a_5xx(server: Server, namespace: str, doc: str,
                                         definition: str, api_version: str, kind: str,
                                         plural: str, base: dict[str, Any]) -> None:
    http = server.http()
    code, openapi = http.call("GET", f"/openapi/v3/{doc}")
    assert code == 200
    schemas = Schemas(openapi)
    url = f"{_base(api_version, namespace)}/{plural}"
    seen: dict[int, int] = {}

    @SETTINGS
    @given(obj=schemas.kind(definition, api_version, kind, base),
           patch=schemas.obj(schemas.defs[definition], 1))
    def case(obj: dict[str, Any], patch: dict[str, Any]) -> None:
        code, body = http.call("POST", url, json.dumps(obj).encode())
        seen[code] = seen.get(code, 0) + 1
        assert code < 500, (obj, body)
        if code != 201:
            return
        name = body["metadata"]["name"]
        code, back = http.call("GET", f"{url}/{name}")
        assert code == 200 and back["metadata"]["uid"] == body["metadata"]["uid"], back
        code, body = http.call("PATCH", f"{url}/{name}", json.dumps(patch).encode(),
                               ctype="application/merge-patch+json")
        assert code < 500, (patch, body)
        code, _ = http.call("GET", f"{url}/{name}")
        assert code == 200
        assert http.call("DELETE", f"{url}/{name}?gracePeriodSeconds=0")[0] < 500

    case()
    assert seen.get(201), f"nothing made up was ever accepted: {seen}"


PARAMS = ["limit", "continue", "resourceVersion", "resourceVersionMatch", "labelSelector",
          "fieldSelector", "timeoutSeconds", "watch", "sendInitialEvents", "allowWatchBookmarks"]


@SETTINGS
@given(params=st.dictionaries(st.sampled_from(PARAMS), st.sampled_from(ODD_STRINGS + ["1", "0"]),
                              max_size=4))
def test_odd_list_parameters_never_get_a_5xx(server: Server, params: dict[str, str]) -> None:
    from urllib.parse import urlencode

    if params.get("watch") not in (None, "", "0", "false"):
        params["timeoutSeconds"] = "1"  # a watch that does start ends at once
    code, body = server.http().call("GET", "/api/v1/namespaces/default/configmaps?" +
                                    urlencode(params))
    assert code < 500, (params, body)
