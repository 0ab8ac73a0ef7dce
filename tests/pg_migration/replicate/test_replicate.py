"""Replicate mode end to end (library, like LocalRun): copy from the slot's snapshot while the source
takes writes, stream the rest, cut over, and the target equals the source row for row."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time

import pytest

from include.pg_migration import state
from include.pg_migration.errors import ConfigError, MigrationError, PlanError, SnapshotLost
from include.pg_migration.harness import ReplicateRun
from include.pg_migration.replicate import checks, lag, records, teardown
from include.pg_migration.runner import local_env
from include.pg_migration.sessions import tag
from tests.conftest import assert_equal_data
from tests.pg_migration.replicate.conftest import Writer, load_source, publisher, run_id, source_objects


def _nothing_left(p, rid: str) -> None:
    objects = source_objects(p)
    assert objects == {"slots": [], "publications": [], "subscriptions": []}, objects
    with p.source_su() as src:
        assert teardown.leftovers(src, rid) == []


def _identity(p, table: str) -> tuple[str, str]:
    q = "SELECT relreplident::text FROM pg_class WHERE oid = %s::regclass"
    with p.source_su() as src, p.target_su() as tgt:
        return src.execute(q, (table,)).fetchone()[0], tgt.execute(q, (table,)).fetchone()[0]


def test_writes_during_and_after_the_copy_end_equal_after_cutover(rpair, tmp_path, caplog):
    """The source is read, published and cut over as the least-privileged replicate role (REPLICATION,
    pg_read_all_data, pg_read_all_stats, member of the tables' owner role), never as a superuser."""
    caplog.set_level(logging.DEBUG)
    p = rpair
    with p.source_su() as src:
        load_source(src)
    rid = run_id()
    writer = Writer(p.source_server.dsn(p.source_db))
    run = ReplicateRun(
        p.source_replicator,
        p.target,
        rid,
        publisher=publisher(p),
        replica_identity_full=True,
        pool_size=2,
        log_dir=tmp_path,
    )
    writer.start()
    try:
        plan = run.start()
        with p.source_su() as src:  # the publication lists every physical table, ONLY, not via the root
            published = {
                tuple(r)
                for r in src.execute(
                    "SELECT schemaname, tablename FROM pg_publication_tables WHERE pubname = %s",
                    (records.names(rid).publication,),
                )
            }
            via_root = src.execute(
                "SELECT pubviaroot FROM pg_publication WHERE pubname = %s", (records.names(rid).publication,)
            ).fetchone()[0]
        assert ("sales", "orders") in published and ("archive", "orders_old") in published
        assert ("sales", "events_2024") in published and ("archive", "events_2025") in published
        assert ("sales", "events") not in published and via_root is False
        for unit in plan["units"]:
            run.unit(unit["unit_id"])
        ops_during_copy = writer.ops
        lag = run.finish()
        assert lag["caught_up"], lag
        assert lag["retained_wal_bytes"] is not None
        time.sleep(1.5)  # the application keeps writing after the copy: streamed
        with p.source_su() as src:  # a large object changed after the cut: re-copied at cut-over
            src.execute("SELECT lo_put(blob, 0, 'ATTACHMENT') FROM docs.attachments WHERE id = 1")
    finally:
        writer.stop()
    assert writer.errors == [], writer.errors[:5]
    assert ops_during_copy > 20 and writer.ops > ops_during_copy + 20
    assert {
        "update parent+child",
        "move across partitions",
        "update big json",
        "update no-pk",
        "delete no-pk",
    } <= writer.kinds
    with p.target_su() as tgt:
        # the restore carried none of the source's publications (pg_dump --no-publications)
        assert tgt.execute("SELECT count(*) FROM pg_publication").fetchone()[0] == 0
        phase = state.phases_of_run(tgt, rid)["replication"]["detail"]
        assert phase["retained_wal_bytes"] is not None and phase["warnings"]
    report = run.cutover(quiet_s=1.0, validation="checksums", writes_timeout_s=30, lag_timeout_s=60)
    assert report["verdict"] == "passed", report["failures"]
    cut = report["cutover"]
    assert cut["downtime_seconds"] is not None and 0 < cut["downtime_seconds"] < 60
    assert cut["replication_dropped"] and cut["sequences"] >= 1 and cut["matviews"] == ["sales.order_totals"]
    assert cut["large_objects"]["copied"] == [next(iter(cut["large_objects"]["copied"]))]
    with p.source_su() as src, p.target_su() as tgt:
        assert_equal_data(src, tgt)
        for q in (
            "SELECT last_value FROM sales.orders_id_seq",
            "SELECT string_agg(encode(lo_get(blob), 'escape'), ',' ORDER BY id) FROM docs.attachments",
        ):
            assert src.execute(q).fetchone() == tgt.execute(q).fetchone(), q
        # the materialized view was refreshed on the target: it shows the data as of the cut-over
        totals = "SELECT customer, count(*), sum(amount) FROM sales.orders GROUP BY 1 ORDER BY 1"
        assert tgt.execute("SELECT * FROM sales.order_totals ORDER BY 1").fetchall() == src.execute(totals).fetchall()
        # nothing applied twice: parent and child counted on their own, as the copy did
        for table in ("sales.orders", "archive.orders_old", "sales.events_2024", "archive.events_2025"):
            q = f"SELECT count(*) FROM ONLY {table}"
            assert src.execute(q).fetchone() == tgt.execute(q).fetchone(), table
    _nothing_left(p, rid)
    assert _identity(p, "docs.audit_log") == ("d", "d")  # REPLICA IDENTITY FULL restored on both sides
    # the subscription's password went into CREATE SUBSCRIPTION only: not in logs, state or report
    secret = p.source_server.migrator_password
    assert secret not in caplog.text and secret not in json.dumps(report, default=str)
    with p.target_su() as tgt:
        for table in ("runs", "replication", "phases", "validations"):
            rows = tgt.execute(f"SELECT row_to_json(t)::text FROM _pg_migration.{table} t").fetchall()
            assert not any(secret in r[0] for r in rows), table
    with p.source_su() as src:  # the source is writable as before
        src.execute("UPDATE docs.audit_log SET what = 'after' WHERE who = 'user1'")


def _wait_for_copy(p, session_tag: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    with p.target_su() as tgt:
        while time.monotonic() < deadline:
            if tgt.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s AND query ILIKE 'COPY%%'",
                (session_tag,),
            ).fetchone()[0]:
                return
            time.sleep(0.02)
    raise AssertionError("the unit never started its COPY")


def test_a_killed_and_retried_unit_still_ends_equal(rpair, tmp_path):
    p = rpair
    with p.source_su() as src:
        load_source(src)
        src.execute("CREATE SCHEMA big")
        src.execute("CREATE TABLE big.parent (id bigint PRIMARY KEY, v text)")
        src.execute("CREATE TABLE big.child (extra int) INHERITS (big.parent)")
        src.execute("ALTER TABLE big.child ADD PRIMARY KEY (id)")
        src.execute("INSERT INTO big.parent SELECT g, repeat(md5(g::text), 6) FROM generate_series(1, 200000) g")
        src.execute("INSERT INTO big.child SELECT g, 'c', g FROM generate_series(200001, 201000) g")
    rid = run_id()
    writer = Writer(p.source_server.dsn(p.source_db), seed=11)
    run = ReplicateRun(
        p.source,
        p.target,
        rid,
        publisher=publisher(p),
        replica_identity_full=True,
        pool_size=1,
        log_dir=tmp_path,
        include=["big", "sales", "archive", "docs"],
    )
    writer.start()
    try:
        plan = run.start()
        with p.source_su() as src:  # changes to the big tables after the cut: streamed, never copied
            src.execute("UPDATE big.parent SET v = 'changed' WHERE id <= 1000")
            src.execute("DELETE FROM big.parent WHERE id BETWEEN 1001 AND 1100")
            src.execute("INSERT INTO big.child VALUES (300000, 'new', 1)")
        unit = next(u for u in plan["units"] if "parent" in u["tables"])
        for other in plan["units"]:
            if other is not unit:
                run.unit(other["unit_id"])
        proc = subprocess.Popen(
            [sys.executable, "-m", "include.pg_migration.worker"],
            env=local_env(run.env("data", unit["unit_id"])),
            start_new_session=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        _wait_for_copy(p, tag(rid, unit["unit_id"]))
        time.sleep(0.2)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        run.unit(unit["unit_id"])  # the retry: same slot snapshot, so no overlap with streamed changes
        run.finish()
        time.sleep(0.5)
    finally:
        writer.stop()
    assert writer.errors == []
    report = run.cutover(quiet_s=1.0, writes_timeout_s=30, lag_timeout_s=60)
    assert report["verdict"] == "passed", report["failures"]
    with p.source_su() as src, p.target_su() as tgt:
        assert_equal_data(src, tgt)
        assert tgt.execute(
            "SELECT count(*) FILTER (WHERE v = 'changed'), count(*) FROM ONLY big.parent"
        ).fetchone() == (1000, 200000 - 100)
        assert (
            tgt.execute(
                "SELECT attempts FROM _pg_migration.units WHERE run_id = %s AND unit_id = %s", (rid, unit["unit_id"])
            ).fetchone()[0]
            == 2
        )
    _nothing_left(p, rid)


def test_a_table_without_identity_fails_the_plan_by_name_and_nothing_is_created(rpair, tmp_path):
    p = rpair
    with p.source_su() as src:
        load_source(src)
    rid = run_id()
    run = ReplicateRun(p.source, p.target, rid, publisher=publisher(p), log_dir=tmp_path)
    with pytest.raises(PlanError, match=r"docs\.audit_log") as err:
        run.start()
    assert "UPDATE and DELETE" in str(err.value) and "replica_identity_full" in str(err.value)
    run.close()
    _nothing_left(p, rid)
    with pytest.raises(ConfigError, match="resume"):
        ReplicateRun(p.source, p.target, rid, resume=True)
    # a role without REPLICATION that owns nothing: both named, up front
    weak = p.source.__class__(
        **{**p.source.__dict__, "user": p.source_server.admin_user, "password": p.source_server.admin_password}
    )
    findings = checks.check(weak, p.target, ["docs"], {"mode": "replicate", "replica_identity_full": True})
    blocking = {f["check"]: f["detail"] for f in findings if f["verdict"] == "blocking"}
    assert "REPLICATION right" in blocking and "lacks REPLICATION" in blocking["REPLICATION right"]
    assert "docs.audit_log" in blocking["publication rights"]
    ok = {f["check"] for f in findings if f["verdict"] == "ok"}
    assert {"wal_level", "replication slots", "target subscription rights"} <= ok


def test_a_failed_run_drops_slot_publication_and_identity(rpair, tmp_path):
    """A mismatch found by validation: no subscription; everything the run created is dropped."""
    p = rpair
    with p.source_su() as src:
        load_source(src)
    rid = run_id()
    run = ReplicateRun(p.source, p.target, rid, publisher=publisher(p), replica_identity_full=True, log_dir=tmp_path)
    plan = run.start()
    with p.source_su() as src:
        assert len(teardown.leftovers(src, rid)) == 2
    assert _identity(p, "docs.audit_log")[0] == "f"
    for unit in plan["units"]:
        run.unit(unit["unit_id"])
    with p.target_su() as tgt:  # a row lost on the target
        tgt.execute("DELETE FROM archive.orders_old WHERE id = (SELECT min(id) FROM archive.orders_old)")
    with pytest.raises(MigrationError, match=r"not subscribing.*archive\.orders_old"):
        run.finish()
    _nothing_left(p, rid)
    assert _identity(p, "docs.audit_log") == ("d", "d")
    with p.target_su() as tgt:
        assert records.get(tgt, rid)["status"] == "failed"
        assert tgt.execute("SELECT count(*) FROM _pg_migration.guard").fetchone()[0] == 0


def test_a_dead_holder_fails_the_units_and_the_run_leaves_nothing(rpair, tmp_path):
    p = rpair
    with p.source_su() as src:
        load_source(src)
    rid = run_id()
    run = ReplicateRun(p.source, p.target, rid, publisher=publisher(p), replica_identity_full=True, log_dir=tmp_path)
    try:
        plan = run.start()
        with p.target_su() as tgt:
            where = state.get_run(tgt, rid)["holder_where"]
        os.kill(int(where.rsplit(":", 1)[1]), signal.SIGKILL)
        time.sleep(0.5)
        # the slot's WAL sender ends with the holder, and its exported snapshot with it
        with pytest.raises(MigrationError, match="snapshot"):
            run.unit(plan["units"][0]["unit_id"])
        with pytest.raises(SnapshotLost, match="holder"):  # a new holder cannot re-create the cut
            from include.pg_migration.phases.snapshot import hold_replication

            hold_replication(p.source, p.target, rid, "test")
    finally:
        run.end()
    _nothing_left(p, rid)


def test_abort_drops_everything_and_gives_the_source_back(rpair, tmp_path):
    p = rpair
    with p.source_su() as src:
        load_source(src)
    rid = run_id()
    run = ReplicateRun(
        p.source, p.target, rid, publisher=publisher(p), replica_identity_full=True, log_dir=tmp_path, include=["docs"]
    )
    plan = run.start()
    for unit in plan["units"]:
        run.unit(unit["unit_id"])
    run.finish()
    with p.source_su() as src:
        src.execute("INSERT INTO docs.audit_log VALUES (now(), 'late', 'streamed')")
    caught = lag.wait_caught_up(p.source, p.target, rid, timeout_s=30)
    assert caught["caught_up"]
    with p.target_su() as tgt:  # asynchronous commit on these servers: "now" is the WAL insert position
        assert tgt.execute("SELECT count(*) FROM docs.audit_log WHERE who = 'late'").fetchone()[0] == 1
    # another run into this target is refused while the replication lives
    findings = checks.check(None, p.target, ["docs"], {"mode": "snapshot"}, "another run")
    assert any(f["verdict"] == "blocking" and rid in f["detail"] for f in findings)
    # DDL on the source after the cut is not replicated: the cut-over fails naming it, keeps streaming
    with p.source_su() as src:
        src.execute("ALTER TABLE docs.documents ADD COLUMN extra int")
    failed = run.cutover(quiet_s=0.5, writes_timeout_s=20, lag_timeout_s=30)
    assert failed["verdict"] == "failed"
    assert any("documents.extra missing on the target" in f for f in failed["failures"]), failed["failures"]
    assert not failed["cutover"]["replication_dropped"]
    with p.target_su() as tgt:
        assert records.get(tgt, rid)["status"] == "streaming"
        assert tgt.execute("SELECT count(*) FROM _pg_migration.guard").fetchone()[0] == 0
    result = run.abort()
    assert result["errors"] == [] and result["aborted"] == [rid]
    assert result["results"][0]["retained_wal_bytes"] is not None
    _nothing_left(p, rid)
    assert _identity(p, "docs.audit_log")[0] == "d"
    with p.source_su() as src:
        src.execute("UPDATE docs.audit_log SET what = 'writable' WHERE who = 'late'")
    with p.target_su() as tgt:
        assert records.get(tgt, rid)["status"] == "aborted"
    assert checks.check(None, p.target, ["docs"], {"mode": "snapshot"}, "another run") == []


def test_slot_creation_names_the_transactions_it_waits_for_and_gives_up(rpair, tmp_path, monkeypatch):
    """CREATE_REPLICATION_SLOT waits for every transaction running on the source server: a long one
    is named while it waits, and the run gives up (leaving nothing) after PG_MIGRATION_SLOT_WAIT_S."""
    p = rpair
    with p.source_su() as src:
        load_source(src)
    monkeypatch.setenv("PG_MIGRATION_SLOT_WAIT_S", "3")
    rid = run_id()
    run = ReplicateRun(p.source, p.target, rid, publisher=publisher(p), replica_identity_full=True, log_dir=tmp_path)
    with p.source_su(application_name="long-report") as blocker:
        blocker.execute("BEGIN")
        blocker.execute("INSERT INTO sales.customers VALUES (999, 'long open transaction')")
        pid = blocker.info.backend_pid
        try:
            with pytest.raises(MigrationError, match=rf"waited more than 3 s.*pid {pid}.*'long-report'"):
                run.start()
        finally:
            blocker.execute("ROLLBACK")
            run.end()
    _nothing_left(p, rid)
