"""Near-zero downtime: keep the target in sync with logical replication until the cut-over.

``mode: "replicate"`` of ``pg_migration`` runs the usual copy, but from the exported snapshot of a
logical replication slot, then subscribes the target to that slot, so every change committed on
the source after the cut streams into the target until ``pg_migration_cutover`` (the downtime
window) or ``pg_migration_abort`` (calling it off). The source stays in production throughout.

Objects (named after the run: ``pgmig_<12 hex of sha1(run id)>``; :func:`names`):

============== ========= ==================================================================
publication    source    ``FOR TABLE ONLY`` every plain table of the plan, ``publish_via_
                         partition_root = false``: the unit of change is the physical table,
                         exactly as the copy's unit of loading is (an inheritance parent's own
                         rows, each child, each leaf partition). A row lives in one table, so it
                         is copied once and its changes are applied once (no DMS double-apply).
slot           source    logical, ``pgoutput``; created on a replication connection with
                         ``CREATE_REPLICATION_SLOT ... LOGICAL pgoutput (SNAPSHOT 'export')`` by
                         the snapshot holder (:func:`include.pg_migration.phases.snapshot.hold_replication`)
                         AFTER the publication exists, so every change after the cut is published.
subscription   target    ``create_slot = false, copy_data = false, slot_name = <slot>``, owned by
                         the target user (Aurora master user; locally PostgreSQL 16+ and
                         ``pg_create_subscription``); its connection string carries the password
                         of the subscription's source role (a non-superuser owner must use one).
============== ========= ==================================================================

Order in a run: checks (:func:`check`) -> publication (+ ``REPLICA IDENTITY FULL`` where allowed)
-> slot + exported snapshot (holder) -> pre-data, units, large objects, in that snapshot ->
release -> post-data -> validation against the snapshot -> :func:`subscribe` -> :func:`catch_up`
(report the lag). A run that does not reach "streaming" drops everything (:func:`drop_all`).

State: ``_pg_migration.replication`` on the target, one row per replicate run (what was created,
what identity was changed, cut-over timestamps); the password is never stored there (it lives in
the target's ``pg_subscription``, readable by superusers only).

Cut-over (:func:`run_cutover` chains the steps the ``pg_migration_cutover`` DAG runs as tasks):

1. :func:`cutover_begin`: find the streaming replication (latest, or by run id), take the target's
   guard; optionally make the source database read-only (``default_transaction_read_only`` and its
   client sessions ended; undone by abort or a failed cut-over).
2. :func:`cutover_stop_writes`: no transaction holding a transaction id (and no prepared one) in
   the source database; waits up to a timeout, naming the sessions still writing.
3. :func:`cutover_catch_up`: waits until the slot's confirmed position passes the WAL position
   taken when writes stopped (lag zero), logging the lag while it waits; timeout.
4. :func:`cutover_confirm_quiet`: a quiet window in which no transaction of the source database is
   decoded from the WAL (``pg_stat_replication_slots.total_txns`` of our slot, database-scoped: the
   server's WAL position also moves for other databases, checkpoints and vacuum, so its advance is
   reported, not judged) and no session holds a transaction id. Writes seen: the window restarts
   (an auto-analyze is a one-off); still seen at the timeout: the cut-over fails, naming them.
   "Writes stopped" is the start of the quiet window that passed.
5. :func:`cutover_sequences` (logical replication does not carry sequences), :func:`cutover_large_objects`
   (re-copied when their content differs), :func:`cutover_matviews` (refreshed).
6. :func:`cutover_validate` per schema: exact live counts on both sides (checksums when asked),
   structure inventory (DDL made on the source after the cut fails here, naming the object),
   sequences; then :func:`cutover_finish` drops subscription, slot and publication and restores
   the replica identities it changed -- only when every schema passed. Downtime = "writes
   stopped" -> "validated".

Source rights the mode needs: ``REPLICATION`` (slot, replication connection; RDS:
``rds_replication``), ``CREATE`` on the database and ownership of every published table (publication;
``REPLICA IDENTITY FULL``), ``wal_level = logical``, a free replication slot and WAL sender. The
subscription's source role needs ``REPLICATION`` and a password.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from include.pg_migration import STATE_SCHEMA, catalog, state
from include.pg_migration.conn import SSL_OPTIONS, Endpoint
from include.pg_migration.errors import ConfigError, MigrationError, PlanError
from include.pg_migration.sessions import SOURCE_SETTINGS, apply_settings

log = logging.getLogger(__name__)

MODES = ("snapshot", "replicate")

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


# -- state ------------------------------------------------------------------------------------------


#: Serialises concurrent ``CREATE TABLE IF NOT EXISTS`` of the replication table.
_DDL_LOCK_KEY = 0x70676D6972  # "pgmir"


def ensure(conn: psycopg.Connection) -> None:
    """The state schema and its ``replication`` table (idempotent, safe in parallel)."""
    state.ensure(conn)
    with conn.transaction():
        conn.execute("SELECT pg_catalog.pg_advisory_xact_lock(%s)", (_DDL_LOCK_KEY,))
        conn.execute(state.q(DDL))


def _has_table(conn: psycopg.Connection) -> bool:
    return conn.execute("SELECT pg_catalog.to_regclass(%s) IS NOT NULL", (f"{STATE_SCHEMA}.replication",)).fetchone()[0]


def get(conn: psycopg.Connection, run_id: str) -> dict[str, Any] | None:
    if not _has_table(conn):
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
    if not _has_table(conn):
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


def _now(conn: psycopg.Connection) -> dt.datetime:
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


# -- checks ----------------------------------------------------------------------------------------

SOURCE_SETUP = """
SELECT current_setting('wal_level') AS wal_level,
       current_setting('server_version_num')::int AS version,
       current_setting('max_replication_slots')::int AS max_slots,
       (SELECT count(*) FROM pg_catalog.pg_replication_slots)::int AS slots,
       current_setting('max_wal_senders')::int AS max_senders,
       (SELECT count(*) FROM pg_catalog.pg_stat_activity WHERE backend_type = 'walsender')::int AS senders,
       current_setting('max_slot_wal_keep_size', true) AS keep_size,
       r.rolname, r.rolsuper, r.rolreplication,
       pg_catalog.has_database_privilege(pg_catalog.current_database(), 'CREATE') AS can_create
  FROM pg_catalog.pg_roles r WHERE r.rolname = current_user
"""

#: Plain tables of the selected schemas with what publishing them needs.
PUBLISHABLE = """
SELECT n.nspname AS schema, c.relname AS name, c.relreplident::text AS identity,
       c.relpersistence::text AS persistence,
       EXISTS (SELECT 1 FROM pg_catalog.pg_index i WHERE i.indrelid = c.oid AND i.indisprimary) AS has_pk,
       pg_catalog.pg_has_role(c.relowner, 'USAGE') AS owned,
       pg_catalog.pg_get_userbyid(c.relowner) AS owner
  FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname = ANY(%(schemas)s) AND c.relkind = 'r'
 ORDER BY 1, 2
"""

TARGET_SETUP = """
SELECT current_setting('server_version_num')::int AS version, r.rolsuper,
       pg_catalog.has_database_privilege(pg_catalog.current_database(), 'CREATE') AS can_create,
       EXISTS (SELECT 1 FROM pg_catalog.pg_roles g
                WHERE g.rolname IN ('pg_create_subscription', 'rds_superuser')
                  AND pg_catalog.pg_has_role(current_user, g.oid, 'USAGE')) AS can_subscribe
  FROM pg_catalog.pg_roles r WHERE r.rolname = current_user
"""


def finding(check: str, verdict: str, detail: str) -> dict[str, str]:
    return {"check": check, "verdict": verdict, "detail": detail}


def _names_list(items: list[str], limit: int = 30) -> str:
    return ", ".join(items[:limit]) + (f" and {len(items) - limit} more" if len(items) > limit else "")


def no_identity(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Tables whose UPDATE/DELETE would fail once published: no primary key and no replica identity."""
    return [r for r in rows if r["identity"] == "n" or (r["identity"] == "d" and not r["has_pk"])]


