"""The ServiceAccount admission plugin's work on pod CREATE, as upstream's
plugin/pkg/admission/serviceaccount does it:

- the pod's account (``default`` when unnamed) must exist; ``default`` is
  waited for a little, since the serviceaccount controller makes it just
  after the namespace;
- unless ``automountServiceAccountToken`` is false (the pod's choice wins,
  then the account's), a projected ``kube-api-access-<5 chars>`` volume
  (bound token, root CA, namespace) is mounted read-only at
  /var/run/secrets/kubernetes.io/serviceaccount in every container and init
  container that mounts nothing there (ephemeral containers are left alone,
  as upstream leaves them);
- a pod without imagePullSecrets takes the account's;
- an account annotated ``kubernetes.io/enforce-mountable-secrets: "true"``
  limits the secrets the pod may use to those it lists;
- mirror pods are never changed, and may not name an account, reference a
  secret or project a token.

One difference, on purpose: a missing ``default`` account is waited for
and refused only while a controller manager holds its leader Lease (so
something will create the account). With no controller manager (``pinnace
apiserver`` alone) nothing ever would, so the pod is admitted as if the
account existed with no settings instead of being refused after a wait.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from typing import Any

from pinnace.storage.interface import Store

from .. import codec, status
from . import CREATE, Attributes

Obj = dict[str, Any]

DEFAULT_SERVICE_ACCOUNT = "default"
MIRROR_POD_ANNOTATION = "kubernetes.io/config.mirror"
ENFORCE_MOUNTABLE_SECRETS = "kubernetes.io/enforce-mountable-secrets"
VOLUME_PREFIX = "kube-api-access-"
MOUNT_PATH = "/var/run/secrets/kubernetes.io/serviceaccount"
# Upstream's WarnOnlyBoundTokenExpirationSeconds: one hour and seven seconds.
TOKEN_EXPIRATION_SECONDS = 3607
DEFAULT_ATTEMPTS = 10  # lookups of a missing "default" account before refusing

_NAME_CHARS = "bcdfghjklmnpqrstvwxz2456789"  # upstream's name generator alphabet
_ACCOUNTS = "/registry/core/serviceaccounts/"
_MANAGER_LEASE = "/registry/coordination.k8s.io/leases/kube-system/kube-controller-manager"
_CLOCK_SKEW = 5.0  # seconds of disagreement between servers' clocks tolerated

Refuse = Callable[[str], status.APIError]
_sleep = asyncio.sleep  # replaced by tests


def generate_volume_name() -> str:
    return VOLUME_PREFIX + "".join(random.choices(_NAME_CHARS, k=5))


def token_volume_source() -> Obj:
    """The projected source of the kube-api-access volume, defaultMode
    spelled out as upstream does."""
    return {
        "defaultMode": 420,
        "sources": [
            {"serviceAccountToken": {"expirationSeconds": TOKEN_EXPIRATION_SECONDS,
                                     "path": "token"}},
            {"configMap": {"name": "kube-root-ca.crt",
                           "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
            {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {
                "apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}},
        ],
    }


def is_mirror_pod(pod: Obj) -> bool:
    return MIRROR_POD_ANNOTATION in ((pod.get("metadata") or {}).get("annotations") or {})


def should_automount(sa: Obj | None, pod: Obj) -> bool:
    choice = (pod.get("spec") or {}).get("automountServiceAccountToken")
    if choice is not None:
        return bool(choice)
    if sa is not None and sa.get("automountServiceAccountToken") is not None:
        return bool(sa["automountServiceAccountToken"])
    return True


def mount_token(spec: Obj, new_name: Callable[[], str] = generate_volume_name) -> None:
    """Mount the kube-api-access volume in every container and init container
    without a mount at MOUNT_PATH; reuse a volume already named like one."""
    volumes = spec.get("volumes") or []
    name = next((v["name"] for v in volumes if isinstance(v, dict)
                 and str(v.get("name", "")).startswith(VOLUME_PREFIX)), None)
    have_volume = name is not None
    name = name or new_name()
    needed = False
    for key in ("initContainers", "containers"):
        for c in spec.get(key) or []:
            if not isinstance(c, dict):
                continue
            mounts = c.get("volumeMounts") or []
            if any(isinstance(m, dict) and m.get("mountPath") == MOUNT_PATH for m in mounts):
                continue
            c["volumeMounts"] = [*mounts, {"name": name, "readOnly": True,
                                           "mountPath": MOUNT_PATH}]
            needed = True
    if needed and not have_volume:
        spec["volumes"] = [*volumes, {"name": name, "projected": token_volume_source()}]


async def _get_account(store: Store, namespace: str, name: str) -> Obj | None:
    kv = await store.get(f"{_ACCOUNTS}{namespace}/{name}")
    return None if kv is None else codec.decode_stored(kv.value, kv.mod_revision)


async def _controller_manager_alive(store: Store) -> bool:
    """Whether a controller manager (which runs the serviceaccount
    controller) holds its leader Lease now, give or take clock skew."""
    kv = await store.get(_MANAGER_LEASE)
    if kv is None:
        return False
    spec = codec.decode_stored(kv.value, kv.mod_revision).get("spec") or {}
    if not spec.get("holderIdentity") or not spec.get("renewTime"):
        return False
    try:
        renewed = datetime.fromisoformat(str(spec["renewTime"]).replace("Z", "+00:00"))
    except ValueError:
        return False
    duration = float(spec.get("leaseDurationSeconds") or 15)
    age = (datetime.now(timezone.utc) - renewed).total_seconds()
    return age < duration + _CLOCK_SKEW


async def lookup(store: Store, namespace: str, name: str) -> tuple[Obj | None, bool]:
    """The account and whether it was found. A missing ``default`` account is
    looked up again a few times, 100-200 ms apart, as upstream does; when no
    controller manager runs to create it, it counts as found, with no settings."""
    sa = await _get_account(store, namespace, name)
    if sa is not None:
        return sa, True
    if name != DEFAULT_SERVICE_ACCOUNT:
        return None, False
    if not await _controller_manager_alive(store):
        return None, True
    interval = random.uniform(0.1, 0.2)
    for _ in range(DEFAULT_ATTEMPTS - 1):
        await _sleep(interval)
        sa = await _get_account(store, namespace, name)
        if sa is not None:
            return sa, True
    return None, False


async def admit_pod(store: Store, pod: Obj, refuse: Refuse) -> None:
    """Mutate then check a pod being created; ``refuse(message)`` builds the
    Forbidden error to raise."""
    spec = pod.setdefault("spec", {})
    if is_mirror_pod(pod):
        _check_mirror_pod(spec, refuse)
        return
    namespace = pod["metadata"].get("namespace") or ""
    name = spec.get("serviceAccountName") or DEFAULT_SERVICE_ACCOUNT
    spec["serviceAccountName"] = name
    sa, found = await lookup(store, namespace, name)
    if not found:
        raise refuse(f"error looking up service account {namespace}/{name}: "
                     f'serviceaccount "{name}" not found')
    if should_automount(sa, pod):
        mount_token(spec)
    if sa is None:
        return
    if not spec.get("imagePullSecrets") and sa.get("imagePullSecrets"):
        spec["imagePullSecrets"] = [{"name": (s or {}).get("name", "")}
                                    for s in sa["imagePullSecrets"]]
    if str((sa["metadata"].get("annotations") or {}).get(ENFORCE_MOUNTABLE_SECRETS, "")
           ).lower() in ("true", "1", "t"):
        why = _unlisted_secret(sa, spec)
        if why:
            raise refuse(why)


def _check_mirror_pod(spec: Obj, refuse: Refuse) -> None:
    if spec.get("serviceAccountName"):
        raise refuse("a mirror pod may not reference service accounts")
    if next(_secret_names(spec), None) is not None:
        raise refuse("a mirror pod may not reference secrets")
    for v in spec.get("volumes") or []:
        for src in ((v or {}).get("projected") or {}).get("sources") or []:
            if (src or {}).get("serviceAccountToken"):
                raise refuse("a mirror pod may not use ServiceAccountToken volume projections")


def _containers(spec: Obj) -> Iterator[tuple[str, Obj]]:
    for key, what in (("initContainers", "init container"), ("containers", "container"),
                      ("ephemeralContainers", "ephemeral container")):
        for c in spec.get(key) or []:
            if isinstance(c, dict):
                yield what, c


_SECRET_REF_VOLUMES = ("cephfs", "cinder", "flexVolume", "rbd", "scaleIO",
                       "iscsi", "storageos", "csi")


def _secret_names(spec: Obj) -> Iterator[str]:
    """Every secret a pod spec references (upstream's VisitPodSecretNames)."""
    for s in spec.get("imagePullSecrets") or []:
        if (s or {}).get("name"):
            yield s["name"]
    for _, c in _containers(spec):
        for e in c.get("envFrom") or []:
            if ((e or {}).get("secretRef") or {}).get("name"):
                yield e["secretRef"]["name"]
        for e in c.get("env") or []:
            ref = (((e or {}).get("valueFrom") or {}).get("secretKeyRef") or {})
            if ref.get("name"):
                yield ref["name"]
    for v in spec.get("volumes") or []:
        v = v or {}
        if (v.get("secret") or {}).get("secretName"):
            yield v["secret"]["secretName"]
        for src in (v.get("projected") or {}).get("sources") or []:
            if ((src or {}).get("secret") or {}).get("name"):
                yield src["secret"]["name"]
        if (v.get("azureFile") or {}).get("secretName"):
            yield v["azureFile"]["secretName"]
        for kind in _SECRET_REF_VOLUMES:
            src = v.get(kind) or {}
            for ref in ("secretRef", "nodePublishSecretRef"):
                if (src.get(ref) or {}).get("name"):
                    yield src[ref]["name"]


def _unlisted_secret(sa: Obj, spec: Obj) -> str:
    """Why the pod uses a secret its account does not list ("" if it does not)."""
    account = sa["metadata"]["name"]
    mountable = {(s or {}).get("name") for s in sa.get("secrets") or []}
    for v in spec.get("volumes") or []:
        name = ((v or {}).get("secret") or {}).get("secretName")
        if name and name not in mountable:
            return (f'volume with secret.secretName="{name}" is not allowed because service '
                    f"account {account} does not reference that secret")
    for what, c in _containers(spec):
        if what == "ephemeral container":
            continue  # checked when added, through pods/ephemeralcontainers
        for e in c.get("env") or []:
            ref = (((e or {}).get("valueFrom") or {}).get("secretKeyRef") or {})
            if ref.get("name") and ref["name"] not in mountable:
                return (f"{what} {c.get('name')} with envVar {e.get('name')} referencing "
                        f'secret.secretName="{ref["name"]}" is not allowed because service '
                        f"account {account} does not reference that secret")
        for e in c.get("envFrom") or []:
            ref = ((e or {}).get("secretRef") or {})
            if ref.get("name") and ref["name"] not in mountable:
                return (f'{what} {c.get("name")} with envFrom referencing secret.secretName='
                        f'"{ref["name"]}" is not allowed because service account {account} '
                        f"does not reference that secret")
    pull = {(s or {}).get("name") for s in sa.get("imagePullSecrets") or []}
    for i, s in enumerate(spec.get("imagePullSecrets") or []):
        name = (s or {}).get("name")
        if name not in pull:
            return (f'imagePullSecrets[{i}].name="{name}" is not allowed because service '
                    f"account {account} does not reference that imagePullSecret")
    return ""


class ServiceAccount:
    """The ServiceAccount admission plugin over ``admit_pod``: every new pod
    names an account (``default`` unless it says), which must exist."""

    server_writes = True
    resources = frozenset({("", "pods")})

    def __init__(self, store: Store):
        self.store = store

    async def mutate(self, a: Attributes) -> None:
        if a.operation != CREATE or a.subresource or a.obj is None or \
                (a.info.group, a.info.resource) != ("", "pods"):
            return
        spec = a.obj.setdefault("spec", {})
        if not is_mirror_pod(a.obj):  # a mirror pod names none
            spec["serviceAccountName"] = spec.get("serviceAccountName") or \
                spec.get("serviceAccount") or DEFAULT_SERVICE_ACCOUNT
        await admit_pod(self.store, a.obj, a.forbidden)
        if not is_mirror_pod(a.obj):
            spec["serviceAccount"] = spec["serviceAccountName"]  # the deprecated twin
