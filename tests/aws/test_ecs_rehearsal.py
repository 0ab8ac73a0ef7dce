"""The weekend rehearsal on the production path: runner ``ecs`` (its default once the ECS runner is
configured), its own task definition and target secret, never the go-live target.

* unit level: the rehearsal's runner and target from the environment; pre-flight refuses a rehearsal
  target that is the go-live target, and a rehearsal task definition that maps the go-live secret;
* end to end (slow: ``make test-slow``; moto server + the fake Fargate of tests/aws/fakes.py, which
  runs the real worker with the environment ECS would give it): ``pg_migration_rehearsal`` with no
  conf migrates the demo warehouse into the rehearsal target through the stack's rehearsal task
  definition, the go-live target stays untouched, and the report has go-live's schema and phases.
"""

from __future__ import annotations

import time

import pytest

from include.pg_migration.conn import Endpoint
from include.pg_migration.errors import ConfigError
from include.pg_migration.reports import schema as rpt
from scripts import localpg
from tests.aws.conftest import SOURCE_PW, TARGET_PW, aws_conn, clients, deploy_stack
from tests.aws.fakes import FakeFargate
from tests.conftest import _unique, assert_equal_data, create_db

#: What every ECS run's report records under ``phases`` (go-live's too: tests/aws/test_ecs_dag.py).
REPORT_PHASES = {"pre-data", "large-objects", "post-data", "ownership"}
ECS_ENV = {
    "PG_MIGRATION_ECS_CLUSTER": "c",
    "PG_MIGRATION_ECS_TASK_DEFINITION": "pg-migration-worker",
    "PG_MIGRATION_ECS_SUBNETS": "subnet-a",
}
GOLIVE = Endpoint("aurora.cluster.example", 5432, "warehouse", "aurora_admin", TARGET_PW, label="go-live target")
SOURCE = Endpoint("db.source.example", 5432, "warehouse", "postgres", SOURCE_PW, label="source")
REHEARSAL = Endpoint("aurora-rehearsal.cluster.example", 5432, "warehouse", "aurora_admin", "RhPw-1", label="target")


def test_rehearsal_runner_and_target_from_the_environment():
    from pg_migration_support import rehearsal

    assert rehearsal.rehearsal_runner({}) == "local"
    assert rehearsal.rehearsal_runner(ECS_ENV) == "ecs"  # configured ECS runner: rehearse it
    assert rehearsal.rehearsal_runner({**ECS_ENV, "PG_MIGRATION_ECS_SUBNETS": " "}) == "local"
    assert rehearsal.rehearsal_runner({**ECS_ENV, "PG_MIGRATION_REHEARSAL_RUNNER": "local"}) == "local"
    assert rehearsal.rehearsal_runner({"PG_MIGRATION_REHEARSAL_RUNNER": "ECS"}) == "ecs"
    with pytest.raises(ValueError, match="PG_MIGRATION_REHEARSAL_RUNNER='fargate'"):
        rehearsal.rehearsal_runner({"PG_MIGRATION_REHEARSAL_RUNNER": "fargate"})
    assert rehearsal.rehearsal_target_conn_id({}) == "pg_target_rehearsal"
    assert rehearsal.rehearsal_target_conn_id({"PG_MIGRATION_REHEARSAL_TARGET_CONN_ID": "weekend"}) == "weekend"


def test_the_rehearsal_resolves_its_own_task_definition():
    from pg_migration_support import ecs

    env = {**ECS_ENV, "PG_MIGRATION_ECS_REHEARSAL_TASK_DEFINITION": "pg-migration-worker-rehearsal"}
    assert ecs.resolve({}, env).task_definition == "pg-migration-worker"
    assert ecs.resolve({}, env, rehearsal=True).task_definition == "pg-migration-worker-rehearsal"
    with pytest.raises(ConfigError, match=r"rehearsal.*ecs_rehearsal_task_definition"):
        ecs.resolve({}, ECS_ENV, rehearsal=True)


