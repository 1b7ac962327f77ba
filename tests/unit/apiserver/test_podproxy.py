"""pods/proxy and services/proxy (pinnace.apiserver.podproxy) in parts:
names as upstream's SplitSchemeNamePort reads them, the addresses it will
proxy to, paths and links moved under the proxy path, the kernel's route
check, and a request passed to a backend on a loopback port and back.

The route check only asks the kernel (no packet is sent); every request
here goes to 127.0.0.1.
"""

from __future__ import annotations

import gzip
import ipaddress
import json
import socket
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
import yarl
from aiohttp import web
from aiohttp.test_utils import TestServer

from pinnace.apiserver import podproxy
from pinnace.apiserver.podproxy import (
    Backend,
    PodProxy,
    RouteGuard,
    join_path,
    proxyable,
    rewrite_html,
    rewrite_url,
    split_scheme_name_port,
)
from pinnace.apiserver.status import APIError

PREFIX = "/api/v1/namespaces/ns/services/web:80/proxy"


@pytest.mark.parametrize("id_, parsed", [
    ("web", ("", "web", "")),
    ("web:80", ("", "web", "80")),
    ("web:http", ("", "web", "http")),
    ("https:web:443", ("https", "web", "443")),
    ("http:web:", ("http", "web", "")),
    ("web:", ("", "web", "")),
    ("", None),
    (":80", None),
    ("ftp:web:21", None),
    ("a:b:c:d", None),
    ("https::443", None),
])
def test_split_scheme_name_port(id_: str, parsed: tuple[str, str, str] | None) -> None:
    assert split_scheme_name_port(id_) == parsed


@pytest.mark.parametrize("address, ok", [
    ("10.244.0.5", True), ("192.0.2.9", True), ("fd00::5", True), ("::ffff:10.0.0.1", True),
    ("127.0.0.1", False), ("::1", False), ("169.254.1.1", False), ("fe80::1", False),
    ("224.0.0.1", False), ("0.0.0.0", False), ("::", False), ("255.255.255.255", False),
    ("::ffff:127.0.0.1", False), ("", False), ("pod.example", False),
])
def test_proxyable(address: str, ok: bool) -> None:
    assert (proxyable(address) is not None) is ok


@pytest.mark.parametrize("parts, joined", [
    (("", ""), ""), (("", "/"), "/"), (("/a/b", ""), "/a/b"), (("/a/b", "/"), "/a/b/"),
    ((PREFIX, "/x/../y/"), PREFIX + "/y/"), (("//a//b",), "/a/b"), ((PREFIX, "/"), PREFIX + "/"),
])
def test_join_path(parts: tuple[str, ...], joined: str) -> None:
    assert join_path(*parts) == joined


@pytest.mark.parametrize("url, rewritten", [
    ("/x/y/", PREFIX + "/x/y/"),                                 # an absolute path
    ("http://10.244.0.5:8080/x?q=1#f", PREFIX + "/x?q=1#f"),     # the backend itself
    ("https://api:6443/x", "https://api:6443" + PREFIX + "/x"),  # the host the client asked
    (PREFIX + "/already", PREFIX + "/already"),                  # under the prefix already
    ("http://example.com/x", "http://example.com/x"),            # elsewhere
    ("x/y", "x/y"), ("../up", "../up"),                          # relative
    ("http://10.244.0.5:8080", "http://10.244.0.5:8080"),        # no path: relative, as upstream
    ("http://[::1", "http://[::1"),                              # not a URL
])
def test_rewrite_url(url: str, rewritten: str) -> None:
    assert rewrite_url(url, PREFIX, "10.244.0.5:8080", "api:6443") == rewritten


def test_rewrite_html_changes_links_only() -> None:
    page = ('<!DOCTYPE html>\n<html><head><link rel=stylesheet href="/s.css">\n'
            "<script>var a = '<a href=/no>';</script></head>\n"
            "<body background='/bg.png'><a href=\"/a?x=1&amp;y=2\" class=k>A</a>\n"
            '<p title="/not-a-link">p</p><img src="i.png"><IMG SRC="/i.png" />'
            '<a href="http://example.com/">out</a></body></html>\n')
    out = rewrite_html(page, lambda u: rewrite_url(u, PREFIX, "10.244.0.5:8080", "api:6443"))
    assert out == (
        f'<!DOCTYPE html>\n<html><head><link rel="stylesheet" href="{PREFIX}/s.css">\n'
        "<script>var a = '<a href=/no>';</script></head>\n"
        f'<body background="{PREFIX}/bg.png"><a href="{PREFIX}/a?x=1&amp;y=2" class="k">A</a>\n'
        f'<p title="/not-a-link">p</p><img src="i.png"><img src="{PREFIX}/i.png" />'
        '<a href="http://example.com/">out</a></body></html>\n')


# -- the route check ------------------------------------------------------------------

