"""The local harness: runs driven in this process along :mod:`include.pg_migration.run_order`.

Tests and the benchmark use it to exercise the library without Airflow. It walks the same step lists
the DAGs are wired from: ``run_order.MIGRATION`` for a migration (:class:`LocalRun` in mode
``snapshot``, :class:`ReplicateRun` in mode ``replicate``) and ``run_order.CUTOVER`` for a cut-over
(:func:`run_cutover`). Each step is done by the method ``step_<task id>``, in list order, for
the run's mode; the steps this harness leaves to its caller are named, with the reason, in
:data:`LEFT_TO_THE_CALLER`.

    run = LocalRun(source, target, run_id)      # or ReplicateRun(...)
    run.start()                                 # the steps before migrate_unit: discover .. pre_data
    for unit in run.plan["units"]:
        run.unit(unit["unit_id"])               # migrate_unit: any order, any retries
    run.finish()                                # the steps after it, to the end of the mode's list

It sits at the top of the import graph: nothing in the library imports it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from include.pg_migration import catalog, cutover, ownership, plan, run_order, state
from include.pg_migration.conn import Endpoint
from include.pg_migration.cutover.verify import copy_verified
from include.pg_migration.errors import ConfigError, MigrationError
from include.pg_migration.phases import snapshot
from include.pg_migration.phases.validate import validate_schema
from include.pg_migration.replicate import checks, lag, publication, records, subscription, teardown
from include.pg_migration.reports import assemble
from include.pg_migration.reports import schema as report_schema
from include.pg_migration.run_order import DATA, LARGE_OBJECTS, POST_DATA, PRE_DATA, SNAPSHOT, Step
from include.pg_migration.runner import local_env, run_local, worker_env

log = logging.getLogger(__name__)

#: Steps of the migration's list this harness does not do, and why.
LEFT_TO_THE_CALLER = {
    "preflight": "tests call include.pg_migration.preflight.run themselves",
    "migrate_unit": "the caller runs the units (LocalRun.unit), in any order, with any retries",
    "report": "tests assemble reports themselves (include.pg_migration.reports.assemble)",
    "verdict": "tests assert on what they check",
}
UNITS = "migrate_unit"


class LocalRun:
    """A run in mode ``snapshot``, driven step by step in this process.

    In this mode ``validate`` is left to the caller too (tests validate, or compare both sides by
    query, themselves) and ``check_replication`` has nothing to check (no replication).
    """

    mode = "snapshot"
    left_to_the_caller = {**LEFT_TO_THE_CALLER, "validate": "tests validate (or compare both sides) themselves"}

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
        replace_dependents: bool = False,
        lock_share: float = 0.5,
        ownership: str = "target_user",
        dag_id: str = run_order.RUN_DAG_ID,
        log_dir: Path | None = None,
        tables: dict[str, list[str]] | None = None,
    ):
        self.source, self.target, self.run_id, self.dag_id = source, target, run_id, dag_id
        self.include, self.exclude, self.pool_size = include, exclude, pool_size
        self.tables = tables  # the table-level selection's params: tables, exclude_tables, exclude_table_data
        self.params = {
            "resume": resume,
            "consistent": consistent,
            "create_roles": create_roles,
            "replace_dependents": replace_dependents,
            "pool_size": pool_size,
            "lock_share": lock_share,
            "ownership": ownership,  # the DAG's default is "carry"; the harness keeps today's unless asked
        }
        self.consistent = consistent
        self.validation = "counts"
        self.log_dir = log_dir or Path("/tmp")
        self.inventory: dict[str, Any] = {}
        self.plan: dict[str, Any] = {}
        self.done: list[str] = []  # the task ids walked, in order (tests read it)

    # -- walking the list --------------------------------------------------------------------------

    def steps(self) -> list[Step]:
        """The migration's steps that act in this run's mode, in run order."""
        return [s for s in run_order.MIGRATION if self.mode in s.modes]

    def _walk(self, steps: list[Step]) -> None:
        for step in steps:
            if step.task_id not in self.left_to_the_caller:
                getattr(self, f"step_{step.task_id}")()
            self.done.append(step.task_id)

    def start(self) -> dict[str, Any]:
        """Every step before ``migrate_unit``; returns the plan."""
        ids = [s.task_id for s in self.steps()]
        self._walk(self.steps()[: ids.index(UNITS)])
        return self.plan

    def unit(self, unit_id: str) -> None:
        """``migrate_unit`` for one unit (a retry is just another call)."""
        run_local(self.env(DATA, unit_id), label=unit_id)

    def finish(self) -> Any:
        """Every step after ``migrate_unit`` to the end of the list; the guard is released whatever happens."""
        ids = [s.task_id for s in self.steps()]
        try:
            self._walk(self.steps()[ids.index(UNITS) + 1 :])
        finally:
            self.close()

    def env(self, phase: str, unit_id: str | None = None) -> dict[str, str]:
        return worker_env(self.source, self.target, self.run_id, phase, unit_id)

    def close(self) -> None:
        """Release the snapshot and the target's guard (idempotent)."""
        state.request_release(self.target, self.run_id)
        with self.target.connect(autocommit=True) as conn:
            if state.exists(conn):
                state.release_guard(conn, self.run_id)

    # -- the steps, by task id -----------------------------------------------------------------------

    def step_discover(self) -> None:
        self.inventory = catalog.inventory(self.source, self.include, self.exclude, tables=self.tables)

    def step_check_replication(self) -> None:
        """Mode snapshot: nothing to check (the DAG's task only refuses a target a replication streams into)."""

    def step_plan(self) -> None:
        self.plan = plan.make_plan(self.inventory, self.pool_size)
        plan.register(self.target, self.run_id, self.dag_id, self.params, self.plan, self.source, self.consistent)

    def step_snapshot(self) -> None:
        if self.consistent:
            log_file = self.log_dir / f"pg_migration-snapshot-{self.run_id}.log"
            snapshot.start_local(local_env(self.env(SNAPSHOT)), log_file)
            snapshot.wait_for_snapshot(self.target, self.run_id)

    def step_pre_data(self) -> None:
        run_local(self.env(PRE_DATA), label="pre-data")

    def step_large_objects(self) -> None:
        run_local(self.env(LARGE_OBJECTS), label="large-objects")

    def step_post_data(self) -> None:
        run_local(self.env(POST_DATA), label="post-data")

    def step_release_snapshot(self) -> None:
        """As the DAG's task: checksums keep the snapshot until validated."""
        if self.validation != "checksums":
            state.request_release(self.target, self.run_id)

    def step_ownership(self) -> None:
        ownership.hand_over(self.source, self.target, self.run_id)

    def step_cleanup(self) -> None:
        self.close()