def check(
    source: Endpoint | None,
    target: Endpoint,
    schemas: list[str],
    params: dict[str, Any],
    run_id: str | None = None,
) -> list[dict[str, str]]:
    """Findings ``{check, verdict: ok|warning|blocking, detail}`` for a run in ``params["mode"]``.

    Every mode: no replication of an earlier run may still be streaming into the target (anything
    written there would be overwritten by, or conflict with, its changes). Replicate mode, on the
    source (read-only queries): ``wal_level``, free slots and WAL senders, REPLICATION, publication
    rights, tables without replica identity, unlogged tables; on the target: subscription rights.
    """
    mode = mode_of(params)
    out: list[dict[str, str]] = []
    with target.connect("pg_migration replicate-check", autocommit=True) as tgt:
        others = [r for r in live(tgt) if r["run_id"] != run_id]
        if others:
            r = others[0]
            out.append(
                finding(
                    "replication on the target",
                    "blocking",
                    f"run {r['run_id']!r} still replicates into this target (status {r['status']}, subscription "
                    f"{r['subscription']}): run pg_migration_cutover to finish it or pg_migration_abort to drop it",
                )
            )
        if mode != "replicate":
            return out
        t = dict(
            zip(
                ("version", "rolsuper", "can_create", "can_subscribe"),
                tgt.execute(TARGET_SETUP).fetchone(),
                strict=True,
            )
        )
    if params.get("resume"):
        out.append(
            finding(
                "resume",
                "blocking",
                "resume: true is refused in replicate mode: tables kept from an "
                "older cut would miss the changes made between that cut and the new slot's",
            )
        )
    if params.get("consistent") is False:
        out.append(finding("consistent", "blocking", "replicate mode needs one consistent cut (the slot's snapshot)"))
    if params.get("validate_only"):
        out.append(finding("validate_only", "blocking", "validate_only copies nothing: it cannot start replication"))
    if t["rolsuper"] or t["can_subscribe"]:
        verdict = "ok" if (t["version"] >= 160000 or t["rolsuper"]) else "blocking"
        detail = f"target {t['version'] // 10000}: the target user may create subscriptions"
        if verdict == "blocking":
            detail = f"target {t['version'] // 10000}: a non-superuser subscription owner needs PostgreSQL 16+"
        out.append(finding("target subscription rights", verdict, detail))
    else:
        out.append(
            finding(
                "target subscription rights",
                "blocking",
                "the target user cannot create subscriptions: grant it pg_create_subscription "
                "(PostgreSQL 16+; on Aurora the master user has it through rds_superuser)",
            )
        )
    if not t["can_create"] and not t["rolsuper"]:
        out.append(finding("target subscription rights", "blocking", "the target user lacks CREATE on the database"))
    if source is None:
        return out
    with source.connect("pg_migration replicate-check", autocommit=True) as src:
        s = src.execute(SOURCE_SETUP).fetchone()
        s = dict(
            zip(
                (
                    "wal_level",
                    "version",
                    "max_slots",
                    "slots",
                    "max_senders",
                    "senders",
                    "keep_size",
                    "role",
                    "rolsuper",
                    "rolreplication",
                    "can_create",
                ),
                s,
                strict=True,
            )
        )
        with src.cursor(row_factory=dict_row) as cur:
            tables = cur.execute(PUBLISHABLE, {"schemas": schemas}).fetchall()
    out.append(
        finding(
            "wal_level",
            "ok" if s["wal_level"] == "logical" else "blocking",
            f"wal_level = {s['wal_level']}"
            + (
                ""
                if s["wal_level"] == "logical"
                else ": logical replication needs wal_level = logical on the source (a restart; on RDS the "
                "parameter rds.logical_replication = 1)"
            ),
        )
    )
    free_slots, free_senders = s["max_slots"] - s["slots"], s["max_senders"] - s["senders"]
    out.append(
        finding(
            "replication slots",
            "ok" if free_slots >= 1 else "blocking",
            f"{free_slots} of max_replication_slots = {s['max_slots']} free (1 needed)",
        )
    )
    out.append(
        finding(
            "WAL senders",
            "ok" if free_senders >= 2 else ("warning" if free_senders == 1 else "blocking"),
            f"{free_senders} of max_wal_senders = {s['max_senders']} free (2 needed for a moment: the "
            "snapshot holder and the subscription; 1 while streaming)",
        )
    )
    out.append(
        finding(
            "REPLICATION right",
            "ok" if s["rolsuper"] or s["rolreplication"] else "blocking",
            f"role {s['role']} "
            + (
                "may create replication slots"
                if s["rolsuper"] or s["rolreplication"]
                else "lacks REPLICATION: ALTER ROLE ... REPLICATION (RDS: GRANT rds_replication)"
            ),
        )
    )
    if not s["rolsuper"] and not s["can_create"]:
        out.append(
            finding(
                "publication rights",
                "blocking",
                f"role {s['role']} lacks CREATE on the source database (needed for CREATE PUBLICATION)",
            )
        )
    not_owned = [f"{r['schema']}.{r['name']} (owner {r['owner']})" for r in tables if not r["owned"]]
    if not_owned and not s["rolsuper"]:
        out.append(
            finding(
                "publication rights",
                "blocking",
                f"role {s['role']} must own the tables it publishes; it does not own: " + _names_list(not_owned),
            )
        )
    elif not s["rolsuper"]:
        out.append(finding("publication rights", "ok", f"role {s['role']} owns every table to publish"))
    keep = s["keep_size"]
    out.append(
        finding(
            "max_slot_wal_keep_size",
            "ok" if keep not in (None, "-1") else "warning",
            f"max_slot_wal_keep_size = {keep}"
            + (
                ": unlimited, so a slot left behind retains WAL until the source's disk fills "
                "(pg_migration_abort drops it; consider a limit)"
                if keep in (None, "-1")
                else ": a slot retaining more is invalidated and the replication must be started again"
            ),
        )
    )
    unlogged = [f"{r['schema']}.{r['name']}" for r in tables if r["persistence"] == "u"]
    if unlogged:
        out.append(
            finding(
                "unlogged tables",
                "blocking",
                "unlogged tables cannot be published, so their changes "
                "would be lost: " + _names_list(unlogged) + " (ALTER TABLE ... SET LOGGED, or exclude "
                "their schema)",
            )
        )
    missing = [r for r in no_identity(tables) if r["persistence"] != "u"]
    names_missing = [f"{r['schema']}.{r['name']}" for r in missing]
    if missing and not params.get("replica_identity_full"):
        out.append(
            finding(
                "replica identity",
                "blocking",
                "tables without a primary key or replica identity: once "
                "published, UPDATE and DELETE on them would FAIL on the source: "
                + _names_list(names_missing)
                + ". Add a primary key (or REPLICA IDENTITY USING INDEX), or allow "
                "replica_identity_full: true (REPLICA IDENTITY FULL, more WAL, restored after the cut-over)",
            )
        )
    elif missing:
        cannot = [f"{r['schema']}.{r['name']}" for r in missing if not r["owned"] and not s["rolsuper"]]
        out.append(
            finding(
                "replica identity",
                "blocking" if cannot else "warning",
                (
                    "REPLICA IDENTITY FULL will be set (and restored after the cut-over or abort) on: "
                    + _names_list(names_missing)
                )
                if not cannot
                else f"role {s['role']} must own these tables to set REPLICA IDENTITY FULL: " + _names_list(cannot),
            )
        )
    else:
        out.append(finding("replica identity", "ok", f"every one of {len(tables)} table(s) has a replica identity"))
    return out


def raise_blocking(findings: list[dict[str, str]]) -> None:
    blocking = [f for f in findings if f["verdict"] == "blocking"]
    if blocking:
        raise PlanError(
            "replication checks failed; nothing was created: "
            + "; ".join(f"{f['check']}: {f['detail']}" for f in blocking)
        )


# -- source objects: publication (+ replica identity) ------------------------------------------------


def source_admin(source: Endpoint, app: str) -> psycopg.Connection:
    """An autocommit source session that may write DDL even when the database was made read-only."""
    conn = source.connect(app, autocommit=True)
    apply_settings(conn, {**SOURCE_SETTINGS, "default_transaction_read_only": "off"})
    return conn


def prepare_publication(source: Endpoint, target: Endpoint, run_id: str, app: str = "pg_migration replicate") -> dict:
    """Set REPLICA IDENTITY FULL where allowed and needed, and create the run's publication (idempotent).

    Runs before the slot exists, so the publication covers every change after the slot's cut.
    """
    with target.connect(app, autocommit=True) as tgt:
        rep = get(tgt, run_id)
        if rep is None:
            raise ConfigError(f"run {run_id!r} is not registered for replication")
        if rep["consistent_lsn"] is not None:  # the slot exists: its publication must stay as it was
            log.info("publication %s kept: the run's slot already exists", rep["publication"])
            return {"publication": rep["publication"], "tables": len(rep["tables"]), "identity_full": []}
        tables = [tuple(t) for t in rep["tables"]]
        with source_admin(source, app) as src:
            with src.cursor(row_factory=dict_row) as cur:
                rows = cur.execute(PUBLISHABLE, {"schemas": rep["schemas"]}).fetchall()
            wanted = set(tables)
            missing = [r for r in no_identity(rows) if (r["schema"], r["name"]) in wanted]
            if missing and not rep["replica_identity_full"]:
                raise PlanError(
                    "tables without a primary key or replica identity: "
                    + ", ".join(f"{r['schema']}.{r['name']}" for r in missing)
                )
            changed = [list(t) for t in rep["identity_changed"]]
            known = {(t[0], t[1]) for t in changed}
            changed += [
                [r["schema"], r["name"], r["identity"]] for r in missing if (r["schema"], r["name"]) not in known
            ]
            update(tgt, run_id, identity_changed=changed)  # recorded before altering: cleanup can restore
            for r in missing:
                try:
                    src.execute(
                        sql.SQL("ALTER TABLE ONLY {} REPLICA IDENTITY FULL").format(
                            sql.Identifier(r["schema"], r["name"])
                        )
                    )
                except psycopg.Error as exc:  # e.g. lock_timeout: a long transaction holds the table
                    raise MigrationError(
                        f"cannot set REPLICA IDENTITY FULL on {r['schema']}.{r['name']} on the source: "
                        f"{str(exc).strip().splitlines()[0]}"
                    ) from None
                log.warning(
                    "REPLICA IDENTITY FULL set on %s.%s (it has no primary key); restored after the cut-over",
                    r["schema"],
                    r["name"],
                )
            pub = sql.Identifier(rep["publication"])
            listed = sql.SQL(", ").join(sql.SQL("ONLY {}").format(sql.Identifier(s, t)) for s, t in tables)
            exists = src.execute(
                "SELECT 1 FROM pg_catalog.pg_publication WHERE pubname = %s", (rep["publication"],)
            ).fetchone()
            stmt = sql.SQL("CREATE PUBLICATION {}").format(pub)
            if tables:
                stmt += sql.SQL(" FOR TABLE {}").format(listed)
            stmt += sql.SQL(" WITH (publish = 'insert, update, delete, truncate', publish_via_partition_root = false)")
            try:
                with src.transaction():
                    if exists:
                        src.execute(sql.SQL("DROP PUBLICATION {}").format(pub))
                    src.execute(stmt)
            except psycopg.Error as exc:
                raise MigrationError(
                    f"cannot create publication {rep['publication']} on the source: {str(exc).strip().splitlines()[0]}"
                ) from None
    log.info(
        "publication %s: %d table(s), each published as its own table (children and partitions too)",
        rep["publication"],
        len(tables),
    )
    return {"publication": rep["publication"], "tables": len(tables), "identity_full": [c[:2] for c in changed]}


# -- the slot (created by the holder in snapshot.py) ------------------------------------------------


def replication_connection(source: Endpoint, app: str) -> psycopg.Connection:
    """A ``replication=database`` connection (psycopg 3 runs replication commands through it)."""
    try:
        return psycopg.connect(**source.conninfo(app), replication="database", autocommit=True)
    except psycopg.OperationalError as exc:
        raise ConfigError(
            f"cannot open a replication connection to {source.describe()}: {str(exc).strip().splitlines()[0]}"
        ) from None


