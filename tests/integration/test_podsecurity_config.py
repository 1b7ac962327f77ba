"""PodSecurity's configuration (--admission-control-config-file, an
AdmissionConfiguration): levels for namespaces without pod-security
labels, and users, namespaces and runtime classes exempt; a bad file stops
the start, naming the field."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.conftest import start_server

CONFIG = """apiVersion: apiserver.config.k8s.io/v1
kind: AdmissionConfiguration
plugins:
- name: PodSecurity
  path: podsecurity.yaml
"""
POD_SECURITY = """apiVersion: pod-security.admission.config.k8s.io/v1
kind: PodSecurityConfiguration
defaults:
  enforce: baseline
  warn: restricted
exemptions:
  usernames: [alice]
  namespaces: [tools]
  runtimeClasses: [gvisor]
"""


def _privileged(ns: str, name: str, runtime_class: str = "") -> str:
    spec: dict[str, object] = {"containers": [{"name": "root", "image": "busybox",
                                               "securityContext": {"privileged": True}}]}
    if runtime_class:
        spec["runtimeClassName"] = runtime_class
    return json.dumps({"apiVersion": "v1", "kind": "Pod",
                       "metadata": {"name": name, "namespace": ns}, "spec": spec})


def test_defaults_and_exemptions_from_the_admission_configuration(tmp_path: Path) -> None:
    (tmp_path / "admission.yaml").write_text(CONFIG)
    (tmp_path / "podsecurity.yaml").write_text(POD_SECURITY)  # found next to the file
    srv = start_server(tmp_path / "data", "--datastore", "memory",
                       "--admission-control-config-file", str(tmp_path / "admission.yaml"))
    try:
        for ns in ("apps", "tools", "open"):
            srv.kubectl("create", "ns", ns)
        srv.kubectl("label", "ns", "open", "pod-security.kubernetes.io/enforce=privileged")

        # No labels: the configured defaults, enforce baseline and warn restricted.
        refused = srv.kubectl("create", "-f", "-", input=_privileged("apps", "root"),
                              check=False)
        assert refused.returncode != 0
        assert 'pods "root" is forbidden: violates PodSecurity "baseline:latest": privileged ' \
               '(container "root" must not set securityContext.privileged=true)' in refused.stderr
        warned = srv.kubectl("run", "plain", "--image=busybox", "-n", "apps")
        assert 'Warning: would violate PodSecurity "restricted:latest"' in warned.stderr

        # A namespace's own label still wins over the defaults.
        srv.kubectl("create", "-f", "-", input=_privileged("open", "root"))

        # Exempt: a namespace, a user, a runtime class.
        ok = srv.kubectl("create", "-f", "-", input=_privileged("tools", "root"))
        assert "Warning" not in ok.stderr
        srv.kubectl("--as", "alice", "--as-group", "system:masters", "create", "-f", "-",
                    input=_privileged("apps", "by-alice"))
        srv.kubectl("create", "-f", "-", input=json.dumps({
            "apiVersion": "node.k8s.io/v1", "kind": "RuntimeClass",
            "metadata": {"name": "gvisor"}, "handler": "runsc"}))
        srv.kubectl("create", "-f", "-", input=_privileged("apps", "sandboxed", "gvisor"))
        assert sorted(srv.kubectl("get", "pods", "-A", "-o", "name").stdout.split()) == [
            "pod/by-alice", "pod/plain", "pod/root", "pod/root", "pod/sandboxed"]
    except subprocess.CalledProcessError as e:
        raise AssertionError(e.stderr) from None
    finally:
        srv.stop()


def test_a_bad_admission_configuration_stops_the_start(tmp_path: Path) -> None:
    bad = tmp_path / "admission.yaml"
    bad.write_text(CONFIG.replace("  path: podsecurity.yaml", """  configuration:
    apiVersion: pod-security.admission.config.k8s.io/v1
    kind: PodSecurityConfiguration
    defaults: {enforce: strict}
    exemptions: {namespaces: [Not_A_Name]}"""))
    proc = subprocess.run(
        [sys.executable, "-m", "pinnace.cli.main", "apiserver", "--data-dir", str(tmp_path / "d"),
         "--datastore", "memory", "--listen", "127.0.0.1:0",
         "--admission-control-config-file", str(bad)],
        capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0
    assert str(bad) in proc.stderr
    assert 'defaults.enforce: Unsupported value: "strict": supported values: "privileged", ' \
           '"baseline", "restricted"' in proc.stderr
    assert 'exemptions.namespaces[0]: Invalid value: "Not_A_Name"' in proc.stderr
    assert not (tmp_path / "d" / "kubeconfig.yaml").exists()
