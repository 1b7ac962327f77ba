#!/usr/bin/env python3
"""myweb: the classic example's web app, a stand-in for kubeguide/tomcat-app.

A page that adds records to MySQL and lists them, saying which pod served it
and which version of the app that pod runs. Standard library plus PyMySQL
(Debian's python3-pymysql), nothing else.

    GET  /          HTML: the records, a form to add one, pod name and version
    GET  /records   JSON: {"records": [...], "served_by": POD, "version": V}
    POST /records   add one: form field `name` (a browser is sent back to /)
                    or JSON {"name": ...} (answered 201 with the record)
    GET  /healthz   200 when the database answers, else 503 (a readinessProbe)
    GET  /livez     200 while the process serves (a livenessProbe)

Configuration (environment):
    MYSQL_SERVICE_HOST, MYSQL_SERVICE_PORT   where MySQL is; Kubernetes injects
        them for a Service named `mysql` that exists when the pod starts.
        Without them: host `mysql` (cluster DNS), port 3306.
    MYSQL_ROOT_PASSWORD   password of root (default 123456, as in the manifests)
    MYSQL_USER, MYSQL_PASSWORD   another account instead of root
    MYSQL_DATABASE        database to use, created if missing (default myweb)
    MYWEB_VERSION         shown on the page (the image sets v1 or v2)
    MYWEB_COLOR           page colour (default: by version)
    MYWEB_LISTEN          listen address (default 0.0.0.0:8080; also --listen)

The app starts serving at once and connects in the background, retrying
until MySQL answers; a connection broken later (MySQL restarted or moved) is
replaced on the next request.
"""

from __future__ import annotations

import argparse
import html
import json
import logging
import os
import re
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol, TypeVar
from urllib.parse import parse_qs, urlsplit

log = logging.getLogger("myweb")

DEFAULT_PASSWORD = "123456"
DEFAULT_LISTEN = "0.0.0.0:8080"
MAX_BODY = 64 * 1024
MAX_NAME = 255
LIST_LIMIT = 1000
COLORS = {"v1": "#1f6feb", "v2": "#1a7f37", "v3": "#8250df"}
OTHER_COLOR = "#57606a"

T = TypeVar("T")


class DatabaseUnavailable(Exception):
    """MySQL cannot be reached (or refused us); the message says why."""


class Store(Protocol):
    """What the request handling needs of the database (tests pass a fake)."""

    def list_records(self, limit: int = LIST_LIMIT) -> list[dict[str, Any]]: ...

    def add_record(self, name: str, created_by: str) -> dict[str, Any]: ...

    def ping(self) -> str | None: ...


# --- settings ---------------------------------------------------------------------------------------------


@dataclass
class Settings:
    host: str = "mysql"
    port: int = 3306
    user: str = "root"
    password: str = DEFAULT_PASSWORD
    database: str = "myweb"
    version: str = "v1"
    color: str = ""
    listen: str = DEFAULT_LISTEN

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Settings:
        user = env.get("MYSQL_USER") or "root"
        if user == "root":
            password = env.get("MYSQL_ROOT_PASSWORD", DEFAULT_PASSWORD)
        else:
            password = env.get("MYSQL_PASSWORD", "")
        database = env.get("MYSQL_DATABASE") or "myweb"
        if not re.fullmatch(r"[A-Za-z0-9_$]{1,64}", database):
            raise ValueError(f"MYSQL_DATABASE={database!r}: use letters, digits, _ and $ only")
        port = env.get("MYSQL_SERVICE_PORT") or "3306"
        if not port.isdigit():
            raise ValueError(f"MYSQL_SERVICE_PORT={port!r} is not a port number")
        return cls(host=env.get("MYSQL_SERVICE_HOST") or "mysql", port=int(port), user=user,
                   password=password, database=database, version=env.get("MYWEB_VERSION") or "v1",
                   color=env.get("MYWEB_COLOR") or "", listen=env.get("MYWEB_LISTEN") or DEFAULT_LISTEN)


def parse_listen(addr: str) -> tuple[str, int]:
    """HOST:PORT, [V6]:PORT or :PORT (all addresses)."""
    host, sep, port = addr.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"listen address {addr!r}: expected HOST:PORT")
    return host.strip("[]") or "0.0.0.0", int(port)


# --- the database -----------------------------------------------------------------------------------------

SCHEMA = """CREATE TABLE IF NOT EXISTS records (
  id INT AUTO_INCREMENT PRIMARY KEY,
  name VARCHAR(255) NOT NULL,
  created_by VARCHAR(255) NOT NULL DEFAULT '',
  created_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP
) DEFAULT CHARSET=utf8mb4"""


