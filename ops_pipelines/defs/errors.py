"""Errors an operator can act on: shown as the run's failure message, no traceback hunt."""

from collections.abc import Iterator
from contextlib import contextmanager

from dagster import Failure

from ops_pipelines.archives import ArchiveError
from ops_pipelines.embedders import InvalidRegistry, UnknownEmbedderVersion
from ops_pipelines.errors import OperatorError
from ops_pipelines.ingest import ArchiveRefused, BadVectors, MissingEmbeddings
from ops_pipelines.kb import ContainerNotFound, GenerationNotFound
from ops_pipelines.objects import ObjectNotFound, ObjectStoreUnavailable
from ops_pipelines.refresh import NoChunks, NothingToRollBack, RefreshRefused
from ops_pipelines.sources import SourceUnavailable
from ops_pipelines.vectors import DimensionMismatch

OPERATOR_ERRORS = (
    OperatorError,
    ContainerNotFound,
    SourceUnavailable,
    ArchiveRefused,
    UnknownEmbedderVersion,
    InvalidRegistry,
    BadVectors,
    MissingEmbeddings,
    DimensionMismatch,
    NoChunks,
    RefreshRefused,
    GenerationNotFound,
    NothingToRollBack,
    ArchiveError,
    ObjectNotFound,
    ObjectStoreUnavailable,
)


@contextmanager
def operator_errors() -> Iterator[None]:
    try:
        yield
    except OPERATOR_ERRORS as exc:
        raise Failure(description=str(exc), allow_retries=False) from exc
