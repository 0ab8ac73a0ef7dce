"""Checksums over every kind of column: equal after a real migration (PostgreSQL 15 -> 15 and 15 -> 18),
different after any single changed value, and a target of other column types is reported, not fatal."""

from __future__ import annotations

import uuid

import pytest

from include.pg_migration.harness import migrate_locally
from include.pg_migration.phases.validate import (
    TableCheck,
    _checksum_pair,
    checksum,
    column_hashing,
    row_hash,
    validate_schema,
)
from include.pg_migration.sessions import TEXT_SETTINGS, apply_settings, open_source_snapshot
from scripts import localpg
from tests.conftest import Pair, _unique, assert_equal_data, create_db

CI_COLLATION = "CREATE COLLATION kinds.ci (provider = icu, locale = 'und-u-ks-level2', deterministic = false);"

SCHEMA = """
CREATE SCHEMA kinds;
{collation}
CREATE TYPE kinds.mood AS ENUM ('sad', 'ok', 'happy');
CREATE TYPE kinds.pair AS (x integer, label text);
CREATE DOMAIN kinds.positive AS integer CHECK (VALUE > 0);
CREATE DOMAIN kinds.code AS text CHECK (VALUE ~ '^[A-Z]+$');
CREATE TABLE kinds.everything (
    id          bigint PRIMARY KEY,
    small       smallint,
    flag        boolean,
    amount      numeric(12,3),
    amount_any  numeric,
    ratio       double precision,
    real_val    real,
    born        date,
    at_local    timestamp,
    at_utc      timestamptz,
    clock       time,
    span        interval,
    ref         uuid,
    raw         bytea,
    label       text,
    fixed       char(4),
    short       varchar(20),
    doc_text    text,
    doc_json    json,
    doc_jsonb   jsonb,
    mood        kinds.mood,
    moods       kinds.mood[],
    nums        integer[],
    tags        text[],
    pos         kinds.positive,
    code        kinds.code,
    pair        kinds.pair,
    addr        inet,
    spot        point,
    {ci_column}
    "Odd Name"  text
);
INSERT INTO kinds.everything VALUES
    (1, 7, true, 12.5, 1.0, 0.1, 1.5, '2024-02-29', '2024-01-01 12:00', '2024-01-01 12:00+02', '23:59:59.999999',
     '1 day', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '\\x00ff', 'plain', 'ab', 'short',
     '{{"order": 1, "lines": [{{"sku": "A-1", "qty": 2}}], "note": "say \\"hi\\""}}',
     '{{"a":1}}', '[[1],2]', 'ok', '{{sad,happy}}', '{{1,2,3,4}}', '{{a,b}}', 5, 'ABC', '(1,x)', '10.0.0.1/24',
     '(1,2)', {ci_value} 'x'),
    (2, 0, false, 0, 'NaN', 0, 0, '1999-12-31', 'infinity', '-infinity', '00:00', '1 mon', NULL, '\\x', '', ' ',
     '', '[]', '{{}}', '{{}}', 'sad', '{{}}', '{{}}', '{{}}', 1, 'Z', '(,)', '::1', '(0,0)', {ci_empty} ''),
    (3, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
     NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, {ci_null} NULL),
    (4, -32768, true, -999999999.999, 'Infinity', 'NaN', '-Infinity', '0001-01-01', '2000-01-01', '2000-01-01',
     '12:00', '-1 years 2 days', '00000000-0000-0000-0000-000000000000', '\\xdeadbeef', 'ünïcödé 🐘', 'abcd',
     'x', '{{"k": [1, 2.50, null, true]}}', '{{"k": [1, 2.50]}}', '{{"k": [1, 2.50, null]}}', 'happy',
     '{{ok,NULL}}', '{{NULL,1}}', '{{"with space","q\\"uote",NULL}}', 2147483647, 'QQ', '(2,"a,b")', '192.168.0.0/16',
     '(-1.5,2.25)', {ci_value2} 'tab\there');
CREATE TABLE kinds.zz_other (id integer PRIMARY KEY, note text);
INSERT INTO kinds.zz_other VALUES (1, 'one'), (2, 'two');
"""