class Database:
    """One MySQL connection shared by the request threads (under a lock).

    Connects on first use and creates the database and table if missing. Each
    use first pings the connection; a dead one (MySQL restarted, or the
    Service now leads elsewhere) is replaced, so a request after a restart
    simply works. Reads are retried once on a fresh connection; an insert is
    not (it may have been applied).
    """

    def __init__(self, host: str, port: int, user: str, password: str, database: str,
                 connect_timeout: float = 3.0) -> None:
        self.host, self.port, self.user, self.password = host, port, user, password
        self.database = database
        self.connect_timeout = connect_timeout
        self._conn: Any = None
        self._lock = threading.Lock()

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def _connect(self) -> Any:
        import pymysql  # here, so that the request handling loads (and tests run) without it

        conn = pymysql.connect(host=self.host, port=self.port, user=self.user, password=self.password,
                               connect_timeout=self.connect_timeout, read_timeout=10, write_timeout=10,
                               autocommit=True, charset="utf8mb4")
        try:
            with conn.cursor() as cur:
                cur.execute(f"CREATE DATABASE IF NOT EXISTS `{self.database}` DEFAULT CHARACTER SET utf8mb4")
                cur.execute(f"USE `{self.database}`")
                cur.execute(SCHEMA)
        except BaseException:
            conn.close()
            raise
        log.info("connected to MySQL at %s (database %s)", self.address, self.database)
        return conn

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            except Exception:  # noqa: BLE001 - already broken; closing is best effort
                pass

    def _use(self, fn: Callable[[Any], T], retry: bool) -> T:
        import pymysql

        lost = (pymysql.err.OperationalError, pymysql.err.InterfaceError, OSError)
        with self._lock:
            for attempt in (1, 2):
                fresh = self._conn is None
                try:
                    if not fresh:
                        try:
                            self._conn.ping(reconnect=False)
                        except lost as e:
                            log.warning("connection to MySQL at %s lost (%s); reconnecting", self.address, e)
                            self._drop()
                            fresh = True
                    if fresh:
                        try:
                            self._conn = self._connect()
                        except pymysql.err.MySQLError as e:  # e.g. no right to create the database
                            if isinstance(e, lost):
                                raise
                            raise DatabaseUnavailable(f"MySQL at {self.address}: {_reason(e)}") from e
                    return fn(self._conn)
                except lost as e:
                    self._drop()
                    if fresh or not retry or attempt == 2:
                        raise DatabaseUnavailable(f"MySQL at {self.address}: {_reason(e)}") from e
        raise AssertionError("unreachable")

    def ping(self) -> str | None:
        """None when MySQL answers, else why not."""
        try:
            self._use(lambda conn: None, retry=True)
            return None
        except DatabaseUnavailable as e:
            return str(e)

    def list_records(self, limit: int = LIST_LIMIT) -> list[dict[str, Any]]:
        def q(conn: Any) -> list[dict[str, Any]]:
            with conn.cursor() as cur:
                cur.execute("SELECT id, name, created_by, created_at FROM records ORDER BY id DESC LIMIT %s",
                            (int(limit),))
                return [_row(r) for r in cur.fetchall()]
        return self._use(q, retry=True)

    def add_record(self, name: str, created_by: str) -> dict[str, Any]:
        def q(conn: Any) -> dict[str, Any]:
            with conn.cursor() as cur:
                cur.execute("INSERT INTO records (name, created_by) VALUES (%s, %s)", (name, created_by))
                cur.execute("SELECT id, name, created_by, created_at FROM records WHERE id = %s",
                            (cur.lastrowid,))
                return _row(cur.fetchone())
        return self._use(q, retry=False)

    def wait_until_ready(self, stop: threading.Event, interval: float = 2.0) -> None:
        """Connect in the background until MySQL answers (saying so now and then, not every try)."""
        last_said = float("-inf")
        while not stop.is_set():
            why = self.ping()
            if why is None:
                return
            now = time.monotonic()
            if now - last_said >= 30:
                log.warning("waiting for the database (%s); retrying every %gs", why, interval)
                last_said = now
            stop.wait(interval)


def _reason(e: BaseException) -> str:
    args: tuple[Any, ...] = tuple(getattr(e, "args", ()))
    if len(args) == 2 and isinstance(args[0], int):
        return f"({args[0]}) {args[1]}"
    return str(e) or type(e).__name__


def _row(r: Any) -> dict[str, Any]:
    rid, name, created_by, created_at = r
    if isinstance(created_at, datetime):
        created_at = created_at.isoformat(sep=" ")
    return {"id": rid, "name": name, "created_by": created_by, "created_at": str(created_at)}


# --- request handling (no sockets: App.handle is what the tests call) -----------------------------------------


@dataclass
class Response:
    status: int
    body: bytes = b""
    content_type: str = "text/plain; charset=utf-8"
    headers: dict[str, str] = field(default_factory=dict)


