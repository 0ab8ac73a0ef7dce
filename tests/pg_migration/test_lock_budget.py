"""The lock budget (issue 16): pre-data in batches within each server's lock table, on a pair with a small one.

The pair ``locks_source``/``locks_target`` (``scripts/localpg.py``) runs PostgreSQL 15 with
``max_locks_per_transaction`` 16 and every other setting that sizes the lock table stock: 16 x 122 =
1,952 entries, the run's default share half of it. The source holds about 2,000 tables of the seed's
shape (``include/pg_migration/demo/many_tables.py``, generated once for the module) plus one object of
every cross-schema kind whose batch order matters; a thread samples ``pg_locks`` on both servers while
the run works, so "within budget" is measured, not assumed.
"""

from __future__ import annotations

import threading
import time
import uuid
from contextlib import contextmanager

import psycopg
import pytest
from psycopg import sql

from include.pg_migration import batching, catalog, locks, pgtools, preflight, state
from include.pg_migration.demo.many_tables import Shape, generate
from include.pg_migration.errors import UnitFailed
from include.pg_migration.harness import LocalRun, migrate_locally
from include.pg_migration.run_order import PRE_DATA
from include.pg_migration.runner import run_local
from scripts import localpg
from tests.conftest import _unique, assert_equal_data, create_db, endpoint

#: One object of every cross-schema kind whose order across batches matters, against alphabetical order
#: (aa_archive sorts first, zz_shared last): a function over a table's row type (BEGIN ATOMIC) and a view
#: using it; a composite type and a domain used by a table with cross-schema defaults; a partition in
#: another schema; a view over a later schema; a function taking a later schema's row type, used by a
#: default of an earlier schema's table.
EXTRAS = """
CREATE FUNCTION zz_shared.dim_label(d zz_shared.dim_0) RETURNS text LANGUAGE sql BEGIN ATOMIC SELECT d.name || '!'; END;
CREATE VIEW aa_archive.v_labels AS SELECT zz_shared.dim_label(d) AS label FROM zz_shared.dim_0 d;
CREATE TYPE zz_shared.money_t AS (amount numeric, currency zz_shared.currency_t);
CREATE DOMAIN zz_shared.positive AS numeric CHECK (VALUE > 0);
CREATE TABLE s002.ledger (id int PRIMARY KEY, m zz_shared.money_t, p zz_shared.positive DEFAULT 1,
                          doc bigint DEFAULT nextval('zz_shared.doc_seq'));
INSERT INTO s002.ledger VALUES (1, ROW(2.5, 'EUR'), 3, 7);
CREATE TABLE aa_archive.events_old PARTITION OF s003.events FOR VALUES FROM ('1990-01-01') TO ('2000-01-01');
INSERT INTO aa_archive.events_old VALUES (1, '1999-12-31', 1, 1.5, 'old');
CREATE VIEW aa_archive.v_recent AS SELECT id, happened_on FROM s012.fact_1;
CREATE FUNCTION aa_archive.amount_of(f s012.fact_2) RETURNS numeric LANGUAGE sql RETURN f.amount;
CREATE TABLE s001.uses_fn (id int PRIMARY KEY, total numeric DEFAULT aa_archive.amount_of(NULL::s012.fact_2));
"""

