"""The metadata DB in and out of a backup's ``database.sqlite``.

Out: an embedded SQLite KB through SQLite's online backup API (a consistent copy while others
write); PostgreSQL by copying every table's rows inside one REPEATABLE READ transaction into a
fresh SQLite file of the same schema. Either way the backup holds one self-describing SQLite file
that any tool can open.

In: the rows of that file replace the target's in one transaction, whatever the target's backend,
so a failure half way leaves the previous rows untouched.
"""

from __future__ import annotations

import io
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import Connection, DateTime, Engine, MetaData, Table, create_engine, delete, func, insert, select
from sqlalchemy.engine import make_url

from ops_pipelines.kb import KnowledgeBase, schema
from ops_pipelines.kb.migrations import current_version

# Parents before children. The schema version is the target's own business, and so are its
# leases: they name the operations running on it (a restore holds one), never data to bring back.
TABLES: list[Table] = [
    t for t in schema.metadata.sorted_tables if t is not schema.schema_version and t is not schema.leases
]
_BATCH = 5000

RowTransform = Callable[[Table, dict], dict]


def dump_database(kb: KnowledgeBase, path: Path) -> dict[str, int]:
    """Write the whole KB to a new SQLite file at ``path``; returns rows per table."""
    url = make_url(kb.url)
    if url.get_backend_name() == "sqlite":
        _sqlite_backup(url.database, path)
    else:
        target = _sqlite_engine(path)
        try:
            schema.metadata.create_all(target)
            with kb.engine.connect() as source, target.begin() as out:
                source = source.execution_options(isolation_level="REPEATABLE READ")
                with source.begin():
                    out.execute(insert(schema.schema_version).values(version=current_version(source)))
                    for table in TABLES:
                        for rows in _read(source, table):
                            out.execute(insert(table), [_to_sqlite(table, r) for r in rows])
        finally:
            target.dispose()
    return table_counts(path)


def table_counts(path: Path) -> dict[str, int]:
    engine = _sqlite_engine(path)
    try:
        with engine.connect() as conn:
            return {t.name: conn.execute(select(func.count()).select_from(t)).scalar_one() for t in TABLES}
    finally:
        engine.dispose()


def replace_rows(
    source: Path,
    target: KnowledgeBase,
    transform: RowTransform,
    verbatim: set[str],
    before_commit: Callable[[], None] = lambda: None,
) -> dict[str, int]:
    """Delete every row of the target KB and insert the rows of the SQLite file ``source``, in one
    transaction; returns rows written per table. Rows of tables not in ``verbatim`` pass through
    ``transform``. A SQLite target attaches the file and copies the verbatim tables inside SQLite.
    ``before_commit`` runs last inside the transaction: if it raises, nothing is committed."""
    written = {t.name: 0 for t in TABLES}
    engine = _sqlite_engine(source)
    try:
        with engine.connect() as src, target.engine.connect() as out:
            attached = out.dialect.name == "sqlite"
            if attached:  # before the transaction: SQLite cannot attach inside one
                out.exec_driver_sql("ATTACH DATABASE ? AS backup", (str(source),))
                out.commit()  # ends SQLAlchemy's autobegun transaction; SQLite opened none
            try:
                with out.begin():
                    copied = out.dialect.name == "postgresql"
                    if copied:  # SQLite's timestamps are naive UTC: COPY reads them in UTC
                        out.exec_driver_sql("SET LOCAL timezone = 'UTC'")
                    for table in reversed(TABLES):
                        out.execute(delete(table))
                    for table in TABLES:
                        if table.name in verbatim and attached:
                            written[table.name] = _copy_inside_sqlite(out, table)
                            continue
                        if table.name in verbatim and copied:
                            written[table.name] = _copy_into_postgres(out, src, table)
                            continue
                        for rows in _read(src, table):
                            out.execute(insert(table), [_from_sqlite(out, table, transform(table, r)) for r in rows])
                            written[table.name] += len(rows)
                    before_commit()
            finally:
                if attached:
                    out.exec_driver_sql("DETACH DATABASE backup")
    finally:
        engine.dispose()
    return written


def _copy_inside_sqlite(conn: Connection, table: Table) -> int:
    columns = [c.name for c in table.columns]
    source = table.to_metadata(MetaData(), schema="backup")
    return conn.execute(insert(table).from_select(columns, select(*(source.c[n] for n in columns)))).rowcount


