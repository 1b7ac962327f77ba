"""The generic REST registry: create, read, update, patch and delete for every
resource, built-in or custom, with Kubernetes' object semantics.

A request is checked whole (type, fields, defaults, admission, validation)
before anything is written, and the write is one compare-and-swap on the
Store, so bad input never half-writes. Per-kind behaviour lives in
``strategy``; this module only knows the general rules.
"""

from __future__ import annotations

import copy
import datetime as dt
import random
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pinnace.api import apply as ssa
from pinnace.api import conversion, defaults, fieldcheck, schema, validation
from pinnace.api import patch as patches
from pinnace.api.field import required
from pinnace.api.jsoncopy import json_copy
from pinnace.api.resources import ResourceInfo
from pinnace.storage.interface import (
    CompactedError,
    ConflictError,
    KeyExistsError,
    KeyNotFoundError,
    KeyValue,
    Store,
)

from . import admission, codec, status
from .status import APIError

_NAME_CHARS = "bcdfghjklmnpqrstvwxz2456789"


_clock: tuple[int, str] = (0, "")


def now_rfc3339() -> str:
    """The current second as Kubernetes timestamps it (formatted once per second)."""
    global _clock
    sec = int(time.time())
    if _clock[0] != sec:
        _clock = (sec, time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(sec)))
    return _clock[1]


@dataclass
class Options:
    dry_run: bool = False
    field_manager: str = ""
    field_validation: str = "Warn"  # the server's default when the client sends none
    force: bool = False
    warnings: list[str] = field(default_factory=list)
    user: str = ""
    userinfo: Any = None  # the authn.User making the request, when known
    # Admission's audit annotations (the request's audit event's, when audited).
    annotations: dict[str, str] = field(default_factory=dict)


@dataclass
class DeleteOptions:
    grace_period: int | None = None
    propagation: str = ""
    uid: str = ""
    resource_version: str = ""
    dry_run: bool = False
    userinfo: Any = None  # the authn.User making the request, when known


