"""Airflow glue of replicate mode: task bodies for ``pg_migration`` (mode ``replicate``),
``pg_migration_cutover`` and ``pg_migration_abort``. The logic is in
:mod:`include.pg_migration.replicate`; this module turns params and connections into its calls.

In ``pg_migration`` (wired by its DAG file; every function is a no-op returning ``None`` in
``mode: "snapshot"`` unless said otherwise):

=============================== ============================================================
:func:`check_replication`       after ``preflight``, before ``plan`` (every mode: refuses a target
                                that a replication still streams into; replicate: source safety,
                                replica identity, subscription rights). Raises naming what blocks.
:func:`start_replication_snapshot` the ``snapshot`` task's body in replicate mode (runner local):
                                registers the replication, creates the publication, starts the slot
                                holder and waits for its snapshot.
:func:`prepare_replication`     runner ecs: before the holder's Fargate task (the holder would do
                                it itself, but errors read better here).
:func:`subscribe`               after every ``validate``: creates the subscription when the copy is
                                verified; raises otherwise (the run then drops everything).
:func:`report_lag`              after ``subscribe``: waits (bounded) for the target to catch up,
                                logs and records lag and retained WAL for the report.
:func:`cleanup_replication`     ``all_done``, before ``report``: a run that is not streaming
                                drops its slot, publication, subscription; logs retained WAL.
=============================== ============================================================

Secrets: the subscription's connection string (with the password of ``subscription_conn_id``)
is built in :func:`include.pg_migration.replicate.subscription_conninfo` and goes only into the
``CREATE SUBSCRIPTION`` statement; nothing returned here (XCom) or logged carries it.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

import psycopg
from airflow.sdk import Param

from include.pg_migration import replicate, state
from include.pg_migration import report as rpt
from include.pg_migration.conn import Endpoint
from include.pg_migration.errors import MigrationError
from include.pg_migration.phases import snapshot as snap
from include.pg_migration.plan import validation_groups
from pg_migration_support import connection_params

log = logging.getLogger("airflow.task")

CUTOVER_DAG_ID = "pg_migration_cutover"
ABORT_DAG_ID = "pg_migration_abort"


# -- params -------------------------------------------------------------------------------------------


def replication_params() -> dict[str, Param]:
    """Params ``pg_migration`` needs for replicate mode (merge into its params)."""
    return {
        "mode": Param(
            "snapshot",
            type="string",
            enum=list(replicate.MODES),
            title="Mode",
            description="snapshot: copy one consistent cut (downtime = the whole run). replicate: copy from a "
            "logical replication slot's snapshot, then stream every later change into the target until "
            "pg_migration_cutover (downtime = the cut-over) or pg_migration_abort. Needs wal_level=logical "
            "and REPLICATION on the source, PostgreSQL 16+ (or Aurora) on the target.",
        ),
        "replica_identity_full": Param(
            False,
            type="boolean",
            title="Allow REPLICA IDENTITY FULL",
            description="replicate: tables without a primary key get REPLICA IDENTITY FULL on the source (restored "
            "after the cut-over or abort); otherwise the plan fails naming them (their UPDATE/DELETE would "
            "fail on the source once published).",
        ),
        "subscription_conn_id": Param(
            "",
            type="string",
            title="Subscription's source connection",
            description="replicate: Airflow connection the TARGET server uses to reach the source (host as seen "
            "from the target; a role with REPLICATION and a password). Empty: the source connection.",
        ),
        "catchup_timeout_s": Param(
            300,
            type="integer",
            minimum=0,
            title="Catch-up wait (s)",
            description="replicate: how long the run waits for the target to catch up after subscribing "
            "(the replication goes on either way; the report shows the lag).",
        ),
    }


def cutover_params() -> dict[str, Param]:
    return {
        **connection_params(),
        "validation": Param(
            "counts",
            type="string",
            enum=["counts", "checksums"],
            title="Validation",
            description="counts: exact per-table row counts (ONLY); checksums: also content.",
        ),
        "read_only_source": Param(
            False,
            type="boolean",
            title="Make the source read-only",
            description="Set default_transaction_read_only on the source database and end "
            "its client sessions before checking that writes stopped (reset by abort or a "
            "failed cut-over; kept after a successful one).",
        ),
        "replicate_run_id": Param(
            "",
            type="string",
            title="Replicate run",
            description="The pg_migration run whose replication to cut over. Empty: the "
            "one streaming into the target (recorded there).",
        ),
        "quiet_seconds": Param(
            10,
            type="number",
            minimum=0.5,
            title="Quiet window (s)",
            description="No transaction of the source database may commit for this long.",
        ),
        "writes_timeout_s": Param(300, type="integer", minimum=1, title="Writes-stopped timeout (s)"),
        "lag_timeout_s": Param(1800, type="integer", minimum=1, title="Catch-up timeout (s)"),
    }


def abort_params() -> dict[str, Param]:
    return {
        **connection_params(),
        "replicate_run_id": Param(
            "",
            type="string",
            title="Replicate run",
            description="The pg_migration run whose replication to drop. Empty: every "
            "replication recorded as live on the target.",
        ),
    }


# -- helpers ------------------------------------------------------------------------------------------


def _endpoints(params: dict[str, Any]) -> tuple[Endpoint, Endpoint]:
    from pg_migration_support import connection_ids

    return connection_ids(params)


def _source_or_none(params: dict[str, Any]) -> Endpoint | None:
    from pg_migration_support import endpoint

    try:
        return endpoint(params["source_conn_id"], "source")
    except MigrationError as exc:
        log.error("source: %s", exc)
        return None


def _target(params: dict[str, Any]) -> Endpoint:
    from pg_migration_support import endpoint

    return endpoint(params["target_conn_id"], "target")


def _publisher(params: dict[str, Any], source: Endpoint) -> Endpoint:
    from pg_migration_support import endpoint

    conn_id = params.get("subscription_conn_id") or ""
    return endpoint(conn_id, "subscription source") if conn_id else source


def is_replicate(params: dict[str, Any]) -> bool:
    return replicate.mode_of(params) == "replicate"


def _active(params: dict[str, Any]) -> bool:
    return is_replicate(params) and not params.get("dry_run") and not params.get("validate_only")


def _log_findings(findings: list[dict[str, str]]) -> None:
    for f in findings:
        level = {"ok": logging.INFO, "warning": logging.WARNING}.get(f["verdict"], logging.ERROR)
        log.log(level, "replication %-8s %s: %s", f["verdict"].upper(), f["check"], f["detail"])


def _failed_tasks(ti, dag_id: str, run_id: str) -> list[str]:
    try:
        states = ti.get_task_states(dag_id=dag_id, run_ids=[run_id])
    except Exception as exc:  # noqa: BLE001 - best effort
        log.warning("cannot read task states: %s", exc)
        return []
    return sorted(f"task {k} {v}" for k, v in (states.get(run_id) or {}).items() if v in ("failed", "upstream_failed"))


# -- pg_migration (mode replicate) -----------------------------------------------------------------------


def check_replication(params: dict[str, Any], inventory: dict[str, Any], run_id: str | None = None) -> list:
    """Every mode: no live replication into the target; replicate: source safety and rights. Raises PlanError."""
    source, target = _endpoints(params)
    schemas = [s["name"] for s in (inventory or {}).get("schemas", [])]
    findings = replicate.check(source if is_replicate(params) else None, target, schemas, dict(params), run_id)
    _log_findings(findings)
    replicate.raise_blocking(findings)
    return findings


def prepare_replication(params: dict[str, Any], run_id: str) -> dict[str, Any] | None:
    """Register the run's replication and create its publication (before the slot holder starts)."""
    if not _active(params):
        return None
    source, target = _endpoints(params)
    replicate.register_from_run(target, run_id, source)
    result = replicate.prepare_publication(source, target, run_id)
    log.info("publication %s ready (%d tables)", result["publication"], result["tables"])
    return {"publication": result["publication"], "tables": result["tables"]}


