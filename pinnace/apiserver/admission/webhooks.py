"""Admission webhooks: MutatingAdmissionWebhook and ValidatingAdmissionWebhook.

The webhooks of every MutatingWebhookConfiguration and
ValidatingWebhookConfiguration (fed from the watch cache) are asked about
each write they match, as upstream's k8s.io/apiserver webhook plugins ask:
an AdmissionReview v1 POSTed over TLS, the CA from caBundle, within
timeoutSeconds. Mutating webhooks run one after another in configuration
name order and may answer a JSON patch; validating webhooks run together
after validation. A webhook that cannot be reached or answers nonsense
refuses the write when its failurePolicy is Fail and is passed over when it
is Ignore.

A webhook named by a Service is reached at one of the Service's ready
endpoints (EndpointSlices), with the certificate checked for
``<service>.<namespace>.svc``, as kube-apiserver does with
--enable-aggregator-routing: the API server need not run where the service
proxy does.
"""

from __future__ import annotations

import asyncio
import base64
import copy
import logging
import ssl
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import aiohttp
import orjson

from pinnace.api import patch as patches
from pinnace.api.selectors import SelectorError, label_selector_from_dict
from pinnace.runtime import lazy_import

from .. import status
from ..status import APIError
from . import CREATE, DELETE, UPDATE, Attributes
from .validatingpolicy import request_object

if TYPE_CHECKING:
    from pinnace.api import cel
else:  # its grammar is built when imported: only for clusters that use it
    cel = lazy_import("pinnace.api.cel")

log = logging.getLogger("pinnace.apiserver.admission.webhooks")

Obj = dict[str, Any]
# A namespace's labels, None when it does not exist.
LabelsReader = Callable[[str], Awaitable[dict[str, str] | None]]
# (namespace, service, port) -> "host:port" of a ready endpoint, or None.
EndpointResolver = Callable[[str, str, int], Awaitable[str | None]]

GROUP = "admissionregistration.k8s.io"
# Never sent to webhooks, so that a broken webhook cannot lock its own fix out.
_EXEMPT = {(GROUP, r) for r in (
    "mutatingwebhookconfigurations", "validatingwebhookconfigurations",
    "validatingadmissionpolicies", "validatingadmissionpolicybindings",
    "mutatingadmissionpolicies", "mutatingadmissionpolicybindings")}
_OPTIONS_KIND = {CREATE: "CreateOptions", UPDATE: "UpdateOptions", DELETE: "DeleteOptions"}


@dataclass
class _Hook:
    configuration: str
    spec: Obj

    @property
    def name(self) -> str:
        return str(self.spec.get("name") or "")


class WebhookError(Exception):
    """The webhook could not be asked, or its answer could not be read."""


def _rule_matches(rule: Obj, a: Attributes) -> bool:
    info = a.info
    ops = rule.get("operations") or []
    if "*" not in ops and a.operation not in ops:
        return False
    for key, value in (("apiGroups", info.group), ("apiVersions", info.version)):
        values = rule.get(key) or []
        if "*" not in values and value not in values:
            return False
    # A Namespace is cluster-scoped, though its requests name a namespace.
    cluster_scoped = not a.namespace or (info.group, info.resource) == ("", "namespaces")
    scope = rule.get("scope") or "*"
    if scope == "Cluster" and not cluster_scoped or scope == "Namespaced" and cluster_scoped:
        return False
    for r in rule.get("resources") or []:
        res, _, sub = str(r).partition("/")  # "*" alone: every resource, no subresource
        if res in ("*", info.resource) and sub in ("*", a.subresource):
            return True
    return False


def _selector_matches(selector: Any, labels: dict[str, str]) -> bool:
    try:
        return label_selector_from_dict(selector if selector is not None else {},
                                        plain_map=False).matches(labels)
    except SelectorError:
        return False


def _labels(obj: Obj | None) -> dict[str, str]:
    return dict(((obj or {}).get("metadata") or {}).get("labels") or {})


