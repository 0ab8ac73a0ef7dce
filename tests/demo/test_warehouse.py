"""Tests for the demo warehouse generator (include.pg_migration.demo).

They need a real PostgreSQL server and use the project fixture (tests/conftest.py)

    fresh_source_db -> str
        libpq DSN of a new, empty database on the *source* server, connecting as the
        superuser ``postgres``; dropped at teardown.

The determinism test needs more than one database: ``source_db_factory`` below hands out
``fresh_source_db`` first and then creates sibling databases on the same server through it
(dropped again at teardown).
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import conninfo, sql

from include.pg_migration.demo import (
    BASE_COUNTS,
    SCHEMAS,
    WarehouseError,
    load_warehouse,
    plan_counts,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
SCALE = 0.05


# --------------------------------------------------------------------------- helpers


@pytest.fixture
def source_db_factory(fresh_source_db: str) -> Iterator[Callable[[], str]]:
    """Call it for the DSN of an empty source database: ``fresh_source_db``, then siblings."""
    handed_out: list[str] = []
    siblings: list[str] = []

    def new_db() -> str:
        if not handed_out:
            handed_out.append(fresh_source_db)
            return fresh_source_db
        base = conninfo.conninfo_to_dict(fresh_source_db)
        name = f"{base['dbname']}_{len(handed_out)}"
        with psycopg.connect(fresh_source_db, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        siblings.append(name)
        dsn = conninfo.make_conninfo(fresh_source_db, dbname=name)
        handed_out.append(dsn)
        return dsn

    yield new_db
    if siblings:
        with psycopg.connect(fresh_source_db, autocommit=True) as conn:
            for name in siblings:
                conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def _content_fingerprint(dsn: str) -> dict[str, Any]:
    """md5 + count of every table's own rows, sequence states and large objects."""
    fingerprint: dict[str, Any] = {}
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("SET TimeZone = 'UTC'")
        conn.execute("SET DateStyle = 'ISO, YMD'")
        conn.execute("SET extra_float_digits = 1")
        relations = conn.execute(
            """
            SELECT n.nspname, c.relname, c.relkind::text
            FROM pg_catalog.pg_class AS c
            JOIN pg_catalog.pg_namespace AS n ON n.oid = c.relnamespace
            WHERE n.nspname = ANY(%s) AND c.relkind IN ('r', 'm', 'S')
            ORDER BY 1, 2
            """,
            (list(SCHEMAS),),
        ).fetchall()
        for schema, name, relkind in relations:
            ident = sql.SQL("{}.{}").format(sql.Identifier(schema), sql.Identifier(name))
            if relkind == "S":
                query = sql.SQL("SELECT s.last_value::text || '/' || s.is_called, 1 FROM {} AS s")
            else:
                query = sql.SQL(
                    "SELECT pg_catalog.md5(coalesce(pg_catalog.string_agg("
                    "t::text, E'\\n' ORDER BY t::text COLLATE \"C\"), '')), count(*)"
                    " FROM ONLY {} AS t"
                )
            digest, rows = conn.execute(query.format(ident)).fetchone()
            fingerprint[f"{schema}.{name}"] = (digest, rows)
        fingerprint["<large objects>"] = conn.execute(
            """
            SELECT pg_catalog.string_agg(
                       m.oid::text || ':' || pg_catalog.md5(pg_catalog.lo_get(m.oid)), ','
                       ORDER BY m.oid),
                   count(*)
            FROM pg_catalog.pg_largeobject_metadata AS m
            """
        ).fetchone()
    return fingerprint


def _scalar(conn: psycopg.Connection[Any], query: str) -> Any:
    row = conn.execute(query).fetchone()
    assert row is not None
    return row[0]


