"""The replication's own state: ``_pg_migration.replication`` on the target, one row per replicate run.

What the run created (publication, slot, subscription: :func:`names`), what replica identity it
changed, the slot's consistent point and snapshot, and the cut-over's timestamps. The password of
the subscription is never stored here (it lives in the target's ``pg_subscription``).
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from include.pg_migration import STATE_SCHEMA, state
from include.pg_migration.conn import Endpoint
from include.pg_migration.errors import ConfigError, MigrationError
from include.pg_migration.run_order import MODES

#: Statuses of a replication row whose source/target objects may still exist.
LIVE = ("preparing", "copying", "streaming", "cutting-over")

DDL = """
CREATE TABLE IF NOT EXISTS {s}.replication (
    run_id text PRIMARY KEY,
    dag_id text NOT NULL,
    status text NOT NULL DEFAULT 'preparing',
    source jsonb NOT NULL DEFAULT '{{}}',
    publication text NOT NULL,
    slot text NOT NULL,
    subscription text NOT NULL,
    schemas jsonb NOT NULL DEFAULT '[]',
    tables jsonb NOT NULL DEFAULT '[]',
    identity_changed jsonb NOT NULL DEFAULT '[]',
    replica_identity_full boolean NOT NULL DEFAULT false,
    consistent_lsn text,
    snapshot_id text,
    slot_created_at timestamptz,
    subscribed_at timestamptz,
    read_only_set boolean NOT NULL DEFAULT false,
    cutover_run_id text,
    cutover_started_at timestamptz,
    writes_stopped_at timestamptz,
    stop_lsn text,
    caught_up_at timestamptz,
    validated_at timestamptz,
    finished_at timestamptz,
    dropped_at timestamptz,
    error text,
    detail jsonb NOT NULL DEFAULT '{{}}',
    created_at timestamptz NOT NULL DEFAULT now()
);
"""


@dataclass(frozen=True)
class Names:
    publication: str
    slot: str
    subscription: str


def names(run_id: str) -> Names:
    """Object names of a run: lower-case, ASCII, < 64 bytes (valid slot names)."""
    name = "pgmig_" + hashlib.sha1(run_id.encode()).hexdigest()[:12]
    return Names(publication=name, slot=name, subscription=name)


def mode_of(params: dict[str, Any] | None) -> str:
    mode = (params or {}).get("mode") or "snapshot"
    if mode not in MODES:
        raise ConfigError(f"mode must be one of {', '.join(MODES)} (got {mode!r})")
    return mode


#: Serialises concurrent ``CREATE TABLE IF NOT EXISTS`` of the replication table.
_DDL_LOCK_KEY = 0x70676D6972  # "pgmir"


def ensure(conn: psycopg.Connection) -> None:
    """The state schema and its ``replication`` table (idempotent, safe in parallel)."""
    state.ensure(conn)
    with conn.transaction():
        conn.execute("SELECT pg_catalog.pg_advisory_xact_lock(%s)", (_DDL_LOCK_KEY,))
        conn.execute(state.q(DDL))


def has_table(conn: psycopg.Connection) -> bool:
    return conn.execute("SELECT pg_catalog.to_regclass(%s) IS NOT NULL", (f"{STATE_SCHEMA}.replication",)).fetchone()[0]


def get(conn: psycopg.Connection, run_id: str) -> dict[str, Any] | None:
    if not has_table(conn):
        return None
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(state.q("SELECT * FROM {s}.replication WHERE run_id = %s"), (run_id,)).fetchone()


def by_cutover(conn: psycopg.Connection, cutover_run_id: str) -> dict[str, Any]:
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(
            state.q("SELECT * FROM {s}.replication WHERE cutover_run_id = %s ORDER BY created_at DESC LIMIT 1"),
            (cutover_run_id,),
        ).fetchone()
    if row is None:
        raise MigrationError(f"no replication is being cut over by run {cutover_run_id!r} (did its begin step run?)")
    return row


def live(conn: psycopg.Connection) -> list[dict[str, Any]]:
    """Replications whose objects may still exist, newest first."""
    if not has_table(conn):
        return []
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            state.q(
                "SELECT * FROM {s}.replication WHERE dropped_at IS NULL AND status = ANY(%s) ORDER BY created_at DESC"
            ),
            (list(LIVE),),
        ).fetchall()


def update(conn: psycopg.Connection, run_id: str, **values: Any) -> None:
    values = {k: (Jsonb(v) if isinstance(v, (dict, list)) else v) for k, v in values.items()}
    assignments = sql.SQL(", ").join(sql.SQL("{} = %s").format(sql.Identifier(k)) for k in values)
    with conn.transaction():
        conn.execute(
            sql.SQL("UPDATE {s}.replication SET {a} WHERE run_id = %s").format(s=state.S, a=assignments),
            (*values.values(), run_id),
        )


def merge_detail(conn: psycopg.Connection, run_id: str, **values: Any) -> None:
    """Add keys to a replication row's ``detail`` (other keys are kept)."""
    with conn.transaction():
        conn.execute(
            state.q("UPDATE {s}.replication SET detail = detail || %s WHERE run_id = %s"), (Jsonb(values), run_id)
        )


def now(conn: psycopg.Connection) -> dt.datetime:
    return conn.execute("SELECT now()").fetchone()[0]


def plan_tables(the_plan: dict[str, Any]) -> list[tuple[str, str]]:
    """Every table the plan copies (plain tables: parents, children, leaf partitions), sorted."""
    return sorted({(u["schema"], t) for u in the_plan.get("units", []) for t in u["tables"]})


def register(
    target: Endpoint, run_id: str, dag_id: str, source: Endpoint, the_plan: dict[str, Any], replica_identity_full: bool
) -> dict[str, Any]:
    """Record (or refresh, on a retry) the run's replication row; return it."""
    n = names(run_id)
    with target.connect("pg_migration replicate", autocommit=True) as tgt:
        ensure(tgt)
        with tgt.transaction():
            tgt.execute(
                state.q("""INSERT INTO {s}.replication (run_id, dag_id, source, publication, slot, subscription,
                                                         schemas, tables, replica_identity_full)
                           VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)
                           ON CONFLICT (run_id) DO UPDATE
                              SET schemas = EXCLUDED.schemas, tables = EXCLUDED.tables,
                                  replica_identity_full = EXCLUDED.replica_identity_full,
                                  source = EXCLUDED.source"""),
                (
                    run_id,
                    dag_id,
                    Jsonb(source.public()),
                    n.publication,
                    n.slot,
                    n.subscription,
                    Jsonb(the_plan.get("schemas", [])),
                    Jsonb([list(t) for t in plan_tables(the_plan)]),
                    replica_identity_full,
                ),
            )
        return get(tgt, run_id)


def register_from_run(target: Endpoint, run_id: str, source: Endpoint) -> dict[str, Any]:
    """Register the replication of a run already registered by the plan step (its plan and params)."""
    with target.connect("pg_migration replicate", autocommit=True) as tgt:
        run = state.get_run(tgt, run_id)
    if run is None:
        raise ConfigError(f"run {run_id!r} is not registered on the target (the plan task registers it)")
    if mode_of(run["params"]) != "replicate":
        raise ConfigError(f"run {run_id!r} is not in replicate mode")
    return register(
        target, run_id, run["dag_id"], source, run["plan"], bool(run["params"].get("replica_identity_full"))
    )
