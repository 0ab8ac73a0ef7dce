"""The snapshot phase (the ``snapshot`` task, worker phase ``snapshot``): the holder of one consistent
cut of the whole source for a whole run.

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
through the target, and :func:`wait_for_snapshot` / :func:`include.pg_migration.state.request_release`
are the only API. Which phases need the snapshot held is :func:`include.pg_migration.run_order.needs_snapshot`;
a re-run of the snapshot step reuses the run's cut or fails (:func:`reuse_cut`), never takes a second one.

Replicate mode (the run's params say ``mode: "replicate"``): the same phase runs
:func:`hold_replication` instead, which makes sure the run's publication exists, then opens a
``replication=database`` connection (psycopg 3 runs replication commands on it) and creates the
run's logical slot with ``CREATE_REPLICATION_SLOT ... LOGICAL pgoutput (SNAPSHOT 'export')``: the
slot's exported snapshot is the run's cut, so the copy and the stream of changes meet exactly. The
snapshot stays valid only while that connection runs no other command, so the holder never sends
one (it watches the socket instead of polling the source); released, it closes the connection --
the slot itself stays for the subscription. Nothing else differs: same heartbeat, same release,
same ``max_hold`` timeout, same ECS task.
"""

from __future__ import annotations

import logging
import os
import select
import socket
import subprocess
import sys
import time
from pathlib import Path

import psycopg

from include.pg_migration import state
from include.pg_migration.conn import Endpoint
from include.pg_migration.errors import MigrationError, SnapshotLost
from include.pg_migration.replicate import publication, records, slot
from include.pg_migration.runner import REPO_ROOT
from include.pg_migration.sessions import SOURCE_SETTINGS, apply_settings

log = logging.getLogger(__name__)

HEARTBEAT_S = 3.0
DEFAULT_MAX_HOLD_S = 48 * 3600


def hold(source: Endpoint, target: Endpoint, run_id: str, app: str, max_hold_s: float = DEFAULT_MAX_HOLD_S) -> None:
    """Export a snapshot and hold it until released (the worker's ``snapshot`` phase).

    The snapshot lives in the SOURCE session: if the source goes away, the snapshot is gone and the
    holder ends (units then fail with :class:`SnapshotLost`). The target is only where the holder
    reports: it rides out a target outage by reconnecting, so the cut survives it.
    Replicate mode (the run's params): :func:`hold_replication` instead.
    """
    with target.connect(app, autocommit=True) as tgt:
        run = state.get_run(tgt, run_id)
    if run is not None and (run.get("params") or {}).get("mode") == "replicate":
        hold_replication(source, target, run_id, app, max_hold_s)
        return
    src = source.connect(app)
    src.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
    src.read_only = True
    snapshot_id = src.execute("SELECT pg_catalog.pg_export_snapshot()").fetchone()[0]
    apply_settings(src, SOURCE_SETTINGS)
    where = f"{socket.gethostname()}:{os.getpid()}"
    started = time.monotonic()
    tgt = target.connect(app, autocommit=True)
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

    def source_gone() -> str | None:
        try:
            src.execute("SELECT 1")  # fails fast if the source (and so the snapshot) went away
        except psycopg.Error as exc:
            return f"the source connection was lost ({str(exc).strip().splitlines()[0]})"
        return None

    try:
        reason, tgt = _heartbeat(target, tgt, run_id, snapshot_id, app, started, max_hold_s, source_gone)
    finally:
        src.close()
        _mark_released(target, tgt, run_id, app)
    log.info("snapshot %s released (%s) after %.0fs", snapshot_id, reason, time.monotonic() - started)


