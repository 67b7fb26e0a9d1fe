"""Run-failure alerts: the failure record (container, job, run, step, error), secrets redacted from
every string of it, and the JSON post to an optional webhook with retries.

The Dagster side (``defs/alerts``) reads the failed run and its step failures and hands plain
values here. A webhook that stays down never raises: the caller gets a ``Delivery`` saying so,
worded without the webhook URL's secrets.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from urllib.parse import urlsplit

import httpx

# Errors can be whole tracebacks: an alert carries the start, which names the problem.
MAX_ERROR_CHARS = 2000
MASK = "***"
# Shorter values are not searched for: they would match ordinary words ("ops", "minio").
MIN_SECRET_CHARS = 6

# Names of environment variables whose values are secrets: *_KEY, anything with SECRET, PASSWORD,
# PASSWD, TOKEN or CREDENTIAL in it, and webhook URLs (chat webhooks carry their token in the path).
_SECRET_NAME = re.compile(r"(_KEY$|SECRET|PASSWORD|PASSWD|TOKEN|CREDENTIAL|WEBHOOK_URL$)", re.IGNORECASE)
# scheme://user:PASSWORD@host
_URL_PASSWORD = re.compile(r"(\b[a-zA-Z][a-zA-Z0-9+.-]*://[^\s:/@]*:)([^\s@/]+)@")
# ?X-Amz-Signature=...&token=... (presigned URLs, API keys in query strings)
_QUERY_SECRET = re.compile(
    r"([?&][^=&\s#]*(?:signature|token|secret|password|credential|key|sig)[^=&\s#]*=)[^&\s#'\"]+", re.IGNORECASE
)
# Authorization headers quoted in an error
_AUTH_HEADER = re.compile(r"\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]{8,}", re.IGNORECASE)


def secret_name(name: str) -> bool:
    """Whether an environment variable of this name holds a secret."""
    return bool(_SECRET_NAME.search(name))


class Redactor:
    """Removes secrets from text: the values of secret-looking environment variables, passwords of
    URLs found in them, and any URL password, query-string credential or bearer token."""

    def __init__(self, secrets: Iterable[str] = ()):
        # Longest first, so a secret that contains another is masked whole.
        self._secrets = sorted({s for s in secrets if s and len(s) >= MIN_SECRET_CHARS}, key=len, reverse=True)

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None, extra: Iterable[str | None] = ()) -> Redactor:
        environ = os.environ if environ is None else environ
        secrets = [value for name, value in environ.items() if secret_name(name)]
        secrets += [password for value in environ.values() if (password := _url_password(value))]
        secrets += [value for value in extra if value]
        secrets += [password for value in extra if value and (password := _url_password(value))]
        return cls(secrets)

    def __call__(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, MASK)
        text = _URL_PASSWORD.sub(rf"\1{MASK}@", text)
        text = _QUERY_SECRET.sub(rf"\1{MASK}", text)
        return _AUTH_HEADER.sub(rf"\1 {MASK}", text)


def _url_password(value: str) -> str | None:
    if "://" not in value:
        return None
    try:
        return urlsplit(value.strip()).password
    except ValueError:
        return None


def safe_url(url: str) -> str:
    """``scheme://host[:port]`` of a URL: what may be logged of a webhook (its path, query and user
    part can hold the token)."""
    try:
        parts = urlsplit(url.strip())
        host = parts.hostname or "?"
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "<unparseable URL>"
    return f"{parts.scheme or '?'}://{host}{port}"


def truncate(text: str, limit: int = MAX_ERROR_CHARS) -> str:
    if len(text) <= limit:
        return text
    return f"{text[:limit]}… [{len(text) - limit} more characters]"


@dataclass(frozen=True)
class StepFailure:
    step: str
    error: str


@dataclass(frozen=True)
class FailureRecord:
    """What is known of a failed run, redacted and truncated: safe to store, log and send."""

    container: str | None
    job: str
    run_id: str
    step: str | None
    error: str
    run_url: str | None = None

    def summary(self) -> str:
        where = f" for container {self.container}" if self.container else ""
        at = f" at step {self.step}" if self.step else ""
        first_line = next((line for line in self.error.splitlines() if line.strip()), "")
        return f"{self.job} failed{where}{at}: {first_line}"

    def payload(self) -> dict:
        """The webhook's JSON body; ``text`` is what chat webhooks (Slack, Mattermost, Teams) show."""
        text = f"ops-pipelines: {self.summary()}" + (f" ({self.run_url})" if self.run_url else "")
        return {"event": "run_failure", "text": text, **asdict(self)}


# Where a run names its container: the tag every request of ours carries, then the partition tags
# Dagster sets (the container dimension of a refresh partition, or a container partition).
CONTAINER_TAGS = ("ops/container", "dagster/partition/container", "dagster/partition")
# Jobs that are not partitioned take the container in their config (rollback_job, import_job).
CONTAINER_CONFIG_KEYS = ("container", "slug")


