"""Redmine issues (subject, description, notes) and wiki pages of chosen projects, via the REST API.

Spec: ``redmine:https://redmine.example.com?projects=ops,infra&wiki=1[&key_env=NAME]``. The API
key is read from ``OPS_REDMINE_API_KEY`` (or the variable ``key_env`` names) and sent only as the
``X-Redmine-API-Key`` header to the Redmine origin; it is never part of a URL, a log line or an
error message. ``check`` names the likely cause of a refusal: a 401 is the key, a 403 on
``/users/current.json`` (which any user may read) a disabled REST API, a 403 on a project a user
who is no member; with ``wiki=1`` every project must have its wiki module. A key of an
administrator is warned about: it sees private issues.

An incremental read lists, per project, the issues updated since that project's cursor (the
largest ``updated_on`` seen: ``updated_on=>=T``, newest first, paged by ``offset``/``limit``) and
fetches, with their journals, only those whose ``updated_on`` differs from the stored one. A full
read lists every issue (a cheap listing, sorted by id, no journals) so that issues deleted or now
private are seen to be gone; if the listing's ``total_count`` moves while it is paged, archiving
is withheld for that run. Wiki pages come from each project's wiki index (one request), fetched
only when their ``updated_on`` changed.

An issue's fields are the names Redmine gives its ``project``, ``tracker``, ``status``,
``priority``, ``author`` and ``assignee`` (``assigned_to``), and its ``updated_on``; a wiki page's
its project's name, ``author`` and ``updated_on``. What the JSON lacks is left out.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import datetime
from urllib.parse import parse_qs, quote, urlencode, urlsplit

from ops_pipelines.sources.base import (
    Extracted,
    IncrementalSource,
    SourceDocument,
    SourceSkip,
    SourceUnavailable,
    SourceUnchanged,
    UnreadableDocument,
    document_fields,
    parse_time,
    too_large,
)
from ops_pipelines.sources.http import HttpClient, HttpPolicy, HttpResult, ResponseTooLarge

DEFAULT_KEY_ENV = "OPS_REDMINE_API_KEY"
KEY_HEADER = "X-Redmine-API-Key"
PAGE_SIZE = 100
_PROJECT = re.compile(r"^[a-z0-9][a-z0-9_-]{0,99}$")
_ENV_NAME = re.compile(r"^[A-Z_][A-Z0-9_]*$")
ADMIN_KEY_WARNING = (
    "the API key in {env} belongs to a Redmine administrator: an administrator sees private issues, "
    "so they are synced into the knowledge base, and an issue made private is never archived. Use "
    "the key of a dedicated non-admin user, a member of the projects"
)


class RedmineSource(IncrementalSource):
    kind = "redmine"
    field_names = ("assignee", "author", "priority", "project", "status", "tracker", "updated_on")

    def __init__(self, location: str, log=None, *, policy: HttpPolicy | None = None,
                 sleep: Callable[[float], None] = time.sleep, max_document_bytes: int | None = None,
                 fields: Sequence[str] = ()):
        super().__init__(location, log, max_document_bytes=max_document_bytes, fields=fields)
        self.base_url, self.projects, self.wiki, self.key_env = parse_location(location)
        self._policy = policy
        self._sleep = sleep
        self._client: HttpClient | None = None
        self.admin_key = False  # known after check(): the key is a Redmine administrator's
        self._project_names: dict[str, str] = {}  # identifier -> name, as check() read them

    @classmethod
    def normalize_location(cls, location: str) -> str:
        base, projects, wiki, key_env = parse_location(location)
        query = {"projects": ",".join(projects), "wiki": "1" if wiki else "0"}
        if key_env != DEFAULT_KEY_ENV:
            query["key_env"] = key_env
        return f"{base}?{urlencode(query, safe=',')}"

    @property
    def requests(self) -> int:
        return self._client.requests if self._client else 0

    # ---- the Source interface ---------------------------------------------------------------

    def check(self) -> None:
        """The key works (a wrong key is a 401 here, a disabled REST API a 403), every project is
        visible, and with ``wiki=1`` has its wiki module."""
        user = self._get_json("/users/current.json").get("user")
        self.admin_key = isinstance(user, dict) and user.get("admin") is True
        if self.admin_key:
            self.log.warning(ADMIN_KEY_WARNING.format(env=self.key_env))
        for project in self.projects:
            params = {"include": "enabled_modules"} if self.wiki else None
            data = self._get_json(f"/projects/{project}.json", params, what=f"project {project!r}")
            self._project_names[project] = _name(data.get("project"))
            if self.wiki:
                self._require_wiki(project, data)

    def _require_wiki(self, project: str, data: dict) -> None:
        info = data.get("project")
        modules = info.get("enabled_modules") if isinstance(info, dict) else None
        if not isinstance(modules, list):  # a Redmine that does not list modules: ask the wiki
            self._wiki_index(project)
            return
        if "wiki" not in {m.get("name") for m in modules if isinstance(m, dict)}:
            raise SourceUnavailable(
                f"Redmine {self.base_url}: project {project!r} has no wiki module, but the source asks "
                "for its wiki (wiki=1): enable the module (the project's Settings -> Modules -> Wiki) "
                "or leave wiki=1 out of the source"
            )

    def fingerprint(self) -> str:
        """Newest issue ``updated_on``, issue and wiki page counts: the sensor's cursor."""
        newest, issues, pages = "", 0, 0
        for project in self.projects:
            data = self._get_json("/issues.json", self._issue_query(project, sort="updated_on:desc", limit=1))
            issues += _int(data, "total_count")
            first = data.get("issues") or [{}]
            newest = max(newest, str(first[0].get("updated_on", "") if isinstance(first[0], dict) else ""))
            if self.wiki:
                index = self._wiki_index(project)
                pages += len(index)
                newest = max([newest, *(str(p.get("updated_on", "")) for p in index)])
        return f"{newest or 'empty'}|{issues} issues|{pages} wiki pages"

    def read_changes(
        self, state: Mapping, known: Mapping[str, datetime | None], *, full: bool
    ) -> Iterator[SourceDocument | SourceSkip | SourceUnchanged]:
        cursors: dict[str, str] = dict(state.get("issues_updated_on") or {})
        seen: set[str] = set()
        for project in self.projects:
            since = None if full else cursors.get(project)
            listing = _Listing()
            for issue in self._issue_listing(project, since, listing):
                key = f"issues/{issue['id']}"
                if key in seen:  # a subproject's issue listed again under its parent
                    continue
                seen.add(key)
                updated_on = str(issue.get("updated_on") or "")
                cursors[project] = max(cursors.get(project, ""), updated_on)
                if _unchanged(known, key, updated_on):
                    yield SourceUnchanged(key)
                    continue
                record = self._issue(issue["id"], key)
                if record is not None:
                    yield record
            if full and listing.moved:
                yield SourceSkip(
                    None,
                    f"the issue listing of project {project!r} changed while it was paged "
                    f"({listing.moved}): archiving waits for the next full pass",
                )
            if self.wiki:
                yield from self._wiki(project, known)
        self.next_state = {"issues_updated_on": cursors}

    # ---- issues -----------------------------------------------------------------------------

    def _issue_query(self, project: str, **extra) -> dict:
        return {"project_id": project, "status_id": "*", **extra}

    def _issue_listing(self, project: str, since: str | None, listing: _Listing) -> Iterator[dict]:
        """Every issue of the project (by id), or those updated since ``since`` (newest first)."""
        query = self._issue_query(project, sort="id" if since is None else "updated_on:desc", limit=PAGE_SIZE)
        if since is not None:
            query["updated_on"] = f">={since}"
        offset = 0
        while True:
            data = self._get_json("/issues.json", {**query, "offset": offset}, what=f"issues of {project!r}")
            issues, total = data.get("issues"), _int(data, "total_count")
            if not isinstance(issues, list) or not all(isinstance(i, dict) and "id" in i for i in issues):
                raise SourceUnavailable(f"Redmine {self.base_url}: /issues.json has no list of issues with ids")
            listing.observe(total)
            yield from issues
            offset += len(issues)
            if not issues or offset >= total:
                return

    def _issue(self, issue_id, key: str) -> SourceDocument | SourceSkip | None:
        try:
            data = self._get_json(
                f"/issues/{issue_id}.json", {"include": "journals"}, missing_ok=True, max_bytes=self.max_document_bytes
            )
        except ResponseTooLarge as exc:
            return SourceSkip(key, too_large(exc.limit, exc.size))
        if data is None:  # deleted or made private since it was listed
            return None
        issue = data.get("issue")
        if not isinstance(issue, dict):
            raise SourceUnavailable(f"Redmine {self.base_url}: /issues/{issue_id}.json has no 'issue'")
        return SourceDocument(
            key=key,
            uri=f"{self.base_url}/issues/{issue_id}",
            raw=_canonical(issue),
            updated_at=parse_time(issue.get("updated_on")),
            extractor=_issue_text,
            fields=document_fields({
                **{name: _name(issue.get(name)) or None for name in ("project", "tracker", "status", "priority")},
                "author": _name(issue.get("author")) or None,
                "assignee": _name(issue.get("assigned_to")) or None,
                "updated_on": _text(issue.get("updated_on")),
            }),
        )

    # ---- wiki -------------------------------------------------------------------------------

    def _wiki_index(self, project: str) -> list[dict]:
        data = self._get_json(
            f"/projects/{project}/wiki/index.json", what=f"the wiki of {project!r} (wiki=1 needs its wiki module)"
        )
        pages = data.get("wiki_pages")
        if not isinstance(pages, list) or not all(isinstance(p, dict) and p.get("title") for p in pages):
            raise SourceUnavailable(f"Redmine {self.base_url}: the wiki index of {project!r} has no page titles")
        return pages

    def _wiki(
        self, project: str, known: Mapping[str, datetime | None]
    ) -> Iterator[SourceDocument | SourceSkip | SourceUnchanged]:
        for page in self._wiki_index(project):
            title = str(page["title"])
            key = f"wiki/{project}/{title}"
            if _unchanged(known, key, page.get("updated_on")):
                yield SourceUnchanged(key)
                continue
            path = f"/projects/{project}/wiki/{quote(title, safe='')}"
            try:
                data = self._get_json(f"{path}.json", missing_ok=True, max_bytes=self.max_document_bytes)
            except ResponseTooLarge as exc:
                yield SourceSkip(key, too_large(exc.limit, exc.size))
                continue
            if data is None:
                continue
            detail = data.get("wiki_page")
            if not isinstance(detail, dict):
                raise SourceUnavailable(f"Redmine {self.base_url}: {path}.json has no 'wiki_page'")
            yield SourceDocument(
                key=key,
                uri=f"{self.base_url}{path}",
                raw=_canonical(detail),
                updated_at=parse_time(detail.get("updated_on")),
                extractor=_wiki_text,
                fields=document_fields({
                    "project": self._project_name(project),
                    "author": _name(detail.get("author")) or None,
                    "updated_on": _text(detail.get("updated_on")),
                }),
            )

    def _project_name(self, project: str) -> str | None:
        """The project's name (what an issue's ``project`` field holds), read by ``check``."""
        if project not in self._project_names:
            data = self._get_json(f"/projects/{project}.json", what=f"project {project!r}")
            self._project_names[project] = _name(data.get("project"))
        return self._project_names[project] or None

    # ---- HTTP -------------------------------------------------------------------------------

    def _http(self) -> HttpClient:
        if self._client is None:
            key = os.environ.get(self.key_env, "").strip()
            if not key:
                raise SourceUnavailable(
                    f"Redmine {self.base_url}: no API key: set the environment variable {self.key_env} "
                    "(My account -> API access key in Redmine)"
                )
            self._client = HttpClient(
                self._policy or HttpPolicy.from_env(),
                name="Redmine",
                origin=self.base_url,
                secret_headers={KEY_HEADER: key},
                log=self.log,
                sleep=self._sleep,
            )
        return self._client

    def _get_json(self, path: str, params: Mapping | None = None, *, what: str | None = None,
                  missing_ok: bool = False, max_bytes: int | None = None) -> dict | None:
        client = self._http()
        result = client.get(
            f"{self.base_url}{path}", params=params, headers={"Accept": "application/json"}, max_bytes=max_bytes
        )
        if result.status == 401:
            raise SourceUnavailable(
                f"Redmine {self.base_url} rejected the API key in {self.key_env} (HTTP 401): check the key, "
                "and that the REST API is enabled (Administration -> Settings -> API)"
            )
        if result.status == 403 and path == "/users/current.json":
            # Any user the key names may read this; Redmine answers 403 (not 401) to API requests
            # when its REST API is disabled, as 5.0 does.
            raise SourceUnavailable(
                f"Redmine {self.base_url} answered HTTP 403 to /users/current.json, which every user may "
                "read: its REST API is most likely disabled. Enable it (Administration -> Settings -> API "
                "-> Enable REST web service); if it is enabled, something in front of Redmine (a proxy, "
                "a firewall rule) forbids the API"
            )
        if result.status in (403, 404):
            if missing_ok:
                return None
            hint = (
                "the key's user may not see it: make that user a member with a role that may view it "
                "(or the REST API is disabled)" if result.status == 403 else "check the identifier"
            )
            raise SourceUnavailable(
                f"Redmine {self.base_url}: {what or path} not found or not visible with this API key "
                f"(HTTP {result.status}): {hint}; nothing was archived"
            )
        if not result.ok:
            raise SourceUnavailable(f"Redmine {self.base_url}: {path} answered HTTP {result.status}")
        return _json_object(result, self.base_url, path)

    def close(self) -> None:
        if self._client is not None:
            self._client.close()


