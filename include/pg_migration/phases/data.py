"""The data phase (the ``migrate_unit`` task, worker phase ``data``): one unit copies its tables
with COPY streams and builds their indexes (:func:`run_data_unit`).

Tables of 1 MB and more (heap + TOAST in the source) are copied one by one, largest first, each in
its own target transaction, as below. The smaller ones follow, several per target transaction, read
on the unit's own snapshot session and built as a batch (:mod:`.data_small`: the same checks, one
round trip where this path takes one per table). For each big table, in one target transaction:

    (source: LOCK TABLE ONLY t IN ACCESS SHARE MODE, in a savepoint of the unit's snapshot session;
     its file in the snapshot = its live file, or it fails: rewritten or truncated after the cut)
    TRUNCATE ONLY t                      -- a retried table starts empty (ONLY: never a child's rows)
    COPY t (cols) FROM STDIN (FORMAT binary, FREEZE)  <-  COPY t (cols) TO STDOUT (FORMAT binary)
                                         -- rows read == rows written, or the transaction rolls back
    INSERT INTO _pg_migration.tables ... -- the record commits with the rows or not at all
    COMMIT
    (source: ROLLBACK TO SAVEPOINT: the table's lock is let go)

A table with no copyable column (none, only generated or only dropped ones) is copied without a
column list: one empty row per row, so its row count moves exactly.

The source side is a ``psql`` child (:class:`PsqlSource`) running ``\\copy ... to pstdout`` in the
unit's snapshot (exported by the unit's own source session, so it outlives the run's holder): the
rows never pass through Python's per-row loop, the worker only hands 1 MiB blocks of the pipe to the
target's COPY (a quarter of the CPU of reading row by row in Python; bench/copy_variants.py). The
target's COPY commits only after psql exited 0 and reported as many rows as the target took; a psql
that dies mid-stream aborts the target's COPY (a truncated stream is never committed). Without a
fitting ``psql`` (or for a name psql's ``\\copy`` cannot carry), the same COPY is read in Python.

The source side runs inside the run's exported snapshot (or the unit's own, ``consistent=false``);
``COPY t TO STDOUT`` of a table never includes its inheritance children or partitions, so every
row moves exactly once. Binary format is used when every column type is built in (same bytes on
both sides); text otherwise. Columns are named on both sides, so a child whose column order differs
on the target still loads. Rows stream through memory in chunks: nothing touches the disk.

While the next table loads, a second target session builds the finished table's indexes and
primary/unique keys (the post-data entries the plan assigned to it), then ANALYZEs it (a batch of
small tables: all of theirs in one statement list).
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import queue
import re
import subprocess
import threading
import time
from collections.abc import Iterator
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from include.pg_migration import catalog, pgtools, state
from include.pg_migration.conn import Endpoint
from include.pg_migration.errors import ConfigError, MigrationError, UnitFailed
from include.pg_migration.loading import INDEX_SETTINGS, LOAD_SETTINGS, ddl_exists
from include.pg_migration.phases import data_small as small
from include.pg_migration.phases.data_small import TableResult, column_list, ident, pg_message
from include.pg_migration.sessions import (
    INDEX,
    SOURCE_SETTINGS,
    TEXT_SETTINGS,
    apply_settings,
    end_stale_sessions,
    hold_unit_lock,
    lock_key,
    open_source_snapshot,
    tag,
)

log = logging.getLogger(__name__)

#: Bytes gathered before each write to the target's COPY.
WRITE_BATCH = 1024 * 1024

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


def run_data_unit(source: Endpoint, target: Endpoint, run_id: str, unit_id: str) -> dict[str, Any]:
    """Copy a unit's tables (skipping those this run already loaded) and build their indexes."""
    app = tag(run_id, unit_id)
    started = time.monotonic()
    with target.connect(app, autocommit=True) as tgt:
        # A killed earlier attempt may still have sessions writing: end them, then hold the unit's lock.
        end_stale_sessions(tgt, run_id, unit_id)
        hold_unit_lock(tgt, lock_key(run_id, unit_id))
        row = state.get_unit(tgt, run_id, unit_id)
        if row is None:
            raise ConfigError(f"unit {unit_id!r} is not in the plan of run {run_id!r}")
        unit = row["definition"]
        run = state.get_run(tgt, run_id)
        attempt = state.unit_started(tgt, run_id, unit_id)
        snapshot_id = run["snapshot_id"] if run["consistent"] else None
        resume = bool(run["params"].get("resume"))
        log.info(
            "unit %s (attempt %d): %d table(s) of schema %r, snapshot %s",
            unit_id,
            attempt,
            len(unit["tables"]),
            unit["schema"],
            snapshot_id or "(own)",
        )
        loaded = state.loaded_tables(tgt, [unit["schema"]])
        try:
            with source.connect(app, autocommit=True) as src_admin:
                end_stale_sessions(src_admin, run_id, unit_id)
            src = open_source_snapshot(source, app, snapshot_id)
            builder = IndexBuilder(target, tag(run_id, unit_id, INDEX), run_id).start()
            with src, target.connect(app) as load:
                kept = []
                for table in unit["tables"]:
                    done = loaded.get((unit["schema"], table))
                    if done and done["source_rows"] == done["target_rows"] and (done["run_id"] == run_id or resume):
                        log.info(
                            "%s.%s already loaded and verified (run %s): kept", unit["schema"], table, done["run_id"]
                        )
                        kept.append(table)
                todo = [t for t in unit["tables"] if t not in kept]
                total_bytes = _copy_tables(
                    source, src, load, builder, unit["schema"], todo, run_id, unit_id, snapshot_id
                )
                for batch in small.batches(kept, small.tables_per_transaction()):  # what a killed attempt left
                    builder.submit(unit["schema"], *batch)
            builder.finish()
        except MigrationError as exc:
            state.unit_finished(tgt, run_id, unit_id, "failed", time.monotonic() - started, error=str(exc))
            raise
        except Exception as exc:
            state.unit_finished(tgt, run_id, unit_id, "failed", time.monotonic() - started, error=str(exc))
            raise UnitFailed(f"unit {unit_id}: {exc}") from exc
        seconds = time.monotonic() - started
        state.unit_finished(tgt, run_id, unit_id, "done", seconds, nbytes=total_bytes)
    log.info("unit %s done: %.1f MB in %.1fs", unit_id, total_bytes / 1e6, seconds)
    return {"unit_id": unit_id, "bytes": total_bytes, "seconds": seconds}


