"""The classic example's web app (examples/classic/myweb/app.py) without a database.

Request handling runs against a fake store; the reconnect logic of Database
against a fake `pymysql` module; one test goes through a real HTTP server on a
loopback port.
"""

from __future__ import annotations

import http.client
import importlib.util
import json
import sys
import threading
import types
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

APP_PATH = Path(__file__).resolve().parents[3] / "examples" / "classic" / "myweb" / "app.py"


def _load() -> types.ModuleType:
    spec = importlib.util.spec_from_file_location("pinnace_example_myweb", APP_PATH)
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses look their module up
    spec.loader.exec_module(mod)
    return mod


myweb = _load()


class FakeStore:
    def __init__(self) -> None:
        self.records: list[dict[str, Any]] = []
        self.down: str | None = None

    def list_records(self, limit: int = 1000) -> list[dict[str, Any]]:
        if self.down:
            raise myweb.DatabaseUnavailable(self.down)
        return list(reversed(self.records))[:limit]

    def add_record(self, name: str, created_by: str) -> dict[str, Any]:
        if self.down:
            raise myweb.DatabaseUnavailable(self.down)
        r = {"id": len(self.records) + 1, "name": name, "created_by": created_by,
             "created_at": "2024-01-01 00:00:00"}
        self.records.append(r)
        return r

    def ping(self) -> str | None:
        return self.down


@pytest.fixture
def store() -> FakeStore:
    return FakeStore()


@pytest.fixture
def app(store: FakeStore) -> Any:
    return myweb.App(store, version="v1", hostname="myweb-abc12")


def _json(r: Any) -> Any:
    assert r.content_type == "application/json"
    return json.loads(r.body)


FORM = {"Content-Type": "application/x-www-form-urlencoded"}
JSON = {"Content-Type": "application/json"}


# --- pages and JSON -------------------------------------------------------------------------------------------


def test_records_json_lists_newest_first_with_pod_and_version(app: Any, store: FakeStore) -> None:
    store.add_record("alice", "myweb-x")
    store.add_record("bob", "myweb-y")
    r = app.handle("GET", "/records", {})
    assert r.status == 200
    doc = _json(r)
    assert [x["name"] for x in doc["records"]] == ["bob", "alice"]
    assert doc["served_by"] == "myweb-abc12"
    assert doc["version"] == "v1"
    assert "error" not in doc


def test_page_lists_records_escaped_with_pod_and_version(app: Any, store: FakeStore) -> None:
    store.add_record("<script>alert(1)</script>", "myweb-x")
    r = app.handle("GET", "/", {"Accept": "text/html"})
    assert r.status == 200
    assert r.content_type.startswith("text/html")
    page = r.body.decode()
    assert "<title>myweb v1</title>" in page
    assert "myweb-abc12" in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<script>" not in page
    assert 'action="/records"' in page


def test_page_without_records_invites_one(app: Any) -> None:
    assert "No records yet" in app.handle("GET", "/", {}).body.decode()


def test_v2_looks_different(store: FakeStore) -> None:
    v1 = myweb.App(store, version="v1", hostname="p").handle("GET", "/", {}).body.decode()
    v2 = myweb.App(store, version="v2", hostname="p").handle("GET", "/", {}).body.decode()
    assert "<title>myweb v2</title>" in v2
    assert myweb.COLORS["v1"] in v1 and myweb.COLORS["v1"] not in v2
    assert myweb.COLORS["v2"] in v2


def test_colour_can_be_set(store: FakeStore) -> None:
    page = myweb.App(store, version="v9", hostname="p", color="#abcdef").handle("GET", "/", {}).body.decode()
    assert "#abcdef" in page


def test_query_string_and_trailing_slash_are_ignored(app: Any) -> None:
    assert app.handle("GET", "/records/?x=1", {}).status == 200
    assert app.handle("GET", "/?refresh=1", {}).status == 200


def test_head_is_answered(app: Any) -> None:
    assert app.handle("HEAD", "/", {}).status == 200


# --- adding ---------------------------------------------------------------------------------------------------


def test_form_post_adds_a_record_as_this_pod(app: Any, store: FakeStore) -> None:
    r = app.handle("POST", "/records", FORM, b"name=Jane+Doe")
    assert r.status == 201
    doc = _json(r)
    assert doc["record"]["name"] == "Jane Doe"
    assert doc["record"]["created_by"] == "myweb-abc12"
    assert doc["served_by"] == "myweb-abc12" and doc["version"] == "v1"
    assert [x["name"] for x in store.records] == ["Jane Doe"]