def slot_exists(src: psycopg.Connection, slot: str) -> bool:
    return (
        src.execute("SELECT 1 FROM pg_catalog.pg_replication_slots WHERE slot_name = %s", (slot,)).fetchone()
        is not None
    )


def create_slot(repl: psycopg.Connection, slot: str) -> tuple[str, str]:
    """``CREATE_REPLICATION_SLOT`` exporting its snapshot: (consistent point, snapshot id).

    Waits until transactions running at that moment (server-wide) have ended. The snapshot stays
    importable until the next command on ``repl``: the holder sends none until it releases.
    """
    if not slot.replace("_", "").isalnum() or not slot.islower():
        raise ConfigError(f"invalid slot name {slot!r}")
    row = repl.execute(f"CREATE_REPLICATION_SLOT {slot} LOGICAL pgoutput (SNAPSHOT 'export')").fetchone()
    return str(row[1]), str(row[2])


#: How long slot creation may wait for the transactions running on the source when it started.
SLOT_WAIT_S = float(__import__("os").environ.get("PG_MIGRATION_SLOT_WAIT_S", "1800"))

#: Transactions (any database of the server) that slot creation waits for: those holding an xid.
RUNNING_XACTS = """
SELECT a.pid, a.datname::text AS datname, a.usename::text AS usename, a.application_name,
       a.xact_start, a.backend_type
  FROM pg_catalog.pg_stat_activity a
 WHERE a.backend_xid IS NOT NULL AND a.pid <> %(exclude)s
 ORDER BY a.xact_start NULLS LAST LIMIT 5
"""


def running_xacts(src: psycopg.Connection, exclude_pid: int) -> list[dict[str, Any]]:
    with src.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(RUNNING_XACTS, {"exclude": exclude_pid}).fetchall()
    return [{**r, "xact_start": r["xact_start"].isoformat() if r["xact_start"] else None} for r in rows]


def describe_xacts(rows: list[dict[str, Any]]) -> str:
    return "; ".join(
        f"pid {r['pid']} ({r['backend_type']}) of {r['usename']} in database {r['datname']} "
        f"app {r['application_name']!r}, transaction since {r['xact_start']}"
        for r in rows
    )


class SlotWaitWatcher:
    """While ``CREATE_REPLICATION_SLOT`` waits for running transactions: name them in the log and in
    the replication row (``detail.slot_waiting_for``), and cancel the creation after ``SLOT_WAIT_S``."""

    def __init__(self, source: Endpoint, target: Endpoint, run_id: str, repl: psycopg.Connection, app: str):
        import threading

        self.source, self.target, self.run_id, self.repl, self.app = source, target, run_id, repl, app
        self.done = threading.Event()
        self.waiting: list[dict[str, Any]] = []
        self.cancelled = False
        self.thread = threading.Thread(target=self._run, name="slot-wait-watcher", daemon=True)

    def __enter__(self) -> SlotWaitWatcher:
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.done.set()
        self.thread.join(timeout=10)

    def _run(self) -> None:
        started = time.monotonic()
        pid = self.repl.info.backend_pid
        if self.done.wait(min(2.0, SLOT_WAIT_S / 3)):
            return
        try:
            with (
                self.source.connect(self.app + " watch", autocommit=True) as src,
                self.target.connect(self.app + " watch", autocommit=True) as tgt,
            ):
                while not self.done.is_set():
                    self.waiting = running_xacts(src, pid)
                    if self.waiting:
                        log.warning(
                            "slot creation waits for %d transaction(s) running on the source: %s",
                            len(self.waiting),
                            describe_xacts(self.waiting),
                        )
                    merge_detail(
                        tgt,
                        self.run_id,
                        slot_waiting_for=self.waiting,
                        slot_waiting_s=round(time.monotonic() - started),
                        slot_waiting_at=tgt.execute("SELECT extract(epoch FROM now())::float8").fetchone()[0],
                    )
                    if time.monotonic() - started > SLOT_WAIT_S:
                        self.cancelled = True
                        self.repl.cancel()
                        return
                    self.done.wait(min(10.0, max(1.0, SLOT_WAIT_S / 3)))
        except Exception as exc:  # noqa: BLE001 - only a helper: the slot creation goes on
            log.warning("cannot watch the slot creation: %s", exc)


def record_holder_error(target: Endpoint, run_id: str, error: str) -> None:
    try:
        with target.connect("pg_migration replicate", autocommit=True) as tgt:
            update(tgt, run_id, error=error)
    except Exception:  # noqa: BLE001 - best effort: the holder's log has it too
        pass


def slot_creation_waiting(tgt: psycopg.Connection, run_id: str) -> list[dict[str, Any]] | None:
    """What a live holder's slot creation waits for (None: it is not waiting, or its watcher went quiet)."""
    rep = get(tgt, run_id)
    detail = (rep or {}).get("detail") or {}
    if rep is None or rep["consistent_lsn"] is not None or "slot_waiting_at" not in detail:
        return None
    age = tgt.execute("SELECT extract(epoch FROM now())::float8 - %s", (detail["slot_waiting_at"],)).fetchone()[0]
    return (detail.get("slot_waiting_for") or []) if age < 30 else None


def holder_error(tgt: psycopg.Connection, run_id: str) -> str | None:
    rep = get(tgt, run_id)
    return rep["error"] if rep and rep["status"] in ("preparing", "copying") else None


# -- the subscription ------------------------------------------------------------------------------


def subscription_conninfo(endpoint: Endpoint, application_name: str) -> str:
    """The subscription's connection string. Holds the password: never log or return it."""
    if not endpoint.password:
        raise ConfigError(
            f"the subscription's source connection ({endpoint.describe()}) has no password: a non-superuser "
            "subscription owner must log in to the source with one (PostgreSQL 16+, Aurora)"
        )
    values: dict[str, Any] = {
        "host": endpoint.host,
        "port": endpoint.port,
        "dbname": endpoint.dbname,
        "user": endpoint.user,
        "password": endpoint.password,
        "application_name": application_name,
    }
    for key in SSL_OPTIONS:
        if getattr(endpoint, key):
            values[key] = getattr(endpoint, key)
    return make_conninfo(**values)


def _subscription(tgt: psycopg.Connection, name: str) -> dict[str, Any] | None:
    with tgt.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            """SELECT s.oid, s.subenabled, s.subslotname FROM pg_catalog.pg_subscription s
                WHERE s.subname = %s
                  AND s.subdbid = (SELECT oid FROM pg_catalog.pg_database
                                    WHERE datname = pg_catalog.current_database())""",
            (name,),
        ).fetchone()


def subscribe(target: Endpoint, run_id: str, publisher: Endpoint, app: str = "pg_migration subscribe") -> dict:
    """Create the subscription on the run's slot (no slot, no copy: the copy is done); idempotent."""
    with target.connect(app, autocommit=True) as tgt:
        rep = get(tgt, run_id)
        if rep is None or rep["consistent_lsn"] is None:
            raise MigrationError(f"run {run_id!r} has no replication slot to subscribe to")
        if rep["dropped_at"] is not None:
            raise MigrationError(f"the replication of run {run_id!r} was dropped ({rep['status']})")
        existing = _subscription(tgt, rep["subscription"])
        if existing is None:
            conninfo = subscription_conninfo(publisher, rep["subscription"])
            stmt = sql.SQL(
                "CREATE SUBSCRIPTION {} CONNECTION {} PUBLICATION {} "
                "WITH (create_slot = false, slot_name = {}, copy_data = false, enabled = true)"
            ).format(
                sql.Identifier(rep["subscription"]),
                sql.Literal(conninfo),
                sql.Identifier(rep["publication"]),
                sql.Literal(rep["slot"]),
            )
            try:
                tgt.execute(stmt)
            except psycopg.Error as exc:
                # The server's message names host and user, never the password; the statement is not logged here.
                raise MigrationError(
                    f"cannot create subscription {rep['subscription']} on {target.describe()}: "
                    f"{str(exc).strip().splitlines()[0]}"
                ) from None
        elif not existing["subenabled"]:
            tgt.execute(sql.SQL("ALTER SUBSCRIPTION {} ENABLE").format(sql.Identifier(rep["subscription"])))
        update(tgt, run_id, status="streaming", subscribed_at=_now(tgt), error=None)
    log.info(
        "subscription %s created on the target: streaming from slot %s (publisher %s@%s:%s/%s)",
        rep["subscription"],
        rep["slot"],
        publisher.user,
        publisher.host,
        publisher.port,
        publisher.dbname,
    )
    return {"subscription": rep["subscription"], "slot": rep["slot"], "publication": rep["publication"]}


# -- lag -------------------------------------------------------------------------------------------

SLOT_STATUS = """
SELECT s.active, s.active_pid, s.wal_status, s.safe_wal_size,
       pg_catalog.pg_current_wal_insert_lsn()::text AS current_lsn,
       s.confirmed_flush_lsn::text AS confirmed_lsn,
       s.restart_lsn::text AS restart_lsn,
       pg_catalog.pg_wal_lsn_diff(pg_catalog.pg_current_wal_insert_lsn(), s.confirmed_flush_lsn)::bigint AS lag_bytes,
       pg_catalog.pg_wal_lsn_diff(pg_catalog.pg_current_wal_insert_lsn(), s.restart_lsn)::bigint AS retained_bytes,
       (SELECT extract(epoch FROM r.replay_lag)::float8 FROM pg_catalog.pg_stat_replication r
         WHERE r.pid = s.active_pid) AS replay_lag_s
  FROM pg_catalog.pg_replication_slots s WHERE s.slot_name = %s
"""

SLOT_TXNS = "SELECT total_txns FROM pg_catalog.pg_stat_replication_slots WHERE slot_name = %s"

