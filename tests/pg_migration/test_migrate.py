"""End to end through the library (no Airflow): the demo warehouse, worst orders, hostile names."""

from __future__ import annotations

import uuid

import pytest

from include.pg_migration import catalog
from include.pg_migration.harness import migrate_locally
from include.pg_migration.phases.validate import validate_database, validate_schema
from include.pg_migration.plan import make_plan
from tests.conftest import assert_equal_data


def _run_id() -> str:
    return f"test__{uuid.uuid4().hex[:8]}"


def _validate_all(pair, run_id=None, mode="counts", source=None):
    source = source or pair.source
    with pair.source_su() as conn:
        schemas = [
            r[0]
            for r in conn.execute(
                "SELECT nspname FROM pg_namespace WHERE nspname !~ '^pg_' AND nspname NOT IN "
                "('information_schema', '_pg_migration')"
            )
        ]
    results = [validate_schema(source, pair.target, s, run_id=run_id, mode=mode) for s in schemas]
    return [m for r in results for m in r.mismatches] + validate_database(source, pair.target)["mismatches"]


def test_demo_warehouse_migrates_equal(demo_pair):
    """Read as the least-privileged reader of a snapshot run (a member of pg_read_all_data), not a superuser."""
    run_id = _run_id()
    migrate_locally(demo_pair.source_reader, demo_pair.target, run_id, pool_size=4)
    with demo_pair.source_su() as src, demo_pair.target_su() as tgt:
        assert_equal_data(src, tgt)
    assert _validate_all(demo_pair, run_id, mode="checksums", source=demo_pair.source_reader) == []


def test_worst_order_children_before_parents(demo_pair):
    """Units run smallest first (children and partitions before their parents' schemas)."""
    inventory = catalog.inventory(demo_pair.source, None, None)
    units = make_plan(inventory, 4)["units"]
    order = [u["unit_id"] for u in sorted(units, key=lambda u: u["bytes"])]
    migrate_locally(demo_pair.source, demo_pair.target, _run_id(), pool_size=4, unit_order=order)
    with demo_pair.source_su() as src, demo_pair.target_su() as tgt:
        assert_equal_data(src, tgt)
    assert _validate_all(demo_pair) == []


def test_rerun_over_a_migrated_target_is_idempotent(demo_pair):
    migrate_locally(demo_pair.source, demo_pair.target, _run_id(), pool_size=2)
    migrate_locally(demo_pair.source, demo_pair.target, _run_id(), pool_size=2)
    with demo_pair.source_su() as src, demo_pair.target_su() as tgt:
        assert_equal_data(src, tgt)
    assert _validate_all(demo_pair) == []


HOSTILE = ["Upper Case", 'with "quotes"', "ünïcödé", "semi;colon", 'x"; DROP SCHEMA public; --', "dot.ted*"]


def test_schema_names_that_need_quoting(pair):
    from psycopg import sql

    with pair.source_su() as conn:
        conn.execute("CREATE TABLE public.keep_me (id int PRIMARY KEY)")
        conn.execute("INSERT INTO public.keep_me VALUES (1)")
        for i, name in enumerate(HOSTILE):
            s = sql.Identifier(name)
            conn.execute(sql.SQL("CREATE SCHEMA {}").format(s))
            conn.execute(
                sql.SQL("CREATE TABLE {}.{} (id int PRIMARY KEY, v text)").format(s, sql.Identifier(f"T {name}"))
            )
            conn.execute(
                sql.SQL("INSERT INTO {}.{} SELECT g, md5(g::text) FROM generate_series(1, %s) g").format(
                    s, sql.Identifier(f"T {name}")
                ),
                (10 + i,),
            )
    migrate_locally(pair.source, pair.target, _run_id(), pool_size=2)
    with pair.source_su() as src, pair.target_su() as tgt:
        assert_equal_data(src, tgt)
        assert tgt.execute("SELECT count(*) FROM public.keep_me").fetchone()[0] == 1
    assert _validate_all(pair) == []


def test_unknown_schema_is_named(pair):
    from include.pg_migration.errors import PlanError

    with pytest.raises(PlanError, match="no_such_schema"):
        catalog.inventory(pair.source, ["no_such_schema"], None)


def test_latin1_source_converts_to_utf8(pg_servers):
    """A LATIN1 on-premise database: its server converts to UTF-8 on the wire (client_encoding)."""
    from psycopg import sql

    from scripts import localpg
    from tests.conftest import Pair, _unique, create_db

    pair = Pair(pg_servers["source"], pg_servers["target"], _unique("latin1"), _unique("tgt"))
    with pair.source_server.connect(autocommit=True) as conn:
        conn.execute(
            sql.SQL("CREATE DATABASE {} ENCODING 'LATIN1' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0").format(
                sql.Identifier(pair.source_db)
            )
        )
    create_db(pair.target_server, pair.target_db, owner=pair.target_server.admin_user)
    try:
        with pair.source_su(client_encoding="UTF8") as src:
            src.execute("CREATE SCHEMA café; CREATE TABLE café.menu (id int PRIMARY KEY, dish text)")
            src.execute("INSERT INTO café.menu VALUES (1, 'crème brûlée'), (2, 'pâté'), (3, 'ÿ')")
        migrate_locally(pair.source, pair.target, _run_id())
        with pair.target_su() as tgt:
            assert tgt.execute("SELECT dish FROM café.menu ORDER BY id").fetchall() == [
                ("crème brûlée",),
                ("pâté",),
                ("ÿ",),
            ]
        assert _validate_all(pair, mode="checksums") == []
    finally:
        localpg.drop_database(pair.source_server, pair.source_db)
        localpg.drop_database(pair.target_server, pair.target_db)
