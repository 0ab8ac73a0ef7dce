"""One assembler for the three kinds of report, and the verdict the DAGs' last task applies.

Every kind is a ``report.json`` dict (schema in :mod:`include.pg_migration.reports.schema`), built
the same way: :func:`base` (which run, where, when), the kind's own keys, then :func:`finish`
(failures and warnings once each, the verdict).

* :func:`run_report` -- ``pg_migration`` / ``pg_migration_rehearsal``: units, phases and
  validations from the target's ``_pg_migration`` state, plus the database-wide checks;
* :func:`cutover_report` -- ``pg_migration_cutover``: its downtime and steps (``cutover``) and the
  per-schema validation, from the replication's state row;
* :func:`abort_report` -- ``pg_migration_abort``: what the abort dropped (``abort``).

:func:`verdict` fails a run whose report failed, or whose cleanup failed. Writing the report is
:func:`include.pg_migration.reports.schema.write`'s (``report.md`` included).
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

from include.pg_migration import state
from include.pg_migration.conn import Endpoint
from include.pg_migration.errors import MigrationError
from include.pg_migration.phases.validate import validate_database
from include.pg_migration.replicate import records
from include.pg_migration.reports.schema import now

log = logging.getLogger(__name__)

#: The verdict of a DAG without a cleanup task of its own.
NO_CLEANUP = {"released": True}


def base(
    dag_id: str, run_id: str, params: dict[str, Any], source: Endpoint | None, target: Endpoint | None
) -> dict[str, Any]:
    """The keys every report has first: which run, with what params, between which endpoints (no password)."""
    return {
        "dag_id": dag_id,
        "run_id": run_id,
        "params": params,
        "finished_at": now(),
        "source": source.public() if source else None,
        "target": target.public() if target else None,
        "schemas": [],
    }


def finish(
    data: dict[str, Any], failures: list[str], warnings: list[str], *, planned: bool = False, complete: bool = True
) -> dict[str, Any]:
    """Failures and warnings once each, and the verdict: ``planned`` (a dry run without failures),
    ``passed`` (no failure, and ``complete``: the run had what the kind needs), else ``failed``."""
    data["failures"] = _dedupe(failures)
    data["warnings"] = _dedupe(warnings)
    if planned:
        data["verdict"] = "planned" if not data["failures"] else "failed"
    else:
        data["verdict"] = "passed" if not data["failures"] and complete else "failed"
    return data


def _dedupe(items: list[str]) -> list[str]:
    return list(dict.fromkeys(items))


def verdict(
    summary: dict[str, Any] | None, cleaned: dict[str, Any] | None = NO_CLEANUP, logger: logging.Logger | None = None
) -> None:
    """Fail the run if the report says it failed, or if the cleanup task failed (``cleaned`` is None)."""
    logger = logger or log
    if not summary:
        raise MigrationError("no report was produced (the report task failed): see its log")
    logger.info("report: %s", summary["report"])
    if summary["verdict"] not in ("passed", "planned"):
        raise MigrationError(
            f"migration {summary['verdict'].upper()}: "
            + "; ".join(summary["failures"])
            + f" (report: {summary['report']})"
        )
    if cleaned is None:
        raise MigrationError(
            f"migration {summary['verdict'].upper()}, but the cleanup task failed: this run's source snapshot "
            "and the target's guard may still be held (see the cleanup task's log; clear it to run it again)"
        )
    logger.info("verdict: %s", summary["verdict"].upper())


# -- a migration run ---------------------------------------------------------------------------------


def run_report(
    source: Endpoint | None,
    target: Endpoint | None,
    dag_id: str,
    run_id: str,
    params: dict[str, Any],
    inventory: dict[str, Any] | None,
    findings: list[dict[str, Any]] | None,
    the_plan: dict[str, Any] | None,
    failed_tasks: list[str],
) -> dict[str, Any]:
    """The run's report, from the target's state and the database-wide checks."""
    data = base(dag_id, run_id, params, source, target)
    data.update(preflight=findings or [], plan=the_plan or {}, phases={}, database={})
    failures: list[str] = list(failed_tasks)
    warnings: list[str] = []
    if inventory is None:
        failures.append("discovery failed: see the discover task's log")
    dry_run = bool(params.get("dry_run"))
    if target is not None and not dry_run and the_plan is not None:
        _fill_run(data, source, target, the_plan, failures, warnings)
    return finish(data, failures, warnings, planned=dry_run, complete=the_plan is not None)


def _fill_run(
    data: dict[str, Any],
    source: Endpoint | None,
    target: Endpoint,
    the_plan: dict[str, Any],
    failures: list[str],
    warnings: list[str],
) -> None:
    run_id, params = data["run_id"], data["params"]
    run = None
    with target.connect("pg_migration report", autocommit=True) as conn:
        if state.exists(conn):
            run = state.get_run(conn, run_id)
            units = state.units_of_run(conn, run_id)
            phases = state.phases_of_run(conn, run_id)
            validations = state.validations_of_run(conn, run_id)
        else:
            units, phases, validations = [], {}, {}
    data["phases"] = {k: {"status": v["status"], **v["detail"]} for k, v in phases.items()}
    for name, phase in data["phases"].items():
        warnings += [f"{name}: {w}" for w in phase.get("warnings", [])]
        failures += [f"{name}: {f}" for f in phase.get("failures", [])]
    if run is not None:
        data["started_at"] = str(run["started_at"])
        data["snapshot"] = _snapshot_summary(run)
        data["total_seconds"] = (dt.datetime.now(dt.UTC) - run["started_at"]).total_seconds()
    for name in the_plan.get("schemas", []):
        data["schemas"].append(_schema_entry(name, units, validations.get(name), params))
    for s in data["schemas"]:
        failures += [f"{s['schema']}: {m}" for m in s["mismatches"]]
        failures += [f"unit {u['unit_id']} failed: {u['error']}" for u in s["units"] if u["status"] == "failed"]
        if s["status"] == "not validated":
            failures.append(f"schema {s['schema']} was not validated")
    if source is not None:
        try:
            data["database"] = validate_database(source, target)
            failures += data["database"]["mismatches"]
        except Exception as exc:  # noqa: BLE001 - the report must be written anyway
            failures.append(f"database checks failed: {exc}")


def _snapshot_summary(run: dict[str, Any]) -> dict[str, Any]:
    if not run["consistent"]:
        return {"id": None, "consistent": False, "note": "one snapshot per unit (consistent: false)"}
    held = None
    if run["snapshot_taken_at"] and run["snapshot_released_at"]:
        held = (run["snapshot_released_at"] - run["snapshot_taken_at"]).total_seconds()
    note = f"one consistent cut {run['snapshot_id']} for every unit" + (
        f", held {held:.0f} s (VACUUM on the source was held back meanwhile)" if held is not None else ""
    )
    return {"id": run["snapshot_id"], "consistent": True, "held_seconds": held, "note": note}


def _validation_keys(validation: dict[str, Any] | None) -> dict[str, Any]:
    """A schema's recorded validation as the report shows it (empty lists when it was not validated)."""
    v = validation or {}
    return {
        "tables": v.get("tables", []),
        "mismatches": v.get("mismatches", []),
        "structure_diffs": v.get("structure_diffs", []),
        "sequences": v.get("sequences", []),
        "notes": v.get("notes", []),
    }


