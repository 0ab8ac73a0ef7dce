"""The migration's own state, kept in the TARGET in schema ``_pg_migration``.

Why the target: resume, retries and the overlap guard must survive the loss of any Airflow worker
or metadata DB, and a unit must record "this table is loaded and counted" in the same transaction
as the rows themselves, so the record can never disagree with the data.

Tables (all keyed so that a retried unit overwrites, never duplicates):

``runs``      one row per DAG run: params, plan, the exported snapshot and its holder's heartbeat.
``units``     one row per unit of a run: its definition (read by the worker), status, attempts.
``tables``    one row per migrated table (latest load wins): run, snapshot, rows counted in the
              source snapshot and in the target right after the load, bytes, seconds.
``ddl``       the run's post-data statements (from ``pg_dump``), with the table each one belongs
              to: a data unit builds its tables' indexes and keys from here, post-data the rest.
``phases``    pre-data / large objects / post-data: status and details (warnings) per run.
``validations`` one row per (run, schema): the validation result the report is built from.
``created``   what a run's pre-data created, written in its transaction: the schemas it (re-)created and
              whether each existed before the run (a retry drops these as the run's own).
``guard``     at most one row: the run that currently holds the target (spans every DAG).

Remove it all with ``python -m include.pg_migration.state drop`` (or ``DROP SCHEMA _pg_migration CASCADE``).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import time
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from include.pg_migration import STATE_SCHEMA
from include.pg_migration.conn import Endpoint
from include.pg_migration.errors import GuardHeld

S = sql.Identifier(STATE_SCHEMA)

DDL = """
CREATE SCHEMA IF NOT EXISTS {s};
CREATE TABLE IF NOT EXISTS {s}.runs (
    run_id text PRIMARY KEY,
    dag_id text NOT NULL,
    started_at timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz,
    consistent boolean NOT NULL DEFAULT true,
    params jsonb NOT NULL DEFAULT '{{}}',
    plan jsonb NOT NULL DEFAULT '{{}}',
    source jsonb NOT NULL DEFAULT '{{}}',
    snapshot_id text,
    snapshot_taken_at timestamptz,
    holder_heartbeat timestamptz,
    holder_where text,
    release_requested boolean NOT NULL DEFAULT false,
    snapshot_released_at timestamptz,
    status text NOT NULL DEFAULT 'running'
);
CREATE TABLE IF NOT EXISTS {s}.units (
    run_id text NOT NULL,
    unit_id text NOT NULL,
    definition jsonb NOT NULL,
    status text NOT NULL DEFAULT 'planned',
    attempts int NOT NULL DEFAULT 0,
    started_at timestamptz,
    finished_at timestamptz,
    seconds double precision,
    bytes bigint,
    error text,
    PRIMARY KEY (run_id, unit_id)
);
CREATE TABLE IF NOT EXISTS {s}.tables (
    schema_name text NOT NULL,
    table_name text NOT NULL,
    run_id text NOT NULL,
    unit_id text NOT NULL,
    snapshot_id text,
    source_rows bigint NOT NULL,
    target_rows bigint NOT NULL,
    bytes bigint,
    copy_format text,
    seconds double precision,
    loaded_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (schema_name, table_name)
);
CREATE TABLE IF NOT EXISTS {s}.ddl (
    run_id text NOT NULL,
    seq int NOT NULL,
    kind text NOT NULL,
    schema_name text,
    name text,
    table_schema text,
    table_name text,
    statement text NOT NULL,
    applied_at timestamptz,
    PRIMARY KEY (run_id, seq)
);
CREATE TABLE IF NOT EXISTS {s}.phases (
    run_id text NOT NULL,
    phase text NOT NULL,
    status text NOT NULL,
    finished_at timestamptz,
    detail jsonb NOT NULL DEFAULT '{{}}',
    PRIMARY KEY (run_id, phase)
);
CREATE TABLE IF NOT EXISTS {s}.validations (
    run_id text NOT NULL,
    schema_name text NOT NULL,
    result jsonb NOT NULL,
    validated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (run_id, schema_name)
);
CREATE TABLE IF NOT EXISTS {s}.created (
    run_id text NOT NULL,
    kind text NOT NULL,
    name text NOT NULL,
    existed_before boolean NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (run_id, kind, name)
);
CREATE TABLE IF NOT EXISTS {s}.guard (
    id int PRIMARY KEY DEFAULT 1 CHECK (id = 1),
    run_id text NOT NULL,
    dag_id text NOT NULL,
    acquired_at timestamptz NOT NULL DEFAULT now()
);
"""

# Serialises concurrent `CREATE ... IF NOT EXISTS` from parallel units (it is not race-free by itself).
_DDL_LOCK_KEY = 0x70676D6967  # "pgmig"


def q(text: str, **identifiers: Any) -> sql.Composed:
    """Format a statement of this module: ``{s}`` is the state schema."""
    return sql.SQL(text).format(s=S, **identifiers)


def ensure(conn: psycopg.Connection) -> None:
    """Create the state schema and tables if missing (idempotent, safe in parallel)."""
    with conn.transaction():
        conn.execute("SELECT pg_catalog.pg_advisory_xact_lock(%s)", (_DDL_LOCK_KEY,))
        conn.execute(q(DDL))


def drop(conn: psycopg.Connection) -> None:
    with conn.transaction():
        conn.execute(q("DROP SCHEMA IF EXISTS {s} CASCADE"))


# -- runs ---------------------------------------------------------------------------------------


def start_run(conn: psycopg.Connection, run_id: str, dag_id: str, params: dict, consistent: bool) -> None:
    with conn.transaction():
        conn.execute(
            q("""INSERT INTO {s}.runs (run_id, dag_id, params, consistent) VALUES (%s, %s, %s, %s)
                 ON CONFLICT (run_id) DO UPDATE SET params = EXCLUDED.params, consistent = EXCLUDED.consistent"""),
            (run_id, dag_id, Jsonb(params), consistent),
        )


def get_run(conn: psycopg.Connection, run_id: str) -> dict[str, Any] | None:
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(q("SELECT * FROM {s}.runs WHERE run_id = %s"), (run_id,)).fetchone()


def set_run(conn: psycopg.Connection, run_id: str, **values: Any) -> None:
    values = {k: (Jsonb(v) if isinstance(v, (dict, list)) else v) for k, v in values.items()}
    assignments = sql.SQL(", ").join(sql.SQL("{} = %s").format(sql.Identifier(k)) for k in values)
    with conn.transaction():
        conn.execute(
            sql.SQL("UPDATE {s}.runs SET {a} WHERE run_id = %s").format(s=S, a=assignments),
            (*values.values(), run_id),
        )


# -- units ----------------------------------------------------------------------------------------


def save_units(conn: psycopg.Connection, run_id: str, units: list[dict[str, Any]]) -> None:
    with conn.transaction():
        conn.execute(q("DELETE FROM {s}.units WHERE run_id = %s"), (run_id,))
        with conn.cursor() as cur:
            cur.executemany(
                q("INSERT INTO {s}.units (run_id, unit_id, definition) VALUES (%s, %s, %s)"),
                [(run_id, u["unit_id"], Jsonb(u)) for u in units],
            )


def get_unit(conn: psycopg.Connection, run_id: str, unit_id: str) -> dict[str, Any] | None:
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            q("SELECT * FROM {s}.units WHERE run_id = %s AND unit_id = %s"), (run_id, unit_id)
        ).fetchone()


def units_of_run(conn: psycopg.Connection, run_id: str) -> list[dict[str, Any]]:
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(q("SELECT * FROM {s}.units WHERE run_id = %s ORDER BY unit_id"), (run_id,)).fetchall()


def unit_started(conn: psycopg.Connection, run_id: str, unit_id: str) -> int:
    with conn.transaction():
        row = conn.execute(
            q("""UPDATE {s}.units SET status = 'running', attempts = attempts + 1, started_at = now(),
                        finished_at = NULL, error = NULL
                  WHERE run_id = %s AND unit_id = %s RETURNING attempts"""),
            (run_id, unit_id),
        ).fetchone()
    return row[0] if row else 0


def unit_finished(
    conn: psycopg.Connection,
    run_id: str,
    unit_id: str,
    status: str,
    seconds: float,
    nbytes: int | None = None,
    error: str | None = None,
) -> None:
    with conn.transaction():
        conn.execute(
            q("""UPDATE {s}.units SET status = %s, finished_at = now(), seconds = %s,
                        bytes = coalesce(%s, bytes), error = %s
                  WHERE run_id = %s AND unit_id = %s"""),
            (status, seconds, nbytes, error, run_id, unit_id),
        )


# -- tables ---------------------------------------------------------------------------------------

RECORD_TABLE = """
INSERT INTO {s}.tables (schema_name, table_name, run_id, unit_id, snapshot_id, source_rows, target_rows,
                        bytes, copy_format, seconds, loaded_at)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, now())