async def test_loopback_is_routed_here_and_the_default_route_is_refused() -> None:
    guard = RouteGuard()
    await guard.check(ipaddress.ip_address("127.0.0.1"), "127.0.0.1:80")
    # A documentation address: only the default route leads there (or none at all).
    with pytest.raises(APIError) as refused:
        await guard.check(ipaddress.ip_address("198.51.100.7"), "198.51.100.7:80")
    assert refused.value.code == 503 and refused.value.reason == "ServiceUnavailable"
    assert refused.value.message.startswith("error trying to reach service: ")
    assert ("pinnace does not send pod traffic by the default route" in refused.value.message
            or "network is unreachable" in refused.value.message), refused.value.message


async def test_route_answers_are_reused_for_a_second(monkeypatch: pytest.MonkeyPatch) -> None:
    asked: list[Any] = []
    answers: list[int | OSError] = [16, 0, OSError(101, "Network is unreachable")]

    def lookup(ip: Any) -> int:
        asked.append(ip)
        answer = answers.pop(0)
        if isinstance(answer, OSError):
            raise answer
        return answer

    monkeypatch.setattr(podproxy, "route_prefix", lookup)
    now = [100.0]
    guard = RouteGuard(ttl=1.0, clock=lambda: now[0])
    ip = ipaddress.ip_address("10.244.1.5")
    await guard.check(ip, "10.244.1.5:80")
    now[0] += 0.5
    await guard.check(ip, "10.244.1.5:80")
    assert len(asked) == 1
    now[0] += 1.0  # the pod network's route is gone: refused from now on
    with pytest.raises(APIError, match="by its default route"):
        await guard.check(ip, "10.244.1.5:80")
    now[0] += 1.5
    with pytest.raises(APIError) as unreachable:
        await guard.check(ip, "10.244.1.5:80")
    assert unreachable.value.message == \
        "error trying to reach service: dial tcp 10.244.1.5:80: connect: network is unreachable"
    assert len(asked) == 3


# -- a request there and back ---------------------------------------------------------

async def _echo(request: web.Request) -> web.Response:
    return web.json_response({"method": request.method, "path": request.raw_path,
                              "headers": dict(request.headers),
                              "body": (await request.read()).decode()},
                             headers={"Access-Control-Allow-Origin": "*", "Keep-Alive": "5",
                                      "Set-Cookie": "a=1", "X-Backend": "yes"})


async def _moved(request: web.Request) -> web.Response:
    where = request.query["to"]
    return web.Response(status=302, headers={"Location": where})


async def _page(request: web.Request) -> web.Response:
    page = b'<a href="/next">next</a> <a href="http://elsewhere/">x</a>'
    if request.query.get("gzip"):
        return web.Response(body=gzip.compress(page), headers={
            "Content-Type": "text/html; charset=utf-8", "Content-Encoding": "gzip"})
    return web.Response(body=page, content_type="text/html")


async def _ws_echo(request: web.Request) -> web.WebSocketResponse:
    ws = web.WebSocketResponse(protocols=["chat"])
    await ws.prepare(request)
    async for msg in ws:
        if msg.type == aiohttp.WSMsgType.TEXT:
            await ws.send_str(f"echo: {msg.data} via {request.headers.get('X-Forwarded-Uri')}")
        elif msg.type == aiohttp.WSMsgType.BINARY:
            await ws.send_bytes(msg.data[::-1])
    return ws


@pytest.fixture
async def proxied() -> AsyncIterator[tuple[aiohttp.ClientSession, str, int]]:
    """A backend on a loopback port and a front server whose every request
    PodProxy.forward passes to it under PREFIX; the client session, the
    front's URL and the backend's port."""
    backend = web.Application()
    backend.router.add_route("*", "/echo/{tail:.*}", _echo)
    backend.router.add_get("/moved", _moved)
    backend.router.add_get("/page", _page)
    backend.router.add_get("/ws", _ws_echo)
    async with TestServer(backend, host="127.0.0.1") as back:
        proxy = PodProxy(None, None)  # type: ignore[arg-type]  # forward needs neither

        async def front(request: web.Request) -> web.StreamResponse:
            port = int(request.headers.get("X-Test-Port", back.port))
            target = Backend("http", ipaddress.ip_address("127.0.0.1"), port, f"127.0.0.1:{port}")
            path = join_path(request.path.removeprefix(PREFIX))
            try:
                return await proxy.forward(request, target, path, PREFIX)
            except APIError as e:
                return web.json_response(e.status(), status=e.code)

        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", front)
        async with TestServer(app, host="127.0.0.1") as fr, aiohttp.ClientSession(
                auto_decompress=False) as session:
            yield session, f"http://127.0.0.1:{fr.port}{PREFIX}", back.port
        await proxy.close()


