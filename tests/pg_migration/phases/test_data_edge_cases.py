"""The data path's edge cases (issue 19): a source table rewritten or truncated after the cut (item 1),
and tables whose copyable column list is unusual -- none at all, only generated columns, dropped
columns (item 3). All on the real servers."""

from __future__ import annotations

import uuid

import pytest

from include.pg_migration import catalog, state
from include.pg_migration.errors import UnitFailed
from include.pg_migration.harness import LocalRun, ReplicateRun, migrate_locally
from include.pg_migration.phases.data import PsqlSource, copy_table
from include.pg_migration.phases.validate import validate_schema
from include.pg_migration.sessions import open_source_snapshot
from scripts import localpg
from tests.conftest import Pair, _unique, assert_equal_data, create_db, table_fingerprints
from tests.pg_migration.replicate.conftest import publisher, rpair  # noqa: F401 - rpair is a fixture

REWRITTEN = "rewritten or truncated on the source after the cut"
FILENODE = "SELECT relfilenode FROM pg_catalog.pg_class WHERE oid = %s::regclass"


def _run_id() -> str:
    return f"test__{uuid.uuid4().hex[:8]}"


# -- item 1: rewritten or truncated after the cut ---------------------------------------------------------

CUT_DDL = """
CREATE SCHEMA keep; CREATE SCHEMA gone; CREATE SCHEMA retyped;
CREATE TABLE keep.t (id int PRIMARY KEY, v int);
CREATE TABLE gone.t (id int PRIMARY KEY, v int);
CREATE TABLE retyped.t (id int PRIMARY KEY, v int);
INSERT INTO keep.t SELECT g, g FROM generate_series(1, 300) g;
INSERT INTO gone.t SELECT g, g FROM generate_series(1, 400) g;
INSERT INTO retyped.t SELECT g, g FROM generate_series(1, 500) g;
"""

#: Not MVCC-safe: the run's older snapshot then sees the new, empty (or not yet visible) file.
#: ``TYPE integer USING v + 0`` keeps the type (so the kept target definition still fits) but rewrites.
AFTER_THE_CUT = {
    "gone": "TRUNCATE gone.t; INSERT INTO gone.t SELECT g, -g FROM generate_series(1, 50) g",
    "retyped": "ALTER TABLE retyped.t ALTER COLUMN v TYPE integer USING v + 0",
}


def test_a_table_rewritten_or_truncated_after_the_cut_fails_its_unit_by_name(pair):
    with pair.source_su() as src:
        src.execute(CUT_DDL)
    first = _run_id()
    run = LocalRun(pair.source, pair.target, first, pool_size=2)
    try:
        plan = run.start()
        with pair.source_su() as src:
            before = {s: src.execute(FILENODE, (f"{s}.t",)).fetchone()[0] for s in AFTER_THE_CUT}
            for statement in AFTER_THE_CUT.values():
                src.execute(statement)
            after = {s: src.execute(FILENODE, (f"{s}.t",)).fetchone()[0] for s in AFTER_THE_CUT}
        assert all(before[s] != after[s] for s in AFTER_THE_CUT), "the statements must rewrite the tables"
        units = {u["schema"]: u["unit_id"] for u in plan["units"]}
        assert set(units) == {"keep", "gone", "retyped"}
        run.unit(units["keep"])
        for schema in AFTER_THE_CUT:
            with pytest.raises(UnitFailed, match=rf"table {schema}\.t: {REWRITTEN}"):
                run.unit(units[schema])
    finally:
        run.close()
    with pair.target_su() as tgt:
        for schema in AFTER_THE_CUT:
            assert tgt.execute(f"SELECT count(*) FROM {schema}.t").fetchone()[0] == 0
            unit = state.get_unit(tgt, first, units[schema])
            assert unit["status"] == "failed" and REWRITTEN in unit["error"] and f"{schema}.t" in unit["error"]
        recorded = {s for (s,) in tgt.execute("SELECT schema_name FROM _pg_migration.tables")}
        assert recorded == {"keep"}  # nothing of the rewritten tables was committed, not even a record
        assert tgt.execute("SELECT count(*) FROM keep.t").fetchone()[0] == 300

    second = _run_id()
    migrate_locally(pair.source, pair.target, second, pool_size=2, resume=True)  # a new snapshot
    with pair.source_su() as src, pair.target_su() as tgt:
        assert_equal_data(src, tgt)
        assert tgt.execute("SELECT count(*), min(v) FROM gone.t").fetchone() == (50, -50)
        assert tgt.execute("SELECT count(*) FROM retyped.t").fetchone()[0] == 500
    for schema in AFTER_THE_CUT:
        assert validate_schema(pair.source, pair.target, schema, run_id=second).ok


