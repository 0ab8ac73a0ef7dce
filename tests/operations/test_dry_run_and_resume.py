"""Through the DAGs (``airflow dags test``, local runner, real servers): a dry run plans and touches
nothing on the target; a resumed run skips exactly the schemas an earlier run loaded and verified."""

from __future__ import annotations

import uuid

from include.pg_migration import catalog
from include.pg_migration.harness import LocalRun
from include.pg_migration.reports import history
from tests.conftest import table_fingerprints

FAST_RETRIES = {"PG_MIGRATION_RETRIES": "1", "PG_MIGRATION_RETRY_DELAY_S": "1"}
#: Demo schemas closed under references (crm/inventory triggers call util; their keys reach ref).
SUBSET = ["crm", "hr", "inventory", "ref", "util"]

TARGET_STATE = """
SELECT 'schema ' || nspname FROM pg_catalog.pg_namespace
 WHERE nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast') AND nspname !~ '^pg_(temp|toast_temp)'
UNION ALL
SELECT c.relkind::text || ' ' || n.nspname || '.' || c.relname FROM pg_catalog.pg_class c
  JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname !~ '^pg_(toast|temp)'
UNION ALL
SELECT 'proc ' || p.oid::regprocedure::text FROM pg_catalog.pg_proc p
  JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname NOT IN ('pg_catalog', 'information_schema')
UNION ALL
SELECT 'extension ' || extname FROM pg_catalog.pg_extension
UNION ALL
SELECT 'large object ' || oid FROM pg_catalog.pg_largeobject_metadata
UNION ALL
SELECT 'role ' || rolname FROM pg_catalog.pg_roles
UNION ALL
SELECT 'setting ' || array_to_string(setconfig, ',') FROM pg_catalog.pg_db_role_setting
 WHERE setdatabase = (SELECT oid FROM pg_catalog.pg_database WHERE datname = current_database())
ORDER BY 1
"""


def target_state(pair, roles: set[str] | None = None) -> list[str]:
    """The target's objects; of the (cluster-wide, shared by concurrent tests) roles only ``roles``."""
    with pair.target_su() as tgt:
        rows = [r[0] for r in tgt.execute(TARGET_STATE)]
    return [r for r in rows if roles is None or not r.startswith("role ") or r[5:] in roles]


SOURCE_ROLES = """
SELECT pg_catalog.pg_get_userbyid(nspowner) FROM pg_catalog.pg_namespace
UNION SELECT pg_catalog.pg_get_userbyid(relowner) FROM pg_catalog.pg_class
UNION SELECT pg_catalog.pg_get_userbyid(proowner) FROM pg_catalog.pg_proc
UNION SELECT pg_catalog.pg_get_userbyid(lomowner) FROM pg_catalog.pg_largeobject_metadata
UNION SELECT r.rolname FROM pg_catalog.pg_roles r WHERE r.rolsuper
"""


def source_roles(pair) -> set[str]:
    """The roles a run of the source database could create on the target: those its objects name
    as owners or grantees (other tests create and drop roles on the shared servers meanwhile)."""
    with pair.source_su() as src:
        schemas = [r[0] for r in src.execute("SELECT nspname::text FROM pg_catalog.pg_namespace")]
        roles = {r[0] for r in src.execute(catalog.GRANTEES, {"schemas": schemas})}
        return roles | {r[0] for r in src.execute(SOURCE_ROLES)}


