"""SIGKILL the worker at random points (dump, load, index builds); after the retry the target equals the source.

Seeds 0..19 (``PG_MIGRATION_KILL_TRIALS``), the kill point by ``seed % 3``: seeds 0, 1 and 2 (one per
kill point) run in ``make test``/CI, the others are ``slow``; ``make test-slow`` runs all 20 (marker
``kill``). A trial counts only when its kill landed where intended (the pre-data worker still
running after it started work, a COPY or an index build active the instant before the kill): otherwise
the scenario starts again on a fresh target with a new random delay, at most ``ATTEMPTS`` times, and
the trial fails if it never lands.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
import uuid

import pytest

from include.pg_migration import catalog
from include.pg_migration.harness import LocalRun
from include.pg_migration.phases import snapshot
from include.pg_migration.plan import make_plan, register
from include.pg_migration.runner import local_env, run_local
from include.pg_migration.sessions import INDEX, phase_tag, tag, tag_prefix
from scripts import localpg
from tests.conftest import Pair, _unique, assert_equal_data, create_db

TRIALS = int(os.environ.get("PG_MIGRATION_KILL_TRIALS", "20"))
KILL_POINTS = ("pre-data", "load", "index")
#: One seed per kill point runs in `make test`/CI; the rest are slow.
CI_SEEDS = (0, 1, 2)
#: Scenarios tried per trial before it fails for never landing its kill.
ATTEMPTS = 5

ACTIVE = """
SELECT count(*) FROM pg_catalog.pg_stat_activity
 WHERE pg_catalog.starts_with(application_name, %s) AND state = 'active' AND query ILIKE ANY (%s)
"""
PRESENT = "SELECT count(*) FROM pg_catalog.pg_stat_activity WHERE application_name = %s"


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


def _wait_for(conn, query: str, args: tuple, proc: subprocess.Popen, timeout: float = 30) -> bool:
    """Poll until ``query`` counts a session (True), or the worker exits or time is up (False)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        if conn.execute(query, args).fetchone()[0]:
            return True
        time.sleep(0.001)
    return False


def _kill(proc: subprocess.Popen) -> bool:
    """SIGKILL the worker; True when it was still running (the kill hit it, not a finished process)."""
    alive = proc.poll() is None
    if alive:
        os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    return alive and proc.returncode == -signal.SIGKILL


def _kill_pre_data(run: LocalRun, pair: Pair, rnd: random.Random) -> bool:
    """Start the run up to pre-data by hand, SIGKILL the pre-data worker once it has started work
    (pg_dump / restore running), retry pre-data. True when the kill landed."""
    inventory = catalog.inventory(run.source, None, None)
    run.plan = make_plan(inventory, run.pool_size)
    register(run.target, run.run_id, run.dag_id, run.params, run.plan, run.source, True)
    snapshot.start_local(local_env(run.env("snapshot")), run.log_dir / f"snap-{run.run_id}.log")
    snapshot.wait_for_snapshot(run.target, run.run_id)
    proc = _start(run, "pre-data")
    with pair.target_su() as tgt:
        started = _wait_for(tgt, PRESENT, (phase_tag(run.run_id, "pre-data"),), proc)
    time.sleep(rnd.uniform(0.0, 0.6))
    landed = _kill(proc) and started
    if landed:
        run_local(run.env("pre-data"), label="pre-data (retry)")
    return landed


def _kill_unit(run: LocalRun, pair: Pair, rnd: random.Random, unit_id: str, point: str) -> bool:
    """Start a unit's worker; once its first COPY (``load``) or index build (``index``) shows on the
    target, wait a random moment, then SIGKILL it the instant such a statement is active again
    (the same one or a later table's). True when the kill landed so; False when the unit finished first."""
    if point == "load":
        query, args = ACTIVE, (tag_prefix(run.run_id, unit_id), ["COPY%"])
    else:
        query, args = ACTIVE, (tag(run.run_id, unit_id, INDEX), ["%INDEX%", "ALTER%"])
    proc = _start(run, "data", unit_id)
    with pair.target_su() as tgt:
        seen = _wait_for(tgt, query, args, proc)
        # small tables' indexes are built a batch per statement (phases/data_small.py): few, short
        # statements, all or nothing each; a shorter pause still lands inside one of them
        time.sleep(rnd.uniform(0, 0.1 if point == "load" else 0.02))
        still = seen and _wait_for(tgt, query, args, proc)
        return _kill(proc) and still


def _scenario(seed: int, rnd: random.Random, pg_servers, kill_source) -> bool:
    """One scenario on a fresh target: True when the kill landed and the retried run equals the
    source; False when the kill did not land where intended (nothing was tested)."""
    point = KILL_POINTS[seed % len(KILL_POINTS)]
    pair = Pair(pg_servers["source"], pg_servers["target"], kill_source, _unique("tgt"))
    create_db(pair.target_server, pair.target_db, owner=pair.target_server.admin_user)
    run = LocalRun(pair.source, pair.target, f"kill__{seed}_{uuid.uuid4().hex[:6]}", pool_size=4)
    try:
        if point == "pre-data":
            if not _kill_pre_data(run, pair, rnd):
                return False
            units = run.plan["units"]
            victim = None
        else:
            units = run.start()["units"]
            victim = rnd.choice(units)
        for unit in units:
            if unit is victim and not _kill_unit(run, pair, rnd, unit["unit_id"], point):
                return False
            run.unit(unit["unit_id"])  # the (re)try
        run.finish()
        with pair.source_su() as src, pair.target_su() as tgt:
            assert_equal_data(src, tgt)
        return True
    finally:
        run.close()
        localpg.drop_database(pair.target_server, pair.target_db)


@pytest.mark.kill
@pytest.mark.parametrize(
    "seed", [pytest.param(s, marks=() if s in CI_SEEDS else pytest.mark.slow) for s in range(TRIALS)]
)
def test_kill_and_retry(seed, pg_servers, kill_source):
    rnd = random.Random(seed)
    for attempt in range(1, ATTEMPTS + 1):
        if _scenario(seed, rnd, pg_servers, kill_source):
            print(f"seed {seed}: the kill landed at {KILL_POINTS[seed % len(KILL_POINTS)]} in scenario {attempt}")
            return
        print(f"seed {seed}: scenario {attempt}: the kill missed {KILL_POINTS[seed % len(KILL_POINTS)]}, again")
    pytest.fail(f"seed {seed}: the kill never landed at {KILL_POINTS[seed % len(KILL_POINTS)]} in {ATTEMPTS} scenarios")
