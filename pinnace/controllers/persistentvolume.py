"""The PersistentVolume controller (upstream pkg/controller/volume/
persistentvolume, "persistentvolume-binder"), with the local-path
provisioner k3s ships built in (localpath.py).

Claims:
- unbound, no spec.volumeName: bind the smallest Available volume of the
  claim's class whose access modes include the claim's, whose capacity
  covers the request and whose labels match the claim's selector; a volume
  pre-bound to the claim (claimRef) wins. Under a WaitForFirstConsumer
  class only pre-bound volumes bind here (the scheduler chooses the node);
  with none, the claim waits for volume.kubernetes.io/selected-node, then is
  provisioned (rancher.io/local-path here; other provisioners are external).
- spec.volumeName set by the user: bind that volume if it is free or
  pre-bound to the claim.
- bound (pv.kubernetes.io/bind-completed): keep both sides consistent; a
  lost volume makes the claim Lost.
Binding writes, in order, the volume's claimRef, the volume's phase, the
claim's volumeName and annotations, the claim's status (as upstream, so a
crash half-way is finished by the next sync).

Volumes: no claimRef is Available; a claim that is gone (checked with a GET
past the informer) makes the volume Released and its reclaim policy runs:
Retain keeps it, Delete deletes the object of a volume this controller
provisioned (the directory stays on the node), other Delete and Recycle
volumes go Failed (no deleter plugin here).

One worker: binding decisions must see each other. Objects this controller
wrote are remembered until the informer catches up (upstream's assume cache),
so a sync never acts on an older copy than its own write.
"""

from __future__ import annotations

import asyncio
from typing import Any

from pinnace.api import quantity, selectors
from pinnace.client import ApiError
from pinnace.client.events import EventRecorder

from . import localpath
from .base import Context, Controller

Obj = dict[str, Any]

ANN_BIND_COMPLETED = "pv.kubernetes.io/bind-completed"
ANN_BOUND_BY_CONTROLLER = "pv.kubernetes.io/bound-by-controller"
ANN_STORAGE_PROVISIONER = "volume.kubernetes.io/storage-provisioner"
ANN_BETA_STORAGE_PROVISIONER = "volume.beta.kubernetes.io/storage-provisioner"
ANN_BETA_CLASS = "volume.beta.kubernetes.io/storage-class"
ANN_SELECTED_NODE = localpath.ANN_SELECTED_NODE
WAIT_FOR_FIRST_CONSUMER = "WaitForFirstConsumer"

CLAIM, VOLUME = "claim:", "volume:"


def claim_class(pvc: Obj) -> str:
    ann = pvc["metadata"].get("annotations") or {}
    if ANN_BETA_CLASS in ann:
        return str(ann[ANN_BETA_CLASS])
    return str((pvc.get("spec") or {}).get("storageClassName") or "")


volume_class = claim_class  # the same two places, on a PV


def _storage(obj_resources: Obj | None) -> Any:
    return (obj_resources or {}).get("storage")


def _annotations(obj: Obj) -> dict[str, str]:
    return obj["metadata"].get("annotations") or {}


def _rv(obj: Obj | None) -> int:
    try:
        return int((obj or {}).get("metadata", {}).get("resourceVersion") or 0)
    except ValueError:
        return 0


def bound_to_claim(pv: Obj, pvc: Obj) -> bool:
    """Whether the volume's claimRef names ``pvc`` (upstream IsVolumeBoundToClaim)."""
    ref = (pv.get("spec") or {}).get("claimRef")
    if not ref:
        return False
    meta = pvc["metadata"]
    if ref.get("name") != meta["name"] or \
            (ref.get("namespace") or "") != (meta.get("namespace") or ""):
        return False
    return not ref.get("uid") or ref["uid"] == meta.get("uid")


