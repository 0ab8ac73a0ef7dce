"""Settings resolution and the ECS pre-flight (DescribeTaskDefinition vs the Airflow connections)."""

from __future__ import annotations

import copy

import pytest

from include.pg_migration.conn import Endpoint
from include.pg_migration.errors import ConfigError
from tests.aws.conftest import SOURCE_PW, TARGET_PW

SOURCE = Endpoint("db.source.example", 5432, "warehouse", "postgres", SOURCE_PW, label="source")
TARGET = Endpoint("aurora.cluster.example", 5432, "warehouse", "aurora_admin", TARGET_PW, label="target")


def blocking(findings):
    out: dict[str, str] = {}
    for f in findings:
        if f["verdict"] == "blocking":
            out[f["check"]] = "; ".join(filter(None, [out.get(f["check"]), f["detail"]]))
    return out


def test_settings_param_beats_environment_beats_default():
    from pg_migration_support import ecs

    env = {
        "PG_MIGRATION_ECS_CLUSTER": "from-env",
        "PG_MIGRATION_ECS_TASK_DEFINITION": "pg-migration-worker",
        "PG_MIGRATION_ECS_SUBNETS": "subnet-a, subnet-b",
        "PG_MIGRATION_ECS_ASSIGN_PUBLIC_IP": "true",
    }
    s = ecs.resolve({"ecs_cluster": "from-param"}, env)
    assert s.cluster == "from-param" and s.subnets == ("subnet-a", "subnet-b") and s.assign_public_ip == "ENABLED"
    assert (s.container, s.log_group, s.log_stream_prefix, s.aws_conn_id) == (
        "pg-migration-worker",
        "/ecs/pg-migration-worker",
        "pg-migration",
        "aws_default",
    )
    assert ecs.EcsSettings.from_dict(s.to_dict()) == s
    with pytest.raises(ConfigError, match=r"ecs_cluster \(or \$PG_MIGRATION_ECS_CLUSTER\).*ecs_subnets"):
        ecs.resolve({}, {"PG_MIGRATION_ECS_TASK_DEFINITION": "x"})


def test_every_ecs_param_defaults_to_null():
    import pg_migration_dag
    from pg_migration_support import ecs

    params = pg_migration_dag.pg_migration.params
    for s in ecs.SETTINGS:
        assert params[s.param] is None, s.param  # resolved at run time, never at parse time
        assert s.env in params.get_param(s.param).description


def test_overrides_refuse_passwords_and_oversize():
    from pg_migration_support import ecs

    s = ecs.resolve(
        {}, {"PG_MIGRATION_ECS_CLUSTER": "c", "PG_MIGRATION_ECS_TASK_DEFINITION": "t", "PG_MIGRATION_ECS_SUBNETS": "s"}
    )
    with pytest.raises(ConfigError, match="PGMIG_SOURCE_PASSWORD"):
        ecs.overrides(s, {"PGMIG_PHASE": "data", "PGMIG_SOURCE_PASSWORD": "x"})
    with pytest.raises(ConfigError, match="8192"):
        ecs.overrides(s, {"PGMIG_PHASE": "data", "PGMIG_UNIT_ID": "u" * 9000})


def test_preflight_accepts_the_deployed_stack(stack, monkeypatch):
    from pg_migration_support import ecs_preflight

    # the source on a closed port: the image-version check is skipped, nothing waits
    source = Endpoint("db.source.example", 5432, "warehouse", "postgres", SOURCE_PW, label="source")
    monkeypatch.setattr(Endpoint, "connect", _refuse)
    findings = ecs_preflight.preflight(source, TARGET, {})
    assert blocking(findings) == {}, findings
    checks = {f["check"] for f in findings}
    assert {
        "ecs settings",
        "ecs container",
        "ecs secrets",
        "ecs source endpoint",
        "ecs target endpoint",
        "ecs logs",
    } <= checks
    text = repr(findings)
    assert SOURCE_PW not in text and TARGET_PW not in text
    assert "pg-migration/source" in text and "rds!cluster-aurora" in text  # secret names, never values


def _refuse(self, *a, **k):
    from include.pg_migration.errors import ConfigError

    raise ConfigError("refused")


def test_preflight_blocks_a_missing_setting_or_definition(stack, monkeypatch):
    from pg_migration_support import ecs_preflight

    monkeypatch.delenv("PG_MIGRATION_ECS_SUBNETS")
    assert "ecs settings" in blocking(ecs_preflight.preflight(SOURCE, TARGET, {}))
    monkeypatch.setattr(Endpoint, "connect", _refuse)
    found = blocking(ecs_preflight.preflight(SOURCE, TARGET, {"ecs_subnets": ["s"], "ecs_task_definition": "nope"}))
    assert "cannot describe 'nope'" in found["ecs task definition"]


@pytest.mark.parametrize(
    "change,check,words",
    [
        (lambda td, s: td.update(networkMode="bridge"), "ecs task definition", "not a Fargate definition"),
        (
            lambda td, s: _env(td, "PGMIG_TARGET_HOST", "other.cluster.example"),
            "ecs target endpoint",
            "other.cluster.example",
        ),
        (lambda td, s: _env(td, "PGMIG_SOURCE_USER", "readonly"), "ecs source endpoint", "'readonly'"),
        (lambda td, s: td["containerDefinitions"][0].update(secrets=[]), "ecs secrets", "no PGMIG_SOURCE_PASSWORD"),
        (lambda td, s: _env(td, "PGMIG_TARGET_PASSWORD", "plain"), "ecs secrets", "plain environment"),
        (lambda td, s: td.pop("executionRoleArn"), "ecs secrets", "no execution role"),
        (
            lambda td, s: td["containerDefinitions"][0]["logConfiguration"]["options"].update(
                {"awslogs-group": "/ecs/elsewhere"}
            ),
            "ecs logs",
            "/ecs/elsewhere",
        ),
        (lambda td, s: td["containerDefinitions"][0].update(image="repo:pg14-abc"), "ecs image", "PG_MAJOR=15"),
        (lambda td, s: td["containerDefinitions"][0].update(name="app"), "ecs container", "no container"),
    ],
)
def test_preflight_blocks_a_definition_for_other_servers(stack, change, check, words):
    from pg_migration_support import ecs, ecs_preflight

    td = copy.deepcopy(stack.task_definition)
    settings = ecs.resolve({})
    change(td, settings)
    found = blocking(ecs_preflight.check_task_definition(td, settings, SOURCE, TARGET, source_major=15))
    assert check in found and words in found[check], found


def test_preflight_warns_when_the_definition_names_no_server(stack):
    from pg_migration_support import ecs, ecs_preflight

    td = copy.deepcopy(stack.task_definition)
    td["containerDefinitions"][0]["environment"] = []
    findings = ecs_preflight.check_task_definition(td, ecs.resolve({}), SOURCE, TARGET, source_major=15)
    assert blocking(findings) == {}
    assert {f["check"] for f in findings if f["verdict"] == "warning"} == {"ecs source endpoint", "ecs target endpoint"}


def test_with_runner_ecs_the_airflow_workers_pg_dump_does_not_block():
    from pg_migration_support import ecs_preflight

    findings = [{"check": "pg_dump", "verdict": "blocking", "detail": "no pg_dump >= 15 found"}]
    (f,) = ecs_preflight.adjust_local_findings(findings)
    assert f["verdict"] == "ok" and "worker image" in f["detail"]


def _env(td, name, value):
    env = [e for e in td["containerDefinitions"][0]["environment"] if e["name"] != name]
    td["containerDefinitions"][0]["environment"] = [*env, {"name": name, "value": value}]
