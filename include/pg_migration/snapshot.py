"""The snapshot holder: one consistent cut of the whole source for a whole run.

``pg_export_snapshot()`` is only valid while the exporting transaction stays open, but a DAG's
tasks are separate processes (and ``airflow dags test`` runs them one at a time). So the holder is
its own process -- the worker's ``snapshot`` phase -- that:

1. opens a REPEATABLE READ transaction on the source and exports its snapshot;
2. records the snapshot id in ``_pg_migration.runs`` on the target (tasks read it from there);
3. heart-beats there every few seconds, until a task sets ``release_requested``, the run's row
   disappears, or ``max_hold`` passes (so it never lingers), then ends its transaction.

Holding a snapshot holds back VACUUM on the source (dead rows cannot be removed while it is
open): the report shows how long it was held. Locally the holder is a detached process started by
:func:`start_local`; on ECS it is a Fargate task of the same image. Either way, tasks find it
through the target, and :func:`wait_for_snapshot` / :func:`request_release` are the only API.
"""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import psycopg

from include.pg_migration import state
from include.pg_migration.conn import Endpoint
from include.pg_migration.errors import MigrationError, SnapshotLost
from include.pg_migration.sessions import SOURCE_SETTINGS, apply_settings

log = logging.getLogger(__name__)

HEARTBEAT_S = 3.0
DEFAULT_MAX_HOLD_S = 48 * 3600


def hold(source: Endpoint, target: Endpoint, run_id: str, app: str, max_hold_s: float = DEFAULT_MAX_HOLD_S) -> None:
    """Export a snapshot and hold it until released (the worker's ``snapshot`` phase)."""
    src = source.connect(app)
    src.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
    src.read_only = True
    snapshot_id = src.execute("SELECT pg_catalog.pg_export_snapshot()").fetchone()[0]
    apply_settings(src, SOURCE_SETTINGS)
    where = f"{socket.gethostname()}:{os.getpid()}"
    started = time.monotonic()
    with target.connect(app, autocommit=True) as tgt:
        state.set_run(
            tgt,
            run_id,
            snapshot_id=snapshot_id,
            snapshot_taken_at=_now(tgt),
            holder_heartbeat=_now(tgt),
            holder_where=where,
            release_requested=False,
            snapshot_released_at=None,
        )
        log.info("snapshot %s exported and held by %s for run %s", snapshot_id, where, run_id)
        reason = "timeout"
        try:
            while time.monotonic() - started < max_hold_s:
                src.execute("SELECT 1")  # keeps the session busy-ish; fails fast if the source went away
                run = state.get_run(tgt, run_id)
                if run is None:
                    reason = "run row removed"
                    break
                if run["release_requested"] or run["snapshot_id"] != snapshot_id:
                    reason = "released"
                    break
                tgt.execute(state.q("UPDATE {s}.runs SET holder_heartbeat = now() WHERE run_id = %s"), (run_id,))
                time.sleep(HEARTBEAT_S)
        finally:
            src.close()
            try:
                state.set_run(tgt, run_id, snapshot_released_at=_now(tgt))
            except Exception:  # noqa: BLE001 - best effort on the way out
                pass
    log.info("snapshot %s released (%s) after %.0fs", snapshot_id, reason, time.monotonic() - started)


def _now(conn):
    return conn.execute("SELECT now()").fetchone()[0]


def start_local(worker_env: dict[str, str], log_path: Path) -> int:
    """Start the holder as a detached local process (survives the task that starts it)."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "include.pg_migration.worker"],
            env={**worker_env, "PGMIG_PHASE": "snapshot"},
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            close_fds=True,
        )
    return proc.pid


def wait_for_snapshot(target: Endpoint, run_id: str, timeout_s: float = 120.0, previous: str | None = None) -> str:
    """Wait until the holder has recorded a (new) snapshot id for the run; return it."""
    deadline = time.monotonic() + timeout_s
    with target.connect("pg_migration snapshot-wait", autocommit=True) as tgt:
        while time.monotonic() < deadline:
            run = state.get_run(tgt, run_id)
            if run and run["snapshot_id"] and run["snapshot_id"] != previous and run["snapshot_released_at"] is None:
                return run["snapshot_id"]
            time.sleep(0.2)
    raise MigrationError(f"the snapshot holder did not export a snapshot within {timeout_s:.0f}s (see its log)")


def check_alive(target: Endpoint, run_id: str, stale_after_s: float = 30.0) -> str:
    """The run's snapshot id if its holder is alive; else :class:`SnapshotLost`."""
    with target.connect("pg_migration snapshot-check", autocommit=True) as tgt:
        row = tgt.execute(
            state.q("""SELECT snapshot_id, snapshot_released_at,
                              extract(epoch FROM now() - holder_heartbeat) FROM {s}.runs WHERE run_id = %s"""),
            (run_id,),
        ).fetchone()
    if not row or not row[0]:
        raise SnapshotLost(f"run {run_id!r} has no exported snapshot")
    if row[1] is not None or row[2] is None or row[2] > stale_after_s:
        raise SnapshotLost(f"the snapshot {row[0]!r} of run {run_id!r} is no longer held")
    return row[0]


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
    """Ask the holder to end its transaction; wait until it has. True if a snapshot was released."""
    with target.connect("pg_migration snapshot-release", autocommit=True) as tgt:
        run = state.get_run(tgt, run_id) if state.exists(tgt) else None
        if not run or not run["snapshot_id"] or run["snapshot_released_at"] is not None:
            return False
        state.set_run(tgt, run_id, release_requested=True)
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline and not _holder_gone(run.get("holder_where")):
            run = state.get_run(tgt, run_id)
            if run["snapshot_released_at"] is not None:
                return True
            time.sleep(0.3)
        # A holder that does not answer is dead or stuck; mark the snapshot released either way.
        state.set_run(tgt, run_id, snapshot_released_at=_now(tgt))
    return True