def _copy_tables(
    source: Endpoint,
    src: psycopg.Connection,
    load: psycopg.Connection,
    builder: IndexBuilder,
    schema: str,
    tables: list[str],
    run_id: str,
    unit_id: str,
    snapshot_id: str | None,
) -> int:
    """Copy the unit's tables still to load (largest first), each handed to the index builder once
    loaded: a big table alone (a psql child's stream, its own transaction), the small ones
    (:mod:`.data_small`) several per target transaction on the unit's own session. Returns the bytes."""
    allow_binary = load.info.server_version >= src.info.server_version // 10000 * 10000
    found = small.unit_tables(src, schema, tables) if tables else {}
    few = [t for t in tables if t in found and found[t][1] < small.SMALL_TABLE_BYTES]
    big = [t for t in tables if t not in few]
    total_bytes = 0
    reader = PsqlSource.for_unit(source, tag(run_id, unit_id), src) if big else None
    for table in big:
        result = copy_table(src, load, schema, table, run_id, unit_id, snapshot_id, allow_binary, reader)
        total_bytes += result.bytes
        builder.submit(schema, table)
    record = small.record_rows(run_id, unit_id, snapshot_id)
    for batch in small.batches(few, small.tables_per_transaction()):
        results = small.copy_batch(src, load, schema, {t: found[t][0] for t in batch}, record, allow_binary)
        total_bytes += sum(r.bytes for r in results)
        log.info("%s: %d small table(s), %d rows", ", ".join(batch), len(batch), sum(r.source_rows for r in results))
        builder.submit(schema, *batch)
    return total_bytes