def run_container(tags: Mapping[str, str], run_config: Mapping | None = None) -> str | None:
    for tag in CONTAINER_TAGS:
        if tags.get(tag):
            return tags[tag]
    for op_config in ((run_config or {}).get("ops") or {}).values():
        config = op_config.get("config") if isinstance(op_config, Mapping) else None
        for key in CONTAINER_CONFIG_KEYS:
            if isinstance(config, Mapping) and isinstance(config.get(key), str) and config[key]:
                return config[key]
    return None


def job_label(job_name: str, asset_keys: Sequence[str] = ()) -> str:
    """What a run ran: its job, or for a run of one of Dagster's implicit asset jobs (``__ASSET_JOB``:
    assets materialized from the UI or by a sensor; ``__ephemeral_asset_job__``: ``materialize``)
    the assets it materialized."""
    if job_name.startswith("__") and "asset_job" in job_name.lower() and asset_keys:
        return "materialize " + ", ".join(asset_keys)
    return job_name


def failure_record(
    *,
    job: str,
    run_id: str,
    tags: Mapping[str, str],
    run_config: Mapping | None,
    steps: Sequence[StepFailure],
    run_message: str,
    redact: Redactor,
    ui_url: str | None = None,
) -> FailureRecord:
    """The record of one failed run: the failed steps' keys, the first one's error (or the run's own
    message when no step failed, e.g. a run that could not start). Redacted before truncating, so
    a cut never leaves the start of a secret behind."""
    container = run_container(tags, run_config)
    error = steps[0].error if steps else run_message
    return FailureRecord(
        container=redact(container) if container else None,
        job=redact(job),
        run_id=run_id,
        step=redact(", ".join(s.step for s in steps)) if steps else None,
        error=truncate(redact(error.strip()) or "no error message"),
        run_url=f"{ui_url.rstrip('/')}/runs/{run_id}" if ui_url else None,
    )


# --- the webhook -------------------------------------------------------------------------------

ATTEMPTS = 4
BACKOFF_SECONDS = 0.5
TIMEOUT_SECONDS = 3.0
# A failure sensor handles up to five runs per tick, and Dagster gives a tick 60 s: each post,
# retries included, stays within this budget.
DEADLINE_SECONDS = 8.0


@dataclass(frozen=True)
class Delivery:
    delivered: bool
    attempts: int
    detail: str


def _retryable(status: int) -> bool:
    return status == 429 or status >= 500


def _retry_after(response: httpx.Response) -> float:
    try:
        return max(0.0, float(response.headers.get("retry-after", 0)))
    except ValueError:  # an HTTP date: fall back to the backoff
        return 0.0


def _without_url(text: str, url: str) -> str:
    """``text`` with the URL, and its path and query wherever they appear alone, left out."""
    parts = urlsplit(url.strip())
    text = text.replace(url, safe_url(url))
    for secret in (parts.path, parts.query):
        if len(secret) > 1:
            text = text.replace(secret, MASK)
    return text


def post_webhook(
    url: str,
    payload: Mapping,
    *,
    attempts: int = ATTEMPTS,
    backoff_seconds: float = BACKOFF_SECONDS,
    timeout_seconds: float = TIMEOUT_SECONDS,
    deadline_seconds: float = DEADLINE_SECONDS,
    sleep: Callable[[float], None] = time.sleep,
) -> Delivery:
    """POST ``payload`` as JSON. Connection errors, timeouts, 5xx and 429 are retried with
    exponential backoff (0.5 s, 1 s, 2 s; longer if the server sends Retry-After) while the deadline
    allows; another 4xx is not retried. Never raises; the detail never contains the URL."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return Delivery(False, 0, "OPS_ALERT_WEBHOOK_URL is not an http(s) URL: fix it to receive alerts")
    started = time.monotonic()
    last = ""
    attempt = 0
    with httpx.Client(follow_redirects=False) as client:
        for attempt in range(1, attempts + 1):
            remaining = deadline_seconds - (time.monotonic() - started)
            retry_after = 0.0
            try:
                response = client.post(url, json=dict(payload), timeout=max(0.1, min(timeout_seconds, remaining)))
            except httpx.HTTPError as exc:
                last = _without_url(f"{type(exc).__name__}: {exc}", url)
            else:
                if response.is_success:
                    return Delivery(True, attempt, f"HTTP {response.status_code}")
                last = f"HTTP {response.status_code}"
                if not _retryable(response.status_code):
                    return Delivery(False, attempt, f"{last}: the webhook refused the alert (not retried)")
                retry_after = _retry_after(response)
            delay = max(backoff_seconds * 2 ** (attempt - 1), retry_after)
            if attempt == attempts or time.monotonic() - started + delay >= deadline_seconds:
                break
            sleep(delay)
    elapsed = time.monotonic() - started
    return Delivery(False, attempt, f"gave up after {attempt} attempt(s) in {elapsed:.1f} s: {last}")
