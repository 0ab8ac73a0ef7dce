"""Post-data: foreign keys added NOT VALID, then validated on parallel sessions; retry-safe; violations named."""

from __future__ import annotations

import uuid

import pytest

from include.pg_migration.errors import MigrationError
from include.pg_migration.harness import LocalRun
from include.pg_migration.runner import run_local

UNVALIDATED = "SELECT count(*) FROM pg_catalog.pg_constraint WHERE contype = 'f' AND NOT convalidated"


def _loaded_run(pair) -> LocalRun:
    with pair.source_su() as src:
        src.execute("""
            CREATE SCHEMA a; CREATE SCHEMA b;
            CREATE TABLE a.parent (id int PRIMARY KEY);
            CREATE TABLE b.child (id int PRIMARY KEY, parent_id int REFERENCES a.parent);
            CREATE TABLE b.other (id int PRIMARY KEY, parent_id int REFERENCES a.parent);
            CREATE MATERIALIZED VIEW b.counts AS SELECT count(*) AS n FROM b.child;
            INSERT INTO a.parent SELECT generate_series(1, 1000);
            INSERT INTO b.child SELECT g, g FROM generate_series(1, 5000) g WHERE g <= 1000;
            INSERT INTO b.other SELECT g, 1 + g % 1000 FROM generate_series(1, 3000) g;
        """)
    run = LocalRun(pair.source, pair.target, f"test__{uuid.uuid4().hex[:8]}", pool_size=2)
    plan = run.start()
    for unit in plan["units"]:
        run.unit(unit["unit_id"])
    return run


def _post_data(run: LocalRun) -> None:
    run_local(run.env("post-data"), label="post-data")


def test_foreign_keys_end_validated_and_a_retry_validates_what_an_attempt_left_not_valid(pair):
    run = _loaded_run(pair)
    try:
        _post_data(run)
        with pair.target_su() as tgt:
            assert tgt.execute(UNVALIDATED).fetchone()[0] == 0
            assert tgt.execute("SELECT n FROM b.counts").fetchone()[0] == 1000
            detail = tgt.execute(
                "SELECT detail FROM _pg_migration.phases WHERE run_id = %s AND phase = 'post-data'", (run.run_id,)
            ).fetchone()[0]
            assert detail["not_valid_fks"] == 2 and detail["sessions"] == 2
            # An attempt killed between "ADD ... NOT VALID" and "VALIDATE": the key exists, unvalidated.
            tgt.execute("ALTER TABLE b.child DROP CONSTRAINT child_parent_id_fkey")
            tgt.execute(
                "ALTER TABLE b.child ADD CONSTRAINT child_parent_id_fkey FOREIGN KEY (parent_id) "
                "REFERENCES a.parent NOT VALID"
            )
            tgt.execute(
                "UPDATE _pg_migration.ddl SET applied_at = NULL WHERE run_id = %s AND kind = 'FK CONSTRAINT'",
                (run.run_id,),
            )
            assert tgt.execute(UNVALIDATED).fetchone()[0] == 1
        _post_data(run)  # the retry
        with pair.target_su() as tgt:
            assert tgt.execute(UNVALIDATED).fetchone()[0] == 0
    finally:
        run.close()


def test_a_violated_foreign_key_fails_post_data_naming_it(pair):
    run = _loaded_run(pair)
    try:
        with pair.target_su() as tgt:
            tgt.execute("DELETE FROM a.parent WHERE id = 7")  # b.other rows now point nowhere
        with pytest.raises(MigrationError) as failed:
            _post_data(run)
        assert "b.other.other_parent_id_fkey" in str(failed.value)
        assert "violated" in str(failed.value)
    finally:
        run.close()


