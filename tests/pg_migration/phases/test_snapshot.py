"""One consistent cut: writes during a run never cause a false mismatch; a dead holder fails loudly."""

from __future__ import annotations

import os
import signal
import threading
import time
import uuid

import pytest

from include.pg_migration import state
from include.pg_migration.errors import SnapshotLost
from include.pg_migration.harness import LocalRun
from include.pg_migration.phases.validate import validate_schema
from tests.conftest import assert_equal_data


def _run_id() -> str:
    return f"test__{uuid.uuid4().hex[:8]}"


class Writer(threading.Thread):
    """Inserts, updates and deletes on the source while the run copies (its own sessions)."""

    def __init__(self, pair):
        super().__init__(daemon=True)
        self.pair = pair
        self.stop = threading.Event()
        self.writes = 0

    def run(self):
        with self.pair.source_su() as conn:
            while not self.stop.is_set():
                conn.execute("INSERT INTO staging.raw_clicks SELECT * FROM staging.raw_clicks LIMIT 3")
                conn.execute(
                    "DELETE FROM analytics.events_2024 WHERE event_id = "
                    "(SELECT min(event_id) FROM analytics.events_2024)"
                )
                conn.execute("UPDATE crm.customers SET email = email WHERE customer_id % 50 = 1")
                self.writes += 1
                time.sleep(0.01)


@pytest.fixture
def private_demo(pair):
    """The demo warehouse in a private source (this test writes to it)."""
    from include.pg_migration.demo import load_warehouse

    load_warehouse(pair.source_server.dsn(pair.source_db), scale=0.2)
    return pair


def test_writes_during_the_run_do_not_cause_a_false_mismatch(private_demo):
    pair = private_demo
    run_id = _run_id()
    run = LocalRun(pair.source, pair.target, run_id, pool_size=2)
    writer = Writer(pair)
    try:
        plan = run.start()
        writer.start()
        for unit in plan["units"]:
            run.unit(unit["unit_id"])
        run.finish()
    finally:
        writer.stop.set()
        writer.join()
        run.close()
    assert writer.writes > 0
    for schema in plan["schemas"]:
        result = validate_schema(pair.source, pair.target, schema, run_id=run_id)
        assert result.mismatches == [], (schema, result.mismatches)
    notes = [
        t.note
        for s in ("staging", "analytics")
        for t in validate_schema(pair.source, pair.target, s, run_id=run_id).tables
        if t.note
    ]
    assert any("changed after the dump" in n for n in notes)


def test_consistent_false_takes_a_snapshot_per_unit_and_validates_fks(demo_pair):
    run_id = _run_id()
    run = LocalRun(demo_pair.source, demo_pair.target, run_id, pool_size=2, consistent=False)
    try:
        plan = run.start()
        for unit in plan["units"]:
            run.unit(unit["unit_id"])
        run.finish()
    finally:
        run.close()
    with demo_pair.source_su() as src, demo_pair.target_su() as tgt:
        assert_equal_data(src, tgt)
        # the cross-schema foreign keys were added NOT VALID, then validated
        assert (
            tgt.execute("SELECT count(*) FROM pg_constraint WHERE contype = 'f' AND NOT convalidated").fetchone()[0]
            == 0
        )
        detail = tgt.execute(
            "SELECT detail FROM _pg_migration.phases WHERE run_id = %s AND phase = 'post-data'", (run_id,)
        ).fetchone()[0]
        assert detail["not_valid_fks"] > 0


def test_a_dead_snapshot_holder_fails_the_units_that_need_it(demo_pair):
    run_id = _run_id()
    run = LocalRun(demo_pair.source, demo_pair.target, run_id, pool_size=2)
    try:
        plan = run.start()
        with demo_pair.target_su() as tgt:
            where = state.get_run(tgt, run_id)["holder_where"]
        os.kill(int(where.rsplit(":", 1)[1]), signal.SIGKILL)
        time.sleep(0.5)
        with pytest.raises(SnapshotLost, match="snapshot"):
            run.unit(plan["units"][0]["unit_id"])
    finally:
        run.close()
