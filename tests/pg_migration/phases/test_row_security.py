"""Row-level security never hides rows from the copy or from validation (issue 19, item 2).

The source is read as the least-privileged reader (``pgmig_reader``: a member of ``pg_read_all_data``,
which does not bypass row security). A policy hiding most rows of a table must never end in a PASS:
pre-flight blocks naming the table, every source session reads with ``row_security = off`` (a query the
policy would filter raises), and the target is never counted through a policy, forced ones included.
"""

from __future__ import annotations

import uuid

import pytest

from include.pg_migration import catalog, preflight
from include.pg_migration.harness import migrate_locally
from include.pg_migration.phases.validate import validate_schema
from tests.conftest import READER

TABLES = """
CREATE SCHEMA app;
CREATE TABLE app.tenants_data (id int PRIMARY KEY, tenant int NOT NULL, v text);
INSERT INTO app.tenants_data SELECT g, g % 10, 'row ' || g FROM generate_series(1, 200) g;
CREATE TABLE app.plain (id int PRIMARY KEY);
INSERT INTO app.plain SELECT generate_series(1, 5);
"""

#: A policy that shows the reader one tenant in ten: 20 of 200 rows.
POLICY = """
ALTER TABLE app.tenants_data ENABLE ROW LEVEL SECURITY;
CREATE POLICY one_tenant ON app.tenants_data FOR SELECT TO PUBLIC USING (tenant = 0);
"""


@pytest.fixture
def rls_pair(pair):
    with pair.source_su() as src:
        src.execute(TABLES)
        src.execute(POLICY)
    return pair


def test_preflight_blocks_the_tables_whose_row_security_the_source_role_does_not_bypass(rls_pair):
    p = rls_pair
    with p.source_su() as src:  # a forced table is not bypassed by its owner either (the superuser does)
        src.execute("CREATE TABLE app.forced (id int); ALTER TABLE app.forced ENABLE ROW LEVEL SECURITY")
        src.execute("ALTER TABLE app.forced FORCE ROW LEVEL SECURITY")
    inventory = catalog.inventory(p.source_reader, ["app"], None)
    found = [f for f in preflight.run(p.source_reader, p.target, inventory, {}) if f["check"] == "row security"]
    assert [f["verdict"] for f in found] == ["blocking"], found
    detail = found[0]["detail"]
    assert READER in detail and "app.tenants_data" in detail and "app.forced (forced)" in detail, detail
    assert "app.plain" not in detail
    # a superuser bypasses row security, forced or not
    as_su = preflight.run(p.source, p.target, catalog.inventory(p.source, ["app"], None), {})
    assert [f["verdict"] for f in as_su if f["check"] == "row security"] == ["ok"]


def test_a_policy_hiding_rows_fails_the_copy_by_name_instead_of_passing(rls_pair):
    """Run anyway (pre-flight not consulted): with row_security = off the copy of the table raises."""
    p = rls_pair
    with pytest.raises(Exception) as caught:  # noqa: PT011 - whatever the harness raises, it names the table
        migrate_locally(p.source_reader, p.target, f"test__{uuid.uuid4().hex[:8]}", include=["app"])
    assert "tenants_data" in str(caught.value) and "row-level security" in str(caught.value), caught.value
    with p.target_su() as tgt:  # never a partial table recorded as loaded
        loaded = tgt.execute("SELECT count(*) FROM _pg_migration.tables WHERE table_name = 'tenants_data'").fetchone()[
            0
        ]
        assert loaded == 0


def test_validation_never_counts_the_source_through_a_policy(rls_pair):
    """The target holds only the rows the policy shows (what the copy took before the fix): a mismatch."""
    p = rls_pair
    with p.target.connect("test", autocommit=True) as tgt:
        tgt.execute(TABLES.replace("generate_series(1, 200) g", "generate_series(10, 200, 10) g"))
    found = validate_schema(p.source_reader, p.target, "app", structure=False).mismatches
    assert any("app.tenants_data" in m for m in found), found
    assert not any("app.plain" in m for m in found), found


def test_a_table_with_forced_row_security_on_the_target_is_counted_exactly(pair):
    with pair.source_su() as src:
        src.execute(TABLES)
    with pair.target.connect("test", autocommit=True) as tgt:  # the target role owns the table
        tgt.execute(TABLES)
        tgt.execute(POLICY)
        tgt.execute("ALTER TABLE app.tenants_data FORCE ROW LEVEL SECURITY")
        assert tgt.execute("SELECT count(*) FROM app.tenants_data").fetchone()[0] == 20  # the owner is filtered
    for mode in ("counts", "checksums"):
        result = validate_schema(pair.source_reader, pair.target, "app", mode=mode)
        assert result.mismatches == [], (mode, result.mismatches)
        counted = {t.table: t.target_rows for t in result.tables}
        assert counted == {"tenants_data": 200, "plain": 5}, counted
    with pair.target_su() as tgt:  # the forcing was lifted only inside a rolled-back transaction
        forced = tgt.execute("SELECT relforcerowsecurity FROM pg_class WHERE oid = 'app.tenants_data'::regclass")
        assert forced.fetchone()[0] is True
