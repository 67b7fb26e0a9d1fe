"""Real HTTP servers for the remote-source tests, on 127.0.0.1 and a free port.

``FakeRedmine`` answers the subset of the Redmine REST API the connector uses, in its JSON shapes
(issues with pagination and the ``updated_on`` filter, one issue with journals, projects, the
wiki index and pages, ``enabled_modules``), checks ``X-Redmine-API-Key`` (401 otherwise), answers
a bare 403 to everything while its REST API is "disabled" (as Redmine 5.0 does), and keeps a log
of every request. ``FakeSite`` serves pages with ETag/Last-Modified and a sitemap, answering conditional
GETs with 304. Both take injected faults for the next matching requests: an HTTP status (500,
429 with Retry-After), a response slower than the client's timeout, a dropped connection.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime, parsedate_to_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit


@dataclass
class Fault:
    kind: str  # "status", "slow" or "drop"
    path: str | None = None  # only requests whose path starts with this
    status: int = 500
    retry_after: str | None = None
    seconds: float = 0.0


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    status: int | None = None  # None: no response (dropped, or slow past the client)
    body: bytes = b""


@dataclass
class Response:
    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out as two writes: no 40 ms delayed-ACK stall

    def do_GET(self) -> None:
        self.server.app.dispatch(self, "GET")

    def do_HEAD(self) -> None:
        self.server.app.dispatch(self, "HEAD")

    def do_POST(self) -> None:
        self.server.app.dispatch(self, "POST")

    def log_message(self, *args) -> None:  # quiet
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address) -> None:
        pass  # a client that timed out and left is expected here


class FakeServer:
    serialized = True  # route() runs under the server's lock, one request at a time

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._faults: list[Fault] = []
        self.requests: list[Request] = []
        self.on_request: Callable[[Request], None] | None = None  # runs before each answer
        self._stopping = threading.Event()
        self._httpd = _Server(("127.0.0.1", 0), _Handler)
        self._httpd.app = self
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    def close(self) -> None:
        self._stopping.set()
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(10)

    def fail(self, kind: str, times: int = 1, path: str | None = None, **kwargs) -> None:
        """The next ``times`` requests (under ``path``) get this fault instead of an answer."""
        with self._lock:
            self._faults.extend(Fault(kind, path, **kwargs) for _ in range(times))

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def requests_to(self, path_prefix: str) -> list[Request]:
        with self._lock:
            return [r for r in self.requests if r.path.startswith(path_prefix)]

    def reset_log(self) -> None:
        with self._lock:
            self.requests.clear()

    def dispatch(self, handler: BaseHTTPRequestHandler, method: str) -> None:
        parts = urlsplit(handler.path)
        query = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        headers = {k.lower(): v for k, v in handler.headers.items()}
        length = int(headers.get("content-length", "0") or 0)
        body = handler.rfile.read(length) if length else b""
        request = Request(method, unquote(parts.path), query, headers, body=body)
        with self._lock:
            self.requests.append(request)
            fault = next((f for f in self._faults if f.path is None or request.path.startswith(f.path)), None)
            if fault is not None:
                self._faults.remove(fault)
        if self.on_request is not None:
            self.on_request(request)
        if fault is not None and fault.kind == "drop":
            handler.close_connection = True
            handler.connection.shutdown(socket.SHUT_RDWR)
            return
        if fault is not None and fault.kind == "slow":
            self._stopping.wait(fault.seconds)
        if fault is not None and fault.kind == "status":
            headers = {"Retry-After": fault.retry_after} if fault.retry_after is not None else {}
            response = Response(fault.status, b'{"errors": ["injected"]}', headers)
        elif self.serialized:
            with self._lock:
                response = self.route(request)
        else:
            response = self.route(request)
        request.status = response.status
        try:
            handler.send_response(response.status)
            headers = {"Content-Type": "application/json; charset=utf-8", **response.headers}
            for name, value in headers.items():
                handler.send_header(name, value)
            handler.send_header("Content-Length", str(len(response.body)))
            handler.end_headers()
            if method != "HEAD":
                handler.wfile.write(response.body)
        except OSError:
            request.status = None  # the client gave up first

    def route(self, request: Request) -> Response:
        raise NotImplementedError


def _json(status: int, data) -> Response:
    return Response(status, json.dumps(data).encode())


def _iso(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


class FakeRedmine(FakeServer):
    """Projects with issues (journals) and wiki pages. Every change moves a clock one minute, so
    ``updated_on`` values are distinct and ordered."""

    def __init__(self, api_key: str) -> None:
        self.api_key = api_key
        self.projects: dict[str, dict] = {}
        self.issues: dict[int, dict] = {}
        self.private: set[int] = set()
        self.wiki: dict[str, dict[str, dict]] = {}
        self.modules: dict[str, tuple[str, ...]] = {}
        self.hidden_projects: set[str] = set()  # 403: the key's user is no member
        self.rest_api = True  # False: Redmine 5.0's answer to every API request is a bare 403
        self.admin = False  # the key's user is an administrator
        self.lists_modules = True  # False: a Redmine that ignores include=enabled_modules
        self._clock = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)
        super().__init__()

    def _tick(self) -> str:
        self._clock += timedelta(minutes=1)
        return _iso(self._clock)

    # ---- what the tests change ----------------------------------------------------------------

    def add_project(self, identifier: str, name: str | None = None,
                    modules: tuple[str, ...] = ("issue_tracking", "wiki")) -> None:
        with self._lock:
            self.projects[identifier] = {"id": len(self.projects) + 1, "identifier": identifier,
                                         "name": name or identifier.title()}
            self.wiki[identifier] = {}
            self.modules[identifier] = modules

    def add_issue(self, project: str, subject: str, description: str = "", notes: tuple[str, ...] = ()) -> int:
        with self._lock:
            issue_id = max(self.issues, default=100) + 1
            now = self._tick()
            self.issues[issue_id] = {
                "id": issue_id,
                "project": {"id": self.projects[project]["id"], "name": self.projects[project]["name"]},
                "project_identifier": project,
                "tracker": {"id": 1, "name": "Bug"},
                "status": {"id": 1, "name": "New"},
                "priority": {"id": 2, "name": "Normal"},
                "author": {"id": 7, "name": "Ada Ops"},
                "subject": subject,
                "description": description,
                "created_on": now,
                "updated_on": now,
                "journals": [],
            }
        for note in notes:
            self.add_note(issue_id, note)
        return issue_id

    def change_issue(self, issue_id: int, **fields) -> None:
        with self._lock:
            self.issues[issue_id].update(fields, updated_on=self._tick())

    def add_note(self, issue_id: int, notes: str) -> None:
        with self._lock:
            issue = self.issues[issue_id]
            now = self._tick()
            issue["journals"].append(
                {"id": len(issue["journals"]) + 1, "user": {"id": 7, "name": "Ada Ops"}, "notes": notes,
                 "created_on": now, "details": []}
            )
            issue["updated_on"] = now

    def delete_issue(self, issue_id: int) -> None:
        with self._lock:
            del self.issues[issue_id]

    def make_private(self, issue_id: int) -> None:
        """Hidden from this API key: gone from listings, 403 on its own URL."""
        with self._lock:
            self.private.add(issue_id)

    def put_wiki(self, project: str, title: str, text: str) -> None:
        with self._lock:
            self.wiki[project][title] = {
                "title": title, "text": text, "version": 1, "author": {"id": 7, "name": "Ada Ops"},
                "updated_on": self._tick(),
            }

    # ---- the API ------------------------------------------------------------------------------

    def route(self, request: Request) -> Response:
        if not self.rest_api:
            return Response(403)
        if request.headers.get("x-redmine-api-key") != self.api_key:
            return _json(401, {"errors": ["unauthorized"]})
        path = request.path
        if path == "/users/current.json":
            return _json(200, {"user": {"id": 1, "login": "sync-bot", "admin": self.admin}})
        if path == "/issues.json":
            return self._issues(request.query)
        parts = path.strip("/").split("/")
        if len(parts) == 2 and parts[0] == "issues" and parts[1].endswith(".json"):
            return self._issue(int(parts[1][:-5]), request.query)
        if len(parts) == 2 and parts[0] == "projects" and parts[1].endswith(".json"):
            return self._project(parts[1][:-5], request.query)
        if len(parts) == 4 and parts[0] == "projects" and parts[2] == "wiki" and parts[1] in self.projects:
            if "wiki" not in self.modules[parts[1]]:
                return _json(403, {})
            pages = self.wiki[parts[1]]
            if parts[3] == "index.json":
                index = [{k: p[k] for k in ("title", "version", "updated_on")} for p in pages.values()]
                return _json(200, {"wiki_pages": index})
            page = pages.get(parts[3].removesuffix(".json"))
            return _json(200, {"wiki_page": page}) if page else _json(404, {})
        return _json(404, {})

    def _project(self, identifier: str, query: dict[str, str]) -> Response:
        if identifier not in self.projects:
            return _json(404, {})
        if identifier in self.hidden_projects:
            return _json(403, {})
        project = dict(self.projects[identifier])
        if self.lists_modules and "enabled_modules" in query.get("include", "").split(","):
            project["enabled_modules"] = [{"id": n, "name": m} for n, m in enumerate(self.modules[identifier], 1)]
        return _json(200, {"project": project})

    def _visible(self, project: str) -> list[dict]:
        return [i for i in self.issues.values() if i["project_identifier"] == project and i["id"] not in self.private]

    def _issues(self, query: dict[str, str]) -> Response:
        project = query.get("project_id")
        if project not in self.projects:
            return _json(404, {})
        if query.get("status_id") != "*":
            return _json(422, {"errors": ["this fake serves status_id=* only"]})
        issues = self._visible(project)
        if (since := query.get("updated_on", "")).startswith(">="):
            issues = [i for i in issues if i["updated_on"] >= since[2:]]
        sort = query.get("sort", "id")
        field_name, _, order = sort.partition(":")
        issues.sort(key=lambda i: i[field_name], reverse=order == "desc")
        offset, limit = int(query.get("offset", 0)), min(int(query.get("limit", 25)), 100)
        page = [{k: v for k, v in i.items() if k not in ("journals", "project_identifier")}
                for i in issues[offset: offset + limit]]
        return _json(200, {"issues": page, "total_count": len(issues), "offset": offset, "limit": limit})

    def _issue(self, issue_id: int, query: dict[str, str]) -> Response:
        if issue_id in self.private:
            return _json(403, {})
        issue = self.issues.get(issue_id)
        if issue is None:
            return _json(404, {})
        shown = {k: v for k, v in issue.items() if k != "project_identifier"}
        if query.get("include") != "journals":
            shown.pop("journals")
        return _json(200, {"issue": shown})


class FakeSite(FakeServer):
    """HTML pages with ETag and Last-Modified, and ``/sitemap.xml`` listing them with lastmod."""

    def __init__(self) -> None:
        self.pages: dict[str, dict] = {}
        self.redirects: dict[str, str] = {}
        self.unlisted: set[str] = set()  # pages served but left out of the sitemap
        self._clock = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)
        super().__init__()

    def put_page(self, path: str, title: str, body: str, content_type: str = "text/html; charset=utf-8") -> None:
        with self._lock:
            self._clock += timedelta(minutes=1)
            version = self.pages.get(path, {}).get("version", 0) + 1
            html = f"<html><head><title>{title}</title></head><body><p>{body}</p></body></html>"
            self.pages[path] = {"html": html.encode(), "version": version, "modified": self._clock,
                                "content_type": content_type}

    def remove_page(self, path: str) -> None:
        with self._lock:
            del self.pages[path]

    def redirect(self, path: str, location: str) -> None:
        with self._lock:
            self.redirects[path] = location

    def route(self, request: Request) -> Response:
        if request.path in self.redirects:
            return Response(302, b"", {"Location": self.redirects[request.path]})
        if request.path == "/sitemap.xml":
            urls = "".join(
                f"<url><loc>{self.url}{path}</loc><lastmod>{_iso(page['modified'])}</lastmod></url>"
                for path, page in self.pages.items()
                if path not in self.unlisted
            )
            body = f'<?xml version="1.0"?><urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">{urls}</urlset>'
            return Response(200, body.encode(), {"Content-Type": "application/xml"})
        page = self.pages.get(request.path)
        if page is None:
            return Response(404, b"not found", {"Content-Type": "text/plain"})
        etag = f'"v{page["version"]}"'
        validators = {"ETag": etag, "Last-Modified": format_datetime(page["modified"], usegmt=True)}
        if request.headers.get("if-none-match") == etag:
            return Response(304, b"", validators)
        since = request.headers.get("if-modified-since")
        if since and "if-none-match" not in request.headers and parsedate_to_datetime(since) >= page["modified"]:
            return Response(304, b"", validators)
        return Response(200, page["html"], {"Content-Type": page["content_type"], **validators})
