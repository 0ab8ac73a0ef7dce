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

from include.pg_migration import catalog, plan, snapshot, state
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


def register(target: Endpoint, run_id: str, dag_id: str, params: dict[str, Any], the_plan: dict[str, Any],
             source: Endpoint, consistent: bool = True) -> None:
    """Create the state schema, hold the guard, store the run and its units on the target."""
    with target.connect("pg_migration register", autocommit=True) as conn:
        state.ensure(conn)
        state.acquire_guard(conn, run_id, dag_id)
        state.start_run(conn, run_id, dag_id, params, consistent)
        state.set_run(conn, run_id, plan=the_plan, source=source.public(), snapshot_id=None,
                      snapshot_released_at=None, release_requested=False, status="running")
        state.save_units(conn, run_id, the_plan["units"])


def migrate_locally(source: Endpoint, target: Endpoint, run_id: str, *, include: list[str] | None = None,
                    exclude: list[str] | None = None, pool_size: int = 2, consistent: bool = True,
                    resume: bool = False, unit_order: list[str] | None = None, log_dir: Path | None = None,
                    dag_id: str = "pg_migration") -> dict[str, Any]:
    """Every step of a run in this process (units one after another, in ``unit_order`` if given)."""
    inventory = discover(source, include, exclude)
    the_plan = make_plan(inventory, pool_size)
    params = {"resume": resume, "consistent": consistent}
    register(target, run_id, dag_id, params, the_plan, source, consistent)
    try:
        _run_steps(source, target, run_id, the_plan, consistent, unit_order, log_dir)
    finally:
        with target.connect(autocommit=True) as conn:
            state.release_guard(conn, run_id)
    return the_plan


def _run_steps(source: Endpoint, target: Endpoint, run_id: str, the_plan: dict[str, Any], consistent: bool,
               unit_order: list[str] | None, log_dir: Path | None) -> None:
    try:
        if consistent:
            env = worker_env(source, target, run_id, "snapshot")
            from include.pg_migration.runner import local_env

            snapshot.start_local(local_env(env), (log_dir or Path("/tmp")) / "pg_migration-snapshot.log")
            snapshot.wait_for_snapshot(target, run_id)
        run_local(worker_env(source, target, run_id, "pre-data"), label="pre-data")
        units = the_plan["units"]
        if unit_order:
            units = sorted(units, key=lambda u: unit_order.index(u["unit_id"]) if u["unit_id"] in unit_order else -1)
        for unit in units:
            run_local(worker_env(source, target, run_id, "data", unit["unit_id"]), label=unit["unit_id"])
        run_local(worker_env(source, target, run_id, "large-objects"), label="large-objects")
    finally:
        snapshot.request_release(target, run_id)
    run_local(worker_env(source, target, run_id, "post-data"), label="post-data")
