"""
# pg_migration: move PostgreSQL schemas to Aurora, in parallel, proven equal

Reads top to bottom as the migration's story:

1. **discover** the source's schemas (never system schemas), honouring `schemas` / `exclude_schemas`;
   a requested schema that does not exist fails here, by name.
2. **preflight**: versions, client tools, extensions, roles, dependencies outside the selection,
   connections, tables without a primary key... Blocking findings fail the run before anything is written.
3. **plan** units of work, largest first (big schemas split by tables), and validation groups; register
   the run on the target (`_pg_migration` schema) and take the target's **guard** (no two runs write to
   one target). **choose_runner** (beside the checks) takes the `runner`'s path once the plan is made,
   or none: dry runs and validate-only runs copy nothing.
4. **snapshot**: one exported snapshot of the whole source, held by a holder process until the data
   units are done (`consistent: false`: a snapshot per unit instead).
5. **pre_data**: every schema's definitions at once, from the snapshot, in one transaction; it hands
   the plan's units to the next step.
6. **migrate_unit** (mapped, pool `pg_migration`, retries with backoff): COPY streams per table in the
   snapshot, indexes/keys built as tables finish, source and target counts recorded with the rows.
7. **large_objects** (beside the data units, same pool), then **post_data**: foreign keys (added
   `NOT VALID`, validated on `pool_size` sessions at once), triggers, index attachments, materialized
   views, sequences, database settings; **release_snapshot** beside it.
8. **validate** (mapped per validation group, same pool; at most 2 x `pool_size` groups of about equal
   size, a dominant schema alone): each group's schemas one after another, each recorded on its own:
   exact `ONLY` row counts (and checksums when asked), structure, sequences. A group that could not
   validate a schema fails after trying the others, naming it.
9. **ownership**: every object handed to its source owner where the target role may (`ownership: carry`,
   the default; `exact` fails the run in pre-flight on an owner it cannot carry; `target_user` keeps the
   target role as owner of everything), read back and compared.
10. `mode: "replicate"` only (near-zero downtime): the cut is a logical replication slot's snapshot
   (**check_replication** vets the source first); after validation, **subscribe** streams every later
   change into the target and shows the lag once it caught up; `pg_migration_cutover` finishes the job in
   the downtime window, `pg_migration_abort` calls it off. **cleanup_replication** leaves no slot or
   publication behind when a run does not reach streaming.
11. **report** (`report.json` + `report.md`, path in the log) beside **cleanup** (snapshot, guard), then
   the **verdict**: the run fails if anything failed or differs, or if the cleanup failed.

**runner** `ecs` runs steps 4-7 (every phase that needs PostgreSQL client tools) as Fargate tasks of
the same worker, started by `EcsRunTaskOperator` (group `ecs`: deferrable, re-attaching, same pool and
retries); the snapshot holder is a Fargate task too. Its settings are the `ecs_*` params or
`$PG_MIGRATION_ECS_*` on the Airflow workers (include/aws/README.md); passwords reach the containers
only through the task definition's secrets. Catalog queries and validation stay in Airflow tasks.

Params are the trigger form; `dry_run` plans only, `validate_only` copies nothing, `resume` keeps the
tables an earlier run loaded and verified.
"""

from __future__ import annotations

import datetime as dt
import os

import pendulum
from airflow.sdk import TaskGroup, TriggerRule, chain, dag, get_current_context, get_parsing_context, task
from pg_migration_support import ecs, rehearsal, tasks
from pg_migration_support import replicate_tasks as repl
from pg_migration_support.connections import endpoints
from pg_migration_support.params import migration_params, replication_params
from pg_migration_support.tasks import run_order, run_worker

# Retries with exponential backoff, capped. Read from the environment at parse time (no DB access):
# PG_MIGRATION_RETRIES (default 3) and PG_MIGRATION_RETRY_DELAY_S (default 15; the tests use 1).
DEFAULT_ARGS = {
    "owner": "data-platform",
    "retries": int(os.environ.get("PG_MIGRATION_RETRIES", "3")),
    "retry_delay": dt.timedelta(seconds=float(os.environ.get("PG_MIGRATION_RETRY_DELAY_S", "15"))),
    "retry_exponential_backoff": True,
    "max_retry_delay": dt.timedelta(minutes=10),
}