ROUTES = {"/": ("GET", "HEAD"), "/records": ("GET", "HEAD", "POST"), "/healthz": ("GET", "HEAD"),
          "/livez": ("GET", "HEAD")}


class App:
    def __init__(self, db: Store, version: str = "v1", hostname: str | None = None, color: str = "") -> None:
        self.db = db
        self.version = version
        self.hostname = hostname or socket.gethostname()
        self.color = color or COLORS.get(version, OTHER_COLOR)

    def handle(self, method: str, target: str, headers: Mapping[str, str], body: bytes = b"") -> Response:
        path = urlsplit(target).path or "/"
        allowed = ROUTES.get(path.rstrip("/") or "/")
        if allowed is None:
            return self._error(HTTPStatus.NOT_FOUND, f"no such page: {path}", headers)
        if method not in allowed:
            r = self._error(HTTPStatus.METHOD_NOT_ALLOWED, f"{method} not allowed on {path}", headers)
            r.headers["Allow"] = ", ".join(allowed)
            return r
        path = path.rstrip("/") or "/"
        if path == "/livez":
            return Response(HTTPStatus.OK, b"ok\n")
        if path == "/healthz":
            why = self.db.ping()
            if why is None:
                return Response(HTTPStatus.OK, b"ok\n")
            return Response(HTTPStatus.SERVICE_UNAVAILABLE, f"database unavailable: {why}\n".encode())
        if path == "/records" and method == "POST":
            return self._add(headers, body)
        try:
            records, error = self.db.list_records(), None
        except DatabaseUnavailable as e:
            records, error = [], str(e)
        status = HTTPStatus.OK if error is None else HTTPStatus.SERVICE_UNAVAILABLE
        if path == "/records":
            doc: dict[str, Any] = {"records": records, "served_by": self.hostname, "version": self.version}
            if error:
                doc["error"] = f"database unavailable: {error}"
            return self._json(status, doc)
        return Response(status, self.page(records, error).encode(), "text/html; charset=utf-8")

    def _add(self, headers: Mapping[str, str], body: bytes) -> Response:
        ctype = _header(headers, "Content-Type").split(";")[0].strip().lower()
        is_json = ctype == "application/json" or ctype.endswith("+json")
        if is_json:
            try:
                doc = json.loads(body.decode("utf-8") or "null")
            except (UnicodeDecodeError, ValueError) as e:
                return self._error(HTTPStatus.BAD_REQUEST, f"body is not JSON: {e}", headers)
            name = doc.get("name") if isinstance(doc, dict) else None
            if name is not None and not isinstance(name, str):
                return self._error(HTTPStatus.BAD_REQUEST, '"name" must be a string', headers)
        elif ctype in ("application/x-www-form-urlencoded", ""):
            try:
                form = parse_qs(body.decode("utf-8"), keep_blank_values=True)
            except UnicodeDecodeError:
                return self._error(HTTPStatus.BAD_REQUEST, "form is not UTF-8", headers)
            name = (form.get("name") or [""])[0]
        else:
            return self._error(HTTPStatus.UNSUPPORTED_MEDIA_TYPE,
                               f"send a form (name=...) or JSON ({{\"name\": ...}}), not {ctype}", headers)
        name = (name or "").strip()
        if not name:
            return self._error(HTTPStatus.BAD_REQUEST, 'a non-empty "name" is required', headers)
        if len(name) > MAX_NAME:
            return self._error(HTTPStatus.BAD_REQUEST, f'"name" is longer than {MAX_NAME} characters', headers)
        try:
            record = self.db.add_record(name, self.hostname)
        except DatabaseUnavailable as e:
            return self._error(HTTPStatus.SERVICE_UNAVAILABLE, f"database unavailable: {e}", headers)
        if not is_json and _wants_html(headers):
            # A browser's form post: show the list again (post/redirect/get).
            return Response(HTTPStatus.SEE_OTHER, b"", headers={"Location": "/"})
        return self._json(HTTPStatus.CREATED, {"record": record, "served_by": self.hostname,
                                               "version": self.version})

    def _json(self, status: int, doc: dict[str, Any]) -> Response:
        return Response(status, (json.dumps(doc, indent=1) + "\n").encode(), "application/json")

    def _error(self, status: int, message: str, headers: Mapping[str, str]) -> Response:
        if _wants_html(headers):
            body = (f"<!doctype html><title>{int(status)}</title><p>{html.escape(message)}</p>"
                    f'<p><a href="/">back</a></p>\n')
            return Response(status, body.encode(), "text/html; charset=utf-8")
        return self._json(status, {"error": message, "served_by": self.hostname, "version": self.version})

    def page(self, records: list[dict[str, Any]], error: str | None) -> str:
        e = html.escape
        rows = "\n".join(
            f"<tr><td>{e(str(r['id']))}</td><td>{e(str(r['name']))}</td><td>{e(str(r['created_by']))}</td>"
            f"<td>{e(str(r['created_at']))}</td></tr>" for r in records)
        if error:
            listing = f'<p class="error">database unavailable: {e(error)}</p>'
        elif not records:
            listing = "<p>No records yet: add one.</p>"
        else:
            listing = ("<table><thead><tr><th>#</th><th>name</th><th>added by pod</th><th>at</th></tr></thead>"
                       f"<tbody>\n{rows}\n</tbody></table>")
        title = f"myweb {e(self.version)}"
        return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ font-family: sans-serif; margin: 0; }}
