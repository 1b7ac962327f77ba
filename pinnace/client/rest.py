"""An async REST client for the Kubernetes API, on plain JSON dicts.

    client = Client(load_kubeconfig(path))
    pods = client.resource("v1", "pods")
    pod = await pods.get("web-0", namespace="default")
    async for event_type, obj in pods.watch(namespace="default", resource_version=rv):
        ...

Every pinnace component reaches the API server only through this.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any, AsyncIterator
from urllib.parse import quote

import aiohttp
import orjson

from pinnace.api.resources import BUILTIN, ResourceInfo

from .config import ClientConfig

Obj = dict[str, Any]

PATCH_CONTENT_TYPES = {
    "merge": "application/merge-patch+json",
    "strategic": "application/strategic-merge-patch+json",
    "json": "application/json-patch+json",
    "apply": "application/apply-patch+yaml",
}


class ApiError(Exception):
    """A non-2xx answer, carrying the server's Status object."""

    def __init__(self, code: int, status: Obj):
        super().__init__(f"{code} {status.get('reason', '')}: {status.get('message', '')}")
        self.code = code
        self.status = status
        self.reason = status.get("reason", "")

    @property
    def not_found(self) -> bool:
        return self.code == 404

    @property
    def conflict(self) -> bool:
        return self.code == 409

    @property
    def gone(self) -> bool:
        return self.code == 410

    def has_cause(self, reason: str) -> bool:
        """The Status names ``reason`` among its causes (apimachinery's HasStatusCause)."""
        causes = (self.status.get("details") or {}).get("causes") or ()
        return any(isinstance(c, dict) and c.get("reason") == reason for c in causes)

    @property
    def namespace_terminating(self) -> bool:
        """Refused because the namespace is being deleted (NamespaceLifecycle)."""
        return self.code == 403 and self.has_cause("NamespaceTerminating")


# What client-go's metadata client asks for: objects' metadata only (the
# server answers PartialObjectMetadata[List]), or whole objects from a
# server that cannot.
METADATA_ACCEPT = "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1,application/json"
METADATA_LIST_ACCEPT = ("application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1,"
                        "application/json")


