"""
# pg_migration_cutover: go live on the target that `pg_migration` (mode `replicate`) keeps in sync

Run it in the downtime window, after the applications stopped writing to the source. It needs no
params but the two connections: it finds the replication streaming into the target (recorded
there by the replicate run). Reads top to bottom:

1. **begin**: find the replication, hold the target's guard; with `read_only_source` the source
   database is made read-only (`default_transaction_read_only`, its client sessions ended); the
   schemas' validation groups (step 6) are made here.
2. **stop_writes**: no transaction holds a transaction id in the source database (no prepared
   one either); waits up to `writes_timeout_s`, naming the sessions still writing.
3. **catch_up**: the subscription applies everything up to that point (lag zero); the lag is
   logged while it waits, up to `lag_timeout_s`.
4. **confirm_quiet**: a quiet window of `quiet_seconds` in which no transaction of the source
   database is decoded from the WAL (database-scoped "WAL position still"); writes seen: the
   window restarts, until `writes_timeout_s`. "Writes stopped" = the start of the quiet window.
5. **sequences** (not carried by logical replication), **large_objects** (re-copied if changed),
   **matviews** (refreshed).
6. **validate** (mapped per validation group, pool `pg_migration`: the schemas in at most
   2 x `pool_size` groups of about equal size, as the replicate run planned them; each group's
   schemas one after another): exact live counts (`ONLY`), checksums when `validation` is
   `checksums`, the structure inventory (DDL made on the source after the cut fails here, by
   name), sequences.
7. **finish**: every schema equal: record "validated", drop the subscription, the slot and the
   publication, restore replica identities. Otherwise nothing is dropped: fix and re-run, or
   call it off with `pg_migration_abort`.
8. **release** (whatever happened: the guard; a cut-over that did not finish makes the source
   writable again and leaves the replication streaming), **report** (`report.json` + `report.md`;
   **downtime = writes stopped -> validated**), **verdict**.

Fallback: until the applications move, the source is the system of record and untouched by the
migration (beyond the slot and publication, which `pg_migration_abort` drops).
"""

from __future__ import annotations

import datetime as dt
import os

import pendulum
from airflow.sdk import TriggerRule, chain, dag, get_current_context, task
from pg_migration_support import replicate_tasks as rep
from pg_migration_support import tasks
from pg_migration_support.params import cutover_params
from pg_migration_support.tasks import run_order

DEFAULT_ARGS = {
    "owner": "data-platform",
    # Every step is idempotent; one retry rides out a dropped connection. The window is short: no long backoff.
    "retries": int(os.environ.get("PG_MIGRATION_CUTOVER_RETRIES", "1")),
    "retry_delay": dt.timedelta(seconds=float(os.environ.get("PG_MIGRATION_RETRY_DELAY_S", "10"))),
}


@dag(
    dag_id=run_order.CUTOVER_DAG_ID,
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    params=cutover_params(),
    default_args=DEFAULT_ARGS,
    doc_md=__doc__,
    tags=["pg-migration"],
)
def pg_migration_cutover():
    @task(retries=0)
    def begin(params=None, run_id=None, dag=None, ti=None):
        """Find the streaming replication, hold the guard, optionally make the source read-only.
        Returns the validation groups (what `validate` maps over); what was found is XCom `begun`."""
        begun = rep.cutover_begin(params, run_id, dag.dag_id)
        ti.xcom_push(key="begun", value=begun)
        return rep.cutover_validation_groups(params, begun)

    @task
    def stop_writes(params=None, run_id=None):
        """No write transaction in the source database ("writes stopped" and its WAL position)."""
        return rep.cutover_stop_writes(params, run_id)

    @task
    def catch_up(params=None, run_id=None):
        """Lag zero: the target applied everything up to "writes stopped" (logs the lag meanwhile)."""
        return rep.cutover_catch_up(params, run_id)

    @task
    def confirm_quiet(params=None, run_id=None):
        """A quiet window: no transaction of the source database committed; target caught up."""
        return rep.cutover_confirm_quiet(params, run_id)

    @task
    def sequences(params=None, run_id=None):
        """Set every sequence on the target from the source (logical replication does not carry them)."""
        return rep.cutover_sequences(params, run_id)

    @task
    def large_objects(params=None, run_id=None):
        """Re-copy large objects whose content changed (they are not replicated)."""
        return rep.cutover_large_objects(params, run_id)

    @task
    def matviews(params=None, run_id=None):
        """Refresh materialized views on the target (their data is not replicated)."""
        return rep.cutover_matviews(params, run_id)

    @task(pool=run_order.POOL, map_index_template="{{ group_label }}")
    def validate(group: dict, params=None, run_id=None):
        """One validation group: its schemas one after another, each recorded on its own."""
        get_current_context()["group_label"] = group["label"]
        return rep.cutover_validate_group(params, run_id, group)

    @task
    def finish(params=None, run_id=None):
        """Every schema equal: "validated"; drop subscription, slot, publication. Else keep them and fail."""
        return rep.cutover_finish(params, run_id)

    @task(trigger_rule=TriggerRule.ALL_DONE, retries=0)
    def report(params=None, run_id=None, dag=None, ti=None):
        return rep.cutover_report(params, run_id, dag.dag_id, ti)

    @task(trigger_rule=TriggerRule.ALL_DONE, retries=0)
    def release(params=None, run_id=None):
        """Release the guard; an unfinished cut-over gives the source back (read-only reset)."""
        rep.cutover_release(params, run_id)

    @task(trigger_rule=TriggerRule.ALL_DONE, retries=0)
    def verdict(summary: dict | None = None):
        tasks.verdict(summary)

    groups = begin()
    checks = validate.expand(group=groups)
    summary = report()
    chain(
        groups,
        stop_writes(),
        catch_up(),
        confirm_quiet(),
        sequences(),
        large_objects(),
        matviews(),
        checks,
        finish(),
        release(),
        summary,
        verdict(summary),
    )


pg_migration_cutover()
