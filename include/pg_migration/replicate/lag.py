"""How far the target is behind: the slot's and the subscription's status, waiting to catch up.

:func:`lag` (slot and subscription status, WAL retained by the slot, apply errors),
:func:`describe_lag` (one line for the log), :func:`wait_caught_up` (until the slot's confirmed
position passes a WAL position) and :func:`record_replication_phase` (the run's ``replication``
phase, read by the report).
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from typing import Any

import psycopg
from psycopg.rows import dict_row

from include.pg_migration import state
from include.pg_migration.conn import Endpoint
from include.pg_migration.errors import MigrationError
from include.pg_migration.replicate import records

log = logging.getLogger(__name__)

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
        rep = records.get(tgt, run_id)
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
        rep = records.get(tgt, run_id)
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