def test_dry_run_plans_and_leaves_the_target_untouched(demo_pair, dag_runner):
    """Through the rehearsal DAG (same factory as pg_migration), so its connection default is used too."""
    roles = source_roles(demo_pair)
    before = target_state(demo_pair, roles)
    env = {
        "AIRFLOW_CONN_PG_SOURCE": demo_pair.airflow_env()["AIRFLOW_CONN_PG_SOURCE"],
        "AIRFLOW_CONN_PG_TARGET_REHEARSAL": demo_pair.airflow_env()["AIRFLOW_CONN_PG_TARGET"],
        **FAST_RETRIES,
    }
    result = dag_runner("pg_migration_rehearsal", conf={"dry_run": True, "pool_size": 3, "bandwidth_mb_s": 50}, env=env)
    assert result.state == "success", result.output[-4000:]
    assert target_state(demo_pair, roles) == before  # not a schema, table, function, role, LO or setting more
    assert "_pg_migration" not in " ".join(before)

    report = result.report()
    assert report["verdict"] == "planned" and report["dag_id"] == "pg_migration_rehearsal"
    assert report["target"]["dbname"] == demo_pair.target_db
    plan = report["plan"]
    assert len(plan["schemas"]) >= 10 and plan["bytes"] > 0 and plan["tables"] >= 20
    units = plan["units"]
    assert units and all(u["bytes"] >= 0 and u["tables"] and u["label"] for u in units)
    assert [u["bytes"] for u in units] == sorted((u["bytes"] for u in units), reverse=True)  # the pool's order
    assert plan["predicted_makespan_s"] > 0
    checks = {f["check"] for f in report["preflight"]}
    assert {
        "server versions",
        "pg_dump",
        "encoding",
        "extensions",
        "roles",
        "large objects",
        "source connections",
        "target connections",
        "tables without a primary key",
    } <= checks
    # the plan step merges history.forecast (docs/operations.md): the report must carry it
    assert "forecast" in plan and "schema_sizes" in plan, f"the plan has no forecast: {sorted(plan)}"
    assert {s["schema"] for s in plan["schema_sizes"]} == set(plan["schemas"])
    assert [u["unit_id"] for u in plan["forecast"]["schedule"]] == [u["unit_id"] for u in units]
    assert plan["forecast"]["pool_size"] == 3 and plan["forecast"]["bandwidth_mb_s"] == 50
    md = (result.report_dir / "report.md").read_text()
    assert md.startswith("# pg-migration report: PLANNED") and "## Plan" in md and "## Pre-flight" in md

    # what the plan step merges (history.forecast) fits this real plan: order, sizes, prediction
    inventory = catalog.inventory(demo_pair.source, None, None)
    fc = history.forecast(plan, inventory, 3, 50, base=str(result.report_dir.parents[1]))
    assert [u["unit_id"] for u in fc["forecast"]["schedule"]] == [u["unit_id"] for u in units]
    assert {s["schema"] for s in fc["schema_sizes"]} >= set(plan["schemas"])
    assert sum(s["tables"] for s in fc["schema_sizes"]) >= plan["tables"]
    assert fc["predicted_makespan_s"] >= plan["bytes"] / 50e6 and fc["forecast"]["fits_window"]


def test_resume_through_the_dag_skips_exactly_the_verified_schemas(demo_pair, dag_runner):
    # "the run failed at hour 20": an earlier run loaded and verified half of the units, then stopped
    first = f"test__{uuid.uuid4().hex[:8]}"
    run = LocalRun(demo_pair.source, demo_pair.target, first, include=SUBSET, pool_size=4)
    try:
        plan = run.start()
        by_schema: dict[str, list[dict]] = {}
        for u in plan["units"]:
            by_schema.setdefault(u["schema"], []).append(u)
        done = sorted(by_schema)[::2]  # every other schema, all of its units
        for schema in done:
            for u in by_schema[schema]:
                run.unit(u["unit_id"])
    finally:
        run.close()
    kept = {(u["schema"], t) for s in done for u in by_schema[s] for t in u["tables"]}
    assert kept

    result = dag_runner(
        "pg_migration",
        conf={"resume": True, "pool_size": 4, "schemas": SUBSET},
        env={**demo_pair.airflow_env(), **FAST_RETRIES},
    )
    assert result.state == "success", result.output[-4000:]
    report = result.report()
    second = report["run_id"]
    with demo_pair.target_su() as tgt:
        loaded_by = {
            (s, t): r for s, t, r in tgt.execute("SELECT schema_name, table_name, run_id FROM _pg_migration.tables")
        }
    assert {k for k, r in loaded_by.items() if r == first} == kept  # exactly the verified ones were kept
    assert {r for k, r in loaded_by.items() if k not in kept} == {second}  # everything else loaded now
    with demo_pair.source_su() as src, demo_pair.target_su() as tgt:  # by query, the selected schemas
        source_tables = {k: v for k, v in table_fingerprints(src).items() if k[0] in SUBSET}
        assert source_tables and source_tables == table_fingerprints(tgt)
    assert report["verdict"] == "passed"
    notes = [n for s in report["schemas"] for t in s["tables"] for n in [t.get("note") or ""]]
    assert any("another snapshot" in n for n in notes), notes  # the report says the cuts differ

    # what the report step adds (history.compare) on this real report: a row per schema, the window
    cmp = history.compare(report, base=str(result.report_dir.parents[1]))
    assert {r["schema"] for r in cmp["schemas"]} >= {s["schema"] for s in report["schemas"]}
    assert cmp["fits_window"] is True and "FITS" in cmp["verdict"]
    assert (result.report_dir / "rehearsal.svg").read_text().startswith("<svg")