def _copy_into_postgres(conn: Connection, src: Connection, table: Table) -> int:
    """The table's rows read raw from the SQLite file and sent with COPY: a fraction of the time
    INSERTs take, and little of it holding the GIL."""
    columns = [c.name for c in table.columns]
    names = ", ".join(f'"{n}"' for n in columns)
    order = ", ".join(f'"{c.name}"' for c in table.primary_key.columns)
    cursor = conn.connection.dbapi_connection.cursor()
    result = src.connection.dbapi_connection.execute(f'SELECT {names} FROM "{table.name}" ORDER BY {order}')
    rows = 0
    while batch := result.fetchmany(_BATCH):
        text = "".join("\t".join(map(_copy_text, row)) + "\n" for row in batch)
        cursor.copy_expert(f'COPY "{table.name}" ({names}) FROM STDIN', io.StringIO(text))
        rows += len(batch)
    return rows


def _copy_text(value) -> str:
    """One field in COPY's text format."""
    if value is None:
        return "\\N"
    if isinstance(value, bytes):
        return "\\\\x" + value.hex()
    if isinstance(value, str):
        return value.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")
    return str(value)


@contextmanager
def open_copy(path: Path) -> Iterator[KnowledgeBase]:
    """The KB in a backup's SQLite file, to read with the KB's own queries; left as one
    self-contained file afterwards (the KB turns on WAL when it connects)."""
    kb = KnowledgeBase(sqlite_url(path))
    try:
        yield kb
    finally:
        kb.close()
        con = sqlite3.connect(path)
        try:
            con.execute("PRAGMA journal_mode=DELETE")
        finally:
            con.close()


def blob_hashes(path: Path) -> Iterator[str]:
    """Every blob a document of the copy refers to, active or archived, in order, streamed."""
    engine = _sqlite_engine(path)
    d = schema.documents.c
    try:
        with engine.connect() as conn:
            yield from conn.execute(select(d.raw_sha256).distinct().order_by(d.raw_sha256)).scalars()
    finally:
        engine.dispose()


def schema_version_of(path: Path) -> int:
    engine = _sqlite_engine(path)
    try:
        with engine.connect() as conn:
            return current_version(conn)
    finally:
        engine.dispose()


def sqlite_url(path: Path) -> str:
    return f"sqlite:///{path}"


def check_integrity(path: Path) -> str | None:
    """None if ``path`` is a sound SQLite database, else what SQLite says is wrong with it."""
    try:
        con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            con.execute("PRAGMA trusted_schema=OFF")
            result = con.execute("PRAGMA quick_check").fetchone()[0]
        finally:
            con.close()
    except sqlite3.DatabaseError as exc:
        return str(exc)
    return None if result == "ok" else result


def _sqlite_backup(source_path: str, path: Path) -> None:
    source = sqlite3.connect(source_path)
    target = sqlite3.connect(path)
    try:
        source.backup(target)
        with target:
            target.execute("DELETE FROM leases")  # the running operations of the source, not data
        target.execute("PRAGMA journal_mode=DELETE")  # one self-contained file, no -wal beside it
    finally:
        target.close()
        source.close()


def _read(conn: Connection, table: Table) -> Iterator[list[dict]]:
    result = conn.execution_options(stream_results=True, yield_per=_BATCH).execute(
        select(table).order_by(*table.primary_key.columns)
    )
    for part in result.partitions():
        yield [dict(row._mapping) for row in part]


def _timestamps(table: Table) -> list[str]:
    return [c.name for c in table.columns if isinstance(c.type, DateTime)]


def _to_sqlite(table: Table, row: dict) -> dict:
    """SQLite keeps the wall clock only: store every timestamp as UTC."""
    for name in _timestamps(table):
        if row[name] is not None and row[name].tzinfo is not None:
            row[name] = row[name].astimezone(UTC).replace(tzinfo=None)
    return row


def _from_sqlite(conn: Connection, table: Table, row: dict) -> dict:
    """Timestamps read from SQLite are naive UTC: say so to a backend that keeps zones."""
    if conn.dialect.name != "sqlite":
        for name in _timestamps(table):
            value: datetime | None = row[name]
            if value is not None and value.tzinfo is None:
                row[name] = value.replace(tzinfo=UTC)
    return row


def _sqlite_engine(path: Path) -> Engine:
    return create_engine(sqlite_url(path))