ON CONFLICT (schema_name, table_name) DO UPDATE
   SET run_id = EXCLUDED.run_id, unit_id = EXCLUDED.unit_id, snapshot_id = EXCLUDED.snapshot_id,
       source_rows = EXCLUDED.source_rows, target_rows = EXCLUDED.target_rows, bytes = EXCLUDED.bytes,
       copy_format = EXCLUDED.copy_format, seconds = EXCLUDED.seconds, loaded_at = now()
"""


def loaded_tables(conn: psycopg.Connection, schemas: list[str]) -> dict[tuple[str, str], dict[str, Any]]:
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(q("SELECT * FROM {s}.tables WHERE schema_name = ANY(%s)"), (schemas,)).fetchall()
    return {(r["schema_name"], r["table_name"]): r for r in rows}


# -- phases ---------------------------------------------------------------------------------------


def set_phase(conn: psycopg.Connection, run_id: str, phase: str, status: str, detail: dict | None = None) -> None:
    with conn.transaction():
        conn.execute(
            q("""INSERT INTO {s}.phases (run_id, phase, status, finished_at, detail) VALUES (%s, %s, %s, now(), %s)
                 ON CONFLICT (run_id, phase) DO UPDATE
                    SET status = EXCLUDED.status, finished_at = now(), detail = EXCLUDED.detail"""),
            (run_id, phase, status, Jsonb(detail or {})),
        )


def phases_of_run(conn: psycopg.Connection, run_id: str) -> dict[str, dict[str, Any]]:
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(q("SELECT * FROM {s}.phases WHERE run_id = %s"), (run_id,)).fetchall()
    return {r["phase"]: r for r in rows}


# -- what a run created -----------------------------------------------------------------------------


def record_created(conn: psycopg.Connection, run_id: str, kind: str, existed_before: dict[str, bool]) -> None:
    """Record objects (``kind``: ``schema``) the run created; a later attempt keeps the first record."""
    with conn.cursor() as cur:
        cur.executemany(
            q("""INSERT INTO {s}.created (run_id, kind, name, existed_before) VALUES (%s, %s, %s, %s)
                 ON CONFLICT (run_id, kind, name) DO NOTHING"""),
            [(run_id, kind, name, existed) for name, existed in existed_before.items()],
        )


def created_by(conn: psycopg.Connection, run_id: str, kind: str) -> set[str]:
    """The names of the objects of ``kind`` that the run's pre-data created (its own, from its records)."""
    rows = conn.execute(q("SELECT name FROM {s}.created WHERE run_id = %s AND kind = %s"), (run_id, kind))
    return {r[0] for r in rows}