def test_in_a_snapshot_pg_class_is_old_and_pg_relation_filenode_is_live(pair):
    """What the check relies on, on the real server: in a REPEATABLE READ snapshot, ``pg_class`` rows
    are the snapshot's while ``pg_relation_filenode()`` reads the live catalog (before and after the lock)."""
    with pair.source_su() as src:
        src.execute(CUT_DDL)
    snap = open_source_snapshot(pair.source, "pgmig test", None)
    with snap:
        oid = snap.execute("SELECT 'gone.t'::regclass::oid::bigint").fetchone()[0]
        assert len(set(snap.execute(catalog.FILENODES, {"oid": oid}).fetchone())) == 1
        with pair.source_su() as live:
            live.execute("TRUNCATE gone.t")
            now = live.execute(FILENODE, ("gone.t",)).fetchone()[0]
        in_snapshot, live_node = snap.execute(catalog.FILENODES, {"oid": oid}).fetchone()
        assert in_snapshot != now and live_node == now
        snap.execute("LOCK TABLE ONLY gone.t IN ACCESS SHARE MODE")
        assert snap.execute(catalog.FILENODES, {"oid": oid}).fetchone() == (in_snapshot, now)


@pytest.mark.parametrize("reader", ["psql", "python"])
def test_the_check_holds_on_both_source_readers(pair, reader):
    """The psql child and the Python fallback: the same check, in the copying transaction."""
    with pair.source_su() as src:
        src.execute(CUT_DDL)
    with pair.target.connect(autocommit=True) as tgt:
        tgt.execute(CUT_DDL.split("INSERT")[0])
        state.ensure(tgt)
    src = open_source_snapshot(pair.source, "pgmig test", None)  # the cut
    with src, pair.target.connect("pgmig test") as tgt:
        source_reader = PsqlSource.for_unit(pair.source, "pgmig test", src) if reader == "psql" else None
        assert (source_reader is not None) == (reader == "psql")
        with pair.source_su() as live:
            live.execute("TRUNCATE gone.t")
        with pytest.raises(UnitFailed, match=rf"table gone\.t: {REWRITTEN}"):
            copy_table(src, tgt, "gone", "t", "run", "unit", None, True, source_reader)
        result = copy_table(src, tgt, "keep", "t", "run", "unit", None, True, source_reader)
        assert (result.source_rows, result.target_rows) == (300, 300)
        # The check's lock was the table's copy only: DDL on a copied table does not queue behind the unit.
        with pair.source_su() as live:
            live.execute("SET lock_timeout = '2s'")
            live.execute("ALTER TABLE keep.t ADD COLUMN w int")
    with pair.target_su() as tgt:
        assert tgt.execute("SELECT count(*) FROM gone.t").fetchone()[0] == 0


def test_replicate_mode_checks_the_slot_snapshot_too(rpair, tmp_path):  # noqa: F811 - the fixture
    p = rpair
    with p.source_su() as src:
        src.execute(CUT_DDL)
    rid = _run_id()
    run = ReplicateRun(p.source, p.target, rid, publisher=publisher(p), log_dir=tmp_path)
    try:
        units = {u["schema"]: u["unit_id"] for u in run.start()["units"]}
        with p.source_su() as src:
            src.execute(AFTER_THE_CUT["gone"])
        run.unit(units["keep"])
        with pytest.raises(UnitFailed, match=rf"table gone\.t: {REWRITTEN}"):
            run.unit(units["gone"])
    finally:
        run.end()  # not streaming: the slot and publication are dropped
    with p.target_su() as tgt:
        assert tgt.execute("SELECT count(*) FROM gone.t").fetchone()[0] == 0


# -- item 3: unusual column lists ----------------------------------------------------------------------------

