"""The post-data phase (the ``post_data`` task, worker phase ``post-data``): what spans tables, after all data.

Pre-data (:mod:`include.pg_migration.phases.pre_data`) stored every post-data entry of the dump in
``_pg_migration.ddl`` with the table it belongs to; the data units built their own tables' indexes
and keys. This phase applies the rest in dump order (foreign keys, triggers, index attachments,
rules, policies), then validates the foreign keys and refreshes materialized views on several
sessions, sets sequences, carries database-level settings over and analyzes partitioned parents.
Every step checks whether its object already exists (:func:`include.pg_migration.loading.ddl_exists`),
so the phase can be retried.
"""

from __future__ import annotations

import logging
import queue
import re
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from include.pg_migration import catalog, state
from include.pg_migration.conn import Endpoint
from include.pg_migration.errors import UnitFailed
from include.pg_migration.loading import ddl_exists
from include.pg_migration.sessions import SOURCE_SETTINGS, apply_settings

log = logging.getLogger(__name__)

#: Post-data entry types whose failure is reported, not fatal (grants to roles the target lacks).
SOFT_KINDS = ("ACL", "DEFAULT ACL", "COMMENT")

FK_TABLE_KIND = """
SELECT c.relkind::text FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname = %(schema)s AND c.relname = %(name)s
"""

PARTITIONED_TABLES = """
SELECT n.nspname, c.relname FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
 WHERE c.relkind = 'p' AND n.nspname = ANY(%(schemas)s)
"""


def run_post_data(source: Endpoint, target: Endpoint, run_id: str, app: str) -> dict[str, Any]:
    """Apply the remaining post-data entries, set sequences, carry settings over, analyze.

    Two passes. In dump order, on one session: every entry, foreign keys on plain tables added
    ``NOT VALID`` (instant: no scan). Then, on ``pool_size`` sessions at once (pgcopydb's parallel
    constraint phase): ``VALIDATE CONSTRAINT`` of those keys, one job per referencing table (a
    validation takes SHARE UPDATE EXCLUSIVE on it, so its keys go one after another anyway, and ROW
    SHARE on the referenced table, so validations never deadlock each other), most rows first; the
    materialized views' refreshes in dump order on a lane of their own; ANALYZE of partitioned parents.
    A key is recorded as applied only once validated, so a retry validates what an interrupted attempt left NOT VALID.
    """
    started = time.monotonic()
    with target.connect(app, autocommit=True) as tgt:
        run = state.get_run(tgt, run_id)
        consistent = run["consistent"]
        schemas = run["plan"]["schemas"]
        apply_settings(tgt, {"maintenance_work_mem": "512MB"})
        with tgt.cursor(row_factory=dict_row) as cur:
            entries = cur.execute(state.q("SELECT * FROM {s}.ddl WHERE run_id = %s ORDER BY seq"), (run_id,)).fetchall()
        to_validate, refreshes, failures, warnings = _apply_in_dump_order(tgt, run_id, entries)
        log.info("post-data: %d entries applied in dump order (%.1fs)", len(entries), time.monotonic() - started)
        partitioned = tgt.execute(PARTITIONED_TABLES, {"schemas": schemas}).fetchall()
        jobs = _parallel_jobs(tgt, to_validate, refreshes, partitioned)
        workers = max(1, min(MAX_POST_DATA_SESSIONS, int(run["params"].get("pool_size") or 2), len(jobs)))
        failures += _parallel(target, app, run_id, jobs, workers, consistent)
        log.info(
            "post-data: %d key validation(s), %d refresh(es), %d ANALYZE on %d session(s) (%.1fs)",
            len(to_validate),
            len(refreshes),
            len(partitioned),
            workers,
            time.monotonic() - started,
        )
        sequences = _set_sequences(source, tgt, schemas, app)
        warnings += _database_settings(source, target, tgt, app)
        log.info("post-data: sequences and settings done (%.1fs)", time.monotonic() - started)
        detail = {
            "failures": failures,
            "warnings": warnings,
            "sequences": sequences,
            "not_valid_fks": len(to_validate),
            "sessions": workers,
        }
        state.set_phase(tgt, run_id, "post-data", "failed" if failures else "done", detail)
    for w in warnings:
        log.warning("post-data: %s", w)
    if failures:
        raise UnitFailed(f"post-data: {len(failures)} statement(s) failed: " + "; ".join(failures))
    return detail


