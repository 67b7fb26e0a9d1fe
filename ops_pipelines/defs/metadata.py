"""Metadata helpers: pandas DataFrames as Dagster tables, and what the embeddings steps report."""

from __future__ import annotations

import pandas as pd
from dagster import MetadataValue, TableColumn, TableRecord, TableSchema

_TYPES = {"i": "int", "u": "int", "f": "float", "b": "bool"}


def table(df: pd.DataFrame) -> MetadataValue:
    schema = TableSchema(
        columns=[TableColumn(str(c), _TYPES.get(df[c].dtype.kind, "string")) for c in df.columns]
    )
    records = [TableRecord({str(k): _cell(v) for k, v in row.items()}) for row in df.to_dict("records")]
    return MetadataValue.table(records=records, schema=schema)


def _cell(value):
    """A value Dagster's table records take: numpy scalars unwrapped, times as ISO strings, NaN/NaT as None."""
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return None
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return value.item() if hasattr(value, "item") else value


def embedding_metadata(version, report) -> dict:
    """What an embeddings step reports: the version, and computed vs cached counts."""
    return {
        "embedder_version": version.name,
        "dimension": version.dimension,
        "computed": report.computed,
        "cached": report.cached,
        "active_chunks": report.active_chunks,
        "embed_seconds": round(report.seconds, 3),
        "chunks_per_second": round(report.computed / report.seconds, 1) if report.computed else 0.0,
    }