def hold_replication(
    source: Endpoint, target: Endpoint, run_id: str, app: str, max_hold_s: float = DEFAULT_MAX_HOLD_S
) -> None:
    """Replicate mode: create the run's slot exporting its snapshot, and hold that snapshot until released."""
    try:
        with target.connect(app, autocommit=True) as tgt:
            rep = records.get(tgt, run_id)
        if rep is None:  # nobody prepared it (e.g. the ECS runner starts the holder directly)
            rep = records.register_from_run(target, run_id, source)
        if rep["consistent_lsn"] is not None:
            # A holder of this run created the slot and died: its exported snapshot is gone with it.
            raise SnapshotLost(
                f"slot {rep['slot']} of run {run_id!r} exists but the holder that exported its snapshot is "
                "gone: the copy can no longer start from the slot's cut. The run fails and drops what it "
                "created; start a new run"
            )
        publication.prepare_publication(source, target, run_id, app)
        repl = slot.replication_connection(source, app)
        log.info("creating slot %s (waits for transactions running now on the source to end)", rep["slot"])
        watcher = slot.SlotWaitWatcher(source, target, run_id, repl, app)
        try:
            with watcher:
                lsn, snapshot_id = slot.create_slot(repl, rep["slot"])
        except psycopg.Error as exc:
            repl.close()
            why = str(exc).strip().splitlines()[0]
            if watcher.cancelled:
                why = (
                    f"it waited more than {slot.SLOT_WAIT_S:.0f} s for transactions running on the source: "
                    f"{slot.describe_xacts(watcher.waiting) or 'none left'}"
                )
            raise MigrationError(
                f"cannot create replication slot {rep['slot']} on {source.describe()}: {why}"
            ) from None
    except MigrationError as exc:
        slot.record_holder_error(target, run_id, str(exc))
        raise
    where = f"{socket.gethostname()}:{os.getpid()}"
    started = time.monotonic()
    tgt = target.connect(app, autocommit=True)
    taken = _now(tgt)
    records.update(
        tgt, run_id, consistent_lsn=lsn, snapshot_id=snapshot_id, slot_created_at=taken, status="copying", error=None
    )
    state.set_run(
        tgt,
        run_id,
        snapshot_id=snapshot_id,
        snapshot_taken_at=taken,
        holder_heartbeat=taken,
        holder_where=where,
        release_requested=False,
        snapshot_released_at=None,
    )
    log.info(
        "slot %s created at %s; snapshot %s exported and held by %s for run %s",
        rep["slot"],
        lsn,
        snapshot_id,
        where,
        run_id,
    )

    def source_gone() -> str | None:
        # No command may be sent on the replication connection (it would end the exported
        # snapshot): the server only ever writes to it to say it is going away.
        if select.select([repl.fileno()], [], [], 0)[0]:
            return "the source closed the replication connection"
        return None

    try:
        reason, tgt = _heartbeat(target, tgt, run_id, snapshot_id, app, started, max_hold_s, source_gone)
    finally:
        repl.close()  # ends the exported snapshot; the (permanent) slot stays for the subscription
        _mark_released(target, tgt, run_id, app)
    log.info(
        "snapshot %s of slot %s released (%s) after %.0fs", snapshot_id, rep["slot"], reason, time.monotonic() - started
    )


def _heartbeat(
    target: Endpoint,
    tgt: psycopg.Connection,
    run_id: str,
    snapshot_id: str,
    app: str,
    started: float,
    max_hold_s: float,
    source_gone,
) -> tuple[str, psycopg.Connection]:
    """Heart-beat on the target until released, the run disappears, the source goes or time is up.

    The target is only where the holder reports: an outage there is ridden out by reconnecting.
    Returns why it stopped, and the (possibly new) target session.
    """
    while time.monotonic() - started < max_hold_s:
        gone = source_gone()
        if gone:
            return gone, tgt
        try:
            if tgt.closed:
                tgt = target.connect(app, autocommit=True)
            run = state.get_run(tgt, run_id)
            if run is None:
                return "run row removed", tgt
            if run["release_requested"] or run["snapshot_id"] != snapshot_id:
                return "released", tgt
            tgt.execute(state.q("UPDATE {s}.runs SET holder_heartbeat = now() WHERE run_id = %s"), (run_id,))
        except (psycopg.Error, MigrationError) as exc:
            log.warning("target unreachable (%s); still holding the snapshot", str(exc).strip().splitlines()[0])
            if not tgt.closed:
                tgt.close()
        time.sleep(HEARTBEAT_S)
    return "timeout", tgt


def _mark_released(target: Endpoint, tgt: psycopg.Connection, run_id: str, app: str) -> None:
    try:
        if tgt.closed:
            tgt = target.connect(app, autocommit=True)
        state.set_run(tgt, run_id, snapshot_released_at=_now(tgt))
        tgt.close()
    except Exception:  # noqa: BLE001 - best effort on the way out
        pass


def _now(conn):
    return conn.execute("SELECT now()").fetchone()[0]


def start_local(worker_env: dict[str, str], log_path: Path) -> int:
    """Start the holder as a detached local process (survives the task that starts it)."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "include.pg_migration.worker"],
            cwd=REPO_ROOT,  # `-m` puts the cwd first on sys.path: the holder runs this library
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
            if run and (run.get("params") or {}).get("mode") == "replicate":
                error = slot.holder_error(tgt, run_id)
                if error:  # the replicate holder failed before exporting: say why now, not at the timeout
                    raise MigrationError(f"the snapshot holder failed: {error}")
                waiting = slot.slot_creation_waiting(tgt, run_id) if time.monotonic() > deadline - 5 else None
                if waiting is not None:
                    # Slot creation waits for transactions running on the source: the holder names
                    # them and gives up after slot.SLOT_WAIT_S; follow it rather than time out.
                    deadline = max(deadline, time.monotonic() + 15)
                    if waiting:
                        log.warning("the slot waits for: %s", slot.describe_xacts(waiting))
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


def reuse_cut(target: Endpoint, run_id: str) -> str | None:
    """A (re-)run of the snapshot step: the run's one cut, never a second one.

    None when the run has no snapshot yet (take one); its snapshot id when the holder still holds it
    (reuse it); :class:`SnapshotLost` when it is gone (a new snapshot would mix two cuts in one run).
    """
    with target.connect("pg_migration snapshot-check", autocommit=True) as conn:
        run = state.get_run(conn, run_id) if state.exists(conn) else None
    if not run or not run.get("snapshot_id"):
        return None
    try:
        return check_alive(target, run_id)
    except MigrationError:
        raise SnapshotLost(
            f"this run's snapshot {run['snapshot_id']!r} is gone; taking a new one would mix two cuts "
            "in one run. Trigger a new run with resume: true (verified tables are kept)."
        ) from None