def test_form_post_from_a_browser_goes_back_to_the_list(app: Any, store: FakeStore) -> None:
    r = app.handle("POST", "/records", {**FORM, "Accept": "text/html,application/xhtml+xml,*/*;q=0.8"},
                   b"name=x")
    assert r.status == 303
    assert r.headers["Location"] == "/"
    assert len(store.records) == 1


def test_form_without_content_type_is_read_as_a_form(app: Any, store: FakeStore) -> None:
    assert app.handle("POST", "/records", {}, b"name=plain").status == 201
    assert store.records[0]["name"] == "plain"


def test_json_post_adds_a_record(app: Any, store: FakeStore) -> None:
    r = app.handle("POST", "/records", {"content-type": "application/json; charset=utf-8"},
                   json.dumps({"name": "  Zoë  "}).encode())
    assert r.status == 201
    assert _json(r)["record"]["name"] == "Zoë"


@pytest.mark.parametrize("headers,body,status", [
    (FORM, b"", 400),
    (FORM, b"name=", 400),
    (FORM, b"name=%20%20", 400),
    (FORM, b"other=1", 400),
    (FORM, b"name=" + b"x" * 256, 400),
    (FORM, b"name=\xff", 400),
    (JSON, b"{not json", 400),
    (JSON, b'{"name": 5}', 400),
    (JSON, b'["name"]', 400),
    (JSON, b"", 400),
    ({"Content-Type": "text/plain"}, b"name=x", 415),
    ({"Content-Type": "multipart/form-data; boundary=x"}, b"", 415),
])
def test_bad_posts_are_refused_and_store_nothing(app: Any, store: FakeStore, headers: dict[str, str],
                                                 body: bytes, status: int) -> None:
    r = app.handle("POST", "/records", headers, body)
    assert r.status == status
    assert "error" in _json(r)
    assert store.records == []


def test_longest_name_is_accepted(app: Any) -> None:
    assert app.handle("POST", "/records", FORM, b"name=" + b"x" * 255).status == 201


def test_errors_for_a_browser_are_html(app: Any) -> None:
    r = app.handle("POST", "/records", {**FORM, "Accept": "text/html"}, b"name=")
    assert r.status == 400
    assert r.content_type.startswith("text/html")
    assert "non-empty" in r.body.decode()


# --- the database away ----------------------------------------------------------------------------------------


def test_healthz_follows_the_database(app: Any, store: FakeStore) -> None:
    assert app.handle("GET", "/healthz", {}).status == 200
    store.down = "MySQL at mysql:3306: (2003) refused"
    r = app.handle("GET", "/healthz", {})
    assert r.status == 503
    assert b"(2003) refused" in r.body


def test_livez_does_not_depend_on_the_database(app: Any, store: FakeStore) -> None:
    store.down = "gone"
    assert app.handle("GET", "/livez", {}).status == 200


def test_database_down_gives_503_with_the_reason(app: Any, store: FakeStore) -> None:
    store.down = "MySQL at mysql:3306: (2003) refused"
    r = app.handle("GET", "/records", {})
    assert r.status == 503
    doc = _json(r)
    assert doc["records"] == [] and "(2003) refused" in doc["error"]
    assert doc["served_by"] == "myweb-abc12"
    page = app.handle("GET", "/", {})
    assert page.status == 503
    assert "database unavailable" in page.body.decode()
    assert 'action="/records"' in page.body.decode()
    add = app.handle("POST", "/records", FORM, b"name=x")
    assert add.status == 503
    assert "(2003) refused" in _json(add)["error"]


def test_after_the_database_is_back_requests_work(app: Any, store: FakeStore) -> None:
    store.down = "gone"
    assert app.handle("GET", "/records", {}).status == 503
    store.down = None
    assert app.handle("POST", "/records", FORM, b"name=x").status == 201
    assert app.handle("GET", "/records", {}).status == 200


# --- routing --------------------------------------------------------------------------------------------------


def test_unknown_path_is_404(app: Any) -> None:
    assert app.handle("GET", "/nope", {}).status == 404


@pytest.mark.parametrize("method,path,allow", [
    ("DELETE", "/records", "GET, HEAD, POST"),
    ("POST", "/", "GET, HEAD"),
    ("PUT", "/healthz", "GET, HEAD"),
])
def test_wrong_method_is_405_with_allow(app: Any, method: str, path: str, allow: str) -> None:
    r = app.handle(method, path, {})
    assert r.status == 405
    assert r.headers["Allow"] == allow


# --- settings -------------------------------------------------------------------------------------------------


