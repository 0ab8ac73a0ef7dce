"""Table-level selection (include/pg_migration/selection.py): pg_dump's pattern rules, what a selection
leaves out, the pre-flight's refusals, and a run with tables left out and data left out, end to end."""

from __future__ import annotations

import re
import subprocess
import uuid

import pytest

from include.pg_migration import catalog, preflight, selection
from include.pg_migration.errors import PlanError
from include.pg_migration.harness import LocalRun
from include.pg_migration.phases.validate import validate_schema
from include.pg_migration.plan import make_plan
from include.pg_migration.reports.markdown import to_markdown
from include.pg_migration.selection import Selection, conflicts, decide, translate

# -- the pattern rules, as pg_dump reads them ------------------------------------------------------------

#: pattern -> (schema regex or None: visible on the search_path, name regex), as PostgreSQL 15's
#: processSQLNamePattern builds them (checked against psql itself below).
TRANSLATIONS = {
    "foo": (None, "^(foo)$"),
    "Foo": (None, "^(foo)$"),
    '"Foo"X': (None, "^(Foox)$"),
    "s.t*": ("^(s)$", "^(t.*)$"),
    '"Reporting Mart".q?': ("^(Reporting Mart)$", "^(q.)$"),
    '"a.b"': (None, "^(a\\.b)$"),
    '"a""b"': (None, '^(a"b)$'),
    "a$b": (None, "^(a\\$b)$"),
    "int[]": (None, "^(int\\[])$"),
    "*.*": ("^(.*)$", "^(.*)$"),
    '"*"': (None, "^(\\*)$"),
    "[ab]x": (None, "^([ab]x)$"),
    ".t": ("^()$", "^(t)$"),
    '"x|y".(a|b)+': ("^(x\\|y)$", "^((a|b)+)$"),
    "Sales.Orders_?": ("^(sales)$", "^(orders_.)$"),
    '"Ünï".Ä': ("^(Ünï)$", "^(Ä)$"),  # only ASCII letters fold (pg_tolower of isupper)
}


@pytest.mark.parametrize("pattern", sorted(TRANSLATIONS))
def test_translation(pattern):
    got = translate(pattern)
    assert (got.schema_re, got.name_re) == TRANSLATIONS[pattern]


def test_database_part_and_too_many_dots():
    p = translate('"My Db".s.t')
    assert (p.database, p.schema_re, p.name_re) == ("My Db", "^(s)$", "^(t)$")
    assert translate("Db.s.t").database == "db"
    assert translate("s.t").database is None
    with pytest.raises(PlanError, match=r"too many dotted names\): a\.b\.c\.d"):
        translate("a.b.c.d")


def _psql_regexes(pg_servers, patterns: list[str]) -> list[tuple[str | None, str]]:
    """What psql -E (the same fe_utils pattern code as pg_dump's) sends for ``\\dt pattern``."""
    server = pg_servers["source"]
    script = "".join(f"\\dt {p}\n" for p in patterns)
    proc = subprocess.run(
        [server.bin("psql"), "-X", "-E", "-d", server.dsn("postgres")],
        input=script,
        capture_output=True,
        text=True,
        timeout=60,
    )
    out = []
    for block in proc.stdout.split("********* QUERY **********")[1:]:

        def regex(var: str, block: str = block) -> str | None:
            m = re.search(var + r" OPERATOR\(pg_catalog\.~\) (E?)'((?:[^']|'')*)'", block)
            if not m:
                return None
            text = m.group(2).replace("''", "'")
            return text.replace("\\\\", "\\") if m.group(1) else text

        out.append((regex("n.nspname"), regex("c.relname") or "^(.*)$"))
    return out


def test_translation_is_what_postgresql_itself_builds(pg_servers):
    """psql's \\dt runs the same pattern code as pg_dump -t; it drops a part that is ``^(.*)$``."""
    patterns = [p for p in sorted(TRANSLATIONS) if "Ü" not in p]
    theirs = _psql_regexes(pg_servers, patterns)
    assert len(theirs) == len(patterns)
    for pattern, (schema_re, name_re) in zip(patterns, theirs, strict=True):
        ours = translate(pattern)
        expected_schema = None if ours.schema_re in (None, "^(.*)$") else ours.schema_re
        assert (expected_schema, ours.name_re) == (schema_re, name_re), pattern


# -- what a selection leaves out ---------------------------------------------------------------------------

TABLES = [("s", "a"), ("s", "b"), ("s", "c"), ("t", "x")]


def test_exclusion_wins_and_includes_narrow():
    sel = Selection(tables=["s.*"], exclude_tables=["s.b"], exclude_table_data=["s.c"])
    left = decide(sel, [{("s", "a"), ("s", "b"), ("s", "c")}, {("s", "b")}, {("s", "c")}], TABLES)
    assert [(e["schema"], e["table"], e["why"]) for e in left["tables"]] == [
        ("s", "b", "exclude_tables 's.b'"),
        ("t", "x", "matched by no pattern of tables"),
    ]
    assert [(e["table"], e["why"]) for e in left["data"]] == [("c", "exclude_table_data 's.c'")]