class Registry:
    """Object semantics over a Store; one per API server."""

    def __init__(self, store: Store, strategies: Any, max_object_bytes: int = 1572864):
        self.store = store
        self.strategies = strategies  # strategy.Strategies
        self.schema_for: Callable[[ResourceInfo], dict[str, Any] | None] = _upstream_schema
        # The largest object stored (etcd's default request limit, 1.5 MiB,
        # bounds kube-apiserver's objects the same way).
        self.max_object_bytes = max_object_bytes
        self.admission = admission.Chain()

    # -- helpers -----------------------------------------------------------

    def _encode(self, obj: dict[str, Any]) -> bytes:
        """The stored bytes of ``obj``; 413 when they are more than may be stored."""
        data = codec.encode_for_storage(obj)
        if len(data) > self.max_object_bytes:
            raise status.too_large(f"Request entity too large: the object is {len(data)} bytes, "
                                   f"the limit is {self.max_object_bytes}")
        return data

    def _storage_version(self, info: ResourceInfo) -> str:
        return info.storage_version or info.version

    def to_storage(self, info: ResourceInfo, obj: dict[str, Any]) -> dict[str, Any]:
        """A request's object (create, update, patch and apply results alike)
        as it is stored: in the storage version, with write-only fields folded
        in as the conversion to the internal version does."""
        if info.crd is not None:
            # CRDs use the None conversion: only apiVersion changes.
            return _with_api_version(obj, f"{info.group}/{info.storage_version or info.version}")
        obj = conversion.to_internal(info.group, info.kind, obj)
        if info.storage_version and info.storage_version != info.version:
            return conversion.convert(info.group, info.kind, obj, info.storage_version)
        return obj

    def to_served(self, info: ResourceInfo, obj: dict[str, Any]) -> dict[str, Any]:
        if info.crd is not None:
            return _with_api_version(obj, info.group_version)
        if info.storage_version and info.storage_version != info.version:
            return conversion.convert(info.group, info.kind, obj, info.version)
        return obj

    def served_bytes(self, info: ResourceInfo, kv: KeyValue) -> bytes:
        """Wire bytes for a stored object, converting only when versions differ."""
        if info.storage_version or info.crd is not None:
            obj = self.to_served(info, codec.decode_stored(kv.value, kv.mod_revision))
            return codec.dumps(obj)
        return codec.with_revision(kv.value, kv.mod_revision)

    def _check_type(self, info: ResourceInfo, obj: Any) -> dict[str, Any]:
        if not isinstance(obj, dict):
            raise status.bad_request("the body of the request must be an object")
        # Like upstream's decoder, the URL supplies a missing apiVersion or kind.
        api_version = obj.setdefault("apiVersion", info.group_version)
        kind = obj.setdefault("kind", info.kind)
        if kind != info.kind or api_version != info.group_version:
            raise status.bad_request(
                f"the API version in the data ({api_version}) does not match the expected API "
                f"version ({info.group_version})" if api_version != info.group_version else
                f"the kind in the data ({kind}) does not match the expected kind ({info.kind})")
        meta = obj.setdefault("metadata", {})
        if not isinstance(meta, dict):
            raise status.bad_request("metadata must be an object")
        return meta

    def _field_check(self, info: ResourceInfo, obj: dict[str, Any], opts: Options,
                     omit_empty: bool = True) -> None:
        """Unknown and mistyped fields, as fieldValidation says; what is left
        is what decoding into the Go type keeps and (``omit_empty``, for an
        object to be stored rather than an apply configuration) what
        encoding it writes: no empty omitempty fields."""
        if info.crd is not None:
            issues = self.strategies.custom_field_issues(info, obj)
        else:
            issues = fieldcheck.check_fields(info.group, info.version, info.kind, obj,
                                             omit_empty=omit_empty)
        if not issues:
            return
        # Wrong types cannot be decoded at all: refused whatever fieldValidation says.
        wrong = [i for i in issues if i.kind == "type"]
        if wrong:
            raise status.bad_request(fieldcheck.decode_error_message(
                info.kind, info.version, wrong[0].message))
        strict = fieldcheck.strict_issues(issues)
        if strict and opts.field_validation == "Strict":
            raise status.bad_request(fieldcheck.decode_error_message(
                info.kind, info.version, fieldcheck.strict_error_message(strict)))
        if strict and opts.field_validation != "Ignore":
            opts.warnings.extend(i.message for i in strict)
        if info.crd is None:
            # Never stored, whatever the mode: the Go type has no place for them.
            fieldcheck.prune(info.group, info.version, info.kind, obj, omit_empty=omit_empty)

    def _namespace(self, info: ResourceInfo, meta: dict[str, Any], ns: str | None) -> None:
        if info.namespaced:
            given = meta.get("namespace")
            if given and ns and given != ns:
                raise status.bad_request("the namespace of the provided object does not match "
                                         "the namespace sent on the request")
            meta["namespace"] = ns or given or "default"
        else:
            meta.pop("namespace", None)

    def _validate(self, info: ResourceInfo, obj: dict[str, Any], old: dict[str, Any] | None,
                  subresource: str = "", warnings: list[str] | None = None) -> None:
        """``warnings`` collects what validation reports without refusing (a
        CRD rule that fails on a value the update did not change)."""
        if subresource == "binding":
            return  # the binding endpoint sets spec.nodeName itself, checked there
        if info.crd is not None:
            errs = self.strategies.validate_custom(info, obj, old, warnings)
        elif subresource == "status":
            errs = validation.validate_status(info.storage_group, info.kind, obj, old or {})
        elif subresource in ("ephemeralcontainers", "resize"):
            errs = validation.validate_pod_subresource(subresource, obj, old or {})
        else:
            errs = validation.validate(info.storage_group, info.kind, obj, old)
        errs.extend(self.strategies.get(info).validate(info, obj, old))
        if info.namespaced and not obj["metadata"].get("namespace"):
            errs.insert(0, required("metadata.namespace"))
        if errs:
            raise status.invalid(info.kind, info.group, obj["metadata"].get("name", ""), errs)

    def _mutated(self, info: ResourceInfo, obj: Any, meta: dict[str, Any],
                 subresource: str = "") -> dict[str, Any]:
        """An object a mutating webhook changed, defaulted again (as decoding
        its patched form defaults it upstream); what the server set in its
        metadata stays."""
        if not isinstance(obj, dict) or not isinstance(obj.get("metadata"), dict):
            raise status.internal("a mutating admission plugin made the object unreadable")
        for key in ("name", "namespace", "uid", "resourceVersion", "creationTimestamp",
                    "generation", "deletionTimestamp", "deletionGracePeriodSeconds"):
            if key in meta:
                obj["metadata"][key] = meta[key]
        if info.crd is None and not subresource:
            defaults.apply_defaults(info.storage_group, info.kind, obj)
        return obj

    def _manager(self, opts: Options) -> str:
        return opts.field_manager or "unknown"

    def _track(self, info: ResourceInfo, old: dict[str, Any] | None, new: dict[str, Any],
               opts: Options, subresource: str = "") -> dict[str, Any]:
        try:
            return ssa.track_update(old, new, self._manager(opts), "Update", info.group_version,
                                    self.schema_for(info), now_rfc3339(),
                                    subresource=subresource,
                                    reset_fields=_reset_fields(info, subresource))
        except ssa.ApplyError as e:
            raise status.bad_request(str(e)) from None

    # -- reads -------------------------------------------------------------

    async def get_kv(self, info: ResourceInfo, ns: str | None, name: str) -> KeyValue:
        kv = await self.store.get(info.key(ns, name))
        if kv is None:
            raise status.not_found(info.resource, info.group, name)
        return kv

    async def get(self, info: ResourceInfo, ns: str | None, name: str) -> dict[str, Any]:
        kv = await self.get_kv(info, ns, name)
        return self.to_served(info, codec.decode_stored(kv.value, kv.mod_revision))

    async def list_kvs(self, info: ResourceInfo, ns: str | None, *, limit: int = 0,
                       start: str = "", revision: int = 0) -> tuple[list[KeyValue], int, bool, int]:
        try:
            res = await self.store.list(info.list_prefix(ns), start=start, limit=limit,
                                        revision=revision)
        except CompactedError as e:
            raise status.gone(
                f"The resourceVersion for the provided list is too old: {e}") from None
        return res.kvs, res.revision, res.more, res.remaining

    # -- create ------------------------------------------------------------

    async def create(self, info: ResourceInfo, ns: str | None, obj: Any, opts: Options,
                     *, applied: bool = False) -> dict[str, Any]:
        """``applied``: the object comes from a server-side apply that already
        set its managedFields."""
        meta = self._check_type(info, obj)
        self._field_check(info, obj, opts)
        if meta.get("resourceVersion"):
            raise status.internal("resourceVersion should not be set on objects to be created")
        self._namespace(info, meta, ns)
        obj = self.to_storage(info, obj)
        meta = obj["metadata"]
        strat = self.strategies.get(info)
        if not meta.get("name"):
            if meta.get("generateName"):
                meta["name"] = meta["generateName"] + "".join(
                    random.choices(_NAME_CHARS, k=5))
            else:
                raise status.invalid(info.kind, info.group, "", [required(
                    "metadata.name", "name or generateName is required")])
        meta["uid"] = str(uuid.uuid4())
        meta["creationTimestamp"] = now_rfc3339()
        for k in ("deletionTimestamp", "deletionGracePeriodSeconds", "selfLink"):
            meta.pop(k, None)
        if strat.tracks_generation(info):
            meta["generation"] = 1
        else:
            meta.pop("generation", None)
        if info.crd is None:
            defaults.apply_defaults(info.storage_group, info.kind, obj)
        # Mutating admission sees the object as decoded, before the strategy
        # prepares it (a pod's QoS class then counts LimitRanger's defaults).
        attrs = admission.Attributes(admission.CREATE, info, meta.get("namespace") or "", "",
                                     obj, None, opts.userinfo, "", opts.dry_run, opts.warnings,
                                     opts.annotations)
        await self.admission.mutate(attrs)
        if attrs.obj is not obj:
            obj = self._mutated(info, attrs.obj, meta)
            meta = obj["metadata"]
        strat.prepare_create(info, obj)
        strat.set_requester(info, obj, opts.userinfo)
        await strat.authorize_content(info, obj, opts.userinfo)
        self._validate(info, obj, None, warnings=opts.warnings)
        if not applied:
            obj = self._track(info, None, obj, opts)
        key = info.key(meta.get("namespace"), meta["name"])
        undo = await strat.admit_create(info, obj, opts.dry_run)
        try:
            attrs.obj = obj
            await self.admission.validate(attrs)
        except BaseException:
            await undo()
            raise
        if opts.dry_run:
            # Everything a real create does, except the write: allocations are given back.
            await undo()
            if await self.store.get(key):
                raise status.already_exists(info.resource, info.group, meta["name"])
            return self.to_served(info, obj)
        try:
            kv = await self.store.create(key, self._encode(obj))
        except BaseException as e:
            await undo()
            if isinstance(e, KeyExistsError):
                raise status.already_exists(info.resource, info.group, meta["name"]) from None
            raise
        obj["metadata"]["resourceVersion"] = str(kv.mod_revision)
        await strat.after_create(info, obj)
        return self.to_served(info, obj)

    # -- update ------------------------------------------------------------

    async def update(self, info: ResourceInfo, ns: str | None, name: str, obj: Any,
                     opts: Options, subresource: str = "") -> dict[str, Any]:
        meta = self._check_type(info, obj)
        self._field_check(info, obj, opts)
        if meta.get("name") and meta["name"] != name:
            raise status.bad_request(
                f"the name of the object ({meta['name']}) does not match the name on the URL "
                f"({name})")
        meta["name"] = name
        self._namespace(info, meta, ns)
        new_in = self.to_storage(info, obj)
        rv = meta.get("resourceVersion", "")
        kv = await self.get_kv(info, ns, name)
        if rv and rv != str(kv.mod_revision):
            if not rv.isdigit():
                raise status.bad_request(f"invalid resourceVersion: {rv!r}")
            raise status.conflict(info.resource, info.group, name, status.STALE)
        return await self.guaranteed_update(info, ns, name, kv, lambda _: json_copy(new_in),
                                            opts, subresource, cas_from_client=bool(rv))

    async def guaranteed_update(self, info: ResourceInfo, ns: str | None, name: str,
                                kv: KeyValue, mutate: Callable[[dict[str, Any]], dict[str, Any]],
                                opts: Options, subresource: str = "",
                                cas_from_client: bool = False,
                                manage: bool = True) -> dict[str, Any]:
        """Apply ``mutate`` to the current object and CAS-write the result,
        retrying on conflicts the client did not ask to see."""
        strat = self.strategies.get(info)
        for _attempt in range(16):
            old = codec.decode_stored(kv.value, kv.mod_revision)
            # mutate may change what it is given: hand it its own decoded copy.
            new = mutate(codec.decode_stored(kv.value, kv.mod_revision))
            meta = new.setdefault("metadata", {})
            old_meta = old["metadata"]
            for k in ("uid", "creationTimestamp", "deletionTimestamp",
                      "deletionGracePeriodSeconds"):
                if k in old_meta:
                    meta[k] = old_meta[k]
                else:
                    meta.pop(k, None)
            if meta.get("uid") and old_meta.get("uid") != meta["uid"]:
                raise status.conflict(info.resource, info.group, name, "Precondition failed")
            meta["name"], meta["resourceVersion"] = name, old_meta["resourceVersion"]
            if info.namespaced:
                meta["namespace"] = old_meta["namespace"]
            if "generation" in old_meta:
                meta["generation"] = old_meta["generation"]
            if info.crd is None and subresource in ("", "ephemeralcontainers", "resize"):
                # What these subresources take is a whole object, decoded (so defaulted).
                defaults.apply_defaults(info.storage_group, info.kind, new)
            strat.prepare_update(info, new, old, subresource)
            attrs = admission.Attributes(admission.UPDATE, info, ns or "", name, new, old,
                                         opts.userinfo, subresource, opts.dry_run,
                                         opts.warnings, opts.annotations)
            await self.admission.mutate(attrs)
            if attrs.obj is not new:
                new = self._mutated(info, attrs.obj, meta, subresource)
                meta = new["metadata"]
            # Binding (like status) is not a spec change a controller must observe.
            if strat.tracks_generation(info) and subresource in (
                    "", "scale", "ephemeralcontainers", "resize") and \
                    _spec_changed(new, old):
                meta["generation"] = old_meta.get("generation", 0) + 1
            self._validate(info, new, old, subresource, warnings=opts.warnings)
            if manage:
                new = self._track(info, old, new, opts, subresource)
            await strat.authorize_content(info, new, opts.userinfo)
            undo = await strat.admit_update(info, new, old, opts.dry_run)
            try:
                attrs.obj = new
                await self.admission.validate(attrs)
                data = self._encode(new)
            except BaseException:
                await undo()
                raise
            try:
                # Stored bytes are what encode_for_storage made of the old object.
                # A stale value (read with an old encryption key) is written
                # again though, as upstream does: that is how keys rotate.
                if (data == kv.value and not kv.stale) or opts.dry_run:
                    # Nothing changed: no write, no new revision (as Kubernetes does).
                    if opts.dry_run:
                        await undo()
                    return self.to_served(info, new)
                if (meta.get("deletionTimestamp") and not meta.get("finalizers")
                        and strat.finished_when_unfinalized(info, new)):
                    # The last finalizer is gone: the deletion completes now.
                    deleted = await self.store.delete(kv.key, kv.mod_revision)
                    await strat.after_delete(info, new)
                    new["metadata"]["resourceVersion"] = str(deleted.mod_revision)
                    return self.to_served(info, new)
                written = await self.store.update(kv.key, data, kv.mod_revision)
            except ConflictError as e:
                await undo()
                if cas_from_client or e.current is None:
                    raise status.conflict(info.resource, info.group, name, status.STALE) from None
                kv = e.current
                continue
            except KeyNotFoundError:
                await undo()
                raise status.not_found(info.resource, info.group, name) from None
            except BaseException:
                await undo()
                raise
            new["metadata"]["resourceVersion"] = str(written.mod_revision)
            await strat.after_update(info, new, old)
            return self.to_served(info, new)
        raise status.conflict(info.resource, info.group, name, status.STALE)

    # -- patch -------------------------------------------------------------

    async def patch(self, info: ResourceInfo, ns: str | None, name: str, patch_type: str,
                    body: Any, opts: Options, subresource: str = "") -> tuple[dict[str, Any], bool]:
        """Returns (object, created): apply patches may create the object."""
        if patch_type == "apply":
            return await self._apply(info, ns, name, body, opts, subresource)
        kv = await self.get_kv(info, ns, name)
        schema_node = self.schema_for(info)
        if patch_type == "strategic" and info.crd is not None:
            raise status.unsupported_media(
                "strategic merge patch is not supported for custom resources; use "
                "application/merge-patch+json or application/json-patch+json")

        def mutate(old: dict[str, Any]) -> dict[str, Any]:
            served = self.to_served(info, old)
            try:
                if patch_type == "json":
                    if not isinstance(body, list):
                        raise status.bad_request("json patch must be a list of operations")
                    out = patches.json_patch(served, body)
                elif patch_type == "merge":
                    out = patches.merge_patch(served, body)
                else:
                    out = patches.strategic_merge_patch(served, body, schema_node)
            except patches.PatchError as e:
                raise status.APIError(422, "Invalid", str(e)) from None
            if not isinstance(out, dict):
                raise status.bad_request("the patch must produce an object")
            out_meta = self._check_type(info, out)
            rv = out_meta.get("resourceVersion")
            if rv and rv != old["metadata"]["resourceVersion"]:
                raise status.conflict(info.resource, info.group, name, status.STALE)
            self._check_type(info, out)
            self._field_check(info, out, opts)
            return self.to_storage(info, out)

        obj = await self.guaranteed_update(info, ns, name, kv, mutate, opts, subresource)
        return obj, False

    async def _apply(self, info: ResourceInfo, ns: str | None, name: str, body: Any,
                     opts: Options, subresource: str) -> tuple[dict[str, Any], bool]:
        if not opts.field_manager:
            raise status.invalid("PatchOptions", "meta.k8s.io", "", [
                required("fieldManager", "is required for apply patch")])
        if isinstance(body, dict):
            # An apply patch is a whole object in the URL's version: nothing is filled in.
            version = body.get("apiVersion")
            if version != info.group_version:
                raise status.bad_request(
                    "Incorrect version specified in apply patch. Specified patch version: "
                    f"{version if isinstance(version, str) else ''}, expected: "
                    f"{info.group_version}")
            if not body.get("kind"):
                raise status.bad_request(
                    f"Object 'Kind' is missing in '{codec.dumps(body).decode()[:1024]}'")
        meta = self._check_type(info, body)
        if meta.get("name") and meta["name"] != name:
            raise status.bad_request(f"the name of the object ({meta['name']}) does not match "
                                     f"the name on the URL ({name})")
        # An apply configuration's zero values are fields it sets: kept.
        self._field_check(info, body, opts, omit_empty=False)
        schema_node = self.schema_for(info)
        kv = await self.store.get(info.key(ns, name))
        if kv is None:
            applied = copy.deepcopy(body)
            applied.setdefault("metadata", {})["name"] = name
            try:
                obj = ssa.server_side_apply(None, applied, opts.field_manager, opts.force,
                                            schema_node, now_rfc3339(),
                                            reset_fields=_reset_fields(info, subresource))
            except ssa.ApplyConflict as e:
                raise apply_conflict(info, name, e) from None
            except ssa.ApplyError as e:
                raise status.bad_request(str(e)) from None
            create_opts = Options(opts.dry_run, opts.field_manager, "Ignore", opts.force,
                                  opts.warnings, opts.user, opts.userinfo)
            return await self.create(info, ns, obj, create_opts, applied=True), True

        def mutate(old: dict[str, Any]) -> dict[str, Any]:
            served = self.to_served(info, old)
            try:
                out = ssa.server_side_apply(served, body, opts.field_manager, opts.force,
                                            schema_node, now_rfc3339(), subresource=subresource,
                                            reset_fields=_reset_fields(info, subresource))
            except ssa.ApplyConflict as e:
                raise apply_conflict(info, name, e) from None
            except ssa.ApplyError as e:
                raise status.bad_request(str(e)) from None
            if info.crd is None:
                fieldcheck.omit_empty(info.group, info.version, info.kind, out)
            return self.to_storage(info, out)

        obj = await self.guaranteed_update(info, ns, name, kv, mutate, opts, subresource,
                                       manage=False)
        return obj, False

    # -- delete ------------------------------------------------------------

    async def delete(self, info: ResourceInfo, ns: str | None, name: str,
                     dopts: DeleteOptions) -> tuple[dict[str, Any], bool]:
        """Returns (object, gone): gone is False when deletion is pending
        (finalizers or a grace period)."""
        strat = self.strategies.get(info)
        for _attempt in range(16):
            kv = await self.get_kv(info, ns, name)
            obj = codec.decode_stored(kv.value, kv.mod_revision)
            meta = obj["metadata"]
            strat.admit_delete(info, obj)
            await self.admission.validate(admission.Attributes(
                admission.DELETE, info, ns or "", name, None, obj, dopts.userinfo, "",
                dopts.dry_run))
            status.check_preconditions(info.resource, info.group, name, meta, dopts.uid,
                                       dopts.resource_version)
            finalizers = list(meta.get("finalizers") or [])
            if dopts.propagation == "Foreground" and "foregroundDeletion" not in finalizers:
                finalizers.append("foregroundDeletion")
            elif dopts.propagation == "Orphan" and "orphan" not in finalizers:
                finalizers.append("orphan")
            grace = strat.grace_period(info, obj, dopts.grace_period)
            pending = bool(finalizers) or grace > 0 or strat.deletion_pending(info, obj)
            if not pending:
                if dopts.dry_run:
                    return self.to_served(info, obj), True
                try:
                    deleted = await self.store.delete(kv.key, kv.mod_revision)
                except ConflictError:
                    continue
                except KeyNotFoundError:
                    raise status.not_found(info.resource, info.group, name) from None
                await strat.after_delete(info, obj)
                meta["resourceVersion"] = str(deleted.mod_revision)
                return self.to_served(info, obj), True
            if meta.get("deletionTimestamp"):
                # Already terminating: a shorter grace period may still shorten it.
                cur = meta.get("deletionGracePeriodSeconds")
                if not (grace < (cur or 0)) and finalizers == (meta.get("finalizers") or []):
                    return self.to_served(info, obj), False
            when = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=grace)
            meta["deletionTimestamp"] = when.strftime("%Y-%m-%dT%H:%M:%SZ")
            meta["deletionGracePeriodSeconds"] = grace
            if finalizers:
                meta["finalizers"] = finalizers
            if strat.tracks_generation(info):
                meta["generation"] = meta.get("generation", 0) + 1
            strat.prepare_delete(info, obj)
            if dopts.dry_run:
                return self.to_served(info, obj), False
            try:
                written = await self.store.update(kv.key, codec.encode_for_storage(obj),
                                                  kv.mod_revision)
            except ConflictError:
                continue
            meta["resourceVersion"] = str(written.mod_revision)
            return self.to_served(info, obj), False
        raise status.conflict(info.resource, info.group, name, status.STALE)


def _with_api_version(obj: dict[str, Any], api_version: str) -> dict[str, Any]:
    if obj.get("apiVersion") == api_version:
        return obj
    out = dict(obj)
    out["apiVersion"] = api_version
    return out


def _reset_fields(info: ResourceInfo, subresource: str) -> list[tuple[str, ...]] | None:
    """Fields a write through this endpoint cannot change, so owns nothing of."""
    if "status" not in info.subresources:
        return None
    return [("spec",)] if subresource == "status" else [("status",)] if not subresource else None


def _spec_changed(new: dict[str, Any], old: dict[str, Any]) -> bool:
    keys = (set(new) | set(old)) - {"metadata", "status", "apiVersion", "kind"}
    return any(new.get(k) != old.get(k) for k in keys)


def apply_conflict(info: ResourceInfo, name: str, e: ssa.ApplyConflict) -> APIError:
    return APIError(409, "Conflict", e.message, {
        "name": name, **({"group": info.group} if info.group else {}), "kind": info.resource,
        "causes": e.causes()})


def _upstream_schema(info: ResourceInfo) -> dict[str, Any] | None:
    if info.crd is not None:
        return None
    return schema.for_gvk(info.group, info.version, info.kind)