#: What pre-data creates, in comparable form: relations (view definitions), routines, types, defaults,
#: inheritance and partition bounds, columns.
DEFINITIONS = """
SELECT 'relation', n.nspname || '.' || c.relname, c.relkind::text, coalesce(pg_catalog.pg_get_viewdef(c.oid), '')
  FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname = ANY(%(s)s) AND c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f', 'c')
UNION ALL
SELECT 'routine', p.oid::pg_catalog.regprocedure::text, '',
       coalesce(pg_catalog.pg_get_function_sqlbody(p.oid), p.prosrc)
  FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = ANY(%(s)s)
UNION ALL
SELECT 'type', t.oid::pg_catalog.regtype::text, t.typtype::text, ''
  FROM pg_catalog.pg_type t JOIN pg_catalog.pg_namespace n ON n.oid = t.typnamespace
 WHERE n.nspname = ANY(%(s)s) AND t.typtype IN ('e', 'd')
UNION ALL
SELECT 'default', a.adrelid::pg_catalog.regclass::text || '.' || a.adnum, '', pg_catalog.pg_get_expr(a.adbin, a.adrelid)
  FROM pg_catalog.pg_attrdef a JOIN pg_catalog.pg_class c ON c.oid = a.adrelid
  JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = ANY(%(s)s)
UNION ALL
SELECT 'inherits', i.inhrelid::pg_catalog.regclass::text, i.inhparent::pg_catalog.regclass::text,
       coalesce(pg_catalog.pg_get_expr(c.relpartbound, c.oid), '')
  FROM pg_catalog.pg_inherits i JOIN pg_catalog.pg_class c ON c.oid = i.inhrelid
  JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = ANY(%(s)s) AND c.relkind IN ('r', 'p')
UNION ALL
SELECT 'column', a.attrelid::pg_catalog.regclass::text || '.' || a.attname, '',
       pg_catalog.format_type(a.atttypid, a.atttypmod)
  FROM pg_catalog.pg_attribute a JOIN pg_catalog.pg_class c ON c.oid = a.attrelid
  JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname = ANY(%(s)s) AND a.attnum > 0 AND NOT a.attisdropped AND c.relkind IN ('r', 'p', 'v')
ORDER BY 1, 2, 3
"""

SCHEMAS = ["aa_archive", "zz_shared", *Shape(schemas=12).schema_names()]


class LockSampler(threading.Thread):
    """Samples the entries of a server's lock table held by every other session, every 20 ms; keeps the
    peak and who held it (application name, lock type)."""

    def __init__(self, server: localpg.Server):
        super().__init__(daemon=True)
        self.server, self.peak, self.samples, self.at_peak = server, 0, 0, []
        self.done = threading.Event()

    def run(self) -> None:
        with self.server.connect("postgres", autocommit=True) as conn:
            while not self.done.is_set():
                rows = conn.execute(HELD_BY).fetchall()
                n = sum(r[2] for r in rows)
                if n > self.peak:
                    self.peak, self.at_peak = n, rows
                self.samples += 1
                time.sleep(0.02)

    def __repr__(self) -> str:
        return f"{self.server.name}: peak {self.peak} ({self.at_peak})"


HELD_BY = """
SELECT coalesce(a.application_name, ''), l.locktype, count(*)
  FROM pg_catalog.pg_locks l LEFT JOIN pg_catalog.pg_stat_activity a ON a.pid = l.pid
 WHERE NOT l.fastpath AND l.pid <> pg_catalog.pg_backend_pid()
 GROUP BY 1, 2
"""


@contextmanager
def sampled(*servers: localpg.Server):
    samplers = [LockSampler(s) for s in servers]
    for s in samplers:
        s.start()
    try:
        yield samplers
    finally:
        for s in samplers:
            s.done.set()
            s.join(timeout=10)


@pytest.fixture(scope="module")
def many_source(lock_servers):
    """About 2,000 tables of the seed's shape on the small-lock source (generated once for the module)."""
    src, _ = lock_servers
    name = _unique("many")
    create_db(src, name)
    summary = generate(src.dsn(name), Shape(schemas=12))
    with src.connect(name, autocommit=True) as conn:
        conn.execute(EXTRAS)
    assert summary["tables"] > 1900, summary
    yield name
    localpg.drop_database(src, name)


@pytest.fixture
def lock_target(lock_servers):
    _, tgt = lock_servers
    name = _unique("tgt")
    create_db(tgt, name, owner=tgt.admin_user)
    yield name
    localpg.drop_database(tgt, name)


def _endpoints(lock_servers, source_db: str, target_db: str):
    src, tgt = lock_servers
    return endpoint(src, source_db, src.superuser, "source"), endpoint(tgt, target_db, tgt.admin_user, "target")


def _definitions(server: localpg.Server, db: str) -> list[tuple]:
    with server.connect(db, autocommit=True) as conn:
        return conn.execute(DEFINITIONS, {"s": SCHEMAS}).fetchall()


def _pre_data(source, target, run_id: str, **options) -> dict:
    run = LocalRun(source, target, run_id, **options)
    try:
        run.start()
    finally:
        run.close()
    with target.connect(autocommit=True) as conn:
        return state.phases_of_run(conn, run_id)["pre-data"]["detail"]