def start_replication_snapshot(params: dict[str, Any], run_id: str) -> str | None:
    """Replicate mode's ``snapshot`` task: publication, then the slot holder (local process); its snapshot id."""
    from pg_migration_support import steps

    if not _active(params):
        return None
    prepare_replication(params, run_id)
    source, target = _endpoints(params)
    snapshot_id = steps.take_snapshot(source, target, params, run_id)  # the holder sees mode replicate
    with target.connect("pg_migration snapshot", autocommit=True) as conn:
        rep = replicate.get(conn, run_id)
    log.info(
        "slot %s created at %s; the copy reads its exported snapshot %s; the slot retains WAL on the source "
        "from now until the cut-over or abort",
        rep["slot"],
        rep["consistent_lsn"],
        snapshot_id,
    )
    return snapshot_id


def subscribe(params: dict[str, Any], run_id: str) -> dict[str, Any] | None:
    """After validation: subscribe the target to the slot, only if the copy is verified."""
    if not _active(params):
        return None
    source, target = _endpoints(params)
    snap.request_release(target, run_id)  # validation (checksums) may have kept it until now
    problems = replicate.copy_verified(target, source, run_id)
    if problems:
        raise MigrationError(
            "not subscribing: the copy is not verified: "
            + "; ".join(problems[:10])
            + " (the run drops its slot and publication)"
        )
    return replicate.subscribe(target, run_id, _publisher(params, source))


