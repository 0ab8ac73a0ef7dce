"""The pg_migration DAG end to end with `airflow dags test` (local runner) on real servers."""

from __future__ import annotations

from tests.conftest import assert_equal_data

FAST_RETRIES = {"PG_MIGRATION_RETRIES": "1", "PG_MIGRATION_RETRY_DELAY_S": "1"}


def test_demo_warehouse_end_to_end(demo_pair, dag_runner):
    result = dag_runner("pg_migration", env={**demo_pair.airflow_env(), **FAST_RETRIES})
    assert result.state == "success", result.output[-4000:]
    with demo_pair.source_su() as src, demo_pair.target_su() as tgt:
        assert_equal_data(src, tgt)  # by query, not by trusting the tool's own counts
    report = result.report()
    assert report["verdict"] == "passed" and report["failures"] == []
    assert {s["status"] for s in report["schemas"]} == {"passed"}
    assert sum(len(s["tables"]) for s in report["schemas"]) >= 20
    assert (result.report_dir / "report.md").read_text().startswith("# pg-migration report: PASSED")

    # validate_only re-checks the migrated target without copying; a difference fails the run by name
    with demo_pair.target_su() as tgt:
        tgt.execute("DELETE FROM archive.events_2023 WHERE ctid = (SELECT min(ctid) FROM archive.events_2023)")
    again = dag_runner("pg_migration", conf={"validate_only": True}, env={**demo_pair.airflow_env(), **FAST_RETRIES})
    assert again.state == "failed"
    failures = again.report()["failures"]
    assert any("archive.events_2023" in f and "lost" in f for f in failures), failures


RULE = """
CREATE FUNCTION public.dba_rule() RETURNS event_trigger LANGUAGE plpgsql AS $$
BEGIN
  IF EXISTS (SELECT 1 FROM pg_event_trigger_ddl_commands()
              WHERE command_tag = 'CREATE TABLE' AND object_identity = 'bad.t') THEN
    EXECUTE 'ALTER TABLE bad.t ADD CONSTRAINT below_1000 CHECK (id < 1000)';
  END IF;
END $$;
CREATE EVENT TRIGGER dba_rule ON ddl_command_end EXECUTE FUNCTION public.dba_rule();
"""


def test_a_failed_unit_fails_the_run_after_the_others_complete(pair, dag_runner):
    with pair.source_su() as src:
        src.execute("CREATE SCHEMA good; CREATE TABLE good.t AS SELECT g AS id FROM generate_series(1, 1000) g")
        src.execute("CREATE SCHEMA bad; CREATE TABLE bad.t AS SELECT g AS id FROM generate_series(1, 1000) g")
    with pair.target_su() as tgt:  # a target-side rule (as a DBA might have) that row 1000 breaks
        tgt.execute(RULE)
    result = dag_runner("pg_migration", conf={"schemas": ["good", "bad"]}, env={**pair.airflow_env(), **FAST_RETRIES})
    assert result.state == "failed"
    report = result.report()
    by_schema = {s["schema"]: s for s in report["schemas"]}
    assert by_schema["good"]["status"] == "passed"
    assert by_schema["bad"]["status"] == "failed"
    assert by_schema["bad"]["units"][0]["attempts"] == 2  # retried once, then failed
    assert any("bad.t" in f and "below_1000" in f for f in report["failures"]), report["failures"]
    with pair.target_su() as tgt:
        assert tgt.execute("SELECT count(*) FROM good.t").fetchone()[0] == 1000
        assert tgt.execute("SELECT count(*) FROM bad.t").fetchone()[0] == 0  # never half-loaded


def test_unknown_connection_and_schema_are_named(pair, dag_runner):
    result = dag_runner("pg_migration", conf={"source_conn_id": "no_such_conn"}, env=pair.airflow_env())
    assert result.state == "failed"
    assert "Airflow connection 'no_such_conn' (source) does not exist" in result.output
    result = dag_runner("pg_migration", conf={"schemas": ["ghost"]}, env=pair.airflow_env())
    assert result.state == "failed"
    assert "schema(s) not found in the source: 'ghost'" in result.output