class Webhooks:
    """Both webhook plugins, over one view of the configurations."""

    def __init__(self, namespace_labels: LabelsReader, resolve: EndpointResolver):
        self.namespace_labels = namespace_labels
        self.resolve = resolve
        # (kind, name) -> the configuration's webhooks
        self._configs: dict[tuple[str, str], list[Obj]] = {}
        self._session: aiohttp.ClientSession | None = None
        self._contexts: dict[str, ssl.SSLContext] = {}
        self._programs: dict[str, cel.Program | str] = {}  # expression -> it compiled, or why not

    # -- feeding ----------------------------------------------------------

    def event(self, type_: str, obj: Obj) -> None:
        key = (obj.get("kind", ""), obj["metadata"]["name"])
        if type_ == "DELETED":
            self._configs.pop(key, None)
        else:
            self._configs[key] = [h for h in obj.get("webhooks") or [] if isinstance(h, dict)]

    def _hooks(self, kind: str) -> list[_Hook]:
        return [_Hook(name, h) for (k, name), hooks in sorted(self._configs.items())
                if k == kind for h in hooks]

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    # -- the plugins ------------------------------------------------------

    async def mutate(self, a: Attributes) -> None:
        """MutatingAdmissionWebhook: may change ``a.obj``."""
        hooks = [h for h in self._hooks("MutatingWebhookConfiguration")
                 if await self._matches(h, a)]
        if not hooks:
            return
        changed_by: set[str] = set()
        for hook in hooks:
            if await self._call(hook, a, mutating=True):
                changed_by.add(hook.name)
        # reinvocationPolicy IfNeeded: asked once more if a later webhook changed the object.
        again = [h for h in hooks if h.spec.get("reinvocationPolicy") == "IfNeeded"
                 and changed_by - {h.name}]
        for hook in again:
            await self._call(hook, a, mutating=True)

    async def validate(self, a: Attributes) -> None:
        """ValidatingAdmissionWebhook: all matching webhooks at once; the first refusal wins."""
        hooks = [h for h in self._hooks("ValidatingWebhookConfiguration")
                 if await self._matches(h, a)]
        if not hooks:
            return
        results = await asyncio.gather(*(self._call(h, a, mutating=False) for h in hooks),
                                       return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise result

    # -- matching ---------------------------------------------------------

    async def _matches(self, hook: _Hook, a: Attributes) -> bool:
        if (a.info.group, a.info.resource) in _EXEMPT or a.operation not in _OPTIONS_KIND:
            return False
        spec = hook.spec
        if not any(_rule_matches(r, a) for r in spec.get("rules") or [] if isinstance(r, dict)):
            return False
        # Namespaced objects match by their namespace's labels; a Namespace by
        # its own; other cluster-scoped objects are not narrowed.
        if a.info.group == "" and a.info.resource == "namespaces":
            ns_labels: dict[str, str] | None = _labels(a.obj if a.obj is not None else a.old)
        elif a.info.namespaced and a.namespace:
            ns_labels = await self.namespace_labels(a.namespace)
        else:
            ns_labels = None
        if ns_labels is not None and not _selector_matches(spec.get("namespaceSelector"),
                                                           ns_labels):
            return False
        selector = spec.get("objectSelector")
        if not (_selector_matches(selector, _labels(a.obj)) or (
                a.old is not None and _selector_matches(selector, _labels(a.old)))):
            return False
        return self._conditions_hold(hook, a)

    def _conditions_hold(self, hook: _Hook, a: Attributes) -> bool:
        """matchConditions: all true asks the webhook, any false skips it; an
        error fails the write (failurePolicy Fail) or skips the webhook (Ignore)."""
        conditions = [c for c in hook.spec.get("matchConditions") or [] if isinstance(c, dict)]
        if not conditions:
            return True
        activation = {"object": cel.to_cel(a.obj if a.operation != DELETE else None),
                      "oldObject": cel.to_cel(a.old if a.operation != CREATE else None),
                      "request": cel.to_cel(request_object(a, a.info))}
        errors = []
        for c in conditions:
            expression = str(c.get("expression") or "")
            program = self._programs.get(expression)
            if program is None:
                try:
                    program = cel.compile_expression(expression, activation)
                except cel.CompileError as e:
                    program = f"compilation failed: {e}"
                self._programs[expression] = program
            if isinstance(program, str):
                errors.append(f"{c.get('name')}: {program}")
                continue
            try:
                value = program.evaluate(activation)
            except cel.EvalError as e:
                errors.append(f"{c.get('name')}: expression '{expression}' resulted in error: "
                              f"{e}")
                continue
            if value is False or (isinstance(value, cel.celtypes.BoolType) and not value):
                return False  # a false condition wins over an error, as upstream
            if not isinstance(value, cel.celtypes.BoolType):
                errors.append(f"{c.get('name')}: must evaluate to bool")
        if not errors:
            return True
        if hook.spec.get("failurePolicy") == "Ignore":
            return False
        raise APIError(500, "InternalError", f'Internal error occurred: failed calling webhook '
                       f'"{hook.name}": failed to evaluate match condition: '
                       f"{'; '.join(errors)}")

    # -- calling ----------------------------------------------------------

    async def _call(self, hook: _Hook, a: Attributes, *, mutating: bool) -> bool:
        """Ask one webhook; True when it changed the object."""
        spec = hook.spec
        if a.dry_run and spec.get("sideEffects") not in ("None", "NoneOnDryRun"):
            raise status.bad_request(f'admission webhook "{hook.name}" does not support dry run')
        request = self._review(a)
        try:
            response = await self._post(spec, request)
            allowed = response.get("allowed")
            if response.get("uid") != request["request"]["uid"]:
                raise WebhookError(f"expected response.uid=\"{request['request']['uid']}\", "
                                   f"got \"{response.get('uid')}\"")
            if not isinstance(allowed, bool):
                raise WebhookError("the response has no allowed field")
        except WebhookError as e:
            if spec.get("failurePolicy") == "Ignore":
                log.warning("failed calling webhook %q (failurePolicy Ignore): %s", hook.name, e)
                return False
            raise APIError(500, "InternalError", f'Internal error occurred: failed calling '
                           f'webhook "{hook.name}": {e}',
                           {"causes": [{"message": f'failed calling webhook "{hook.name}": {e}'}]}
                           ) from None
        for warning in response.get("warnings") or []:
            if isinstance(warning, str):
                a.warnings.append(warning)
        if not allowed:
            raise _denied(hook.name, response.get("status"))
        patch = response.get("patch")
        if not patch or not mutating:
            return False
        if response.get("patchType") != "JSONPatch":
            raise APIError(500, "InternalError", f'Internal error occurred: webhook '
                           f'"{hook.name}" returned an unsupported patchType '
                           f'"{response.get("patchType")}"')
        try:
            ops = orjson.loads(base64.b64decode(patch))
            patched = patches.json_patch(copy.deepcopy(a.obj or {}), ops)
        except (ValueError, patches.PatchError) as e:
            raise APIError(500, "InternalError", f'Internal error occurred: webhook '
                           f'"{hook.name}" returned an invalid patch: {e}') from None
        if patched == a.obj:
            return False
        a.obj = patched
        return True

    def _review(self, a: Attributes) -> Obj:
        info = a.info
        kind = {"group": info.group, "version": info.version, "kind": info.kind}
        resource = {"group": info.group, "version": info.version, "resource": info.resource}
        user = a.user
        req: Obj = {
            "uid": str(uuid.uuid4()), "kind": kind, "resource": resource,
            "requestKind": kind, "requestResource": resource,
            "name": a.name or ((a.obj or {}).get("metadata") or {}).get("name", ""),
            "operation": a.operation,
            "userInfo": {"username": user.name if user else "",
                         **({"uid": user.uid} if user and user.uid else {}),
                         "groups": list(user.groups) if user else []},
            "object": a.obj if a.operation != DELETE else None,
            "oldObject": a.old if a.operation != CREATE else None,
            "dryRun": a.dry_run,
            "options": {"kind": _OPTIONS_KIND[a.operation], "apiVersion": "meta.k8s.io/v1"},
        }
        if a.subresource:
            req["subResource"] = a.subresource
            req["requestSubResource"] = a.subresource
        if a.namespace:
            req["namespace"] = a.namespace
        return {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": req}

    async def _post(self, spec: Obj, review: Obj) -> Obj:
        cc = spec.get("clientConfig") or {}
        timeout = int(spec.get("timeoutSeconds") or 10)
        url, server_hostname = cc.get("url"), None
        if url is None:
            svc = cc.get("service") or {}
            port = int(svc.get("port") or 443)
            target = await self.resolve(svc.get("namespace", ""), svc.get("name", ""), port)
            if target is None:
                raise WebhookError(f'service "{svc.get("namespace")}/{svc.get("name")}" has '
                                   "no ready endpoints")
            url = f"https://{target}{svc.get('path') or ''}"
            server_hostname = f"{svc.get('name')}.{svc.get('namespace')}.svc"
        url = f"{url}?timeout={timeout}s"
        if self._session is None:
            self._session = aiohttp.ClientSession()
        try:
            async with self._session.post(
                    url, data=orjson.dumps(review),
                    headers={"Content-Type": "application/json", "Accept": "application/json"},
                    ssl=self._context(cc.get("caBundle") or ""),
                    server_hostname=server_hostname,
                    timeout=aiohttp.ClientTimeout(total=timeout)) as resp:
                body = await resp.read()
                if resp.status != 200:
                    raise WebhookError(f'failed to call webhook: the server responded with '
                                       f'status {resp.status}: {body[:200]!r}')
        except TimeoutError:
            raise WebhookError(f'failed to call webhook: Post "{url}": context deadline '
                               "exceeded") from None
        except aiohttp.ClientError as e:
            raise WebhookError(f'failed to call webhook: Post "{url}": {e}') from None
        try:
            answer = orjson.loads(body)
        except orjson.JSONDecodeError as e:
            raise WebhookError(f"received invalid webhook response: {e}") from None
        response = answer.get("response") if isinstance(answer, dict) else None
        if not isinstance(response, dict):
            raise WebhookError("received invalid webhook response: no response")
        return response

    def _context(self, ca_bundle: str) -> ssl.SSLContext:
        ctx = self._contexts.get(ca_bundle)
        if ctx is None:
            if ca_bundle:
                ctx = ssl.create_default_context(
                    cadata=base64.b64decode(ca_bundle).decode("ascii", "replace"))
            else:
                ctx = ssl.create_default_context()  # the host's CAs, as upstream's default
            self._contexts[ca_bundle] = ctx
        return ctx


def _denied(name: str, result: Any) -> APIError:
    """A refusal as upstream's webhook ToStatusErr words it."""
    result = result if isinstance(result, dict) else {}
    code = result.get("code") if isinstance(result.get("code"), int) else 0
    code = code if code >= 400 else 400
    denied = f'admission webhook "{name}" denied the request'
    if result.get("message"):
        message = f"{denied}: {result['message']}"
    elif result.get("reason"):
        message = f"{denied}: {result['reason']}"
    else:
        message = f"{denied} without explanation"
    return APIError(code, str(result.get("reason") or ""), message, result.get("details"))
