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
        try:
            run_local(self.env("large-objects"), label="large-objects")
        finally:
            state.request_release(self.target, self.run_id)
        try:
            run_local(self.env("post-data"), label="post-data")
        finally:
            self.close()

    def close(self) -> None:
        state.request_release(self.target, self.run_id)
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
