"""The replicate task bodies in the order ``pg_migration`` must wire them (see
dags/pg_migration_support/replicate_tasks.py), driven without a scheduler: connections resolved by a stub."""

from __future__ import annotations

import sys

import pytest

from include.pg_migration import state
from include.pg_migration.errors import PlanError
from include.pg_migration.harness import run_cutover
from include.pg_migration.replicate import records
from include.pg_migration.reports import assemble
from tests.conftest import REPO, assert_equal_data
from tests.pg_migration.replicate.conftest import Writer, load_source, publisher, run_id, source_objects

sys.path.insert(0, str(REPO / "dags"))


@pytest.fixture
def glue(rpair, monkeypatch):
    from pg_migration_support import connections, replicate_tasks, tasks

    ends = {"pg_source": rpair.source, "pg_target": rpair.target, "pg_replication": publisher(rpair)}
    monkeypatch.setattr(connections, "endpoint", lambda conn_id, label: ends[conn_id])
    return tasks, replicate_tasks  # unpacked below as (steps, replication)


def _params(**overrides):
    params = {
        "source_conn_id": "pg_source",
        "target_conn_id": "pg_target",
        "schemas": [],
        "exclude_schemas": [],
        "runner": "local",
        "validation": "counts",
        "validate_only": False,
        "dry_run": False,
        "consistent": True,
        "resume": False,
        "create_roles": True,
        "pool_size": 2,
        "bandwidth_mb_s": 93,
        "split_mb": None,
        "mode": "replicate",
        "replica_identity_full": True,
        "subscription_conn_id": "pg_replication",
        "catchup_timeout_s": 30,
    }
    return {**params, **overrides}


def _copy_and_validate(steps, params, rid: str, planned: dict) -> None:
    """pre_data -> migrate_unit (each unit) -> large_objects, release_snapshot -> post_data -> validate,
    as the DAG runs them after the snapshot task."""
    steps.run_worker(params, rid, "pre-data")
    for unit in planned["units"]:
        steps.run_worker(params, rid, "data", unit["unit_id"])
    steps.run_worker(params, rid, "large-objects")
    steps.release_snapshot(params, rid)
    steps.run_worker(params, rid, "post-data")
    for schema in planned["schemas"]:
        steps.validate(params, rid, schema)


def test_pg_migration_replicate_wiring(rpair, glue):
    steps, replication = glue
    p, rid, params = rpair, run_id(), _params()
    with p.source_su() as src:
        load_source(src)
    writer = Writer(p.source_server.dsn(p.source_db), seed=5)
    writer.start()
    try:
        source, target = p.source, p.target
        inventory = steps.discover(source, params)
        # every mode refuses nothing here; replicate checks the source: resume is refused by name
        with pytest.raises(PlanError, match="resume"):
            replication.check_replication(_params(resume=True), inventory, rid)
        findings = replication.check_replication(params, inventory, rid)
        assert all(f["verdict"] != "blocking" for f in findings)
        planned = steps.plan(source, target, inventory, params, rid, "pg_migration")
        assert replication.start_replication_snapshot(params, rid)  # snapshot task, runner local
        _copy_and_validate(steps, params, rid, planned)
        assert replication.subscribe(params, rid)["subscription"] == records.names(rid).subscription
        lag = replication.report_lag(params, rid)
        assert lag["caught_up"] and lag["retained_wal_bytes"] is not None
        assert replication.cleanup_replication(params, rid)["action"] == "kept"
        data = assemble.run_report(
            source, target, "pg_migration", rid, params, inventory, findings, planned["plan"], []
        )
        steps.cleanup(params, rid, "pg_migration")
    finally:
        writer.stop()
    assert writer.errors == []
    assert data["verdict"] == "passed", data["failures"]
    assert "replication" in data["phases"] and data["phases"]["replication"]["retained_wal_bytes"] is not None
    assert any("retains WAL" in w for w in data["warnings"])
    # while it streams, no other run may write into this target
    with pytest.raises(PlanError, match="still replicates"):
        replication.check_replication(_params(mode="snapshot"), inventory, "another run")
    report = run_cutover(p.source, p.target, rid + "_cut", quiet_s=1, writes_timeout_s=30, lag_timeout_s=60)
    assert report["verdict"] == "passed", report["failures"]
    with p.source_su() as src, p.target_su() as tgt:
        assert_equal_data(src, tgt)
        assert state.get_run(tgt, rid)["params"]["mode"] == "replicate"
    assert source_objects(p) == {"slots": [], "publications": [], "subscriptions": []}


def test_snapshot_mode_is_untouched_and_a_failed_replicate_run_cleans_up(rpair, glue):
    steps, replication = glue
    p, rid = rpair, run_id()
    with p.source_su() as src:
        load_source(src)
    snap_params = _params(mode="snapshot")
    for fn in (
        replication.subscribe,
        replication.report_lag,
        replication.cleanup_replication,
        replication.start_replication_snapshot,
    ):
        assert fn(snap_params, rid) is None
    params = _params()
    inventory = steps.discover(p.source, params)
    replication.check_replication(params, inventory, rid)
    steps.plan(p.source, p.target, inventory, params, rid, "pg_migration")
    replication.start_replication_snapshot(params, rid)
    steps.run_worker(params, rid, "pre-data")
    # the units never ran: subscribe refuses, cleanup (all_done) drops everything
    with pytest.raises(Exception, match="not subscribing"):
        replication.subscribe(params, rid)
    result = replication.cleanup_replication(params, rid)
    assert result["action"] == "dropped" and result["retained_wal_bytes"] is not None
    steps.cleanup(params, rid, "pg_migration")
    assert source_objects(p) == {"slots": [], "publications": [], "subscriptions": []}
    with p.target_su() as tgt:
        phase = state.phases_of_run(tgt, rid)["replication"]
        assert phase["status"] == "done" and phase["detail"]["drop"]["dropped"]


def test_an_apply_error_after_subscribing_fails_the_lag_step_by_name_and_cleanup_drops_everything(rpair, glue):
    """A row the subscription cannot apply (a key the target already has): the run does not report
    itself streaming; it says the subscription is broken and leaves no slot or publication behind."""
    steps, replication = glue
    p, rid, params = rpair, run_id(), _params(catchup_timeout_s=8)
    with p.source_su() as src:
        load_source(src)
    inventory = steps.discover(p.source, params)
    replication.check_replication(params, inventory, rid)
    planned = steps.plan(p.source, p.target, inventory, params, rid, "pg_migration")
    replication.start_replication_snapshot(params, rid)
    _copy_and_validate(steps, params, rid, planned)
    replication.subscribe(params, rid)
    with p.target_su() as tgt:  # someone writes into the target...
        tgt.execute("INSERT INTO sales.customers VALUES (9999, 'written on the target')")
    with p.source_su() as src:  # ...and the source's own row with that key cannot be applied
        src.execute("INSERT INTO sales.customers VALUES (9999, 'written on the source')")
    with pytest.raises(Exception, match="apply error"):
        replication.report_lag(params, rid)
    with p.target_su() as tgt:
        assert records.get(tgt, rid)["status"] == "broken"
    result = replication.cleanup_replication(params, rid)
    assert result["action"] == "dropped", result
    steps.cleanup(params, rid, "pg_migration")
    assert source_objects(p) == {"slots": [], "publications": [], "subscriptions": []}
