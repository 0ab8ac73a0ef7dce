"""The steps of a run, as plain functions (the DAG's tasks call these; tests call them directly).

    discover -> preflight -> plan/register -> guard -> snapshot -> pre-data -> data units
      -> large objects -> release -> post-data -> validate -> report -> verdict

:func:`migrate_locally` chains them all in one process: it is what the tests use to exercise the
library without Airflow, and the reference for what the DAG must do.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from include.pg_migration import catalog, plan, state
from include.pg_migration.conn import Endpoint
from include.pg_migration.runner import run_local, worker_env

log = logging.getLogger(__name__)


def discover(source: Endpoint, include: list[str] | None, exclude: list[str] | None) -> dict[str, Any]:
    with source.connect("pg_migration discover", autocommit=True) as conn:
        version = catalog.server_version(conn)
        schemas = catalog.discover(conn, include, exclude)
        outside = catalog.outside_dependencies(conn, [s.name for s in schemas]) if schemas else []
    return {"server_version_num": version, "schemas": [s.to_dict() for s in schemas], "outside_dependencies": outside}


def make_plan(inventory: dict[str, Any], pool_size: int, split_bytes: int | None = None) -> dict[str, Any]:
    schemas = [catalog.Schema.from_dict(s) for s in inventory["schemas"]]
    units = plan.plan_units(schemas, pool_size=pool_size, split_bytes=split_bytes)
    return {
        "schemas": [s.name for s in schemas],
        "units": [u.to_dict() for u in units],
        "bytes": sum(s.bytes for s in schemas),
        "tables": sum(len(s.tables) for s in schemas),
    }


def register(
    target: Endpoint,
    run_id: str,
    dag_id: str,
    params: dict[str, Any],
    the_plan: dict[str, Any],
    source: Endpoint,
    consistent: bool = True,
) -> None:
    """Create the state schema, hold the guard, store the run and its units on the target."""
    with target.connect("pg_migration register", autocommit=True) as conn:
        state.ensure(conn)
        state.acquire_guard(conn, run_id, dag_id)
        state.start_run(conn, run_id, dag_id, params, consistent)
        state.set_run(
            conn,
            run_id,
            plan=the_plan,
            source=source.public(),
            snapshot_id=None,
            snapshot_released_at=None,
            release_requested=False,
            status="running",
        )
        state.save_units(conn, run_id, the_plan["units"])


class LocalRun:
    """A run driven step by step in this process (tests, and the reference for what the DAG does)."""

    def __init__(
        self,
        source: Endpoint,
        target: Endpoint,
        run_id: str,
        *,
        include: list[str] | None = None,
        exclude: list[str] | None = None,
        pool_size: int = 2,
        consistent: bool = True,
        resume: bool = False,
        create_roles: bool = True,
        dag_id: str = "pg_migration",
        log_dir: Path | None = None,
    ):
        self.source, self.target, self.run_id, self.dag_id = source, target, run_id, dag_id
        self.include, self.exclude, self.pool_size = include, exclude, pool_size
        self.params = {"resume": resume, "consistent": consistent, "create_roles": create_roles, "pool_size": pool_size}
        self.consistent = consistent
        self.log_dir = log_dir or Path("/tmp")
        self.plan: dict[str, Any] = {}

    def env(self, phase: str, unit_id: str | None = None) -> dict[str, str]:
        return worker_env(self.source, self.target, self.run_id, phase, unit_id)

    def start(self) -> dict[str, Any]:
        """discover, plan, register (guard), snapshot, pre-data."""
        inventory = discover(self.source, self.include, self.exclude)
        self.plan = make_plan(inventory, self.pool_size)
        register(self.target, self.run_id, self.dag_id, self.params, self.plan, self.source, self.consistent)
        if self.consistent:
            # phases.snapshot imports replicate, whose ReplicateRun subclasses LocalRun: imported here
            # until LocalRun and ReplicateRun move to the harness, above both.
            from include.pg_migration.phases import snapshot
            from include.pg_migration.runner import local_env

            log_file = self.log_dir / f"pg_migration-snapshot-{self.run_id}.log"
            snapshot.start_local(local_env(self.env("snapshot")), log_file)
            snapshot.wait_for_snapshot(self.target, self.run_id)
        run_local(self.env("pre-data"), label="pre-data")
        return self.plan

    def unit(self, unit_id: str) -> None:
        run_local(self.env("data", unit_id), label=unit_id)

    def finish(self) -> None:
        """large objects, release the snapshot, post-data, release the guard."""
        from include.pg_migration.phases import snapshot  # see start()

        try:
            run_local(self.env("large-objects"), label="large-objects")
        finally:
            snapshot.request_release(self.target, self.run_id)
        try:
            run_local(self.env("post-data"), label="post-data")
        finally:
            self.close()

    def close(self) -> None:
        from include.pg_migration.phases import snapshot  # see start()

        snapshot.request_release(self.target, self.run_id)
        with self.target.connect(autocommit=True) as conn:
            state.release_guard(conn, self.run_id)


def migrate_locally(
    source: Endpoint, target: Endpoint, run_id: str, *, unit_order: list[str] | None = None, **options: Any
) -> dict[str, Any]:
    """Every step of a run in this process (units one after another, in ``unit_order`` if given)."""
    run = LocalRun(source, target, run_id, **options)
    try:
        the_plan = run.start()
        units = [u["unit_id"] for u in the_plan["units"]]
        if unit_order:
            units.sort(key=lambda u: unit_order.index(u) if u in unit_order else -1)
        for unit_id in units:
            run.unit(unit_id)
    except BaseException:
        run.close()
        raise
    run.finish()
    return the_plan


def assemble_report(
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
    """The run's report (schema in :mod:`include.pg_migration.report`), from the target's state."""
    from include.pg_migration import report as rpt
    from include.pg_migration.phases.validate import validate_database

    failures: list[str] = list(failed_tasks)
    warnings: list[str] = []
    data: dict[str, Any] = {
        "dag_id": dag_id,
        "run_id": run_id,
        "params": params,
        "finished_at": rpt.now(),
        "source": source.public() if source else None,
        "target": target.public() if target else None,
        "preflight": findings or [],
        "plan": the_plan or {},
        "schemas": [],
        "phases": {},
        "database": {},
    }
    if inventory is None:
        failures.append("discovery failed: see the discover task's log")
    dry_run = bool(params.get("dry_run"))
    run = None
    if target is not None and not dry_run and the_plan is not None:
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
            started = run["started_at"]
            import datetime as dt

            data["total_seconds"] = (dt.datetime.now(dt.UTC) - started).total_seconds()
        for schema in the_plan.get("schemas", []):
            data["schemas"].append(_schema_entry(schema, units, validations.get(schema), params))
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
    data["failures"] = _dedupe(failures)
    data["warnings"] = _dedupe(warnings)
    if dry_run:
        data["verdict"] = "planned" if not failures else "failed"
    else:
        data["verdict"] = "passed" if not failures and the_plan is not None else "failed"
    return data


def _dedupe(items: list[str]) -> list[str]:
    return list(dict.fromkeys(items))


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
        "tables": (validation or {}).get("tables", []),
        "mismatches": (validation or {}).get("mismatches", []),
        "structure_diffs": (validation or {}).get("structure_diffs", []),
        "sequences": (validation or {}).get("sequences", []),
        "notes": (validation or {}).get("notes", []),
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
