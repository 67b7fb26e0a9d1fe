"""The HTTP client every remote connector uses: outbound policy, timeouts, retries.

- **Allowed hosts.** Every URL (redirects included) must name a host listed in
  ``OPS_SOURCE_ALLOWED_HOSTS`` (exact names or ``*.example.com``); nothing is listed by default,
  loopback included, so a source can only reach what the operator named.
- **HTTPS** is required, except for loopback hosts (``localhost``, ``127.0.0.0/8``, ``::1``).
- **Timeouts** on connect and on every read.
- **Retries** of 429, 5xx, timeouts and dropped connections, with exponential backoff and jitter
  (``tenacity``); a ``Retry-After`` header (seconds or an HTTP date) is honoured, capped by the
  same maximum wait. When the attempts run out the source is ``SourceUnavailable``.
- **Secrets** (an API key header) are sent only to the origin they were given for, never put in a
  URL, and scrubbed from every message this module makes.
"""

from __future__ import annotations

import email.utils
import ipaddress
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING
from urllib.parse import urljoin, urlsplit

if TYPE_CHECKING:  # requests and tenacity are imported when a client is made: a folder sync needs neither
    import requests
    from tenacity import RetryCallState

from ops_pipelines import settings
from ops_pipelines.sources.base import SourceUnavailable

_log = logging.getLogger(__name__)

RETRY_STATUSES = frozenset({429}) | frozenset(range(500, 600))
MAX_REDIRECTS = 5
USER_AGENT = "ops-pipelines (knowledge-base sync)"


class SourceNotAllowed(SourceUnavailable):
    """The outbound policy refuses the URL: no request was made."""


class ResponseTooLarge(SourceUnavailable):
    """A response body was larger than allowed; the rest was not read. ``size`` is its
    Content-Length when the server gave one."""

    def __init__(self, message: str, limit: int, size: int | None = None):
        super().__init__(message)
        self.limit = limit
        self.size = size


@dataclass(frozen=True)
class HttpPolicy:
    allowed_hosts: tuple[str, ...] = ()
    connect_timeout: float = 5.0
    read_timeout: float = 30.0
    attempts: int = 4
    backoff_initial: float = 0.5
    backoff_max: float = 30.0  # also the cap on a Retry-After wait
    jitter: float = 0.5
    max_bytes: int = 20 * 1024 * 1024

    @classmethod
    def from_env(cls) -> HttpPolicy:
        return cls(
            allowed_hosts=settings.source_allowed_hosts(),
            connect_timeout=settings.source_float("OPS_SOURCE_CONNECT_TIMEOUT_S", 5.0),
            read_timeout=settings.source_float("OPS_SOURCE_READ_TIMEOUT_S", 30.0),
            attempts=settings.source_int("OPS_SOURCE_RETRIES", 3, minimum=0) + 1,
            backoff_max=settings.source_float("OPS_SOURCE_BACKOFF_MAX_S", 30.0),
        )


def is_loopback(host: str) -> bool:
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def host_allowed(host: str, allowed: Iterable[str]) -> bool:
    for entry in allowed:
        if entry.startswith("*.") and host.endswith(entry[1:]) and host != entry[2:]:
            return True
        if host == entry:
            return True
    return False


def check_url(url: str, policy: HttpPolicy) -> None:
    """Raise ``SourceNotAllowed`` unless the policy lets a request go to ``url``."""
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    if parts.scheme not in ("http", "https") or not host:
        raise SourceNotAllowed(f"{_display(url)} is not an http(s) URL with a host")
    if parts.username or parts.password:
        raise SourceNotAllowed(
            f"{parts.scheme}://{host}/…: credentials in a URL are refused (they would end up in logs); "
            "give an API key through an environment variable"
        )
    if not host_allowed(host, policy.allowed_hosts):
        listed = ", ".join(policy.allowed_hosts) or "nothing"
        raise SourceNotAllowed(
            f"host {host!r} is not allowed: OPS_SOURCE_ALLOWED_HOSTS lists {listed}. "
            f"Add {host} to it to let sources read from it"
        )
    if parts.scheme != "https" and not is_loopback(host):
        raise SourceNotAllowed(
            f"{_display(url)}: plain HTTP is refused for {host} (only loopback hosts may use http://); use https://"
        )


@dataclass(frozen=True)
class HttpResult:
    url: str
    status: int
    headers: Mapping[str, str]
    content: bytes

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


class _Transient(Exception):
    """A failure worth another attempt: 429, 5xx, a timeout, a dropped connection."""

    def __init__(self, reason: str, retry_after: float | None = None):
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after