class PsqlSource:
    """The source side of a unit's COPY streams: one ``psql`` child per table, in the unit's snapshot.

    Made from the unit's open source session (REPEATABLE READ, in the run's snapshot or its own):
    that session exports its snapshot, and every ``psql`` imports it, so all tables are read in
    the same cut. Endpoint settings and the password reach psql through its environment
    (``Endpoint.libpq_env``), never its arguments; its sessions carry the unit's tag, so a retry
    ends a killed attempt's streams like its other sessions.
    """

    #: Read size from the pipe (and requested pipe capacity): blocks handed to the target's COPY.
    BLOCK = WRITE_BATCH
    #: Keepalives as in ``Endpoint.conninfo`` (libpq has no environment variables for them).
    CONNINFO = "keepalives=1 keepalives_idle=30 keepalives_interval=10 keepalives_count=3"

    def __init__(self, source: Endpoint, app: str, src: psycopg.Connection):
        self.psql = pgtools.choose(src.info.server_version, "psql").path
        self.env = pgtools.child_env(source.libpq_env(app))
        self.snapshot = src.execute("SELECT pg_catalog.pg_export_snapshot()").fetchone()[0]
        self.prologue = [
            "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY",
            sql.SQL("SET TRANSACTION SNAPSHOT {}").format(sql.Literal(self.snapshot)).as_string(src),
        ]
        for name, value in {**SOURCE_SETTINGS, **TEXT_SETTINGS}.items():
            self.prologue.append(sql.SQL("SET {} = {}").format(sql.Identifier(name), sql.Literal(value)).as_string(src))
        self.quote = lambda part: part.as_string(src)

    @classmethod
    def for_unit(cls, source: Endpoint, app: str, src: psycopg.Connection) -> PsqlSource | None:
        """A PsqlSource, or None (rows then go through Python) when no fitting psql is installed."""
        try:
            return cls(source, app, src)
        except ConfigError as exc:
            log.warning("reading the source in Python: %s", exc)
            return None

    @staticmethod
    def can_carry(*names: str) -> bool:
        """``\\copy`` is one line: names with line breaks go through Python instead."""
        return not any(ch in name for name in names for ch in "\r\n")

    @contextlib.contextmanager
    def stream(self, schema: str, table: str, columns: list[str], binary: bool) -> Iterator[_PsqlStream]:
        what = sql.SQL("{}{}").format(ident(schema, table), column_list(columns))
        fmt = "binary" if binary else "text"
        args = [self.psql, "-X", "-d", self.CONNINFO, "-o", "/dev/stderr", "-v", "ON_ERROR_STOP=1"]
        for command in [*self.prologue, f"\\copy {self.quote(what)} to pstdout with (format {fmt})", "COMMIT"]:
            args += ["-c", command]
        proc = subprocess.Popen(
            args, env=self.env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        with contextlib.suppress(OSError):  # bigger pipe, fewer wake-ups (capped by fs.pipe-max-size)
            fcntl.fcntl(proc.stdout.fileno(), 1031, self.BLOCK)  # F_SETPIPE_SZ
        stream = _PsqlStream(proc, f"{schema}.{table}")
        try:
            yield stream
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
            proc.stdout.close()
            proc.stderr.close()


class _PsqlStream:
    COPIED = re.compile(r"^COPY (\d+)$", re.MULTILINE)

    def __init__(self, proc: subprocess.Popen, name: str):
        self.proc = proc
        self.name = name

    def blocks(self) -> Iterator[bytes]:
        read = self.proc.stdout.read
        while block := read(PsqlSource.BLOCK):
            yield block

    def finish(self) -> int:
        """psql's exit and its ``COPY n``: the rows read from the source. Raises UnitFailed if it failed."""
        output = self.proc.stderr.read().decode("utf-8", "replace")
        status = self.proc.wait()
        copied = self.COPIED.findall(output)
        if status != 0 or len(copied) != 1:
            errors = [line for line in output.splitlines() if "ERROR" in line or "FATAL" in line or "psql:" in line]
            why = errors[0] if errors else (output.strip().splitlines() or [f"exit status {status}"])[-1]
            raise UnitFailed(f"table {self.name}: reading the source failed (psql exit {status}): {why}")
        return int(copied[0])


@contextlib.contextmanager
def unchanged_since_the_cut(src: psycopg.Connection, schema: str, table: str, oid: int) -> Iterator[None]:
    """Holds the table's ACCESS SHARE lock on the unit's source session (in the run's snapshot) while
    its copy runs, once its file is checked to be the one that snapshot sees; raises UnitFailed naming
    the table otherwise. TRUNCATE and the rewriting ALTER TABLE forms are not MVCC-safe: an older
    snapshot sees the new file, empty or holding rows it cannot see. The lock is taken in a savepoint
    and let go with it after the copy, so a unit holds no lock on the tables it has finished."""
    src.execute("SAVEPOINT pg_migration_table")
    done = False
    try:
        src.execute(sql.SQL("LOCK TABLE ONLY {} IN ACCESS SHARE MODE").format(ident(schema, table)))
        in_snapshot, live = src.execute(catalog.FILENODES, {"oid": oid}).fetchone()
        small.refuse_if_moved(schema, table, in_snapshot, live)
        yield
        done = True
    finally:
        with contextlib.suppress(*(() if done else (psycopg.Error,))):  # never hides the copy's own error
            src.execute("ROLLBACK TO SAVEPOINT pg_migration_table")
            src.execute("RELEASE SAVEPOINT pg_migration_table")


def copy_table(
    src: psycopg.Connection,
    tgt: psycopg.Connection,
    schema: str,
    table: str,
    run_id: str,
    unit_id: str,
    snapshot_id: str | None,
    allow_binary: bool,
    reader: PsqlSource | None = None,
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
    col_list = column_list([c for c, _ in cols])
    result = TableResult(schema=schema, table=table, format="binary" if binary else "text")
    try:
        with unchanged_since_the_cut(src, schema, table, src_oid[0]), tgt.transaction():
            triggers = _prepare_target(tgt, schema, table)
            freeze = sql.SQL(", FREEZE") if not triggers else sql.SQL("")
            copy_in = sql.SQL("COPY {}{} FROM STDIN (FORMAT {}{})").format(name, col_list, fmt, freeze)
            columns = [c for c, _ in cols]
            with tgt.cursor() as tcur:
                if reader is not None and reader.can_carry(schema, table, *columns):
                    with tcur.copy(copy_in) as into, reader.stream(schema, table, columns, binary) as stream:
                        for block in stream.blocks():
                            result.bytes += len(block)
                            into.write(block)
                        result.source_rows = stream.finish()  # raises inside the COPY: it is aborted
                else:
                    result.source_rows = _copy_through_python(src, tcur, name, col_list, fmt, copy_in, result)
                result.target_rows = tcur.rowcount
            if triggers:
                tgt.execute(sql.SQL("ALTER TABLE {} ENABLE TRIGGER USER").format(name))
            if result.target_rows != result.source_rows:
                raise UnitFailed(
                    f"table {schema}.{table}: {result.source_rows} rows read from the source snapshot but "
                    f"{result.target_rows} loaded into the target"
                )
            result.seconds = time.monotonic() - started
            _record_table(tgt, result, run_id, unit_id, snapshot_id)
    except psycopg.Error as exc:
        raise UnitFailed(f"table {schema}.{table}: {pg_message(exc)}") from exc
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


def _prepare_target(tgt: psycopg.Connection, schema: str, table: str) -> bool:
    """In the table's load transaction: empty it for the COPY; True if it has user triggers (disabled)."""
    name = ident(schema, table)
    tgt_oid = tgt.execute(catalog.TABLE_OID, {"schema": schema, "name": table}).fetchone()
    if tgt_oid is None:
        raise UnitFailed(f"table {schema}.{table} does not exist on the target (did pre-data run?)")
    apply_settings(tgt, LOAD_SETTINGS)
    # A reload after post-data ran (resume): FKs would block TRUNCATE and triggers would
    # rewrite rows. Post-data puts the FKs back; triggers are re-enabled in this transaction.
    for fk_schema, fk_table, conname in tgt.execute(FKS_TOUCHING, {"oid": tgt_oid[0]}).fetchall():
        tgt.execute(
            sql.SQL("ALTER TABLE {} DROP CONSTRAINT {}").format(ident(fk_schema, fk_table), sql.Identifier(conname))
        )
    triggers = tgt.execute(HAS_USER_TRIGGERS, {"oid": tgt_oid[0]}).fetchone()[0]
    if triggers:
        tgt.execute(sql.SQL("ALTER TABLE {} DISABLE TRIGGER USER").format(name))
    tgt.execute(sql.SQL("TRUNCATE ONLY {}").format(name))
    return triggers


def _record_table(
    tgt: psycopg.Connection, result: TableResult, run_id: str, unit_id: str, snapshot_id: str | None
) -> None:
    """The table's record in ``_pg_migration.tables``: in its load transaction, so it commits with the rows."""
    tgt.execute(
        state.q(state.RECORD_TABLE),
        (
            result.schema,
            result.table,
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


def _copy_through_python(
    src: psycopg.Connection,
    tcur: psycopg.Cursor,
    name: sql.Identifier,
    col_list: sql.Composable,
    fmt: sql.Composable,
    copy_in: sql.Composable,
    result: TableResult,
) -> int:
    """The source's COPY read in Python; rows arrive one per chunk and leave in ~1 MiB writes."""
    copy_out = sql.SQL("COPY {}{} TO STDOUT (FORMAT {})").format(name, col_list, fmt)
    with src.cursor() as scur:
        with scur.copy(copy_out) as out, tcur.copy(copy_in) as into:
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
        return scur.rowcount


class IndexBuilder:
    """Builds finished tables' indexes/keys on its own target session while the next table loads.

    ``app`` is the unit's index-builder tag (``sessions.tag(run, unit, INDEX)``): a retry of the unit
    ends this session too."""

    def __init__(self, target: Endpoint, app: str, run_id: str):
        self.target = target
        self.app = app
        self.run_id = run_id
        self.jobs: queue.Queue[tuple[str, tuple[str, ...]] | None] = queue.Queue()
        self.errors: list[str] = []
        self.built: list[str] = []
        self.thread = threading.Thread(target=self._run, name="index-builder", daemon=True)

    def start(self) -> IndexBuilder:
        self.thread.start()
        return self

    def submit(self, schema: str, *tables: str) -> None:
        """Build these tables' indexes and keys next: one table alone, several (small) ones at once."""
        if tables:
            self.jobs.put((schema, tables))

    def finish(self) -> None:
        self.jobs.put(None)
        self.thread.join()
        if self.errors:
            raise UnitFailed("; ".join(self.errors))

    def _run(self) -> None:
        try:
            conn = self.target.connect(self.app, autocommit=True)
        except Exception as exc:  # noqa: BLE001 - reported by finish()
            self.errors.append(f"index builder cannot connect: {exc}")
            self._drain()
            return
        with conn:
            apply_settings(conn, INDEX_SETTINGS)
            while (job := self.jobs.get()) is not None:
                schema, tables = job
                if len(tables) > 1:
                    try:
                        self.built += small.build_batch(conn, self.run_id, schema, list(tables))
                        continue
                    except psycopg.Error:  # nothing of the batch applied: once more by table, to name it
                        log.info("index build of %d table(s) failed as a batch; again one by one", len(tables))
                for table in tables:
                    try:
                        self._build(conn, schema, table)
                    except psycopg.Error as exc:
                        self.errors.append(
                            f"table {schema}.{table}: building its indexes/keys failed: {pg_message(exc)}"
                        )

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
