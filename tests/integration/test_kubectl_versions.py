"""Every kubectl the machine has, 1.27 through 1.37, through the same smoke
matrix: get, apply, apply --server-side, diff, rollout, scale, describe,
explain. Each run has its own discovery cache, so no version leans on what
another one cached (kubectl 1.27-1.29 ask for aggregated discovery v2beta1
and must fall back to the legacy documents)."""

from __future__ import annotations

import glob
import json
import os
import re
import subprocess
from pathlib import Path

import pytest

from tests.conftest import KUBECTL, Server

# Where older kubectl binaries are found: the Cloud SDK's kubectl.1.NN, or a
# kubectl-1.NN / kubectl.1.NN anywhere on PATH.
_PATTERNS = ["/usr/lib/google-cloud-sdk/bin/kubectl.1.*",
             *(os.path.join(d, p) for d in os.environ.get("PATH", "").split(os.pathsep) if d
               for p in ("kubectl.1.*", "kubectl-1.*"))]


def _minor(binary: str) -> int | None:
    try:
        out = subprocess.run([binary, "version", "--client", "-o", "json"], capture_output=True,
                             text=True, timeout=30).stdout
        return int(re.sub(r"\D.*", "", json.loads(out)["clientVersion"]["minor"]))
    except (OSError, ValueError, KeyError, subprocess.TimeoutExpired):
        return None


def _kubectls() -> list[tuple[int, str]]:
    found: dict[int, str] = {}
    for binary in [KUBECTL, *sorted({p for pat in _PATTERNS for p in glob.glob(pat)})]:
        if os.access(binary, os.X_OK):
            minor = _minor(binary)
            if minor is not None:
                found.setdefault(minor, binary)
    return sorted(found.items())


KUBECTLS = _kubectls()


def _deployment(name: str, replicas: int = 1) -> str:
    return json.dumps({
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                 "template": {"metadata": {"labels": {"app": name}},
                              "spec": {"containers": [{"name": "web", "image": "nginx:1"}]}}}})


@pytest.mark.parametrize(("minor", "binary"), KUBECTLS or [pytest.param(0, "", marks=pytest.mark.skip(
    reason="no kubectl found"))], ids=[f"1.{m}" for m, _ in KUBECTLS] or ["none"])
def test_kubectl_smoke_matrix(server: Server, namespace: str, tmp_path: Path,
                              minor: int, binary: str) -> None:
    env = dict(os.environ, KUBECONFIG=str(server.kubeconfig))
    env.pop("KUBERNETES_SERVICE_HOST", None)

    def k(*args: str, input: str | None = None, ok: tuple[int, ...] = (0,)) -> str:
        proc = subprocess.run([binary, "--cache-dir", str(tmp_path / "cache"), "-n", namespace,
                               *args], input=input, capture_output=True, text=True, env=env,
                              timeout=60)
        assert proc.returncode in ok, \
            f"kubectl 1.{minor} {' '.join(args)}: {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
        return proc.stdout

    assert "No resources found" in subprocess.run(
        [binary, "--cache-dir", str(tmp_path / "cache"), "-n", namespace, "get", "deploy,sts,cm"],
        capture_output=True, text=True, env=env, timeout=60).stderr
    assert "deployment.apps/web created" in k("apply", "-f", "-", input=_deployment("web"))
    assert "deployment.apps/web unchanged" in k("apply", "-f", "-", input=_deployment("web"))
    # diff exits 1 when the live object differs, 0 when it does not.
    assert "replicas: 2" in k("diff", "-f", "-", input=_deployment("web", 2), ok=(1,))
    k("diff", "-f", "-", input=_deployment("web"))
    assert "deployment.apps/ssa serverside-applied" in k(
        "apply", "--server-side", "-f", "-", input=_deployment("ssa"))
    assert "deployment.apps/web scaled" in k("scale", "deploy", "web", "--replicas=3")
    assert "deployment.apps/web restarted" in k("rollout", "restart", "deploy/web")
    assert "deployment.apps/web paused" in k("rollout", "pause", "deploy/web")
    assert "deployment.apps/web resumed" in k("rollout", "resume", "deploy/web")
    k("rollout", "history", "deploy/web")
    described = k("describe", "deployment", "web")
    assert re.search(r"Replicas:\s+3 desired", described)
    assert "kubectl.kubernetes.io/restartedAt" in described
    explained = k("explain", "deployment.spec.replicas")
    assert "replicas" in explained and "integer" in explained
    assert k("get", "deploy", "-o", "name").split() == ["deployment.apps/ssa",
                                                        "deployment.apps/web"]
    got = json.loads(k("get", "deploy", "web", "-o", "json"))
    assert got["spec"]["replicas"] == 3 and not got["spec"].get("paused")


_V2 = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"
_V2BETA1 = "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList"


@pytest.mark.parametrize(("accept", "want"), [
    (f"{_V2},{_V2BETA1},application/json", "apidiscovery.k8s.io/v2"),  # kubectl 1.30+
    (f"{_V2BETA1},application/json", "APIGroupList"),  # kubectl 1.27-1.29
    (_V2BETA1, "APIGroupList"),  # nothing pinnace serves: the legacy document
    (f"application/json,{_V2}", "APIGroupList"),  # the client's first choice wins
    (f"application/json;q=0.5,{_V2}", "apidiscovery.k8s.io/v2"),  # unless it prefers less
    ("", "APIGroupList"),
], ids=["kubectl-1.30+", "kubectl-1.27", "v2beta1-only", "json-first", "q-values", "none"])
def test_discovery_answers_the_version_asked_for(server: Server, accept: str, want: str) -> None:
    code, body = server.http().call("GET", "/apis", accept=accept)
    assert code == 200
    assert want in (body["apiVersion"], body["kind"]), body.get("apiVersion")
    code, body = server.http().call("GET", "/api", accept=accept)
    assert code == 200
    legacy = want == "APIGroupList"
    assert body["kind"] == ("APIVersions" if legacy else "APIGroupDiscoveryList")