header {{ background: {e(self.color)}; color: #fff; padding: 1em 2em; }}
header h1 {{ margin: 0 0 .2em 0; }}
main {{ padding: 1em 2em; }}
table {{ border-collapse: collapse; }}
td, th {{ border: 1px solid #d0d7de; padding: .3em .8em; text-align: left; }}
.error {{ color: #cf222e; font-weight: bold; }}
</style></head>
<body>
<header><h1>{title}</h1>
<div>served by pod <b id="served-by">{e(self.hostname)}</b> &middot; version <b id="version">{e(self.version)}</b></div>
</header>
<main>
<form method="post" action="/records">
<input name="name" maxlength="{MAX_NAME}" placeholder="a name" required autofocus>
<button type="submit">Add record</button>
</form>
<h2>Records</h2>
{listing}
</main></body></html>
"""


def _header(headers: Mapping[str, str], name: str) -> str:
    value = headers.get(name)
    if value is None:
        value = next((v for k, v in headers.items() if k.lower() == name.lower()), "")
    return value or ""


def _wants_html(headers: Mapping[str, str]) -> bool:
    return "text/html" in _header(headers, "Accept")


# --- the HTTP server ------------------------------------------------------------------------------------------


def make_handler(app: App) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "myweb"

        def _serve(self) -> None:
            length = self.headers.get("Content-Length") or "0"
            if not length.isdigit():
                self.send_error(HTTPStatus.BAD_REQUEST, "bad Content-Length")
                return
            if int(length) > MAX_BODY:
                self.send_error(HTTPStatus.REQUEST_ENTITY_TOO_LARGE)
                return
            body = self.rfile.read(int(length)) if int(length) else b""
            try:
                r = app.handle(self.command, self.path, dict(self.headers.items()), body)
            except Exception:
                log.exception("%s %s failed", self.command, self.path)
                self.send_error(HTTPStatus.INTERNAL_SERVER_ERROR)
                return
            self.send_response(r.status)
            for k, v in r.headers.items():
                self.send_header(k, v)
            self.send_header("Content-Type", r.content_type)
            self.send_header("Content-Length", str(len(r.body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(r.body)

        do_GET = do_HEAD = do_POST = do_PUT = do_DELETE = do_PATCH = _serve

        def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
            quiet = self.path in ("/healthz", "/livez") and str(code) == "200"
            log.log(logging.DEBUG if quiet else logging.INFO, '%s "%s" %s', self.client_address[0],
                    self.requestline, code)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
            log.info("%s %s", self.client_address[0], format % args)

    return Handler


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, addr: tuple[str, int], handler: type[BaseHTTPRequestHandler]) -> None:
        if ":" in addr[0]:
            self.address_family = socket.AF_INET6
        super().__init__(addr, handler)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="myweb: records in MySQL, served by a pod")
    parser.add_argument("--listen", default=None, help=f"HOST:PORT (default $MYWEB_LISTEN or {DEFAULT_LISTEN})")
    parser.add_argument("-v", "--verbose", action="store_true", help="also log probe requests")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(message)s")
    try:
        settings = Settings.from_env(os.environ)
        host, port = parse_listen(args.listen or settings.listen)
    except ValueError as e:
        log.error("%s", e)
        return 2
    db = Database(settings.host, settings.port, settings.user, settings.password, settings.database)
    app = App(db, settings.version, color=settings.color)
    server = Server((host, port), make_handler(app))
    stop = threading.Event()

    def on_signal(signum: int, frame: Any) -> None:
        log.info("%s: stopping", signal.Signals(signum).name)
        stop.set()
        threading.Thread(target=server.shutdown, daemon=True).start()

    # As a container's PID 1 the process must handle SIGTERM itself, or the kernel ignores it.
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    threading.Thread(target=db.wait_until_ready, args=(stop,), daemon=True, name="db-connect").start()
    log.info("myweb %s on %s:%d (pod %s), database %s as %s", settings.version, host, port, app.hostname,
             db.address, settings.user)
    try:
        server.serve_forever()
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
