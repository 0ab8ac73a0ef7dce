"""End to end: the whole pg_migration DAG with ``runner: "ecs"`` migrates the demo warehouse.

``bin/airflow dags test`` runs the DAG against a ThreadedMotoServer in this process (the deferrable
trigger talks to it through aiobotocore), into which the stack of include/aws/pg-migration.yaml is
deployed, with the two database passwords in its Secrets Manager. Every RunTask starts a fake Fargate
container (tests/aws/fakes.py) that runs the real worker with the environment ECS would give it:
task-definition environment + RunTask overrides + the secrets the definition names. So whatever a
unit needs and the overrides do not carry, the migration fails. One data unit's first container exits
1: the unit fails, is retried by Airflow, and the run still validates equal.
"""

from __future__ import annotations

import re
import sqlite3
import time

from tests.aws.conftest import aws_conn, clients, deploy_stack
from tests.aws.fakes import FakeFargate, run_worker
from tests.aws.test_ecs_rehearsal import REPORT_PHASES
from tests.conftest import assert_equal_data


def test_runner_ecs_migrates_the_demo_warehouse(demo_pair, dag_runner, airflow_home, moto_server, monkeypatch):
    url, requests = moto_server
    src, tgt = demo_pair.source, demo_pair.target
    stack = deploy_stack(clients(url), src.host, src.port, src.user, src.password,
                         tgt.host, tgt.port, tgt.user, tgt.password)  # fmt: skip

    failed_once: list[str] = []

    def container(env, emit):
        if env.get("PGMIG_PHASE") == "data" and not failed_once:
            failed_once.append(env["PGMIG_UNIT_ID"])
            emit(f"pg-migration: unit {env['PGMIG_UNIT_ID']}: injected container failure (test)")
            return 1
        return run_worker(env, emit)

    # data units finish inside RunTask (fast); the other phases run while their task is RUNNING,
    # so the deferred trigger polls them until STOPPED
    fargate = FakeFargate(container, synchronous=lambda env: env["PGMIG_PHASE"] == "data").install(monkeypatch)
    requests.requests.clear()  # from here on: only what Airflow sends
    env = {
        **demo_pair.airflow_env(),
        "AIRFLOW_CONN_AWS_DEFAULT": aws_conn(url),
        **stack.env,
        "PG_MIGRATION_ECS_POLL_SECONDS": "1",
        "PG_MIGRATION_RETRY_DELAY_S": "1",  # the DAG's retry delay (parse time): the retry comes fast
    }
    try:
        started = time.monotonic()
        result = dag_runner(conf={"runner": "ecs"}, env=env, timeout=600)
        seconds = time.monotonic() - started
        fargate.wait(30)
    finally:
        FakeFargate.kill_all()
        from moto.moto_api import state_manager

        state_manager.unset_transition("ecs::task")

    (airflow_home / "ecs-end-to-end.log").write_text(result.output)
    assert result.state == "success", f"see {airflow_home / 'ecs-end-to-end.log'}\n" + result.output[-4000:]
    assert result.report()["verdict"] == "passed"
    assert set(result.report()["phases"]) == REPORT_PHASES  # what the ECS rehearsal's report shows too
    with demo_pair.source_su() as s, demo_pair.target_su() as t:
        assert_equal_data(s, t)
    assert "[DAG TEST] running trigger in line" in result.output  # the deferrable path ran

    # every phase ran as a Fargate task of the worker; the failed unit ran twice, same startedBy
    phases = [r.phase for r in fargate.runs]
    assert phases.count("snapshot") == phases.count("pre-data") == phases.count("post-data") == 1
    assert phases.count("large-objects") == 1
    units = [r for r in fargate.runs if r.phase == "data"]
    (flaky,) = failed_once
    attempts = [r for r in units if r.unit_id == flaky]
    assert [r.exit_code for r in attempts] == [1, 0] and len({r.started_by for r in attempts}) == 1
    assert all(r.exit_code == 0 for r in fargate.runs if r not in attempts[:1]), [
        (r.phase, r.unit_id, r.exit_code, r.log[-3:]) for r in fargate.runs
    ]
    planned = result.report().get("plan") or {}
    assert planned.get("units"), f"the report has no planned units: {sorted(planned)}"
    assert {u["unit_id"] for u in planned["units"]} == {r.unit_id for r in units}

    # what reached ECS: FARGATE, the network, reattach ids, the unit -- and no password anywhere
    run_tasks = requests.bodies("RunTask")
    assert len(run_tasks) == len(fargate.runs)
    for body in run_tasks:
        assert body["launchType"] == "FARGATE" and body["platformVersion"] == "LATEST"
        assert body["networkConfiguration"]["awsvpcConfiguration"]["subnets"] == [stack.env["PG_MIGRATION_ECS_SUBNETS"]]
        assert body["startedBy"] and body["cluster"] == stack.env["PG_MIGRATION_ECS_CLUSTER"]
        names = {e["name"] for e in body["overrides"]["containerOverrides"][0]["environment"]}
        assert {"PGMIG_PHASE", "PGMIG_RUN_ID", "PGMIG_SOURCE_HOST", "PGMIG_TARGET_HOST"} <= names
        assert not [n for n in names if "PASSWORD" in n]
    assert {"AmazonEC2ContainerServiceV20141113.DescribeTaskDefinition", "Logs_20140328.GetLogEvents"} <= set(
        requests.operations()
    )
    passwords = {src.password, tgt.password}
    run_id = re.findall(r"DagRun Finished: .*?run_id=([^,]+),", result.output)[-1]
    db = sqlite3.connect(airflow_home / "airflow.db")
    stored = [str(v) for (v,) in db.execute("SELECT value FROM xcom WHERE run_id = ?", (run_id,))]
    stored += [str(v) for (v,) in db.execute("SELECT rendered_fields FROM rendered_task_instance_fields")]
    labels = {
        v
        for (v,) in db.execute(
            "SELECT rendered_map_index FROM task_instance WHERE run_id = ? AND task_id = 'ecs.migrate_unit'", (run_id,)
        )
    }
    for pw in passwords:  # (messages never show the password itself)
        assert pw not in result.output, "a password is in the Airflow output"
        leaks = [what for what, body in requests.requests if pw.encode() in body]
        assert not leaks, f"a password was sent to AWS in {leaks}"
        assert not any(pw in v for v in stored), "a password is in XCom or rendered fields"
    # the mapped ECS tasks show their unit's label
    assert labels == {u["label"] for u in planned["units"]}, labels
    print(f"runner ecs end to end: {seconds:.1f}s, {len(fargate.runs)} Fargate task(s)")
