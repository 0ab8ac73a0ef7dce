"""The run order, told once: the DAG ids, the pool, the worker's phases and each DAG's steps.

Everything else reads these names from here: the DAG files and their glue (task ids, the pool),
the worker (``PGMIG_PHASE`` values), the local harness (:mod:`include.pg_migration.harness`, which
walks :data:`MIGRATION` and :data:`CUTOVER` step by step), the UI page (DAG ids) and the tests
(``tests/dags/test_run_order.py`` checks that each DAG's dependencies follow these lists, and that
``docs/architecture.md``'s task -> phase -> module -> function table names what is here).

A :class:`Step` is one task of the Grid view: its task id, the worker phase that does its work when a
worker process (or Fargate task) does it, and the library function that does the work. Steps are
listed in the order they run; steps that run side by side (``beside``) follow the same predecessor.
"""

from __future__ import annotations

from dataclasses import dataclass

RUN_DAG_ID = "pg_migration"
REHEARSAL_DAG_ID = "pg_migration_rehearsal"
CUTOVER_DAG_ID = "pg_migration_cutover"
ABORT_DAG_ID = "pg_migration_abort"
DAG_IDS = (RUN_DAG_ID, REHEARSAL_DAG_ID, CUTOVER_DAG_ID, ABORT_DAG_ID)

#: The Airflow pool every phase that reads the source or writes the target in bulk runs in.
POOL = "pg_migration"

MODES = ("snapshot", "replicate")

# The worker's phases (``PGMIG_PHASE``): the ECS image and earlier runs' records read these values.
SNAPSHOT = "snapshot"
PRE_DATA = "pre-data"
DATA = "data"
LARGE_OBJECTS = "large-objects"
POST_DATA = "post-data"
PHASES = (SNAPSHOT, PRE_DATA, DATA, LARGE_OBJECTS, POST_DATA)

#: Phases that read the source in the run's snapshot: with ``consistent: true`` they need it held.
NEEDS_SNAPSHOT = frozenset({PRE_DATA, DATA, LARGE_OBJECTS})
#: Phases that run in :data:`POOL` (the snapshot holder only holds a session: it is outside the pool).
POOLED = frozenset({PRE_DATA, DATA, LARGE_OBJECTS, POST_DATA})


def needs_snapshot(phase: str, consistent: bool) -> bool:
    """Whether ``phase`` must find the run's snapshot still held before it starts."""
    return consistent and phase in NEEDS_SNAPSHOT


@dataclass(frozen=True)
class Step:
    """One task of a DAG, in run order."""

    task_id: str
    function: str  # "module:function" of the library code doing the task's work
    phase: str | None = None  # the worker's PGMIG_PHASE when a worker process does the work
    modes: tuple[str, ...] = MODES  # run modes in which the step acts (others: a no-op task)
    beside: str | None = None  # runs side by side with this step (same predecessor, same successor)
    mapped: bool = False  # one task instance per unit / validation group

    @property
    def module(self) -> str:
        return self.function.split(":")[0]

    @property
    def callable(self) -> str:
        return self.function.split(":")[1]


L = "include.pg_migration."

#: ``pg_migration`` and ``pg_migration_rehearsal``: the migration's story, top to bottom.
MIGRATION: tuple[Step, ...] = (
    Step("discover", L + "catalog:inventory"),
    Step("preflight", L + "preflight:run"),
    Step("check_replication", L + "replicate.checks:check", beside="preflight"),
    Step("plan", L + "plan:make_plan"),
    Step("snapshot", L + "phases.snapshot:hold", phase=SNAPSHOT),
    Step("pre_data", L + "phases.pre_data:run_pre_data", phase=PRE_DATA),
    Step("migrate_unit", L + "phases.data:run_data_unit", phase=DATA, mapped=True),
    Step("large_objects", L + "phases.large_objects:run_large_objects", phase=LARGE_OBJECTS, beside="migrate_unit"),
    Step("post_data", L + "phases.post_data:run_post_data", phase=POST_DATA),
    Step("release_snapshot", L + "state:request_release", beside="post_data"),
    Step("validate", L + "phases.validate:validate_and_record", mapped=True),
    Step("ownership", L + "ownership:hand_over"),
    Step("subscribe", L + "replicate.subscription:subscribe", modes=("replicate",)),
    Step("cleanup_replication", L + "replicate.teardown:cleanup_run", modes=("replicate",)),
    Step("report", L + "reports.assemble:run_report"),
    Step("cleanup", L + "state:release_guard", beside="report"),
    Step("verdict", L + "reports.assemble:verdict"),
)

#: ``pg_migration_cutover``: the downtime window, top to bottom.
CUTOVER: tuple[Step, ...] = (
    Step("begin", L + "cutover:begin"),
    Step("stop_writes", L + "cutover:stop_writes"),
    Step("catch_up", L + "cutover:catch_up"),
    Step("confirm_quiet", L + "cutover:confirm_quiet"),
    Step("sequences", L + "cutover:sequences"),
    Step("large_objects", L + "cutover:large_objects"),
    Step("matviews", L + "cutover:matviews"),
    Step("validate", L + "cutover:validate", mapped=True),
    Step("finish", L + "cutover:finish"),
    Step("release", L + "cutover:release"),
    Step("report", L + "reports.assemble:cutover_report"),
    Step("verdict", L + "reports.assemble:verdict"),
)

#: ``pg_migration_abort``: call a replicate run off.
ABORT: tuple[Step, ...] = (
    Step("abort", L + "replicate.teardown:abort"),
    Step("report", L + "reports.assemble:abort_report"),
    Step("verdict", L + "reports.assemble:verdict"),
)

STEPS = {RUN_DAG_ID: MIGRATION, REHEARSAL_DAG_ID: MIGRATION, CUTOVER_DAG_ID: CUTOVER, ABORT_DAG_ID: ABORT}


def worker_steps(steps: tuple[Step, ...] = MIGRATION) -> list[Step]:
    """The steps a worker process does, in run order."""
    return [s for s in steps if s.phase]
