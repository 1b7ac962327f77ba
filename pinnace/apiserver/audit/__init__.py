"""Auditing, as kube-apiserver does it: every request gets an audit ID (the
client's Audit-ID header, else a new UUID), echoed in the Audit-Id response
header; with a policy (--audit-policy-file) and a log (--audit-log-path),
each request the policy gives a level other than None is written to the log
as audit.k8s.io/v1 Event JSON lines, one per stage: RequestReceived once it
is authenticated, ResponseStarted when a long-running one (watch, proxy,
exec, attach, port-forward, log) sends its headers, ResponseComplete when
it is answered, Panic when it failed on a bug. A request whose credentials
are refused gets one ResponseStarted event with an empty user, as upstream's
failed-authentication audit writes it.

The API server calls the hooks: ``middleware`` (between its error and
authentication middlewares), ``on_prepare`` (response headers),
``begin``/``authn_failed`` (after authentication), ``impersonating`` and
``decided`` (authorization's decision and reason, as annotations). Events
are built as dicts on the event loop and rendered (bodies parsed,
managedFields dropped, timestamps formatted) by the log's writer thread.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import os
import time
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web

from .. import codec
from ..authn import User
from ..requestinfo import RequestInfo
from ..status import APIError
from .log import AuditLog
from .policy import NONE, RANK, REQUEST, REQUEST_RESPONSE, Decision, Policy, load_policy

log = logging.getLogger("pinnace.apiserver.audit")

HEADER = "Audit-Id"  # Go's canonical form of upstream's "Audit-ID"
# The request body, as the handlers read it; the request's audit ID.
BODY_KEY: web.RequestKey[Any] = web.RequestKey("pinnace.audit.body", object)
_ID_KEY: web.RequestKey[str] = web.RequestKey("pinnace.audit.id", str)
_CTX_KEY: web.RequestKey[Any] = web.RequestKey("pinnace.audit", object)  # its _Request
_RECEIVED_KEY: web.RequestKey[float] = web.RequestKey("pinnace.audit.received", float)
DECISION = "authorization.k8s.io/decision"
REASON = "authorization.k8s.io/reason"
LONG_RUNNING_VERBS = frozenset({"watch", "proxy"})
LONG_RUNNING_SUBRESOURCES = frozenset({"attach", "exec", "proxy", "log", "portforward"})
MAX_USER_AGENT = 1024

__all__ = ["AuditLog", "Auditor", "HEADER", "BODY_KEY", "load_policy"]


@dataclass(slots=True, eq=False)
class _Request:
    """One audited request's event, as it stands."""

    decision: Decision
    head: dict[str, Any]  # kind, apiVersion, level, auditID
    who: dict[str, Any]  # requestURI, verb, user
    where: dict[str, Any]  # sourceIPs, userAgent, objectRef
    received: float
    long_running: bool
    authn_failed: bool = False
    started: bool = False
    done: bool = False
    impersonated: dict[str, Any] | None = None
    annotations: dict[str, str] = field(default_factory=dict)
    status: dict[str, Any] | None = None


def annotations_of(request: web.Request) -> dict[str, str]:
    """Where admission puts its audit annotations for ``request``: its audit
    event's, or a dict nobody reads when the request is not audited."""
    ctx: _Request | None = request.get(_CTX_KEY)
    return ctx.annotations if ctx is not None else {}


