"""Metadata helpers: tables (pandas DataFrames, or plain rows where a step would import pandas for
one row) as Dagster tables, and what the embeddings steps report."""

from __future__ import annotations

import math
from collections.abc import Sequence

from dagster import MetadataValue, TableColumn, TableRecord, TableSchema

_KINDS = {"i": "int", "u": "int", "f": "float", "b": "bool"}
_TYPES = {bool: "bool", int: "int", float: "float"}


def table(df) -> MetadataValue:
    """A pandas DataFrame as a Dagster table."""
    schema = TableSchema(columns=[TableColumn(str(c), _KINDS.get(df[c].dtype.kind, "string")) for c in df.columns])
    return _table(schema, df.to_dict("records"))


def rows_table(rows: Sequence[dict], columns: Sequence[str]) -> MetadataValue:
    """Plain rows (dicts with ``columns``) as a Dagster table: the sync steps report a row or a few
    and start faster without pandas."""
    first = rows[0] if rows else {}
    schema = TableSchema(columns=[TableColumn(c, _TYPES.get(type(first.get(c)), "string")) for c in columns])
    return _table(schema, [{c: row.get(c) for c in columns} for row in rows])


def _table(schema: TableSchema, rows: list[dict]) -> MetadataValue:
    records = [TableRecord({str(k): _cell(v) for k, v in row.items()}) for row in rows]
    return MetadataValue.table(records=records, schema=schema)


def _cell(value):
    """A value Dagster's table records take: numpy scalars unwrapped, times as ISO strings, NaN/NaT as None."""
    if value is None or (isinstance(value, float) and math.isnan(value)) or _pandas_missing(value):
        return None
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return value.item() if hasattr(value, "item") else value


def _pandas_missing(value) -> bool:
    """NaT and pandas' NA, without importing pandas where no DataFrame was built."""
    return type(value).__name__ in ("NaTType", "NAType")


def setting(value) -> MetadataValue:
    """A configuration value, shown as text: the UI plots every numeric entry across
    materializations, and a setting would only draw a flat line."""
    return MetadataValue.text(str(value))


def embedding_metadata(version, report) -> dict:
    """What an embeddings step reports: the version, computed vs cached counts, and, for a version
    whose chunker can cut chunks longer than its model reads, how many of those it computed were."""
    metadata = {
        "embedder_version": version.name,
        "dimension": setting(version.dimension),
        "chunker": version.chunker,
        "computed": report.computed,
        "cached": report.cached,
        "active_chunks": report.active_chunks,
        "embed_seconds": round(report.seconds, 3),
        "chunks_per_second": round(report.computed / report.seconds, 1) if report.computed else 0.0,
    }
    if report.over_window is not None:
        metadata["chunks_over_window"] = report.over_window
    return metadata


def chunk_metadata(reports) -> dict:
    """What a chunking step reports, per chunker it cut with (the first: the live version's)."""
    first = reports[0]
    metadata = {
        "chunker": first.chunker,
        "documents_chunked": first.documents_chunked,
        "chunks_written": first.chunks_written,
        "active_chunks": first.active_chunks,
    }
    if len(reports) > 1:
        columns = ["chunker", "documents_chunked", "chunks_written", "active_chunks"]
        metadata["chunkers"] = rows_table([{c: getattr(r, c) for c in columns} for r in reports], columns)
    return metadata
