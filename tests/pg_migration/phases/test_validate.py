"""Validation catches every kind of difference, by name; a clean migration passes; writes don't fool it.

The source is read as the least-privileged reader (``Pair.source_reader``: a member of
``pg_read_all_data``), never as a superuser."""

from __future__ import annotations

import dataclasses
import uuid

import pytest
from psycopg import sql

from include.pg_migration.harness import migrate_locally
from include.pg_migration.phases.validate import validate_database, validate_schema
from scripts import localpg
from tests.conftest import Pair, create_db


@pytest.fixture(scope="module")
def migrated_template(pg_servers, demo_source):
    """The demo warehouse migrated once; each test gets its own copy of the target (CREATE DATABASE
    ... TEMPLATE), to break as it likes."""
    pair = Pair(pg_servers["source"], pg_servers["target"], demo_source, f"tmpl_{uuid.uuid4().hex[:10]}")
    create_db(pair.target_server, pair.target_db, owner=pair.target_server.admin_user)
    run_id = f"test__{uuid.uuid4().hex[:8]}"
    migrate_locally(pair.source_reader, pair.target, run_id, pool_size=4)
    yield pair, run_id
    localpg.drop_database(pair.target_server, pair.target_db)


@pytest.fixture
def migrated(migrated_template):
    template, run_id = migrated_template
    pair = dataclasses.replace(template, target_db=f"tgt_{uuid.uuid4().hex[:10]}")
    localpg.create_database(
        pair.target_server, pair.target_db, owner=pair.target_server.admin_user, template=template.target_db
    )
    _copy_database_settings(pair.target_server, template.target_db, pair.target_db)
    yield pair, run_id
    localpg.drop_database(pair.target_server, pair.target_db)


DATABASE_SETTINGS = """
SELECT split_part(c, '=', 1), substr(c, strpos(c, '=') + 1)
  FROM pg_catalog.pg_db_role_setting s JOIN pg_catalog.pg_database d ON d.oid = s.setdatabase,
       unnest(s.setconfig) c
 WHERE d.datname = %s AND s.setrole = 0
"""


def _copy_database_settings(server, template: str, db: str) -> None:
    """``ALTER DATABASE ... SET`` of the template (a copy does not take them), value by value."""
    with server.connect(db, autocommit=True) as conn:
        for name, value in conn.execute(DATABASE_SETTINGS, (template,)).fetchall():
            conn.execute("SELECT pg_catalog.set_config(%s, %s, false)", (name, value))
            conn.execute(
                sql.SQL("ALTER DATABASE {} SET {} FROM CURRENT").format(sql.Identifier(db), sql.Identifier(name))
            )


def _mismatches(pair, run_id, schema, mode="counts"):
    return validate_schema(pair.source_reader, pair.target, schema, run_id=run_id, mode=mode).mismatches


def test_clean_migration_passes_with_checksums(migrated):
    pair, run_id = migrated
    for schema in ("sales", "analytics", "archive", "finance", "crm", "Reporting Mart"):
        assert _mismatches(pair, run_id, schema, "checksums") == [], schema
    assert validate_database(pair.source_reader, pair.target)["mismatches"] == []


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


def test_deleted_and_changed_large_objects_are_named_by_oid(migrated):
    """One object unlinked, another of the same size changed on the target: each named by its OID
    (the change alone keeps the counts equal: a count-only check passes it)."""
    pair, _ = migrated
    with pair.target_su() as tgt:
        gone = tgt.execute("SELECT min(oid) FROM pg_largeobject_metadata").fetchone()[0]
        tgt.execute("SELECT lo_unlink(%s)", (gone,))
        changed = tgt.execute(
            "SELECT oid FROM pg_largeobject_metadata WHERE length(lo_get(oid, 0, 1)) = 1 ORDER BY oid DESC LIMIT 1"
        ).fetchone()[0]
        flip = "SELECT lo_put(%(oid)s, 0, set_byte(lo_get(%(oid)s, 0, 1), 0, 255 - get_byte(lo_get(%(oid)s, 0, 1), 0)))"
        tgt.execute(flip, {"oid": changed})
    found = validate_database(pair.source_reader, pair.target)
    lo = found["large_objects"]
    assert found["mismatches"] == [
        f"large objects: source {lo['source']}, target {lo['source'] - 1}",
        f"large object {gone} missing on the target",
        f"large object {changed}: content differs (digest)",
    ], found
    assert lo["seconds"] >= 0 and lo["content"] == "digest"  # the comparison's cost, in the report


def test_large_objects_of_many_chunks_compare_by_content(pair):
    """Objects bigger than one chunk (1 MiB reads): equal ones pass, one byte in the last chunk differs."""
    body = "SELECT lo_from_bytea(%s, decode(repeat(md5(%s), 163840), 'hex') || '\\x0102'::bytea)"  # 2.5 MiB + 2
    for conn in (pair.source_su(), pair.target.connect("test", autocommit=True)):
        with conn:
            for oid, seed in ((7_000_001, "a"), (7_000_002, "b")):
                conn.execute(body, (oid, seed))
            conn.execute("SELECT lo_from_bytea(7000003, ''::bytea)")  # empty
    result = validate_database(pair.source_reader, pair.target)
    assert result["mismatches"] == [] and result["large_objects"]["source"] == 3, result
    with pair.target_su() as tgt:
        size = tgt.execute("SELECT length(lo_get(7000002))").fetchone()[0]
        assert size == 2_621_442  # 2.5 MiB + 2 bytes: three chunks
        tgt.execute("SELECT lo_put(7000002, %s, '\\x03'::bytea)", (size - 1,))
    assert validate_database(pair.source_reader, pair.target)["mismatches"] == [
        "large object 7000002: content differs (digest)"
    ]


def test_writes_on_the_source_after_the_copy_are_not_a_mismatch(migrated):
    pair, run_id = migrated
    with pair.source_su() as src:
        src.execute("INSERT INTO staging.raw_clicks SELECT * FROM staging.raw_clicks LIMIT 5")
    result = validate_schema(pair.source_reader, pair.target, "staging", run_id=run_id)
    assert result.mismatches == []
    row = next(t for t in result.tables if t.table == "raw_clicks")
    assert "changed after the dump (+5 rows since)" in row.note
