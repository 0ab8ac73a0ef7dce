"""Sessions the worker opens: tagged, time-limited, and able to clear a dead attempt's leftovers.

Every session of a unit carries ``application_name = "pgmig <run> <unit>"``. A retried unit first
ends any session still carrying its tag (a SIGKILLed worker leaves its server sessions running
until the server notices), then holds a per-unit advisory lock on the target for its whole life, so
two attempts of one unit can never write at the same time.
"""

from __future__ import annotations

import hashlib
import logging
import time

import psycopg
from psycopg import sql

from include.pg_migration.conn import Endpoint
from include.pg_migration.errors import MigrationError, SnapshotLost

log = logging.getLogger(__name__)

#: Settings of every source session: never wait long for a lock on production, never run away, and
#: never read through a row-level security policy: with ``row_security = off`` a query that a policy
#: would filter RAISES instead (as pg_dump does), so no row is lost silently.
SOURCE_SETTINGS = {
    "row_security": "off",
    "lock_timeout": "30s",
    "idle_in_transaction_session_timeout": "0",
    "statement_timeout": "0",  # a COPY of a big table legitimately takes hours
}

#: Settings of every target session that counts or hashes (validation): never through a policy.
TARGET_READ_SETTINGS = {"row_security": "off"}

#: Settings that fix how values are rendered as text, on both sides, for checksums and text COPY.
TEXT_SETTINGS = {
    "TimeZone": "UTC",
    "DateStyle": "ISO, YMD",
    "IntervalStyle": "postgres",
    "extra_float_digits": "3",
    "bytea_output": "hex",
}

TERMINATE_TAGGED = """
SELECT pg_catalog.pg_terminate_backend(pid, 5000)
  FROM pg_catalog.pg_stat_activity
 WHERE application_name = %(tag)s AND pid <> pg_catalog.pg_backend_pid()
   AND datname = pg_catalog.current_database()
"""


def tag(run_id: str, unit_id: str) -> str:
    """The application_name of a unit's sessions (fits PostgreSQL's 63 bytes)."""
    run = hashlib.sha1(run_id.encode()).hexdigest()[:8]
    text = f"pgmig {run} {unit_id}"
    return text.encode()[:63].decode(errors="ignore")


def lock_key(run_id: str, unit_id: str) -> int:
    digest = hashlib.sha1(f"{run_id}\0{unit_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def apply_settings(conn: psycopg.Connection, settings: dict[str, str]) -> None:
    for name, value in settings.items():
        conn.execute(
            sql.SQL("SELECT pg_catalog.set_config({}, {}, false)").format(sql.Literal(name), sql.Literal(value))
        )


def end_stale_sessions(conn: psycopg.Connection, session_tag: str) -> int:
    """Terminate other sessions carrying our tag (a killed earlier attempt); return how many."""
    rows = conn.execute(TERMINATE_TAGGED, {"tag": session_tag}).fetchall()
    if rows:
        log.warning("ended %d stale session(s) of an earlier attempt (%s)", len(rows), session_tag)
    return len(rows)


def hold_unit_lock(conn: psycopg.Connection, key: int, timeout_s: float = 120.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not conn.execute("SELECT pg_catalog.pg_try_advisory_lock(%s)", (key,)).fetchone()[0]:
        if time.monotonic() > deadline:
            raise MigrationError("another attempt of this unit still holds its lock on the target")
        time.sleep(1)


def open_source_snapshot(source: Endpoint, app: str, snapshot_id: str | None) -> psycopg.Connection:
    """A read-only REPEATABLE READ session on the source, in the run's snapshot when given."""
    conn = source.connect(app)
    try:
        conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        conn.read_only = True
        if snapshot_id:
            try:
                conn.execute(sql.SQL("SET TRANSACTION SNAPSHOT {}").format(sql.Literal(snapshot_id)))
            except (
                psycopg.errors.ObjectNotInPrerequisiteState,  # the exporting transaction ended
                psycopg.errors.InvalidParameterValue,  # "invalid snapshot identifier"
                psycopg.errors.UndefinedObject,  # a slot's snapshot: "snapshot ... does not exist"
            ) as exc:
                raise SnapshotLost(
                    f"the run's source snapshot {snapshot_id!r} is gone ({str(exc).strip()}): its holder "
                    "died or was released before this unit ran. The run's single consistent cut cannot "
                    "be recreated; re-run with resume: true (loaded tables are kept) or consistent: false."
                ) from None
        else:
            conn.execute("SELECT 1")  # opens the transaction: this unit's own snapshot
        apply_settings(conn, {**SOURCE_SETTINGS, **TEXT_SETTINGS})
    except BaseException:
        conn.close()
        raise
    return conn