#: (column, SET expression, row id): each changes exactly one value of one row on the target.
CHANGES = [
    ("small", "small + 1", 1),
    ("small", "0", 3),  # NULL -> 0
    ("flag", "NOT flag", 1),
    ("amount", "amount + 0.001", 1),
    ("amount_any", "1.00", 1),  # 1.0 -> 1.00: numeric scale
    ("amount_any", "'Infinity'", 2),  # NaN -> Infinity
    ("amount_any", "'-Infinity'", 4),  # Infinity -> -Infinity
    ("amount_any", "'NaN'", 3),  # NULL -> NaN
    ("ratio", "ratio + 1e-15", 1),
    ("ratio", "0", 3),  # NULL -> 0.0
    ("real_val", "'Infinity'", 4),
    ("born", "born + 1", 1),
    ("at_local", "'-infinity'", 2),
    ("at_utc", "at_utc + interval '1 microsecond'", 1),
    ("clock", "'23:59:59.999998'", 1),
    ("span", "'24 hours'", 1),  # '1 day' -> '24 hours'
    ("span", "'30 days'", 2),  # '1 mon' -> '30 days'
    ("ref", "'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a12'", 1),
    ("raw", "'\\x00'", 2),  # '' -> one zero byte
    ("label", "''", 3),  # NULL -> ''
    ("label", "NULL", 2),  # '' -> NULL
    ("label", "'Plain'", 1),
    ("fixed", "'ac'", 1),
    ("short", "'shorT'", 1),
    ("short", "NULL", 2),
    ("doc_text", "doc_text || ' '", 1),  # JSON in text: one more blank
    ("doc_text", "replace(doc_text, '2', '3')", 1),
    ("doc_json", "'{\"a\": 1}'", 1),  # json keeps its text: a blank counts
    ("doc_json", "'{\"k\": [1, 2.5]}'", 4),
    ("doc_jsonb", "'[[1,2]]'", 1),  # same scalars, other nesting
    ("doc_jsonb", "'{\"k\": [1, 2.5, null]}'", 4),  # 2.50 -> 2.5
    ("doc_jsonb", "'null'", 3),  # SQL NULL -> JSON null
    ("mood", "'happy'", 1),
    ("mood", "'sad'", 3),  # NULL -> the first label
    ("moods", "'{sad,ok}'", 1),
    ("moods", "'{ok}'", 4),  # {ok,NULL} -> {ok}
    ("nums", "'{{1,2},{3,4}}'", 1),  # same elements, other shape
    ("nums", "'[0:3]={1,2,3,4}'", 1),  # same elements, other lower bound
    ("nums", "'{NULL}'", 2),  # {} -> {NULL}
    ("nums", "'{}'", 3),  # NULL -> {}
    ("tags", "'{a,B}'", 1),
    ("pos", "6", 1),
    ("code", "'ABD'", 1),
    ("pair", "'(1,y)'", 1),
    ("pair", "'(0,)'", 2),  # (,) -> (0,)
    ("pair", "NULL", 2),  # (,) -> NULL
    ("addr", "'10.0.0.1/25'", 1),
    ("spot", "'(1,3)'", 1),
    ('"Odd Name"', "'y'", 1),
]
CI_CHANGES = [("ci_name", "'ABC'", 1)]  # equal under the nondeterministic collation, not equal data


def _load(pair: Pair, ci: bool) -> None:
    ddl = SCHEMA.format(
        collation=CI_COLLATION if ci else "",
        ci_column="ci_name text COLLATE kinds.ci," if ci else "",
        ci_value="'abc'," if ci else "",
        ci_value2="'Straße'," if ci else "",
        ci_empty="''," if ci else "",
        ci_null="NULL," if ci else "",
    )
    with pair.source_su() as src:
        src.execute(ddl)