# Each query returns one boolean: the feature is present in the loaded database.
FEATURE_CHECKS: dict[str, str] = {
    "all twelve schemas exist": """
        SELECT count(*) = 12 FROM pg_catalog.pg_namespace
        WHERE nspname IN ('sales', 'analytics', 'finance', 'crm', 'archive', 'inventory',
                          'staging', 'hr', 'Reporting Mart', 'ref', 'util', 'sandbox')
    """,
    "empty schema (exists, no objects)": """
        SELECT EXISTS (
            SELECT FROM pg_catalog.pg_namespace AS n
            WHERE n.nspname = 'sandbox'
              AND NOT EXISTS (SELECT FROM pg_catalog.pg_class WHERE relnamespace = n.oid)
              AND NOT EXISTS (SELECT FROM pg_catalog.pg_proc WHERE pronamespace = n.oid)
              AND NOT EXISTS (SELECT FROM pg_catalog.pg_type WHERE typnamespace = n.oid)
              AND NOT EXISTS (SELECT FROM pg_catalog.pg_collation WHERE collnamespace = n.oid)
              AND NOT EXISTS (SELECT FROM pg_catalog.pg_operator WHERE oprnamespace = n.oid))
    """,
    "schema name that needs quoting": """
        SELECT EXISTS (
            SELECT FROM pg_catalog.pg_namespace
            WHERE nspname = 'Reporting Mart' AND pg_catalog.quote_ident(nspname) <> nspname)
    """,
    "inheritance child in another schema than its parent": """
        SELECT EXISTS (
            SELECT FROM pg_catalog.pg_inherits AS i
            JOIN pg_catalog.pg_class AS c ON c.oid = i.inhrelid
            JOIN pg_catalog.pg_class AS p ON p.oid = i.inhparent
            WHERE NOT c.relispartition AND c.relnamespace <> p.relnamespace)
    """,
    "inheritance child with a column order different from its parent": """
        SELECT EXISTS (
            SELECT FROM pg_catalog.pg_inherits AS i
            JOIN pg_catalog.pg_class AS c ON c.oid = i.inhrelid
            JOIN pg_catalog.pg_attribute AS ca ON ca.attrelid = i.inhrelid
            JOIN pg_catalog.pg_attribute AS pa
                 ON pa.attrelid = i.inhparent AND pa.attname = ca.attname
            WHERE NOT c.relispartition AND ca.attnum > 0 AND pa.attnum > 0
              AND NOT ca.attisdropped AND ca.attnum <> pa.attnum)
    """,
    "declarative partition in another schema than its parent": """
        SELECT EXISTS (
            SELECT FROM pg_catalog.pg_inherits AS i
            JOIN pg_catalog.pg_class AS c ON c.oid = i.inhrelid
            JOIN pg_catalog.pg_class AS p ON p.oid = i.inhparent
            WHERE c.relispartition AND p.relkind = 'p' AND c.relnamespace <> p.relnamespace)
    """,
    "cross-schema foreign key": """
        SELECT EXISTS (
            SELECT FROM pg_catalog.pg_constraint AS k
            JOIN pg_catalog.pg_class AS c ON c.oid = k.conrelid
            JOIN pg_catalog.pg_class AS r ON r.oid = k.confrelid
            WHERE k.contype = 'f' AND c.relnamespace <> r.relnamespace)
    """,
    "self-referencing foreign key": """
        SELECT EXISTS (
            SELECT FROM pg_catalog.pg_constraint
            WHERE contype = 'f' AND conrelid = confrelid)
    """,
    "unique, partial and expression indexes": """
        SELECT bool_or(x.indisunique AND NOT x.indisprimary)
           AND bool_or(x.indpred IS NOT NULL)
           AND bool_or(x.indexprs IS NOT NULL)
        FROM pg_catalog.pg_index AS x
        JOIN pg_catalog.pg_class AS c ON c.oid = x.indrelid
        JOIN pg_catalog.pg_namespace AS n ON n.oid = c.relnamespace
        WHERE n.nspname IN ('sales', 'crm', 'inventory')
    """,
    "identity column": """
        SELECT EXISTS (
            SELECT FROM pg_catalog.pg_attribute
            WHERE attrelid = 'sales.orders'::regclass AND attidentity IN ('a', 'd'))
    """,
    "serial and bigserial columns": """
        SELECT count(DISTINCT s.seqtypid) = 2
        FROM pg_catalog.pg_depend AS d
        JOIN pg_catalog.pg_sequence AS s ON s.seqrelid = d.objid
        JOIN pg_catalog.pg_attribute AS a
             ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid
        JOIN pg_catalog.pg_attrdef AS ad ON ad.adrelid = a.attrelid AND ad.adnum = a.attnum
        WHERE d.classid = 'pg_catalog.pg_class'::regclass AND d.deptype = 'a'
          AND pg_catalog.pg_get_expr(ad.adbin, ad.adrelid) LIKE 'nextval(%'
    """,
    "standalone sequence used by a column default": """
        SELECT EXISTS (
            SELECT FROM pg_catalog.pg_depend AS d
            JOIN pg_catalog.pg_attrdef AS ad ON ad.oid = d.objid
            WHERE d.classid = 'pg_catalog.pg_attrdef'::regclass
              AND d.refclassid = 'pg_catalog.pg_class'::regclass
              AND d.refobjid = 'sales.order_number_seq'::regclass
              AND ad.adrelid = 'sales.orders'::regclass)
        AND NOT EXISTS (
            SELECT FROM pg_catalog.pg_depend
            WHERE objid = 'sales.order_number_seq'::regclass AND deptype IN ('a', 'i'))
    """,
    "enum and domain types in use": """
        SELECT count(DISTINCT t.typtype) = 2
        FROM pg_catalog.pg_attribute AS a
        JOIN pg_catalog.pg_type AS t ON t.oid = a.atttypid
        JOIN pg_catalog.pg_class AS c ON c.oid = a.attrelid
        WHERE c.relkind = 'r' AND t.typtype IN ('e', 'd')
    """,
    "column types: jsonb bytea numeric(18,4) timestamptz date boolean uuid arrays oid": """
        SELECT ARRAY['jsonb', 'bytea', 'numeric(18,4)', 'timestamp with time zone', 'date',
                     'boolean', 'uuid', 'text[]', 'integer[]', 'oid', 'inet']
               <@ pg_catalog.array_agg(DISTINCT pg_catalog.format_type(a.atttypid, a.atttypmod))
        FROM pg_catalog.pg_attribute AS a
        JOIN pg_catalog.pg_class AS c ON c.oid = a.attrelid
        JOIN pg_catalog.pg_namespace AS n ON n.oid = c.relnamespace
        WHERE n.nspname IN ('sales', 'crm', 'inventory', 'analytics', 'hr', 'staging')
          AND c.relkind = 'r' AND a.attnum > 0 AND NOT a.attisdropped
    """,
    "NULLs in nullable columns": """
        SELECT (SELECT count(*) FROM sales.orders WHERE coupon_code IS NULL) > 0
           AND (SELECT count(*) FROM crm.customers WHERE email IS NULL) > 0
           AND (SELECT count(*) FROM inventory.products WHERE tags IS NULL) > 0
    """,
    "JSON stored as text, some documents > 1 MB": """
        SELECT EXISTS (
            SELECT FROM sales.order_documents
            WHERE pg_catalog.octet_length(doc_json) > 1048576
              AND pg_catalog.jsonb_typeof(doc_json::jsonb) = 'object')
        AND (SELECT a.atttypid = 'pg_catalog.text'::regtype FROM pg_catalog.pg_attribute AS a
             WHERE a.attrelid = 'sales.order_documents'::regclass AND a.attname = 'doc_json')
    """,
    "large objects referenced from an oid column": """
        SELECT count(*) > 0 AND bool_and(m.oid IS NOT NULL)
        FROM crm.customer_documents AS d
        LEFT JOIN pg_catalog.pg_largeobject_metadata AS m ON m.oid = d.content_oid
    """,
    "view over another schema's tables": """
        SELECT EXISTS (
            SELECT FROM pg_catalog.pg_rewrite AS rw
            JOIN pg_catalog.pg_class AS v ON v.oid = rw.ev_class AND v.relkind = 'v'
            JOIN pg_catalog.pg_depend AS d
                 ON d.classid = 'pg_catalog.pg_rewrite'::regclass AND d.objid = rw.oid
            JOIN pg_catalog.pg_class AS t ON t.oid = d.refobjid AND t.relkind = 'r'
            WHERE t.relnamespace <> v.relnamespace)
    """,
    "populated materialized view with an index": """
        SELECT EXISTS (
            SELECT FROM pg_catalog.pg_class AS m
            JOIN pg_catalog.pg_index AS x ON x.indrelid = m.oid
            WHERE m.relkind = 'm' AND m.relispopulated)
        AND (SELECT count(*) > 0 FROM "Reporting Mart".monthly_revenue)
    """,
    "plpgsql trigger function used by a trigger": """
        SELECT EXISTS (
            SELECT FROM pg_catalog.pg_trigger AS tg
            JOIN pg_catalog.pg_proc AS p ON p.oid = tg.tgfoid
            JOIN pg_catalog.pg_language AS l ON l.oid = p.prolang
            WHERE NOT tg.tgisinternal AND l.lanname = 'plpgsql')
    """,
    "SQL function": """
        SELECT EXISTS (
            SELECT FROM pg_catalog.pg_proc AS p
            JOIN pg_catalog.pg_language AS l ON l.oid = p.prolang
            JOIN pg_catalog.pg_namespace AS n ON n.oid = p.pronamespace
            WHERE l.lanname = 'sql' AND n.nspname = 'util')
    """,
    "EXECUTE revoked from PUBLIC, granted to wh_writer": """
        SELECT NOT pg_catalog.has_function_privilege('public', 'util.fiscal_quarter(date)', 'EXECUTE')
           AND pg_catalog.has_function_privilege('wh_writer', 'util.fiscal_quarter(date)', 'EXECUTE')
           AND NOT pg_catalog.has_function_privilege('wh_reader', 'util.fiscal_quarter(date)', 'EXECUTE')
    """,
    "NOLOGIN roles with schema and table grants": """
        SELECT (SELECT count(*) = 2 FROM pg_catalog.pg_roles
                WHERE rolname IN ('wh_reader', 'wh_writer') AND NOT rolcanlogin)
           AND pg_catalog.has_schema_privilege('wh_reader', 'ref', 'USAGE')
           AND pg_catalog.has_table_privilege('wh_reader', 'ref.countries', 'SELECT')
           AND pg_catalog.has_table_privilege('wh_reader', '"Reporting Mart".monthly_revenue', 'SELECT')
           AND NOT pg_catalog.has_table_privilege('wh_reader', 'finance.accounts', 'SELECT')
           AND pg_catalog.has_column_privilege('wh_reader', 'crm.customers', 'full_name', 'SELECT')
           AND NOT pg_catalog.has_column_privilege('wh_reader', 'crm.customers', 'email', 'SELECT')
           AND pg_catalog.has_table_privilege('wh_writer', 'sales.orders', 'INSERT')
    """,
    "comments on schema, table and column": """
        SELECT pg_catalog.obj_description('sales'::regnamespace, 'pg_namespace') IS NOT NULL
           AND pg_catalog.obj_description('sales.orders'::regclass, 'pg_class') IS NOT NULL
           AND pg_catalog.col_description(
                   'sales.orders'::regclass,
                   (SELECT attnum FROM pg_catalog.pg_attribute
                    WHERE attrelid = 'sales.orders'::regclass AND attname = 'total_amount')
               ) IS NOT NULL
    """,
    "database-level search_path": """
        SELECT EXISTS (
            SELECT FROM pg_catalog.pg_db_role_setting AS s
            JOIN pg_catalog.pg_database AS d ON d.oid = s.setdatabase
            WHERE d.datname = pg_catalog.current_database() AND s.setrole = 0
              AND s.setconfig @> ARRAY['search_path="$user", public, sales, crm, "Reporting Mart"'])
    """,
}


