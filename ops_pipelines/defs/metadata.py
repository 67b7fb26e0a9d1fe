"""pandas DataFrames as Dagster table metadata, so the UI shows results at a glance."""

from __future__ import annotations

import pandas as pd
from dagster import MetadataValue, TableColumn, TableRecord, TableSchema

_TYPES = {"i": "int", "u": "int", "f": "float", "b": "bool"}


def table(df: pd.DataFrame) -> MetadataValue:
    schema = TableSchema(
        columns=[TableColumn(str(c), _TYPES.get(df[c].dtype.kind, "string")) for c in df.columns]
    )
    records = [
        TableRecord({str(k): (v.item() if hasattr(v, "item") else v) for k, v in row.items()})
        for row in df.to_dict("records")
    ]
    return MetadataValue.table(records=records, schema=schema)
