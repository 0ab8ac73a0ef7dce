"""The ``pg_migration`` DAG's task bodies (and its rehearsal's): Airflow in, one library call out.

Each function here is what one task of ``dags/pg_migration_dag.py`` does, in the DAG's order: it
takes what Airflow hands the task (params, run id, the task instance for XComs, connection ids
turned into endpoints by :mod:`pg_migration_support.connections`), calls the library
(``include/pg_migration``) that does the work, and logs the result. No migration logic lives here:
which phases need the run's snapshot, and that a re-run of the snapshot step reuses the cut, are
the library's (:func:`include.pg_migration.run_order.needs_snapshot`,
:func:`include.pg_migration.phases.snapshot.reuse_cut`), shared with the ECS runner (:mod:`.ecs`).

Every task process parses the DAG file and so imports this module: library modules that only one
task needs (pre-flight, history, validation) and the Amazon provider (runner ``ecs`` only) are
imported inside that task's function.
"""

from __future__ import annotations

import datetime as dt
import logging
import tempfile
from pathlib import Path
from typing import Any

from include.pg_migration import catalog, run_order, selection, state
from include.pg_migration.errors import ConfigError, MigrationError, PlanError
from include.pg_migration.phases import snapshot as snap
from include.pg_migration.plan import make_plan, register, validation_groups
from include.pg_migration.reports import assemble, markdown
from include.pg_migration.reports import schema as rpt
from include.pg_migration.runner import local_env, run_local, worker_env
from pg_migration_support import connections, pool_check, rehearsal

log = logging.getLogger("airflow.task")

#: The ``plan`` task's XCom with the whole plan (``plan``, ``units``, ``schemas``); its return value is
#: the validation groups, which ``validate`` maps over (Airflow maps only over a return value).
PLANNED_KEY = "planned"


# -- discover / preflight / plan ----------------------------------------------------------------


def discover(source, params: dict[str, Any]) -> dict[str, Any]:
    inventory = catalog.inventory(source, params["schemas"], params["exclude_schemas"], tables=params)
    for s in inventory["schemas"]:
        log.info("schema %-30s %10.1f MB %5d table(s)", s["name"], s["bytes"] / 1e6, len(s["tables"]))
    if inventory.get("selection"):
        log.info("table selection: %s", selection.summary(inventory["selection"]))
    if not inventory["schemas"]:
        raise PlanError(f"no schema to migrate in {source.describe()} (after include/exclude)")
    return inventory


def preflight(source, target, inventory: dict[str, Any], params: dict[str, Any], ti=None) -> list[dict[str, Any]]:
    from include.pg_migration import preflight as pf  # noqa: PLC0415 - only this task runs the pre-flight

    findings = pf.run(source, target, inventory, params)
    is_rehearsal = getattr(ti, "dag_id", None) == run_order.REHEARSAL_DAG_ID
    if is_rehearsal:
        findings.append(rehearsal.check_target(target, _golive_target()))
    if params.get("runner") == "ecs":
        from pg_migration_support import ecs_preflight  # noqa: PLC0415 - the Amazon provider (boto3) only with runner ecs

        findings = ecs_preflight.adjust_local_findings(findings) + ecs_preflight.preflight(
            source, target, params, is_rehearsal
        )
    findings.append(pool_check.check(params))
    if ti is not None:  # the report shows the findings even when this task fails on a blocking one
        ti.xcom_push(key="findings", value=findings)
    for f in findings:
        level = {"ok": logging.INFO, "warning": logging.WARNING}.get(f["verdict"], logging.ERROR)
        log.log(level, "preflight %-8s %s: %s", f["verdict"].upper(), f["check"], f["detail"])
    blocking = [f for f in findings if f["verdict"] == "blocking"]
    if blocking:
        raise PlanError(
            "pre-flight found blocking problem(s); nothing was written to the target: "
            + "; ".join(f"{f['check']}: {f['detail']}" for f in blocking)
        )
    return findings


def _golive_target():
    """The go-live DAG's target connection, if this Airflow has it (a rehearsal compares with it)."""
    try:
        return connections.endpoint(rehearsal.GOLIVE_TARGET_CONN_ID, "go-live target")
    except ConfigError:
        return None