SUBSCRIPTION_STATUS = """
SELECT s.subenabled AS enabled, st.received_lsn::text AS received_lsn, st.latest_end_lsn::text AS latest_end_lsn,
       st.last_msg_receipt_time AS last_message_at, st.pid IS NOT NULL AS worker_running
  FROM pg_catalog.pg_subscription s
  LEFT JOIN pg_catalog.pg_stat_subscription st ON st.subid = s.oid AND st.relid IS NULL
 WHERE s.subname = %s
   AND s.subdbid = (SELECT oid FROM pg_catalog.pg_database WHERE datname = pg_catalog.current_database())
"""

SUBSCRIPTION_ERRORS = "SELECT apply_error_count FROM pg_catalog.pg_stat_subscription_stats WHERE subname = %s"


def slot_status(src: psycopg.Connection, slot: str) -> dict[str, Any] | None:
    with src.cursor(row_factory=dict_row) as cur:
        row = cur.execute(SLOT_STATUS, (slot,)).fetchone()
    if row is not None:
        try:
            txns = src.execute(SLOT_TXNS, (slot,)).fetchone()
            row["decoded_txns"] = txns[0] if txns else None
        except psycopg.errors.UndefinedTable:  # PostgreSQL < 14
            row["decoded_txns"] = None
    return row


def subscription_status(tgt: psycopg.Connection, subscription: str) -> dict[str, Any] | None:
    with tgt.cursor(row_factory=dict_row) as cur:
        row = cur.execute(SUBSCRIPTION_STATUS, (subscription,)).fetchone()
    if row is not None:
        try:
            errors = tgt.execute(SUBSCRIPTION_ERRORS, (subscription,)).fetchone()
            row["apply_errors"] = errors[0] if errors else 0
        except psycopg.errors.UndefinedTable:  # PostgreSQL < 15
            row["apply_errors"] = None
    return row


def mb(n: int | None) -> str:
    return "?" if n is None else f"{n / 1e6:.1f} MB"


def lag(source: Endpoint, target: Endpoint, run_id: str) -> dict[str, Any]:
    """Slot and subscription status: lag, WAL retained by the slot, apply errors. Never raises for a gap."""
    with target.connect("pg_migration lag", autocommit=True) as tgt:
        rep = get(tgt, run_id)
        if rep is None:
            return {"run_id": run_id, "replication": None}
        sub = subscription_status(tgt, rep["subscription"])
    out: dict[str, Any] = {
        "run_id": run_id,
        "replication_status": rep["status"],
        "slot": rep["slot"],
        "publication": rep["publication"],
        "subscription": rep["subscription"],
        "subscription_status": _jsonable(sub),
    }
    with source.connect("pg_migration lag", autocommit=True) as src:
        slot = slot_status(src, rep["slot"])
    out["slot_status"] = _jsonable(slot)
    out["lag_bytes"] = slot["lag_bytes"] if slot else None
    out["retained_wal_bytes"] = slot["retained_bytes"] if slot else None
    return out


def _jsonable(row: dict[str, Any] | None) -> dict[str, Any] | None:
    if row is None:
        return None
    return {k: (v.isoformat() if isinstance(v, dt.datetime) else v) for k, v in row.items()}


def describe_lag(status: dict[str, Any]) -> str:
    slot = status.get("slot_status") or {}
    if not slot:
        return f"slot {status.get('slot')} does not exist on the source"
    text = (
        f"lag {mb(slot.get('lag_bytes'))}, slot {status['slot']} retains {mb(slot.get('retained_bytes'))} of WAL "
        f"on the source (wal_status {slot.get('wal_status')})"
    )
    if slot.get("replay_lag_s") is not None:
        text += f", replay lag {slot['replay_lag_s']:.1f} s"
    sub = status.get("subscription_status") or {}
    if sub.get("apply_errors"):
        text += f", {sub['apply_errors']} apply error(s) on the target (see its server log)"
    return text


#: How far the slot's confirmed position is behind ``upto`` and ``upto``'s offset in its WAL page.
#: Positions are WAL *insert* positions: with asynchronous commit, ``pg_current_wal_lsn()`` (the
#: write position) can be behind a commit that already happened.
CAUGHT_UP = """
SELECT pg_catalog.pg_wal_lsn_diff(%(upto)s::pg_lsn, confirmed_flush_lsn)::bigint,
       (pg_catalog.pg_wal_lsn_diff(%(upto)s::pg_lsn, '0/0') %% current_setting('wal_block_size')::numeric)::int
  FROM pg_catalog.pg_replication_slots WHERE slot_name = %(slot)s
"""
MAX_PAGE_HEADER = 40  # SizeOfXLogLongPHD (a segment's first page); other pages: 24


def wait_caught_up(
    source: Endpoint,
    target: Endpoint,
    run_id: str,
    *,
    upto_lsn: str | None = None,
    timeout_s: float = 600.0,
    progress_s: float = 10.0,
    logger: logging.Logger | None = None,
) -> dict[str, Any]:
    """Wait until the slot's confirmed position reaches ``upto_lsn`` (default: the WAL position now).

    Returns ``{"caught_up": bool, "seconds", "upto_lsn", **lag}``; logs the lag every ``progress_s``.
    """
    logger = logger or log
    started = time.monotonic()
    last_log = 0.0
    with target.connect("pg_migration catch-up", autocommit=True) as tgt:
        rep = get(tgt, run_id)
        if rep is None:
            raise MigrationError(f"run {run_id!r} has no replication")
    with source.connect("pg_migration catch-up", autocommit=True) as src:
        if upto_lsn is None:
            upto_lsn = str(src.execute("SELECT pg_catalog.pg_current_wal_insert_lsn()").fetchone()[0])
        while True:
            row = src.execute(CAUGHT_UP, {"upto": upto_lsn, "slot": rep["slot"]}).fetchone()
            if row is None:
                raise MigrationError(f"slot {rep['slot']} of run {run_id!r} no longer exists on the source")
            behind, page_offset = row
            elapsed = time.monotonic() - started
            # An insert position right at a page start points past the page header, where no record
            # ends: a slot confirmed at the page boundary has everything before it.
            if behind is not None and (behind <= 0 or (page_offset <= MAX_PAGE_HEADER and behind <= page_offset)):
                status = lag(source, target, run_id)
                logger.info("caught up with %s in %.1f s: %s", upto_lsn, elapsed, describe_lag(status))
                return {"caught_up": True, "seconds": round(elapsed, 3), "upto_lsn": upto_lsn, **status}
            if elapsed - last_log >= progress_s:
                last_log = elapsed
                status = lag(source, target, run_id)
                logger.info(
                    "waiting for the target to catch up with %s: %s behind; %s",
                    upto_lsn,
                    mb(behind),
                    describe_lag(status),
                )
                sub = status.get("subscription_status") or {}
                if not sub:
                    raise MigrationError(f"subscription {rep['subscription']} does not exist on the target")
            if elapsed >= timeout_s:
                status = lag(source, target, run_id)
                logger.warning(
                    "not caught up after %.0f s: %s behind %s; %s", elapsed, mb(behind), upto_lsn, describe_lag(status)
                )
                return {
                    "caught_up": False,
                    "seconds": round(elapsed, 3),
                    "upto_lsn": upto_lsn,
                    "behind_bytes": behind,
                    **status,
                }
            time.sleep(0.2)


def record_replication_phase(target: Endpoint, run_id: str, status: dict[str, Any], extra: dict | None = None) -> None:
    """The run's ``replication`` phase (read by the report): lag, retained WAL, a standing warning."""
    warnings = []
    slot = status.get("slot_status") or {}
    if status.get("replication_status") == "streaming" and slot:
        warnings.append(
            f"streaming into the target: {describe_lag(status)}; it retains WAL on the source until "
            "pg_migration_cutover (go-live) or pg_migration_abort"
        )
    detail = {**status, **(extra or {}), "warnings": warnings}
    with target.connect("pg_migration replicate", autocommit=True) as tgt:
        state.set_phase(tgt, run_id, "replication", "failed" if (extra or {}).get("failures") else "done", detail)


# -- dropping what a run created ---------------------------------------------------------------------


def _drop_subscription(tgt: psycopg.Connection, name: str) -> bool:
    if _subscription(tgt, name) is None:
        return False
    ident = sql.Identifier(name)
    tgt.execute(sql.SQL("ALTER SUBSCRIPTION {} DISABLE").format(ident))
    # Detach the remote slot: the slot is dropped on the source directly (works when the source is slow too).
    tgt.execute(sql.SQL("ALTER SUBSCRIPTION {} SET (slot_name = NONE)").format(ident))
    tgt.execute(sql.SQL("DROP SUBSCRIPTION {}").format(ident))
    return True