class HttpClient:
    """GETs under an ``HttpPolicy``. ``secret_headers`` go only to ``origin`` (scheme, host, port)."""

    def __init__(
        self,
        policy: HttpPolicy,
        *,
        name: str,
        origin: str | None = None,
        secret_headers: Mapping[str, str] | None = None,
        log: logging.Logger | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ):
        self.policy = policy
        self.name = name
        self._origin = _origin(origin) if origin else None
        self._secret_headers = dict(secret_headers or {})
        # a header's value, and its credential alone ("Bearer <key>" -> "<key>")
        self._secrets = [s for v in self._secret_headers.values() if v for s in {v, v.split(" ", 1)[-1]}]
        self.log = log or _log
        self._sleep = sleep
        import requests

        self._session = requests.Session()
        self._session.headers["User-Agent"] = USER_AGENT
        self.requests = 0  # requests sent, retries and redirects included

    def close(self) -> None:
        self._session.close()

    def get(self, url: str, *, params: Mapping[str, object] | None = None, headers: Mapping[str, str] | None = None,
            method: str = "GET", max_bytes: int | None = None, json: object = None) -> HttpResult:
        """The response (any status but 429/5xx), after retries; ``SourceUnavailable`` if none came.
        A body over ``max_bytes`` (default: the policy's) raises ``ResponseTooLarge`` unread.
        ``json`` is sent as the request's body (``method="POST"``)."""
        from tenacity import Retrying, retry_if_exception_type, stop_after_attempt

        check_url(url, self.policy)
        retrying = Retrying(
            stop=stop_after_attempt(self.policy.attempts),
            wait=self._wait,
            retry=retry_if_exception_type(_Transient),
            sleep=self._sleep,
            before_sleep=lambda state: self._before_sleep(method, url, state),
            reraise=True,
        )
        try:
            return retrying(self._attempt, method, url, params, headers or {}, max_bytes or self.policy.max_bytes, json)
        except _Transient as exc:
            raise SourceUnavailable(
                self.redact(
                    f"{self.name}: {method} {_display(url)} failed after {self.policy.attempts} attempt(s): {exc.reason}"
                )
            ) from None

    def redact(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "[redacted]")
        return text

    # ---- one attempt ------------------------------------------------------------------------

    def _attempt(self, method: str, url: str, params, headers: Mapping[str, str], max_bytes: int, body) -> HttpResult:
        import requests

        current, query = url, params
        for _hop in range(MAX_REDIRECTS + 1):
            check_url(current, self.policy)
            sent = dict(headers)
            if self._origin is not None and _origin(current) == self._origin:
                sent.update(self._secret_headers)
            try:
                response = self._session.request(
                    method,
                    current,
                    params=query,
                    headers=sent,
                    json=body,
                    timeout=(self.policy.connect_timeout, self.policy.read_timeout),
                    allow_redirects=False,
                    stream=True,
                )
                self.requests += 1
                with response:
                    if response.is_redirect and "location" in response.headers:
                        current, query = urljoin(response.url, response.headers["location"]), None
                        continue
                    if response.status_code in RETRY_STATUSES:
                        raise _Transient(
                            f"HTTP {response.status_code}", _retry_after(response.headers.get("retry-after"))
                        )
                    content = b"" if method == "HEAD" else self._body(response, max_bytes)
                    return HttpResult(response.url, response.status_code, dict(response.headers), content)
            except requests.Timeout as exc:
                raise _Transient(f"timed out ({_kind(exc)})") from None
            except (requests.ConnectionError, requests.exceptions.ChunkedEncodingError) as exc:
                raise _Transient(f"connection failed ({_kind(exc)})") from None
        raise SourceUnavailable(f"{self.name}: {_display(url)} redirects more than {MAX_REDIRECTS} times")

    def _body(self, response: requests.Response, max_bytes: int) -> bytes:
        declared = response.headers.get("Content-Length", "")
        size = int(declared) if declared.isdigit() else None
        chunks, read = [], 0
        if size is None or size <= max_bytes:  # else not one byte is downloaded
            for chunk in response.iter_content(65536):
                read += len(chunk)
                if read > max_bytes:
                    break
                chunks.append(chunk)
        if read > max_bytes or (size is not None and size > max_bytes):
            raise ResponseTooLarge(
                f"{_display(response.url)}: response larger than {max_bytes} bytes, not read", max_bytes, size
            )
        return b"".join(chunks)

    # ---- waits ------------------------------------------------------------------------------

    def _wait(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, _Transient) and exc.retry_after is not None:
            return min(exc.retry_after, self.policy.backoff_max)
        from tenacity import wait_exponential_jitter

        backoff = wait_exponential_jitter(
            initial=self.policy.backoff_initial, max=self.policy.backoff_max, jitter=self.policy.jitter
        )
        return backoff(state)

    def _before_sleep(self, method: str, url: str, state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        reason = exc.reason if isinstance(exc, _Transient) else repr(exc)
        wait = state.next_action.sleep if state.next_action else 0.0
        self.log.warning(
            self.redact(
                f"{self.name}: {method} {_display(url)}: {reason}; attempt {state.attempt_number + 1}/"
                f"{self.policy.attempts} in {wait:.2f} s"
            )
        )


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    port = parts.port or {"http": 80, "https": 443}.get(parts.scheme)
    return parts.scheme, (parts.hostname or "").lower(), port


def http_date(value: str | None) -> datetime | None:
    """An HTTP date header (``Last-Modified``, ``Retry-After``) in UTC; None if absent or invalid."""
    if not value:
        return None
    try:
        when = email.utils.parsedate_to_datetime(value.strip())
    except (TypeError, ValueError):
        return None
    return (when if when.tzinfo else when.replace(tzinfo=UTC)).astimezone(UTC)


def _retry_after(value: str | None) -> float | None:
    """Seconds to wait from a Retry-After header: a number of seconds or an HTTP date."""
    if not value:
        return None
    if value.strip().isdigit():
        return float(value.strip())
    when = http_date(value)
    return None if when is None else max(0.0, (when - datetime.now(UTC)).total_seconds())


def _display(url: str) -> str:
    """The URL without credentials (and without a query, which can be long)."""
    parts = urlsplit(url)
    netloc = parts.hostname or ""
    if parts.port:
        netloc = f"{netloc}:{parts.port}"
    return f"{parts.scheme}://{netloc}{parts.path}"


_TRANSPORT_MARKERS = (
    "Connection refused",
    "Connection reset",
    "Remote end closed connection",
    "Connection aborted",
    "Name or service not known",
    "Read timed out",
    "Connect timeout",
)


def _kind(exc: Exception) -> str:
    """A short description of a transport error; requests' own message repeats the URL and pool."""
    text = str(exc)
    marker = next((m for m in _TRANSPORT_MARKERS if m in text), None)
    return f"{type(exc).__name__}: {marker}" if marker else type(exc).__name__