def _migrate(pair: Pair) -> str:
    run_id = f"test__{uuid.uuid4().hex[:8]}"
    migrate_locally(pair.source, pair.target, run_id, pool_size=2)
    with pair.source_su() as src, pair.target_su() as tgt:
        assert_equal_data(src, tgt)
    return run_id


def _checksums_under_changes(pair: Pair, table: str, changes, method: str = "binary") -> list[tuple]:
    """(column, set, id, source checksum, target checksum after the change); changes rolled back."""
    with pair.source_su() as src, pair.target_su() as tgt:
        apply_settings(src, TEXT_SETTINGS)
        apply_settings(tgt, TEXT_SETTINGS)
        expr = row_hash(column_hashing(src, "kinds", table), method)
        source = checksum(src, "kinds", table, expr)
        assert checksum(tgt, "kinds", table, expr) == source  # a clean copy
        out = []
        for column, new, row_id in changes:
            with tgt.transaction(force_rollback=True):
                updated = tgt.execute(f"UPDATE kinds.{table} SET {column} = {new} WHERE id = {row_id}").rowcount
                assert updated == 1, (column, new)
                out.append((column, new, row_id, source, checksum(tgt, "kinds", table, expr)))
            assert checksum(tgt, "kinds", table, expr) == source  # rolled back
        return out


def test_every_kind_of_column_migrates_equal_and_any_changed_value_is_caught(pair):
    _load(pair, ci=True)
    run_id = _migrate(pair)
    assert validate_schema(pair.source, pair.target, "kinds", run_id=run_id, mode="checksums").mismatches == []
    missed = [c[:3] for c in _checksums_under_changes(pair, "everything", CHANGES + CI_CHANGES) if c[3] == c[4]]
    assert missed == [], f"changes the checksum did not see: {missed}"


def test_the_expressions_hash_binary_values_and_text_where_the_hash_is_not_portable(pair):
    _load(pair, ci=True)
    with pair.source_su() as src:
        kinds = {name: kind for name, kind, _ in column_hashing(src, "kinds", "everything")}
        expr = row_hash(column_hashing(src, "kinds", "everything")).as_string(src)
    assert kinds == {
        **dict.fromkeys(["id", "small", "flag", "ratio", "real_val", "born", "at_local", "at_utc", "clock"], "value"),
        **dict.fromkeys(["ref", "raw", "label", "fixed", "doc_text", "addr", "Odd Name", "ci_name"], "value"),
        "pos": "value",  # a domain over integer: its base type's hash
        "code": "value",  # a domain over text
        "amount": "numeric",
        "amount_any": "numeric",
        **dict.fromkeys(["nums", "tags"], "array"),
        # enums (label OIDs differ between databases), json (no hash), jsonb and interval (lossy hashes),
        # composite, point (no hash), varchar (no own operator class), arrays of enums: through their text
        **dict.fromkeys(["span", "doc_json", "doc_jsonb", "mood", "moods", "pair", "spot", "short"], "text"),
    }
    assert expr.startswith("pg_catalog.hash_record_extended(ROW(")
    assert '"ci_name" COLLATE pg_catalog."C"' in expr
    assert '("mood"::pg_catalog.text) COLLATE pg_catalog."C"' in expr
    assert 'pg_catalog.numeric_send("amount")' in expr
    assert 'pg_catalog.array_dims("nums")' in expr


@pytest.mark.parametrize("method", ["text", "portable"])
def test_text_fallbacks_still_agree_and_still_see_a_change(pair, method):
    _load(pair, ci=False)
    _migrate(pair)
    changes = [("label", "''", 3), ("mood", "'happy'", 1), ("doc_json", "'{\"a\": 1}'", 1)]
    missed = [c[:3] for c in _checksums_under_changes(pair, "everything", changes, method) if c[3] == c[4]]
    assert missed == []


