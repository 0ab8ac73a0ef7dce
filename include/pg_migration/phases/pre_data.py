"""Schema phases: pre-data (all definitions, once, before any data) and post-data (what spans tables).

Pre-data runs ``pg_dump --section=pre-data`` of every selected schema at once, from the run's
snapshot, and applies it to the target in ONE transaction: selected schemas are dropped and
re-created (``public`` is merged into, never dropped), so a retry, or a re-run, starts from a clean
slate and a failure leaves the target as it was. One restore of all schemas resolves every
cross-schema dependency (a child whose parent lives elsewhere, a view over another schema, a
partition in another schema), whatever order the data units run in later.

It also dumps post-data and stores every entry in ``_pg_migration.ddl`` with the table it belongs
to: the data unit that loads a table builds that table's indexes and keys; post-data applies the
rest in dump order (foreign keys, triggers, index attachments, rules, policies) after all data,
then sets sequences, refreshes materialized views, carries database-level settings over and
analyzes partitioned parents. Every post-data step checks whether its object already exists, so
the phase can be retried.
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
from include.pg_migration.errors import MigrationError, UnitFailed
from include.pg_migration.pgtools import Entry, dump_schema, settings_for_target, split_entries
from include.pg_migration.phases.data import ddl_exists
from include.pg_migration.sessions import SOURCE_SETTINGS, apply_settings, open_source_snapshot

log = logging.getLogger(__name__)

FOR_ROLE = re.compile(r'ALTER DEFAULT PRIVILEGES FOR ROLE (?:"(?:[^"]|"")+"|\w+) ')

#: Post-data entry types whose failure is reported, not fatal (grants to roles the target lacks).
SOFT_KINDS = ("ACL", "DEFAULT ACL", "COMMENT")

#: Entry types that a data unit builds for the table it loaded.
UNIT_KINDS = ("INDEX", "CONSTRAINT")

EXTENSIONS = """
SELECT e.extname, n.nspname AS schema
  FROM pg_catalog.pg_extension e JOIN pg_catalog.pg_namespace n ON n.oid = e.extnamespace
 WHERE e.extname <> 'plpgsql'
 ORDER BY e.oid
"""

TRIGGER_OWNERS = """
SELECT n.nspname AS schema, c.relname || ' ' || t.tgname AS name, n.nspname AS table_schema, c.relname AS table_name
  FROM pg_catalog.pg_trigger t
  JOIN pg_catalog.pg_class c ON c.oid = t.tgrelid
  JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
 WHERE NOT t.tgisinternal AND n.nspname = ANY(%(schemas)s)
"""

TARGET_SCHEMAS = "SELECT nspname FROM pg_catalog.pg_namespace WHERE nspname = ANY(%(schemas)s)"

PUBLIC_RELATION_KIND = """
SELECT CASE c.relkind WHEN 'v' THEN 'VIEW' WHEN 'm' THEN 'MATERIALIZED VIEW' WHEN 'S' THEN 'SEQUENCE'
                      WHEN 'f' THEN 'FOREIGN TABLE' ELSE 'TABLE' END
  FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname = 'public' AND c.relname = %(name)s AND c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f')
   AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d
                    WHERE d.classid = 'pg_catalog.pg_class'::pg_catalog.regclass
                      AND d.objid = c.oid AND d.deptype = 'e')
"""

PUBLIC_ROUTINES = """
SELECT p.oid::pg_catalog.regprocedure::text
  FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
 WHERE n.nspname = 'public' AND p.proname = %(name)s
   AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d
                    WHERE d.classid = 'pg_catalog.pg_proc'::pg_catalog.regclass AND d.objid = p.oid AND d.deptype = 'e')
"""

PUBLIC_TYPE = """
SELECT CASE t.typtype WHEN 'd' THEN 'DOMAIN' ELSE 'TYPE' END
  FROM pg_catalog.pg_type t JOIN pg_catalog.pg_namespace n ON n.oid = t.typnamespace
 WHERE n.nspname = 'public' AND t.typname = %(name)s AND t.typtype IN ('c', 'd', 'e', 'r', 'm')
   AND (t.typrelid = 0 OR (SELECT relkind FROM pg_catalog.pg_class WHERE oid = t.typrelid) = 'c')
   AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d
                    WHERE d.classid = 'pg_catalog.pg_type'::pg_catalog.regclass AND d.objid = t.oid AND d.deptype = 'e')