def _schema_entry(
    schema: str, units: list[dict[str, Any]], validation: dict[str, Any] | None, params: dict[str, Any]
) -> dict[str, Any]:
    mine = [u for u in units if u["definition"]["schema"] == schema]
    unit_rows = [
        {
            "unit_id": u["unit_id"],
            "status": u["status"],
            "attempts": u["attempts"],
            "seconds": u["seconds"],
            "bytes": u["bytes"],
            "error": u["error"],
        }
        for u in mine
    ]
    entry = {
        "schema": schema,
        "units": unit_rows,
        "attempts": max([u["attempts"] for u in mine] or [0]),
        "bytes": sum(u["bytes"] or 0 for u in mine),
        "seconds": max([u["seconds"] or 0 for u in mine] or [0]),
        **_validation_keys(validation),
        "validation_seconds": (validation or {}).get("seconds"),
    }
    unit_failed = any(u["status"] != "done" for u in mine) and not params.get("validate_only")
    if validation is None:
        entry["status"] = "not validated"
    elif entry["mismatches"] or unit_failed:
        entry["status"] = "failed"
    else:
        entry["status"] = "passed"
    return entry


# -- a cut-over ---------------------------------------------------------------------------------------


def cutover_report(
    source: Endpoint | None,
    target: Endpoint,
    cutover_run_id: str,
    dag_id: str,
    params: dict[str, Any],
    failed_tasks: list[str],
    started_at: str | None = None,
) -> dict[str, Any]:
    """The cut-over's report (a run's keys, plus ``cutover``): its downtime, per schema results."""
    data = base(dag_id, cutover_run_id, params, source, target)
    data["started_at"] = started_at
    failures = list(failed_tasks)
    rep = None
    with target.connect("pg_migration report", autocommit=True) as tgt:
        if state.exists(tgt) and records.has_table(tgt):
            try:
                rep = records.by_cutover(tgt, cutover_run_id)
            except MigrationError as exc:
                failures.append(str(exc))
            validations = state.validations_of_run(tgt, cutover_run_id)
        else:
            validations = {}
            failures.append("the target has no replication state")
    if rep is not None:
        _fill_cutover(data, rep, validations, failures)
    return finish(data, failures, [], complete=rep is not None)