def test_a_committed_change_fails_validation_by_table(pair):
    _load(pair, ci=False)
    run_id = _migrate(pair)
    with pair.target_su() as tgt:
        tgt.execute("UPDATE kinds.everything SET label = '' WHERE id = 3")  # NULL -> ''
    found = validate_schema(pair.source, pair.target, "kinds", run_id=run_id, mode="checksums").mismatches
    assert found == ["table kinds.everything: content differs (checksum)"]


def test_other_column_types_on_the_target_are_reported_and_the_other_tables_still_checked(pair):
    _load(pair, ci=False)
    run_id = _migrate(pair)
    with pair.target_su() as tgt:
        # numeric_send(text) does not exist: the source's expression fails on the target
        tgt.execute("ALTER TABLE kinds.everything ALTER COLUMN amount TYPE text")
        tgt.execute("UPDATE kinds.zz_other SET note = 'TWO' WHERE id = 2")
    result = validate_schema(pair.source, pair.target, "kinds", run_id=run_id, mode="checksums", structure=False)
    assert len(result.mismatches) == 2, result.mismatches
    assert result.mismatches[0].startswith("table kinds.everything: checksum failed on the target (42883: "), result
    assert result.mismatches[1] == "table kinds.zz_other: content differs (checksum)"
    assert {t.table: t.status for t in result.tables} == {"everything": "mismatch", "zz_other": "mismatch"}

    with pair.target_su() as tgt:
        tgt.execute("ALTER TABLE kinds.everything ALTER COLUMN amount TYPE numeric(12,3) USING amount::numeric")
        tgt.execute("ALTER TABLE kinds.everything RENAME COLUMN label TO title")
        tgt.execute("ALTER TABLE kinds.zz_other ALTER COLUMN note TYPE integer USING length(note)")
    result = validate_schema(pair.source, pair.target, "kinds", run_id=run_id, mode="checksums", structure=False)
    assert result.mismatches == [
        "table kinds.everything: content not compared: columns differ "
        "(only on the source ['label'], only on the target ['title'])",
        "table kinds.zz_other: checksum failed on the target (42804: collations are not supported by type integer)",
    ]


@pytest.fixture
def upgrade_pair(pg_servers, pg18_server):
    """A fresh PostgreSQL 15 source database -> a fresh PostgreSQL 18 target database."""
    p = Pair(pg_servers["source"], pg18_server, _unique("src"), _unique("tgt"))
    create_db(p.source_server, p.source_db)
    create_db(p.target_server, p.target_db, owner=p.target_server.admin_user)
    yield p
    localpg.drop_database(p.source_server, p.source_db)
    localpg.drop_database(p.target_server, p.target_db)


def test_checksums_agree_between_postgresql_15_and_18(upgrade_pair):
    _load(upgrade_pair, ci=False)  # the PostgreSQL 18 build here has no ICU
    run_id = _migrate(upgrade_pair)
    result = validate_schema(upgrade_pair.source, upgrade_pair.target, "kinds", run_id=run_id, mode="checksums")
    assert result.mismatches == []
    assert result.notes == []  # the binary hashes, not a fallback
    missed = [c[:3] for c in _checksums_under_changes(upgrade_pair, "everything", CHANGES) if c[3] == c[4]]
    assert missed == []


def test_a_table_failing_on_the_source_leaves_its_snapshot_usable(pair):
    """The source's checksums run in the run's snapshot transaction: a failing one is rolled back to a
    savepoint, and the next table is still checksummed in the same snapshot."""
    _load(pair, ci=False)
    with open_source_snapshot(pair.source, "test", None) as src, pair.target_su() as tgt:
        gone = TableCheck(table="dropped meanwhile")
        problem = _checksum_pair(src, tgt, "kinds", gone, "binary")
        assert problem.startswith("checksum failed on the source (42P01: "), problem
        other = TableCheck(table="zz_other")
        problem = _checksum_pair(src, tgt, "kinds", other, "binary")  # the target is empty: no columns there
        assert other.source_checksum.startswith("2:")
        assert (
            problem == "content not compared: columns differ (only on the source ['id', 'note'], only on the target [])"
        )
