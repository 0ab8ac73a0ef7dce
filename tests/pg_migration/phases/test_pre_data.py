"""Pre-data: a re-run never silently drops what other schemas built on the selected ones (issue 19 item 5),
and privileges on an extension's own objects are carried or reported by name (item 10)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid

import psycopg
import pytest
from psycopg import sql

from include.pg_migration.errors import ConfigError
from include.pg_migration.harness import LocalRun, migrate_locally
from include.pg_migration.phases.validate import validate_schema
from include.pg_migration.run_order import PRE_DATA
from include.pg_migration.runner import local_env, run_local
from tests.conftest import assert_equal_data, table_fingerprints

#: Every user object of the target database, with its definition where it has one.
OBJECTS = """
SELECT n.nspname, c.relname, c.relkind::text, coalesce(pg_catalog.pg_get_viewdef(c.oid), '')
  FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast', '_pg_migration')
UNION ALL
SELECT n.nspname, p.oid::pg_catalog.regprocedure::text, 'function', ''
  FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
 WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', '_pg_migration')
UNION ALL
SELECT n.nspname, k.conname, 'constraint', pg_catalog.pg_get_constraintdef(k.oid)
  FROM pg_catalog.pg_constraint k JOIN pg_catalog.pg_namespace n ON n.oid = k.connamespace
 WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', '_pg_migration')
ORDER BY 1, 2, 3
"""


def _run_id() -> str:
    return f"test__{uuid.uuid4().hex[:8]}"


def _target_picture(pair) -> tuple:
    with pair.target_su() as tgt:
        return tgt.execute(OBJECTS).fetchall(), table_fingerprints(tgt)


def _an_earlier_wave(pair) -> None:
    """An earlier run migrated ``sales`` and ``public``; then the target's owner built on them from another
    schema (``reporting``, as a later wave would): views, a foreign key, a function over a row type, a
    column default using a sequence."""
    with pair.source_su() as src:
        src.execute("""
            CREATE SCHEMA sales;
            CREATE TABLE sales.orders (id serial PRIMARY KEY, amount numeric NOT NULL);
            INSERT INTO sales.orders (amount) SELECT g FROM generate_series(1, 200) g;
            CREATE TABLE public.items (id int PRIMARY KEY); INSERT INTO public.items SELECT generate_series(1, 10);
        """)
    migrate_locally(pair.source, pair.target, _run_id(), include=["sales", "public"])
    with pair.target.connect(autocommit=True) as tgt:  # as the target's owner (aurora_admin)
        tgt.execute("""
            CREATE SCHEMA reporting;
            CREATE TABLE reporting.notes (id int PRIMARY KEY, order_id int, note text);
            INSERT INTO reporting.notes SELECT g, g, 'n' || g FROM generate_series(1, 50) g;
            CREATE VIEW reporting.big_orders AS SELECT id, amount FROM sales.orders WHERE amount > 100;
            ALTER TABLE reporting.notes ADD CONSTRAINT notes_order_fk FOREIGN KEY (order_id) REFERENCES sales.orders;
            CREATE FUNCTION reporting.order_total(o sales.orders) RETURNS numeric LANGUAGE sql AS 'SELECT o.amount';
            ALTER TABLE reporting.notes ADD COLUMN next_id int DEFAULT nextval('sales.orders_id_seq');
            CREATE VIEW reporting.items_v AS SELECT id FROM public.items;
        """)


def test_a_rerun_refuses_to_drop_objects_of_other_schemas_naming_each_then_replaces_them_when_told(pair):
    _an_earlier_wave(pair)
    before = _target_picture(pair)
    with pytest.raises(ConfigError) as err:
        migrate_locally(pair.source, pair.target, _run_id(), include=["sales", "public"])
    message = str(err.value)
    for named in (
        "view reporting.big_orders",
        "table constraint notes_order_fk on reporting.notes",
        "function reporting.order_total(sales.orders)",
        "default value for reporting.notes.next_id",
        "view reporting.items_v",  # public is merged into, never dropped: its re-created objects are checked too
        "replace_dependents",
    ):
        assert named in message, (named, message)
    assert "pg_toast" not in message and "index" not in message  # the schema's own parts are not listed
    assert _target_picture(pair) == before  # untouched: the views, the key, the data

    run_id = _run_id()
    migrate_locally(pair.source, pair.target, run_id, include=["sales", "public"], replace_dependents=True)
    with pair.target_su() as tgt:
        assert tgt.execute("SELECT pg_catalog.to_regclass('reporting.big_orders')").fetchone()[0] is None
        assert tgt.execute("SELECT count(*) FROM sales.orders").fetchone()[0] == 200
        assert tgt.execute("SELECT count(*) FROM reporting.notes").fetchone()[0] == 50  # its rows are kept
        detail = tgt.execute(
            "SELECT detail FROM _pg_migration.phases WHERE run_id = %s AND phase = 'pre-data'", (run_id,)
        ).fetchone()[0]
    assert "view reporting.big_orders" in detail["dependents_dropped"]
    assert any("replace_dependents" in w and "reporting.big_orders" in w for w in detail["warnings"])


def _pre_data_killed_while_dropping(pair, run: LocalRun) -> None:
    """Start the run's pre-data worker, SIGKILL it while its transaction waits to drop ``sales``'s tables (a
    session holds a lock there), then let its orphaned server session end (its transaction rolls back)."""
    blocker = pair.target_server.connect(pair.target_db)
    blocker.execute("LOCK TABLE sales.orders IN ACCESS SHARE MODE")
    proc = subprocess.Popen(
        [sys.executable, "-m", "include.pg_migration.worker"],
        env=local_env(run.env(PRE_DATA)),
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        assert _wait_for(pair, DROP_WAITING, present=True), "pre-data never reached its drop of sales"
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        blocker.rollback()
        blocker.close()
    assert _wait_for(pair, DROP_WAITING.replace("AND wait_event_type = 'Lock'", ""), present=False)


DROP_WAITING = """
SELECT count(*) FROM pg_catalog.pg_stat_activity
 WHERE datname = %s AND query ILIKE 'DROP %%' AND wait_event_type = 'Lock'
