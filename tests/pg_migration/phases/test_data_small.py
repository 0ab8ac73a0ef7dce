"""The data unit's batched path for small tables (include/pg_migration/phases/data_small.py), on the
real servers: several tables per target transaction, each checked against the cut, never a child's
rows, all of a batch or nothing of it, a big table beside them still on psql's stream."""

from __future__ import annotations

import uuid

import pytest

from include.pg_migration import state
from include.pg_migration.errors import UnitFailed
from include.pg_migration.harness import LocalRun
from include.pg_migration.phases import data_small
from include.pg_migration.phases.validate import validate_schema
from include.pg_migration.sessions import open_source_snapshot
from tests.conftest import assert_equal_data

REWRITTEN = "rewritten or truncated on the source after the cut"

#: One schema of several small tables (the inheritance parent sorts after its sibling, so it is not
#: first in its batch), its child in another schema, one table over 1 MB, a table with a trigger and
#: one with a user type (text COPY).
DDL = """
CREATE SCHEMA a; CREATE SCHEMA b;
CREATE TYPE a.mood AS (happy boolean, level int);
CREATE TABLE a.aa (id int PRIMARY KEY, v text);
CREATE TABLE a.parent (id int PRIMARY KEY, v text);
CREATE TABLE b.child (extra int) INHERITS (a.parent);
CREATE TABLE a.typed (id int PRIMARY KEY, m a.mood);
CREATE TABLE a.trig (id int PRIMARY KEY, v int);
CREATE FUNCTION a.bump() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN NEW.v := NEW.v + 1000; RETURN NEW; END$$;
CREATE TRIGGER bump BEFORE INSERT ON a.trig FOR EACH ROW EXECUTE FUNCTION a.bump();
CREATE TABLE a.zbig (id int PRIMARY KEY, v text);
CREATE INDEX ON a.aa (v);
INSERT INTO a.aa SELECT g, 'aa ' || g FROM generate_series(1, 40) g;
INSERT INTO a.parent SELECT g, 'p ' || g FROM generate_series(1, 30) g;
INSERT INTO b.child SELECT g, 'c ' || g, g FROM generate_series(100, 120) g;
INSERT INTO a.typed SELECT g, ROW(g % 2 = 0, g)::a.mood FROM generate_series(1, 25) g;
ALTER TABLE a.trig DISABLE TRIGGER bump;
INSERT INTO a.trig SELECT g, g FROM generate_series(1, 10) g;
ALTER TABLE a.trig ENABLE TRIGGER bump;
INSERT INTO a.zbig SELECT g, repeat(md5(g::text), 4) FROM generate_series(1, 12000) g;
ANALYZE;
"""


def _run_id() -> str:
    return f"test__{uuid.uuid4().hex[:8]}"


def test_small_tables_load_in_batches_beside_a_big_one(pair):
    with pair.source_su() as src:
        src.execute(DDL)
    run = LocalRun(pair.source, pair.target, _run_id(), pool_size=2)
    try:
        plan = run.start()
        units = {u["schema"]: u["unit_id"] for u in plan["units"]}
        run.unit(units["b"])  # the child first: a's batch must not truncate it (TRUNCATE ONLY a, ONLY b)
        run.unit(units["a"])
        run.finish()
    finally:
        run.close()
    with pair.source_su() as src, pair.target_su() as tgt:
        assert_equal_data(src, tgt)
        assert tgt.execute("SELECT count(*) FROM ONLY b.child").fetchone()[0] == 21
        assert tgt.execute("SELECT sum(v) FROM a.trig").fetchone()[0] == 55  # the trigger did not fire
        assert tgt.execute("SELECT tgenabled FROM pg_trigger WHERE tgname = 'bump'").fetchone()[0] == "O"
        formats = dict(tgt.execute("SELECT table_name, copy_format FROM _pg_migration.tables WHERE schema_name = 'a'"))
        assert formats == {"aa": "binary", "parent": "binary", "typed": "text", "trig": "binary", "zbig": "binary"}
        built = {r[0] for r in tgt.execute("SELECT indexname FROM pg_indexes WHERE schemaname = 'a'")}
        assert {"aa_pkey", "aa_v_idx", "parent_pkey", "typed_pkey", "trig_pkey", "zbig_pkey"} <= built
        assert (
            tgt.execute(
                "SELECT count(*) FROM pg_stat_user_tables WHERE schemaname = 'a' AND last_analyze IS NULL"
            ).fetchone()[0]
            == 0
        )
    assert validate_schema(pair.source, pair.target, "a", run_id=run.run_id).ok


def test_a_table_rewritten_after_the_cut_fails_its_batch_by_name(pair):
    with pair.source_su() as src:
        src.execute(DDL)
    run = LocalRun(pair.source, pair.target, _run_id(), pool_size=2)
    try:
        plan = run.start()
        with pair.source_su() as src:
            src.execute("TRUNCATE a.parent")  # not MVCC-safe: the run's snapshot would see no row
        unit = next(u["unit_id"] for u in plan["units"] if u["schema"] == "a")
        with pytest.raises(UnitFailed, match=rf"table a\.parent: {REWRITTEN}"):
            run.unit(unit)
    finally:
        run.close()
    with pair.target_su() as tgt:
        recorded = {t for (t,) in tgt.execute("SELECT table_name FROM _pg_migration.tables WHERE schema_name = 'a'")}
        assert recorded == {"zbig"}  # the big table went alone and first; nothing of the small batch
        assert tgt.execute("SELECT count(*) FROM a.aa").fetchone()[0] == 0