def _apply_in_dump_order(
    tgt: psycopg.Connection, run_id: str, entries: list[dict[str, Any]]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[str], list[str]]:
    """The first pass, on one session: every entry not applied yet, foreign keys on plain tables added
    ``NOT VALID``. Returns the keys left to validate, the matviews' refreshes, failures and warnings."""
    failures: list[str] = []
    warnings: list[str] = []
    to_validate: list[dict[str, Any]] = []
    refreshes: list[dict[str, Any]] = []
    for entry in entries:
        if entry["kind"] == "MATVIEW REFRESH":
            refreshes.append(entry)  # always: a resumed run may have reloaded its tables
            continue
        if entry["applied_at"] is not None:
            continue
        deferred_fk = (
            entry["kind"] == "FK CONSTRAINT"
            and not NOT_VALID.search(entry["statement"])  # NOT VALID on the source: stays so
            and _fk_can_be_not_valid(tgt, entry)
        )
        if ddl_exists(tgt, entry):
            if deferred_fk and not _fk_validated(tgt, entry):
                to_validate.append(entry)  # an interrupted attempt added it NOT VALID
            else:
                _mark(tgt, run_id, entry)
            continue
        statement = entry["statement"]
        if deferred_fk:
            statement = re.sub(r";\s*$", " NOT VALID;", statement)
        try:
            with tgt.transaction():
                tgt.execute(statement)
            if deferred_fk:
                to_validate.append(entry)
            else:
                _mark(tgt, run_id, entry)
        except psycopg.Error as exc:
            message = f"{entry['kind']} {entry['schema_name']}.{entry['name']}: {str(exc).strip().splitlines()[0]}"
            (warnings if entry["kind"] in SOFT_KINDS else failures).append(message)
    return to_validate, refreshes, failures, warnings


def _parallel_jobs(
    tgt: psycopg.Connection,
    to_validate: list[dict[str, Any]],
    refreshes: list[dict[str, Any]],
    partitioned: list[tuple],
) -> list[tuple[str, Any]]:
    """The second pass's jobs: the refreshes' lane, the key validations, the ANALYZEs."""
    # One job per referencing table: its validations take SHARE UPDATE EXCLUSIVE on it, so they
    # run one after another anyway; longest first (its rows x its keys).
    by_table: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for entry in to_validate:
        by_table.setdefault((entry["table_schema"], entry["table_name"]), []).append(entry)
    rows = {key: _rows(tgt, entries[0]) for key, entries in by_table.items()}
    validations = sorted(by_table.items(), key=lambda item: -rows[item[0]] * len(item[1]))
    jobs: list[tuple[str, Any]] = [("refresh", refreshes)] if refreshes else []
    jobs += [("validate", entries) for _, entries in validations] + [("analyze", t) for t in partitioned]
    return jobs


NOT_VALID = re.compile(r"\bNOT VALID\s*;\s*$")

#: Upper bound of post-data's parallel sessions (pool_size below it wins).
MAX_POST_DATA_SESSIONS = 8

FK_VALIDATED = """
SELECT k.convalidated FROM pg_catalog.pg_constraint k
 WHERE k.conname = %(name)s
   AND k.conrelid = pg_catalog.to_regclass(pg_catalog.format('%%I.%%I', %(schema)s::text, %(table)s::text))
"""

#: A key validation's cost: the referencing table's rows (each one probes the referenced key); the
#: units ANALYZEd every table, so the estimate is current.
TABLE_ROWS = """
SELECT c.reltuples::bigint FROM pg_catalog.pg_class c
 WHERE c.oid = pg_catalog.to_regclass(pg_catalog.format('%%I.%%I', %(schema)s::text, %(table)s::text))
"""