def test_the_budget_is_computed_from_the_settings_and_the_server_holds_it(lock_servers):
    for server in lock_servers:
        with server.connect("postgres") as conn:
            budget = locks.read_budget(conn, server.name)
            assert (budget.size, budget.allowed) == (16 * 122, 976), budget
            # the table really holds that many entries at least (spare shared memory stretches it)
            conn.execute(
                "SELECT pg_catalog.pg_advisory_xact_lock(i) FROM generate_series(1, %s::int) i", (budget.size,)
            )
            conn.rollback()


def test_preflight_prints_the_batches_and_pre_data_stays_within_budget_then_a_rerun_does(
    lock_servers, many_source, lock_target
):
    source, target = _endpoints(lock_servers, many_source, lock_target)
    with source.connect(autocommit=True) as src, target.connect(autocommit=True) as tgt:
        findings = batching.preflight(src, tgt, SCHEMAS, {"lock_share": 0.5})  # pre-flight's lock budget check
    (budget,) = [f for f in findings if f["check"] == "lock budget"]
    assert budget["verdict"] == "ok", budget
    assert "max_locks_per_transaction 16" in budget["detail"] and "pg_dump batch(es)" in budget["detail"], budget

    for attempt in ("first", "re-run"):
        with sampled(*lock_servers) as (on_source, on_target):
            detail = _pre_data(source, target, f"locks_{attempt[:2]}_{uuid.uuid4().hex[:6]}")
        measured = detail["locks"]
        allowed = measured["target_budget"]["allowed"]
        print(
            f"2k {attempt}: pg_locks peaks source {on_source.peak}, target {on_target.peak} of {allowed}; "
            f"{measured['transactions']} target transactions, the largest held {measured['max_held']}"
        )
        assert on_source.samples > 50 and on_target.samples > 50
        assert on_source.peak <= allowed and on_target.peak <= allowed, (attempt, on_source, on_target, measured)
        assert measured["max_held"] <= measured["target_budget"]["per_transaction"], measured
        assert measured["transactions"] > 10, measured
        assert _definitions(lock_servers[0], many_source) == _definitions(lock_servers[1], lock_target), attempt


def test_batches_order_every_cross_schema_dependency_whatever_the_schema_names(lock_servers, many_source):
    src, _ = lock_servers
    with src.connect(many_source, autocommit=True) as conn:
        budget = locks.read_budget(conn, "source")
        plan = batching.plan(conn, SCHEMAS, budget, budget)
    assert len(plan.batches) >= 3 and not plan.too_big, plan.describe()
    at = {f"{s}.{n}": i for i, b in enumerate(plan.batches) for s, n in b.relations}
    at.update({f"{s}.{n}": i for i, b in enumerate(plan.batches) for s, n in b.functions})
    label, amount_of = (next(k for k in at if k.startswith(p)) for p in ("zz_shared.dim_label", "aa_archive.amount_of"))
    assert at["zz_shared.dim_0"] <= at[label] < at["aa_archive.v_labels"]  # a view on a function on a table
    assert at["s012.fact_2"] <= at[amount_of] < at["s001.uses_fn"]  # a default calling such a function
    assert at["s003.events"] <= at["aa_archive.events_old"]  # a partition in another schema
    assert at["s012.fact_1"] <= at["aa_archive.v_recent"]  # a view over a later schema
    assert at["s007.fact_0"] <= at["aa_archive.s007_fact_0_m000"]  # an inheritance child in another schema
    assert at["zz_shared.doc_seq"] <= at["s002.ledger"]  # a standalone sequence before its default
    crossings = [at["zz_shared.dim_0"] < at["aa_archive.v_labels"], at["s003.events"] < at["aa_archive.events_old"]]
    assert any(crossings), "no dependency crosses a batch boundary: the test proves nothing"


@pytest.fixture(scope="module")
def small_source(lock_servers):
    src, _ = lock_servers
    name = _unique("small")
    create_db(src, name)
    generate(src.dsn(name), Shape(schemas=3, children=12, partitions=6))
    yield name
    localpg.drop_database(src, name)


