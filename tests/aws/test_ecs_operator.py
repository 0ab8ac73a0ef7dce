"""The DAG's ECS tasks against in-process moto: what RunTask carries, how exits and retries behave.

Operators are built exactly as the scheduler builds a mapped instance: the DAG's ``ecs.*`` mapped
operator, unmapped with the kwargs that ``ecs.requests`` produced (what ``.expand_kwargs`` feeds it).
They defer (``deferrable=True``); the trigger's success event is then handed to ``execute_complete``,
as the triggerer does (the trigger itself runs in test_ecs_dag.py, against ThreadedMotoServer).
"""

from __future__ import annotations

import json
import logging
import threading
import uuid
from unittest import mock

import pytest
from airflow.providers.amazon.aws.utils.identifiers import generate_uuid
from airflow.sdk.exceptions import AirflowException, AirflowFailException, TaskDeferred

from tests.aws.conftest import SOURCE_PW, TARGET_PW
from tests.aws.fakes import FakeFargate, scripted

UNIT = {"unit_id": "sales#2", "label": "sales [2/3]", "schema": "sales", "tables": ["orders"], "bytes": 1}


@pytest.fixture(scope="module")
def dag():
    import pg_migration_dag

    return pg_migration_dag.pg_migration


@pytest.fixture
def run():
    """A run id of its own per test (the moto backend lives as long as the module)."""
    return f"manual__{uuid.uuid4().hex[:12]}"


@pytest.fixture
def params(dag):
    values = dag.params.dump()
    values.update(runner="ecs", consistent=False)
    return values


@pytest.fixture
def no_target_check(monkeypatch):
    """These tests have no target database: the after-success record check is tested with one below."""
    from pg_migration_support.ecs import FargateWorkerOperator

    monkeypatch.setattr(FargateWorkerOperator, "_check_recorded", lambda self: None)


def build(dag, params, run, task_id="ecs.migrate_unit", phase="data", unit=UNIT):
    """The mapped instance the scheduler would run, and its ``.expand_kwargs`` input."""
    from pg_migration_support import ecs

    settings = ecs.resolve(params).to_dict()
    kwargs = ecs.requests(settings, params, run, {"units": [unit]}, phase)
    return dag.get_task(task_id).unmap(kwargs[0]), kwargs


def context(op, params, run, map_index=0):
    ti = mock.MagicMock(dag_id="pg_migration", task_id=op.task_id, run_id=run, map_index=map_index)
    return {"ti": ti, "params": params, "run_id": run}


class Calls:
    """ECS API calls as sent: api params (for assertions) and serialized requests (for leak checks)."""

    def __init__(self, client):
        self.api: list[tuple[str, dict]] = []
        self.wire: list[str] = []
        client.meta.events.register("provide-client-params.ecs.*", self._api)
        client.meta.events.register("before-call.ecs.*", self._wire)

    def _api(self, params, model, **_):
        self.api.append((model.name, json.loads(json.dumps(params, default=str))))

    def _wire(self, params, model, **_):
        self.wire.append(json.dumps(params, default=str))

    def of(self, name):
        return [p for n, p in self.api if n == name]


def start(op, ctx):
    calls = Calls(op.client)
    with pytest.raises(TaskDeferred) as deferred:
        op.execute(ctx)
    return calls, deferred.value.trigger


def finish(op, ctx, trigger):
    return op.execute_complete(ctx, {"status": "success", "task_arn": trigger.task_arn, "cluster": trigger.cluster})