def plan(source, target, inventory: dict[str, Any], params: dict[str, Any], run_id: str, dag_id: str) -> dict[str, Any]:
    from include.pg_migration.reports import history  # noqa: PLC0415 - earlier runs' throughput: the plan and report tasks only

    split = params.get("split_mb")
    the_plan = make_plan(inventory, params["pool_size"], split * 1024 * 1024 if split else None)
    units = the_plan["units"]
    # per-schema sizes, the unit order with predicted slots, and the makespan: from earlier runs'
    # measured throughput when there is one, else the bandwidth shared by the pool's slots
    the_plan.update(history.forecast(the_plan, inventory, params["pool_size"], params["bandwidth_mb_s"]))
    for u in the_plan["units"]:
        log.info("unit %-32s %10.1f MB %4d table(s)", u["label"], u["bytes"] / 1e6, len(u["tables"]))
    log.info(
        "%d unit(s); predicted makespan %.0f s with %d slot(s) at %.0f MB/s",
        len(units),
        the_plan["predicted_makespan_s"],
        params["pool_size"],
        params["bandwidth_mb_s"],
    )
    if the_plan.get("left_out"):
        log.info("left out by the table selection: %s", selection.summary(the_plan["left_out"]))
    if params["dry_run"]:
        return {"plan": the_plan, "units": [], "schemas": [], "validation": []}
    register(target, run_id, dag_id, dict(params), the_plan, source, consistent=params["consistent"])
    units_out = [] if params["validate_only"] else the_plan["units"]
    sizes = {s["name"]: s["bytes"] for s in inventory["schemas"]}
    groups = validation_groups([(s, sizes.get(s, 0)) for s in the_plan["schemas"]], params["pool_size"])
    for g in groups:
        log.info("validation group %-24s %10.1f MB %4d schema(s)", g["label"], g["bytes"] / 1e6, len(g["schemas"]))
    return {"plan": the_plan, "units": units_out, "schemas": the_plan["schemas"], "validation": groups}


# -- snapshot -----------------------------------------------------------------------------------------


def take_snapshot(source, target, params: dict[str, Any], run_id: str) -> str | None:
    if not params["consistent"]:
        log.info("consistent=false: every unit takes its own snapshot")
        return None
    held = snap.reuse_cut(target, run_id)  # a re-run of this task: the run's one cut, never replaced
    if held is not None:
        return held
    env = local_env(worker_env(source, target, run_id, "snapshot"))
    log_file = Path(tempfile.gettempdir()) / "pg_migration" / rpt.safe(run_id) / "snapshot.log"
    pid = snap.start_local(env, log_file)
    snapshot_id = snap.wait_for_snapshot(target, run_id)
    log.info(
        "snapshot %s exported; held by local process %d (log: %s). Holding it holds back VACUUM on "
        "the source until release_snapshot.",
        snapshot_id,
        pid,
        log_file,
    )
    return snapshot_id


def release_snapshot(params: dict[str, Any], run_id: str) -> None:
    _, target = connections.endpoints(params)
    if state.request_release(target, run_id):
        log.info("snapshot released")


# -- workers ------------------------------------------------------------------------------------------


def run_worker(params: dict[str, Any], run_id: str, phase: str, unit_id: str | None = None) -> None:
    source, target = connections.endpoints(params)
    if params["runner"] != "local":
        raise MigrationError(f"runner {params['runner']!r} runs through its own operator, not run_worker")
    if run_order.needs_snapshot(phase, params["consistent"]):
        snap.check_alive(target, run_id)  # a clear error instead of a silent new snapshot
    label = unit_id or phase
    run_local(worker_env(source, target, run_id, phase, unit_id), logger=log, label=label)


# -- validation, report, verdict ------------------------------------------------------------------------


def ownership(params: dict[str, Any], run_id: str) -> dict[str, Any]:
    """The ``ownership`` step (:func:`include.pg_migration.ownership.hand_over`); nothing in dry, validate-only runs."""
    from include.pg_migration import ownership as own  # noqa: PLC0415 - the ownership task only

    if params["dry_run"] or params["validate_only"] or params.get("ownership") == "target_user":
        log.info("ownership: nothing handed over (dry run, validate only or ownership: target_user)")
        return {"skipped": True}
    source, target = connections.endpoints(params)
    return own.hand_over(source, target, run_id)


def validate(params: dict[str, Any], run_id: str, schema: str) -> dict[str, Any]:
    from include.pg_migration.phases.validate import validate_and_record  # noqa: PLC0415 - the validate tasks only

    source, target = connections.endpoints(params)
    snapshot_id = None
    if params["validation"] == "checksums" and params["consistent"] and not params["validate_only"]:
        try:
            snapshot_id = snap.check_alive(target, run_id)
        except MigrationError:
            snapshot_id = None
    return validate_and_record(
        source,
        target,
        schema,
        run_id,
        run_id=None if params["validate_only"] else run_id,
        mode=params["validation"],
        snapshot_id=snapshot_id,
        owners=params["validate_only"] and params.get("ownership", "carry") != "target_user",
        logger=log,
    )