def test_preflight_refuses_the_go_live_target():
    from pg_migration_support import rehearsal

    same = Endpoint("AURORA.cluster.example.", 5432, "warehouse", "other_user", None, label="target")
    assert rehearsal.check_target(same, GOLIVE)["verdict"] == "blocking"
    assert "is the go-live target" in rehearsal.check_target(same, GOLIVE)["detail"]
    assert rehearsal.check_target(REHEARSAL, GOLIVE)["verdict"] == "ok"
    other_db = Endpoint(GOLIVE.host, 5432, "rehearsal", "aurora_admin", None, label="target")
    assert rehearsal.check_target(other_db, GOLIVE)["verdict"] == "ok"
    assert rehearsal.check_target(REHEARSAL, None)["verdict"] == "ok"


def _stack(golive_secret: bool):
    c = clients()
    stack = deploy_stack(
        c, SOURCE.host, 5432, SOURCE.user, SOURCE_PW, GOLIVE.host, 5432, GOLIVE.user, TARGET_PW,
        rehearsal=(REHEARSAL.host, 5432, REHEARSAL.user, "RhPw-1"),
        rehearsal_secret_arn=None,
    )  # fmt: skip
    if golive_secret:  # a rehearsal definition (re)registered with the go-live target's secret
        td = c["ecs"].describe_task_definition(taskDefinition=stack.env["PG_MIGRATION_ECS_REHEARSAL_TASK_DEFINITION"])
        td = td["taskDefinition"]
        for cd in td["containerDefinitions"]:
            for s in cd["secrets"]:
                if s["name"] == "PGMIG_TARGET_PASSWORD":
                    s["valueFrom"] = stack.secrets["target"] + ":password::"
        keep = ("family", "networkMode", "requiresCompatibilities", "cpu", "memory", "executionRoleArn")
        c["ecs"].register_task_definition(
            **{k: td[k] for k in keep}, taskRoleArn=td["taskRoleArn"], containerDefinitions=td["containerDefinitions"]
        )
    return stack


@pytest.mark.parametrize("golive_secret", [False, True], ids=["own-secret", "go-live-secret"])
def test_preflight_checks_the_rehearsal_task_definition(golive_secret, monkeypatch):
    from moto import mock_aws
    from pg_migration_support import ecs_preflight

    from tests.aws.conftest import _aws_env

    with mock_aws():
        _aws_env(monkeypatch)
        stack = _stack(golive_secret)
        for k, v in {**stack.env, "PG_MIGRATION_ECS_POLL_SECONDS": "0"}.items():
            monkeypatch.setenv(k, v)
        findings = {f["check"]: f for f in ecs_preflight.preflight(SOURCE, REHEARSAL, {}, rehearsal=True)}
        golive_findings = {f["check"]: f for f in ecs_preflight.preflight(SOURCE, GOLIVE, {})}
    secret = findings["ecs rehearsal secret"]
    assert secret["verdict"] == ("blocking" if golive_secret else "ok"), secret
    if golive_secret:
        assert "go-live target's password secret" in secret["detail"] and "rds!cluster-aurora" in secret["detail"]
    # checked against the rehearsal connection: the definition names the rehearsal host
    assert findings["ecs target endpoint"]["verdict"] == "ok", findings["ecs target endpoint"]
    assert "pg-migration-worker-rehearsal" in findings["ecs container"]["detail"]
    # and the go-live run keeps its own definition, which names the go-live host
    assert golive_findings["ecs target endpoint"]["verdict"] == "ok"
    assert "ecs rehearsal secret" not in golive_findings
    assert "pg-migration-worker:" in golive_findings["ecs container"]["detail"]


