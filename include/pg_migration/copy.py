"""The data path: one unit copies its tables with COPY streams and builds their indexes.

For each table, largest first, in one target transaction:

    TRUNCATE ONLY t                      -- a retried table starts empty (ONLY: never a child's rows)
    COPY t (cols) FROM STDIN (FORMAT binary, FREEZE)  <-  COPY t (cols) TO STDOUT (FORMAT binary)
    SELECT count(*) FROM ONLY t          -- the target's count, checked against the COPY's own count
    INSERT INTO _pg_migration.tables ... -- the record commits with the rows or not at all
    COMMIT

The source side runs inside the run's exported snapshot (or the unit's own, ``consistent=false``);
``COPY t TO STDOUT`` of a table never includes its inheritance children or partitions, so every
row moves exactly once. Binary format is used when every column type is built in (same bytes on
both sides); text otherwise. Columns are named on both sides, so a child whose column order differs
on the target still loads. Rows stream through memory in chunks: nothing touches the disk.

While the next table loads, a second target session builds the finished table's indexes and
primary/unique keys (the post-data entries the plan assigned to it), then ANALYZEs it.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from include.pg_migration import catalog, state
from include.pg_migration.conn import Endpoint
from include.pg_migration.errors import UnitFailed
from include.pg_migration.sessions import apply_settings

log = logging.getLogger(__name__)

#: Bytes gathered before each write to the target's COPY.
WRITE_BATCH = 1024 * 1024

#: Settings of the target's bulk-load sessions (safe: a lost commit is re-done by the retry).
LOAD_SETTINGS = {"synchronous_commit": "off"}
INDEX_SETTINGS = {"maintenance_work_mem": "512MB", "synchronous_commit": "off"}

FKS_TOUCHING = """
SELECT n.nspname, t.relname, k.conname
  FROM pg_catalog.pg_constraint k
  JOIN pg_catalog.pg_class t ON t.oid = k.conrelid
  JOIN pg_catalog.pg_namespace n ON n.oid = t.relnamespace
 WHERE k.contype = 'f' AND (k.conrelid = %(oid)s OR k.confrelid = %(oid)s)
"""

HAS_USER_TRIGGERS = "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_trigger WHERE tgrelid = %(oid)s AND NOT tgisinternal)"

UNIT_DDL = """
SELECT seq, kind, name, schema_name, table_schema, table_name, statement, applied_at FROM {s}.ddl
 WHERE run_id = %s AND table_schema = %s AND table_name = %s AND kind IN ('INDEX', 'CONSTRAINT')
 ORDER BY seq
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


def copy_table(
    src: psycopg.Connection,
    tgt: psycopg.Connection,
    schema: str,
    table: str,
    run_id: str,
    unit_id: str,
    snapshot_id: str | None,
    allow_binary: bool,
) -> TableResult:
    """Copy one table in one target transaction (see module doc). Raises UnitFailed naming it."""
    started = time.monotonic()
    name = ident(schema, table)
    src_oid = src.execute(catalog.TABLE_OID, {"schema": schema, "name": table}).fetchone()
    if src_oid is None:
        raise UnitFailed(f"table {schema}.{table} no longer exists in the source snapshot")
    cols = src.execute(catalog.COPY_COLUMNS, {"oid": src_oid[0]}).fetchall()
    binary = allow_binary and all(ok for _, ok in cols)
    fmt = sql.SQL("binary" if binary else "text")
    col_list = sql.SQL(", ").join(sql.Identifier(c) for c, _ in cols)
    result = TableResult(schema=schema, table=table, format="binary" if binary else "text")
    try:
        with tgt.transaction():
            tgt_oid = tgt.execute(catalog.TABLE_OID, {"schema": schema, "name": table}).fetchone()
            if tgt_oid is None:
                raise UnitFailed(f"table {schema}.{table} does not exist on the target (did pre-data run?)")
            apply_settings(tgt, LOAD_SETTINGS)
            # A reload after post-data ran (resume): FKs would block TRUNCATE and triggers would
            # rewrite rows. Post-data puts the FKs back; triggers are re-enabled in this transaction.
            for fk_schema, fk_table, conname in tgt.execute(FKS_TOUCHING, {"oid": tgt_oid[0]}).fetchall():
                tgt.execute(
                    sql.SQL("ALTER TABLE {} DROP CONSTRAINT {}").format(
                        ident(fk_schema, fk_table), sql.Identifier(conname)
                    )
                )
            triggers = tgt.execute(HAS_USER_TRIGGERS, {"oid": tgt_oid[0]}).fetchone()[0]
            if triggers:
                tgt.execute(sql.SQL("ALTER TABLE {} DISABLE TRIGGER USER").format(name))
            tgt.execute(sql.SQL("TRUNCATE ONLY {}").format(name))
            freeze = sql.SQL(", FREEZE") if not triggers else sql.SQL("")
            copy_out = sql.SQL("COPY {} ({}) TO STDOUT (FORMAT {})").format(name, col_list, fmt)
            copy_in = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT {}{})").format(name, col_list, fmt, freeze)
            with src.cursor() as scur, tgt.cursor() as tcur:
                with scur.copy(copy_out) as out, tcur.copy(copy_in) as into:
                    # Rows arrive one per chunk: hand them to libpq in ~1 MiB writes (half the
                    # worker's CPU per byte, measured in bench/copy_variants.py).
                    batch = bytearray()
                    for chunk in out:
                        batch += chunk
                        if len(batch) >= WRITE_BATCH:
                            result.bytes += len(batch)
                            into.write(batch)
                            batch = bytearray()
                    if batch:
                        result.bytes += len(batch)
                        into.write(batch)
                result.source_rows = scur.rowcount
                result.target_rows = tgt.execute(sql.SQL("SELECT count(*) FROM ONLY {}").format(name)).fetchone()[0]
            if triggers:
                tgt.execute(sql.SQL("ALTER TABLE {} ENABLE TRIGGER USER").format(name))
            if result.target_rows != result.source_rows:
                raise UnitFailed(
                    f"table {schema}.{table}: {result.source_rows} rows read from the source snapshot but "
                    f"{result.target_rows} in the target after loading"
                )
            result.seconds = time.monotonic() - started
            tgt.execute(
                state.q(state.RECORD_TABLE),
                (
                    schema,
                    table,
                    run_id,
                    unit_id,
                    snapshot_id,
                    result.source_rows,
                    result.target_rows,
                    result.bytes,
                    result.format,
                    result.seconds,
                ),
            )
    except psycopg.Error as exc:
        raise UnitFailed(f"table {schema}.{table}: {_pg_message(exc)}") from exc
    log.info(
        "%s.%s: %d rows, %.1f MB %s in %.1fs",
        schema,
        table,
        result.source_rows,
        result.bytes / 1e6,
        result.format,
        result.seconds,
    )
    return result