def find_best_match(pvc: Obj, volumes: list[Obj], delay_binding: bool) -> Obj | None:
    """The volume to bind ``pvc`` to, or None (upstream FindMatchingVolume):
    a volume pre-bound to the claim that is large enough, else the smallest
    free volume that fits (fewest access modes first). With delayed binding
    only pre-bound volumes count."""
    spec = pvc.get("spec") or {}
    try:
        want = quantity.parse_quantity(_storage((spec.get("resources") or {}).get("requests")))
    except (quantity.QuantityError, TypeError, ValueError):
        return None
    modes = set(spec.get("accessModes") or ())
    mode = spec.get("volumeMode") or "Filesystem"
    cls = claim_class(pvc)
    selector = selectors.label_selector_from_dict(spec["selector"]) \
        if spec.get("selector") else None
    best: tuple[int, Any, str] | None = None
    best_pv: Obj | None = None
    for pv in volumes:
        pspec = pv.get("spec") or {}
        if pspec.get("claimRef") and not bound_to_claim(pv, pvc):
            continue
        if pv["metadata"].get("deletionTimestamp"):
            continue
        try:
            size = quantity.parse_quantity(_storage(pspec.get("capacity")))
        except (quantity.QuantityError, TypeError, ValueError):
            continue
        if size < want or (pspec.get("volumeMode") or "Filesystem") != mode:
            continue
        if bound_to_claim(pv, pvc):
            return pv
        if delay_binding:
            continue
        if (pv.get("status") or {}).get("phase") in ("Released", "Failed"):
            continue
        if selector is not None and not selector.matches(pv["metadata"].get("labels") or {}):
            continue
        if volume_class(pv) != cls:
            continue
        pv_modes = set(pspec.get("accessModes") or ())
        if not modes <= pv_modes:
            continue
        rank = (len(pv_modes), size, pv["metadata"]["name"])
        if best is None or rank < best:
            best, best_pv = rank, pv
    return best_pv


