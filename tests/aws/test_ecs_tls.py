"""TLS from the worker image: the containers verify with the image's own CA bundle (never a path of the
Airflow worker), and a missing or unreadable bundle fails the phase naming the path."""

from __future__ import annotations

import os
import subprocess
import sys

from include.pg_migration.conn import Endpoint
from tests.aws.conftest import REPO

ECS_ENV = {
    "PG_MIGRATION_ECS_CLUSTER": "c",
    "PG_MIGRATION_ECS_TASK_DEFINITION": "pg-migration-worker",
    "PG_MIGRATION_ECS_SUBNETS": "subnet-a",
}


def _overrides_env(kw: dict) -> dict[str, str]:
    (container,) = kw["overrides"]["containerOverrides"]
    return {e["name"]: e["value"] for e in container["environment"]}


def test_overrides_carry_the_images_ca_bundle_not_the_workers_path(monkeypatch):
    from pg_migration_support import ecs, ecs_preflight

    local_ca = "/home/airflow/certs/rds-global-bundle.pem"
    monkeypatch.setenv("AIRFLOW_CONN_PG_SOURCE", "postgresql://u:p@db.source.example:5432/warehouse?sslmode=require")
    monkeypatch.setenv(
        "AIRFLOW_CONN_PG_TARGET",
        f"postgresql://a:p@aurora.example:5432/warehouse?sslmode=verify-full&sslrootcert={local_ca}"
        "&sslcert=/home/airflow/client.crt&sslkey=/home/airflow/client.key",
    )
    params = {"source_conn_id": "pg_source", "target_conn_id": "pg_target", "consistent": True}
    (kw,) = ecs.requests(ecs.resolve({}, ECS_ENV), params, "run-1", {"units": []}, "pre-data")
    env = _overrides_env(kw)
    assert env["PGMIG_TARGET_SSLMODE"] == "verify-full"
    assert env["PGMIG_TARGET_SSLROOTCERT"] == ecs.CONTAINER_CA_BUNDLE
    assert local_ca not in str(kw) and "/home/airflow" not in str(kw)
    assert env["PGMIG_SOURCE_SSLMODE"] == "require" and "PGMIG_SOURCE_SSLROOTCERT" not in env
    # verify-full without a path: the image's bundle too; libpq's `system` store stays as it is
    bare = Endpoint("aurora.example", sslmode="verify-ca", label="target")
    assert ecs.in_container(bare).sslrootcert == ecs.CONTAINER_CA_BUNDLE
    system = Endpoint("aurora.example", sslmode="verify-full", sslrootcert="system", label="target")
    assert ecs.in_container(system).sslrootcert == "system"
    findings = {f["check"]: f for f in [ecs_preflight._tls_finding("target", Endpoint("h", sslcert="/x", label="t"))]}
    assert findings["ecs target tls"]["verdict"] == "warning"


def _worker(env: dict[str, str]) -> subprocess.CompletedProcess:
    base = {k: os.environ[k] for k in ("PATH", "HOME", "LANG") if k in os.environ}
    return subprocess.run(
        [sys.executable, "-m", "include.pg_migration.worker"],
        env={**base, "PYTHONPATH": str(REPO), **env},
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_a_missing_or_unreadable_bundle_fails_the_phase_naming_the_path(tmp_path):
    env = {
        "PGMIG_PHASE": "pre-data",
        "PGMIG_RUN_ID": "run-1",
        "PGMIG_SOURCE_HOST": "127.0.0.1",
        "PGMIG_SOURCE_DBNAME": "warehouse",
        "PGMIG_SOURCE_USER": "postgres",
        "PGMIG_TARGET_HOST": "127.0.0.1",
        "PGMIG_TARGET_DBNAME": "warehouse",
        "PGMIG_TARGET_USER": "aurora_admin",
        "PGMIG_TARGET_SSLMODE": "verify-full",
    }
    missing = tmp_path / "etc" / "rds-ca-bundle.pem"
    proc = _worker({**env, "PGMIG_TARGET_SSLROOTCERT": str(missing)})
    assert proc.returncode == 2, proc.stderr
    assert f"sslrootcert {missing} does not exist" in proc.stderr.strip().splitlines()[-1]
    unreadable = tmp_path / "a-directory.pem"  # root reads every file: a directory is unreadable for anyone
    unreadable.mkdir()
    proc = _worker({**env, "PGMIG_SOURCE_SSLROOTCERT": str(unreadable)})
    assert proc.returncode == 2, proc.stderr
    assert f"sslrootcert {unreadable} is not readable" in proc.stderr.strip().splitlines()[-1]