"""

FK_TABLE_KIND = """
SELECT c.relkind::text FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname = %(schema)s AND c.relname = %(name)s
"""

PARTITIONED_TABLES = """
SELECT n.nspname, c.relname FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
 WHERE c.relkind = 'p' AND n.nspname = ANY(%(schemas)s)
"""


def _missing_role(exc: psycopg.Error) -> str | None:
    m = re.search(r'role "([^"]+)" does not exist', str(exc))
    return m.group(1) if m else None


def _settings_known(conn: psycopg.Connection) -> set[str]:
    return {r[0] for r in conn.execute("SELECT name FROM pg_catalog.pg_settings")}


def run_pre_data(source: Endpoint, target: Endpoint, run_id: str, app: str) -> dict[str, Any]:
    """Apply every selected schema's definitions to the target in one transaction; store post-data."""
    with target.connect(app) as tgt:
        run = state.get_run(tgt, run_id)
        if run is None:
            raise MigrationError(f"run {run_id!r} is not registered on the target (the plan task registers it)")
        schemas: list[str] = run["plan"]["schemas"]
        snapshot = run["snapshot_id"] if run["consistent"] else None
        resume = bool(run["params"].get("resume"))
        existing = {r[0] for r in tgt.execute(TARGET_SCHEMAS, {"schemas": schemas})}

        src = open_source_snapshot(source, app, snapshot)
        with src:
            version = catalog.server_version(src)
            snapshot_for_dump = snapshot or src.execute("SELECT pg_catalog.pg_export_snapshot()").fetchone()[0]
            owners = _owners(src, schemas)
            extensions = src.execute(EXTENSIONS).fetchall()
            matviews = src.execute(catalog.MATVIEWS, {"schemas": schemas}).fetchall()
            apply_schemas = [s for s in schemas if not (resume and s in existing)] if resume else schemas
            pre_text = (
                dump_schema(source, apply_schemas, "pre-data", snapshot_for_dump, version, app) if apply_schemas else ""
            )
            post_text = dump_schema(source, schemas, "post-data", snapshot_for_dump, version, app)

        warnings: list[str] = []
        if apply_schemas:
            preamble, entries = split_entries(pre_text)
            if run["params"].get("create_roles"):
                warnings += _create_roles(source, tgt, apply_schemas, app)
            warnings += _apply_pre_data(tgt, apply_schemas, existing, preamble, entries, extensions)
        else:
            log.info("resume: every selected schema already exists on the target; pre-data kept as is")
        _, post_entries = split_entries(post_text)
        count = _store_post_data(tgt, run_id, post_entries, owners, matviews)
        detail = {
            "schemas": apply_schemas,
            "kept_by_resume": sorted(set(schemas) - set(apply_schemas)),
            "warnings": warnings,
            "post_data_entries": count,
        }
        state.set_phase(tgt, run_id, "pre-data", "done", detail)
        for w in warnings:
            log.warning("pre-data: %s", w)
        return detail


def _create_roles(source: Endpoint, tgt: psycopg.Connection, schemas: list[str], app: str) -> list[str]:
    """Create (NOLOGIN, no password) the roles that grants on the schemas name but the target lacks."""
    from include.pg_migration.preflight import GRANTEES

    with source.connect(app, autocommit=True) as src:
        grantees = [r[0] for r in src.execute(GRANTEES, {"schemas": schemas})]
        owners = {r[0] for r in src.execute("SELECT rolname FROM pg_catalog.pg_roles WHERE rolsuper")}
    have = {r[0] for r in tgt.execute("SELECT rolname FROM pg_catalog.pg_roles")}
    notes = []
    for role in grantees:
        if role in have or role in owners:
            continue
        try:
            with tgt.transaction():
                tgt.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(role)))
            notes.append(f"role {role!r} created on the target (NOLOGIN, no password: set one if it must log in)")
        except psycopg.Error as exc:
            notes.append(f"role {role!r} could not be created: {str(exc).strip().splitlines()[0]}")
    return notes