def report_lag(params: dict[str, Any], run_id: str) -> dict[str, Any] | None:
    """Wait (``catchup_timeout_s``) for the target to catch up; log and record lag and retained WAL."""
    if not _active(params):
        return None
    source, target = _endpoints(params)
    status = replicate.wait_caught_up(
        source, target, run_id, timeout_s=float(params.get("catchup_timeout_s", 300)), logger=log
    )
    apply_errors = (status.get("subscription_status") or {}).get("apply_errors") or 0
    failures = (
        [f"the subscription reports {apply_errors} apply error(s): see the target's server log"] if apply_errors else []
    )
    replicate.record_replication_phase(target, run_id, status, {"caught_up": status["caught_up"], "failures": failures})
    log.info("replication: %s", replicate.describe_lag(status))
    if failures:
        with target.connect("pg_migration replicate", autocommit=True) as conn:
            replicate.update(conn, run_id, status="broken", error=failures[0])
        raise MigrationError(failures[0])
    return {
        "caught_up": status["caught_up"],
        "lag_bytes": status.get("lag_bytes"),
        "retained_wal_bytes": status.get("retained_wal_bytes"),
    }


def cleanup_replication(params: dict[str, Any], run_id: str) -> dict[str, Any] | None:
    """``all_done``: a run that is not streaming leaves no slot, publication or subscription behind."""
    if not is_replicate(params) or params.get("dry_run"):
        return None
    target = _target(params)
    source = _source_or_none(params)
    result = replicate.cleanup_run(source, target, run_id, logger=log)
    if result.get("errors"):
        raise MigrationError(
            "could not drop everything the run created: " + "; ".join(result["errors"]) + " (run pg_migration_abort)"
        )
    return {
        "action": result.get("action"),
        "dropped": result.get("dropped", []),
        "retained_wal_bytes": result.get("retained_wal_bytes"),
    }


# -- pg_migration_cutover ----------------------------------------------------------------------------------


def cutover_begin(params: dict[str, Any], run_id: str, dag_id: str = CUTOVER_DAG_ID) -> dict[str, Any]:
    source, target = _endpoints(params)
    return replicate.cutover_begin(
        source,
        target,
        run_id,
        dag_id=dag_id,
        run_id=params.get("replicate_run_id") or None,
        read_only=bool(params.get("read_only_source")),
        logger=log,
    )


def cutover_stop_writes(params: dict[str, Any], run_id: str) -> dict[str, Any]:
    source, target = _endpoints(params)
    return replicate.cutover_stop_writes(
        source, target, run_id, timeout_s=float(params["writes_timeout_s"]), logger=log
    )


def cutover_catch_up(params: dict[str, Any], run_id: str) -> dict[str, Any]:
    source, target = _endpoints(params)
    return replicate.cutover_catch_up(source, target, run_id, timeout_s=float(params["lag_timeout_s"]), logger=log)


def cutover_confirm_quiet(params: dict[str, Any], run_id: str) -> dict[str, Any]:
    source, target = _endpoints(params)
    return replicate.cutover_confirm_quiet(
        source,
        target,
        run_id,
        quiet_s=float(params["quiet_seconds"]),
        timeout_s=float(params["writes_timeout_s"]),
        lag_timeout_s=float(params["lag_timeout_s"]),
        logger=log,
    )


def cutover_sequences(params: dict[str, Any], run_id: str) -> int:
    source, target = _endpoints(params)
    return len(replicate.cutover_sequences(source, target, run_id))


def cutover_large_objects(params: dict[str, Any], run_id: str) -> dict[str, Any]:
    source, target = _endpoints(params)
    result = replicate.cutover_large_objects(source, target, run_id)
    return {"checked": result["checked"], "copied": len(result["copied"]), "unlinked": len(result["unlinked"])}


def cutover_matviews(params: dict[str, Any], run_id: str) -> list[str]:
    source, target = _endpoints(params)
    return replicate.cutover_matviews(source, target, run_id)


def cutover_validate(params: dict[str, Any], run_id: str, schema: str) -> dict[str, Any]:
    source, target = _endpoints(params)
    return replicate.cutover_validate(source, target, run_id, schema, params["validation"])