def test_run_task_carries_the_unit_and_no_password(dag, run, params, stack, fargate, no_target_check, caplog):
    caplog.set_level(logging.DEBUG)
    fargate.program = scripted(0, "unit sales#2: 1 table(s) copied")
    op, kwargs = build(dag, params, run)
    ctx = context(op, params, run)
    calls, trigger = start(op, ctx)
    finish(op, ctx, trigger)

    (run_task,) = calls.of("RunTask")
    env = {e["name"]: e["value"] for e in run_task["overrides"]["containerOverrides"][0]["environment"]}
    assert env["PGMIG_PHASE"] == "data" and env["PGMIG_UNIT_ID"] == "sales#2" and env["PGMIG_RUN_ID"] == run
    assert env["PGMIG_SOURCE_HOST"] == "db.source.example" and env["PGMIG_TARGET_USER"] == "aurora_admin"
    assert not [k for k in env if "PASSWORD" in k]
    assert run_task["overrides"]["containerOverrides"][0]["name"] == stack.env["PG_MIGRATION_ECS_CONTAINER"]
    assert run_task["launchType"] == "FARGATE" and run_task["platformVersion"] == "LATEST"
    assert run_task["cluster"] == stack.env["PG_MIGRATION_ECS_CLUSTER"]
    assert run_task["taskDefinition"] == stack.env["PG_MIGRATION_ECS_TASK_DEFINITION"]
    assert run_task["networkConfiguration"] == {
        "awsvpcConfiguration": {
            "subnets": stack.env["PG_MIGRATION_ECS_SUBNETS"].split(","),
            "securityGroups": [stack.env["PG_MIGRATION_ECS_SECURITY_GROUPS"]],
            "assignPublicIp": "DISABLED",
        }
    }
    # reattach: a deterministic startedBy per (dag, task, run, map index), the same for every try
    assert run_task["startedBy"] == generate_uuid("pg_migration", "ecs.migrate_unit", run, "0")
    assert calls.of("ListTasks")[0]["startedBy"] == run_task["startedBy"]
    # logs: the trigger tails the stream the awslogs driver writes for this container
    assert (op.awslogs_group, op.awslogs_stream_prefix, op.container_name) == (
        stack.env["PG_MIGRATION_ECS_LOG_GROUP"],
        stack.env["PG_MIGRATION_ECS_LOG_STREAM_PREFIX"],
        stack.env["PG_MIGRATION_ECS_CONTAINER"],
    )
    task_id = trigger.task_arn.rsplit("/", 1)[-1]
    assert trigger.log_group == op.awslogs_group
    assert trigger.log_stream == f"pg-migration/pg-migration-worker/{task_id}"
    # the container got its passwords from the task definition's secrets, and only there
    (container,) = fargate.runs
    assert container.env["PGMIG_SOURCE_PASSWORD"] == SOURCE_PW and container.env["PGMIG_TARGET_PASSWORD"] == TARGET_PW
    assert set(env.items()) <= set(container.env.items())
    # the mapped instance shows the unit's label
    from jinja2 import Template

    assert Template(op.map_index_template).render(task=op) == "sales [2/3]"
    # no password in any request, in the XCom the overrides travel through, or in any log line
    for text in [*calls.wire, json.dumps(kwargs), caplog.text]:
        assert SOURCE_PW not in text and TARGET_PW not in text


@pytest.mark.parametrize("phase,task_id", [("pre-data", "ecs.pre_data"), ("post-data", "ecs.post_data")])
def test_phases_run_the_same_worker(dag, run, params, stack, fargate, no_target_check, phase, task_id):
    fargate.program = scripted(0)
    op, _ = build(dag, params, run, task_id=task_id, phase=phase)
    ctx = context(op, params, run)
    calls, trigger = start(op, ctx)
    finish(op, ctx, trigger)
    (container,) = fargate.runs
    assert container.phase == phase and container.unit_id is None and container.launch_type == "FARGATE"
    assert op.pool == "pg_migration" and op.deferrable and op.reattach


def test_nonzero_exit_fails_the_unit_with_the_workers_words(dag, run, params, stack, fargate, no_target_check):
    fargate.program = scripted(1, "copying sales.orders", "pg-migration: unit sales#2: COPY sales.orders: disk full")
    op, _ = build(dag, params, run)
    ctx = context(op, params, run)
    _, trigger = start(op, ctx)
    with pytest.raises(AirflowException) as failed:
        finish(op, ctx, trigger)
    message = str(failed.value)
    assert "exit code 1 (the unit failed)" in message
    assert "COPY sales.orders: disk full" in message and "copying sales.orders" in message
    # an ordinary failure: Airflow retries it (3 times, like the local runner's units)
    assert not isinstance(failed.value, AirflowFailException)
    assert op.retries == dag.get_task("migrate_unit").retries == 3


def test_a_task_that_never_started_is_not_a_success(dag, run, params, stack, fargate, no_target_check):
    fargate.program = scripted(None)
    op, _ = build(dag, params, run)
    ctx = context(op, params, run)
    _, trigger = start(op, ctx)
    with pytest.raises(AirflowException, match="CannotPullContainerError"):
        finish(op, ctx, trigger)


def test_a_retry_reattaches_to_its_running_task(dag, run, params, stack, monkeypatch, no_target_check):
    release = threading.Event()

    def slow(env, emit):
        release.wait(30)
        return 0

    fargate = FakeFargate(slow).install(monkeypatch)
    try:
        first, _ = build(dag, params, run)
        _, trigger1 = start(first, context(first, params, run))
        # the Airflow worker died; the retry (a new operator instance, same map index) finds the task
        retry, _ = build(dag, params, run)
        calls, trigger2 = start(retry, context(retry, params, run))
        assert trigger2.task_arn == trigger1.task_arn and not calls.of("RunTask")
        assert len(fargate.runs) == 1
        release.set()
        fargate.wait()
        finish(retry, context(retry, params, run), trigger2)
    finally:
        release.set()
        FakeFargate.kill_all()


