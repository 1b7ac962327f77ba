"""The default ServiceAccount and the kube-root-ca.crt ConfigMap appear in
every namespace, and come back when deleted."""

from __future__ import annotations

import json
from pathlib import Path

from pinnace.controllers.serviceaccount import (
    DESCRIPTION,
    RootCACertPublisher,
    ServiceAccountController,
)
from tests.conftest import Server
from tests.integration.controllers.nodes_harness import (
    eventually,
    kubectl,
    own_server,
    run_controllers,
)

__all__ = ["own_server"]


async def _get(server: Server, ns: str, kind: str, name: str) -> dict | None:
    out = await kubectl(server, "-n", ns, "get", kind, name, "-o", "json",
                        "--ignore-not-found")
    return json.loads(out) if out.strip() else None


async def test_default_account_and_root_ca_in_every_namespace(own_server: Server) -> None:
    k = own_server
    ca = (k.data_dir / "tls" / "ca.crt").read_text()
    async with run_controllers(k, ServiceAccountController, RootCACertPublisher):
        # Namespaces that existed before the controllers started are covered too.
        for ns in ("default", "kube-system"):
            assert await eventually(lambda ns=ns: _get(k, ns, "sa", "default"), what=ns)
        await kubectl(k, "create", "namespace", "sa-new")
        sa = await eventually(lambda: _get(k, "sa-new", "sa", "default"), what="default SA")
        cm = await eventually(lambda: _get(k, "sa-new", "cm", "kube-root-ca.crt"),
                              what="root CA configmap")
        assert cm["data"] == {"ca.crt": ca}
        assert cm["metadata"]["annotations"]["kubernetes.io/description"] == DESCRIPTION
        assert "-----BEGIN CERTIFICATE-----" in cm["data"]["ca.crt"]

        # Deleted: recreated. Tampered with: restored.
        await kubectl(k, "-n", "sa-new", "delete", "sa", "default")
        await eventually(lambda: _recreated(k, "sa-new", sa["metadata"]["uid"]),
                         what="a new default SA")
        await kubectl(k, "-n", "sa-new", "patch", "cm", "kube-root-ca.crt", "--type=merge",
                      "-p", '{"data":{"ca.crt":"bogus","extra":"x"}}')
        await eventually(lambda: _restored(k, "sa-new", ca), what="configmap restored")
        await kubectl(k, "-n", "sa-new", "delete", "cm", "kube-root-ca.crt")
        await eventually(lambda: _restored(k, "sa-new", ca), what="configmap recreated")


async def test_root_ca_file_option(own_server: Server, tmp_path: Path) -> None:
    pem = "-----BEGIN CERTIFICATE-----\nZm9v\n-----END CERTIFICATE-----\n"
    path = tmp_path / "root.pem"
    path.write_text(pem)
    async with run_controllers(own_server, RootCACertPublisher,
                               options={"root_ca_file": str(path)}):
        await kubectl(own_server, "create", "namespace", "sa-file")
        await eventually(lambda: _restored(own_server, "sa-file", pem), what="file CA")


async def _recreated(server: Server, ns: str, old_uid: str) -> bool:
    sa = await _get(server, ns, "sa", "default")
    return bool(sa and sa["metadata"]["uid"] != old_uid)


async def _restored(server: Server, ns: str, ca: str) -> bool:
    cm = await _get(server, ns, "cm", "kube-root-ca.crt")
    return bool(cm and cm.get("data") == {"ca.crt": ca})