def test_settings_from_the_service_variables() -> None:
    s = myweb.Settings.from_env({"MYSQL_SERVICE_HOST": "10.0.0.7", "MYSQL_SERVICE_PORT": "3307",
                                 "MYSQL_ROOT_PASSWORD": "pw", "MYWEB_VERSION": "v2",
                                 # Kubernetes also injects docker-link style variables: not used
                                 "MYSQL_PORT": "tcp://10.0.0.7:3307"})
    assert (s.host, s.port, s.user, s.password, s.version) == ("10.0.0.7", 3307, "root", "pw", "v2")


def test_settings_defaults_match_the_classic_manifests() -> None:
    s = myweb.Settings.from_env({})
    assert (s.host, s.port, s.user, s.password, s.database) == ("mysql", 3306, "root", "123456", "myweb")
    assert (s.version, s.listen) == ("v1", "0.0.0.0:8080")


def test_settings_for_another_user() -> None:
    s = myweb.Settings.from_env({"MYSQL_USER": "app", "MYSQL_PASSWORD": "apppw", "MYSQL_ROOT_PASSWORD": "rootpw",
                                 "MYSQL_DATABASE": "shop"})
    assert (s.user, s.password, s.database) == ("app", "apppw", "shop")


@pytest.mark.parametrize("env", [{"MYSQL_DATABASE": "x`; DROP"}, {"MYSQL_SERVICE_PORT": "tcp://x"}])
def test_settings_refuse_bad_values(env: dict[str, str]) -> None:
    with pytest.raises(ValueError):
        myweb.Settings.from_env(env)


@pytest.mark.parametrize("addr,expected", [
    ("0.0.0.0:8080", ("0.0.0.0", 8080)),
    ("127.0.0.1:18080", ("127.0.0.1", 18080)),
    (":9000", ("0.0.0.0", 9000)),
    ("[::]:8080", ("::", 8080)),
])
def test_parse_listen(addr: str, expected: tuple[str, int]) -> None:
    assert myweb.parse_listen(addr) == expected


@pytest.mark.parametrize("addr", ["8080x", "host", "host:port"])
def test_parse_listen_refuses(addr: str) -> None:
    with pytest.raises(ValueError):
        myweb.parse_listen(addr)


# --- Database: reconnecting, against a fake pymysql -------------------------------------------------------------


class MySQLError(Exception):
    pass


class OperationalError(MySQLError):
    pass


class InterfaceError(MySQLError):
    pass


class ProgrammingError(MySQLError):
    pass


class FakeCursor:
    def __init__(self, conn: FakeConn) -> None:
        self.conn = conn
        self.lastrowid = 0
        self._rows: list[tuple[Any, ...]] = []

    def __enter__(self) -> FakeCursor:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def execute(self, sql: str, args: tuple[Any, ...] = ()) -> None:
        server = self.conn.server
        if not self.conn.alive or server.generation != self.conn.generation:
            raise OperationalError(2013, "Lost connection to MySQL server during query")
        server.statements.append(sql)
        if sql.startswith("INSERT"):
            server.rows.append((len(server.rows) + 1, args[0], args[1], "2024-01-01 00:00:00"))
            self.lastrowid = len(server.rows)
        elif "WHERE id" in sql:
            self._rows = [server.rows[args[0] - 1]]
        elif sql.startswith("SELECT"):
            self._rows = list(reversed(server.rows))

    def fetchall(self) -> list[tuple[Any, ...]]:
        return self._rows

    def fetchone(self) -> tuple[Any, ...]:
        return self._rows[0]


class FakeConn:
    def __init__(self, server: FakeServer) -> None:
        self.server = server
        self.generation = server.generation
        self.alive = True

    def cursor(self) -> FakeCursor:
        return FakeCursor(self)

    def ping(self, reconnect: bool = True) -> None:
        assert reconnect is False
        if self.server.generation != self.generation:
            raise OperationalError(2013, "Lost connection to MySQL server during query")

    def close(self) -> None:
        self.alive = False


class FakeServer:
    """A MySQL that can be down, and restarts (old connections break)."""

    def __init__(self) -> None:
        self.up = True
        self.denied = False
        self.generation = 0
        self.connects = 0
        self.rows: list[tuple[Any, ...]] = []
        self.statements: list[str] = []

    def connect(self, **kw: Any) -> FakeConn:
        self.connects += 1
        if not self.up:
            raise OperationalError(2003, f"Can't connect to MySQL server on '{kw['host']}' (111)")
        if self.denied:
            raise ProgrammingError(1044, f"Access denied for user '{kw['user']}'@'%' to database 'myweb'")
        return FakeConn(self)

    def restart(self) -> None:
        self.generation += 1


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> FakeServer:
    srv = FakeServer()
    fake = types.ModuleType("pymysql")
    fake.connect = srv.connect  # type: ignore[attr-defined]
    fake.err = types.SimpleNamespace(MySQLError=MySQLError,  # type: ignore[attr-defined]
                                     OperationalError=OperationalError, InterfaceError=InterfaceError)
    monkeypatch.setitem(sys.modules, "pymysql", fake)
    return srv