def _owners(src: psycopg.Connection, schemas: list[str]) -> dict[tuple[str, str, str], tuple[str, str]]:
    """(kind, schema, TOC name) -> (table schema, table name) for indexes, constraints and triggers."""
    owners: dict[tuple[str, str, str], tuple[str, str]] = {}
    for row in src.execute(catalog.INDEX_OWNERS, {"schemas": schemas}):
        owners[("INDEX", row[0], row[1])] = (row[2], row[3])
    for row in src.execute(catalog.CONSTRAINT_OWNERS, {"schemas": schemas}):
        kind = "FK CONSTRAINT" if row[2] == "f" else ("CHECK CONSTRAINT" if row[2] == "c" else "CONSTRAINT")
        owners[(kind, row[0], row[1])] = (row[3], row[4])
    for row in src.execute(TRIGGER_OWNERS, {"schemas": schemas}):
        owners[("TRIGGER", row[0], row[1])] = (row[2], row[3])
    return owners


def _apply_pre_data(
    tgt: psycopg.Connection,
    schemas: list[str],
    existing: set[str],
    preamble: list[str],
    entries: list[Entry],
    extensions: list[tuple[str, str]],
) -> list[str]:
    warnings: list[str] = []
    known = _settings_known(tgt)
    with tgt.transaction():
        for line in settings_for_target(preamble, known):
            tgt.execute(line)
        # Clear what a previous attempt or run left: the whole schema, or (public) the objects we re-create.
        for schema in schemas:
            if schema == "public":
                _clear_public(tgt, entries)
            elif schema in existing:
                tgt.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))
        tgt.execute(state.q("DELETE FROM {s}.tables WHERE schema_name = ANY(%s)"), (schemas,))
        schema_entries = [e for e in entries if e.type == "SCHEMA"]
        for entry in schema_entries:
            if entry.name == "public":
                continue  # exists on every target, owned by pg_database_owner: merge into it
            _execute(tgt, entry)
        for extname, ext_schema in extensions:
            _create_extension(tgt, extname, ext_schema)
        for entry in entries:
            if entry.type == "SCHEMA":
                continue
            if entry.type == "ACL" or (entry.type == "COMMENT" and entry.name.startswith("SCHEMA ")):
                # Grants to roles missing on the target are reported by name, never fatal; a
                # REVOKE ... FROM PUBLIC always applies (it names no role).
                try:
                    with tgt.transaction():
                        tgt.execute(entry.sql)
                except psycopg.Error as exc:
                    role = _missing_role(exc)
                    what = f"{entry.type} on {entry.schema + '.' if entry.schema else ''}{entry.name}"
                    warnings.append(
                        f"{what} not applied: role {role!r} does not exist on the target"
                        if role
                        else f"{what} not applied: {str(exc).strip().splitlines()[0]}"
                    )
                continue
            _execute(tgt, entry)
    return warnings


def _execute(tgt: psycopg.Connection, entry: Entry) -> None:
    try:
        with tgt.transaction():
            tgt.execute(entry.sql)
    except psycopg.Error as exc:
        where = f"{entry.schema}.{entry.name}" if entry.schema else entry.name
        raise UnitFailed(
            f"pre-data: cannot create {entry.type} {where} on the target: {str(exc).strip().splitlines()[0]}"
        ) from None


def _create_extension(tgt: psycopg.Connection, extname: str, ext_schema: str) -> None:
    have = tgt.execute("SELECT 1 FROM pg_catalog.pg_extension WHERE extname = %s", (extname,)).fetchone()
    if have:
        return
    if not tgt.execute("SELECT 1 FROM pg_catalog.pg_namespace WHERE nspname = %s", (ext_schema,)).fetchone():
        stmt = sql.SQL("CREATE EXTENSION IF NOT EXISTS {}").format(sql.Identifier(extname))
    else:
        stmt = sql.SQL("CREATE EXTENSION IF NOT EXISTS {} WITH SCHEMA {}").format(
            sql.Identifier(extname), sql.Identifier(ext_schema)
        )
    try:
        with tgt.transaction():
            tgt.execute(stmt)
    except psycopg.Error as exc:
        raise UnitFailed(
            f"pre-data: extension {extname!r} (used by the source) cannot be created on the target: "
            f"{str(exc).strip().splitlines()[0]}. Ask the target's administrator to create it "
            "(on Aurora: allowed by rds.allowed_extensions), then retry."
        ) from None