class PersistentVolumeController(Controller):
    name = "persistentvolume-binder"
    event_source = "persistentvolume-controller"
    workers = 1

    def __init__(self, ctx: Context):
        super().__init__(ctx)
        inf = ctx.informers
        self.claims = inf.informer("v1", "persistentvolumeclaims")
        self.volumes = inf.informer("v1", "persistentvolumes")
        self.classes = inf.informer("storage.k8s.io/v1", "storageclasses")
        self.nodes = inf.informer("v1", "nodes")
        self.pvc_api = self.client.resource("v1", "persistentvolumeclaims")
        self.pv_api = self.client.resource("v1", "persistentvolumes")
        self.root = str(ctx.options.get("local_path_root") or localpath.DEFAULT_ROOT)
        self.resync = float(ctx.options.get("pv_resync_period", 15))
        self.provisioner_events = EventRecorder(ctx.client, localpath.PROVISIONER)
        # Our own writes, until the informer has them: "pv/<name>", "pvc/<ns>/<name>".
        self._assumed: dict[str, Obj] = {}

    # -- informers ------------------------------------------------------------

    def setup(self) -> None:
        def claim_changed(*objs: Obj) -> None:
            self.queue.add(CLAIM + self._key(objs[-1]))

        def claim_deleted(pvc: Obj) -> None:
            self._assumed.pop("pvc/" + self._key(pvc), None)
            name = (pvc.get("spec") or {}).get("volumeName")
            if name:
                self.queue.add(VOLUME + name)
            for pv in self.volumes.objects():
                if bound_to_claim(pv, pvc):
                    self.queue.add(VOLUME + pv["metadata"]["name"])

        def volume_changed(*objs: Obj) -> None:
            pv = objs[-1]
            self.queue.add(VOLUME + pv["metadata"]["name"])
            ref = (pv.get("spec") or {}).get("claimRef")
            if ref:  # the claim may be waiting for this volume
                self.queue.add(f"{CLAIM}{ref.get('namespace') or ''}/{ref.get('name') or ''}")

        def volume_deleted(pv: Obj) -> None:
            self._assumed.pop("pv/" + pv["metadata"]["name"], None)
            ref = (pv.get("spec") or {}).get("claimRef")
            if ref:
                self.queue.add(f"{CLAIM}{ref.get('namespace') or ''}/{ref.get('name') or ''}")

        def class_changed(*_: Obj) -> None:
            for pvc in self.claims.objects():
                if not _annotations(pvc).get(ANN_BIND_COMPLETED):
                    self.queue.add(CLAIM + self._key(pvc))

        self.claims.add_handler(claim_changed, claim_changed, claim_deleted)
        self.volumes.add_handler(volume_changed, volume_changed, volume_deleted)
        self.classes.add_handler(class_changed, None, None)

    async def run(self) -> None:
        await asyncio.gather(super().run(), self._resync_loop())

    async def _resync_loop(self) -> None:
        while True:
            await asyncio.sleep(self.resync)
            for pvc in self.claims.objects():
                self.queue.add(CLAIM + self._key(pvc))
            for pv in self.volumes.objects():
                self.queue.add(VOLUME + pv["metadata"]["name"])

    @staticmethod
    def _key(pvc: Obj) -> str:
        return f"{pvc['metadata'].get('namespace') or ''}/{pvc['metadata']['name']}"

    # -- the newest copy of each object -----------------------------------------

    def _newest(self, key: str, seen: Obj | None) -> Obj | None:
        mine = self._assumed.get(key)
        if mine is None:
            return seen
        if seen is not None and _rv(seen) >= _rv(mine):
            del self._assumed[key]
            return seen
        return mine

    def _claim(self, key: str) -> Obj | None:
        return self._newest("pvc/" + key, self.claims.get(key))

    def _volume(self, name: str) -> Obj | None:
        return self._newest("pv/" + name, self.volumes.get(name))

    def _all_volumes(self) -> list[Obj]:
        out = {pv["metadata"]["name"]: pv for pv in self.volumes.objects()}
        for key in [k for k in self._assumed if k.startswith("pv/")]:
            name = key[3:]
            newest = self._newest(key, out.get(name))
            if newest is not None:
                out[name] = newest
        return list(out.values())

    def _remember(self, obj: Obj) -> Obj:
        meta = obj["metadata"]
        key = f"pvc/{meta['namespace']}/{meta['name']}" if meta.get("namespace") \
            else f"pv/{meta['name']}"
        self._assumed[key] = obj
        return obj

    async def _update(self, obj: Obj, status: bool = False) -> Obj:
        api = self.pvc_api if obj["metadata"].get("namespace") else self.pv_api
        out = await api.replace(obj, obj["metadata"].get("namespace"),
                                "status" if status else "")
        return self._remember(out)

    def _class(self, name: str) -> Obj | None:
        return self.classes.get(name) if name else None

    def _delay_binding(self, pvc: Obj) -> bool:
        sc = self._class(claim_class(pvc))
        return sc is not None and sc.get("volumeBindingMode") == WAIT_FOR_FIRST_CONSUMER

    # -- sync -------------------------------------------------------------------

    async def sync(self, key: str) -> None:
        if key.startswith(CLAIM):
            pvc = self._claim(key[len(CLAIM):])
            if pvc is not None:
                await self.sync_claim(pvc)
        elif key.startswith(VOLUME):
            pv = self._volume(key[len(VOLUME):])
            if pv is not None:
                await self.sync_volume(pv)

    async def sync_claim(self, pvc: Obj) -> None:
        if _annotations(pvc).get(ANN_BIND_COMPLETED):
            await self._sync_bound_claim(pvc)
        else:
            await self._sync_unbound_claim(pvc)

    async def _sync_unbound_claim(self, pvc: Obj) -> None:
        name = (pvc.get("spec") or {}).get("volumeName")
        if name:
            await self._sync_prebound_claim(pvc, name)
            return
        delay = self._delay_binding(pvc)
        pv = find_best_match(pvc, self._all_volumes(), delay)
        if pv is not None:
            await self._bind(pv, pvc)
            return
        if delay and not _annotations(pvc).get(ANN_SELECTED_NODE):
            self.recorder.event(pvc, "Normal", "WaitForFirstConsumer",
                                "waiting for first consumer to be created before binding")
            await self._claim_phase(pvc, "Pending")
            return
        if claim_class(pvc):
            await self._provision(pvc)
            return
        self.recorder.event(pvc, "Normal", "FailedBinding",
                            "no persistent volumes available for this claim and no storage "
                            "class is set")
        await self._claim_phase(pvc, "Pending")

    async def _sync_prebound_claim(self, pvc: Obj, name: str) -> None:
        """The user asked for volume ``name`` in spec.volumeName."""
        pv = self._volume(name)
        if pv is None:
            self.recorder.event(pvc, "Normal", "FailedBinding", f'volume "{name}" not found')
            await self._claim_phase(pvc, "Pending")
            return
        if (pv.get("spec") or {}).get("claimRef") and not bound_to_claim(pv, pvc):
            self.recorder.event(pvc, "Warning", "FailedBinding",
                                "volume is already bound to a different claim")
            await self._claim_phase(pvc, "Pending")
            return
        if not bound_to_claim(pv, pvc) and find_best_match(pvc, [pv], False) is None:
            self.recorder.event(pvc, "Warning", "VolumeMismatch",
                                "Cannot bind to requested volume "
                                f'"{name}": it does not match the claim')
            await self._claim_phase(pvc, "Pending")
            return
        await self._bind(pv, pvc)

    async def _sync_bound_claim(self, pvc: Obj) -> None:
        name = (pvc.get("spec") or {}).get("volumeName")
        if not name:
            await self._lost(pvc, "Bound claim has lost reference to PersistentVolume. "
                                  "Data on the volume is lost!")
            return
        pv = self._volume(name)
        if pv is None:
            try:  # the informer may be behind a volume just created
                pv = await self.pv_api.get(name)
            except ApiError as e:
                if not e.not_found:
                    raise
                await self._lost(pvc, "Bound claim has lost its PersistentVolume. "
                                      "Data on the volume is lost!")
                return
        ref = (pv.get("spec") or {}).get("claimRef")
        if not ref or bound_to_claim(pv, pvc):
            await self._bind(pv, pvc)
            return
        await self._lost(pvc, "Two claims are bound to the same volume, this one is bound "
                              "incorrectly", reason="ClaimMisbound")

    async def _lost(self, pvc: Obj, message: str, reason: str = "ClaimLost") -> None:
        if (pvc.get("status") or {}).get("phase") != "Lost":
            self.recorder.event(pvc, "Warning", reason, message)
        await self._claim_phase(pvc, "Lost")

    async def sync_volume(self, pv: Obj) -> None:
        spec = pv.get("spec") or {}
        ref = spec.get("claimRef")
        if not ref:
            await self._volume_phase(pv, "Available")
            return
        if not ref.get("uid"):  # pre-bound by the user: its claim binds it
            await self._volume_phase(pv, "Available")
            self.queue.add(f"{CLAIM}{ref.get('namespace') or ''}/{ref.get('name') or ''}")
            return
        key = f"{ref.get('namespace') or ''}/{ref.get('name') or ''}"
        pvc = self._claim(key)
        if pvc is None or pvc["metadata"].get("uid") != ref["uid"]:
            try:  # upstream double-checks past the informer before releasing
                pvc = await self.pvc_api.get(ref.get("name") or "", ref.get("namespace"))
            except ApiError as e:
                if not e.not_found:
                    raise
                pvc = None
        if pvc is None or pvc["metadata"].get("uid") != ref["uid"]:
            await self._release(pv)
            return
        claimed = (pvc.get("spec") or {}).get("volumeName")
        if not claimed:
            self.queue.add(CLAIM + key)  # binding is under way: the claim finishes it
            return
        if claimed == pv["metadata"]["name"]:
            await self._volume_phase(pv, "Bound")
            if not _annotations(pvc).get(ANN_BIND_COMPLETED):
                self.queue.add(CLAIM + key)
            return
        # The claim is bound to another volume.
        if _annotations(pv).get(ANN_BOUND_BY_CONTROLLER):
            pv = self._copy(pv)
            pv["spec"].pop("claimRef", None)
            pv["metadata"].get("annotations", {}).pop(ANN_BOUND_BY_CONTROLLER, None)
            pv = await self._update(pv)
            await self._volume_phase(pv, "Available")
        else:
            await self._volume_phase(pv, "Available")

    # -- binding --------------------------------------------------------------------

    @staticmethod
    def _copy(obj: Obj) -> Obj:
        out = dict(obj)
        out["metadata"] = dict(obj["metadata"])
        if "annotations" in out["metadata"]:
            out["metadata"]["annotations"] = dict(out["metadata"]["annotations"] or {})
        out["spec"] = dict(obj.get("spec") or {})
        out["status"] = dict(obj.get("status") or {})
        return out

    async def _bind(self, pv: Obj, pvc: Obj) -> None:
        meta = pvc["metadata"]
        if not bound_to_claim(pv, pvc) or not (pv["spec"].get("claimRef") or {}).get("uid"):
            was_free = not (pv.get("spec") or {}).get("claimRef")
            pv = self._copy(pv)
            pv["spec"]["claimRef"] = localpath.claim_ref(pvc)
            if was_free:  # pre-bound by a user or a provisioner: not ours to mark
                pv["metadata"]["annotations"] = {**_annotations(pv),
                                                 ANN_BOUND_BY_CONTROLLER: "yes"}
            pv = await self._update(pv)
        pv = await self._volume_phase(pv, "Bound")
        name = pv["metadata"]["name"]
        spec = pvc.get("spec") or {}
        ann = _annotations(pvc)
        if spec.get("volumeName") != name or ann.get(ANN_BIND_COMPLETED) != "yes":
            new = self._copy(pvc)
            anns = dict(ann)
            if new["spec"].get("volumeName") != name:
                new["spec"]["volumeName"] = name
                anns[ANN_BOUND_BY_CONTROLLER] = "yes"
            anns[ANN_BIND_COMPLETED] = "yes"
            new["metadata"]["annotations"] = anns
            pvc = await self._update(new)
        status = pvc.get("status") or {}
        pspec = pv.get("spec") or {}
        want = {"phase": "Bound", "accessModes": list(pspec.get("accessModes") or []),
                "capacity": dict(pspec.get("capacity") or {})}
        if any(status.get(k) != v for k, v in want.items()):
            new = self._copy(pvc)
            new["status"].update(want)
            await self._update(new, status=True)
            self.log.info("bound claim %s/%s to volume %s", meta.get("namespace"),
                          meta["name"], name)

    async def _claim_phase(self, pvc: Obj, phase: str) -> Obj:
        if (pvc.get("status") or {}).get("phase") == phase:
            return pvc
        new = self._copy(pvc)
        new["status"]["phase"] = phase
        if phase == "Lost":
            new["status"].pop("accessModes", None)
            new["status"].pop("capacity", None)
        return await self._update(new, status=True)

    async def _volume_phase(self, pv: Obj, phase: str, message: str = "") -> Obj:
        status = pv.get("status") or {}
        if status.get("phase") == phase and (status.get("message") or "") == message:
            return pv
        new = self._copy(pv)
        new["status"]["phase"] = phase
        if message:
            new["status"]["message"] = message
        else:
            new["status"].pop("message", None)
        return await self._update(new, status=True)

    # -- reclaiming ---------------------------------------------------------------

    async def _release(self, pv: Obj) -> None:
        phase = (pv.get("status") or {}).get("phase")
        if phase == "Failed":
            return
        if phase != "Released":
            pv = await self._volume_phase(pv, "Released")
        policy = (pv.get("spec") or {}).get("persistentVolumeReclaimPolicy") or "Retain"
        if policy == "Retain":
            return
        name = pv["metadata"]["name"]
        if policy == "Delete" and \
                _annotations(pv).get(localpath.ANN_PROVISIONED_BY) == localpath.PROVISIONER:
            try:
                await self.pv_api.delete(name, preconditions={"uid": pv["metadata"]["uid"]})
            except ApiError as e:
                if not (e.not_found or e.conflict):
                    raise
            self._assumed.pop("pv/" + name, None)
            self.log.info("deleted volume %s (its claim is gone)", name)
            return
        if policy == "Delete":
            message = (f'error getting deleter volume plugin for volume "{name}": '
                       "no deletable volume plugin matched")
            self.recorder.event(pv, "Warning", "VolumeFailedDelete", message)
        else:
            message = "No recycler plugin found for the volume!"
            self.recorder.event(pv, "Warning", "VolumeFailedRecycle", message)
        await self._volume_phase(pv, "Failed", message)

    # -- provisioning ---------------------------------------------------------------

    async def _provision(self, pvc: Obj) -> None:
        cls_name = claim_class(pvc)
        sc = self._class(cls_name)
        if sc is None:
            self.recorder.event(pvc, "Warning", "ProvisioningFailed",
                                f'storageclass.storage.k8s.io "{cls_name}" not found')
            await self._claim_phase(pvc, "Pending")
            return
        provisioner = sc.get("provisioner") or ""
        ann = _annotations(pvc)
        if ann.get(ANN_STORAGE_PROVISIONER) != provisioner or \
                ann.get(ANN_BETA_STORAGE_PROVISIONER) != provisioner:
            new = self._copy(pvc)
            new["metadata"]["annotations"] = {**ann, ANN_STORAGE_PROVISIONER: provisioner,
                                              ANN_BETA_STORAGE_PROVISIONER: provisioner}
            pvc = await self._update(new)
        if provisioner != localpath.PROVISIONER:
            self.recorder.event(pvc, "Normal", "ExternalProvisioning",
                                "Waiting for a volume to be created either by the external "
                                f'provisioner "{provisioner}" or manually by the system '
                                "administrator. If volume creation is delayed, please verify "
                                "that the provisioner is running and correctly registered.")
            await self._claim_phase(pvc, "Pending")
            return
        meta = pvc["metadata"]
        name = localpath.volume_name(pvc)
        existing = self._volume(name)
        if existing is not None:
            if bound_to_claim(existing, pvc):
                await self._bind(existing, pvc)
            return
        node = _annotations(pvc).get(ANN_SELECTED_NODE) or None
        hostname = node
        if node:
            n = self.nodes.get(node)
            hostname = ((n or {}).get("metadata", {}).get("labels") or {}).get(
                localpath.HOSTNAME_LABEL) or node
        claim_key = f"{meta.get('namespace')}/{meta['name']}"
        self.provisioner_events.event(pvc, "Normal", "Provisioning",
                                      f'External provisioner is provisioning volume for claim '
                                      f'"{claim_key}"')
        body = localpath.provisioned_volume(pvc, sc, self.root, hostname)
        try:
            pv = self._remember(await self.pv_api.create(body))
        except ApiError as e:
            if e.code != 409:
                self.provisioner_events.event(pvc, "Warning", "ProvisioningFailed",
                                              f"failed to provision volume with StorageClass "
                                              f'"{cls_name}": {e}')
                raise
            pv = await self.pv_api.get(name)
        self.provisioner_events.event(pvc, "Normal", "ProvisioningSucceeded",
                                      f"Successfully provisioned volume {name}")
        await self._bind(pv, pvc)


CONTROLLERS: dict[str, type[Controller]] = {"persistentvolume-binder": PersistentVolumeController}
