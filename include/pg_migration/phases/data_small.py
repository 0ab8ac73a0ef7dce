"""The data unit's path for small tables: many per target transaction, read on the unit's own session.

A table smaller than :data:`SMALL_TABLE_BYTES` (heap + TOAST in the source) costs more in per-table
overhead than in rows: a ``psql`` child, a dozen catalog round trips, a commit, an index build and an
ANALYZE each. Here :func:`copy_batch` moves up to :func:`tables_per_transaction` of them at once:

    (source, the unit's snapshot session, one savepoint for the batch)
    LOCK TABLE ONLY a, ONLY b, ... IN ACCESS SHARE MODE; each file in the snapshot = its live file, or the
        batch fails naming the table rewritten or truncated after the cut (as data.unchanged_since_the_cut)
    (target, one transaction)
    DELETE FROM ONLY a; DELETE FROM ONLY b; ...   -- never a child's rows (see _prepare_target)
    COPY a (cols) FROM STDIN (FORMAT binary)  <-  COPY a (cols) TO STDOUT on the snapshot session
    ... (each table: rows read == rows written, or the batch rolls back naming the table)
    INSERT INTO _pg_migration.tables ... (every table's record, in one round trip)
    COMMIT
    (source: ROLLBACK TO SAVEPOINT: the batch's locks are let go)

so a killed or failed batch leaves none of its tables recorded and a retry reloads them all from
empty. The index builder then builds a batch's indexes and keys and ANALYZEs its tables in one
statement list (:func:`build_batch`; an implicit transaction: all or nothing), falling back to one
table at a time when it fails, so an error names its table.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from include.pg_migration import state
from include.pg_migration.errors import UnitFailed
from include.pg_migration.loading import LOAD_SETTINGS
from include.pg_migration.sessions import apply_settings

#: Tables below this size (heap + TOAST in the source) take the batched path.
SMALL_TABLE_BYTES = 1024 * 1024
#: Bytes gathered before each write to the target's COPY.
WRITE_BATCH = 1024 * 1024


def tables_per_transaction() -> int:
    """How many small tables one target transaction loads (and one source savepoint locks).

    A fixed, conservative number until the run's lock budget (``include/pg_migration/locks.py``)
    decides it: a loaded table holds about 3 entries of the target's lock table until its batch
    commits (the table, its TOAST table and its index), its index build about 5, and 3 on the source
    while it is read: 16 tables stay within one session's share of a stock lock table
    (``max_locks_per_transaction`` 64 per process slot; 16 in the tests' small one) with room for
    every other session of the run."""
    return 16


#: The unit's tables in the snapshot: oid and size (heap + TOAST: what a COPY reads).
UNIT_TABLES = """
SELECT c.relname AS name, c.oid::bigint AS oid,
       (pg_catalog.pg_relation_size(c.oid)
        + coalesce(pg_catalog.pg_total_relation_size(NULLIF(c.reltoastrelid, 0)), 0))::bigint AS bytes
  FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname = %(schema)s AND c.relname = ANY(%(names)s)
"""

#: Columns a COPY moves, per table of a batch (as catalog.COPY_COLUMNS for one table).
BATCH_COLUMNS = """
SELECT a.attrelid::bigint AS oid, a.attname AS name,
       CASE WHEN t.typtype = 'e' THEN true
            WHEN t.typtype = 'd' THEN
                 b.oid < 16384 AND b.typsend <> 0 AND b.typreceive <> 0 AND (b.typelem = 0 OR b.typelem < 16384)
            ELSE t.oid < 16384 AND t.typsend <> 0 AND t.typreceive <> 0 AND (t.typelem = 0 OR t.typelem < 16384)
       END AS binary_ok
  FROM pg_catalog.pg_attribute a
  JOIN pg_catalog.pg_type t ON t.oid = a.atttypid
  LEFT JOIN pg_catalog.pg_type b ON b.oid = t.typbasetype
 WHERE a.attrelid = ANY(%(oids)s) AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = ''
 ORDER BY a.attrelid, a.attnum
"""

#: Each table's file in the snapshot and now (as catalog.FILENODES, for a batch).
BATCH_FILENODES = """
SELECT c.oid::bigint AS oid, c.relfilenode::bigint AS in_snapshot,
       pg_catalog.pg_relation_filenode(c.oid)::bigint AS live
  FROM pg_catalog.pg_class c
 WHERE c.oid = ANY(%(oids)s)
"""

#: The batch's tables on the target, and whether each has user triggers.
TARGET_TABLES = """
SELECT c.relname AS name, c.oid::bigint AS oid,
       EXISTS (SELECT 1 FROM pg_catalog.pg_trigger g WHERE g.tgrelid = c.oid AND NOT g.tgisinternal) AS triggers,
       c.relhasrules OR c.relforcerowsecurity AS truncate
  FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname = %(schema)s AND c.relname = ANY(%(names)s)
"""

#: Foreign keys from or to any table of a batch (a reload after post-data: they would block TRUNCATE).
FKS_TOUCHING_ANY = """
SELECT DISTINCT n.nspname, t.relname, k.conname
  FROM pg_catalog.pg_constraint k
  JOIN pg_catalog.pg_class t ON t.oid = k.conrelid
  JOIN pg_catalog.pg_namespace n ON n.oid = t.relnamespace
 WHERE k.contype = 'f' AND (k.conrelid = ANY(%(oids)s) OR k.confrelid = ANY(%(oids)s))
"""

#: The batch's post-data entries (indexes, keys) on the target's state, in dump order.
BATCH_DDL = """
SELECT seq, kind, name, schema_name, table_schema, table_name, statement FROM {s}.ddl
 WHERE run_id = %s AND table_schema = %s AND table_name = ANY(%s) AND kind IN ('INDEX', 'CONSTRAINT')
 ORDER BY seq
"""

#: What of those entries already exists (as loading.ddl_exists, for a batch): relations of the schema by
#: name (an index), and the tables' constraints as pg_dump tags them (``table conname``).
DDL_PRESENT = """
SELECT 'INDEX' AS kind, c.relname::text AS name
  FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname = %(schema)s AND c.relname = ANY(%(indexes)s)
UNION ALL
SELECT 'CONSTRAINT', t.relname || ' ' || k.conname
  FROM pg_catalog.pg_constraint k
  JOIN pg_catalog.pg_class t ON t.oid = k.conrelid
  JOIN pg_catalog.pg_namespace n ON n.oid = t.relnamespace
 WHERE n.nspname = %(schema)s AND t.relname = ANY(%(tables)s)
"""


@dataclass
class TableResult:
    schema: str
    table: str
    source_rows: int = 0
    target_rows: int = 0
    bytes: int = 0
    seconds: float = 0.0
    format: str = "binary"
    skipped: bool = False
    indexes: list[str] = field(default_factory=list)


def ident(schema: str, name: str) -> sql.Identifier:
    return sql.Identifier(schema, name)


def column_list(columns: list[str]) -> sql.Composable:
    """`` (a, b)`` after a COPY's table -- or nothing for a table with no copyable column (none at all,
    only generated or dropped ones): ``COPY t ()`` is a syntax error, while ``COPY t`` then moves one
    empty row per row, in text and binary alike (its default list also leaves generated columns out)."""
    if not columns:
        return sql.SQL("")
    return sql.SQL(" ({})").format(sql.SQL(", ").join(map(sql.Identifier, columns)))


def only(schema: str, tables: list[str]) -> sql.Composed:
    """``ONLY a, ONLY b``: in a list after TRUNCATE or LOCK, ONLY binds to the one name after it (a bare
    later name would take its inheritance children and partitions along: truncate their rows)."""
    return sql.SQL(", ").join(sql.SQL("ONLY {}").format(ident(schema, t)) for t in tables)


def pg_message(exc: psycopg.Error) -> str:
    diag = getattr(exc, "diag", None)
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if diag is not None and diag.constraint_name:
        text += f" (constraint {diag.constraint_name})"
    return text


def unit_tables(src: psycopg.Connection, schema: str, names: list[str]) -> dict[str, tuple[int, int]]:
    """``{table: (oid, bytes)}`` of the unit's tables the snapshot sees (a missing one is absent)."""
    rows = src.execute(UNIT_TABLES, {"schema": schema, "names": names}).fetchall()
    return {name: (oid, nbytes) for name, oid, nbytes in rows}