class Client:
    """``max_connections``: connections to the server, watches included.
    ``max_requests``: requests other than watches in flight at once (no
    limit but the connections by default). Over HTTP/1.1 each request in
    flight needs a connection of its own, kept open for the next one; a
    new one costs a TLS handshake, ~2.5 ms of the API server's CPU and
    ~4 ms of the client's. A component that sends its requests in bursts
    (a node agent starting ten pods) is better served by a few connections
    it keeps busy than by one for each request of the burst. The
    components `pinnace server` runs have no handshakes: their kubeconfigs
    name the server's Unix socket (``ClientConfig.unix_socket``)."""

    def __init__(self, config: ClientConfig, *, max_connections: int = 100,
                 max_requests: int | None = None):
        self.config = config
        self._ssl = config.ssl_context() if not config.unix_socket else False
        # Where request paths are appended: over a Unix socket the host is a formality.
        self.base = "http://localhost" if config.unix_socket else config.server
        self._session: aiohttp.ClientSession | None = None
        self._max = max_connections
        self._requests = asyncio.Semaphore(max_requests) if max_requests else None
        self._infos: dict[tuple[str, str], ResourceInfo] = {
            (i.group_version, i.resource): i for i in BUILTIN}

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            headers = {"User-Agent": self.config.user_agent, "Accept": "application/json"}
            connector: aiohttp.BaseConnector = (
                aiohttp.UnixConnector(self.config.unix_socket, limit=self._max)
                if self.config.unix_socket else aiohttp.TCPConnector(ssl=self._ssl, limit=self._max))
            self._session = aiohttp.ClientSession(
                connector=connector,
                headers=headers, json_serialize=lambda o: orjson.dumps(o).decode(),
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=10))
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def __aenter__(self) -> "Client":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def _headers(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        h = dict(extra or {})
        token = self.config.bearer()
        if token:
            h["Authorization"] = f"Bearer {token}"
        return h

    async def request(self, method: str, path: str, *, params: dict[str, Any] | None = None,
                      body: Any = None, content_type: str = "application/json",
                      timeout: float | None = 60, accept: str | None = None) -> Any:
        data = None
        headers = self._headers()
        if accept:
            headers["Accept"] = accept
        if body is not None:
            data = body if isinstance(body, bytes) else orjson.dumps(body)
            headers["Content-Type"] = content_type
        if self._requests is None:
            return await self._request(method, path, params, data, headers, timeout)
        async with self._requests:
            return await self._request(method, path, params, data, headers, timeout)

    async def _request(self, method: str, path: str, params: dict[str, Any] | None,
                       data: bytes | None, headers: dict[str, str], timeout: float | None) -> Any:
        session = self._get_session()
        async with session.request(method, self.base + path, params=_params(params),
                                   data=data, headers=headers,
                                   timeout=aiohttp.ClientTimeout(total=timeout)) as resp:
            raw = await resp.read()
            if resp.status >= 400:
                raise ApiError(resp.status, _status_of(resp.status, raw))
            if not raw:
                return None
            if resp.content_type == "application/json":
                return orjson.loads(raw)
            return raw

    def resource(self, api_version: str, resource: str, namespaced: bool | None = None
                 ) -> "ResourceClient":
        info = self._infos.get((api_version, resource))
        if namespaced is None:
            if info is None:
                raise ValueError(f"unknown resource {resource} in {api_version}: pass namespaced=")
            namespaced = info.namespaced
        return ResourceClient(self, api_version, resource, namespaced)


@dataclass
class ResourceClient:
    client: Client
    api_version: str
    resource: str
    namespaced: bool

    def path(self, namespace: str | None = None, name: str | None = None,
             subresource: str = "") -> str:
        base = "/api/v1" if self.api_version == "v1" else f"/apis/{self.api_version}"
        if self.namespaced and namespace:
            base += f"/namespaces/{quote(namespace)}"
        base += f"/{self.resource}"
        if name:
            base += f"/{quote(name)}"
            if subresource:
                base += f"/{subresource}"
        return base

    def _ns(self, obj: Obj, namespace: str | None) -> str | None:
        return namespace or (obj.get("metadata") or {}).get("namespace") if self.namespaced \
            else None

    async def get(self, name: str, namespace: str | None = None, subresource: str = "") -> Obj:
        return await self.client.request("GET", self.path(namespace, name, subresource))  # type: ignore[no-any-return]

    async def list(self, namespace: str | None = None, *, metadata_only: bool = False,
                   **params: Any) -> Obj:
        """One LIST (all pages). params: label_selector, field_selector, resource_version,
        limit. ``metadata_only``: the items are PartialObjectMetadata (kind,
        apiVersion meta.k8s.io/v1 and the object's metadata), as client-go's
        metadata client asks for them."""
        items: list[Obj] = []
        q = {_camel(k): v for k, v in params.items() if v is not None}
        q.setdefault("limit", 500)
        accept = METADATA_LIST_ACCEPT if metadata_only else None
        while True:
            page = await self.client.request("GET", self.path(namespace), params=q,
                                             accept=accept)
            items.extend(page.get("items") or [])
            cont = page.get("metadata", {}).get("continue")
            if not cont:
                page["items"] = items
                return page  # type: ignore[no-any-return]
            q = {"limit": q["limit"], "continue": cont}

    async def create(self, obj: Obj, namespace: str | None = None, **params: Any) -> Obj:
        return await self.client.request("POST", self.path(self._ns(obj, namespace)),  # type: ignore[no-any-return]
                                         params={_camel(k): v for k, v in params.items()},
                                         body=obj)

    async def replace(self, obj: Obj, namespace: str | None = None, subresource: str = "",
                      **params: Any) -> Obj:
        name = obj["metadata"]["name"]
        return await self.client.request(  # type: ignore[no-any-return]
            "PUT", self.path(self._ns(obj, namespace), name, subresource),
            params={_camel(k): v for k, v in params.items()}, body=obj)

    async def replace_status(self, obj: Obj, namespace: str | None = None) -> Obj:
        return await self.replace(obj, namespace, "status")

    async def patch(self, name: str, body: Any, namespace: str | None = None,
                    type: str = "merge", subresource: str = "", **params: Any) -> Obj:
        ctype = PATCH_CONTENT_TYPES[type]
        if type == "apply" and not isinstance(body, bytes):
            body = json.dumps(body).encode()  # JSON is valid YAML
        return await self.client.request(  # type: ignore[no-any-return]
            "PATCH", self.path(namespace, name, subresource),
            params={_camel(k): v for k, v in params.items()}, body=body, content_type=ctype)

    async def delete(self, name: str, namespace: str | None = None, *,
                     grace_period_seconds: int | None = None,
                     propagation_policy: str | None = None,
                     preconditions: Obj | None = None) -> Any:
        body: Obj = {"kind": "DeleteOptions", "apiVersion": "v1"}
        if grace_period_seconds is not None:
            body["gracePeriodSeconds"] = grace_period_seconds
        if propagation_policy:
            body["propagationPolicy"] = propagation_policy
        if preconditions:
            body["preconditions"] = preconditions
        return await self.client.request("DELETE", self.path(namespace, name), body=body)

    async def create_subresource(self, name: str, subresource: str, body: Obj,
                                 namespace: str | None = None) -> Any:
        return await self.client.request("POST", self.path(namespace, name, subresource),
                                         body=body)

    async def watch(self, namespace: str | None = None, *, resource_version: str = "",
                    timeout_seconds: int = 300, allow_bookmarks: bool = True,
                    metadata_only: bool = False,
                    **params: Any) -> AsyncIterator[tuple[str, Obj]]:
        """(type, object) pairs until the server ends the stream. An ERROR event
        raises ApiError (410 Gone means: list again). ``metadata_only``: the
        objects are PartialObjectMetadata."""
        q: dict[str, Any] = {"watch": "true", "timeoutSeconds": timeout_seconds,
                             "allowWatchBookmarks": "true" if allow_bookmarks else "false"}
        if resource_version:
            q["resourceVersion"] = resource_version
        q.update({_camel(k): v for k, v in params.items() if v is not None})
        session = self.client._get_session()
        headers = self.client._headers()
        if metadata_only:
            headers["Accept"] = METADATA_ACCEPT
        async with session.get(self.client.base + self.path(namespace),
                               params=_params(q), headers=headers,
                               timeout=aiohttp.ClientTimeout(total=timeout_seconds + 30,
                                                             sock_read=timeout_seconds + 30)
                               ) as resp:
            if resp.status >= 400:
                raise ApiError(resp.status, _status_of(resp.status, await resp.read()))
            buf = b""
            async for chunk in resp.content.iter_any():
                if b"\n" not in chunk:
                    buf += chunk
                    continue
                # One split per chunk: a chunk can hold hundreds of events, and
                # splitting off one line at a time would copy the rest each time.
                lines = (buf + chunk).split(b"\n")
                buf = lines.pop()
                for line in lines:
                    if not line.strip():
                        continue
                    ev = orjson.loads(line)
                    if ev["type"] == "ERROR":
                        st = ev.get("object") or {}
                        raise ApiError(int(st.get("code") or 500), st)
                    yield ev["type"], ev["object"]


def _camel(key: str) -> str:
    head, *rest = key.split("_")
    return head + "".join(p.title() for p in rest)


def _params(params: dict[str, Any] | None) -> dict[str, str] | None:
    if not params:
        return None
    out = {}
    for k, v in params.items():
        if isinstance(v, bool):
            out[k] = "true" if v else "false"
        elif v is not None:
            out[k] = str(v)
    return out


def _status_of(code: int, raw: bytes) -> Obj:
    try:
        st = orjson.loads(raw)
        if isinstance(st, dict):
            return st
    except orjson.JSONDecodeError:
        pass
    return {"kind": "Status", "code": code, "message": raw.decode(errors="replace")[:500]}


async def retry_on_conflict(fn: Any, attempts: int = 8) -> Any:
    """Run ``fn`` (a coroutine function reading fresh state each time) until
    it does not hit a 409 Conflict, like client-go's RetryOnConflict."""
    for i in range(attempts):
        try:
            return await fn()
        except ApiError as e:
            if not e.conflict or i == attempts - 1:
                raise
            await asyncio.sleep(0.01 * (2 ** i))
