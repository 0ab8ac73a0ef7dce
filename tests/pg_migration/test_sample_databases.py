"""Real public sample databases (read from ../shared/data; the product never needs them)."""

from __future__ import annotations

import re
import subprocess
import uuid

import pytest

from include.pg_migration.harness import migrate_locally
from include.pg_migration.phases.validate import validate_database, validate_schema
from scripts import localpg
from tests.conftest import SHARED, Pair, _unique, assert_equal_data, create_db


def _psql(server, dbname: str, script: str) -> None:
    proc = subprocess.run(
        [server.bin("psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", server.dsn(dbname)],
        input=script,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]


def _migrate_and_check(pair: Pair, schemas: list[str]) -> None:
    migrate_locally(pair.source, pair.target, f"test__{uuid.uuid4().hex[:8]}", pool_size=2)
    with pair.source_su() as src, pair.target_su() as tgt:
        assert_equal_data(src, tgt)
    for schema in schemas:
        assert validate_schema(pair.source, pair.target, schema, mode="checksums").mismatches == [], schema
    assert validate_database(pair.source, pair.target)["mismatches"] == []


def test_northwind_in_public(pair):
    _psql(pair.source_server, pair.source_db, (SHARED / "data/northwind/northwind.sql").read_text())
    _migrate_and_check(pair, ["public"])
    with pair.target_su() as tgt:  # public was merged into, not re-created: still owned by pg_database_owner
        owner = tgt.execute("SELECT nspowner::regrole::text FROM pg_namespace WHERE nspname = 'public'").fetchone()[0]
        assert owner == "pg_database_owner"


def test_chinook_in_its_own_schema(pair):
    text = (SHARED / "data/chinook/Chinook_PostgreSql.sql").read_text()
    text = "\n".join(ln for ln in text.splitlines() if not re.match(r"^(DROP DATABASE|CREATE DATABASE|\\c )", ln))
    _psql(pair.source_server, pair.source_db, "CREATE SCHEMA chinook; SET search_path = chinook;\n" + text)
    _migrate_and_check(pair, ["chinook"])


@pytest.fixture
def pg18_pair(pg18_server):
    p = Pair(pg18_server, pg18_server, _unique("src"), _unique("tgt"))
    create_db(p.source_server, p.source_db)
    create_db(p.target_server, p.target_db, owner=p.target_server.admin_user)
    yield p
    localpg.drop_database(p.source_server, p.source_db)
    localpg.drop_database(p.target_server, p.target_db)


def test_pagila_schema_on_postgresql_18(pg18_pair):
    # pgvector is not a trusted extension: on Aurora the admin (rds_superuser) creates it; here the
    # superuser plays the admin. One the admin already created is fine for the migration.
    with pg18_pair.target_su() as tgt:
        tgt.execute("CREATE EXTENSION vector")
    _psql(pg18_pair.source_server, pg18_pair.source_db, (SHARED / "data/pagila/pagila-schema.sql").read_text())
    _migrate_and_check(pg18_pair, ["public"])


@pytest.fixture
def upgrade_pair(pg_servers, pg18_server, demo_source):
    """On-premise PostgreSQL 15 source -> a PostgreSQL 18 target (Aurora is usually newer)."""
    p = Pair(pg_servers["source"], pg18_server, demo_source, _unique("tgt"))
    create_db(p.target_server, p.target_db, owner=p.target_server.admin_user)
    yield p
    localpg.drop_database(p.target_server, p.target_db)


def test_postgresql_15_source_to_18_target(upgrade_pair):
    _migrate_and_check(upgrade_pair, ["sales", "analytics", "archive", "finance", "Reporting Mart"])
