"""Dropping what a replicate run created, whatever happened: at the cut-over's end, on a failed run, on abort.

:func:`drop_all` drops the run's subscription (target), slot and publication (source) and
restores the replica identities it changed and the source's read-only setting, best effort, each
error listed; :func:`cleanup_run` is the end of a replicate run (a run that is not streaming
leaves nothing behind); :func:`abort` calls a replication off (``pg_migration_abort``).
"""

from __future__ import annotations

import logging
import time
from typing import Any

import psycopg
from psycopg import sql

from include.pg_migration import state
from include.pg_migration.conn import Endpoint
from include.pg_migration.errors import MigrationError
from include.pg_migration.replicate import records
from include.pg_migration.replicate.lag import describe_lag, lag, mb, record_replication_phase, slot_status
from include.pg_migration.replicate.publication import source_admin
from include.pg_migration.replicate.slot import slot_exists
from include.pg_migration.replicate.subscription import find_subscription

log = logging.getLogger(__name__)


def _drop_subscription(tgt: psycopg.Connection, name: str) -> bool:
    if find_subscription(tgt, name) is None:
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
    logger = logger or log
    out: dict[str, Any] = {"run_id": run_id, "dropped": [], "errors": [], "retained_wal_bytes": None}
    try:
        state.request_release(target, run_id)
    except Exception as exc:  # noqa: BLE001
        out["errors"].append(f"releasing the snapshot holder: {exc}")
    with target.connect("pg_migration replicate-drop", autocommit=True) as tgt:
        rep = records.get(tgt, run_id)
        n = records.names(run_id)
        if rep is None:
            rep = {
                "publication": n.publication,
                "slot": n.slot,
                "subscription": n.subscription,
                "identity_changed": [],
                "read_only_set": False,
            }
        _drop_on_target(tgt, rep, out)
        if source is not None:
            _drop_on_source(source, tgt, run_id, rep, out, reset_read_only=reset_read_only, logger=logger)
        else:
            out["errors"].append("the source is unreachable: its slot and publication were not dropped")
        if records.get(tgt, run_id) is not None:
            values: dict[str, Any] = {"status": status}
            if not out["errors"]:
                values["dropped_at"] = records.now(tgt)
            records.update(tgt, run_id, **values)
            records.merge_detail(tgt, run_id, drop=out)
    for item in out["dropped"]:
        logger.info("dropped %s", item)
    for err in out["errors"]:
        logger.error("could not drop %s", err)
    return out


def _drop_on_target(tgt: psycopg.Connection, rep: dict[str, Any], out: dict[str, Any]) -> None:
    """The subscription, and the replica identities the run changed (on the target: copied with the DDL)."""
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


def _drop_on_source(
    source: Endpoint,
    tgt: psycopg.Connection,
    run_id: str,
    rep: dict[str, Any],
    out: dict[str, Any],
    *,
    reset_read_only: bool,
    logger: logging.Logger,
) -> None:
    """The slot (its retained WAL logged first), the publication, the replica identities, the read-only setting."""
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
            if records.get(tgt, run_id):
                records.update(tgt, run_id, read_only_set=False)
    except MigrationError as exc:
        out["errors"].append(f"source: {exc}")


def _drop_publication(src: psycopg.Connection, name: str) -> bool:
    if not src.execute("SELECT 1 FROM pg_catalog.pg_publication WHERE pubname = %s", (name,)).fetchone():
        return False
    src.execute(sql.SQL("DROP PUBLICATION {}").format(sql.Identifier(name)))
    return True


def leftovers(src: psycopg.Connection, run_id: str) -> list[str]:
    """The run's objects still present on the source (tests, abort's report)."""
    n = records.names(run_id)
    out = []
    if slot_exists(src, n.slot):
        out.append(f"slot {n.slot}")
    if src.execute("SELECT 1 FROM pg_catalog.pg_publication WHERE pubname = %s", (n.publication,)).fetchone():
        out.append(f"publication {n.publication}")
    return out


def cleanup_run(source: Endpoint | None, target: Endpoint, run_id: str, logger: logging.Logger | None = None) -> dict:
    """End of a replicate run, whatever happened: a run that is not streaming leaves nothing behind."""
    logger = logger or log
    with target.connect("pg_migration replicate", autocommit=True) as tgt:
        rep = records.get(tgt, run_id)
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


def abort(
    source: Endpoint | None, target: Endpoint, run_id: str | None = None, logger: logging.Logger | None = None
) -> dict[str, Any]:
    """Call the replication off: drop what the run (default: every live one) created, give the source back."""
    logger = logger or log
    with target.connect("pg_migration abort", autocommit=True) as tgt:
        if not state.exists(tgt):
            return {"aborted": [], "errors": [], "note": "the target has no pg_migration state"}
        if run_id:
            rows = [r for r in [records.get(tgt, run_id)] if r is not None]
            if not rows:
                rows = [{"run_id": run_id}]  # nothing recorded: still look for objects named after it
        else:
            rows = records.live(tgt)
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