async def test_a_request_goes_as_it_came(proxied: Any) -> None:
    session, url, _ = proxied
    as_sent = yarl.URL(f"{url}/echo/a%20b/?x=1&y=%2F", encoded=True)
    async with session.post(as_sent, data=b"payload", headers={
            "Authorization": "Bearer secret", "Impersonate-User": "alice",
            "Connection": "keep-alive, X-Hop", "X-Hop": "1", "X-Forwarded-For": "192.0.2.1",
            "X-Custom": "kept", "Content-Type": "text/plain"}) as resp:
        assert resp.status == 200
        echoed = json.loads(await resp.read())
        assert "Access-Control-Allow-Origin" not in resp.headers
        assert "Keep-Alive" not in resp.headers
        assert resp.headers["Set-Cookie"] == "a=1" and resp.headers["X-Backend"] == "yes"
    assert echoed["method"] == "POST" and echoed["body"] == "payload"
    assert echoed["path"] == "/echo/a%20b/?x=1&y=%2F"
    sent = {k.lower(): v for k, v in echoed["headers"].items()}
    for gone in ("authorization", "impersonate-user", "x-hop"):
        assert gone not in sent, sent
    assert sent["x-custom"] == "kept" and sent["content-type"] == "text/plain"
    assert sent["x-forwarded-for"] == "192.0.2.1, 127.0.0.1"
    assert sent["x-forwarded-uri"] == f"{PREFIX}/echo/a b/"
    assert sent["host"] == url.split("/")[2]  # the client's Host, as upstream passes it


async def test_redirects_point_back_through_the_proxy(proxied: Any) -> None:
    session, url, port = proxied
    host = url.split("/")[2]
    for to, where in ((f"http://127.0.0.1:{port}/here/", f"{PREFIX}/here/"),
                      ("/there?a=b", f"{PREFIX}/there?a=b"),
                      (f"http://{host}/front", f"http://{host}{PREFIX}/front"),
                      ("http://example.com/", "http://example.com/"),
                      ("relative", "relative")):
        async with session.get(f"{url}/moved", params={"to": to}, allow_redirects=False) as resp:
            assert resp.status == 302 and resp.headers["Location"] == where, (to, resp.headers)


async def test_html_links_point_back_through_the_proxy(proxied: Any) -> None:
    session, url, _ = proxied
    want = f'<a href="{PREFIX}/next">next</a> <a href="http://elsewhere/">x</a>'
    async with session.get(f"{url}/page") as resp:
        assert await resp.text() == want
        assert resp.headers["Content-Length"] == str(len(want))
    async with session.get(f"{url}/page?gzip=1") as resp:
        assert resp.headers["Content-Encoding"] == "gzip"
        assert gzip.decompress(await resp.read()).decode() == want
    async with session.head(f"{url}/page") as resp:  # the page's own headers, no body
        assert resp.status == 200 and await resp.read() == b""
        assert resp.headers["Content-Length"] == str(len(want) - len(PREFIX))


async def test_a_closed_port_is_upstreams_503(proxied: Any) -> None:
    session, url, _ = proxied
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    async with session.get(f"{url}/echo/", headers={"X-Test-Port": str(closed)}) as resp:
        st = await resp.json()
    assert resp.status == 503 and st["reason"] == "ServiceUnavailable"
    assert st["message"] == \
        f"error trying to reach service: dial tcp 127.0.0.1:{closed}: connect: connection refused"


async def test_a_websocket_is_relayed_both_ways(proxied: Any) -> None:
    """As a browser behind `kubectl proxy` opens one: the backend's choice
    of subprotocol comes back, messages go both ways, text and binary."""
    session, url, _ = proxied
    async with session.ws_connect(f"{url}/ws", protocols=["other", "chat"]) as ws:
        assert ws.protocol == "chat"
        await ws.send_str("hi")
        assert await ws.receive_str(timeout=5) == f"echo: hi via {PREFIX}/ws"
        await ws.send_bytes(b"abc")
        assert await ws.receive_bytes(timeout=5) == b"cba"


async def test_a_backend_that_does_not_upgrade_answers_as_it_did(proxied: Any) -> None:
    """A refusal comes back as the backend gave it; a redirect too, moved
    under the proxy path, and not followed by the API server (it could
    lead anywhere)."""
    session, url, port = proxied
    with pytest.raises(aiohttp.WSServerHandshakeError) as e:
        await session.ws_connect(f"{url}/nosuch")
    assert e.value.status == 404
    for to in ("/elsewhere", f"http://127.0.0.1:{port}/elsewhere"):
        async with session.get(f"{url}/moved", params={"to": to}, allow_redirects=False,
                               headers={"Connection": "Upgrade", "Upgrade": "websocket",
                                        "Sec-WebSocket-Version": "13",
                                        "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="}) as r:
            assert (r.status, r.headers["Location"]) == (302, f"{PREFIX}/elsewhere")
