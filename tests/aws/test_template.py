"""include/aws: the CloudFormation template is valid and says what the DAG assumes; the image recipe
holds the worker and nothing Airflow."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
AWS = REPO / "include" / "aws"
TEMPLATE = AWS / "pg-migration.yaml"


@pytest.fixture(scope="module")
def template():
    from cfnlint.decode import decode

    tpl, matches = decode(str(TEMPLATE))
    assert not matches, matches
    return tpl


def _sub_default(tpl, value):
    """``!Sub "...${NamePrefix}..."`` with the parameters' defaults."""
    text = value["Fn::Sub"] if isinstance(value, dict) else value
    for name, p in tpl["Parameters"].items():
        if "Default" in p:
            text = text.replace("${" + name + "}", str(p["Default"]))
    return text


def test_cfn_lint_validates_the_template():
    from cfnlint.api import ManualArgs, lint, lint_file

    assert lint_file(TEMPLATE, config=ManualArgs()) == []
    # and the check bites: a definition that is not awsvpc is an error
    broken = TEMPLATE.read_text().replace("NetworkMode: awsvpc", "NetworkMode: awsvpcx")
    assert [m for m in lint(broken) if "awsvpcx" in str(m)]


def test_task_definition_is_what_the_dag_uses(template):
    from pg_migration_support import ecs

    defaults = {s.name: s.default for s in ecs.SETTINGS}
    td = template["Resources"]["TaskDefinition"]["Properties"]
    assert td["RequiresCompatibilities"] == ["FARGATE"] and td["NetworkMode"] == "awsvpc"
    assert int(template["Parameters"]["TaskCpu"]["Default"]) >= 1024  # 1+ vCPU
    assert int(template["Parameters"]["TaskMemory"]["Default"]) >= 2048
    assert "ExecutionRoleArn" in td and "TaskRoleArn" in td
    (container,) = td["ContainerDefinitions"]
    assert container["Name"] == defaults["container"]  # the DAG's overrides name this container
    # passwords only as secrets, under the names the worker reads; nothing secret in the environment
    assert {s["Name"] for s in container["Secrets"]} == set(ecs.SECRET_NAMES.values())
    env = {e["Name"] for e in container["Environment"]}
    assert not [n for n in env if "PASSWORD" in n]
    # the plain settings the pre-flight compares with the Airflow connections
    assert env >= {f"PGMIG_{side}_{k}" for side in ("SOURCE", "TARGET") for k in ("HOST", "PORT", "USER")}
    # logs where the DAG's tasks read them
    logs = container["LogConfiguration"]
    assert logs["LogDriver"] == "awslogs"
    assert logs["Options"]["awslogs-group"] == {"Ref": "LogGroup"}
    group = template["Resources"]["LogGroup"]["Properties"]
    assert _sub_default(template, group["LogGroupName"]) == defaults["log_group"]
    assert "RetentionInDays" in group
    assert logs["Options"]["awslogs-stream-prefix"] == defaults["log_stream_prefix"]
    # the stack's outputs are the DAG's environment variables
    described = {o["Description"].split()[0] for o in template["Outputs"].values()}
    required = {s.env for s in ecs.SETTINGS if s.required}
    assert required <= described
    assert _sub_default(template, template["Outputs"]["EcsTaskDefinition"]["Value"]) == _sub_default(
        template, td["Family"]
    )


def test_rehearsal_task_definition_is_the_go_live_one_with_its_own_target(template):
    """Same image, source, roles and logs; its own target host/user and target secret; optional."""
    res = template["Resources"]
    golive, rehearsal = res["TaskDefinition"], res["RehearsalTaskDefinition"]
    assert rehearsal["Condition"] == "HasRehearsal"
    assert template["Outputs"]["EcsRehearsalTaskDefinition"]["Description"].split()[0] == (
        "PG_MIGRATION_ECS_REHEARSAL_TASK_DEFINITION"
    )
    (g,), (r,) = golive["Properties"]["ContainerDefinitions"], rehearsal["Properties"]["ContainerDefinitions"]
    assert {k: v for k, v in rehearsal["Properties"].items() if k not in ("Family", "ContainerDefinitions")} == {
        k: v for k, v in golive["Properties"].items() if k not in ("Family", "ContainerDefinitions")
    }
    for key in ("Name", "Image", "LogConfiguration", "Essential"):
        assert r[key] == g[key], key
    env = {e["Name"]: e["Value"] for e in r["Environment"]}
    assert env["PGMIG_TARGET_HOST"] == {"Ref": "RehearsalTargetHost"}
    assert env["PGMIG_TARGET_USER"] == {"Ref": "RehearsalTargetUser"}
    assert env["PGMIG_SOURCE_HOST"] == {"Ref": "SourceHost"}
    secrets = {s["Name"]: s["ValueFrom"] for s in r["Secrets"]}
    assert secrets["PGMIG_TARGET_PASSWORD"] == {
        "Fn::If": [
            "HasRehearsalKey",
            {"Fn::Sub": "${RehearsalTargetPasswordSecretArn}:${RehearsalTargetPasswordJsonKey}::"},
            {"Ref": "RehearsalTargetPasswordSecretArn"},
        ]
    }
    golive_secrets = {s["Name"]: s["ValueFrom"] for s in g["Secrets"]}
    assert secrets["PGMIG_SOURCE_PASSWORD"] == golive_secrets["PGMIG_SOURCE_PASSWORD"]


def test_roles_are_least_privilege(template):
    res = template["Resources"]
    assert "Policies" not in res["TaskRole"]["Properties"]  # the container calls no AWS API
    (policy,) = res["ExecutionRole"]["Properties"]["Policies"]
    statements = [s for s in policy["PolicyDocument"]["Statement"] if "Sid" in s]
    secrets = next(s for s in statements if s["Action"] == "secretsmanager:GetSecretValue")
    assert secrets["Resource"] == [{"Ref": "SourcePasswordSecretArn"}, {"Ref": "TargetPasswordSecretArn"}]
    airflow = res["AirflowRunnerPolicy"]["Properties"]["PolicyDocument"]["Statement"]
    actions = {a for s in airflow for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])}
    assert actions == {
        "ecs:RunTask",
        "ecs:DescribeTasks",
        "ecs:StopTask",
        "ecs:ListTasks",
        "ecs:DescribeTaskDefinition",
        "iam:PassRole",
        "logs:GetLogEvents",
    }


def test_image_recipe_runs_the_worker_on_the_sources_postgres():
    dockerfile = (AWS / "Dockerfile").read_text()
    assert "FROM postgres:${PG_MAJOR}" in dockerfile
    assert 'ENTRYPOINT ["python", "-m", "include.pg_migration.worker"]' in dockerfile
    assert "COPY include/pg_migration/ /app/include/pg_migration/" in dockerfile
    requirements = (REPO / "requirements.txt").read_text()
    pinned = next(line for line in requirements.splitlines() if line.startswith("psycopg"))
    assert f'"{pinned}"' in dockerfile  # the same psycopg as the Airflow side
    assert (AWS / "Dockerfile.dockerignore").exists()


def test_the_worker_needs_psycopg_only():
    """What the image holds (include/pg_migration, psycopg) is all the worker imports: no Airflow."""
    code = (
        "import sys, include.pg_migration.worker, include.pg_migration.phases.pre_data, "
        "include.pg_migration.phases.post_data, include.pg_migration.phases.data, "
        "include.pg_migration.phases.large_objects, include.pg_migration.phases.snapshot; "
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('airflow', 'boto3', 'botocore', 'fsspec')); "
        "assert not bad, bad"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, env={"PYTHONPATH": str(REPO)}, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
