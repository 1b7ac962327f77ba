"""Per-namespace defaults every pod relies on (upstream's serviceaccount
controller and root-ca-certificate publisher):
- a ServiceAccount "default" in every active namespace, recreated if deleted;
- a ConfigMap "kube-root-ca.crt" whose ca.crt holds the CA that signed the
  API server's certificate, so pods can verify kubernetes.default.svc.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pinnace.client import ApiError

from .base import Context, Controller

Obj = dict[str, Any]

DEFAULT_SA = "default"
ROOT_CA_CONFIGMAP = "kube-root-ca.crt"
DESCRIPTION_ANNOTATION = "kubernetes.io/description"
DESCRIPTION = ("Contains a CA bundle that can be used to verify the kube-apiserver when using "
               "internal endpoints such as the internal service IP or kubernetes.default.svc. "
               "No other usage is guaranteed across distributions of Kubernetes clusters.")


def namespace_active(ns: Obj | None) -> bool:
    return ns is not None and not ns["metadata"].get("deletionTimestamp") and \
        (ns.get("status") or {}).get("phase", "Active") != "Terminating"


def _ns_of(obj: Obj) -> str:
    return str(obj["metadata"].get("namespace") or "")


class ServiceAccountController(Controller):
    name = "serviceaccount"
    event_source = "service-account-controller"
    workers = 2

    def __init__(self, ctx: Context):
        super().__init__(ctx)
        self.namespaces = ctx.informers.informer("v1", "namespaces")
        self.accounts = ctx.informers.informer("v1", "serviceaccounts")
        self.sa_api = self.client.resource("v1", "serviceaccounts")

    def setup(self) -> None:
        self.namespaces.add_handler(self.enqueue, lambda old, new: self.enqueue(new))
        self.accounts.add_handler(on_delete=self._account_deleted)

    def _account_deleted(self, sa: Obj) -> None:
        if sa["metadata"]["name"] == DEFAULT_SA:
            self.queue.add(_ns_of(sa))

    async def sync(self, key: str) -> None:
        if not namespace_active(self.namespaces.get(key)):
            return
        if self.accounts.get(f"{key}/{DEFAULT_SA}") is not None:
            return
        try:
            await self.sa_api.create({"apiVersion": "v1", "kind": "ServiceAccount",
                                      "metadata": {"name": DEFAULT_SA}}, key)
        except ApiError as e:
            # AlreadyExists: the cache is behind. Forbidden: the namespace is terminating.
            if e.reason == "AlreadyExists" or e.code == 403 or e.not_found:
                return
            raise


def root_ca_pem(ctx: Context) -> str:
    """The CA bundle to publish: --root-ca-file if given, else the CA this
    process itself trusts for the API server."""
    path = ctx.options.get("root_ca_file")
    if path:
        return Path(path).read_text()
    data = ctx.client.config.ca_data
    if not data:
        raise ValueError("no root CA: pass root_ca_file or use a kubeconfig with a CA")
    return data.decode()


class RootCACertPublisher(Controller):
    name = "root-ca-cert-publisher"
    event_source = "root-ca-cert-publisher"
    workers = 2

    def __init__(self, ctx: Context):
        super().__init__(ctx)
        try:
            self.ca: str | None = root_ca_pem(ctx)
        except (ValueError, OSError) as e:
            # Without a CA there is nothing to publish; the other controllers still run.
            self.log.error("root CA publisher disabled: %s", e)
            self.ca = None
        self.namespaces = ctx.informers.informer("v1", "namespaces")
        # Only the one ConfigMap it publishes in each namespace: other
        # controllers need no more than the metadata of the rest.
        self.configmaps = ctx.informers.informer(
            "v1", "configmaps", field_selector=f"metadata.name={ROOT_CA_CONFIGMAP}")
        self.cm_api = self.client.resource("v1", "configmaps")

    def setup(self) -> None:
        self.namespaces.add_handler(self.enqueue, lambda old, new: self.enqueue(new))
        self.configmaps.add_handler(self._configmap_changed,
                                    lambda old, new: self._configmap_changed(new),
                                    self._configmap_changed)

    def _configmap_changed(self, cm: Obj) -> None:
        if cm["metadata"]["name"] == ROOT_CA_CONFIGMAP:
            self.queue.add(_ns_of(cm))

    async def sync(self, key: str) -> None:
        if self.ca is None or not namespace_active(self.namespaces.get(key)):
            return
        data = {"ca.crt": self.ca}
        cm = self.configmaps.get(f"{key}/{ROOT_CA_CONFIGMAP}")
        try:
            if cm is None:
                await self.cm_api.create({
                    "apiVersion": "v1", "kind": "ConfigMap",
                    "metadata": {"name": ROOT_CA_CONFIGMAP,
                                 "annotations": {DESCRIPTION_ANNOTATION: DESCRIPTION}},
                    "data": data}, key)
                return
            annotations = cm["metadata"].get("annotations") or {}
            if cm.get("data") == data and annotations.get(DESCRIPTION_ANNOTATION):
                return
            # Replace the whole data map: stray keys are removed, as upstream does.
            fixed = dict(cm)
            fixed["metadata"] = dict(cm["metadata"], annotations=dict(
                annotations, **{DESCRIPTION_ANNOTATION: DESCRIPTION}))
            fixed["data"] = data
            fixed.pop("binaryData", None)
            await self.cm_api.replace(fixed, key)
        except ApiError as e:
            # AlreadyExists: the cache is behind and the add event will bring it.
            # Forbidden: the namespace is terminating. A Conflict is retried.
            if e.reason == "AlreadyExists" or e.code == 403 or e.not_found:
                return
            raise


CONTROLLERS: dict[str, type[Controller]] = {
    "serviceaccount": ServiceAccountController,
    "root-ca-cert-publisher": RootCACertPublisher,
}