def test_a_whole_run_within_a_quarter_of_the_lock_table_succeeds_equal(lock_servers, small_source, lock_target):
    source, target = _endpoints(lock_servers, small_source, lock_target)
    with sampled(*lock_servers) as samplers:
        migrate_locally(source, target, f"locks_run_{uuid.uuid4().hex[:6]}", lock_share=0.25)
    assert all(s.peak <= 488 for s in samplers), [s.peak for s in samplers]
    with lock_servers[0].connect(small_source, autocommit=True) as s, lock_servers[1].connect(lock_target) as t:
        assert_equal_data(s, t)


def test_locks_taken_by_production_fail_the_batch_by_name_and_its_retry_completes(
    lock_servers, small_source, lock_target
):
    source, target = _endpoints(lock_servers, small_source, lock_target)
    run = LocalRun(source, target, f"locks_prod_{uuid.uuid4().hex[:6]}")
    try:
        run._walk(run.steps()[: [s.task_id for s in run.steps()].index("pre_data")])
        with lock_servers[1].connect("postgres") as production:  # most of the table, in one open transaction
            production.execute("SELECT pg_catalog.pg_advisory_xact_lock(i) FROM generate_series(1, 3700) i")
            with pytest.raises(UnitFailed) as failed:
                run_local(run.env(PRE_DATA), label="pre-data")
            with lock_servers[1].connect(lock_target, autocommit=True) as conn:
                tables = conn.execute("SELECT count(*) FROM pg_catalog.pg_class WHERE relkind = 'r'").fetchone()[0]
        message = str(failed.value)
        assert "lock table ran out" in message and "max_locks_per_transaction 16" in message, message
        assert "entries held then" in message and "pre-data batch 1/" in message, message
        run_local(run.env(PRE_DATA), label="pre-data")  # the retry, once production let go
    finally:
        run.close()
    assert _definitions(lock_servers[0], small_source) == _definitions(lock_servers[1], lock_target)
    with lock_servers[1].connect(lock_target, autocommit=True) as conn:
        assert conn.execute("SELECT count(*) FROM pg_catalog.pg_class WHERE relkind = 'r'").fetchone()[0] > tables


def test_a_key_on_a_partitioned_table_too_big_for_any_batch_fails_preflight_naming_the_setting(
    lock_servers, lock_target
):
    src, tgt = lock_servers
    name = _unique("bigkey")
    create_db(src, name)
    try:
        with src.connect(name, autocommit=True) as conn:
            conn.execute("CREATE SCHEMA big; CREATE TABLE big.dim (id int PRIMARY KEY)")
            conn.execute("CREATE TABLE big.events (id int, dim_id int REFERENCES big.dim) PARTITION BY LIST (id)")
            for start in range(0, 400, 100):
                with conn.transaction():
                    for i in range(start, start + 100):
                        conn.execute(
                            sql.SQL("CREATE TABLE big.{} PARTITION OF big.events FOR VALUES IN ({})").format(
                                sql.Identifier(f"events_{i}"), sql.Literal(i)
                            )
                        )
        source, target = _endpoints(lock_servers, name, lock_target)
        before = _catalog_picture(tgt, lock_target)
        findings = preflight.run(source, target, catalog.inventory(source, ["big"], None), {})
        blocking = [f for f in findings if f["check"] == "lock budget" and f["verdict"] == "blocking"]
        assert len(blocking) == 1, findings
        detail = blocking[0]["detail"]
        assert "foreign key events_dim_id_fkey of big.events spans 402 relation(s)" in detail, detail
        assert "needs max_locks_per_transaction >= " in detail and "(now 16)" in detail, detail
        assert _catalog_picture(tgt, lock_target) == before
    finally:
        localpg.drop_database(src, name)


def _catalog_picture(server: localpg.Server, db: str) -> tuple:
    with server.connect(db, autocommit=True) as conn:
        return tuple(conn.execute("SELECT nspname FROM pg_catalog.pg_namespace ORDER BY 1").fetchall()), conn.execute(
            "SELECT count(*) FROM pg_catalog.pg_class"
        ).fetchone()[0]