# --------------------------------------------------------------------------- tests


def test_plan_counts_scales_with_floors() -> None:
    assert plan_counts(1.0) == BASE_COUNTS
    assert plan_counts(10)["orders"] == 10 * BASE_COUNTS["orders"]
    tiny = plan_counts(0.0001)
    assert all(n >= 1 for n in tiny.values())
    assert tiny["big_docs"] == 1
    for bad in (0, -1, float("nan"), float("inf"), "1"):
        with pytest.raises(ValueError):
            plan_counts(bad)  # type: ignore[arg-type]


def test_same_seed_and_scale_give_identical_data(source_db_factory: Callable[[], str]) -> None:
    first, second, other_seed = (source_db_factory() for _ in range(3))
    summary_1 = load_warehouse(first, scale=SCALE, seed=42)
    summary_2 = load_warehouse(second, scale=SCALE, seed=42)
    summary_3 = load_warehouse(other_seed, scale=SCALE, seed=7)

    def shape(summary: dict[str, Any], *, rows: bool = True) -> list[tuple[Any, ...]]:
        return [(t["schema"], t["name"], t["kind"], t["rows"] if rows else None) for t in summary["tables"]]

    assert shape(summary_1) == shape(summary_2)
    assert shape(summary_1, rows=False) == shape(summary_3, rows=False)
    assert summary_1["totals"]["rows"] > 0

    fp_1, fp_2, fp_3 = (_content_fingerprint(dsn) for dsn in (first, second, other_seed))
    assert fp_1 == fp_2
    assert len(fp_1) > 25
    assert all(rows > 0 for name, (_, rows) in fp_1.items() if "sandbox" not in name)
    # a different seed changes the data but not the shape
    changed = [name for name in fp_1 if fp_1[name] != fp_3[name]]
    assert "sales.orders" in changed
    assert "crm.customers" in changed
    assert "<large objects>" in changed
    assert "ref.countries" not in changed


