"""What every command opens: the Dagster instance, the knowledge base, the vector store, the
embedder registry. Each is imported when a command asks for it, so a command that needs only the
knowledge base starts without Dagster, the vector store or the models."""

from __future__ import annotations

import os

import click

from ops_pipelines import settings


def debugging() -> bool:
    """Whether the command runs under ``ops-pipelines --debug`` (full logs and tracebacks)."""
    ctx = click.get_current_context(silent=True)
    return bool(ctx and ctx.find_root().params.get("debug"))


def instance():
    os.environ["DAGSTER_HOME"] = str(settings.dagster_home())
    from dagster import DagsterInstance

    return DagsterInstance.get()


def open_kb():
    from ops_pipelines.kb import KnowledgeBase

    return KnowledgeBase(settings.kb_url())


def open_vectors():
    from ops_pipelines.vectors import open_vector_store

    url = settings.qdrant_url()
    return open_vector_store(url=url, api_key=settings.qdrant_api_key(), path=None if url else settings.qdrant_path())


def registry():
    from ops_pipelines.embedders import versions

    return versions()
