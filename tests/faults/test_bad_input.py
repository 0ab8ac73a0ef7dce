"""Bad input gets a clear error naming the schema or connection at fault; nothing is half-done."""

from __future__ import annotations

import uuid

import psycopg
import pytest

from include.pg_migration import catalog, state
from include.pg_migration.conn import Endpoint
from include.pg_migration.errors import ConfigError, GuardHeld, PlanError, UnitFailed
from include.pg_migration.harness import LocalRun, migrate_locally
from tests.conftest import assert_equal_data


def _run_id() -> str:
    return f"test__{uuid.uuid4().hex[:8]}"


def test_unknown_schema_fails_up_front_by_name(pair):
    with pytest.raises(PlanError, match="'nope'"):
        catalog.inventory(pair.source, ["public", "nope"], None)


def test_unreachable_host_is_named(pair):
    bad = Endpoint(host="127.0.0.1", port=1, dbname="x", user="u", password="p", label="source connection 'pg_src'")
    with pytest.raises(ConfigError, match="cannot connect to source connection 'pg_src'"):
        catalog.inventory(bad, None, None)


def test_wrong_password_is_named_and_not_echoed(pair):
    src = pair.source
    bad = Endpoint(
        host=src.host,
        port=src.port,
        dbname=src.dbname,
        user=src.user,
        password="Wr0ng-S3cret!",
        label="source connection 'pg_source'",
    )
    with pytest.raises(ConfigError) as err:
        catalog.inventory(bad, None, None)
    assert "pg_source" in str(err.value) and "password authentication failed" in str(err.value)
    assert "Wr0ng-S3cret!" not in str(err.value)


def test_injection_schema_name_migrates_as_an_ordinary_name(pair):
    name = 'x"; DROP SCHEMA public; --'
    with pair.source_su() as src:
        src.execute(psycopg.sql.SQL("CREATE SCHEMA {}").format(psycopg.sql.Identifier(name)))
        src.execute(psycopg.sql.SQL("CREATE TABLE {}.t AS SELECT 1 AS id").format(psycopg.sql.Identifier(name)))
        src.execute("CREATE TABLE public.survivor AS SELECT 42 AS v")
    migrate_locally(pair.source, pair.target, _run_id(), include=[name, "public"])
    with pair.source_su() as src, pair.target_su() as tgt:
        assert_equal_data(src, tgt)
        assert tgt.execute("SELECT v FROM public.survivor").fetchone()[0] == 42


def test_a_row_violating_a_target_constraint_fails_its_unit_by_name_and_leaves_no_half_table(pair):
    with pair.source_su() as src:
        src.execute("CREATE SCHEMA good; CREATE TABLE good.t AS SELECT g AS id FROM generate_series(1, 1000) g")
        src.execute("CREATE SCHEMA bad; CREATE TABLE bad.t AS SELECT g AS id FROM generate_series(1, 1000) g")
    run = LocalRun(pair.source, pair.target, _run_id(), pool_size=2)
    try:
        plan = run.start()
        with pair.target_su() as tgt:  # a target-side rule the source data breaks (row 1000)
            tgt.execute("ALTER TABLE bad.t ADD CONSTRAINT below_1000 CHECK (id < 1000)")
        outcomes = {}
        for unit in plan["units"]:
            try:
                run.unit(unit["unit_id"])
                outcomes[unit["schema"]] = "ok"
            except UnitFailed as exc:
                outcomes[unit["schema"]] = str(exc)
    finally:
        run.close()
    assert outcomes["good"] == "ok"
    assert "bad.t" in outcomes["bad"] and "below_1000" in outcomes["bad"]
    with pair.target_su() as tgt:
        assert tgt.execute("SELECT count(*) FROM good.t").fetchone()[0] == 1000
        assert tgt.execute("SELECT count(*) FROM bad.t").fetchone()[0] == 0  # nothing half-loaded


def test_a_second_run_cannot_write_to_a_held_target(pair):
    with pair.source_su() as src:
        src.execute("CREATE TABLE public.t AS SELECT 1 AS id")
    first = LocalRun(pair.source, pair.target, _run_id(), dag_id="pg_migration")
    try:
        first.start()
        second = LocalRun(pair.source, pair.target, _run_id(), dag_id="pg_migration_rehearsal")
        with pytest.raises(GuardHeld, match=first.run_id):
            second.start()
    finally:
        first.close()
    with pair.target.connect(autocommit=True) as conn:
        assert conn.execute(state.q("SELECT count(*) FROM {s}.guard")).fetchone()[0] == 0