class Auditor:
    def __init__(self, policy: Policy | None = None, sink: AuditLog | None = None):
        self.policy = policy
        self.sink = sink
        if sink is not None:
            sink.render = render
        self.enabled = policy is not None and sink is not None

    @classmethod
    def from_config(cls, policy_file: str, log_path: str, max_size_mb: int, max_backups: int,
                    max_age_days: int, rotate: bool) -> Auditor:
        """The auditor the flags ask for (as upstream: no policy or no log
        path, no events). PolicyError for a bad policy, ValueError for bad numbers."""
        for flag, value in (("--audit-log-maxage", max_age_days),
                            ("--audit-log-maxbackup", max_backups),
                            ("--audit-log-maxsize", max_size_mb)):
            if value < 0:
                raise ValueError(f"{flag} {value} can't be a negative number")
        policy = load_policy(policy_file) if policy_file else None
        if policy is None or not log_path:
            if log_path and policy is None:
                log.info("no audit policy file given: no audit events are written")
            return cls(policy, None)
        return cls(policy, AuditLog(log_path, max_size_mb, max_backups, max_age_days,
                                    rotate=rotate))

    def start(self) -> None:
        if self.sink is not None:
            self.sink.start()

    async def stop(self) -> None:
        if self.sink is not None:
            await asyncio.to_thread(self.sink.stop)

    # -- hooks -----------------------------------------------------------------

    @web.middleware
    async def middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        if not self.enabled:
            return await handler(request)  # type: ignore[no-any-return]
        request[_RECEIVED_KEY] = time.time()
        try:
            resp = await handler(request)
        except APIError as e:
            self._finish(request, e.code, _status_of(e.status()), _Lazy(
                codec.dumps(e.status()), "application/json"))
            raise
        except web.HTTPException as e:
            self._finish(request, e.status, {"metadata": {}, "code": e.status}, None)
            raise
        except (asyncio.CancelledError, ConnectionResetError):
            self._finish(request, 0, None, None)
            raise
        except Exception as e:
            ctx = request.get(_CTX_KEY)
            if ctx is not None and not ctx.done:
                ctx.status = {"metadata": {}, "status": "Failure",
                              "message": f"APIServer panic'd: {e!r}", "reason": "InternalError",
                              "code": 500}
                ctx.done = True
                self._emit(ctx, "Panic", time.time(), request)
            raise
        self._finish_response(request, resp)
        return resp  # type: ignore[no-any-return]

    async def on_prepare(self, request: web.Request, response: web.StreamResponse) -> None:
        ctx: _Request | None = request.get(_CTX_KEY)
        if HEADER not in response.headers:
            response.headers[HEADER] = audit_id(request)
        if ctx is not None and ctx.long_running and not ctx.started and not ctx.done:
            ctx.status = {"metadata": {}, "code": response.status}
            self._started(ctx, request)

    def begin(self, request: web.Request, user: User | None, info: RequestInfo) -> None:
        """The request is authenticated as ``user``: decide its level, and
        write its RequestReceived event."""
        if not self.enabled:
            return
        assert self.policy is not None
        decision = self.policy.evaluate(user, info)
        if decision.level == NONE:
            return
        long_running = info.verb in LONG_RUNNING_VERBS or (
            info.resource_request and info.subresource in LONG_RUNNING_SUBRESOURCES)
        ctx = _new(request, decision, user, info, long_running)
        request[_CTX_KEY] = ctx
        self._emit(ctx, "RequestReceived", ctx.received, request)

    def authn_failed(self, request: web.Request, info: RequestInfo) -> None:
        """The credentials were refused: the event has no user, and only
        the ResponseStarted stage, as upstream writes it."""
        if not self.enabled:
            return
        assert self.policy is not None
        decision = self.policy.evaluate(None, info)
        if decision.level != NONE:
            request[_CTX_KEY] = _new(request, decision, None, info, False, authn_failed=True)

    def impersonating(self, request: web.Request, user: User) -> None:
        ctx: _Request | None = request.get(_CTX_KEY)
        if ctx is not None:
            ctx.impersonated = _user(user)

    def decided(self, request: web.Request, allowed: bool, reason: str) -> None:
        ctx: _Request | None = request.get(_CTX_KEY)
        if ctx is not None:
            ctx.annotations[DECISION] = "allow" if allowed else "forbid"
            ctx.annotations[REASON] = reason

    # -- completion ------------------------------------------------------------

    def _finish_response(self, request: web.Request, resp: web.StreamResponse) -> None:
        ctx: _Request | None = request.get(_CTX_KEY)
        if ctx is None or ctx.done:
            return
        body = getattr(resp, "body", None) if isinstance(resp, web.Response) else None
        lazy = None
        status = None
        if isinstance(body, bytes) and body:
            ctype = resp.headers.get("Content-Type", "")
            lazy = _Lazy(body, ctype)
            if b'"kind":"Status"' in body[:200] and ctype.startswith("application/json"):
                try:
                    status = _status_of(orjson.loads(body))
                except orjson.JSONDecodeError:
                    status = None
        self._finish(request, resp.status, status, lazy)

    def _finish(self, request: web.Request, code: int, status: dict[str, Any] | None,
                response: _Lazy | None) -> None:
        ctx: _Request | None = request.get(_CTX_KEY)
        if ctx is None or ctx.done:
            return
        ctx.done = True
        if code == 0:  # the client went away
            if ctx.status is None:
                ctx.status = {"metadata": {}, "status": "Success",
                              "message": "Connection closed early", "code": 200}
        else:
            ctx.status = status or {"metadata": {}, "code": code}
        if not code or RANK[ctx.decision.level] < RANK[REQUEST_RESPONSE]:
            response = None
        if ctx.authn_failed:
            self._emit(ctx, "ResponseStarted", time.time(), request, response)
            return
        if ctx.long_running and not ctx.started:
            self._started(ctx, request)
        self._emit(ctx, "ResponseComplete", time.time(), request, response)

    def _started(self, ctx: _Request, request: web.Request) -> None:
        ctx.started = True
        self._emit(ctx, "ResponseStarted", time.time(), request)

    def _emit(self, ctx: _Request, stage: str, at: float, request: web.Request,
              response: _Lazy | None = None) -> None:
        if stage in ctx.decision.omit_stages:
            return
        # Upstream's field order (audit/v1 Event); empty fields are left out as it does.
        ev = {**ctx.head, "stage": stage, **ctx.who}
        if ctx.impersonated is not None:
            ev["impersonatedUser"] = ctx.impersonated
        ev.update(ctx.where)
        if ctx.status is not None:
            ev["responseStatus"] = ctx.status
        level = ctx.decision.level
        body = request.get(BODY_KEY) if stage != "RequestReceived" else None
        if body and request.method in ("POST", "PUT", "PATCH", "DELETE"):
            ev["requestObject"] = _Lazy(body, request.headers.get("Content-Type", ""),
                                        request.method == "PATCH",
                                        keep=RANK[level] >= RANK[REQUEST],
                                        fills_ref=request.method in ("POST", "PUT"))
        if response is not None:
            ev["responseObject"] = response
        ev["requestReceivedTimestamp"] = ctx.received
        ev["stageTimestamp"] = ctx.received if stage == "RequestReceived" else at
        if ctx.annotations and stage != "RequestReceived":
            ev["annotations"] = dict(ctx.annotations)
        if ctx.decision.omit_managed_fields:
            ev[_OMIT_MF] = True
        assert self.sink is not None
        self.sink.put(ev)


