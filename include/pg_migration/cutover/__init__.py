"""The ``pg_migration_cutover`` DAG's steps: go live on the target a replicate run keeps in sync.

Each function is named after its task id in the Grid view; the DAG runs them as tasks,
:func:`include.pg_migration.harness.run_cutover` chains them in one process (tests, benchmark):

1. :func:`begin`: find the streaming replication (latest, or by run id), take the target's
   guard; optionally make the source database read-only (``default_transaction_read_only`` and its
   client sessions ended; undone by abort or a failed cut-over).
2. :func:`stop_writes`: no transaction holding a transaction id (and no prepared one) in the source
   database; waits up to a timeout, naming the sessions still writing.
3. :func:`catch_up`: waits until the slot's confirmed position passes the WAL position taken when
   writes stopped (lag zero), logging the lag while it waits; timeout.
4. :func:`confirm_quiet`: a quiet window in which no transaction of the source database is decoded
   from the WAL (``pg_stat_replication_slots.total_txns`` of our slot, database-scoped: the server's
   WAL position also moves for other databases, checkpoints and vacuum, so its advance is reported,
   not judged) and no session holds a transaction id. Writes seen: the window restarts (an
   auto-analyze is a one-off); still seen at the timeout: the cut-over fails, naming them.
   "Writes stopped" is the start of the quiet window that passed.
5. :func:`sequences` (logical replication does not carry sequences), :func:`large_objects`
   (re-copied when their content differs), :func:`matviews` (refreshed).
6. :func:`validate` per schema: exact live counts on both sides (checksums when asked), structure
   inventory (DDL made on the source after the cut fails here, naming the object), sequences; then
   :func:`finish` drops subscription, slot and publication and restores the replica identities it
   changed (:func:`include.pg_migration.replicate.teardown.drop_all`) -- only when every schema
   passed. Downtime = "writes stopped" -> "validated".
7. :func:`release`, whatever happened: the guard; a cut-over that did not finish gives the source
   back (read-only reset) and the replication keeps streaming.

The cut-over's report: :func:`include.pg_migration.reports.assemble.cutover_report`. The replication itself:
:mod:`include.pg_migration.replicate`.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from include.pg_migration import catalog, ownership, state
from include.pg_migration.conn import Endpoint
from include.pg_migration.errors import MigrationError
from include.pg_migration.lo_digest import large_object_digests_both
from include.pg_migration.phases.large_objects import copy_large_object
from include.pg_migration.phases.validate import validate_and_record, validate_database
from include.pg_migration.replicate import records
from include.pg_migration.replicate.lag import describe_lag, slot_status, wait_caught_up
from include.pg_migration.replicate.publication import source_admin
from include.pg_migration.replicate.teardown import drop_all, set_read_only
from include.pg_migration.sessions import SOURCE_SETTINGS, apply_settings

log = logging.getLogger(__name__)

WRITERS = """
SELECT a.pid, a.usename::text AS usename, a.application_name, a.client_addr::text AS client_addr,
       a.xact_start, left(a.query, 120) AS query
  FROM pg_catalog.pg_stat_activity a
 WHERE a.datname = pg_catalog.current_database() AND a.pid <> pg_catalog.pg_backend_pid()
   AND a.backend_xid IS NOT NULL
   -- backend_type is NULL for another role's session unless we have pg_read_all_stats: still a writer
   AND coalesce(a.backend_type, 'client backend') = 'client backend'
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