def batches(tables: list[str], size: int) -> Iterator[list[str]]:
    for i in range(0, len(tables), max(1, size)):
        yield tables[i : i + max(1, size)]


def refuse_if_moved(schema: str, table: str, in_snapshot: int | None, live: int | None) -> None:
    """Fail the table's copy when its file is not the one the run's snapshot reads (``live`` None: the
    table is gone). Shared by the one-table path (:mod:`.data`) and the batches."""
    if live is None:
        raise UnitFailed(f"table {schema}.{table}: dropped or replaced on the source after the cut")
    if live != in_snapshot:
        raise UnitFailed(
            f"table {schema}.{table}: rewritten or truncated on the source after the cut (TRUNCATE, a "
            "rewriting ALTER TABLE, VACUUM FULL, CLUSTER, SET TABLESPACE...): the run's snapshot no "
            "longer sees its rows, nothing of it was loaded; a new run or resume: true copies it in a "
            "new snapshot"
        )


@contextlib.contextmanager
def unchanged_since_the_cut(src: psycopg.Connection, schema: str, tables: dict[str, int]) -> Iterator[None]:
    """data.unchanged_since_the_cut for a batch ``{table: oid}``: one savepoint, one LOCK, one check;
    raises UnitFailed naming the first table dropped, rewritten or truncated after the cut."""
    src.execute("SAVEPOINT pg_migration_batch")
    done = False
    try:
        src.execute(sql.SQL("LOCK TABLE {} IN ACCESS SHARE MODE").format(only(schema, list(tables))))
        files = {r[0]: (r[1], r[2]) for r in src.execute(BATCH_FILENODES, {"oids": list(tables.values())})}
        for table, oid in tables.items():
            in_snapshot, live = files.get(oid, (None, None))
            refuse_if_moved(schema, table, in_snapshot, live)
        yield
        done = True
    finally:
        with contextlib.suppress(*(() if done else (psycopg.Error,))):  # never hides the copy's own error
            src.execute("ROLLBACK TO SAVEPOINT pg_migration_batch")
            src.execute("RELEASE SAVEPOINT pg_migration_batch")