def test_features_present(fresh_source_db: str) -> None:
    dsn = fresh_source_db
    summary = load_warehouse(dsn, scale=SCALE)

    with psycopg.connect(dsn, autocommit=True) as conn:
        missing = [name for name, query in FEATURE_CHECKS.items() if _scalar(conn, query) is not True]
        no_pk = conn.execute(
            """
            SELECT n.nspname || '.' || c.relname
            FROM pg_catalog.pg_class AS c
            JOIN pg_catalog.pg_namespace AS n ON n.oid = c.relnamespace
            WHERE c.relkind = 'r' AND n.nspname = ANY(%s)
              AND NOT EXISTS (SELECT FROM pg_catalog.pg_constraint AS k
                              WHERE k.conrelid = c.oid AND k.contype = 'p')
            """,
            (list(SCHEMAS),),
        ).fetchall()
    assert missing == []
    assert no_pk == [("staging.raw_clicks",)], "exactly one table without a primary key"

    # summary: schemas, rows in inheritance parent + children and in every partition
    by_schema = {s["name"]: s for s in summary["schemas"]}
    assert list(by_schema) == list(SCHEMAS)
    assert by_schema["sandbox"] == {"name": "sandbox", "tables": 0, "rows": 0, "bytes": 0}
    assert max(by_schema.values(), key=lambda s: s["bytes"])["name"] == "sales"
    tables = {(t["schema"], t["name"]): t for t in summary["tables"]}
    events_children = [t for t in summary["tables"] if t["parent"] == {"schema": "analytics", "name": "events"}]
    assert {(t["schema"], t["name"]) for t in events_children} == {
        ("archive", "events_2023"),
        ("analytics", "events_2024"),
        ("analytics", "events_2025"),
        ("analytics", "events_legacy"),
    }
    assert tables[("analytics", "events")]["rows"] > 0
    assert all(t["rows"] > 0 for t in events_children)
    partitions = [t for t in summary["tables"] if t["kind"] == "partition"]
    assert {(t["schema"], t["name"]) for t in partitions} == {
        ("archive", "ledger_entries_2023"),
        ("finance", "ledger_entries_2024"),
        ("finance", "ledger_entries_2025"),
    }
    assert all(t["rows"] > 0 for t in partitions)
    assert tables[("finance", "ledger_entries")]["kind"] == "partitioned table"
    assert summary["large_objects"]["count"] == summary["counts"]["customer_docs"]
    assert summary["database_bytes"] > summary["totals"]["bytes"] > 0
    assert json.loads(json.dumps(summary)) == summary  # JSON-serialisable as is


def test_refuses_a_database_that_already_has_the_warehouse(fresh_source_db: str) -> None:
    dsn = fresh_source_db
    load_warehouse(dsn, scale=0.01)
    with pytest.raises(WarehouseError, match="already contains"):
        load_warehouse(dsn, scale=0.01)


def test_cli_prints_the_summary_as_json(fresh_source_db: str) -> None:
    dsn = fresh_source_db
    result = subprocess.run(
        [sys.executable, "-m", "include.pg_migration.demo", "--dsn", dsn, "--scale", "0.01", "--seed", "3", "--quiet"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["seed"] == 3
    assert summary["scale"] == 0.01
    assert summary["totals"]["schemas"] == len(SCHEMAS)
    assert summary["totals"]["rows"] > 0

    bad = subprocess.run(
        [sys.executable, "-m", "include.pg_migration.demo", "--dsn", dsn, "--scale", "-1"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert bad.returncode == 2
    assert "scale" in bad.stderr
