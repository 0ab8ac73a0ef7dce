"""Validation catches every kind of difference, by name; a clean migration passes; writes don't fool it."""

from __future__ import annotations

import uuid

import pytest

from include.pg_migration.harness import migrate_locally
from include.pg_migration.phases.validate import validate_database, validate_schema


@pytest.fixture
def migrated(demo_pair):
    run_id = f"test__{uuid.uuid4().hex[:8]}"
    migrate_locally(demo_pair.source, demo_pair.target, run_id, pool_size=4)
    return demo_pair, run_id


def _mismatches(pair, run_id, schema, mode="counts"):
    return validate_schema(pair.source, pair.target, schema, run_id=run_id, mode=mode).mismatches


def test_clean_migration_passes_with_checksums(migrated):
    pair, run_id = migrated
    for schema in ("sales", "analytics", "archive", "finance", "crm", "Reporting Mart"):
        assert _mismatches(pair, run_id, schema, "checksums") == [], schema
    assert validate_database(pair.source, pair.target)["mismatches"] == []


def test_missing_row_in_an_inherited_child_is_named(migrated):
    pair, run_id = migrated
    with pair.target_su() as tgt:
        tgt.execute("DELETE FROM archive.events_2023 WHERE ctid = (SELECT min(ctid) FROM archive.events_2023)")
    found = _mismatches(pair, run_id, "archive")
    assert any("archive.events_2023" in m and "1 row(s) lost" in m for m in found), found
    # The parent's own rows are untouched: never a double count through inheritance.
    assert not any("analytics.events:" in m for m in _mismatches(pair, run_id, "analytics"))


def test_changed_json_value_is_caught_by_checksums_only(migrated):
    pair, run_id = migrated
    with pair.target_su() as tgt:
        tgt.execute(
            "UPDATE sales.order_documents SET doc_json = doc_json || ' ' "
            "WHERE ctid = (SELECT min(ctid) FROM sales.order_documents)"
        )
    assert _mismatches(pair, run_id, "sales", "counts") == []
    found = _mismatches(pair, run_id, "sales", "checksums")
    assert any("sales.order_documents" in m and "checksum" in m for m in found), found


def test_dropped_index_is_named(migrated):
    pair, run_id = migrated
    with pair.target_su() as tgt:
        tgt.execute("DROP INDEX sales.orders_customer_id_idx")
    found = _mismatches(pair, run_id, "sales")
    assert any("index orders_customer_id_idx missing on the target" in m for m in found), found


def test_reset_sequence_is_named(migrated):
    pair, run_id = migrated
    with pair.target_su() as tgt:
        tgt.execute("SELECT setval('sales.order_number_seq', 1)")
    found = _mismatches(pair, run_id, "sales")
    assert any("sequence sales.order_number_seq is behind" in m for m in found), found


def test_deleted_large_object_is_reported(migrated):
    pair, _ = migrated
    with pair.target_su() as tgt:
        oid = tgt.execute("SELECT min(oid) FROM pg_largeobject_metadata").fetchone()[0]
        tgt.execute("SELECT lo_unlink(%s)", (oid,))
    found = validate_database(pair.source, pair.target)["mismatches"]
    assert any("large objects" in m for m in found), found


def test_writes_on_the_source_after_the_copy_are_not_a_mismatch(migrated):
    pair, run_id = migrated
    with pair.source_su() as src:
        src.execute("INSERT INTO staging.raw_clicks SELECT * FROM staging.raw_clicks LIMIT 5")
    result = validate_schema(pair.source, pair.target, "staging", run_id=run_id)
    assert result.mismatches == []
    row = next(t for t in result.tables if t.table == "raw_clicks")
    assert "changed after the dump (+5 rows since)" in row.note