def _prepare_target(tgt: psycopg.Connection, schema: str, names: list[str]) -> tuple[dict[str, bool], list[str]]:
    """In the batch's transaction: empty its tables; ``({table: COPY may FREEZE}, tables with user
    triggers, now disabled)``.

    ``DELETE FROM ONLY``, not TRUNCATE: on a small table TRUNCATE's new files cost ~4 ms each (a
    DELETE of an empty table ~0.1 ms; a retried batch's tables are empty, its killed attempt never
    committed), and a DELETE holds one lock per table instead of one per file. The rows then are not
    frozen (autovacuum does it; a small table's worth). A table with rules or forced row security
    (a reload after post-data) is TRUNCATEd: a rule or a policy could make a DELETE leave rows. User
    triggers are disabled first (re-enabled in the same transaction) and forbid FREEZE."""
    found = {r[0]: r[1:] for r in tgt.execute(TARGET_TABLES, {"schema": schema, "names": names})}
    missing = [n for n in names if n not in found]
    if missing:
        raise UnitFailed(f"table {schema}.{missing[0]} does not exist on the target (did pre-data run?)")
    apply_settings(tgt, LOAD_SETTINGS)
    for fk_schema, fk_table, conname in tgt.execute(FKS_TOUCHING_ANY, {"oids": [f[0] for f in found.values()]}):
        tgt.execute(
            sql.SQL("ALTER TABLE {} DROP CONSTRAINT {}").format(ident(fk_schema, fk_table), sql.Identifier(conname))
        )
    for name in (n for n in names if found[n][1]):
        tgt.execute(sql.SQL("ALTER TABLE {} DISABLE TRIGGER USER").format(ident(schema, name)))
    truncate = [n for n in names if found[n][2]]
    if truncate:
        tgt.execute(sql.SQL("TRUNCATE {}").format(only(schema, truncate)))
    deletes = [sql.SQL("DELETE FROM ONLY {}").format(ident(schema, n)) for n in names if not found[n][2]]
    if deletes:
        tgt.execute(sql.SQL("; ").join(deletes))  # one round trip (no parameters: the simple protocol)
    return {n: bool(found[n][2]) and not found[n][1] for n in names}, [n for n in names if found[n][1]]


def _copy_one(
    scur: psycopg.Cursor, tcur: psycopg.Cursor, result: TableResult, columns: list[tuple[str, bool]], freeze: bool
) -> None:
    """One table's COPY, read on the snapshot session's cursor; rows leave in ~1 MiB writes."""
    binary = result.format == "binary"
    fmt = sql.SQL("binary" if binary else "text")
    what = sql.SQL("{}{}").format(ident(result.schema, result.table), column_list([c for c, _ in columns]))
    copy_out = sql.SQL("COPY {} TO STDOUT (FORMAT {})").format(what, fmt)
    copy_in = sql.SQL("COPY {} FROM STDIN (FORMAT {}{})").format(what, fmt, sql.SQL(", FREEZE" if freeze else ""))
    with scur.copy(copy_out) as out, tcur.copy(copy_in) as into:
        pending = bytearray()
        for chunk in out:
            pending += chunk
            if len(pending) >= WRITE_BATCH:
                result.bytes += len(pending)
                into.write(pending)
                pending = bytearray()
        if pending:
            result.bytes += len(pending)
            into.write(pending)
    result.source_rows, result.target_rows = scur.rowcount, tcur.rowcount
    if result.target_rows != result.source_rows:
        raise UnitFailed(
            f"table {result.schema}.{result.table}: {result.source_rows} rows read from the source snapshot but "
            f"{result.target_rows} loaded into the target"
        )