def validate_group(params: dict[str, Any], run_id: str, group: dict[str, Any]) -> list[dict[str, Any]]:
    """Validate a validation group's schemas one after another, each recorded on its own (:func:`validate`).

    A schema whose validation raises does not stop the others; after all of them the task fails,
    naming each such schema. A mismatch is not an error here: it is recorded, and the report and the
    verdict fail the run on it.
    """
    return validate_each(group["schemas"], lambda schema: validate(params, run_id, schema))


def validate_each(schemas: list[str], validate_one) -> list[dict[str, Any]]:
    """``validate_one(schema)`` for every schema; raises after trying all of them if any raised."""
    results, failed = [], []
    for schema in schemas:
        try:
            results.append(validate_one(schema))
        except Exception as exc:  # noqa: BLE001 - the group's other schemas are still validated
            log.exception("schema %s: validation failed", schema)
            failed.append(f"{schema}: {exc}")
    if failed:
        raise MigrationError(f"validation failed for {len(failed)} of {len(schemas)} schema(s): " + "; ".join(failed))
    return results


def report(params: dict[str, Any], run_id: str, dag_id: str, ti) -> dict[str, Any]:
    from include.pg_migration.reports import history  # noqa: PLC0415 - earlier runs' history: the plan and report tasks only

    failed_tasks = _failed_tasks(ti, dag_id, run_id)
    inventory = ti.xcom_pull(task_ids="discover")
    findings = ti.xcom_pull(task_ids="preflight") or ti.xcom_pull(task_ids="preflight", key="findings")
    planned = (ti.xcom_pull(task_ids="plan", key=PLANNED_KEY) or {}).get("plan")
    try:
        source, target = connections.endpoints(params)
    except MigrationError as exc:
        source = target = None
        failed_tasks.append(str(exc))
    data = assemble.run_report(source, target, dag_id, run_id, dict(params), inventory, findings, planned, failed_tasks)
    try:
        data["rehearsal"] = history.compare(data)
    except Exception as exc:  # noqa: BLE001 - the report must be written anyway
        data.setdefault("warnings", []).append(f"rehearsal comparison failed: {exc}")
    folder = rpt.write(data)
    log.info("report written to %s/report.json and report.md", folder)
    log.info("\n%s", markdown.to_markdown(data))
    return {"verdict": data["verdict"], "report": folder, "failures": data["failures"][:20]}


def _failed_tasks(ti, dag_id: str, run_id: str) -> list[str]:
    try:
        states = ti.get_task_states(dag_id=dag_id, run_ids=[run_id])
    except Exception as exc:  # noqa: BLE001 - best effort: the report still has the target's state
        log.warning("cannot read task states: %s", exc)
        return []
    out = []
    for task_key, st in (states.get(run_id) or {}).items():
        if st in ("failed", "upstream_failed"):
            out.append(f"task {task_key} {st}")
    return sorted(out)


def cleanup(params: dict[str, Any], run_id: str, dag_id: str | None = None) -> dict[str, Any]:
    """Release the snapshot (and, runner ecs, stop its holder task) and the target's guard.

    A known problem (no target connection, a snapshot already gone) is a warning in the result;
    anything else fails the task, and the verdict fails the run on it (the guard may still be held).
    """
    try:
        _, target = connections.endpoints(params)
    except MigrationError as exc:
        log.warning("cleanup: %s", exc)
        return {"released": False, "warning": str(exc)}
    try:
        state.request_release(target, run_id)
        if params.get("runner") == "ecs" and dag_id:
            from pg_migration_support import ecs  # noqa: PLC0415 - the Amazon provider (boto3) only with runner ecs

            ecs.stop_snapshot_holder(params, run_id, dag_id)
        with target.connect(autocommit=True) as conn:
            if state.exists(conn):
                state.release_guard(conn, run_id)
                state.set_run(conn, run_id, finished_at=_now())
    except MigrationError as exc:
        log.warning("cleanup: %s", exc)
        return {"released": False, "warning": str(exc)}
    return {"released": True}


def _now():
    return dt.datetime.now(dt.UTC)


def verdict(summary: dict[str, Any] | None, cleaned: dict[str, Any] | None = assemble.NO_CLEANUP) -> None:
    """The ``verdict`` task: :func:`include.pg_migration.reports.assemble.verdict`, logged to the task's log."""
    assemble.verdict(summary, cleaned, logger=log)
