"""Where things live, read from environment variables.

The embedded default keeps everything under ``DAGSTER_HOME`` (metadata DB, Qdrant local-mode
files, object store folder); production points each piece at a server with its own variable.
"""

from __future__ import annotations

import os
from pathlib import Path


def dagster_home() -> Path:
    """``DAGSTER_HOME``, or ``./.dagster_home`` (created) when unset, as the Makefile does."""
    home = Path(os.environ.get("DAGSTER_HOME") or Path.cwd() / ".dagster_home").resolve()
    home.mkdir(parents=True, exist_ok=True)
    return home


def dagster_url() -> str:
    """``DAGSTER_URL``: the webserver ``ops-pipelines trigger`` and ``backfill`` talk GraphQL to."""
    return os.environ.get("DAGSTER_URL") or "http://127.0.0.1:3000"


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


_FLAGS = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}


def _flag(name: str, default: bool) -> bool:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        return _FLAGS[raw.lower()]
    except KeyError:
        raise ValueError(f"{name}={raw!r} is not a boolean: use true/false, 1/0 or yes/no") from None