@pytest.mark.slow  # 52-245 s on the shared 2-core machine (a whole DAG run under `dags test`): make test-slow
def test_rehearsal_runs_on_ecs_end_to_end(demo_pair, dag_runner, airflow_home, moto_server, monkeypatch):
    """``pg_migration_rehearsal`` with no conf: runner ecs by default, the rehearsal task definition,
    the rehearsal target; the go-live target untouched; the report as go-live's."""
    url, requests = moto_server
    src, golive, server = demo_pair.source, demo_pair.target, demo_pair.target_server
    rehearsal_db = _unique("rehearsal")
    create_db(server, rehearsal_db, owner=server.admin_user)
    admin = server.admin_user
    try:
        stack = deploy_stack(
            clients(url), src.host, src.port, src.user, src.password,
            golive.host, golive.port, golive.user, golive.password,
            rehearsal=(golive.host, golive.port, admin, golive.password),
        )  # fmt: skip
        fargate = FakeFargate(synchronous=lambda env: env["PGMIG_PHASE"] == "data").install(monkeypatch)
        requests.requests.clear()
        env = {
            **demo_pair.airflow_env(),
            "AIRFLOW_CONN_PG_TARGET_REHEARSAL": server.uri(rehearsal_db, user=admin),
            "AIRFLOW_CONN_AWS_DEFAULT": aws_conn(url),
            **stack.env,
            "PG_MIGRATION_ECS_POLL_SECONDS": "1",
        }
        try:
            started = time.monotonic()
            result = dag_runner("pg_migration_rehearsal", env=env, timeout=600)
            seconds = time.monotonic() - started
            fargate.wait(30)
        finally:
            FakeFargate.kill_all()
            from moto.moto_api import state_manager

            state_manager.unset_transition("ecs::task")
        (airflow_home / "ecs-rehearsal.log").write_text(result.output)
        assert result.state == "success", f"see {airflow_home / 'ecs-rehearsal.log'}\n" + result.output[-4000:]
        report = result.report()
        assert report["verdict"] == "passed" and report["dag_id"] == "pg_migration_rehearsal"
        assert report["params"]["runner"] == "ecs" and report["params"]["target_conn_id"] == "pg_target_rehearsal"
        assert report["target"]["dbname"] == rehearsal_db
        # go-live's schema and phases
        assert report["version"] == rpt.VERSION
        assert set(report) >= {"dag_id", "run_id", "verdict", "params", "source", "target", "snapshot", "plan"}
        assert set(report) >= {"preflight", "schemas", "database", "phases", "failures", "warnings"}
        assert set(report["phases"]) == REPORT_PHASES
        checks = {f["check"]: f["verdict"] for f in report["preflight"]}
        assert checks["rehearsal target"] == "ok" and checks["ecs rehearsal secret"] == "ok"
        assert checks["ecs target endpoint"] == "ok"
        with demo_pair.source_su() as s, server.connect(rehearsal_db, autocommit=True) as t:
            assert_equal_data(s, t)
        with demo_pair.target_su() as t:  # the go-live target got nothing
            (n,) = t.execute("SELECT count(*) FROM pg_namespace WHERE nspname NOT LIKE 'pg\\_%' AND "
                             "nspname NOT IN ('public', 'information_schema')").fetchone()  # fmt: skip
            assert n == 0
        # every Fargate task ran the rehearsal definition, with the rehearsal's secret
        rehearsal_family = stack.env["PG_MIGRATION_ECS_REHEARSAL_TASK_DEFINITION"]
        bodies = requests.bodies("RunTask")
        assert bodies and {b["taskDefinition"] for b in bodies} == {rehearsal_family}
        assert {r.phase for r in fargate.runs} == {"snapshot", "pre-data", "data", "large-objects", "post-data"}
        assert all(r.exit_code == 0 for r in fargate.runs)
        print(f"rehearsal on ecs end to end: {seconds:.1f}s, {len(fargate.runs)} Fargate task(s)")
    finally:
        localpg.drop_database(server, rehearsal_db)