def audit_id(request: web.Request) -> str:
    """The request's audit ID: the client's Audit-ID header, else a new UUID."""
    try:
        found = request[_ID_KEY]
    except KeyError:
        found = request.headers.get(HEADER) or new_uuid()
        request[_ID_KEY] = found
    return found


def new_uuid() -> str:
    """A random (version 4) UUID, as uuid.uuid4() but cheaper."""
    b = bytearray(os.urandom(16))
    b[6] = (b[6] & 0x0F) | 0x40
    b[8] = (b[8] & 0x3F) | 0x80
    h = b.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


@dataclass(slots=True)
class _Lazy:
    """A body to parse in the writer thread, not on the request path."""

    data: bytes
    content_type: str
    patch: bool = False
    keep: bool = True  # False: only read for the objectRef
    fills_ref: bool = False


_OMIT_MF = "\x00omitManagedFields"


def _new(request: web.Request, decision: Decision, user: User | None, info: RequestInfo,
         long_running: bool, authn_failed: bool = False) -> _Request:
    head = {"kind": "Event", "apiVersion": "audit.k8s.io/v1", "level": decision.level,
            "auditID": audit_id(request)}
    who = {"requestURI": request.raw_path, "verb": info.verb,
           "user": _user(user) if user is not None else {}}
    where: dict[str, Any] = {}
    ips = source_ips(request)
    if ips:
        where["sourceIPs"] = ips
    agent = request.headers.get("User-Agent", "")
    if agent:
        where["userAgent"] = agent if len(agent) <= MAX_USER_AGENT else \
            agent[:MAX_USER_AGENT] + "...TRUNCATED"
    if info.resource_request:
        where["objectRef"] = _object_ref(info)
    try:
        received: float = request[_RECEIVED_KEY]
    except KeyError:
        received = time.time()
    return _Request(decision, head, who, where, received, long_running, authn_failed)


_REFS: dict[RequestInfo, dict[str, str]] = {}


def _object_ref(info: RequestInfo) -> dict[str, str]:
    """objectRef as the request names it (shared: never changed once made)."""
    ref = _REFS.get(info)
    if ref is None:
        full = {"resource": info.resource, "namespace": info.namespace, "name": info.name,
                "apiGroup": info.api_group, "apiVersion": info.api_version,
                "subresource": info.subresource}
        ref = {k: v for k, v in full.items() if v}
        if len(_REFS) >= 4096:
            _REFS.clear()
        _REFS[info] = ref
    return ref


def _user(user: User) -> dict[str, Any]:
    out: dict[str, Any] = {"username": user.name}
    if user.uid:
        out["uid"] = user.uid
    if user.groups:
        out["groups"] = list(user.groups)
    return out