#: Whether the validation's anti join should walk two indexes in key order (merge join) instead of
#: hashing the referenced keys: a btree index of the referencing table leads with exactly the key's
#: columns (any order), without a predicate, and the referenced table is big enough (>= 100 000 rows)
#: for its hash table to outgrow the CPU caches (a smaller one stays in them: hashing is as fast).
FK_LEADING_INDEX = """
SELECT EXISTS (
  SELECT 1
    FROM pg_catalog.pg_constraint k
    JOIN pg_catalog.pg_class r ON r.oid = k.confrelid AND r.reltuples >= 100000
    JOIN pg_catalog.pg_index i ON i.indrelid = k.conrelid
    JOIN pg_catalog.pg_class ic ON ic.oid = i.indexrelid
    JOIN pg_catalog.pg_am am ON am.oid = ic.relam
   WHERE k.conname = %(name)s
     AND k.conrelid = pg_catalog.to_regclass(pg_catalog.format('%%I.%%I', %(schema)s::text, %(table)s::text))
     AND am.amname = 'btree' AND i.indisvalid AND i.indpred IS NULL
     AND i.indnkeyatts >= pg_catalog.cardinality(k.conkey)
     AND (SELECT pg_catalog.array_agg(a ORDER BY a)
            FROM pg_catalog.unnest((i.indkey::pg_catalog.int2[])[0:pg_catalog.cardinality(k.conkey) - 1]) a)
       = (SELECT pg_catalog.array_agg(a ORDER BY a) FROM pg_catalog.unnest(k.conkey) a))
"""


def _conname(entry: dict[str, Any]) -> str:
    return entry["name"][len(entry["table_name"]) + 1 :]


def _table_params(entry: dict[str, Any]) -> dict[str, str]:
    return {"schema": entry["table_schema"], "table": entry["table_name"], "name": _conname(entry)}


def _rows(tgt: psycopg.Connection, entry: dict[str, Any]) -> int:
    row = tgt.execute(TABLE_ROWS, _table_params(entry)).fetchone()
    return max(0, row[0] or 0) if row else 0


def _fk_validated(tgt: psycopg.Connection, entry: dict[str, Any]) -> bool:
    row = tgt.execute(FK_VALIDATED, _table_params(entry)).fetchone()
    return bool(row and row[0])


def _parallel(
    target: Endpoint, app: str, run_id: str, jobs: list[tuple[str, Any]], workers: int, consistent: bool
) -> list[str]:
    """Run post-data's independent jobs on ``workers`` target sessions; return the failures."""
    if not jobs:
        return []
    sessions: queue.Queue[psycopg.Connection] = queue.Queue()
    for _ in range(workers):
        conn = target.connect(app, autocommit=True)
        apply_settings(conn, {"maintenance_work_mem": "512MB"})
        sessions.put(conn)

    def run(job: tuple[str, Any]) -> list[str]:
        conn = sessions.get()
        try:
            return _post_data_job(conn, run_id, job, consistent)
        finally:
            sessions.put(conn)

    try:
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="post-data") as pool:
            return [failure for failures in pool.map(run, jobs) for failure in failures]
    finally:
        while not sessions.empty():
            sessions.get().close()


def _post_data_job(conn: psycopg.Connection, run_id: str, job: tuple[str, Any], consistent: bool) -> list[str]:
    started = time.monotonic()
    try:
        return _run_post_data_job(conn, run_id, job, consistent)
    finally:
        log.info("post-data: %s %s (%.1fs)", job[0], _job_name(job), time.monotonic() - started)


def _job_name(job: tuple[str, Any]) -> str:
    kind, what = job
    if kind == "analyze":
        return ".".join(what)
    if kind == "refresh":
        return ", ".join(f"{e['schema_name']}.{e['name']}" for e in what)
    return f"{what[0]['table_schema']}.{what[0]['table_name']}: " + ", ".join(_conname(e) for e in what)


