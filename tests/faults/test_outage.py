"""Outages in the middle of the data phase: the run completes after retries with identical data.

A dedicated `scratch` server (scripts/localpg.py) plays the side that goes down, so the shared pair
is never disturbed.
"""

from __future__ import annotations

import subprocess
import sys
import time
import uuid

import pytest

from include.pg_migration.errors import MigrationError, SnapshotLost
from include.pg_migration.harness import LocalRun, migrate_locally
from include.pg_migration.runner import local_env
from include.pg_migration.sessions import tag_prefix
from scripts import localpg
from tests.conftest import Pair, _unique, assert_equal_data, create_db


@pytest.fixture
def scratch():
    try:
        server = localpg.ensure_server("scratch")
    except Exception as exc:  # noqa: BLE001
        pytest.fail(f"the scratch PostgreSQL server cannot be started: {exc}", pytrace=False)
    yield server
    localpg.ensure_server("scratch")


def _load(server, dbname: str) -> None:
    from include.pg_migration.demo import load_warehouse

    load_warehouse(server.dsn(dbname), scale=1.0)


def _copy_running(conn, app_prefix: str) -> bool:
    return bool(
        conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE starts_with(application_name, %s) "
            "AND query ILIKE 'COPY%%' AND state = 'active'",
            (app_prefix,),
        ).fetchone()[0]
    )


def _outage_during_biggest_unit(run: LocalRun, watch, down_server: str, mode: str = "fast") -> str:
    """Start the biggest unit, take `down_server` down during its COPY (``pg_ctl stop -m mode``:
    ``immediate`` is a crash, recovered from WAL at the restart), bring it back; return the unit id."""
    unit = run.plan["units"][0]
    proc = subprocess.Popen(
        [sys.executable, "-m", "include.pg_migration.worker"],
        env=local_env(run.env("data", unit["unit_id"])),
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    with watch() as conn:
        while not _copy_running(conn, tag_prefix(run.run_id, unit["unit_id"])):
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.wait()
                return None  # the unit was done before its COPY was seen: no outage placed (caller retries)
            time.sleep(0.005)
    localpg.stop_server(down_server, mode)
    assert proc.wait(timeout=120) != 0, "the unit should have failed during the outage"
    localpg.ensure_server(down_server)
    return unit["unit_id"]


@pytest.mark.parametrize("mode", ["fast", "immediate"])
def test_target_outage_mid_data_phase(pg_servers, scratch, demo_source, mode):
    """A clean shutdown and a crash (as an Aurora failover) of the target in the middle of a COPY.

    A crash loses what the target had not flushed: the phases before it (pre-data here) must have
    made their commits durable, or the retry finds no tables. On a busy machine the unit can finish
    before its COPY is seen: then the scenario starts again on a fresh target (at most 5 times)."""
    for _ in range(5):
        pair = Pair(pg_servers["source"], scratch, demo_source, _unique("tgt"))
        create_db(scratch, pair.target_db, owner=scratch.admin_user)
        run = LocalRun(pair.source, pair.target, f"outage__{uuid.uuid4().hex[:6]}", pool_size=4)
        try:
            run.start()
            victim = _outage_during_biggest_unit(run, pair.source_su, "scratch", mode)
            if victim is None:
                continue
            for unit in run.plan["units"]:  # the retry of the victim, then the rest: the snapshot survived
                run.unit(unit["unit_id"])
            run.finish()
            with pair.source_su() as src, pair.target_su() as tgt:
                assert_equal_data(src, tgt)
            return
        finally:
            run.close()
            localpg.drop_database(scratch, pair.target_db)
    pytest.fail("the outage never hit the unit's COPY in 5 tries")


def test_source_outage(pg_servers, scratch):
    """consistent=false: completes after retries. Default single snapshot: fails saying the cut is
    gone; a resume run then completes equal."""
    for consistent in (False, True):
        pair = Pair(scratch, pg_servers["target"], _unique("src"), _unique("tgt"))
        create_db(scratch, pair.source_db)
        _load(scratch, pair.source_db)
        create_db(pair.target_server, pair.target_db, owner=pair.target_server.admin_user)
        run = LocalRun(pair.source, pair.target, f"outage__{uuid.uuid4().hex[:6]}", pool_size=4, consistent=consistent)
        try:
            run.start()
            if _outage_during_biggest_unit(run, pair.target_su, "scratch") is None:
                localpg.stop_server("scratch")  # the unit was quicker: the outage still ends the snapshot
                localpg.ensure_server("scratch")
            if consistent:
                time.sleep(4)  # the holder notices its source session is gone
                with pytest.raises(SnapshotLost, match="snapshot"):
                    run.unit(run.plan["units"][0]["unit_id"])
                run.close()
                migrate_locally(pair.source, pair.target, f"resume__{uuid.uuid4().hex[:6]}", pool_size=4, resume=True)
            else:
                for unit in run.plan["units"]:
                    run.unit(unit["unit_id"])
                run.finish()
            with pair.source_su() as src, pair.target_su() as tgt:
                assert_equal_data(src, tgt)
        except MigrationError:
            raise
        finally:
            run.close()
            localpg.drop_database(scratch, pair.source_db)
            localpg.drop_database(pair.target_server, pair.target_db)