def _status_of(st: dict[str, Any]) -> dict[str, Any]:
    """What upstream keeps of a Status in responseStatus."""
    out: dict[str, Any] = {"metadata": {}}
    for key in ("status", "message", "reason", "details", "code"):
        if st.get(key):
            out[key] = st[key]
    return out


def source_ips(request: web.Request) -> list[str]:
    """X-Forwarded-For's addresses, X-Real-Ip's, then the peer's (unless it
    is the last already), as upstream's SourceIPs lists them."""
    ips: list[str] = []
    forwarded = request.headers.get("X-Forwarded-For", "")
    for part in forwarded.split(",") if forwarded else ():
        ip = _ip(part)
        if ip is not None:
            ips.append(ip)
    real = _ip(request.headers.get("X-Real-Ip", ""))
    if real is not None and real not in ips:
        ips.append(real)
    peer = _ip(request.remote or "")
    if peer is not None and (not ips or ips[-1] != peer):
        ips.append(peer)
    return ips


def _ip(text: str) -> str | None:
    text = text.strip()
    if not text:
        return None
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        return None


# -- rendering (the writer thread) --------------------------------------------------


_SECOND: tuple[int, str] = (-1, "")


def microtime(t: float) -> str:
    """2026-12-05T10:00:00.123456Z: metav1.MicroTime in JSON."""
    global _SECOND
    whole = int(t)
    micros = min(round((t - whole) * 1e6), 999_999)
    cached = _SECOND
    if cached[0] != whole:
        cached = _SECOND = (whole, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole)))
    return f"{cached[1]}.{micros:06d}Z"


def render(ev: dict[str, Any]) -> bytes:
    omit_mf = ev.pop(_OMIT_MF, False)
    for key in ("requestObject", "responseObject"):
        lazy = ev.get(key)
        if not isinstance(lazy, _Lazy):
            continue
        obj = _parse(lazy)
        if obj is None:
            del ev[key]
            continue
        if lazy.fills_ref and isinstance(obj, dict) and "objectRef" in ev:
            ev["objectRef"] = _filled_ref(ev["objectRef"], obj)
        if not lazy.keep:
            del ev[key]
            continue
        ev[key] = _without_managed_fields(obj) if omit_mf else obj
    ev["requestReceivedTimestamp"] = microtime(ev["requestReceivedTimestamp"])
    ev["stageTimestamp"] = microtime(ev["stageTimestamp"])
    return orjson.dumps(ev) + b"\n"


def _parse(lazy: _Lazy) -> Any:
    ctype = lazy.content_type.split(";")[0].strip().lower()
    try:
        if lazy.patch and ctype in ("application/apply-patch+yaml", "application/yaml"):
            return codec.parse_body(lazy.data, ctype)
        if ctype.endswith("json") or ctype in ("", "*/*") or ctype.startswith("application/json"):
            return orjson.loads(lazy.data)
        return codec.parse_body(lazy.data, ctype)
    except Exception:  # not an object we can show
        return None


def _filled_ref(ref: dict[str, Any], obj: dict[str, Any]) -> dict[str, Any]:
    """The objectRef with what the request's object names (upstream fills
    name, namespace, uid and resourceVersion from it when unset)."""
    meta = obj.get("metadata")
    if not isinstance(meta, dict):
        return ref
    out = dict(ref)
    for key in ("namespace", "name", "uid", "resourceVersion"):
        value = meta.get(key)
        if value and not out.get(key) and isinstance(value, str):
            out[key] = value
    order = ("resource", "namespace", "name", "uid", "apiGroup", "apiVersion",
             "resourceVersion", "subresource")
    return {k: out[k] for k in order if k in out}


def _without_managed_fields(obj: Any) -> Any:
    """A copy of ``obj`` without metadata.managedFields (of a list's items,
    and of a Table's row objects, too)."""
    if not isinstance(obj, dict):
        return obj
    out = dict(obj)
    meta = out.get("metadata")
    if isinstance(meta, dict) and "managedFields" in meta:
        out["metadata"] = {k: v for k, v in meta.items() if k != "managedFields"}
    items = out.get("items")
    if isinstance(items, list):
        out["items"] = [_without_managed_fields(i) for i in items]
    rows = out.get("rows")
    if out.get("kind") == "Table" and isinstance(rows, list):
        out["rows"] = [{**r, "object": _without_managed_fields(r["object"])}
                       if isinstance(r, dict) and "object" in r else r for r in rows]
    return out