def _run_post_data_job(conn: psycopg.Connection, run_id: str, job: tuple[str, Any], consistent: bool) -> list[str]:
    kind, what = job
    if kind == "analyze":
        conn.execute(sql.SQL("ANALYZE {}").format(sql.Identifier(*what)))
        return []
    if kind == "refresh":
        failures = []
        for entry in what:
            try:
                conn.execute(entry["statement"])
                _mark(conn, run_id, entry)
            except psycopg.Error as exc:
                failures.append(f"MATVIEW REFRESH {entry['schema_name']}.{entry['name']}: {_first_line(exc)}")
        return failures
    failures = []
    for entry in what:
        name = f"{entry['table_schema']}.{entry['table_name']}.{_conname(entry)}"
        try:
            with conn.transaction():
                if conn.execute(FK_LEADING_INDEX, _table_params(entry)).fetchone()[0]:
                    # PostgreSQL checks the key with one anti join (referencing LEFT JOIN referenced). Its
                    # planner picks a hash join, whose probes miss the CPU caches once the referenced
                    # keys outgrow them; walking the referencing index beside the referenced key's
                    # (a merge join of two index-only scans: freshly COPY ... FREEZE-loaded tables are
                    # all-visible) is 3-7x faster (20.6 M order lines: 16.2 s -> 4.4 s for two keys).
                    # Only for this statement; the planner still chooses merge or nested loop.
                    conn.execute("SET LOCAL enable_hashjoin = off")
                conn.execute(
                    sql.SQL("ALTER TABLE {} VALIDATE CONSTRAINT {}").format(
                        sql.Identifier(entry["table_schema"], entry["table_name"]), sql.Identifier(_conname(entry))
                    )
                )
            _mark(conn, run_id, entry)
        except psycopg.Error as exc:
            why = "" if consistent else " (rows changed between unit snapshots)"
            failures.append(f"foreign key {name} is violated{why}: {_first_line(exc)}")
    return failures


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def _mark(tgt: psycopg.Connection, run_id: str, entry: dict[str, Any]) -> None:
    tgt.execute(state.q("UPDATE {s}.ddl SET applied_at = now() WHERE run_id = %s AND seq = %s"), (run_id, entry["seq"]))


def _fk_can_be_not_valid(tgt: psycopg.Connection, entry: dict[str, Any]) -> bool:
    if not entry.get("table_name"):
        return False
    row = tgt.execute(FK_TABLE_KIND, {"schema": entry["table_schema"], "name": entry["table_name"]}).fetchone()
    return bool(row) and row[0] == "r"  # NOT VALID FKs on partitioned tables need PostgreSQL 18


def _set_sequences(source: Endpoint, tgt: psycopg.Connection, schemas: list[str], app: str) -> list[dict[str, Any]]:
    """Sequences are not transactional: copy their current value (>= anything the copied rows used)."""
    out = []
    with source.connect(app, autocommit=True) as src:
        apply_settings(src, SOURCE_SETTINGS)
        for schema, name in src.execute(catalog.SEQUENCES, {"schemas": schemas}).fetchall():
            seq = sql.Identifier(schema, name)
            last_value, is_called = src.execute(sql.SQL("SELECT last_value, is_called FROM {}").format(seq)).fetchone()
            tgt.execute(
                "SELECT pg_catalog.setval(%s::regclass, %s, %s)",
                (sql.Identifier(schema, name).as_string(tgt), last_value, is_called),
            )
            out.append({"schema": schema, "name": name, "value": last_value, "is_called": is_called})
    return out


def _database_settings(source: Endpoint, target: Endpoint, tgt: psycopg.Connection, app: str) -> list[str]:
    """``ALTER DATABASE ... SET`` and ``ALTER ROLE ... IN DATABASE ... SET`` of the source database."""
    warnings: list[str] = []
    with source.connect(app, autocommit=True) as src:
        rows = src.execute(catalog.DATABASE_SETTINGS).fetchall()
    db = sql.Identifier(target.dbname)
    for role, settings in rows:
        for item in settings or []:
            name, _, value = item.partition("=")
            target_clause = (
                sql.SQL("DATABASE {}").format(db)
                if role is None
                else sql.SQL("ROLE {} IN DATABASE {}").format(sql.Identifier(role), db)
            )
            try:
                with tgt.transaction():
                    tgt.execute("SELECT pg_catalog.set_config(%s, %s, true)", (name, value))
                    tgt.execute(sql.SQL("ALTER {} SET {} FROM CURRENT").format(target_clause, sql.Identifier(name)))
            except psycopg.Error as exc:
                who = "database" if role is None else f"role {role!r} in database"
                warnings.append(f"{who} setting {name}={value} not applied: {str(exc).strip().splitlines()[0]}")
    return warnings