"""


def _wait_for(pair, query: str, present: bool, timeout: float = 60) -> bool:
    deadline = time.monotonic() + timeout
    with pair.target_su() as tgt:
        while time.monotonic() < deadline:
            if bool(tgt.execute(query, (pair.target_db,)).fetchone()[0]) == present:
                return True
            time.sleep(0.05)
    return False


def test_a_retried_pre_data_of_the_same_run_drops_its_own_schemas_and_ends_equal(pair):
    with pair.source_su() as src:
        src.execute("""
            CREATE SCHEMA sales; CREATE TABLE sales.orders (id int PRIMARY KEY, v text);
            INSERT INTO sales.orders SELECT g, md5(g::text) FROM generate_series(1, 500) g;
            CREATE VIEW sales.recent AS SELECT * FROM sales.orders WHERE id > 400;
        """)
    with pair.target.connect(autocommit=True) as tgt:  # sales exists before the run (not created by it)
        tgt.execute("CREATE SCHEMA sales; CREATE TABLE sales.orders (id int PRIMARY KEY, stale text)")
    run = LocalRun(pair.source, pair.target, _run_id(), include=["sales"])
    try:
        steps = run.steps()
        run._walk(steps[: [s.task_id for s in steps].index("pre_data")])
        _pre_data_killed_while_dropping(pair, run)  # attempt 1: killed, rolled back
        run_local(run.env(PRE_DATA), label="pre-data")  # attempt 2: sales existed before the run
        with pair.target_su() as tgt:
            assert tgt.execute("SELECT to_regclass('sales.recent') IS NOT NULL").fetchone()[0]
        run_local(run.env(PRE_DATA), label="pre-data")  # attempt 3 (re-invoked): sales is the run's own now
        for unit in run.plan["units"]:
            run.unit(unit["unit_id"])
        run.finish()
    finally:
        run.close()
    with pair.source_su() as src, pair.target_su() as tgt:
        assert_equal_data(src, tgt)
        created = tgt.execute("SELECT run_id, kind, name, existed_before FROM _pg_migration.created").fetchall()
        detail = tgt.execute(
            "SELECT detail FROM _pg_migration.phases WHERE run_id = %s AND phase = 'pre-data'", (run.run_id,)
        ).fetchone()[0]
    assert created == [(run.run_id, "schema", "sales", True)]  # attempt 2's record, kept by attempt 3
    assert detail["dropped_own"] == ["sales"] and detail["dropped_existing"] == []


# -- item 10: privileges on an extension's own objects -------------------------------------------------

CARRIED = "public.citext_eq(public.citext, public.citext)"  # handed to the target role by the administrator
LEFT = "public.citext_ne(public.citext, public.citext)"  # left to the administrator (postgres)


@pytest.fixture
def reader_role(pair):
    role = f"pgmig_t4_reader_{uuid.uuid4().hex[:8]}"
    for server in (pair.source_server, pair.target_server):
        with server.connect(autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(role)))
    yield role
    for server, db in ((pair.source_server, pair.source_db), (pair.target_server, pair.target_db)):
        with server.connect(db, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
        with server.connect(autocommit=True) as conn:
            conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))


def _acl(conn: psycopg.Connection, function: str) -> list[str]:
    row = conn.execute(
        "SELECT ARRAY(SELECT CASE WHEN a.grantee = 0 THEN 'PUBLIC' WHEN a.grantee = p.proowner THEN 'OWNER'"
        "                         ELSE pg_catalog.pg_get_userbyid(a.grantee) END || ':' || a.privilege_type"
        "               FROM pg_catalog.aclexplode(coalesce(p.proacl, pg_catalog.acldefault('f', p.proowner))) a"
        "              ORDER BY 1)"
        "  FROM pg_catalog.pg_proc p WHERE p.oid = %s::pg_catalog.regprocedure",
        (function,),
    ).fetchone()
    return row[0]


def test_privileges_on_an_extensions_functions_carry_where_the_target_role_may_and_are_reported_where_not(
    pair, reader_role
):
    with pair.source_su() as src:
        src.execute("CREATE EXTENSION citext SCHEMA public")
        for function in (CARRIED, LEFT):
            src.execute(f"REVOKE EXECUTE ON FUNCTION {function} FROM PUBLIC")
            src.execute(
                sql.SQL("GRANT EXECUTE ON FUNCTION {} TO {}").format(sql.SQL(function), sql.Identifier(reader_role))
            )
        src.execute("CREATE SCHEMA app; CREATE TABLE app.people (id int PRIMARY KEY, name public.citext)")
        src.execute("INSERT INTO app.people VALUES (1, 'Ada'), (2, 'Grace')")
    with pair.target_su() as tgt:  # the administrator creates the extension first, as on Aurora
        tgt.execute("CREATE EXTENSION citext SCHEMA public")
        tgt.execute(f"ALTER FUNCTION {CARRIED} OWNER TO {pair.target_server.admin_user}")
    run_id = _run_id()
    migrate_locally(pair.source, pair.target, run_id)
    with pair.source_su() as src, pair.target_su() as tgt:
        assert _acl(src, CARRIED) == ["OWNER:EXECUTE", f"{reader_role}:EXECUTE"]
        assert _acl(tgt, CARRIED) == _acl(src, CARRIED)  # REVOKE FROM PUBLIC and GRANT carried
        assert_equal_data(src, tgt)
        warnings = tgt.execute(
            "SELECT detail->'warnings' FROM _pg_migration.phases WHERE run_id = %s AND phase = 'pre-data'", (run_id,)
        ).fetchone()[0]
    # the one the target role may not change: reported by name, with the statement to run
    named = [w for w in warnings if "citext_ne" in w]
    assert any("REVOKE" in w and "FROM PUBLIC" in w for w in named), warnings
    assert not [w for w in warnings if "citext_eq" in w], warnings
    assert validate_schema(pair.source, pair.target, "app", run_id=run_id).mismatches == []
    # and validation does not pass over the privilege left on the target: it names exactly that function
    found = validate_schema(pair.source, pair.target, "public", run_id=run_id).mismatches
    assert found and all("citext_ne" in m for m in found), found
    assert any("PUBLIC" in m and "exists only on the target" in m for m in found), found