class _Listing:
    """Watches ``total_count`` across the pages of one listing."""

    def __init__(self) -> None:
        self.total: int | None = None
        self.moved: str | None = None

    def observe(self, total: int) -> None:
        if self.total is not None and total != self.total and self.moved is None:
            self.moved = f"total_count {self.total} -> {total}"
        if self.total is None:
            self.total = total


def parse_location(location: str) -> tuple[str, tuple[str, ...], bool, str]:
    """(base URL, projects, wiki, key env var) of ``https://host[/path]?projects=a,b&wiki=1``."""
    parts = urlsplit(location.strip())
    example = "redmine:https://redmine.example.com?projects=ops,infra&wiki=1"
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"invalid Redmine location {location!r}: expected a URL such as {example}")
    query = parse_qs(parts.query, keep_blank_values=True)
    unknown = set(query) - {"projects", "wiki", "key_env"}
    if unknown:
        raise ValueError(f"invalid Redmine location {location!r}: unknown parameter(s) {', '.join(sorted(unknown))}")
    projects = tuple(p.strip() for value in query.get("projects", []) for p in value.split(",") if p.strip())
    if not projects:
        raise ValueError(f"invalid Redmine location {location!r}: name the projects, e.g. {example}")
    bad = [p for p in projects if not _PROJECT.match(p)]
    if bad:
        raise ValueError(f"invalid Redmine project identifier(s) {', '.join(bad)}: use the identifier, e.g. 'ops'")
    wiki = query.get("wiki", ["0"])[-1]
    if wiki not in ("0", "1"):
        raise ValueError(f"invalid Redmine location {location!r}: wiki must be 0 or 1")
    key_env = query.get("key_env", [DEFAULT_KEY_ENV])[-1]
    if not _ENV_NAME.match(key_env):
        raise ValueError(f"invalid Redmine location {location!r}: key_env must name an environment variable")
    netloc = parts.hostname + (f":{parts.port}" if parts.port else "")
    base = f"{parts.scheme}://{netloc}{parts.path.rstrip('/')}"
    return base, tuple(dict.fromkeys(projects)), wiki == "1", key_env


