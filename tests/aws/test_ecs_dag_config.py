"""How the DAG declares its ECS tasks: same pool, retries and worker as the local runner, and a pool
that still caps while they are deferred.

The cap is asserted at unit level (a scheduler + triggerer run with many deferred Fargate tasks takes
minutes): the ECS tasks are deferrable and in pool ``pg_migration``; Airflow counts DEFERRED task
instances as occupying a pool only when the pool has ``include_deferred``; the pool that bin/airflow
creates (and pools.json, which deployments import) has it.
"""

from __future__ import annotations

import json
import subprocess

import pytest
from airflow.models.pool import Pool
from airflow.utils.state import TaskInstanceState

from tests.aws.conftest import REPO

ECS_TASKS = ("ecs.pre_data", "ecs.migrate_unit", "ecs.large_objects", "ecs.post_data")


@pytest.fixture(scope="module")
def dag():
    import pg_migration_dag

    return pg_migration_dag.pg_migration


@pytest.mark.parametrize("task_id", ECS_TASKS)
def test_ecs_tasks_are_deferrable_fargate_tasks_in_the_pool(dag, task_id):
    from pg_migration_support.ecs import FargateWorkerOperator

    from include.pg_migration.run_order import POOL

    mapped = dag.get_task(task_id)
    kw = mapped.partial_kwargs
    assert mapped.operator_class is FargateWorkerOperator
    assert kw["pool"] == POOL and kw["deferrable"] is True and kw["reattach"] is True
    assert kw["launch_type"] == "FARGATE" and kw["platform_version"] == "LATEST"
    assert kw["map_index_template"] == "{{ task.unit_label }}"
    local = dag.get_task(task_id.removeprefix("ecs."))
    for attr in ("retries", "retry_delay", "max_retry_delay"):
        assert getattr(mapped, attr) == getattr(local, attr), attr  # same retries as the local runner
    # backoff on for both (a plain operator keeps True, a mapped one holds the multiplier 2.0)
    assert mapped.retry_exponential_backoff in (True, 2.0) and local.retry_exponential_backoff in (True, 2.0)
    assert local.pool == POOL


def test_the_snapshot_holder_runs_outside_the_pool_and_is_not_awaited(dag):
    holder = dag.get_task("ecs.start_snapshot_holder")
    kw = holder.partial_kwargs
    assert holder.pool != "pg_migration" and kw["deferrable"] is False and kw["wait_for_completion"] is False
    assert holder.retries == dag.get_task("snapshot").retries == 0
    assert dag.get_task("ecs.wait_for_snapshot").upstream_task_ids == {"ecs.settings", "ecs.start_snapshot_holder"}


def test_the_branch_leads_to_both_paths(dag):
    runner = dag.get_task("choose_runner")
    assert runner.upstream_task_ids == {"discover"}  # one branch: the runner's path, or none
    assert runner.downstream_task_ids == {"snapshot", "ecs.settings"}
    assert dag.get_task("ecs.settings").upstream_task_ids == {"plan", "choose_runner"}  # after the plan
    assert {"ecs.post_data", "post_data"} <= dag.get_task("validate").upstream_task_ids
    assert {"ecs.large_objects", "large_objects"} <= dag.get_task("release_snapshot").upstream_task_ids
    assert {"plan", "ecs.settings"} <= dag.get_task("ecs.migrate_unit_requests").upstream_task_ids


@pytest.mark.parametrize(
    ("runner", "dry_run", "validate_only", "branch"),
    [
        ("local", False, False, "snapshot"),
        ("ecs", False, False, "ecs.settings"),
        ("local", True, False, []),
        ("ecs", False, True, []),
    ],
)
def test_the_branch_copies_nothing_in_dry_and_validate_only_runs(dag, runner, dry_run, validate_only, branch):
    params = {"runner": runner, "dry_run": dry_run, "validate_only": validate_only}
    assert dag.get_task("choose_runner").python_callable(params=params) == branch


def test_deferred_tasks_occupy_the_pool_only_with_include_deferred():
    assert TaskInstanceState.DEFERRED in Pool(pool="p", slots=4, include_deferred=True).get_occupied_states()
    assert TaskInstanceState.DEFERRED not in Pool(pool="p", slots=4, include_deferred=False).get_occupied_states()
    pools = json.loads((REPO / "pools.json").read_text())
    assert pools["pg_migration"]["include_deferred"] is True


def test_bin_airflow_creates_the_pool_with_include_deferred(airflow_home):
    from tests.conftest import _airflow_env

    out = subprocess.run(
        [str(REPO / "bin" / "airflow"), "pools", "get", "pg_migration", "-o", "json"],
        env=_airflow_env(airflow_home, {}),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    (pool,) = json.loads(out.stdout)
    assert str(pool["include_deferred"]).lower() == "true", pool