def test_a_key_not_valid_on_the_source_stays_not_valid_with_its_orphans(pair):
    with pair.source_su() as src:
        src.execute("""
            CREATE SCHEMA c;
            CREATE TABLE c.parent (id int PRIMARY KEY);
            CREATE TABLE c.child (id int PRIMARY KEY, parent_id int);
            INSERT INTO c.parent VALUES (1);
            INSERT INTO c.child VALUES (1, 1), (2, 99);  -- 99: an orphan the source tolerates
            ALTER TABLE c.child ADD CONSTRAINT child_parent_fk FOREIGN KEY (parent_id) REFERENCES c.parent NOT VALID;
        """)
    run = LocalRun(pair.source, pair.target, f"test__{uuid.uuid4().hex[:8]}", pool_size=2)
    try:
        for unit in run.start()["units"]:
            run.unit(unit["unit_id"])
        _post_data(run)
        with pair.target_su() as tgt:
            assert tgt.execute(
                "SELECT convalidated FROM pg_constraint WHERE conname = 'child_parent_fk'"
            ).fetchone() == (False,)
            assert tgt.execute("SELECT count(*) FROM c.child").fetchone()[0] == 2
    finally:
        run.close()


def test_keys_with_a_leading_index_are_checked_by_merge_join_and_violations_still_fail(pair):
    """The index-walking validation (hash join off) finds orphans exactly as the default plan does."""
    from include.pg_migration.phases.post_data import FK_LEADING_INDEX

    with pair.source_su() as src:
        src.execute("""
            CREATE SCHEMA m;
            CREATE TABLE m.parent (a int, b int, PRIMARY KEY (a, b));
            CREATE TABLE m.child (id int PRIMARY KEY, pa int, pb int, FOREIGN KEY (pb, pa) REFERENCES m.parent (b, a));
            CREATE INDEX child_pa_pb ON m.child (pa, pb, id);   -- the key's columns lead, in another order
            CREATE TABLE m.loose (id int PRIMARY KEY, pa int, pb int, FOREIGN KEY (pa, pb) REFERENCES m.parent);
            CREATE INDEX loose_pa ON m.loose (pa);               -- only part of the key: no
            CREATE TABLE m.small (id int PRIMARY KEY);
            CREATE TABLE m.tiny (id int PRIMARY KEY, small_id int REFERENCES m.small);
            CREATE INDEX tiny_small_id ON m.tiny (small_id);     -- indexed, but 10 referenced keys: hash
            INSERT INTO m.parent SELECT g, -g FROM generate_series(1, 120000) g;
            INSERT INTO m.child SELECT g, 1 + g % 120000, -(1 + g % 120000) FROM generate_series(1, 6000) g;
            INSERT INTO m.loose SELECT g, g, -g FROM generate_series(1, 100) g;
            INSERT INTO m.small SELECT generate_series(1, 10);
            INSERT INTO m.tiny SELECT g, 1 + g % 10 FROM generate_series(1, 100) g;
        """)
    run = LocalRun(pair.source, pair.target, f"test__{uuid.uuid4().hex[:8]}", pool_size=2)
    try:
        for unit in run.start()["units"]:
            run.unit(unit["unit_id"])
        with pair.target_su() as tgt:
            tgt.execute("DELETE FROM m.parent WHERE a = 1500")  # m.child row 1499 now points nowhere
        with pytest.raises(MigrationError) as failed:
            _post_data(run)
        assert "m.child.child_pb_pa_fkey" in str(failed.value) and "violated" in str(failed.value)
        assert "loose" not in str(failed.value)
        with pair.target_su() as tgt:  # the keys exist now (the violated one NOT VALID)
            leading = {
                table: tgt.execute(FK_LEADING_INDEX, {"schema": "m", "table": table, "name": name}).fetchone()[0]
                for table, name in (
                    ("child", "child_pb_pa_fkey"),
                    ("loose", "loose_pa_pb_fkey"),
                    ("tiny", "tiny_small_id_fkey"),
                )
            }
            assert leading == {"child": True, "loose": False, "tiny": False}
    finally:
        run.close()
