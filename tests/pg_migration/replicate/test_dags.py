"""The cut-over and abort DAGs through ``bin/airflow dags test`` (the replicate run itself through the
library: its wiring into ``pg_migration`` belongs to that DAG)."""

from __future__ import annotations

import json
import time

from include.pg_migration.harness import ReplicateRun
from include.pg_migration.replicate import records
from tests.conftest import assert_equal_data
from tests.pg_migration.replicate.conftest import Writer, load_source, publisher, run_id, source_objects


def _streaming_run(p, tmp_path, seed: int, seconds_of_writes: float = 1.0, copy: bool = True) -> str:
    rid = run_id()
    writer = Writer(p.source_server.dsn(p.source_db), seed=seed)
    run = ReplicateRun(
        p.source, p.target, rid, publisher=publisher(p), replica_identity_full=True, pool_size=2, log_dir=tmp_path
    )
    writer.start()
    try:
        plan = run.start()
        if copy:
            for unit in plan["units"]:
                run.unit(unit["unit_id"])
            run.finish()
        time.sleep(seconds_of_writes)
    finally:
        writer.stop()
    assert writer.errors == [] and writer.ops > 0
    return rid


def test_abort_then_cutover_dags(rpair, tmp_path, dag_runner):
    p = rpair
    with p.source_su() as src:
        load_source(src)
    env = p.airflow_env()
    secret = p.source_server.migrator_password

    first = _streaming_run(p, tmp_path, seed=3, copy=False)  # abandoned mid-copy: slot and publication live
    aborted = dag_runner("pg_migration_abort", env=env, timeout=300)
    assert aborted.state == "success", aborted.output[-4000:]
    assert source_objects(p) == {"slots": [], "publications": [], "subscriptions": []}
    with p.target_su() as tgt:
        assert records.get(tgt, first)["status"] == "aborted"
    assert "retained" in aborted.output

    second = _streaming_run(p, tmp_path, seed=4)
    conf = {
        "validation": "checksums",
        "read_only_source": True,
        "quiet_seconds": 1,
        "writes_timeout_s": 60,
        "lag_timeout_s": 60,
    }
    result = dag_runner("pg_migration_cutover", conf=conf, env=env, timeout=300)
    assert result.state == "success", result.output[-6000:]
    report = result.report()
    assert report["verdict"] == "passed", report["failures"]
    cut = report["cutover"]
    assert cut["replicate_run_id"] == second and cut["replication_dropped"] and cut["read_only_source"]
    assert 0 < cut["downtime_seconds"] < 120
    assert "downtime" in (result.report_dir / "report.md").read_text()
    assert source_objects(p) == {"slots": [], "publications": [], "subscriptions": []}
    with p.source_su() as src, p.target_su() as tgt:
        assert_equal_data(src, tgt)
        # after go-live the source stays read-only: no write can be lost
        assert src.execute(
            "SELECT setconfig FROM pg_db_role_setting WHERE setdatabase = "
            "(SELECT oid FROM pg_database WHERE datname = current_database())"
        ).fetchone()[0] == ["default_transaction_read_only=on"]
    for text in (aborted.output, result.output, json.dumps(report), (result.report_dir / "report.md").read_text()):
        assert secret not in text


def test_pg_migration_replicate_mode_then_cutover(rpair, dag_runner):
    """The whole near-zero-downtime path through the real DAGs: copy + stream with a live writer, cut over."""
    p = rpair
    with p.source_su() as src:
        load_source(src)
    env = {**p.airflow_env(), "PG_MIGRATION_RETRIES": "1", "PG_MIGRATION_RETRY_DELAY_S": "1"}
    writer = Writer(p.source_server.dsn(p.source_db), seed=7)
    writer.start()
    try:
        conf = {"mode": "replicate", "replica_identity_full": True, "pool_size": 2}
        run = dag_runner("pg_migration", conf=conf, env=env, timeout=600)
    finally:
        writer.stop()
    assert run.state == "success", run.output[-6000:]
    assert writer.errors == [] and writer.ops > 0
    assert "replication" in run.report()["phases"]
    conf = {"quiet_seconds": 1, "writes_timeout_s": 60, "lag_timeout_s": 60}
    cut = dag_runner("pg_migration_cutover", conf=conf, env=env, timeout=300)
    assert cut.state == "success", cut.output[-6000:]
    assert source_objects(p) == {"slots": [], "publications": [], "subscriptions": []}
    with p.source_su() as src, p.target_su() as tgt:
        assert_equal_data(src, tgt)
