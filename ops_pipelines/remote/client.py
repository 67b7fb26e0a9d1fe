"""A Dagster webserver seen over GraphQL: launches and run status through dagster-graphql's
``DagsterGraphQLClient``, every other query as a plain POST of a document from ``queries``."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

import requests
import requests.auth
from dagster_graphql import DagsterGraphQLClient, DagsterGraphQLClientError
from gql.transport.exceptions import TransportServerError

from ops_pipelines import settings
from ops_pipelines.errors import OperatorError
from ops_pipelines.remote import queries

# Dagster's implicit job of every repository: not something an operator launches by name.
_HIDDEN_JOB_PREFIX = "__ASSET_JOB"


class RemoteError(OperatorError, RuntimeError):
    """What went wrong talking to the webserver, said so that an operator can act on it."""


@dataclass(frozen=True)
class Repository:
    location: str
    name: str
    jobs: tuple[str, ...]
    assets: tuple[str, ...]  # asset keys, path parts joined by "/"

    @property
    def selector(self) -> dict[str, str]:
        return {"repositoryLocationName": self.location, "repositoryName": self.name}


@dataclass(frozen=True)
class JobRef:
    name: str
    repository: Repository

    @property
    def selector(self) -> dict[str, str]:
        return {**self.repository.selector, "pipelineName": self.name}


class DagsterRemote:
    """The webserver at ``url`` (``DAGSTER_URL``), e.g. ``http://127.0.0.1:3000``, or the
    authenticating proxy in front of it: ``auth`` (user, password) goes as HTTP basic auth,
    ``headers`` with every request (a bearer token, an SSO proxy's service-token headers).

    ``user:password@`` in ``url`` is taken as basic auth too (``auth`` wins) and stripped from
    ``self.url``, the address every message and run link shows: no credential is ever printed."""

    def __init__(
        self,
        url: str,
        timeout: float = 60.0,
        auth: tuple[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
    ):
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            shown = url if "@" not in url else "…@" + url.rpartition("@")[2]
            raise RemoteError(f"DAGSTER_URL must look like http://host:port, not {shown!r}")
        if auth is None and (parts.username or parts.password):
            auth = (unquote(parts.username or ""), unquote(parts.password or ""))
        self.url = _without_credentials(url).rstrip("/")
        self.timeout = timeout
        self._auth = auth
        self._headers = dict(headers or {})
        # UTF-8, as htpasswd tools hash a password (requests would send a str as Latin-1).
        basic = requests.auth.HTTPBasicAuth(auth[0].encode(), auth[1].encode()) if auth else None
        self._session = requests.Session()
        self._session.auth = basic
        self._session.headers.update(self._headers)
        self._client = DagsterGraphQLClient(
            parts.hostname,
            port_number=parts.port,
            use_https=parts.scheme == "https",
            path_prefix=parts.path.rstrip("/"),
            timeout=int(timeout),
            headers=self._headers or None,
            auth=basic,
        )

    @classmethod
    def from_environment(cls, timeout: float = 60.0) -> DagsterRemote:
        """The webserver at ``DAGSTER_URL`` with the credentials of ``DAGSTER_URL_USER`` and
        ``DAGSTER_URL_PASSWORD``, ``DAGSTER_URL_TOKEN`` and ``DAGSTER_URL_HEADERS``."""
        try:
            auth = settings.dagster_url_basic_auth()
            token = settings.dagster_url_token()
            headers = settings.dagster_url_headers()
        except ValueError as exc:
            raise RemoteError(str(exc)) from None
        if token:
            if auth or any(name.lower() == "authorization" for name in headers):
                raise RemoteError(
                    "DAGSTER_URL_TOKEN and DAGSTER_URL_USER/DAGSTER_URL_PASSWORD (or an Authorization header "
                    "in DAGSTER_URL_HEADERS) both set the Authorization header: set one of them"
                )
            headers = {**headers, "Authorization": f"Bearer {token}"}
        return cls(settings.dagster_url(), timeout=timeout, auth=auth, headers=headers)

    def _refused(self, status: int) -> RemoteError:
        """The proxy (or the webserver) refused the request: which credentials to set, none repeated."""
        if self._auth:
            given = f"the credentials of user {self._auth[0]!r}"
        elif self._headers:
            given = "the credentials of DAGSTER_URL_TOKEN / DAGSTER_URL_HEADERS"
        else:
            given = "a request without credentials"
        return RemoteError(
            f"the webserver at {self.url} refused {given} (HTTP {status}): set DAGSTER_URL_USER and "
            "DAGSTER_URL_PASSWORD to a user of its proxy (or DAGSTER_URL_TOKEN / DAGSTER_URL_HEADERS for "
            "an SSO proxy), see docs/deployment.md#access"
        )

    def run_url(self, run_id: str) -> str:
        return f"{self.url}/runs/{run_id}"

    def backfill_url(self, backfill_id: str) -> str:
        return f"{self.url}/runs/b/{backfill_id}"

    def query(self, document: str, variables: Mapping[str, Any] | None = None) -> dict:
        """The ``data`` of one GraphQL request; transport and GraphQL errors as ``RemoteError``."""
        try:
            response = self._session.post(
                f"{self.url}/graphql", json={"query": document, "variables": dict(variables or {})}, timeout=self.timeout
            )
        except requests.ConnectionError as exc:
            raise self._unreachable() from exc
        except requests.Timeout as exc:
            raise RemoteError(f"the Dagster webserver at {self.url} did not answer within {self.timeout:.0f} s") from exc
        if response.status_code in (401, 403):
            raise self._refused(response.status_code)
        try:
            body = response.json()
        except ValueError:
            raise RemoteError(
                f"{self.url}/graphql answered HTTP {response.status_code} without JSON: "
                "is DAGSTER_URL the address of a Dagster webserver?"
            ) from None
        if body.get("errors"):
            raise RemoteError("GraphQL error: " + "; ".join(e.get("message", str(e)) for e in body["errors"]))
        if response.status_code != 200 or "data" not in body:
            raise RemoteError(f"{self.url}/graphql answered HTTP {response.status_code}: {response.text[:300]}")
        return body["data"]

    def _unreachable(self) -> RemoteError:
        return RemoteError(
            f"no Dagster webserver answers at {self.url}: start one with `make ui` "
            "(http://127.0.0.1:3000), or set DAGSTER_URL to the address of yours"
        )

    def repositories(self) -> list[Repository]:
        data = self.query(queries.REPOSITORIES)
        found = data["repositoriesOrError"]
        if found["__typename"] != "RepositoryConnection":
            raise RemoteError(f"the webserver at {self.url} cannot list its code: {found.get('message')}")
        broken = [
            f"code location {entry['name']} failed to load: {_first_line(entry['locationOrLoadError']['message'])}"
            for entry in data["workspaceOrError"].get("locationEntries", [])
            if (entry["locationOrLoadError"] or {}).get("__typename") == "PythonError"
        ]
        repositories = [
            Repository(
                location=node["location"]["name"],
                name=node["name"],
                jobs=tuple(j["name"] for j in node["jobs"] if not j["name"].startswith(_HIDDEN_JOB_PREFIX)),
                assets=tuple("/".join(a["assetKey"]["path"]) for a in node["assetNodes"]),
            )
            for node in found["nodes"]
        ]
        if not repositories and broken:
            raise RemoteError("; ".join(broken))
        return repositories

    def job(self, name: str, repositories: list[Repository] | None = None) -> JobRef:
        repositories = self.repositories() if repositories is None else repositories
        matches = [JobRef(name, r) for r in repositories if name in r.jobs]
        if not matches:
            known = sorted({j for r in repositories for j in r.jobs})
            raise RemoteError(f"unknown job {name!r} at {self.url}; jobs: {', '.join(known) or 'none'}")
        if len(matches) > 1:
            where = ", ".join(f"{m.repository.location}/{m.repository.name}" for m in matches)
            raise RemoteError(f"job {name!r} is in several code locations ({where}); this command needs one")
        return matches[0]

    def partition_tags(self, job: JobRef, partition: str) -> dict[str, str]:
        """The tags Dagster gives a run of ``job`` for ``partition`` (dagster/partition and, for a
        multi-partition, one dagster/partition/<dimension> per dimension), as the UI's launchpad
        sets them."""
        found = self.query(queries.PARTITION_TAGS, {"job": job.selector, "partition": partition})["pipelineOrError"]
        if found["__typename"] != "Pipeline":
            raise RemoteError(f"job {job.name}: {found.get('message')}")
        tags = found["partition"]["tagsOrError"]
        if tags["__typename"] != "PartitionTags":
            raise RemoteError(f"the tags of partition {partition} of {job.name}: {_first_line(tags.get('message', ''))}")
        return {t["key"]: t["value"] for t in tags["results"]}

    def launch(self, job: JobRef, run_config: Mapping[str, Any], tags: Mapping[str, str]) -> str:
        """Submit a run of ``job`` (queued by the instance's run coordinator); its run id."""
        try:
            return self._client.submit_job_execution(
                job.name,
                repository_location_name=job.repository.location,
                repository_name=job.repository.name,
                run_config=dict(run_config),
                tags=dict(tags),
            )
        except DagsterGraphQLClientError as exc:
            raise self._client_error(f"launching {job.name}", exc) from exc

    def run_status(self, run_id: str) -> str:
        try:
            return self._client.get_run_status(run_id).value
        except DagsterGraphQLClientError as exc:
            raise self._client_error(f"the status of run {run_id}", exc) from exc

    def _client_error(self, what: str, exc: DagsterGraphQLClientError) -> RemoteError:
        if isinstance(exc.__cause__, requests.ConnectionError):
            return self._unreachable()
        if isinstance(exc.__cause__, TransportServerError) and exc.__cause__.code in (401, 403):
            return self._refused(exc.__cause__.code)
        kind, detail = exc.args[0], exc.args[1] if len(exc.args) > 1 else None
        if isinstance(detail, list):  # config validation: one entry per error
            detail = "; ".join(e.get("message", str(e)) for e in detail)
        if kind == "UnauthorizedError":  # a read-only webserver (dagster-webserver --read-only)
            return RemoteError(
                f"{what} failed: the webserver at {self.url} does not allow it ({detail or kind}): is it the "
                "read-only one? Point DAGSTER_URL at the writable webserver's proxy"
            )
        return RemoteError(f"{what} failed ({kind}): {detail}" if detail else f"{what} failed: {kind}")


def _without_credentials(url: str) -> str:
    """``url`` without the ``user:password@`` of its network location."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else ""
