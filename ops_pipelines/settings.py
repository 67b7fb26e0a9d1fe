"""Where things live, read from environment variables.

The embedded default keeps everything under ``DAGSTER_HOME`` (metadata DB, Qdrant Edge
files, object store folder); production points each piece at a server with its own variable.
"""

from __future__ import annotations

import json
import math
import os
import re
from pathlib import Path


def dagster_home() -> Path:
    """``DAGSTER_HOME``, or ``./.dagster_home`` (created) when unset, as the Makefile does."""
    home = Path(os.environ.get("DAGSTER_HOME") or Path.cwd() / ".dagster_home").resolve()
    home.mkdir(parents=True, exist_ok=True)
    return home


def dagster_url() -> str:
    """``DAGSTER_URL``: the webserver ``ops-pipelines trigger`` and ``backfill`` talk GraphQL to
    (in production the authenticating proxy in front of it, docs/deployment.md#access)."""
    return os.environ.get("DAGSTER_URL") or "http://127.0.0.1:3000"


def dagster_url_basic_auth() -> tuple[str, str] | None:
    """``DAGSTER_URL_USER`` and ``DAGSTER_URL_PASSWORD``: the HTTP basic-auth credentials sent to
    ``DAGSTER_URL`` (the proxy's users). Both or neither; the password is never printed."""
    user = os.environ.get("DAGSTER_URL_USER") or ""
    password = os.environ.get("DAGSTER_URL_PASSWORD") or ""
    if bool(user) != bool(password):
        given, missing = ("DAGSTER_URL_USER", "DAGSTER_URL_PASSWORD") if user else ("DAGSTER_URL_PASSWORD", "DAGSTER_URL_USER")
        raise ValueError(f"{given} is set but {missing} is not: set both, or neither")
    return (user, password) if user else None


def dagster_url_token() -> str | None:
    """``DAGSTER_URL_TOKEN``: a bearer token sent to ``DAGSTER_URL`` as ``Authorization: Bearer``
    (an OIDC access token for an SSO proxy such as oauth2-proxy)."""
    return (os.environ.get("DAGSTER_URL_TOKEN") or "").strip() or None


def dagster_url_headers() -> dict[str, str]:
    """``DAGSTER_URL_HEADERS``: more HTTP headers sent to ``DAGSTER_URL``, as a JSON object of
    names to values (e.g. the service-token headers an identity-aware proxy asks for). The error
    for a malformed value never repeats it: it holds secrets."""
    raw = (os.environ.get("DAGSTER_URL_HEADERS") or "").strip()
    if not raw:
        return {}
    try:
        value = json.loads(raw)
    except ValueError:
        value = None
    if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise ValueError(
            'DAGSTER_URL_HEADERS is not a JSON object of header names to strings, e.g. {"X-Api-Key": "..."}'
        )
    bad = [k for k, v in value.items() if not _HEADER_NAME.fullmatch(k) or v != v.strip() or _HEADER_BREAK.search(v)]
    if bad:  # names only: the values are secrets
        raise ValueError(
            "DAGSTER_URL_HEADERS: not a valid header name, or a value with line breaks or edge spaces: "
            + ", ".join(map(repr, bad))
        )
    return value


_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_HEADER_BREAK = re.compile(r"[\r\n\x00]")


def kb_url() -> str:
    return os.environ.get("OPS_KB_URL") or f"sqlite:///{dagster_home() / 'kb.sqlite'}"


def qdrant_url() -> str | None:
    return os.environ.get("OPS_QDRANT_URL") or None


def qdrant_api_key() -> str | None:
    return os.environ.get("OPS_QDRANT_API_KEY") or None


def qdrant_path() -> str:
    return os.environ.get("OPS_QDRANT_PATH") or str(dagster_home() / "qdrant")


def objects_dir() -> str:
    return os.environ.get("OPS_OBJECTS_DIR") or str(dagster_home() / "objects")


def s3_endpoint() -> str | None:
    """``OPS_S3_ENDPOINT`` (``host:port``); unset means the folder object store."""
    return os.environ.get("OPS_S3_ENDPOINT") or None


def s3_bucket() -> str:
    return os.environ.get("OPS_S3_BUCKET") or "ops-pipelines"


def s3_access_key() -> str | None:
    return os.environ.get("OPS_S3_ACCESS_KEY") or None


def s3_secret_key() -> str | None:
    return os.environ.get("OPS_S3_SECRET_KEY") or None


def s3_secure() -> bool:
    """``OPS_S3_SECURE``: HTTPS unless explicitly turned off."""
    return _flag("OPS_S3_SECURE", default=True)


def s3_region() -> str | None:
    return os.environ.get("OPS_S3_REGION") or None


def source_allowed_hosts() -> tuple[str, ...]:
    """``OPS_SOURCE_ALLOWED_HOSTS``: the hosts remote sources may read from (comma list of host
    names or IPs, ``*.example.com`` for subdomains). Unset: none."""
    raw = os.environ.get("OPS_SOURCE_ALLOWED_HOSTS", "")
    return tuple(h.strip().lower().strip("[]") for h in raw.split(",") if h.strip())


def _env_float(name: str, default: float, valid, expected: str) -> float:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = math.nan  # valid() of NaN is false
    if not valid(value):
        raise ValueError(f"{name}={raw!r} is not {expected}")
    return value