def _clear_public(tgt: psycopg.Connection, entries: list[Entry]) -> None:
    """Drop the objects of ``public`` that the dump re-creates (never the schema, never extension objects)."""
    for entry in entries:
        if entry.schema != "public":
            continue
        if entry.type in ("TABLE", "VIEW", "MATERIALIZED VIEW", "SEQUENCE", "FOREIGN TABLE"):
            row = tgt.execute(PUBLIC_RELATION_KIND, {"name": entry.name}).fetchone()
            if row:
                tgt.execute(
                    sql.SQL("DROP {} IF EXISTS {} CASCADE").format(
                        sql.SQL(row[0]), sql.Identifier("public", entry.name)
                    )
                )
        elif entry.type in ("FUNCTION", "PROCEDURE", "AGGREGATE"):
            for (signature,) in tgt.execute(PUBLIC_ROUTINES, {"name": entry.name.split("(")[0]}).fetchall():
                kind = "AGGREGATE" if entry.type == "AGGREGATE" else "ROUTINE"
                tgt.execute(sql.SQL("DROP {} IF EXISTS {} CASCADE").format(sql.SQL(kind), sql.SQL(signature)))
        elif entry.type in ("TYPE", "DOMAIN"):
            row = tgt.execute(PUBLIC_TYPE, {"name": entry.name}).fetchone()
            if row:
                tgt.execute(
                    sql.SQL("DROP {} IF EXISTS {} CASCADE").format(
                        sql.SQL(row[0]), sql.Identifier("public", entry.name)
                    )
                )


def _store_post_data(
    tgt: psycopg.Connection,
    run_id: str,
    entries: list[Entry],
    owners: dict[tuple[str, str, str], tuple[str, str]],
    matviews: list[tuple],
) -> int:
    rows = []
    for seq, entry in enumerate(entries, start=1):
        table = owners.get((entry.type, entry.schema or "", entry.name), (None, None))
        statement = entry.sql
        if entry.type == "DEFAULT ACL":
            # Objects are owned by the target's user (no ownership commands), so the source owner's
            # default privileges become the target user's: drop "FOR ROLE <source owner>".
            statement = FOR_ROLE.sub("ALTER DEFAULT PRIVILEGES ", statement)
        rows.append((run_id, seq, entry.type, entry.schema, entry.name, table[0], table[1], statement))
    seq = len(rows)
    for schema, name, populated in matviews:
        if populated:
            seq += 1
            stmt = sql.SQL("REFRESH MATERIALIZED VIEW {}").format(sql.Identifier(schema, name)).as_string(tgt)
            rows.append((run_id, seq, "MATVIEW REFRESH", schema, name, None, None, stmt))
    with tgt.transaction():
        tgt.execute(state.q("DELETE FROM {s}.ddl WHERE run_id = %s"), (run_id,))
        with tgt.cursor() as cur:
            cur.executemany(
                state.q("""INSERT INTO {s}.ddl
                                  (run_id, seq, kind, schema_name, name, table_schema, table_name, statement)
                           VALUES (%s, %s, %s, %s, %s, %s, %s, %s)"""),
                rows,
            )
    return len(rows)


# -- post-data ---------------------------------------------------------------------------------------


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
    failures: list[str] = []
    warnings: list[str] = []
    with target.connect(app, autocommit=True) as tgt:
        run = state.get_run(tgt, run_id)
        consistent = run["consistent"]
        schemas = run["plan"]["schemas"]
        apply_settings(tgt, {"maintenance_work_mem": "512MB"})
        with tgt.cursor(row_factory=dict_row) as cur:
            entries = cur.execute(state.q("SELECT * FROM {s}.ddl WHERE run_id = %s ORDER BY seq"), (run_id,)).fetchall()
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
        log.info("post-data: %d entries applied in dump order (%.1fs)", len(entries), time.monotonic() - started)
        partitioned = tgt.execute(PARTITIONED_TABLES, {"schemas": schemas}).fetchall()
        # One job per referencing table: its validations take SHARE UPDATE EXCLUSIVE on it, so they
        # run one after another anyway; longest first (its rows x its keys).
        by_table: dict[tuple[str, str], list[dict[str, Any]]] = {}
        for entry in to_validate:
            by_table.setdefault((entry["table_schema"], entry["table_name"]), []).append(entry)
        rows = {key: _rows(tgt, entries[0]) for key, entries in by_table.items()}
        validations = sorted(by_table.items(), key=lambda item: -rows[item[0]] * len(item[1]))
        jobs: list[tuple[str, Any]] = [("refresh", refreshes)] if refreshes else []
        jobs += [("validate", entries) for _, entries in validations] + [("analyze", t) for t in partitioned]
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