def test_pg_dump_17_reads_a_long_list_from_a_filter_file(pg18_server):
    name = _unique("filter")
    create_db(pg18_server, name)
    try:
        with pg18_server.connect(name, autocommit=True) as conn:
            conn.execute("CREATE SCHEMA f")
            for i in range(70):
                conn.execute(sql.SQL("CREATE TABLE f.{} (id int)").format(sql.Identifier(f"t{i}")))
            version = catalog.server_version(conn)
            settings = dict(conn.execute(locks.SETTINGS).fetchall())
            budget = locks.read_budget(conn, "pg18")
        expected = settings["max_connections"] + settings["autovacuum_worker_slots"] + 2
        assert budget.slots == expected + settings["max_worker_processes"] + settings["max_wal_senders"]
        tool = pgtools.choose(version)
        assert tool.major >= pgtools.FILTER_OPTION_MAJOR, tool
        patterns = [("include", "table", f'"f"."t{i}"') for i in range(60)]
        with pgtools._pattern_args(tool, patterns) as args:
            assert len(args) == 1 and args[0].startswith("--filter="), args
        source = endpoint(pg18_server, name, pg18_server.superuser, "source")
        text = pgtools.dump_schema(
            source, [], "pre-data", None, version, "test", tables=[("f", f"t{i}") for i in range(60)]
        )
        created = {e.name for e in pgtools.split_entries(text)[1] if e.type == "TABLE"}
        assert created == {f"t{i}" for i in range(60)}, sorted(created)
    finally:
        localpg.drop_database(pg18_server, name)


def test_the_whole_pre_data_exhaustion_message_names_the_setting():
    budget = locks.Budget("target", 16, 122, 0, 0.5, 10)
    text = locks.exhausted_message("pre-data batch 2/8", budget, 1990, "out of shared memory\nHINT: ...")
    assert "max_locks_per_transaction 16 gives 1,952 entries, 1,990 entries held then" in text
    assert budget.setting_needed(3000) == 51  # (3000 + 64 reserved) / 0.5 / 122
    assert psycopg.errors.lookup(locks.OUT_OF_SHARED_MEMORY) is psycopg.errors.OutOfMemory


@pytest.mark.slow
def test_ten_thousand_tables_on_stock_lock_tables_within_half_of_each():
    """The seed's class: about 10,000 tables on servers whose lock-table settings are all stock (7,808
    entries); pre-data within half of each table (sampled), then a re-run's drops and re-creation too."""
    try:
        src, tgt = localpg.ensure_server("stock_source"), localpg.ensure_server("stock_target")
    except Exception as exc:  # noqa: BLE001
        pytest.fail(f"the stock-lock pair cannot be started: {exc}", pytrace=False)
    source_db, target_db = _unique("ten_k"), _unique("tgt")
    create_db(src, source_db)
    create_db(tgt, target_db, owner=tgt.admin_user)
    try:
        started = time.monotonic()
        summary = generate(src.dsn(source_db), Shape())
        generated = time.monotonic() - started
        assert summary["tables"] >= 9000, summary
        source = endpoint(src, source_db, src.superuser, "source")
        target = endpoint(tgt, target_db, tgt.admin_user, "target")
        for attempt in ("first", "re-run"):
            started = time.monotonic()
            with sampled(src, tgt) as (on_source, on_target):
                detail = _pre_data(source, target, f"ten_k_{attempt[:2]}_{uuid.uuid4().hex[:6]}")
            seconds = time.monotonic() - started
            allowed = detail["locks"]["target_budget"]["allowed"]
            assert allowed == 3904, detail["locks"]
            assert on_source.peak <= allowed and on_target.peak <= allowed, (attempt, on_source, on_target)
            print(
                f"10k {attempt}: generated in {generated:.0f} s; discover..pre-data {seconds:.0f} s; peaks "
                f"source {on_source.peak}, target {on_target.peak} of {allowed}; {detail['locks']}"
            )
        schemas = ["aa_archive", "zz_shared", *Shape().schema_names()]
        with src.connect(source_db, autocommit=True) as s, tgt.connect(target_db, autocommit=True) as t:
            want = s.execute(DEFINITIONS, {"s": schemas}).fetchall()
            assert want == t.execute(DEFINITIONS, {"s": schemas}).fetchall()
    finally:
        localpg.drop_database(src, source_db)
        localpg.drop_database(tgt, target_db)