def _pg_message(exc: psycopg.Error) -> str:
    diag = getattr(exc, "diag", None)
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if diag is not None and diag.constraint_name:
        text += f" (constraint {diag.constraint_name})"
    return text


class IndexBuilder:
    """Builds finished tables' indexes/keys on its own target session while the next table loads."""

    def __init__(self, target: Endpoint, app: str, run_id: str):
        self.target = target
        self.app = app
        self.run_id = run_id
        self.jobs: queue.Queue[tuple[str, str] | None] = queue.Queue()
        self.errors: list[str] = []
        self.built: list[str] = []
        self.thread = threading.Thread(target=self._run, name="index-builder", daemon=True)

    def start(self) -> IndexBuilder:
        self.thread.start()
        return self

    def submit(self, schema: str, table: str) -> None:
        self.jobs.put((schema, table))

    def finish(self) -> None:
        self.jobs.put(None)
        self.thread.join()
        if self.errors:
            raise UnitFailed("; ".join(self.errors))

    def _run(self) -> None:
        try:
            conn = self.target.connect(self.app + " idx", autocommit=True)
        except Exception as exc:  # noqa: BLE001 - reported by finish()
            self.errors.append(f"index builder cannot connect: {exc}")
            self._drain()
            return
        with conn:
            apply_settings(conn, INDEX_SETTINGS)
            while (job := self.jobs.get()) is not None:
                schema, table = job
                try:
                    self._build(conn, schema, table)
                except psycopg.Error as exc:
                    self.errors.append(f"table {schema}.{table}: building its indexes/keys failed: {_pg_message(exc)}")

    def _drain(self) -> None:
        while self.jobs.get() is not None:
            pass

    def _build(self, conn: psycopg.Connection, schema: str, table: str) -> None:
        with conn.cursor(row_factory=dict_row) as cur:
            entries = cur.execute(state.q(UNIT_DDL), (self.run_id, schema, table)).fetchall()
        for entry in entries:
            if not ddl_exists(conn, entry):
                conn.execute(entry["statement"])
            conn.execute(
                state.q("UPDATE {s}.ddl SET applied_at = now() WHERE run_id = %s AND seq = %s"),
                (self.run_id, entry["seq"]),
            )
            self.built.append(entry["name"])
        conn.execute(sql.SQL("ANALYZE {}").format(ident(schema, table)))


#: Does the object a post-data entry creates already exist on the target? (makes re-runs idempotent)
_TABLE = "pg_catalog.to_regclass(pg_catalog.format('%%I.%%I', %(table_schema)s::text, %(table_name)s::text))"
_OBJECT = "pg_catalog.to_regclass(pg_catalog.format('%%I.%%I', %(schema)s::text, %(object)s::text))"
EXISTS_SQL = {
    "INDEX": f"SELECT {_OBJECT} IS NOT NULL",
    "CONSTRAINT": f"""SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_constraint
                       WHERE conname = %(object)s::text AND conrelid = {_TABLE})""",
    "TRIGGER": f"""SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_trigger
                    WHERE tgname = %(object)s::text AND tgrelid = {_TABLE})""",
    "INDEX ATTACH": f"SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_inherits WHERE inhrelid = {_OBJECT})",
}
EXISTS_SQL["FK CONSTRAINT"] = EXISTS_SQL["CONSTRAINT"]
EXISTS_SQL["CHECK CONSTRAINT"] = EXISTS_SQL["CONSTRAINT"]


def ddl_exists(conn: psycopg.Connection, entry: dict[str, Any]) -> bool:
    query = EXISTS_SQL.get(entry["kind"])
    if query is None or entry.get("table_name") is None and entry["kind"] not in ("INDEX", "INDEX ATTACH"):
        return False
    obj = entry["name"]
    if entry["kind"] not in ("INDEX", "INDEX ATTACH") and entry.get("table_name"):
        prefix = entry["table_name"] + " "
        obj = obj[len(prefix) :] if obj.startswith(prefix) else obj
    params = {
        "schema": entry["schema_name"],
        "object": obj,
        "table_schema": entry.get("table_schema"),
        "table_name": entry.get("table_name"),
    }
    return bool(conn.execute(query, params).fetchone()[0])