def _json_object(result: HttpResult, base: str, path: str) -> dict:
    try:
        data = json.loads(result.content)
    except ValueError:
        raise SourceUnavailable(f"Redmine {base}: {path} did not answer JSON (is {base} a Redmine?)") from None
    if not isinstance(data, dict):
        raise SourceUnavailable(f"Redmine {base}: {path} did not answer a JSON object")
    return data


def _int(data: dict, key: str) -> int:
    value = data.get(key)
    if not isinstance(value, int) or value < 0:
        raise SourceUnavailable(f"Redmine answer without a valid {key!r}")
    return value


def _unchanged(known: Mapping[str, datetime | None], key: str, updated_on) -> bool:
    """The knowledge base holds this record as of this very ``updated_on``."""
    parsed = parse_time(updated_on)
    return parsed is not None and key in known and known[key] == parsed


def _canonical(record: dict) -> bytes:
    return json.dumps(record, sort_keys=True, ensure_ascii=False, separators=(",", ":")).encode()


def _load(raw: bytes) -> dict:
    try:
        return json.loads(raw)
    except ValueError as exc:
        raise UnreadableDocument(f"not valid JSON: {exc}") from None


def _name(value) -> str:
    return str(value.get("name", "")) if isinstance(value, dict) else ""


def _text(value) -> str | None:
    return value if isinstance(value, str) and value else None


def _issue_text(raw: bytes) -> Extracted:
    """Title ``#id subject``; text: a line of tracker, status, project, then the description and
    every journal note with its author and date."""
    issue = _load(raw)
    subject = str(issue.get("subject") or "").strip()
    facts = " · ".join(x for x in (_name(issue.get("tracker")), _name(issue.get("status")),
                                   _name(issue.get("project"))) if x)
    parts = [f"{subject}\n{facts}".strip(), str(issue.get("description") or "").strip()]
    for journal in issue.get("journals") or []:
        notes = str(journal.get("notes") or "").strip() if isinstance(journal, dict) else ""
        if notes:
            parts.append(f"Note by {_name(journal.get('user')) or 'someone'} on {journal.get('created_on', '')}:\n{notes}")
    return Extracted(f"#{issue.get('id')} {subject}".strip(), "\n\n".join(p for p in parts if p))


def _wiki_text(raw: bytes) -> Extracted:
    page = _load(raw)
    title = str(page.get("title") or "").replace("_", " ").strip()
    return Extracted(title, str(page.get("text") or "").strip())