class ReplicateRun(LocalRun):
    """A run in mode ``replicate``: the copy is read from a new slot's snapshot, validated, then the
    target subscribes to the slot. Whatever happens, :meth:`end` runs ``cleanup_replication`` (a run
    that is not streaming drops what it created) and releases the guard."""

    mode = "replicate"
    left_to_the_caller = LEFT_TO_THE_CALLER

    def __init__(
        self,
        source: Endpoint,
        target: Endpoint,
        run_id: str,
        *,
        publisher: Endpoint | None = None,
        replica_identity_full: bool = False,
        catchup_timeout_s: float = 60.0,
        validation: str = "counts",
        **options: Any,
    ):
        if options.get("resume"):
            raise ConfigError("resume: true is refused in replicate mode (see replicate.checks.check)")
        options.pop("consistent", None)
        super().__init__(source, target, run_id, consistent=True, **options)
        self.params.update(mode="replicate", replica_identity_full=replica_identity_full, validation=validation)
        self.publisher = publisher or source
        self.catchup_timeout_s = catchup_timeout_s
        self.validation = validation
        self.findings: list[dict[str, str]] = []
        self.lag: dict[str, Any] = {}

    def finish(self) -> dict[str, Any]:
        try:
            super().finish()
            return self.lag
        finally:
            self.end()

    def end(self) -> dict[str, Any]:
        """``cleanup_replication``: drop everything unless streaming; release the snapshot and the guard."""
        try:
            return teardown.cleanup_run(self.source, self.target, self.run_id)
        finally:
            self.close()

    def step_check_replication(self) -> None:
        schemas = [s["name"] for s in self.inventory["schemas"]]
        self.findings = checks.check(self.source, self.target, schemas, self.params, self.run_id)
        checks.raise_blocking(self.findings)

    def step_snapshot(self) -> None:
        """The DAG's snapshot task in this mode: register the replication, create the publication, then
        the holder creates the slot and exports its snapshot."""
        records.register(
            self.target, self.run_id, self.dag_id, self.source, self.plan, bool(self.params["replica_identity_full"])
        )
        publication.prepare_publication(self.source, self.target, self.run_id)
        super().step_snapshot()

    def step_validate(self) -> None:
        with self.target.connect(autocommit=True) as tgt:
            snapshot_id = state.get_run(tgt, self.run_id)["snapshot_id"]
        for schema in self.plan["schemas"]:
            result = validate_schema(
                self.source,
                self.target,
                schema,
                run_id=self.run_id,
                mode=self.validation,
                snapshot_id=snapshot_id if self.validation == "checksums" else None,
            )
            with self.target.connect(autocommit=True) as tgt:
                state.save_validation(tgt, self.run_id, schema, result.to_dict())

    def step_subscribe(self) -> None:
        state.request_release(self.target, self.run_id)  # checksums kept it until validated
        problems = copy_verified(self.target, self.source, self.run_id)
        if problems:
            raise MigrationError("not subscribing: the copy is not verified: " + "; ".join(problems[:10]))
        subscription.subscribe(self.target, self.run_id, self.publisher)
        self.lag = lag.wait_caught_up(self.source, self.target, self.run_id, timeout_s=self.catchup_timeout_s)
        lag.record_replication_phase(self.target, self.run_id, self.lag, {"caught_up": self.lag["caught_up"]})

    def step_cleanup_replication(self) -> None:
        """Done by :meth:`end`, whatever happened (as the DAG's ``all_done`` task)."""

    def cutover(self, cutover_run_id: str | None = None, **options: Any) -> dict[str, Any]:
        return run_cutover(
            self.source, self.target, cutover_run_id or f"{self.run_id}__cutover", run_id=self.run_id, **options
        )

    def abort(self) -> dict[str, Any]:
        return teardown.abort(self.source, self.target, self.run_id)