def test_a_pattern_matching_nothing_fails_by_name():
    sel = Selection(exclude_tables=["s.a", "s.nope*"])
    with pytest.raises(PlanError, match=r"exclude_tables 's\.nope\*'") as err:
        decide(sel, [{("s", "a")}, set()], TABLES)
    assert "s.a'" not in str(err.value)


def _left(tables=(), data=()):
    return {
        "tables": [{"schema": s, "table": t, "why": "exclude_tables"} for s, t in tables],
        "data": [{"schema": s, "table": t, "why": "exclude_table_data"} for s, t in data],
    }


def test_conflicts_name_both_objects():
    links = [
        ("child", "s", "kid", "s", "mum", ""),
        ("partition", "s", "p1", "s", "events", ""),
        ("key", "s", "line", "s", "head", "line_head_fkey"),
        ("view", "s", "v_heads", "s", "head", ""),
    ]
    assert conflicts(_left(), links, {"s"}) == []
    [kid] = conflicts(_left(tables=[("s", "mum")]), links, {"s"})
    assert "s.kid is included but its parent s.mum is left out" in kid
    [part] = conflicts(_left(tables=[("s", "p1")]), links, {"s"})
    assert "partition s.p1 is left out" in part and "partitioned table s.events" in part
    key, view = conflicts(_left(tables=[("s", "head")]), links, {"s"})
    assert "foreign key line_head_fkey of s.line references s.head, which is left out" in key
    assert "view s.v_heads reads s.head, which is left out" in view
    [data] = conflicts(_left(data=[("s", "head")]), links, {"s"})
    assert "s.line references s.head, whose data is left out" in data
    # fine: a child left out of an included parent (ONLY), a key from a table whose data is left out too
    assert conflicts(_left(tables=[("s", "kid")]), links, {"s"}) == []
    assert conflicts(_left(data=[("s", "head"), ("s", "line")]), links, {"s"}) == []


# -- on the real servers -----------------------------------------------------------------------------------

DDL = """
CREATE SCHEMA sales; CREATE SCHEMA "Reporting Mart"; CREATE SCHEMA hist;
CREATE TABLE sales.orders (id int PRIMARY KEY, v text);
CREATE TABLE sales.order_lines (id int PRIMARY KEY, order_id int REFERENCES sales.orders, qty int);
CREATE TABLE sales.audit_2023 (id int PRIMARY KEY, what text);
CREATE TABLE sales.audit_2024 (id int PRIMARY KEY, what text);
CREATE TABLE sales.scratch (id int PRIMARY KEY, junk text);
CREATE VIEW sales.v_orders AS SELECT id FROM sales.orders;
CREATE TABLE "Reporting Mart"."Daily" (id int PRIMARY KEY);
CREATE TABLE "Reporting Mart".daily (id int PRIMARY KEY);
CREATE TABLE hist.events (id int, at date NOT NULL) PARTITION BY RANGE (at);
CREATE TABLE hist.events_2023 PARTITION OF hist.events FOR VALUES FROM ('2023-01-01') TO ('2024-01-01');
CREATE TABLE hist.events_2024 PARTITION OF hist.events FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');
CREATE TABLE hist.base (id int PRIMARY KEY);
CREATE TABLE hist.base_old () INHERITS (hist.base);
INSERT INTO sales.orders SELECT g, 'o' || g FROM generate_series(1, 20) g;
INSERT INTO sales.order_lines SELECT g, 1 + g % 20, g FROM generate_series(1, 50) g;
INSERT INTO sales.audit_2023 SELECT g, 'x' FROM generate_series(1, 5) g;
INSERT INTO sales.audit_2024 SELECT g, 'y' FROM generate_series(1, 6) g;
INSERT INTO sales.scratch SELECT g, 'junk' FROM generate_series(1, 7) g;
INSERT INTO "Reporting Mart"."Daily" VALUES (1), (2);
INSERT INTO "Reporting Mart".daily VALUES (3);
INSERT INTO hist.events VALUES (1, '2023-05-01'), (2, '2024-05-01');
INSERT INTO hist.base VALUES (1); INSERT INTO hist.base_old VALUES (2);
"""


def _inventory(pair, **patterns):
    return catalog.inventory(pair.source, None, None, tables=patterns)


def _names(entries):
    return sorted(f"{e['schema']}.{e['table']}" for e in entries)