def build_migration_dag(
    dag_id: str,
    *,
    schedule=None,
    target_conn_id: str = "pg_target",
    runner: str = "local",
    doc_md: str = __doc__,
    tags: tuple[str, ...] = ("pg-migration",),
    is_paused_upon_creation: bool | None = None,
):
    @dag(
        dag_id=dag_id,
        schedule=schedule,
        start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
        catchup=False,
        max_active_runs=1,
        is_paused_upon_creation=is_paused_upon_creation,
        params={**migration_params(target_conn_id, runner), **replication_params()},
        default_args=DEFAULT_ARGS,
        doc_md=doc_md,
        tags=list(tags),
    )
    def migration():
        @task(retries=0)
        def discover(params=None):
            source, _ = endpoints(params)
            return tasks.discover(source, params)

        @task(retries=0)
        def preflight(inventory: dict, params=None, ti=None):
            source, target = endpoints(params)
            return tasks.preflight(source, target, inventory, params, ti)

        @task(retries=0)
        def plan(inventory: dict, findings: list, params=None, run_id=None, dag=None, ti=None):
            """Returns the validation groups (what `validate` maps over); the whole plan is XCom `planned`."""
            source, target = endpoints(params)
            planned = tasks.plan(source, target, inventory, params, run_id, dag.dag_id)
            groups = planned.pop("validation")
            ti.xcom_push(key=tasks.PLANNED_KEY, value=planned)
            return groups

        @task.branch(retries=0)
        def choose_runner(params=None):
            """runner local: worker processes on this Airflow worker; ecs: Fargate tasks (group `ecs`).
            Dry runs and validate-only runs copy nothing: neither (both paths skipped)."""
            if params["dry_run"] or params["validate_only"]:
                return []
            return "snapshot" if params["runner"] == "local" else "ecs.settings"

        @task(retries=0)
        def check_replication(inventory: dict, params=None, run_id=None):
            """mode replicate: source safety (wal_level, slots, REPLICATION, replica identity) up front."""
            return repl.check_replication(params, inventory, run_id)

        @task(retries=0)
        def snapshot(params=None, run_id=None):
            """One cut for every unit: an exported snapshot (replicate: the new slot's snapshot)."""
            if repl.is_replicate(params):
                return repl.start_replication_snapshot(params, run_id)
            source, target = endpoints(params)
            return tasks.take_snapshot(source, target, params, run_id)

        @task(pool=run_order.POOL)
        def pre_data(planned: dict, params=None, run_id=None):
            """Every table defined; returns the plan's data units, which `migrate_unit` maps over."""
            run_worker(params, run_id, "pre-data")
            return planned["units"]

        @task(pool=run_order.POOL, map_index_template="{{ unit_label }}")
        def migrate_unit(unit: dict, params=None, run_id=None):
            get_current_context()["unit_label"] = unit["label"]
            run_worker(params, run_id, "data", unit["unit_id"])

        @task(pool=run_order.POOL)
        def large_objects(params=None, run_id=None):
            run_worker(params, run_id, "large-objects")

        @task(trigger_rule=TriggerRule.ALL_DONE, retries=0)
        def release_snapshot(params=None, run_id=None):
            """The data is copied: stop holding back VACUUM on the source (checksums keep it until validated)."""
            if params["validation"] != "checksums":
                tasks.release_snapshot(params, run_id)

        @task(pool=run_order.POOL)
        def post_data(params=None, run_id=None):
            run_worker(params, run_id, "post-data")

        # runner ecs: the same phases as Fargate tasks of the same worker (pg_migration_support/ecs.py)
        @task(retries=0)
        def settings(params=None, dag=None):
            """This run's ECS settings (the ecs_* params, else $PG_MIGRATION_ECS_*): fails naming what is missing.
            The rehearsal runs its own task definition (ecs_rehearsal_task_definition)."""
            return ecs.resolve(params, rehearsal=dag.dag_id == run_order.REHEARSAL_DAG_ID).to_dict()

        @task(retries=0)
        def requests(ecs_settings: dict, planned: dict, phase: str, params=None, run_id=None):
            """RunTask arguments of a phase (one per unit for data): ids and non-secret endpoint settings only."""
            return ecs.requests(ecs_settings, params, run_id, planned, phase)

        @task(retries=0, trigger_rule=TriggerRule.NONE_FAILED_MIN_ONE_SUCCESS)
        def wait_for_snapshot(params=None, run_id=None, dag=None):
            """The holder task (started, not awaited) exported the snapshot: found through the target."""
            return ecs.wait_for_snapshot(params, run_id, dag.dag_id)

        @task(pool=run_order.POOL, trigger_rule=TriggerRule.ALL_DONE, retries=1, map_index_template="{{ group_label }}")
        def validate(group: dict, params=None, run_id=None):
            """One validation group (plan): its schemas one after another, each recorded on its own."""
            get_current_context()["group_label"] = group["label"]
            tasks.validate_group(params, run_id, group)

        @task(retries=1)
        def ownership(params=None, run_id=None):
            """Hand every object to its source owner where the target role may (param `ownership`): last,
            after load and validation (loading needs the target role to own the tables)."""
            return tasks.ownership(params, run_id)

        @task(retries=1)
        def subscribe(params=None, run_id=None):
            """mode replicate: stream every change made since the cut into the target (no copy), then
            wait for it to catch up and record the lag. A retry re-attaches (subscribing is idempotent)."""
            subscription = repl.subscribe(params, run_id)
            if subscription is None:
                return None
            return {"subscription": subscription, "lag": repl.report_lag(params, run_id)}

        @task(trigger_rule=TriggerRule.ALL_DONE, retries=1)
        def cleanup_replication(params=None, run_id=None):
            """mode replicate: a run that is not streaming leaves no slot, publication or subscription."""
            return repl.cleanup_replication(params, run_id)

        @task(trigger_rule=TriggerRule.ALL_DONE, retries=0)
        def report(params=None, run_id=None, dag=None, ti=None):
            return tasks.report(params, run_id, dag.dag_id, ti)

        @task(trigger_rule=TriggerRule.ALL_DONE, retries=0)
        def cleanup(params=None, run_id=None, dag=None):
            """Release the snapshot and the target's guard, whatever happened."""
            return tasks.cleanup(params, run_id, dag.dag_id)

        @task(trigger_rule=TriggerRule.ALL_DONE, retries=0)
        def verdict(summary: dict | None = None, cleaned: dict | None = None):
            """Fails the run if the report says so, or if the cleanup task failed (nothing returned)."""
            tasks.verdict(summary, cleaned)

        inventory = discover()
        findings = preflight(inventory)
        replication_ok = check_replication(inventory)
        groups = plan(inventory, findings)
        planned = groups[tasks.PLANNED_KEY]
        runner = choose_runner()
        held = snapshot()
        pre = pre_data(planned)
        units = migrate_unit.expand(unit=pre)
        lobs = large_objects()
        released = release_snapshot()
        post = post_data()
        with TaskGroup("ecs", tooltip="runner ecs: the worker's phases as Fargate tasks"):
            on_ecs = settings()

            def fargate(task_id: str, phase: str, **kwargs):
                """The phase's EcsRunTaskOperator task(s), mapped over the RunTask arguments built upstream."""
                asked = requests.override(task_id=f"{task_id}_requests")(on_ecs, planned, phase)
                return ecs.worker_task(task_id, **kwargs).expand_kwargs(asked)

            holder = fargate("start_snapshot_holder", "snapshot", wait=False)
            held_on_ecs = wait_for_snapshot()
            pre_on_ecs = fargate("pre_data", "pre-data")
            units_on_ecs = fargate("migrate_unit", "data")
            lobs_on_ecs = fargate("large_objects", "large-objects")
            post_on_ecs = fargate("post_data", "post-data")
        checks = validate.expand(group=groups)
        owners = ownership()
        streaming = subscribe()
        replication_done = cleanup_replication()
        summary = report()
        done = cleanup()
        final = verdict(summary, done)

        # The source checks and the runner's choice side by side (the branch needs only the params: it is
        # off the critical path, and its skips wait for the plan like its chosen path does).
        chain([findings, replication_ok], groups)
        chain(inventory, runner)
        # Large objects load beside the data units (same pool); the snapshot is released beside post-data.
        chain([groups, runner], held, pre, [units, lobs], post, checks)
        chain([units, lobs], released, checks)
        # The report and the cleanup (snapshot, guard) side by side; the verdict judges both.
        chain(checks, owners, streaming, replication_done, [summary, done], final)
        chain([groups, runner], on_ecs)
        chain(on_ecs, holder, held_on_ecs, pre_on_ecs, [units_on_ecs, lobs_on_ecs], post_on_ecs, checks)
        chain([units_on_ecs, lobs_on_ecs], released)
        chain(on_ecs, held_on_ecs)

    return migration()


# A task process parses this file for its own DAG only (Airflow's parsing context): it builds just
# that one; the dag-processor (no context) builds both.
_parsing_for = get_parsing_context().dag_id

if _parsing_for in (None, run_order.RUN_DAG_ID):
    pg_migration = build_migration_dag(run_order.RUN_DAG_ID)

# The weekend rehearsal: the same DAG, every Saturday 01:00 ($PG_MIGRATION_REHEARSAL_CRON/_TZ), against
# the rehearsal target. Deployed paused: with catchup=False, unpausing starts the last missed Saturday
# at once, so unpausing is a decision (docs/operations.md, "Running a rehearsal").
if _parsing_for in (None, run_order.REHEARSAL_DAG_ID):
    pg_migration_rehearsal = build_migration_dag(
        run_order.REHEARSAL_DAG_ID,
        schedule=rehearsal.rehearsal_timetable(),
        target_conn_id=rehearsal.rehearsal_target_conn_id(),
        runner=rehearsal.rehearsal_runner(),
        doc_md=rehearsal.DOC,
        tags=("pg-migration", "rehearsal"),
        is_paused_upon_creation=True,
    )
