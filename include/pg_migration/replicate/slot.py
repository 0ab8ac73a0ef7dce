"""The run's logical replication slot on the source, created by the snapshot holder.

:func:`include.pg_migration.phases.snapshot.hold_replication` opens a replication connection
(:func:`replication_connection`) and creates the slot exporting its snapshot (:func:`create_slot`)
AFTER the publication exists; while that waits for the transactions running on the source,
:class:`SlotWaitWatcher` names them (log, ``detail.slot_waiting_for``) and gives up after
:data:`SLOT_WAIT_S`. The holder's errors are recorded in the replication row for the tasks waiting
for its snapshot (:func:`holder_error`, :func:`slot_creation_waiting`).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import Any

import psycopg
from psycopg.rows import dict_row

from include.pg_migration.conn import Endpoint
from include.pg_migration.errors import ConfigError
from include.pg_migration.replicate import records

log = logging.getLogger(__name__)


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
SLOT_WAIT_S = float(os.environ.get("PG_MIGRATION_SLOT_WAIT_S", "1800"))

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
                    records.merge_detail(
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
            records.update(tgt, run_id, error=error)
    except Exception:  # noqa: BLE001 - best effort: the holder's log has it too
        pass


def slot_creation_waiting(tgt: psycopg.Connection, run_id: str) -> list[dict[str, Any]] | None:
    """What a live holder's slot creation waits for (None: it is not waiting, or its watcher went quiet)."""
    rep = records.get(tgt, run_id)
    detail = (rep or {}).get("detail") or {}
    if rep is None or rep["consistent_lsn"] is not None or "slot_waiting_at" not in detail:
        return None
    age = tgt.execute("SELECT extract(epoch FROM now())::float8 - %s", (detail["slot_waiting_at"],)).fetchone()[0]
    return (detail.get("slot_waiting_for") or []) if age < 30 else None


def holder_error(tgt: psycopg.Connection, run_id: str) -> str | None:
    rep = records.get(tgt, run_id)
    return rep["error"] if rep and rep["status"] in ("preparing", "copying") else None