def test_patterns_match_on_the_source_as_pg_dump(pair):
    with pair.source_su() as src:
        src.execute(DDL)
    inv = _inventory(pair, tables=['"Reporting Mart".*', "sales.ORDER*"])
    assert sorted(s["name"] for s in inv["schemas"]) == ["Reporting Mart", "sales"]
    kept = {(s["name"], t["name"]) for s in inv["schemas"] for t in s["tables"]}
    assert kept == {
        ("Reporting Mart", "Daily"),
        ("Reporting Mart", "daily"),
        ("sales", "orders"),
        ("sales", "order_lines"),
    }
    assert inv["selection"]["schemas"] == ["hist"]
    inv = _inventory(pair, exclude_tables=['"Reporting Mart"."Daily"'])
    assert _names(inv["selection"]["tables"]) == ["Reporting Mart.Daily"]
    # no schema part: only the tables on the search_path (public here: none of these)
    with pytest.raises(PlanError, match=r"tables 'orders'"):
        _inventory(pair, tables=["orders"])
    with pytest.raises(PlanError, match=r"exclude_table_data 'sales\.nothing\*'"):
        _inventory(pair, exclude_table_data=["sales.nothing*"])
    with pytest.raises(PlanError, match="cross-database references are not implemented: other.sales.orders"):
        _inventory(pair, tables=["other.sales.orders"])
    assert _inventory(pair, tables=[f"{pair.source_db}.sales.orders"])["selection"]["schemas"] == [
        "Reporting Mart",
        "hist",
    ]


def test_preflight_refuses_what_cannot_be_restored_naming_both(pair):
    with pair.source_su() as src:
        src.execute(DDL)
    cases = {
        "hist.base": ("exclude_tables", "hist.base_old is included but its parent hist.base is left out"),
        "hist.events_2023": ("exclude_tables", "partition hist.events_2023 is left out"),
        "sales.orders": (
            "exclude_table_data",
            "order_lines_order_id_fkey of sales.order_lines references sales.orders",
        ),
        "sales.ord*": ("exclude_tables", "view sales.v_orders reads sales.orders, which is left out"),
    }
    for pattern, (param, expected) in cases.items():
        inv = _inventory(pair, **{param: [pattern]})
        findings = preflight.run(pair.source, pair.target, inv, {"pool_size": 2})
        [found] = [f for f in findings if f["check"] == "table selection"]
        assert found["verdict"] == "blocking" and expected in found["detail"], (pattern, found)
    inv = _inventory(pair, exclude_tables=["sales.audit_*"])
    with pair.source_su() as src:
        [ok] = selection.consistency(src, inv)
        [refused] = selection.consistency(src, inv, "replicate")
    assert ok["verdict"] == "ok" and "sales.audit_2023" in ok["detail"]
    assert refused["verdict"] == "blocking"


def test_a_run_leaves_out_tables_and_data_and_validates(pair):
    with pair.source_su() as src:
        src.execute(DDL)
    patterns = {"exclude_tables": ["sales.audit_*", "hist.base_old"], "exclude_table_data": ["sales.scratch"]}
    run = LocalRun(pair.source, pair.target, f"test__{uuid.uuid4().hex[:8]}", pool_size=2, tables=patterns)
    try:
        plan = run.start()
        assert _names(plan["left_out"]["tables"]) == ["hist.base_old", "sales.audit_2023", "sales.audit_2024"]
        assert _names(plan["left_out"]["data"]) == ["sales.scratch"]
        assert all("scratch" not in u["tables"] and "audit_2023" not in u["tables"] for u in plan["units"])
        for unit in plan["units"]:
            run.unit(unit["unit_id"])
        run.finish()
    finally:
        run.close()
    with pair.target_su() as tgt:
        present = {r[0] for r in tgt.execute("SELECT relname FROM pg_class WHERE relnamespace = 'sales'::regnamespace")}
        assert "audit_2023" not in present and "audit_2024_pkey" not in present and "scratch_pkey" in present
        assert tgt.execute("SELECT to_regclass('hist.base_old')").fetchone()[0] is None
        assert tgt.execute("SELECT count(*) FROM sales.scratch").fetchone()[0] == 0
        assert tgt.execute("SELECT count(*) FROM sales.order_lines").fetchone()[0] == 50
    for schema in ("sales", "hist", "Reporting Mart"):
        result = validate_schema(pair.source, pair.target, schema, run_id=run.run_id)
        assert result.ok, result.mismatches
    scratch = next(
        t for t in validate_schema(pair.source, pair.target, "sales", run_id=run.run_id).tables if t.table == "scratch"
    )
    assert (scratch.source_rows, scratch.target_rows, scratch.source_rows_now) == (0, 0, 7)
    text = to_markdown({"plan": plan})
    assert "## Left out by the selection" in text and "- sales.audit_2023 (exclude_tables 'sales.audit_*')" in text
    assert "- sales.scratch (exclude_table_data 'sales.scratch')" in text


def test_make_plan_without_a_selection_is_unchanged(pair):
    with pair.source_su() as src:
        src.execute(DDL)
    inv = catalog.inventory(pair.source, None, None)
    assert "selection" not in inv and "left_out" not in make_plan(inv, 2)