def _fill_cutover(data: dict[str, Any], rep: dict[str, Any], validations: dict[str, Any], failures: list[str]) -> None:
    detail = rep["detail"] or {}
    downtime = None
    if rep["validated_at"] and rep["writes_stopped_at"]:
        downtime = (rep["validated_at"] - rep["writes_stopped_at"]).total_seconds()
    data["started_at"] = str(rep["cutover_started_at"])
    data["cutover"] = {
        "replicate_run_id": rep["run_id"],
        "subscription": rep["subscription"],
        "slot": rep["slot"],
        "publication": rep["publication"],
        "writes_stopped_at": str(rep["writes_stopped_at"]),
        "caught_up_at": str(rep["caught_up_at"]),
        "validated_at": str(rep["validated_at"]),
        "downtime_seconds": downtime,
        "replication_dropped": rep["dropped_at"] is not None,
        "read_only_source": bool(rep["read_only_set"]),
        "sequences": len(detail.get("sequences", [])),
        "large_objects": detail.get("large_objects"),
        "matviews": detail.get("matviews", []),
        "drop": detail.get("drop"),
    }
    data["snapshot"] = {
        "id": None,
        "consistent": True,
        "note": (
            f"cut-over of replicate run {rep['run_id']}: downtime {downtime:.1f} s (writes stopped -> validated)"
            if downtime is not None
            else f"cut-over of replicate run {rep['run_id']}: not validated"
        ),
    }
    data["total_seconds"] = downtime
    for name in rep["schemas"]:
        v = validations.get(name)
        entry = {
            "schema": name,
            "units": [],
            "attempts": 0,
            "bytes": 0,
            "seconds": (v or {}).get("seconds", 0),
            **_validation_keys(v),
            "status": "not validated" if v is None else ("failed" if v.get("mismatches") else "passed"),
        }
        data["schemas"].append(entry)
        failures += [f"{name}: {m}" for m in entry["mismatches"]]
        if v is None:
            failures.append(f"schema {name} was not validated")
    if rep["dropped_at"] is None:
        failures.append(
            f"replication of run {rep['run_id']} not dropped (status {rep['status']}): the cut-over "
            "did not finish; the source remains the system of record"
        )
    failures += detail.get("problems", [])


# -- an abort -------------------------------------------------------------------------------------------


def abort_report(
    source: Endpoint | None,
    target: Endpoint | None,
    run_id: str,
    dag_id: str,
    params: dict[str, Any],
    failed_tasks: list[str],
    result: dict[str, Any] | None,
) -> dict[str, Any]:
    """The abort's report: what :func:`include.pg_migration.replicate.abort` dropped (``result``;
    None: the abort task did not finish) and what failed."""
    data = base(dag_id, run_id, params, source, target)
    data["started_at"] = now()
    data["abort"] = result or {}
    data["snapshot"] = {
        "note": "aborted replication of run(s) " + (", ".join((result or {}).get("aborted", [])) or "none")
    }
    failures = list(failed_tasks) + list((result or {}).get("errors", []))
    if result is None:
        failures.append("the abort task did not finish: see its log")
    return finish(data, failures, [f"dropped {d}" for d in (result or {}).get("dropped", [])])
