"""Large objects: same OIDs and bytes on the target, in batched transactions; a retry writes them anew."""

from __future__ import annotations

import uuid

from include.pg_migration.harness import LocalRun
from include.pg_migration.phases import large_objects
from include.pg_migration.runner import run_local

DIGESTS = """
SELECT m.oid::bigint, pg_catalog.md5(pg_catalog.lo_get(m.oid)) FROM pg_catalog.pg_largeobject_metadata m ORDER BY 1
"""


def test_objects_of_every_size_across_batches_arrive_equal_and_a_retry_rewrites_them(pair):
    with pair.source_su() as src:
        src.execute("""
            CREATE SCHEMA docs;
            CREATE TABLE docs.files (id int PRIMARY KEY, blob oid);
            INSERT INTO docs.files VALUES
                (1, lo_from_bytea(0, '')),                                                   -- empty
                (2, lo_from_bytea(0, convert_to(repeat('abc', 1000000), 'UTF8'))),           -- 3 chunks
                (3, lo_from_bytea(0, convert_to(repeat('z', 1024 * 1024), 'UTF8')));         -- exactly 1 chunk
            INSERT INTO docs.files SELECT g, lo_from_bytea(0, convert_to('doc ' || g, 'UTF8'))
              FROM generate_series(4, 1203) g;                                               -- > one batch
        """)
        expected = src.execute(DIGESTS).fetchall()
    assert len(expected) == 1203
    run = LocalRun(pair.source, pair.target, f"test__{uuid.uuid4().hex[:8]}", pool_size=2)
    try:
        run.start()
        with pair.target.connect(autocommit=True) as tgt:  # an object of the same OID: a killed attempt's
            tgt.execute("SELECT lo_from_bytea(%s, 'stale')", (expected[1][0],))
        run_local(run.env("large-objects"), label="large-objects")
        with pair.target_su() as tgt:
            assert tgt.execute(DIGESTS).fetchall() == expected
            detail = tgt.execute(
                "SELECT detail FROM _pg_migration.phases WHERE run_id = %s AND phase = 'large-objects'", (run.run_id,)
            ).fetchone()[0]
        assert detail["count"] == 1203 and detail["bytes"] == 3_000_000 + 1024 * 1024 + sum(
            len(f"doc {g}") for g in range(4, 1204)
        )
        run_local(run.env("large-objects"), label="large-objects")  # the retry
        with pair.target_su() as tgt:
            assert tgt.execute(DIGESTS).fetchall() == expected
    finally:
        run.close()
    assert large_objects.BATCH_OBJECTS < 1203  # the run above crossed a batch boundary


def test_an_object_the_target_user_cannot_replace_fails_the_phase_naming_it_and_its_batch_rolls_back(pair):
    from include.pg_migration.errors import MigrationError

    with pair.source_su() as src:
        src.execute("SELECT lo_from_bytea(0, convert_to('doc ' || g, 'UTF8')) FROM generate_series(1, 20) g")
        oids = [r[0] for r in src.execute("SELECT oid FROM pg_largeobject_metadata ORDER BY 1").fetchall()]
    run = LocalRun(pair.source, pair.target, f"test__{uuid.uuid4().hex[:8]}", pool_size=2)
    try:
        run.start()
        with pair.target_su() as tgt:  # owned by another role: the migration's user may not unlink it
            tgt.execute("SELECT lo_from_bytea(%s, 'not yours')", (oids[10],))
        try:
            run_local(run.env("large-objects"), label="large-objects")
            raise AssertionError("the phase should have failed")
        except MigrationError as exc:
            assert f"large object {oids[10]}" in str(exc)
        with pair.target_su() as tgt:  # nothing of the failed batch stayed; the foreign object is intact
            assert tgt.execute("SELECT count(*) FROM pg_largeobject_metadata").fetchone()[0] == 1
            assert tgt.execute("SELECT lo_get(%s)", (oids[10],)).fetchone()[0] == b"not yours"
    finally:
        run.close()
