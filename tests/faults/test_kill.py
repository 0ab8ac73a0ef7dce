"""SIGKILL the worker at random points (dump, load, index builds); after the retry the target equals the source."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
import uuid

import pytest

from include.pg_migration.harness import LocalRun
from include.pg_migration.runner import local_env
from include.pg_migration.sessions import tag
from scripts import localpg
from tests.conftest import _unique, assert_equal_data, create_db

TRIALS = int(os.environ.get("PG_MIGRATION_KILL_TRIALS", "20"))
KILL_POINTS = ("pre-data", "load", "index")


@pytest.fixture(scope="module")
def kill_source(pg_servers):
    from include.pg_migration.demo import load_warehouse

    server = pg_servers["source"]
    name = _unique("kill_src")
    create_db(server, name)
    load_warehouse(server.dsn(name), scale=1.0)
    yield name
    localpg.drop_database(server, name)


def _start(run: LocalRun, phase: str, unit_id: str | None = None) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "include.pg_migration.worker"],
        env=local_env(run.env(phase, unit_id)),
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _wait_for(conn, app: str, pattern: str, timeout: float = 30) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE %s AND query ILIKE %s "
            "AND state = 'active'",
            (app + "%", pattern),
        ).fetchone()[0]:
            return True
        time.sleep(0.005)
    return False


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(TRIALS))
def test_kill_and_retry(seed, pg_servers, kill_source):
    from tests.conftest import Pair

    rnd = random.Random(seed)
    point = KILL_POINTS[seed % len(KILL_POINTS)]
    pair = Pair(pg_servers["source"], pg_servers["target"], kill_source, _unique("tgt"))
    create_db(pair.target_server, pair.target_db, owner=pair.target_server.admin_user)
    run = LocalRun(pair.source, pair.target, f"kill__{seed}_{uuid.uuid4().hex[:6]}", pool_size=4)
    try:
        if point == "pre-data":
            # stop before pre-data: start() minus pre-data, then kill the pre-data worker (pg_dump running)
            from include.pg_migration import catalog
            from include.pg_migration.phases import snapshot
            from include.pg_migration.plan import make_plan, register

            inventory = catalog.inventory(run.source, None, None)
            run.plan = make_plan(inventory, run.pool_size)
            register(run.target, run.run_id, run.dag_id, run.params, run.plan, run.source, True)
            snapshot.start_local(local_env(run.env("snapshot")), run.log_dir / f"snap-{run.run_id}.log")
            snapshot.wait_for_snapshot(run.target, run.run_id)
            proc = _start(run, "pre-data")
            time.sleep(rnd.uniform(0.05, 0.6))
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
            from include.pg_migration.runner import run_local

            run_local(run.env("pre-data"), label="pre-data (retry)")
            units = run.plan["units"]
        else:
            units = run.start()["units"]
        victim = rnd.choice(units) if point != "pre-data" else None
        for unit in units:
            if unit is victim:
                proc = _start(run, "data", unit["unit_id"])
                app = tag(run.run_id, unit["unit_id"])
                with pair.target_su() as tgt:
                    if point == "load":
                        _wait_for(tgt, app, "COPY%")
                    else:
                        _wait_for(tgt, app + " idx", "%INDEX%") or _wait_for(tgt, app + " idx", "ALTER%")
                time.sleep(rnd.uniform(0, 0.05))
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait()
            run.unit(unit["unit_id"])  # the (re)try
        run.finish()
        with pair.source_su() as src, pair.target_su() as tgt:
            assert_equal_data(src, tgt)
    finally:
        run.close()
        localpg.drop_database(pair.target_server, pair.target_db)