@pytest.fixture
def db(server: FakeServer) -> Any:
    return myweb.Database("mysql", 3306, "root", "123456", "myweb")


def test_first_use_creates_database_and_table(db: Any, server: FakeServer) -> None:
    assert db.ping() is None
    assert any("CREATE DATABASE IF NOT EXISTS `myweb`" in s for s in server.statements)
    assert any("CREATE TABLE IF NOT EXISTS records" in s for s in server.statements)


def test_unreachable_database_is_reported(db: Any, server: FakeServer) -> None:
    server.up = False
    why = db.ping()
    assert why is not None and "mysql:3306" in why and "(2003)" in why
    with pytest.raises(myweb.DatabaseUnavailable):
        db.list_records()
    server.up = True
    assert db.ping() is None


def test_a_database_that_refuses_setup_is_unavailable_too(db: Any, server: FakeServer) -> None:
    server.denied = True
    why = db.ping()
    assert why is not None and "(1044) Access denied" in why
    with pytest.raises(myweb.DatabaseUnavailable):
        db.add_record("a", "pod")


def test_restarted_database_is_reconnected_transparently(db: Any, server: FakeServer) -> None:
    db.add_record("a", "pod")
    assert server.connects == 1
    server.restart()
    assert [r["name"] for r in db.list_records()] == ["a"]
    assert server.connects == 2
    server.restart()
    assert db.add_record("b", "pod")["name"] == "b"  # the ping before the insert found the dead connection
    assert server.connects == 3


def test_connection_lost_during_a_read_is_retried_once(db: Any, server: FakeServer, monkeypatch: pytest.MonkeyPatch
                                                       ) -> None:
    db.add_record("a", "pod")
    # The ping succeeds, then the query finds the connection gone (a restart in between).
    monkeypatch.setattr(FakeConn, "ping", lambda self, reconnect=True: server.restart())
    assert [r["name"] for r in db.list_records()] == ["a"]


def test_connection_lost_during_an_insert_is_not_retried(db: Any, server: FakeServer,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    db.ping()
    monkeypatch.setattr(FakeConn, "ping", lambda self, reconnect=True: server.restart())
    with pytest.raises(myweb.DatabaseUnavailable, match="2013"):
        db.add_record("a", "pod")
    assert server.rows == []


def test_wait_until_ready_returns_once_connected(db: Any, server: FakeServer) -> None:
    server.up = False
    stop = threading.Event()
    t = threading.Thread(target=db.wait_until_ready, args=(stop, 0.01))
    t.start()
    t.join(0.1)
    assert t.is_alive()
    server.up = True
    t.join(5)
    assert not t.is_alive()


# --- through a real HTTP server ---------------------------------------------------------------------------------


def test_http_server_round_trip(store: FakeStore) -> None:
    app = myweb.App(store, version="v2", hostname="myweb-http")
    srv = myweb.Server(("127.0.0.1", 0), myweb.make_handler(app))
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    base = f"http://127.0.0.1:{srv.server_address[1]}"
    try:
        req = urllib.request.Request(base + "/records", data=b"name=over+http", method="POST", headers=FORM)
        with urllib.request.urlopen(req, timeout=5) as r:
            assert r.status == 201
            assert json.load(r)["record"]["name"] == "over http"
        with urllib.request.urlopen(base + "/records", timeout=5) as r:
            doc = json.load(r)
            assert doc["served_by"] == "myweb-http" and doc["version"] == "v2"
            assert [x["name"] for x in doc["records"]] == ["over http"]
        head = urllib.request.Request(base + "/", method="HEAD")
        with urllib.request.urlopen(head, timeout=5) as r:
            assert int(r.headers["Content-Length"]) > 0 and r.read() == b""
        store.down = "gone"
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(base + "/healthz", timeout=5)
        assert e.value.code == 503
        # A body over the limit is refused from its Content-Length, before it is read.
        conn = http.client.HTTPConnection("127.0.0.1", srv.server_address[1], timeout=5)
        conn.putrequest("POST", "/records")
        conn.putheader("Content-Length", str(myweb.MAX_BODY + 1))
        conn.endheaders()
        assert conn.getresponse().status == 413
        conn.close()
    finally:
        srv.shutdown()
        srv.server_close()
        t.join(5)