def cutover_validation_groups(params: dict[str, Any], begun: dict[str, Any]) -> list[dict[str, Any]]:
    """The cut-over's validation groups (what its ``validate`` maps over): the replication's schemas,
    sized and pooled as the replicate run planned them (equal sizes if that plan cannot be read)."""
    sizes: dict[str, int] = {}
    pool_size = 4
    try:
        with _target(params).connect("pg_migration cutover", autocommit=True) as conn:
            run = state.get_run(conn, begun["run_id"]) or {}
        sizes = {s["schema"]: s.get("bytes") or 0 for s in (run.get("plan") or {}).get("schema_sizes") or []}
        pool_size = int((run.get("params") or {}).get("pool_size") or pool_size)
    except (MigrationError, psycopg.Error) as exc:
        log.warning("validation groups without the replicate run's schema sizes: %s", exc)
    groups = validation_groups([(s, sizes.get(s, 0)) for s in begun["schemas"]], pool_size)
    for g in groups:
        log.info("validation group %-24s %10.1f MB %4d schema(s)", g["label"], g["bytes"] / 1e6, len(g["schemas"]))
    return groups


def cutover_validate_group(params: dict[str, Any], run_id: str, group: dict[str, Any]) -> list[dict[str, Any]]:
    """A validation group's schemas one after another (:func:`cutover_validate` each); fails after
    trying all of them if any could not be validated, naming them."""
    from pg_migration_support.steps import validate_each

    return validate_each(group["schemas"], lambda schema: cutover_validate(params, run_id, schema))


def cutover_finish(params: dict[str, Any], run_id: str) -> dict[str, Any]:
    source, target = _endpoints(params)
    result = replicate.cutover_finish(source, target, run_id, logger=log)
    if not result["validated"]:
        raise MigrationError(
            "the target differs from the source: "
            + "; ".join(result["problems"][:10])
            + " -- replication kept; fix and run pg_migration_cutover again, or pg_migration_abort"
        )
    return {"validated": True, "downtime_seconds": result["downtime_seconds"], "dropped": result["dropped"]}


def cutover_report(params: dict[str, Any], run_id: str, dag_id: str, ti) -> dict[str, Any]:
    failed = _failed_tasks(ti, dag_id, run_id)
    target = _target(params)
    source = _source_or_none(params)
    data = replicate.cutover_report(source, target, run_id, dag_id, dict(params), failed)
    folder = replicate.write_cutover_report(data)
    log.info("report written to %s/report.json and report.md", folder)
    log.info("\n%s", rpt.to_markdown(data) + replicate.cutover_markdown(data))
    down = (data.get("cutover") or {}).get("downtime_seconds")
    if down is not None:
        log.info("downtime (writes stopped -> target validated): %.1f s", down)
    return {"verdict": data["verdict"], "report": folder, "failures": data["failures"][:20], "downtime_seconds": down}


def cutover_release(params: dict[str, Any], run_id: str) -> None:
    """``all_done``: release the guard; an unfinished cut-over gives the source back (read-only reset)."""
    try:
        target = _target(params)
    except MigrationError as exc:
        log.warning("release: %s", exc)
        return
    replicate.cutover_release(_source_or_none(params), target, run_id, logger=log)


# -- pg_migration_abort --------------------------------------------------------------------------------------


def abort(params: dict[str, Any], run_id: str) -> dict[str, Any]:
    target = _target(params)
    source = _source_or_none(params)
    result = replicate.abort(source, target, params.get("replicate_run_id") or None, logger=log)
    return {
        "aborted": result["aborted"],
        "errors": result["errors"],
        "dropped": [d for r in result.get("results", []) for d in r["dropped"]],
        "retained_wal_bytes": [r["retained_wal_bytes"] for r in result.get("results", [])],
    }


def abort_report(params: dict[str, Any], run_id: str, dag_id: str, ti, result: dict[str, Any] | None) -> dict:
    failures = _failed_tasks(ti, dag_id, run_id) + list((result or {}).get("errors", []))
    if result is None:
        failures.append("the abort task did not finish: see its log")
    try:
        target = _target(params).public()
    except MigrationError:
        target = None
    source = _source_or_none(params)
    data = {
        "dag_id": dag_id,
        "run_id": run_id,
        "params": dict(params),
        "finished_at": rpt.now(),
        "started_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "source": source.public() if source else None,
        "target": target,
        "schemas": [],
        "abort": result or {},
        "failures": failures,
        "warnings": [f"dropped {d}" for d in (result or {}).get("dropped", [])],
        "snapshot": {
            "note": "aborted replication of run(s) " + (", ".join((result or {}).get("aborted", [])) or "none")
        },
    }
    data["verdict"] = "passed" if not failures else "failed"
    folder = rpt.write(data)
    log.info("report written to %s/report.json and report.md", folder)
    return {"verdict": data["verdict"], "report": folder, "failures": failures[:20]}
