"""resume: true keeps exactly the tables an earlier run loaded and verified, and copies the rest."""

from __future__ import annotations

import uuid

from include.pg_migration.harness import LocalRun
from include.pg_migration.phases.validate import validate_schema
from tests.conftest import assert_equal_data


def test_resume_skips_exactly_the_verified_tables(demo_pair):
    first = f"test__{uuid.uuid4().hex[:8]}"
    run = LocalRun(demo_pair.source, demo_pair.target, first, pool_size=4)
    try:
        plan = run.start()
        done_units = plan["units"][: len(plan["units"]) // 2]
        for unit in done_units:
            run.unit(unit["unit_id"])
    finally:
        run.close()  # "the run failed at hour 20"
    kept = {(u["schema"], t) for u in done_units for t in u["tables"]}

    second = f"test__{uuid.uuid4().hex[:8]}"
    from include.pg_migration.harness import migrate_locally

    migrate_locally(demo_pair.source, demo_pair.target, second, pool_size=4, resume=True)
    with demo_pair.target_su() as tgt:
        loaded_by = {
            (s, t): r for s, t, r in tgt.execute("SELECT schema_name, table_name, run_id FROM _pg_migration.tables")
        }
    assert {k for k, r in loaded_by.items() if r == first} == kept
    assert all(r == second for k, r in loaded_by.items() if k not in kept)
    with demo_pair.source_su() as src, demo_pair.target_su() as tgt:
        assert_equal_data(src, tgt)
    notes = [
        t.note
        for s in plan["schemas"]
        for t in validate_schema(demo_pair.source, demo_pair.target, s, run_id=second).tables
    ]
    assert any("another snapshot" in n for n in notes)