COLUMNS_DDL = """
CREATE SCHEMA e;
CREATE TABLE e.no_columns ();
INSERT INTO e.no_columns DEFAULT VALUES; INSERT INTO e.no_columns DEFAULT VALUES;
INSERT INTO e.no_columns DEFAULT VALUES;
CREATE TABLE e.no_rows_no_columns ();
CREATE TABLE e.only_generated (a int GENERATED ALWAYS AS (7) STORED, b text GENERATED ALWAYS AS ('x') STORED);
INSERT INTO e.only_generated SELECT FROM generate_series(1, 4);
CREATE TABLE e.some_generated (id int, twice int GENERATED ALWAYS AS (id * 2) STORED, note text);
INSERT INTO e.some_generated (id, note) SELECT g, 'n' || g FROM generate_series(1, 5) g;
CREATE TABLE e.dropped (id int, junk text, v int, gone2 date);
INSERT INTO e.dropped SELECT g, 'j', g * 10, now() FROM generate_series(1, 6) g;
ALTER TABLE e.dropped DROP COLUMN junk;
ALTER TABLE e.dropped DROP COLUMN gone2;
CREATE TABLE e.all_dropped (x int, y text);
INSERT INTO e.all_dropped SELECT g, 'y' FROM generate_series(1, 8) g;
ALTER TABLE e.all_dropped DROP COLUMN x;
ALTER TABLE e.all_dropped DROP COLUMN y;
CREATE TABLE e.dropped_then_generated (id int, junk int, g int GENERATED ALWAYS AS (1) STORED);
INSERT INTO e.dropped_then_generated (id, junk) SELECT g, g FROM generate_series(1, 9) g;
ALTER TABLE e.dropped_then_generated DROP COLUMN id;
ALTER TABLE e.dropped_then_generated DROP COLUMN junk;
"""

EXPECTED_ROWS = {
    "no_columns": 3,
    "no_rows_no_columns": 0,
    "only_generated": 4,
    "some_generated": 5,
    "dropped": 6,
    "all_dropped": 8,
    "dropped_then_generated": 9,
}


def _check_migrated(pair: Pair, schema: str, expected: dict[str, int]) -> None:
    migrate_locally(pair.source, pair.target, _run_id(), pool_size=2)
    with pair.source_su() as src, pair.target_su() as tgt:
        assert_equal_data(src, tgt)
        counts = {t: n for (s, t), (n, _) in table_fingerprints(tgt).items() if s == schema}
        assert counts == expected
        recorded = {
            t: (a, b)
            for t, a, b in tgt.execute(
                "SELECT table_name, source_rows, target_rows FROM _pg_migration.tables WHERE schema_name = %s",
                (schema,),
            )
        }
        assert recorded == {t: (n, n) for t, n in expected.items()}
    for mode in ("counts", "checksums"):
        result = validate_schema(pair.source, pair.target, schema, mode=mode)
        assert result.ok, (mode, result.mismatches)
        assert {t.table: t.target_rows for t in result.tables} == expected


def test_tables_without_copyable_columns_copy_their_exact_rows(pair):
    with pair.source_su() as src:
        src.execute(COLUMNS_DDL)
    _check_migrated(pair, "e", EXPECTED_ROWS)


@pytest.fixture
def pg18_pair(pg18_server):
    p = Pair(pg18_server, pg18_server, _unique("src"), _unique("tgt"))
    create_db(p.source_server, p.source_db)
    create_db(p.target_server, p.target_db, owner=p.target_server.admin_user)
    yield p
    localpg.drop_database(p.source_server, p.source_db)
    localpg.drop_database(p.target_server, p.target_db)


VIRTUAL_DDL = """
CREATE SCHEMA v;
CREATE TABLE v.only_virtual (a int GENERATED ALWAYS AS (7) VIRTUAL);
INSERT INTO v.only_virtual SELECT FROM generate_series(1, 4);
CREATE TABLE v.mixed (id int, twice int GENERATED ALWAYS AS (id * 2) VIRTUAL,
                      thrice int GENERATED ALWAYS AS (id * 3) STORED);
INSERT INTO v.mixed (id) SELECT generate_series(1, 5);
CREATE TABLE v.virtual_after_drop (junk int, a int GENERATED ALWAYS AS (1) VIRTUAL);
INSERT INTO v.virtual_after_drop (junk) SELECT generate_series(1, 6);
ALTER TABLE v.virtual_after_drop DROP COLUMN junk;
"""


def test_virtual_generated_columns_on_postgresql_18(pg18_pair):
    with pg18_pair.source_su() as src:
        src.execute(VIRTUAL_DDL)
    _check_migrated(pg18_pair, "v", {"only_virtual": 4, "mixed": 5, "virtual_after_drop": 6})
