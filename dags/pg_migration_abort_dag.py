"""
# pg_migration_abort: call a replicate migration off

Drops what a `pg_migration` run in mode `replicate` created -- the subscription on the target, the
replication slot and the publication on the source -- restores the replica identities it changed
and makes the source database writable again if a cut-over made it read-only. A slot left behind
retains WAL on the source until its disk fills: this is the DAG to run when a replication is no
longer wanted (or a failed run could not drop it itself). The slot's retained WAL is logged before
it goes.

Params: the two connections and, optionally, `replicate_run_id` (empty: every replication recorded
as live on the target). The copied data on the target is left as it is; the source is untouched
otherwise, so the applications simply stay where they are.
"""

from __future__ import annotations

import datetime as dt

import pendulum
from airflow.sdk import TriggerRule, chain, dag, task
from pg_migration_support import replicate_tasks as rep
from pg_migration_support import tasks
from pg_migration_support.params import abort_params
from pg_migration_support.tasks import run_order


@dag(
    dag_id=run_order.ABORT_DAG_ID,
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    params=abort_params(),
    default_args={"owner": "data-platform", "retries": 1, "retry_delay": dt.timedelta(seconds=10)},
    doc_md=__doc__,
    tags=["pg-migration"],
)
def pg_migration_abort():
    @task
    def abort(params=None, run_id=None):
        """Drop subscription, slot and publication; restore replica identity; source writable again."""
        return rep.abort(params, run_id)

    @task(trigger_rule=TriggerRule.ALL_DONE, retries=0)
    def report(result: dict | None = None, params=None, run_id=None, dag=None, ti=None):
        return rep.abort_report(params, run_id, dag.dag_id, ti, result)

    @task(trigger_rule=TriggerRule.ALL_DONE, retries=0)
    def verdict(summary: dict | None = None):
        tasks.verdict(summary)

    result = abort()
    summary = report(result)
    chain(result, summary, verdict(summary))


pg_migration_abort()