def begin(
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
        if not state.exists(tgt) or not records.has_table(tgt):
            raise MigrationError(f"{target.describe()} has no replication of pg_migration (mode replicate) to cut over")
        if run_id:
            rep = records.get(tgt, run_id)
            if rep is None:
                raise MigrationError(f"run {run_id!r} has no replication on the target")
        else:
            candidates = [r for r in records.live(tgt) if r["status"] in ("streaming", "cutting-over")]
            if not candidates:
                raise MigrationError(
                    "no streaming replication on the target: run pg_migration with mode replicate first"
                )
            rep = candidates[0]
        if rep["status"] not in ("streaming", "cutting-over") or rep["dropped_at"] is not None:
            raise MigrationError(f"the replication of run {rep['run_id']!r} is {rep['status']}: nothing to cut over")
        state.acquire_guard(tgt, cutover_run_id, dag_id)
        if rep["cutover_run_id"] != cutover_run_id:
            records.update(
                tgt,
                rep["run_id"],
                status="cutting-over",
                cutover_run_id=cutover_run_id,
                cutover_started_at=records.now(tgt),
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
            records.update(tgt, rep["run_id"], read_only_set=True)
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


def stop_writes(
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
        rep = records.by_cutover(tgt, cutover_run_id)
        records.update(tgt, rep["run_id"], writes_stopped_at=at, stop_lsn=stop_lsn)
    logger.info("no write transaction in %s at %s (WAL %s)", source.dbname, at, stop_lsn)
    return {"writes_stopped_at": at.isoformat(), "stop_lsn": stop_lsn}


def catch_up(
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
        rep = records.by_cutover(tgt, cutover_run_id)
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
        records.update(tgt, rep["run_id"], caught_up_at=records.now(tgt))
    return {"seconds": result["seconds"], "lag_bytes": 0, "retained_wal_bytes": result.get("retained_wal_bytes")}


@dataclass
class _Window:
    """One quiet window of :func:`confirm_quiet`: where it started and ended, what moved in it."""

    start: dt.datetime
    lsn: str
    wal_bytes: int
    decoded: int | None
    seen: list[dict[str, Any]]
    last: dict[str, Any]

    @property
    def quiet(self) -> bool:
        return not self.seen and (self.decoded == 0 or (self.decoded is None and self.wal_bytes == 0))

    def what(self) -> str:
        return (f"{self.decoded} transaction(s) of the database committed" if self.decoded else "") + (
            (" and " if self.decoded else "") + f"writing session(s): {_describe_writers(self.seen)}"
            if self.seen
            else ""
        )


def _quiet_window(
    src: psycopg.Connection,
    source: Endpoint,
    target: Endpoint,
    run_id: str,
    slot: str,
    *,
    quiet_s: float,
    lag_timeout_s: float,
    logger: logging.Logger,
) -> _Window:
    """Caught up at its start and at its end; in between, ``quiet_s`` of watching for writers."""
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
    return _Window(start=window_start, lsn=lsn1, wal_bytes=wal_bytes, decoded=decoded, seen=seen, last=last)


def confirm_quiet(
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
        rep = records.by_cutover(tgt, cutover_run_id)
    run_id, slot = rep["run_id"], rep["slot"]
    started = time.monotonic()
    windows = 0
    with source_admin(source, "pg_migration cutover") as src:
        while True:
            windows += 1
            w = _quiet_window(
                src, source, target, run_id, slot, quiet_s=quiet_s, lag_timeout_s=lag_timeout_s, logger=logger
            )
            if w.quiet:
                break
            what = w.what()
            if time.monotonic() - started > timeout_s:
                raise MigrationError(
                    f"writes have not stopped on the source database {source.dbname}: {what or 'WAL moved'} "
                    f"during a {quiet_s:.0f} s quiet window ({windows} tried in {timeout_s:.0f} s)"
                )
            logger.warning(
                "quiet window %d not quiet (%s): trying again", windows, what or f"WAL moved {w.wal_bytes} B"
            )
    with target.connect("pg_migration cutover", autocommit=True) as tgt:
        rep = records.by_cutover(tgt, cutover_run_id)
        values: dict[str, Any] = {"caught_up_at": records.now(tgt), "stop_lsn": w.lsn}
        if windows > 1 or rep["writes_stopped_at"] is None:
            values["writes_stopped_at"] = w.start
        records.update(tgt, run_id, **values)
    logger.info(
        "source quiet for %.0f s: no transaction of %s decoded, nobody writing; the server's WAL moved %d "
        "bytes meanwhile (other databases, checkpoints); target caught up with %s",
        quiet_s,
        source.dbname,
        w.wal_bytes,
        w.lsn,
    )
    return {
        "windows": windows,
        "wal_advanced_bytes": w.wal_bytes,
        "decoded_txns": w.decoded,
        "lsn": w.lsn,
        "lag_bytes": 0,
        "retained_wal_bytes": w.last.get("retained_wal_bytes"),
    }


def sequences(source: Endpoint, target: Endpoint, cutover_run_id: str) -> list[dict[str, Any]]:
    """Logical replication does not carry sequences: set every sequence of the schemas from the source."""
    with target.connect("pg_migration cutover", autocommit=True) as tgt:
        rep = records.by_cutover(tgt, cutover_run_id)
        out = []
        with source.connect("pg_migration cutover", autocommit=True) as src:
            apply_settings(src, SOURCE_SETTINGS)
            for schema, name in src.execute(catalog.SEQUENCES, {"schemas": rep["schemas"]}).fetchall():
                ident = sql.Identifier(schema, name)
                value, called = src.execute(sql.SQL("SELECT last_value, is_called FROM {}").format(ident)).fetchone()
                tgt.execute("SELECT pg_catalog.setval(%s::regclass, %s, %s)", (ident.as_string(tgt), value, called))
                out.append({"schema": schema, "name": name, "value": value, "is_called": called})
        records.merge_detail(tgt, rep["run_id"], sequences=out)
    log.info("%d sequence(s) set from the source", len(out))
    return out


def large_objects(source: Endpoint, target: Endpoint, cutover_run_id: str) -> dict[str, Any]:
    """Large objects are not replicated: re-copy those whose content differs (digests over chunked reads,
    both sides at once: :func:`.lo_digest.large_object_digests_both`), unlink those gone."""
    with (
        source.connect("pg_migration cutover", autocommit=True) as src,
        target.connect("pg_migration cutover", autocommit=True) as tgt,
    ):
        apply_settings(src, SOURCE_SETTINGS)
        rep = records.by_cutover(tgt, cutover_run_id)
        src_lo, tgt_lo = large_object_digests_both(src, tgt)
        changed = sorted(o for o, d in src_lo.items() if tgt_lo.get(o) != d)
        gone = sorted(set(tgt_lo) - set(src_lo))
        for oid in gone:
            tgt.execute("SELECT pg_catalog.lo_unlink(%s)", (oid,))
        for oid in changed:
            copy_large_object(src, tgt, oid)
        result = {"checked": len(src_lo), "copied": changed, "unlinked": gone}
        records.merge_detail(tgt, rep["run_id"], large_objects=result)
    log.info("large objects: %d checked, %d re-copied, %d unlinked", len(src_lo), len(changed), len(gone))
    return result


def matviews(source: Endpoint, target: Endpoint, cutover_run_id: str) -> list[str]:
    """Materialized views are not replicated: refresh, on the target, those populated on the source."""
    with target.connect("pg_migration cutover", autocommit=True) as tgt:
        rep = records.by_cutover(tgt, cutover_run_id)
        with source.connect("pg_migration cutover", autocommit=True) as src:
            views = src.execute(catalog.MATVIEWS, {"schemas": rep["schemas"]}).fetchall()
        refreshed = []
        for schema, name, populated in views:
            if populated:
                tgt.execute(sql.SQL("REFRESH MATERIALIZED VIEW {}").format(sql.Identifier(schema, name)))
                refreshed.append(f"{schema}.{name}")
        records.merge_detail(tgt, rep["run_id"], matviews=refreshed)
    log.info("%d materialized view(s) refreshed", len(refreshed))
    return refreshed


def validate(
    source: Endpoint, target: Endpoint, cutover_run_id: str, schema: str, mode: str = "counts"
) -> dict[str, Any]:
    """Validate one schema live on both sides (writes are stopped): counts, checksums, structure, sequences;
    owners too when the replicate run carried them (its ``ownership`` param)."""
    with target.connect("pg_migration cutover", autocommit=True) as tgt:
        run = state.get_run(tgt, records.by_cutover(tgt, cutover_run_id)["run_id"]) or {}
    owners = ownership.mode_of(run.get("params") or {}) != "target_user"
    return validate_and_record(source, target, schema, cutover_run_id, mode=mode, owners=owners, logger=log)


def finish(
    source: Endpoint, target: Endpoint, cutover_run_id: str, logger: logging.Logger | None = None
) -> dict[str, Any]:
    """Every schema validated equal: record "validated", drop subscription, slot, publication. Else keep them."""
    logger = logger or log
    with target.connect("pg_migration cutover", autocommit=True) as tgt:
        rep = records.by_cutover(tgt, cutover_run_id)
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
            records.merge_detail(tgt, rep["run_id"], problems=problems)
        return {"validated": False, "problems": problems, "database": database}
    with target.connect("pg_migration cutover", autocommit=True) as tgt:
        records.update(tgt, rep["run_id"], validated_at=validated_at)
    dropped = drop_all(source, target, rep["run_id"], status="done", reset_read_only=False, logger=logger)
    with target.connect("pg_migration cutover", autocommit=True) as tgt:
        records.update(tgt, rep["run_id"], finished_at=records.now(tgt))
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


def release(
    source: Endpoint | None, target: Endpoint, cutover_run_id: str, logger: logging.Logger | None = None
) -> None:
    """End of a cut-over, whatever happened: release the guard; a cut-over that did not finish gives
    the source back (read-only reset): the replication keeps running."""
    logger = logger or log
    with target.connect("pg_migration cutover", autocommit=True) as tgt:
        if not state.exists(tgt):
            return
        rep = None
        if records.has_table(tgt):
            try:
                rep = records.by_cutover(tgt, cutover_run_id)
            except MigrationError:
                rep = None
        if rep is not None and rep["finished_at"] is None:
            if rep["read_only_set"] and source is not None:
                set_read_only(source, False)
                records.update(tgt, rep["run_id"], read_only_set=False)
                logger.warning("cut-over not finished: the source database is writable again")
            if rep["status"] == "cutting-over":
                records.update(tgt, rep["run_id"], status="streaming")
            logger.warning("cut-over not finished: replication of run %s keeps streaming", rep["run_id"])
        state.release_guard(tgt, cutover_run_id)
