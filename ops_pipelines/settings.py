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