def test_a_retry_adopts_a_finished_success_but_reruns_a_failure(dag, run, params, stack, fargate, no_target_check):
    fargate.program = scripted(0)
    first, _ = build(dag, params, run)
    _, trigger1 = start(first, context(first, params, run))  # finished while Airflow lost track of it
    retry, _ = build(dag, params, run)
    calls, trigger2 = start(retry, context(retry, params, run))
    assert trigger2.task_arn == trigger1.task_arn and not calls.of("RunTask")
    finish(retry, context(retry, params, run), trigger2)

    other = dict(UNIT, unit_id="sales#3", label="sales [3/3]")
    fargate.program = scripted(1, "pg-migration: boom")
    failed, _ = build(dag, params, run, unit=other)
    start(failed, context(failed, params, run, map_index=1))
    fargate.program = scripted(0)
    retry, _ = build(dag, params, run, unit=other)
    calls, trigger = start(retry, context(retry, params, run, map_index=1))
    assert len(calls.of("RunTask")) == 1 and trigger.task_arn != fargate.runs[-2].task_arn
    finish(retry, context(retry, params, run, map_index=1), trigger)


def test_exit_0_counts_only_when_the_target_records_the_unit(dag, run, params, stack, fargate, pair, monkeypatch):
    """ECS success is not enough: the worker records its unit as done on the target last."""
    from include.pg_migration import state

    for k, v in pair.airflow_env().items():
        monkeypatch.setenv(k, v)
    with pair.target.connect(autocommit=True) as conn:
        state.ensure(conn)
        state.start_run(conn, run, "pg_migration", {}, consistent=False)
        state.save_units(conn, run, [UNIT])
    fargate.program = scripted(0)  # "succeeds" without doing anything
    op, _ = build(dag, params, run)
    ctx = context(op, params, run)
    _, trigger = start(op, ctx)
    with pytest.raises(AirflowException, match="exited 0 but the target records status"):
        finish(op, ctx, trigger)
    with pair.target.connect(autocommit=True) as conn:
        state.unit_finished(conn, run, UNIT["unit_id"], "done", 1.0)
    finish(op, ctx, trigger)


def test_the_snapshot_holder_is_started_not_awaited(dag, run, stack, fargate, monkeypatch):
    from pg_migration_support import ecs

    monkeypatch.setattr(ecs.FargateWorkerOperator, "_run_has_a_cut", lambda self, run_id: False)

    values = dag.params.dump()
    values.update(runner="ecs", consistent=True)
    fargate.program = scripted(0)
    settings = ecs.resolve(values).to_dict()
    (kwargs,) = ecs.requests(settings, values, run, {"units": []}, "snapshot")
    op = dag.get_task("ecs.start_snapshot_holder").unmap(kwargs)
    assert not op.deferrable and not op.wait_for_completion and op.reattach and op.pool != "pg_migration"
    assert op.awslogs_group is None  # nothing to tail: it runs until release_snapshot
    calls = Calls(op.client)
    op.execute(context(op, values, run))
    (run_task,) = calls.of("RunTask")
    assert run_task["startedBy"] == ecs.holder_started_by("pg_migration", run)
    assert fargate.runs[0].phase == "snapshot"
    assert ecs.requests(settings, dict(values, consistent=False), run, {"units": []}, "snapshot") == []


def test_a_rerun_holder_start_never_replaces_the_runs_cut(dag, run, stack, fargate, pair, monkeypatch):
    from pg_migration_support import ecs

    from include.pg_migration import state
    from include.pg_migration.errors import SnapshotLost

    for k, v in pair.airflow_env().items():
        monkeypatch.setenv(k, v)
    values = dict(dag.params.dump(), runner="ecs", consistent=True)
    (kwargs,) = ecs.requests(ecs.resolve(values).to_dict(), values, run, {"units": []}, "snapshot")
    op = dag.get_task("ecs.start_snapshot_holder").unmap(kwargs)
    with pair.target.connect(autocommit=True) as conn:
        state.ensure(conn)
        state.start_run(conn, run, "pg_migration", {}, consistent=True)
        conn.execute(
            state.q("UPDATE {s}.runs SET snapshot_id = 'cut-1', holder_heartbeat = now() WHERE run_id = %s"), (run,)
        )
    op.execute(context(op, values, run))  # the cut is held: no second holder
    assert fargate.runs == []
    with pair.target.connect(autocommit=True) as conn:
        state.set_run(conn, run, snapshot_released_at=conn.execute("SELECT now()").fetchone()[0])
    with pytest.raises(SnapshotLost, match="would mix two cuts"):
        op.execute(context(op, values, run))
    assert fargate.runs == []