def test_batches_and_the_number_per_transaction():
    assert list(data_small.batches(list("abcde"), 2)) == [["a", "b"], ["c", "d"], ["e"]]
    assert list(data_small.batches([], 16)) == []
    assert 1 <= data_small.tables_per_transaction() <= 64
    assert data_small.SMALL_TABLE_BYTES == 1024 * 1024


def test_state_rows_of_a_batch_commit_with_it(pair):
    """A batch whose second table fails to load (the target's column type refuses the rows) commits
    nothing of the batch: no rows, no records."""
    with pair.source_su() as src:
        src.execute(DDL)
    run = LocalRun(pair.source, pair.target, _run_id(), pool_size=2)
    try:
        plan = run.start()
        with pair.target_su() as tgt:
            tgt.execute("ALTER TABLE a.parent ADD CONSTRAINT tiny CHECK (id < 5)")
        unit = next(u["unit_id"] for u in plan["units"] if u["schema"] == "a")
        with pytest.raises(UnitFailed, match=r"table a\.parent: .*tiny"):
            run.unit(unit)
    finally:
        run.close()
    with pair.target_su() as tgt:
        assert state.loaded_tables(tgt, ["a"]).keys() == {("a", "zbig")}
        assert tgt.execute("SELECT count(*) FROM a.aa").fetchone()[0] == 0


def test_a_reload_empties_tables_whose_rules_would_keep_rows(pair):
    """A reload after post-data (resume): a DO INSTEAD NOTHING rule would make a DELETE leave the old
    rows: such a table is TRUNCATEd, the others emptied by DELETE. (Forced row security is TRUNCATEd
    too, but the target's COPY refuses such a table anyway, by name, as on the big tables' path.)"""
    ddl = """
    CREATE SCHEMA r;
    CREATE TABLE r.ruled (id int PRIMARY KEY); CREATE TABLE r.forced (id int PRIMARY KEY);
    CREATE TABLE r.plain (id int PRIMARY KEY);
    """
    with pair.source_su() as src:
        src.execute(ddl)
        src.execute(
            "INSERT INTO r.ruled VALUES (1), (2); INSERT INTO r.forced VALUES (3); INSERT INTO r.plain VALUES (4)"
        )
    with pair.target_su() as tgt:
        tgt.execute(ddl)
        tgt.execute(
            "INSERT INTO r.ruled VALUES (7), (8), (9); INSERT INTO r.forced VALUES (7); INSERT INTO r.plain VALUES (7)"
        )
        tgt.execute("CREATE RULE keep AS ON DELETE TO r.ruled DO INSTEAD NOTHING")
        tgt.execute("GRANT ALL ON SCHEMA r TO aurora_admin; GRANT ALL ON ALL TABLES IN SCHEMA r TO aurora_admin")
        for t in ("ruled", "forced", "plain"):
            tgt.execute(f"ALTER TABLE r.{t} OWNER TO aurora_admin")
    src = open_source_snapshot(pair.source, "test", None)
    with src, pair.target.connect("test") as tgt:
        oids = data_small.unit_tables(src, "r", ["ruled", "forced", "plain"])
        results = data_small.copy_batch(
            src, tgt, "r", {t: oids[t][0] for t in ("ruled", "forced", "plain")}, lambda cur, rows: None, True
        )
    assert {r.table: r.source_rows for r in results} == {"ruled": 2, "forced": 1, "plain": 1}
    with pair.target_su() as tgt:
        assert tgt.execute("SELECT array_agg(id ORDER BY id) FROM r.ruled").fetchone()[0] == [1, 2]
        assert tgt.execute("SELECT array_agg(id) FROM r.forced").fetchone()[0] == [3]
        assert tgt.execute("SELECT array_agg(id) FROM r.plain").fetchone()[0] == [4]


def test_a_batch_whose_index_build_fails_names_the_table_and_builds_the_others(pair):
    with pair.source_su() as src:
        src.execute(DDL)
    run = LocalRun(pair.source, pair.target, _run_id(), pool_size=2)
    try:
        plan = run.start()
        with pair.target_su() as tgt:  # takes the name a.aa's primary key needs
            tgt.execute("CREATE INDEX aa_pkey ON a.zbig (v)")
        unit = next(u["unit_id"] for u in plan["units"] if u["schema"] == "a")
        with pytest.raises(UnitFailed, match=r'table a\.aa: building its indexes/keys failed: relation "aa_pkey"'):
            run.unit(unit)
    finally:
        run.close()
    with pair.target_su() as tgt:
        built = {r[0] for r in tgt.execute("SELECT indexname FROM pg_indexes WHERE schemaname = 'a'")}
        assert {"parent_pkey", "typed_pkey", "trig_pkey", "zbig_pkey"} <= built  # the batch's other tables
        assert tgt.execute("SELECT count(*) FROM a.aa").fetchone()[0] == 40  # the rows committed before
