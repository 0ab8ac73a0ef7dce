"""Sessions the worker opens: tagged, time-limited, and able to clear a dead attempt's leftovers.

Every session of a unit carries ``application_name = "pgmig <hash> <kind> <unit>"`` (``tag``): the
hash of run and unit is the identifying part, the kind a fixed 3-letter field (``wrk`` for the
worker's own sessions and its COPY streams, ``idx`` for the index builder), the unit's name only a
readable suffix cut to PostgreSQL's 63 bytes. A retried unit first ends every session of its run and
unit, of any kind (``end_stale_sessions`` matches the ``pgmig <hash> `` prefix: a SIGKILLed worker
leaves its server sessions running until the server notices), then holds a per-unit advisory lock
on the target for its whole life, so two attempts of one unit can never write at the same time.
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

#: Ends the sessions of one run+unit, of every kind, by the tags' identifying prefix: printable ASCII
#: (which the server keeps as is, while it rewrites other characters of an application_name), no
#: pattern (starts_with, not LIKE), its hash that unit's alone whatever the name's length.
TERMINATE_TAGGED = """
SELECT pg_catalog.pg_terminate_backend(pid, 5000)
  FROM pg_catalog.pg_stat_activity
 WHERE pg_catalog.starts_with(application_name, %(prefix)s) AND pid <> pg_catalog.pg_backend_pid()
   AND datname = pg_catalog.current_database()
"""

#: Session kinds (the fixed field of a tag): the worker's own sessions, the index builder's.
WORKER = "wrk"
INDEX = "idx"
#: A phase worker's sessions (snapshot, pre-data, large objects, post-data): never a unit's.
PHASE = "phs"
KINDS = (WORKER, INDEX, PHASE)
#: PostgreSQL keeps NAMEDATALEN - 1 bytes of an application_name.
APP_NAME_BYTES = 63


def _prefix(run_id: str, unit_id: str, scope: str) -> str:
    digest = hashlib.sha256(f"{scope}\0{run_id}\0{unit_id}".encode()).hexdigest()[:16]
    return f"pgmig {digest} "


def tag_prefix(run_id: str, unit_id: str) -> str:
    """The identifying start of every tag of a unit's sessions (all kinds), matched by a retry."""
    return _prefix(run_id, unit_id, "unit")


def _with_suffix(prefix: str, kind: str, name: str) -> str:
    if kind not in KINDS:
        raise ValueError(f"session kind must be one of {', '.join(KINDS)} (got {kind!r})")
    text = f"{prefix}{kind} {name}"
    return text.encode()[:APP_NAME_BYTES].decode(errors="ignore")  # never a cut character


def tag(run_id: str, unit_id: str, kind: str = WORKER) -> str:
    """The application_name of a unit's sessions of one kind: unique per (run, unit, kind) whatever
    the names' lengths, at most 63 bytes of valid UTF-8, the unit's name as a readable suffix."""
    if kind == PHASE:
        raise ValueError("a phase worker's tag is phase_tag(run_id, phase)")
    return _with_suffix(tag_prefix(run_id, unit_id), kind, unit_id)


def phase_tag(run_id: str, phase: str) -> str:
    """The application_name of a phase worker's sessions (never equal to a unit's, whatever its name)."""
    return _with_suffix(_prefix(run_id, phase, "phase"), PHASE, phase)


def lock_key(run_id: str, unit_id: str) -> int:
    digest = hashlib.sha1(f"{run_id}\0{unit_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def apply_settings(conn: psycopg.Connection, settings: dict[str, str]) -> None:
    for name, value in settings.items():
        conn.execute(
            sql.SQL("SELECT pg_catalog.set_config({}, {}, false)").format(sql.Literal(name), sql.Literal(value))
        )


def end_stale_sessions(conn: psycopg.Connection, run_id: str, unit_id: str) -> int:
    """Terminate the other sessions of this run+unit, of every kind (a killed earlier attempt's);
    return how many."""
    prefix = tag_prefix(run_id, unit_id)
    rows = conn.execute(TERMINATE_TAGGED, {"prefix": prefix}).fetchall()
    if rows:
        log.warning("ended %d stale session(s) of an earlier attempt of unit %s (%s)", len(rows), unit_id, prefix)
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