def source_float(name: str, default: float) -> float:
    """A positive number of seconds (or hours) from ``name``."""
    return _env_float(name, default, lambda v: v > 0, "a positive number")


def source_int(name: str, default: int, minimum: int = 1) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    if not raw.isdigit() or int(raw) < minimum:
        raise ValueError(f"{name}={raw!r} is not a whole number >= {minimum}")
    return int(raw)


DEFAULT_MAX_DOCUMENT_BYTES = 5 * 1024 * 1024


def source_max_document_bytes() -> int:
    """``OPS_SOURCE_MAX_DOCUMENT_BYTES``: a source record (a file, a JSONL line, a Redmine issue, a
    page) larger than this is skipped and named, not read (default 5 MiB: one 50 MB text file
    would be ~90,000 chunks and a gigabyte of memory)."""
    return source_int("OPS_SOURCE_MAX_DOCUMENT_BYTES", DEFAULT_MAX_DOCUMENT_BYTES)


_FLAGS = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}


def _flag(name: str, default: bool) -> bool:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        return _FLAGS[raw.lower()]
    except KeyError:
        raise ValueError(f"{name}={raw!r} is not a boolean: use true/false, 1/0 or yes/no") from None


def kb_backend() -> str:
    """``postgres`` or ``sqlite``: the knowledge base's backend as ``OPS_KB_URL`` names it (the
    asset kinds the UI shows), without creating ``DAGSTER_HOME`` as ``kb_url()`` would."""
    return "postgres" if os.environ.get("OPS_KB_URL", "").startswith("postgres") else "sqlite"


def dagster_ui_url() -> str | None:
    """``OPS_DAGSTER_UI_URL``: the webserver's address as operators reach it, for links in alerts."""
    return (os.environ.get("OPS_DAGSTER_UI_URL") or "").rstrip("/") or None


DEFAULT_SYNC_MAX_AGE_HOURS = 24.0


def sync_max_age_hours() -> float:
    """``OPS_SYNC_MAX_AGE_HOURS``: a container not synced for longer is stale (default 24: four
    runs of the default 6-hourly ``sync_schedule``)."""
    raw = os.environ.get("OPS_SYNC_MAX_AGE_HOURS", "").strip()
    if not raw:
        return DEFAULT_SYNC_MAX_AGE_HOURS
    try:
        hours = float(raw)
    except ValueError:
        hours = float("nan")
    if not 0 < hours < float("inf"):
        raise ValueError(f"OPS_SYNC_MAX_AGE_HOURS={raw!r} is not a positive number of hours (e.g. 24 or 1.5)")
    return hours


DEFAULT_LEASE_WAIT_SECONDS = 120.0
DEFAULT_LEASE_TTL_SECONDS = 60.0


def lease_wait_seconds() -> float:
    """``OPS_LEASE_WAIT_SECONDS``: how long an operation waits for a container's lease before it
    fails with ``VectorStoreBusy`` (default 120; 0 fails at once)."""
    raw = os.environ.get("OPS_LEASE_WAIT_SECONDS", "").strip()
    if not raw:
        return DEFAULT_LEASE_WAIT_SECONDS
    try:
        seconds = float(raw)
    except ValueError:
        seconds = float("nan")
    if not 0 <= seconds < float("inf"):
        raise ValueError(f"OPS_LEASE_WAIT_SECONDS={raw!r} is not a number of seconds >= 0")
    return seconds


def lease_ttl_seconds() -> float:
    """``OPS_LEASE_TTL_SECONDS``: a lease not renewed for this long (its holder was killed, or its
    host lost) may be taken over; a holder renews every third of it (default 60)."""
    return source_float("OPS_LEASE_TTL_SECONDS", DEFAULT_LEASE_TTL_SECONDS)


def _fraction(name: str, default: float) -> float:
    return _env_float(name, default, lambda v: 0 <= v <= 1, "a number from 0 to 1")


def quality_tolerance() -> float:
    """``OPS_QUALITY_TOLERANCE``: how much lower (absolute) a shadow generation's recall@10, MRR@10
    or nDCG@10 may be than the live one's before the retrieval-quality check fails (0.02)."""
    return _fraction("OPS_QUALITY_TOLERANCE", 0.02)


def quality_floor() -> float:
    """``OPS_QUALITY_FLOOR``: the recall@10 a generation built with nothing live to compare with
    must reach (0: none)."""
    return _fraction("OPS_QUALITY_FLOOR", 0.0)


def metrics_run_window_seconds() -> float:
    """``OPS_METRICS_RUN_WINDOW_S``: the window over which the metrics endpoint counts recent runs,
    failed steps and sync retries (default 3600)."""
    return source_float("OPS_METRICS_RUN_WINDOW_S", 3600.0)


def metrics_stuck_run_after_seconds() -> float:
    """``OPS_METRICS_STUCK_RUN_AFTER_S``: a run still running this long after it started counts as
    stuck on the metrics endpoint (default 3600)."""
    return source_float("OPS_METRICS_STUCK_RUN_AFTER_S", 3600.0)


def metrics_health_interval_seconds() -> float:
    """``OPS_METRICS_HEALTH_INTERVAL_S``: the metrics endpoint runs the health probes at most this
    often, and serves their last results in between (default 60)."""
    return source_float("OPS_METRICS_HEALTH_INTERVAL_S", 60.0)
