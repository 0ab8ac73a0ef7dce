"""docker-compose.yaml and pools.json stay valid and keep what the stack needs.

Docker is not needed: the file is parsed with PyYAML and validated with `jsonschema` (both Airflow
dependencies) against the Compose Specification's JSON schema, vendored in tests/schemas/ (never skipped).
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import jsonschema
import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
COMPOSE_FILE = REPO / "docker-compose.yaml"
COMPOSE_SPEC = REPO / "tests" / "schemas" / "compose-spec.json"
AIRFLOW_IMAGE = "apache/airflow:3.3.2-python3.11"
AIRFLOW_SERVICES = ("api-server", "scheduler", "dag-processor", "triggerer")


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE_FILE.read_text())


def _env(service: dict) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {k: "" if v is None else str(v) for k, v in env.items()}


def _command_text(service: dict) -> str:
    cmd = service.get("command") or ""
    return " ".join(cmd) if isinstance(cmd, list) else str(cmd)


def _mounts(service: dict) -> dict[str, str]:
    """container path -> host path of the bind mounts."""
    out = {}
    for vol in service.get("volumes") or []:
        if isinstance(vol, dict):
            out[vol["target"]] = vol.get("source", "")
        else:
            parts = vol.split(":")
            if len(parts) >= 2:
                out[parts[1]] = parts[0]
    return out


def test_services_present(compose):
    services = set(compose["services"])
    expected = {*AIRFLOW_SERVICES, "airflow-init", "postgres", "pg-source", "pg-target", "demo-seed"}
    assert expected <= services, f"missing: {expected - services}"


@pytest.mark.parametrize("name", [*AIRFLOW_SERVICES, "airflow-init"])
def test_airflow_services(compose, name):
    svc = compose["services"][name]
    assert AIRFLOW_IMAGE in svc["image"]
    env = _env(svc)
    assert env["AIRFLOW__CORE__EXECUTOR"] == "LocalExecutor"
    assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].startswith("postgresql")
    assert "@postgres" in env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]
    assert env["PYTHONPATH"].split(":")[0] == "/opt/airflow"
    assert "@pg-source:5432/" in env["AIRFLOW_CONN_PG_SOURCE"]
    assert env["AIRFLOW_CONN_PG_TARGET"].startswith("postgresql://aurora_admin:")
    assert "@pg-target:5432/" in env["AIRFLOW_CONN_PG_TARGET"]
    mounts = _mounts(svc)
    for sub in ("dags", "plugins", "include"):
        assert mounts.get(f"/opt/airflow/{sub}") == f"./{sub}", f"{name}: {sub} not mounted"


@pytest.mark.parametrize("name", AIRFLOW_SERVICES)
def test_airflow_commands_and_dependencies(compose, name):
    svc = compose["services"][name]
    assert _command_text(svc) == name
    deps = svc["depends_on"]
    assert deps["airflow-init"]["condition"] == "service_completed_successfully"
    assert deps["postgres"]["condition"] == "service_healthy"


def test_init_migrates_creates_user_and_imports_pools(compose):
    svc = compose["services"]["airflow-init"]
    script = _command_text(svc)
    assert "airflow db migrate" in script
    assert "airflow users create" in script
    assert "airflow pools import /opt/airflow/pools.json" in script
    assert _mounts(svc)["/opt/airflow/pools.json"] == "./pools.json"


def test_pools_json():
    pools = json.loads((REPO / "pools.json").read_text())
    pool = pools["pg_migration"]
    assert isinstance(pool["slots"], int) and pool["slots"] >= 1
    assert pool["include_deferred"] is True


def test_pg_servers(compose):
    source, target = compose["services"]["pg-source"], compose["services"]["pg-target"]
    assert source["image"] == "postgres:15"
    assert target["image"] == "postgres:15"
    assert "wal_level=logical" in _command_text(source)
    for svc in (source, target):
        init = [
            host for container, host in _mounts(svc).items() if container.startswith("/docker-entrypoint-initdb.d/")
        ]
        assert init, "no init script"
        script = (REPO / init[0]).read_text()
        assert "aurora_admin" in script and "NOSUPERUSER" in script
    assert "warehouse" in _env(target)["OWNED_DATABASES"].split()


def test_demo_seed(compose):
    svc = compose["services"]["demo-seed"]
    assert svc["profiles"] == ["demo"]
    cmd = _command_text(svc)
    assert "-m include.pg_migration.demo" in cmd
    assert "--dsn" in cmd and "host=pg-source" in cmd
    assert svc["depends_on"]["pg-source"]["condition"] == "service_healthy"
    assert _env(svc)["PYTHONPATH"].split(":")[0] == "/opt/airflow"


def test_depends_on_known_services(compose):
    services = set(compose["services"])
    for name, svc in compose["services"].items():
        deps = svc.get("depends_on") or {}
        assert set(deps) <= services, f"{name} depends on unknown {set(deps) - services}"


def test_bind_mount_files_exist(compose):
    for name, svc in compose["services"].items():
        for host in _mounts(svc).values():
            if host.startswith("./") and Path(host).suffix:  # files; directories may be empty in git
                assert (REPO / host).is_file(), f"{name}: {host} missing"


def test_compose_file_matches_the_compose_specification(compose):
    """The whole file against the Compose Specification's JSON schema (vendored: tests/schemas/README.md)."""
    errors = sorted(_spec_validator().iter_errors(compose), key=lambda e: list(e.absolute_path))
    assert not errors, "\n".join(f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in errors)


def test_the_schema_check_can_fail(compose):
    """A misspelt key, a wrong type and an unknown top-level section are each refused."""
    bad = copy.deepcopy(compose)
    bad["services"]["postgres"]["restrt"] = "always"
    bad["services"]["pg-source"]["ports"] = "25432:5432"
    bad["servics"] = {}
    paths = {"/".join(map(str, e.absolute_path)) for e in _spec_validator().iter_errors(bad)}
    assert {"services/postgres", "services/pg-source/ports", ""} <= paths, paths


def _spec_validator() -> jsonschema.Draft7Validator:
    schema = json.loads(COMPOSE_SPEC.read_text())
    jsonschema.Draft7Validator.check_schema(schema)
    return jsonschema.Draft7Validator(schema, format_checker=jsonschema.Draft7Validator.FORMAT_CHECKER)
