"""A unit killed mid-load (SIGKILL of the worker) and retried ends with exactly the source rows."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid

from include.pg_migration.harness import LocalRun
from include.pg_migration.runner import local_env
from include.pg_migration.sessions import tag
from tests.conftest import assert_equal_data

ROWS = 300_000


def _wait_for_copy(pair, session_tag: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    with pair.target_su() as tgt:
        while time.monotonic() < deadline:
            n = tgt.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s AND query ILIKE 'COPY%%'",
                (session_tag,),
            ).fetchone()[0]
            if n:
                return
            time.sleep(0.02)
    raise AssertionError("the unit never started its COPY")


def test_unit_killed_mid_copy_then_retried_has_exact_rows(pair):
    with pair.source_su() as src:
        src.execute("CREATE SCHEMA big")
        src.execute("CREATE TABLE big.parent (id bigint PRIMARY KEY, v text)")
        src.execute("CREATE TABLE big.child (extra int) INHERITS (big.parent)")
        src.execute("INSERT INTO big.parent SELECT g, repeat(md5(g::text), 6) FROM generate_series(1, %s) g", (ROWS,))
        src.execute("INSERT INTO big.child SELECT g, 'c', g FROM generate_series(%s, %s) g", (ROWS + 1, ROWS + 1000))
    run_id = f"test__{uuid.uuid4().hex[:8]}"
    run = LocalRun(pair.source, pair.target, run_id, pool_size=1)
    try:
        plan = run.start()
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
        _wait_for_copy(pair, tag(run_id, unit["unit_id"]))
        time.sleep(0.3)
        os.kill(proc.pid, signal.SIGKILL)  # the worker only: its server sessions live on for a while
        proc.wait()
        run.unit(unit["unit_id"])  # the retry
        run.finish()
    finally:
        run.close()
    with pair.source_su() as src, pair.target_su() as tgt:
        assert_equal_data(src, tgt)
        assert tgt.execute("SELECT count(*) FROM ONLY big.parent").fetchone()[0] == ROWS
        attempts = tgt.execute("SELECT attempts FROM _pg_migration.units WHERE run_id = %s", (run_id,)).fetchone()[0]
        assert attempts == 2