def _drop_slot(src: psycopg.Connection, slot: str, timeout_s: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while True:
        row = src.execute(
            "SELECT active_pid FROM pg_catalog.pg_replication_slots WHERE slot_name = %s", (slot,)
        ).fetchone()
        if row is None:
            return False
        if row[0] is None:
            try:
                src.execute("SELECT pg_catalog.pg_drop_replication_slot(%s)", (slot,))
                return True
            except psycopg.errors.ObjectInUse:
                pass
        elif time.monotonic() > deadline - timeout_s / 2:
            # The subscription's WAL sender (or a holder) still uses it: end that session.
            src.execute("SELECT pg_catalog.pg_terminate_backend(%s)", (row[0],))
        if time.monotonic() > deadline:
            raise MigrationError(f"slot {slot} is still in use by process {row[0]} on the source")
        time.sleep(0.2)


def _restore_identity(conn: psycopg.Connection, changed: list[list[str]]) -> list[str]:
    restored = []
    for schema, table, previous in changed:
        row = conn.execute(
            """SELECT c.relreplident::text FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n
                   ON n.oid = c.relnamespace WHERE n.nspname = %s AND c.relname = %s""",
            (schema, table),
        ).fetchone()
        if row is None or row[0] != "f" or previous == "f":
            continue
        conn.execute(
            sql.SQL("ALTER TABLE ONLY {} REPLICA IDENTITY {}").format(
                sql.Identifier(schema, table), sql.SQL("NOTHING" if previous == "n" else "DEFAULT")
            )
        )
        restored.append(f"{schema}.{table}")
    return restored


def set_read_only(source: Endpoint, on: bool, app: str = "pg_migration cutover") -> int:
    """Make the source database read-only for new sessions (and end its other client sessions), or undo it.

    Returns how many sessions were ended. Needs the database's owner (or superuser).
    """
    with source_admin(source, app) as src:
        db = sql.Identifier(source.dbname)
        if not on:
            src.execute(sql.SQL("ALTER DATABASE {} RESET default_transaction_read_only").format(db))
            return 0
        src.execute(sql.SQL("ALTER DATABASE {} SET default_transaction_read_only = on").format(db))
        ended = src.execute(
            """SELECT count(*) FILTER (WHERE pg_catalog.pg_terminate_backend(pid, 5000))::int
                 FROM pg_catalog.pg_stat_activity
                WHERE datname = pg_catalog.current_database() AND pid <> pg_catalog.pg_backend_pid()
                  AND backend_type = 'client backend'
                  AND application_name NOT LIKE 'pg_migration%%' AND application_name NOT LIKE 'pgmig %%'"""
        ).fetchone()[0]
    return ended


def drop_all(
    source: Endpoint | None,
    target: Endpoint,
    run_id: str,
    *,
    status: str,
    reset_read_only: bool = True,
    logger: logging.Logger | None = None,
) -> dict[str, Any]:
    """Drop the run's subscription, slot and publication, restore what it changed on the source.

    Every step is attempted (best effort); ``errors`` lists those that failed (the caller raises).
    The slot's retained WAL is logged and returned before the slot goes.
    """
    from include.pg_migration.phases import snapshot

    logger = logger or log
    out: dict[str, Any] = {"run_id": run_id, "dropped": [], "errors": [], "retained_wal_bytes": None}
    try:
        snapshot.request_release(target, run_id)
    except Exception as exc:  # noqa: BLE001
        out["errors"].append(f"releasing the snapshot holder: {exc}")
    with target.connect("pg_migration replicate-drop", autocommit=True) as tgt:
        rep = get(tgt, run_id)
        n = names(run_id)
        if rep is None:
            rep = {
                "publication": n.publication,
                "slot": n.slot,
                "subscription": n.subscription,
                "identity_changed": [],
                "read_only_set": False,
            }
        try:
            if _drop_subscription(tgt, rep["subscription"]):
                out["dropped"].append(f"subscription {rep['subscription']} (target)")
        except psycopg.Error as exc:
            out["errors"].append(f"subscription {rep['subscription']}: {str(exc).strip().splitlines()[0]}")
        try:
            restored = _restore_identity(tgt, rep.get("identity_changed") or [])
            out["dropped"] += [f"REPLICA IDENTITY FULL on {t} (target)" for t in restored]
        except psycopg.Error as exc:
            out["errors"].append(f"replica identity on the target: {str(exc).strip().splitlines()[0]}")
        if source is not None:
            try:
                with source_admin(source, "pg_migration replicate-drop") as src:
                    slot = slot_status(src, rep["slot"])
                    if slot is not None:
                        out["retained_wal_bytes"] = slot["retained_bytes"]
                        logger.info(
                            "slot %s retained %s of WAL on the source; dropping it",
                            rep["slot"],
                            mb(slot["retained_bytes"]),
                        )
                    for what, action in (
                        (f"slot {rep['slot']}", lambda c=src: _drop_slot(c, rep["slot"])),
                        (f"publication {rep['publication']}", lambda c=src: _drop_publication(c, rep["publication"])),
                    ):
                        try:
                            if action():
                                out["dropped"].append(f"{what} (source)")
                        except (psycopg.Error, MigrationError) as exc:
                            out["errors"].append(f"{what}: {str(exc).strip().splitlines()[0]}")
                    try:
                        out["dropped"] += [
                            f"REPLICA IDENTITY FULL on {t} (source)"
                            for t in _restore_identity(src, rep.get("identity_changed") or [])
                        ]
                    except psycopg.Error as exc:
                        out["errors"].append(f"replica identity on the source: {str(exc).strip().splitlines()[0]}")
                if reset_read_only and rep.get("read_only_set"):
                    set_read_only(source, False)
                    out["dropped"].append("default_transaction_read_only of the source database (reset)")
                    if get(tgt, run_id):
                        update(tgt, run_id, read_only_set=False)
            except MigrationError as exc:
                out["errors"].append(f"source: {exc}")
        else:
            out["errors"].append("the source is unreachable: its slot and publication were not dropped")
        if get(tgt, run_id) is not None:
            values: dict[str, Any] = {"status": status}
            if not out["errors"]:
                values["dropped_at"] = _now(tgt)
            update(tgt, run_id, **values)
            merge_detail(tgt, run_id, drop=out)
    for item in out["dropped"]:
        logger.info("dropped %s", item)
    for err in out["errors"]:
        logger.error("could not drop %s", err)
    return out


def _drop_publication(src: psycopg.Connection, name: str) -> bool:
    if not src.execute("SELECT 1 FROM pg_catalog.pg_publication WHERE pubname = %s", (name,)).fetchone():
        return False
    src.execute(sql.SQL("DROP PUBLICATION {}").format(sql.Identifier(name)))
    return True


def leftovers(src: psycopg.Connection, run_id: str) -> list[str]:
    """The run's objects still present on the source (tests, abort's report)."""
    n = names(run_id)
    out = []
    if slot_exists(src, n.slot):
        out.append(f"slot {n.slot}")
    if src.execute("SELECT 1 FROM pg_catalog.pg_publication WHERE pubname = %s", (n.publication,)).fetchone():
        out.append(f"publication {n.publication}")
    return out


# -- the end of a replicate run ------------------------------------------------------------------------


def copy_verified(target: Endpoint, source: Endpoint, run_id: str) -> list[str]:
    """Why the run must not subscribe (empty: every unit done, every schema validated equal)."""
    from include.pg_migration.phases.validate import validate_database

    problems: list[str] = []
    with target.connect("pg_migration subscribe", autocommit=True) as tgt:
        run = state.get_run(tgt, run_id)
        if run is None:
            return [f"run {run_id!r} is not registered"]
        units = state.units_of_run(tgt, run_id)
        phases = state.phases_of_run(tgt, run_id)
        validations = state.validations_of_run(tgt, run_id)
    problems += [f"unit {u['unit_id']} is {u['status']}" for u in units if u["status"] != "done"]
    for phase in ("pre-data", "post-data"):
        if (phases.get(phase) or {}).get("status") != "done":
            problems.append(f"phase {phase} is {(phases.get(phase) or {}).get('status', 'not run')}")
    for schema in run["plan"].get("schemas", []):
        result = validations.get(schema)
        if result is None:
            problems.append(f"schema {schema} was not validated")
        elif result.get("mismatches"):
            problems.append(f"schema {schema}: " + "; ".join(result["mismatches"][:5]))
    if not problems:
        problems += validate_database(source, target)["mismatches"]
    return problems


def cleanup_run(source: Endpoint | None, target: Endpoint, run_id: str, logger: logging.Logger | None = None) -> dict:
    """End of a replicate run, whatever happened: a run that is not streaming leaves nothing behind."""
    logger = logger or log
    with target.connect("pg_migration replicate", autocommit=True) as tgt:
        rep = get(tgt, run_id)
    if rep is None:
        return {"run_id": run_id, "action": "none"}
    if rep["status"] == "streaming" and rep["dropped_at"] is None:
        status = lag(source, target, run_id) if source is not None else {}
        logger.info(
            "replication kept for the cut-over: %s. Go live with pg_migration_cutover; call it off with "
            "pg_migration_abort",
            describe_lag(status) if status else "(source unreachable)",
        )
        return {"run_id": run_id, "action": "kept", **status}
    logger.warning("the run did not reach streaming (status %s): dropping what it created", rep["status"])
    result = drop_all(source, target, run_id, status="failed", logger=logger)
    try:
        record_replication_phase(
            target,
            run_id,
            {"replication_status": "failed", "slot": rep["slot"]},
            {"drop": result, "failures": result["errors"]},
        )
    except Exception as exc:  # noqa: BLE001 - the drop itself is what matters
        logger.warning("cannot record the replication phase: %s", exc)
    return {"action": "dropped", **result}


# -- cut-over ----------------------------------------------------------------------------------------

WRITERS = """
SELECT a.pid, a.usename::text AS usename, a.application_name, a.client_addr::text AS client_addr,
       a.xact_start, left(a.query, 120) AS query
  FROM pg_catalog.pg_stat_activity a
 WHERE a.datname = pg_catalog.current_database() AND a.pid <> pg_catalog.pg_backend_pid()
   AND a.backend_xid IS NOT NULL AND a.backend_type = 'client backend'
UNION ALL
SELECT NULL, p.owner::text, 'prepared transaction ' || p.gid, NULL, p.prepared, ''
  FROM pg_catalog.pg_prepared_xacts p WHERE p.database = pg_catalog.current_database()
"""


def writers(src: psycopg.Connection) -> list[dict[str, Any]]:
    """Sessions of the source database holding a transaction id (writing), and prepared transactions."""
    with src.cursor(row_factory=dict_row) as cur:
        return cur.execute(WRITERS).fetchall()


def _describe_writers(rows: list[dict[str, Any]]) -> str:
    return "; ".join(
        f"pid {r['pid']} user {r['usename']} app {r['application_name']!r} from {r['client_addr'] or 'local'}"
        f" (transaction since {r['xact_start']:%H:%M:%S})"
        if r["xact_start"]
        else f"{r['application_name']}"
        for r in rows[:5]
    ) + (f" and {len(rows) - 5} more" if len(rows) > 5 else "")


def cutover_begin(
    source: Endpoint,
    target: Endpoint,
    cutover_run_id: str,
    *,
    dag_id: str = "pg_migration_cutover",
    run_id: str | None = None,
    read_only: bool = False,
    logger: logging.Logger | None = None,
) -> dict[str, Any]:
    """Find the streaming replication, hold the target's guard, optionally make the source read-only."""
    logger = logger or log
    with target.connect("pg_migration cutover", autocommit=True) as tgt:
        if not state.exists(tgt) or not _has_table(tgt):
            raise MigrationError(f"{target.describe()} has no replication of pg_migration (mode replicate) to cut over")
        if run_id:
            rep = get(tgt, run_id)
            if rep is None:
                raise MigrationError(f"run {run_id!r} has no replication on the target")
        else:
            candidates = [r for r in live(tgt) if r["status"] in ("streaming", "cutting-over")]
            if not candidates:
                raise MigrationError(
                    "no streaming replication on the target: run pg_migration with mode replicate first"
                )
            rep = candidates[0]
        if rep["status"] not in ("streaming", "cutting-over") or rep["dropped_at"] is not None:
            raise MigrationError(f"the replication of run {rep['run_id']!r} is {rep['status']}: nothing to cut over")
        state.acquire_guard(tgt, cutover_run_id, dag_id)
        if rep["cutover_run_id"] != cutover_run_id:
            update(
                tgt,
                rep["run_id"],
                status="cutting-over",
                cutover_run_id=cutover_run_id,
                cutover_started_at=_now(tgt),
                writes_stopped_at=None,
                caught_up_at=None,
                validated_at=None,
                finished_at=None,
                stop_lsn=None,
                detail={},
            )
    if read_only:
        ended = set_read_only(source, True)
        with target.connect("pg_migration cutover", autocommit=True) as tgt:
            update(tgt, rep["run_id"], read_only_set=True)
        logger.warning(
            "source database %s made read-only (default_transaction_read_only = on); %d client "
            "session(s) ended. pg_migration_abort (or a failed cut-over) resets it",
            source.dbname,
            ended,
        )
    logger.info(
        "cutting over run %s: subscription %s, slot %s, %d schema(s)",
        rep["run_id"],
        rep["subscription"],
        rep["slot"],
        len(rep["schemas"]),
    )
    return {
        "run_id": rep["run_id"],
        "schemas": rep["schemas"],
        "subscription": rep["subscription"],
        "slot": rep["slot"],
        "publication": rep["publication"],
    }


def cutover_stop_writes(
    source: Endpoint,
    target: Endpoint,
    cutover_run_id: str,
    *,
    timeout_s: float = 300.0,
    logger: logging.Logger | None = None,
) -> dict[str, Any]:
    """Wait until no transaction writes in the source database; record "writes stopped" and its WAL position."""
    logger = logger or log
    started = time.monotonic()
    last_log = -1e9
    with source_admin(source, "pg_migration cutover") as src:
        while True:
            rows = writers(src)
            if not rows:
                stop_lsn, at = src.execute("SELECT pg_catalog.pg_current_wal_insert_lsn()::text, now()").fetchone()
                break
            if time.monotonic() - started > timeout_s:
                raise MigrationError(
                    f"writes did not stop on the source database {source.dbname} within "
                    f"{timeout_s:.0f} s: {_describe_writers(rows)}. Stop the applications (or use "
                    "read_only_source: true); the replication keeps running"
                )
            if time.monotonic() - last_log > 10:
                last_log = time.monotonic()
                logger.info("waiting for writes to stop: %d writing session(s): %s", len(rows), _describe_writers(rows))
            time.sleep(0.25)
    with target.connect("pg_migration cutover", autocommit=True) as tgt:
        rep = by_cutover(tgt, cutover_run_id)
        update(tgt, rep["run_id"], writes_stopped_at=at, stop_lsn=stop_lsn)
    logger.info("no write transaction in %s at %s (WAL %s)", source.dbname, at, stop_lsn)
    return {"writes_stopped_at": at.isoformat(), "stop_lsn": stop_lsn}


def cutover_catch_up(
    source: Endpoint,
    target: Endpoint,
    cutover_run_id: str,
    *,
    timeout_s: float = 1800.0,
    progress_s: float = 10.0,
    logger: logging.Logger | None = None,
) -> dict[str, Any]:
    """Wait until the target has applied everything up to the "writes stopped" WAL position (lag zero)."""
    with target.connect("pg_migration cutover", autocommit=True) as tgt:
        rep = by_cutover(tgt, cutover_run_id)
    if not rep["stop_lsn"]:
        raise MigrationError("the cut-over has no 'writes stopped' position (did stop_writes run?)")
    result = wait_caught_up(
        source,
        target,
        rep["run_id"],
        upto_lsn=rep["stop_lsn"],
        timeout_s=timeout_s,
        progress_s=progress_s,
        logger=logger,
    )
    if not result["caught_up"]:
        raise MigrationError(f"the target did not catch up within {timeout_s:.0f} s: {describe_lag(result)}")
    with target.connect("pg_migration cutover", autocommit=True) as tgt:
        update(tgt, rep["run_id"], caught_up_at=_now(tgt))
    return {"seconds": result["seconds"], "lag_bytes": 0, "retained_wal_bytes": result.get("retained_wal_bytes")}


def cutover_confirm_quiet(
    source: Endpoint,
    target: Endpoint,
    cutover_run_id: str,
    *,
    quiet_s: float = 10.0,
    timeout_s: float = 300.0,
    lag_timeout_s: float = 600.0,
    logger: logging.Logger | None = None,
) -> dict[str, Any]:
    """A quiet window: no transaction of the source database decoded, no session writing (see module doc)."""
    logger = logger or log
    with target.connect("pg_migration cutover", autocommit=True) as tgt:
        rep = by_cutover(tgt, cutover_run_id)
    run_id, slot = rep["run_id"], rep["slot"]
    started = time.monotonic()
    windows = 0
    with source_admin(source, "pg_migration cutover") as src:
        while True:
            windows += 1
            lsn0, window_start = src.execute("SELECT pg_catalog.pg_current_wal_insert_lsn()::text, now()").fetchone()
            first = wait_caught_up(source, target, run_id, upto_lsn=lsn0, timeout_s=lag_timeout_s, logger=logger)
            if not first["caught_up"]:
                raise MigrationError(f"the target did not catch up within {lag_timeout_s:.0f} s: {describe_lag(first)}")
            time.sleep(0.3)  # the decoder's statistics follow its sends by a moment
            txns0 = (slot_status(src, slot) or {}).get("decoded_txns")
            seen: list[dict[str, Any]] = []
            end = time.monotonic() + quiet_s
            while time.monotonic() < end:
                seen += writers(src)
                time.sleep(0.2)
            lsn1 = str(src.execute("SELECT pg_catalog.pg_current_wal_insert_lsn()").fetchone()[0])
            last = wait_caught_up(source, target, run_id, upto_lsn=lsn1, timeout_s=lag_timeout_s, logger=logger)
            if not last["caught_up"]:
                raise MigrationError(f"the target did not catch up within {lag_timeout_s:.0f} s: {describe_lag(last)}")
            time.sleep(0.3)
            txns1 = (slot_status(src, slot) or {}).get("decoded_txns")
            wal_bytes = src.execute(
                "SELECT pg_catalog.pg_wal_lsn_diff(%s::pg_lsn, %s::pg_lsn)::bigint", (lsn1, lsn0)
            ).fetchone()[0]
            decoded = (txns1 - txns0) if txns0 is not None and txns1 is not None else None
            if not seen and (decoded == 0 or (decoded is None and wal_bytes == 0)):
                break
            what = (f"{decoded} transaction(s) of the database committed" if decoded else "") + (
                (" and " if decoded else "") + f"writing session(s): {_describe_writers(seen)}" if seen else ""
            )
            if time.monotonic() - started > timeout_s:
                raise MigrationError(
                    f"writes have not stopped on the source database {source.dbname}: {what or 'WAL moved'} "
                    f"during a {quiet_s:.0f} s quiet window ({windows} tried in {timeout_s:.0f} s)"
                )
            logger.warning("quiet window %d not quiet (%s): trying again", windows, what or f"WAL moved {wal_bytes} B")
    with target.connect("pg_migration cutover", autocommit=True) as tgt:
        rep = by_cutover(tgt, cutover_run_id)
        values: dict[str, Any] = {"caught_up_at": _now(tgt), "stop_lsn": lsn1}
        if windows > 1 or rep["writes_stopped_at"] is None:
            values["writes_stopped_at"] = window_start
        update(tgt, run_id, **values)
    logger.info(
        "source quiet for %.0f s: no transaction of %s decoded, nobody writing; the server's WAL moved %d "
        "bytes meanwhile (other databases, checkpoints); target caught up with %s",
        quiet_s,
        source.dbname,
        wal_bytes,
        lsn1,
    )
    return {
        "windows": windows,
        "wal_advanced_bytes": wal_bytes,
        "decoded_txns": decoded,
        "lsn": lsn1,
        "lag_bytes": 0,
        "retained_wal_bytes": last.get("retained_wal_bytes"),
    }


def cutover_sequences(source: Endpoint, target: Endpoint, cutover_run_id: str) -> list[dict[str, Any]]:
    """Logical replication does not carry sequences: set every sequence of the schemas from the source."""
    with target.connect("pg_migration cutover", autocommit=True) as tgt:
        rep = by_cutover(tgt, cutover_run_id)
        out = []
        with source.connect("pg_migration cutover", autocommit=True) as src:
            apply_settings(src, SOURCE_SETTINGS)
            for schema, name in src.execute(catalog.SEQUENCES, {"schemas": rep["schemas"]}).fetchall():
                ident = sql.Identifier(schema, name)
                value, called = src.execute(sql.SQL("SELECT last_value, is_called FROM {}").format(ident)).fetchone()
                tgt.execute("SELECT pg_catalog.setval(%s::regclass, %s, %s)", (ident.as_string(tgt), value, called))
                out.append({"schema": schema, "name": name, "value": value, "is_called": called})
        merge_detail(tgt, rep["run_id"], sequences=out)
    log.info("%d sequence(s) set from the source", len(out))
    return out


LO_DIGESTS = """
SELECT m.oid::bigint, pg_catalog.md5(pg_catalog.lo_get(m.oid)) FROM pg_catalog.pg_largeobject_metadata m ORDER BY 1
"""


def cutover_large_objects(source: Endpoint, target: Endpoint, cutover_run_id: str) -> dict[str, Any]:
    """Large objects are not replicated: re-copy those whose content differs, unlink those gone."""
    from include.pg_migration.phases.large_objects import copy_large_object

    with (
        source.connect("pg_migration cutover", autocommit=True) as src,
        target.connect("pg_migration cutover", autocommit=True) as tgt,
    ):
        rep = by_cutover(tgt, cutover_run_id)
        src_lo, tgt_lo = dict(src.execute(LO_DIGESTS).fetchall()), dict(tgt.execute(LO_DIGESTS).fetchall())
        changed = sorted(o for o, d in src_lo.items() if tgt_lo.get(o) != d)
        gone = sorted(set(tgt_lo) - set(src_lo))
        for oid in gone:
            tgt.execute("SELECT pg_catalog.lo_unlink(%s)", (oid,))
        for oid in changed:
            copy_large_object(src, tgt, oid)
        result = {"checked": len(src_lo), "copied": changed, "unlinked": gone}
        merge_detail(tgt, rep["run_id"], large_objects=result)
    log.info("large objects: %d checked, %d re-copied, %d unlinked", len(src_lo), len(changed), len(gone))
    return result


def cutover_matviews(source: Endpoint, target: Endpoint, cutover_run_id: str) -> list[str]:
    """Materialized views are not replicated: refresh, on the target, those populated on the source."""
    with target.connect("pg_migration cutover", autocommit=True) as tgt:
        rep = by_cutover(tgt, cutover_run_id)
        with source.connect("pg_migration cutover", autocommit=True) as src:
            views = src.execute(catalog.MATVIEWS, {"schemas": rep["schemas"]}).fetchall()
        refreshed = []
        for schema, name, populated in views:
            if populated:
                tgt.execute(sql.SQL("REFRESH MATERIALIZED VIEW {}").format(sql.Identifier(schema, name)))
                refreshed.append(f"{schema}.{name}")
        merge_detail(tgt, rep["run_id"], matviews=refreshed)
    log.info("%d materialized view(s) refreshed", len(refreshed))
    return refreshed


def cutover_validate(
    source: Endpoint, target: Endpoint, cutover_run_id: str, schema: str, mode: str = "counts"
) -> dict[str, Any]:
    """Validate one schema live on both sides (writes are stopped): counts, checksums, structure, sequences."""
    from include.pg_migration.phases.validate import validate_and_record

    return validate_and_record(source, target, schema, cutover_run_id, mode=mode, logger=log)


def cutover_finish(
    source: Endpoint, target: Endpoint, cutover_run_id: str, logger: logging.Logger | None = None
) -> dict[str, Any]:
    """Every schema validated equal: record "validated", drop subscription, slot, publication. Else keep them."""
    from include.pg_migration.phases.validate import validate_database

    logger = logger or log
    with target.connect("pg_migration cutover", autocommit=True) as tgt:
        rep = by_cutover(tgt, cutover_run_id)
        validations = state.validations_of_run(tgt, cutover_run_id)
        validated_at = tgt.execute(
            state.q("SELECT max(validated_at) FROM {s}.validations WHERE run_id = %s"), (cutover_run_id,)
        ).fetchone()[0]
    problems = [f"schema {s} was not validated" for s in rep["schemas"] if s not in validations]
    problems += [m for s in rep["schemas"] for m in (validations.get(s) or {}).get("mismatches", [])]
    database = validate_database(source, target)
    if rep["read_only_set"]:  # our own setting on the source: not something the target must carry
        database["mismatches"] = [m for m in database["mismatches"] if "default_transaction_read_only" not in m]
    problems += database["mismatches"]
    if problems:
        logger.error(
            "the target differs from the source; replication KEPT (fix and run pg_migration_cutover "
            "again, or call it off with pg_migration_abort): %s",
            "; ".join(problems[:10]),
        )
        with target.connect("pg_migration cutover", autocommit=True) as tgt:
            merge_detail(tgt, rep["run_id"], problems=problems)
        return {"validated": False, "problems": problems, "database": database}
    with target.connect("pg_migration cutover", autocommit=True) as tgt:
        update(tgt, rep["run_id"], validated_at=validated_at)
    dropped = drop_all(source, target, rep["run_id"], status="done", reset_read_only=False, logger=logger)
    with target.connect("pg_migration cutover", autocommit=True) as tgt:
        update(tgt, rep["run_id"], finished_at=_now(tgt))
    if dropped["errors"]:
        raise MigrationError(
            "the target is validated but dropping the replication failed: "
            + "; ".join(dropped["errors"])
            + " (run pg_migration_abort to retry the drop)"
        )
    downtime = (validated_at - rep["writes_stopped_at"]).total_seconds() if rep["writes_stopped_at"] else None
    logger.info(
        "cut-over done: target validated; downtime (writes stopped -> validated) %.1f s",
        downtime if downtime is not None else float("nan"),
    )
    return {"validated": True, "downtime_seconds": downtime, "database": database, **dropped}


def cutover_release(
    source: Endpoint | None, target: Endpoint, cutover_run_id: str, logger: logging.Logger | None = None
) -> None:
    """End of a cut-over, whatever happened: release the guard; a cut-over that did not finish gives
    the source back (read-only reset): the replication keeps running."""
    logger = logger or log
    with target.connect("pg_migration cutover", autocommit=True) as tgt:
        if not state.exists(tgt):
            return
        rep = None
        if _has_table(tgt):
            try:
                rep = by_cutover(tgt, cutover_run_id)
            except MigrationError:
                rep = None
        if rep is not None and rep["finished_at"] is None:
            if rep["read_only_set"] and source is not None:
                set_read_only(source, False)
                update(tgt, rep["run_id"], read_only_set=False)
                logger.warning("cut-over not finished: the source database is writable again")
            if rep["status"] == "cutting-over":
                update(tgt, rep["run_id"], status="streaming")
            logger.warning("cut-over not finished: replication of run %s keeps streaming", rep["run_id"])
        state.release_guard(tgt, cutover_run_id)


def cutover_report(
    source: Endpoint | None,
    target: Endpoint,
    cutover_run_id: str,
    dag_id: str,
    params: dict[str, Any],
    failed_tasks: list[str],
    started_at: str | None = None,
) -> dict[str, Any]:
    """The cut-over's report (same schema as a run's, plus ``cutover``): its downtime, per schema results."""
    from include.pg_migration import report as rpt

    failures = list(failed_tasks)
    data: dict[str, Any] = {
        "dag_id": dag_id,
        "run_id": cutover_run_id,
        "params": params,
        "finished_at": rpt.now(),
        "started_at": started_at,
        "source": source.public() if source else None,
        "target": target.public(),
        "schemas": [],
        "failures": [],
        "warnings": [],
    }
    rep = None
    with target.connect("pg_migration report", autocommit=True) as tgt:
        if state.exists(tgt) and _has_table(tgt):
            try:
                rep = by_cutover(tgt, cutover_run_id)
            except MigrationError as exc:
                failures.append(str(exc))
            validations = state.validations_of_run(tgt, cutover_run_id)
        else:
            validations = {}
            failures.append("the target has no replication state")
    if rep is not None:
        detail = rep["detail"] or {}
        downtime = None
        if rep["validated_at"] and rep["writes_stopped_at"]:
            downtime = (rep["validated_at"] - rep["writes_stopped_at"]).total_seconds()
        data["started_at"] = str(rep["cutover_started_at"])
        data["cutover"] = {
            "replicate_run_id": rep["run_id"],
            "subscription": rep["subscription"],
            "slot": rep["slot"],
            "publication": rep["publication"],
            "writes_stopped_at": str(rep["writes_stopped_at"]),
            "caught_up_at": str(rep["caught_up_at"]),
            "validated_at": str(rep["validated_at"]),
            "downtime_seconds": downtime,
            "replication_dropped": rep["dropped_at"] is not None,
            "read_only_source": bool(rep["read_only_set"]),
            "sequences": len(detail.get("sequences", [])),
            "large_objects": detail.get("large_objects"),
            "matviews": detail.get("matviews", []),
            "drop": detail.get("drop"),
        }
        data["snapshot"] = {
            "id": None,
            "consistent": True,
            "note": (
                f"cut-over of replicate run {rep['run_id']}: downtime {downtime:.1f} s (writes stopped -> validated)"
                if downtime is not None
                else f"cut-over of replicate run {rep['run_id']}: not validated"
            ),
        }
        data["total_seconds"] = downtime
        for schema in rep["schemas"]:
            v = validations.get(schema)
            entry = {
                "schema": schema,
                "units": [],
                "attempts": 0,
                "bytes": 0,
                "seconds": (v or {}).get("seconds", 0),
                "tables": (v or {}).get("tables", []),
                "mismatches": (v or {}).get("mismatches", []),
                "structure_diffs": (v or {}).get("structure_diffs", []),
                "sequences": (v or {}).get("sequences", []),
                "notes": (v or {}).get("notes", []),
                "status": "not validated" if v is None else ("failed" if v.get("mismatches") else "passed"),
            }
            data["schemas"].append(entry)
            failures += [f"{schema}: {m}" for m in entry["mismatches"]]
            if v is None:
                failures.append(f"schema {schema} was not validated")
        if rep["dropped_at"] is None:
            failures.append(
                f"replication of run {rep['run_id']} not dropped (status {rep['status']}): the cut-over "
                "did not finish; the source remains the system of record"
            )
        for problem in detail.get("problems", []):
            failures.append(problem)
    data["failures"] = list(dict.fromkeys(failures))
    data["verdict"] = "passed" if not data["failures"] and rep is not None else "failed"
    return data


def _lo_text(c: dict[str, Any]) -> str:
    lo = c.get("large_objects")
    if not lo:
        return "not checked"
    return f"{lo['checked']} checked, {len(lo['copied'])} re-copied, {len(lo['unlinked'])} unlinked"


def cutover_markdown(data: dict[str, Any]) -> str:
    """The cut-over section appended to report.md."""
    c = data.get("cutover") or {}
    if not c:
        return ""
    down = c.get("downtime_seconds")
    lines = [
        "",
        "## Cut-over",
        "",
        f"- **downtime {down:.1f} s** (writes stopped {c['writes_stopped_at']} -> validated {c['validated_at']})"
        if down is not None
        else "- downtime: not measured (not validated)",
        f"- replicate run `{c['replicate_run_id']}`: subscription `{c['subscription']}`, slot `{c['slot']}`, "
        f"publication `{c['publication']}`: {'dropped' if c['replication_dropped'] else 'KEPT (still streaming)'}",
        f"- caught up at {c['caught_up_at']}; {c['sequences']} sequence(s) set; large objects: {_lo_text(c)}; "
        f"materialized views refreshed: {', '.join(c.get('matviews') or []) or 'none'}",
        f"- source made read-only by the cut-over: {'yes' if c['read_only_source'] else 'no'}",
    ]
    drop = c.get("drop") or {}
    if drop.get("retained_wal_bytes") is not None:
        lines.append(f"- the slot retained {mb(drop['retained_wal_bytes'])} of WAL when it was dropped")
    return "\n".join(lines) + "\n"


def run_cutover(
    source: Endpoint,
    target: Endpoint,
    cutover_run_id: str,
    *,
    run_id: str | None = None,
    validation: str = "counts",
    read_only: bool = False,
    quiet_s: float = 10.0,
    writes_timeout_s: float = 300.0,
    lag_timeout_s: float = 1800.0,
    dag_id: str = "pg_migration_cutover",
    write_report: bool = False,
    on_step: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Every cut-over step in this process (tests, benchmark); the DAG runs them as tasks. Returns the report."""
    failed: list[str] = []
    try:
        begun = cutover_begin(source, target, cutover_run_id, dag_id=dag_id, run_id=run_id, read_only=read_only)
        steps: list[tuple[str, Callable[[], Any]]] = [
            ("stop_writes", lambda: cutover_stop_writes(source, target, cutover_run_id, timeout_s=writes_timeout_s)),
            ("catch_up", lambda: cutover_catch_up(source, target, cutover_run_id, timeout_s=lag_timeout_s)),
            (
                "confirm_quiet",
                lambda: cutover_confirm_quiet(
                    source,
                    target,
                    cutover_run_id,
                    quiet_s=quiet_s,
                    timeout_s=writes_timeout_s,
                    lag_timeout_s=lag_timeout_s,
                ),
            ),
            ("sequences", lambda: cutover_sequences(source, target, cutover_run_id)),
            ("large_objects", lambda: cutover_large_objects(source, target, cutover_run_id)),
            ("matviews", lambda: cutover_matviews(source, target, cutover_run_id)),
        ]
        steps += [
            (f"validate {s}", lambda s=s: cutover_validate(source, target, cutover_run_id, s, validation))
            for s in begun["schemas"]
        ]
        steps.append(("finish", lambda: cutover_finish(source, target, cutover_run_id)))
        for name, step in steps:
            if on_step:
                on_step(name)
            step()
    except MigrationError as exc:
        failed.append(str(exc))
    finally:
        cutover_release(source, target, cutover_run_id)
    data = cutover_report(
        source, target, cutover_run_id, dag_id, {"validation": validation, "read_only_source": read_only}, failed
    )
    if write_report:
        data["report"] = write_cutover_report(data)
    return data


def write_cutover_report(data: dict[str, Any]) -> str:
    """report.json + report.md (with the cut-over section) under the reports base; returns the folder."""
    import fsspec

    from include.pg_migration import report as rpt

    folder = rpt.write(data)
    fs, path = fsspec.core.url_to_fs(folder)
    text = fs.cat_file(f"{path}/report.md").decode()
    with fs.open(f"{path}/report.md", "w") as f:
        f.write(text + cutover_markdown(data))
    return folder


# -- abort ---------------------------------------------------------------------------------------------


def abort(
    source: Endpoint | None, target: Endpoint, run_id: str | None = None, logger: logging.Logger | None = None
) -> dict[str, Any]:
    """Call the replication off: drop what the run (default: every live one) created, give the source back."""
    logger = logger or log
    with target.connect("pg_migration abort", autocommit=True) as tgt:
        if not state.exists(tgt):
            return {"aborted": [], "errors": [], "note": "the target has no pg_migration state"}
        if run_id:
            rows = [r for r in [get(tgt, run_id)] if r is not None]
            if not rows:
                rows = [{"run_id": run_id}]  # nothing recorded: still look for objects named after it
        else:
            rows = live(tgt)
    out: dict[str, Any] = {"aborted": [], "errors": [], "results": []}
    for row in rows:
        result = drop_all(source, target, row["run_id"], status="aborted", logger=logger)
        with target.connect("pg_migration abort", autocommit=True) as tgt:
            if state.exists(tgt):
                held = tgt.execute(state.q("SELECT run_id FROM {s}.guard")).fetchone()
                if held and held[0] in (row["run_id"], row.get("cutover_run_id")):
                    state.release_guard(tgt, held[0])
                if state.get_run(tgt, row["run_id"]) is not None:
                    state.set_run(tgt, row["run_id"], status="aborted")
        out["aborted"].append(row["run_id"])
        out["results"].append(result)
        out["errors"] += result["errors"]
    if not rows:
        logger.info("no live replication on the target: nothing to abort")
    return out


# -- a replicate run driven step by step without Airflow (tests; the reference for the DAG) ----------


def _local_run_class():
    from include.pg_migration.pipeline import LocalRun

    return LocalRun


class ReplicateRun(_local_run_class()):
    """``LocalRun`` in replicate mode: what ``pg_migration`` with ``mode: "replicate"`` does, in order.

    start():  discover, plan, checks (:func:`check`), register, publication, slot + snapshot (holder), pre-data
    unit():   a data unit in the slot's snapshot (inherited)
    finish(): large objects, release, post-data, validate, subscribe, catch up (lag in the run's phases);
              whatever happens, :meth:`end` (a run that is not streaming drops what it created)
    """

    def __init__(
        self,
        source: Endpoint,
        target: Endpoint,
        run_id: str,
        *,
        publisher: Endpoint | None = None,
        replica_identity_full: bool = False,
        catchup_timeout_s: float = 60.0,
        validation: str = "counts",
        **options: Any,
    ):
        if options.get("resume"):
            raise ConfigError("resume: true is refused in replicate mode (see replicate.check)")
        options.pop("consistent", None)
        super().__init__(source, target, run_id, consistent=True, **options)
        self.params.update(mode="replicate", replica_identity_full=replica_identity_full, validation=validation)
        self.publisher = publisher or source
        self.catchup_timeout_s = catchup_timeout_s
        self.validation = validation
        self.findings: list[dict[str, str]] = []
        self.lag: dict[str, Any] = {}

    def start(self) -> dict[str, Any]:
        from include.pg_migration import pipeline
        from include.pg_migration.phases import snapshot
        from include.pg_migration.runner import local_env, run_local

        inventory = pipeline.discover(self.source, self.include, self.exclude)
        self.plan = pipeline.make_plan(inventory, self.pool_size)
        self.findings = check(self.source, self.target, self.plan["schemas"], self.params, self.run_id)
        raise_blocking(self.findings)
        pipeline.register(self.target, self.run_id, self.dag_id, self.params, self.plan, self.source, True)
        register(
            self.target, self.run_id, self.dag_id, self.source, self.plan, bool(self.params["replica_identity_full"])
        )
        prepare_publication(self.source, self.target, self.run_id)
        log_file = self.log_dir / f"pg_migration-snapshot-{self.run_id}.log"
        snapshot.start_local(local_env(self.env("snapshot")), log_file)
        snapshot.wait_for_snapshot(self.target, self.run_id)
        run_local(self.env("pre-data"), label="pre-data")
        return self.plan

    def finish(self) -> dict[str, Any]:
        from include.pg_migration.phases import snapshot
        from include.pg_migration.phases.validate import validate_schema
        from include.pg_migration.runner import run_local

        try:
            run_local(self.env("large-objects"), label="large-objects")
            if self.validation != "checksums":
                snapshot.request_release(self.target, self.run_id)
            run_local(self.env("post-data"), label="post-data")
            with self.target.connect(autocommit=True) as tgt:
                snapshot_id = state.get_run(tgt, self.run_id)["snapshot_id"]
            for schema in self.plan["schemas"]:
                result = validate_schema(
                    self.source,
                    self.target,
                    schema,
                    run_id=self.run_id,
                    mode=self.validation,
                    snapshot_id=snapshot_id if self.validation == "checksums" else None,
                )
                with self.target.connect(autocommit=True) as tgt:
                    state.save_validation(tgt, self.run_id, schema, result.to_dict())
            snapshot.request_release(self.target, self.run_id)
            problems = copy_verified(self.target, self.source, self.run_id)
            if problems:
                raise MigrationError("not subscribing: the copy is not verified: " + "; ".join(problems[:10]))
            subscribe(self.target, self.run_id, self.publisher)
            self.lag = wait_caught_up(self.source, self.target, self.run_id, timeout_s=self.catchup_timeout_s)
            record_replication_phase(self.target, self.run_id, self.lag, {"caught_up": self.lag["caught_up"]})
            return self.lag
        finally:
            self.end()

    def end(self) -> dict[str, Any]:
        """Drop everything unless streaming; release the snapshot and the guard."""
        try:
            return cleanup_run(self.source, self.target, self.run_id)
        finally:
            self.close()

    def close(self) -> None:
        from include.pg_migration.phases import snapshot

        snapshot.request_release(self.target, self.run_id)
        with self.target.connect(autocommit=True) as conn:
            if state.exists(conn):
                state.release_guard(conn, self.run_id)

    def cutover(self, cutover_run_id: str | None = None, **options: Any) -> dict[str, Any]:
        return run_cutover(
            self.source, self.target, cutover_run_id or f"{self.run_id}__cutover", run_id=self.run_id, **options
        )

    def abort(self) -> dict[str, Any]:
        return abort(self.source, self.target, self.run_id)