def copy_batch(
    src: psycopg.Connection,
    tgt: psycopg.Connection,
    schema: str,
    tables: dict[str, int],
    record: Callable[[psycopg.Cursor, list[TableResult]], None],
    allow_binary: bool,
) -> list[TableResult]:
    """Copy a batch ``{table: source oid}`` of small tables in one target transaction (module doc);
    ``record`` writes their state rows in it. Raises UnitFailed naming the table that failed."""
    started = time.monotonic()
    columns: dict[int, list[tuple[str, bool]]] = {oid: [] for oid in tables.values()}
    for oid, name, ok in src.execute(BATCH_COLUMNS, {"oids": list(tables.values())}):
        columns[oid].append((name, ok))
    results = [
        TableResult(schema, t, format="binary" if allow_binary and all(ok for _, ok in columns[o]) else "text")
        for t, o in tables.items()
    ]
    current = f"{schema}.{next(iter(tables))}"
    try:
        with unchanged_since_the_cut(src, schema, tables), tgt.transaction():
            freeze, triggered = _prepare_target(tgt, schema, list(tables))
            with src.cursor() as scur, tgt.cursor() as tcur:
                for result in results:
                    current = f"{schema}.{result.table}"
                    _copy_one(scur, tcur, result, columns[tables[result.table]], freeze[result.table])
                current = f"{schema}.{next(iter(tables))}"
                for name in triggered:
                    tcur.execute(sql.SQL("ALTER TABLE {} ENABLE TRIGGER USER").format(ident(schema, name)))
                seconds = (time.monotonic() - started) / len(results)
                for result in results:
                    result.seconds = seconds
                record(tcur, results)
    except psycopg.Error as exc:
        raise UnitFailed(f"table {current}: {pg_message(exc)}") from exc
    return results


def record_rows(
    run_id: str, unit_id: str, snapshot_id: str | None
) -> Callable[[psycopg.Cursor, list[TableResult]], None]:
    """The batch's records in ``_pg_migration.tables``, in its transaction (one round trip)."""

    def record(cur: psycopg.Cursor, results: list[TableResult]) -> None:
        rows = [
            (
                r.schema,
                r.table,
                run_id,
                unit_id,
                snapshot_id,
                r.source_rows,
                r.target_rows,
                r.bytes,
                r.format,
                r.seconds,
            )
            for r in results
        ]
        cur.executemany(state.q(state.RECORD_TABLE), rows)

    return record


def build_batch(conn: psycopg.Connection, run_id: str, schema: str, tables: list[str]) -> list[str]:
    """Build the batch's missing indexes and keys, mark them applied and ANALYZE the tables: one
    statement list (one implicit transaction) on the builder's autocommit session. Returns the names
    built; raises psycopg.Error when any statement fails (nothing of the batch is then applied)."""
    with conn.cursor(row_factory=dict_row) as cur:
        entries = cur.execute(state.q(BATCH_DDL), (run_id, schema, tables)).fetchall()
    indexes = [e["name"] for e in entries if e["kind"] == "INDEX"]
    present = {tuple(r) for r in conn.execute(DDL_PRESENT, {"schema": schema, "indexes": indexes, "tables": tables})}
    statements = [
        e["statement"].strip().rstrip(";") for e in entries if (e["kind"], e["name"]) not in present
    ]  # an entry of another schema than its table's cannot be: indexes and keys live with their table
    built = [e["name"] for e in entries if (e["kind"], e["name"]) not in present]
    if entries:
        seqs = sql.Literal([e["seq"] for e in entries])
        statements.append(
            state.q(
                "UPDATE {s}.ddl SET applied_at = now() WHERE run_id = {r} AND seq = ANY({q})",
                r=sql.Literal(run_id),
                q=seqs,
            ).as_string(conn)
        )
    statements.append(
        sql.SQL("ANALYZE {}").format(sql.SQL(", ").join(ident(schema, t) for t in tables)).as_string(conn)
    )
    conn.execute(";\n".join(statements))
    return built