def migrate_locally(
    source: Endpoint, target: Endpoint, run_id: str, *, unit_order: list[str] | None = None, **options: Any
) -> dict[str, Any]:
    """Every step of a snapshot run in this process (units one after another, in ``unit_order`` if given)."""
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


def run_cutover(
    source: Endpoint,
    target: Endpoint,
    cutover_run_id: str,
    *,
    run_id: str | None = None,
    validation: str = "counts",
    read_only: bool = False,
    quiet_s: float = 10.0,
    writes_timeout_s: float = 300.0,
    lag_timeout_s: float = 1800.0,
    dag_id: str = run_order.CUTOVER_DAG_ID,
    write_report: bool = False,
    on_step: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Every step of ``run_order.CUTOVER`` in this process (tests, benchmark); returns the report.

    ``validate`` runs once per schema (the DAG maps it over validation groups); ``release`` runs
    whatever happened, then the report is assembled (``write_report``: written too)."""
    c, failed = cutover_run_id, []
    begun: dict[str, Any] = {}
    does: dict[str, Callable[[], Any]] = {
        "begin": lambda: begun.update(
            cutover.begin(source, target, c, dag_id=dag_id, run_id=run_id, read_only=read_only)
        ),
        "stop_writes": lambda: cutover.stop_writes(source, target, c, timeout_s=writes_timeout_s),
        "catch_up": lambda: cutover.catch_up(source, target, c, timeout_s=lag_timeout_s),
        "confirm_quiet": lambda: cutover.confirm_quiet(
            source, target, c, quiet_s=quiet_s, timeout_s=writes_timeout_s, lag_timeout_s=lag_timeout_s
        ),
        "sequences": lambda: cutover.sequences(source, target, c),
        "large_objects": lambda: cutover.large_objects(source, target, c),
        "matviews": lambda: cutover.matviews(source, target, c),
        "finish": lambda: cutover.finish(source, target, c),
    }
    steps = [s.task_id for s in run_order.CUTOVER]
    try:
        for task_id in steps[: steps.index("release")]:
            if task_id == "validate":
                for schema in begun["schemas"]:
                    _announce(on_step, f"validate {schema}")
                    cutover.validate(source, target, c, schema, validation)
                continue
            if task_id != "begin":
                _announce(on_step, task_id)
            does[task_id]()
    except MigrationError as exc:
        failed.append(str(exc))
    finally:
        cutover.release(source, target, c)
    data = assemble.cutover_report(
        source, target, c, dag_id, {"validation": validation, "read_only_source": read_only}, failed
    )
    if write_report:
        data["report"] = report_schema.write(data)
    return data


def _announce(on_step: Callable[[str], None] | None, name: str) -> None:
    if on_step:
        on_step(name)