# -- validations ------------------------------------------------------------------------------------


def save_validation(conn: psycopg.Connection, run_id: str, schema: str, result: dict[str, Any]) -> None:
    with conn.transaction():
        conn.execute(
            q("""INSERT INTO {s}.validations (run_id, schema_name, result) VALUES (%s, %s, %s)
                 ON CONFLICT (run_id, schema_name) DO UPDATE SET result = EXCLUDED.result, validated_at = now()"""),
            (run_id, schema, Jsonb(result)),
        )


def validations_of_run(conn: psycopg.Connection, run_id: str) -> dict[str, dict[str, Any]]:
    rows = conn.execute(q("SELECT schema_name, result FROM {s}.validations WHERE run_id = %s"), (run_id,)).fetchall()
    return dict(rows)


# -- guard ----------------------------------------------------------------------------------------


def acquire_guard(conn: psycopg.Connection, run_id: str, dag_id: str) -> None:
    """Hold the target for this run; raise :class:`GuardHeld` naming the run that holds it."""
    with conn.transaction():
        row = conn.execute(
            q("""INSERT INTO {s}.guard (id, run_id, dag_id) VALUES (1, %s, %s)
                 ON CONFLICT (id) DO UPDATE SET acquired_at = {s}.guard.acquired_at
                 RETURNING run_id, dag_id, acquired_at"""),
            (run_id, dag_id),
        ).fetchone()
    if row[0] != run_id:
        raise GuardHeld(
            f"the target is held by run {row[0]!r} of DAG {row[1]!r} since {row[2]:%Y-%m-%d %H:%M:%S %Z}; "
            "wait for it to finish, or, if that run is dead, release it with "
            "`python -m include.pg_migration.state release-guard`"
        )


