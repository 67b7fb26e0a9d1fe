"""``backup list`` prints its table without pandas, exactly as pandas printed it before."""

from __future__ import annotations

import pandas as pd
import pytest

from ops_pipelines.cli.backups import text_table

COLUMNS = ["key", "created_at", "run_id", "mb"]


def row(key: str, run_id: str, mb: float) -> dict:
    return {"key": key, "created_at": "2026-12-01T10:00:00+00:00", "run_id": run_id, "mb": mb}


@pytest.mark.parametrize(
    "rows",
    [
        [row("backups/20261201T100000Z_abc.tar", "abc", 0.01)],
        [row("backups/20261201T100000Z_abc.tar", "abc", 0.01), row("backups/b.tar", "a-much-longer-run-id", 12.5)],
        [row("backups/a.tar", "a", 1.0), row("backups/b.tar", "b", 3.0)],
        [row("backups/a.tar", "a", 0.0), row("backups/b.tar", "b", 1234.57)],
        [row("backups/a.tar", "a", 0.5), row("backups/b.tar", "b", 0.25)],
    ],
)
def test_text_table_prints_what_pandas_printed(rows):
    assert text_table(rows, COLUMNS) == pd.DataFrame(rows, columns=COLUMNS).to_string(index=False)