def release_guard(conn: psycopg.Connection, run_id: str | None = None) -> None:
    with conn.transaction():
        if run_id is None:
            conn.execute(q("DELETE FROM {s}.guard"))
        else:
            conn.execute(q("DELETE FROM {s}.guard WHERE run_id = %s"), (run_id,))


def exists(conn: psycopg.Connection) -> bool:
    return conn.execute("SELECT pg_catalog.to_regclass(%s) IS NOT NULL", (f"{STATE_SCHEMA}.runs",)).fetchone()[0]


# -- the snapshot holder's release ----------------------------------------------------------------


def _holder_gone(where: str | None) -> bool:
    """True when the holder ran on this host and its process no longer exists."""
    if not where or ":" not in where:
        return False
    host, pid = where.rsplit(":", 1)
    if host != socket.gethostname():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except (PermissionError, ValueError):
        return False
    return False


def request_release(target: Endpoint, run_id: str, wait_s: float = 15.0) -> bool:
    """Ask the run's snapshot holder (:mod:`include.pg_migration.phases.snapshot`) to end its transaction;
    wait until it has. True if a snapshot was released."""
    with target.connect("pg_migration snapshot-release", autocommit=True) as tgt:
        run = get_run(tgt, run_id) if exists(tgt) else None
        if not run or not run["snapshot_id"] or run["snapshot_released_at"] is not None:
            return False
        set_run(tgt, run_id, release_requested=True)
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline and not _holder_gone(run.get("holder_where")):
            run = get_run(tgt, run_id)
            if run["snapshot_released_at"] is not None:
                return True
            time.sleep(0.3)
        # A holder that does not answer is dead or stuck; mark the snapshot released either way.
        set_run(tgt, run_id, snapshot_released_at=tgt.execute("SELECT now()").fetchone()[0])
    return True


def main(argv: list[str] | None = None) -> int:
    """``python -m include.pg_migration.state {drop,release-guard,show}`` against $PGMIG_TARGET_*."""

    parser = argparse.ArgumentParser(prog="python -m include.pg_migration.state", description=__doc__)
    parser.add_argument("command", choices=["drop", "release-guard", "show"])
    args = parser.parse_args(argv)
    target = Endpoint.from_env("PGMIG_TARGET", "target")
    with target.connect() as conn:
        if args.command == "drop":
            drop(conn)
        elif args.command == "release-guard":
            release_guard(conn)
        else:
            with conn.cursor(row_factory=dict_row) as cur:
                runs = cur.execute(
                    q("SELECT run_id, dag_id, status, started_at FROM {s}.runs ORDER BY started_at")
                ).fetchall()
            print(json.dumps(runs, default=str, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
