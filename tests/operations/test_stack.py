"""The local Airflow stack: ``bin/airflow standalone`` (scheduler with LocalExecutor, dag-processor,
api-server, triggerer; SQLite) in a fresh AIRFLOW_HOME on free ports, pool ``pg_migration`` of 2 slots.

It lists the DAGs with no import error, reads the pool over the REST API as the pre-flight does,
rejects a bad trigger form, and runs ``pg_migration`` on the demo warehouse: the run succeeds and
at no moment do more than 2 pool tasks run (task instance start/end times from the REST API).
Stopped by killing its process group (standalone leaves children behind otherwise).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import REPO, free_port, standalone_env, stop_process_group

sys.path.insert(0, str(REPO / "dags"))

from pg_migration_support import pool_check  # noqa: E402

POOL_SIZE = 2
STARTUP_TIMEOUT_S = 180
RUN_TIMEOUT_S = 420
#: Enough units to queue behind 2 slots, few enough to keep the test short; closed under references
#: (crm has a trigger calling util's function, keys to ref: the pre-flight blocks without them).
SCHEMAS = ["crm", "hr", "ref", "util"]


WATCHDOG = """
import os, signal, sys, time
parent, group = int(sys.argv[1]), int(sys.argv[2])
while True:
    time.sleep(2)
    try:
        os.killpg(group, 0)
    except ProcessLookupError:
        break  # the stack is gone: nothing to watch
    try:
        os.kill(parent, 0)
    except ProcessLookupError:
        os.killpg(group, signal.SIGKILL)  # the test process died without stopping its stack
        break
"""


class Stack:
    """``bin/airflow standalone`` in its own process group (all-admins auth: a local stack)."""

    def __init__(self, home: Path, extra_env: dict[str, str]):
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.home = home
        self.log = home / "standalone.log"
        self.env = standalone_env(
            home,
            self.port,
            {
                "AIRFLOW__CORE__PARALLELISM": "4",
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
                "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "2",
                "PG_MIGRATION_POOL_SIZE": str(POOL_SIZE),
                "PG_MIGRATION_REPORTS": str(home / "reports"),
                **extra_env,
            },
        )
        self.proc: subprocess.Popen | None = None
        self.token: str | None = None

    def __enter__(self) -> Stack:
        self.home.mkdir(parents=True, exist_ok=True)
        self.log_file = self.log.open("w")
        self.proc = subprocess.Popen(
            [str(REPO / "bin" / "airflow"), "standalone"],
            env=self.env,
            cwd=self.home,
            stdout=self.log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        # If this pytest process is killed (e.g. by `timeout`), no __exit__ runs: a watchdog then
        # kills the stack's process group, so no scheduler is left running for nobody.
        subprocess.Popen(
            [sys.executable, "-c", WATCHDOG, str(os.getpid()), str(self.proc.pid)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        self.started = time.monotonic()
        return self

    def __exit__(self, *exc) -> None:
        stop_process_group(self.proc)
        self.log_file.close()

    def tail(self, n: int = 5000) -> str:
        try:
            return self.log.read_text(errors="replace")[-n:]
        except OSError:
            return ""

    def call(self, method: str, path: str, body: dict | None = None) -> tuple[int, dict]:
        req = urllib.request.Request(
            f"{self.base}{path}", method=method, data=json.dumps(body).encode() if body is not None else None
        )
        req.add_header("Content-Type", "application/json")
        if self.token:
            req.add_header("Authorization", f"Bearer {self.token}")
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                return resp.status, json.loads(resp.read() or b"{}")
        except urllib.error.HTTPError as err:
            raw = err.read()
            try:
                return err.code, json.loads(raw or b"{}")
            except ValueError:
                return err.code, {"raw": raw.decode(errors="replace")}

    def wait_for(self, what: str, check, timeout: float) -> object:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"airflow standalone exited ({self.proc.returncode}):\n{self.tail()}", pytrace=False)
            try:
                value = check()
                if value:
                    return value
            except (OSError, ValueError):
                pass
            time.sleep(1)
        pytest.fail(f"{what}: not within {timeout:.0f} s\n{self.tail()}", pytrace=False)


def max_concurrency(intervals: list[tuple[float, float]]) -> int:
    events = sorted([(s, 1) for s, _ in intervals] + [(e, -1) for _, e in intervals], key=lambda x: (x[0], x[1]))
    running = peak = 0
    for _, delta in events:  # an end at the same instant as a start is counted first
        running += delta
        peak = max(peak, running)
    return peak


def _ts(value: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


@pytest.mark.stack
def test_local_stack_runs_units_in_parallel_within_the_pool(demo_pair, tmp_path):
    env = {**demo_pair.airflow_env(), "PG_MIGRATION_RETRIES": "1", "PG_MIGRATION_RETRY_DELAY_S": "1"}
    with Stack(tmp_path / "airflow", env) as stack:
        stack.wait_for(
            "the API server", lambda: stack.call("GET", "/api/v2/monitor/health")[0] == 200, STARTUP_TIMEOUT_S
        )
        status, body = stack.call("GET", "/auth/token")
        assert status == 201, body
        stack.token = body["access_token"]

        # the DAGs are listed, with no import errors
        def parsed():
            status, dags = stack.call("GET", "/api/v2/dags?limit=100")
            ids = {d["dag_id"] for d in dags.get("dags", [])} if status == 200 else set()
            return ids if {"pg_migration", "pg_migration_rehearsal"} <= ids else None

        ids = stack.wait_for("the DAGs parsed", parsed, STARTUP_TIMEOUT_S)
        status, errors = stack.call("GET", "/api/v2/importErrors")
        assert status == 200 and errors["total_entries"] == 0, errors
        assert {"pg_migration", "pg_migration_rehearsal"} <= ids
        # the rehearsal arrives paused (no surprise run of last Saturday's slot) and has no run
        status, rehearsal = stack.call("GET", "/api/v2/dags/pg_migration_rehearsal")
        assert status == 200 and rehearsal["is_paused"] is True, rehearsal
        status, runs = stack.call("GET", "/api/v2/dags/pg_migration_rehearsal/dagRuns")
        assert status == 200 and runs["total_entries"] == 0, runs

        # the pool exists with 2 slots and counts deferred tasks: read as the pre-flight reads it
        finding = pool_check.check({"pool_size": POOL_SIZE, "runner": "ecs"}, api=pool_check.ApiAccess(stack.base))
        assert finding["verdict"] == "ok", finding
        assert finding["detail"] == "pool 'pg_migration': 2 slot(s), include_deferred=true"

        # a bad trigger form is refused before anything runs
        status, body = stack.call(
            "POST", "/api/v2/dags/pg_migration/dagRuns", {"logical_date": None, "conf": {"runner": "foo"}}
        )
        assert status == 400 and "runner" in json.dumps(body), (status, body)

        status, run = stack.call(
            "POST",
            "/api/v2/dags/pg_migration/dagRuns",
            {"logical_date": None, "conf": {"schemas": SCHEMAS, "pool_size": POOL_SIZE}},
        )
        assert status == 200, run
        run_id = run["dag_run_id"]
        path = f"/api/v2/dags/pg_migration/dagRuns/{urllib.request.quote(run_id, safe='')}"

        def finished():
            status, dr = stack.call("GET", path)
            return dr["state"] if status == 200 and dr["state"] in ("success", "failed") else None

        state = stack.wait_for("the DAG run", finished, RUN_TIMEOUT_S)

        tis, offset = [], 0
        while True:
            status, page = stack.call("GET", f"{path}/taskInstances?limit=100&offset={offset}")
            assert status == 200, page
            tis += page["task_instances"]
            offset += len(page["task_instances"])
            if not page["task_instances"] or offset >= page["total_entries"]:
                break
        summary = sorted((t["task_id"], t["map_index"], t["state"], t["pool"]) for t in tis)
        assert state == "success", f"{summary}\n{stack.tail()}"

        pooled = [t for t in tis if t["pool"] == "pg_migration" and t["start_date"] and t["end_date"]]
        units = [t for t in pooled if t["task_id"] == "migrate_unit"]
        assert len(units) > POOL_SIZE, summary  # more units than slots: they had to queue
        peak = max_concurrency([(_ts(t["start_date"]), _ts(t["end_date"])) for t in pooled])
        assert peak <= POOL_SIZE, f"{peak} pool tasks ran at once: {summary}"
        assert peak == POOL_SIZE, f"the pool's {POOL_SIZE} slots were never used at once: {summary}"

    # the run's report is where the stack writes it
    reports = list((tmp_path / "airflow" / "reports" / "pg_migration").glob("*/report.json"))
    assert len(reports) == 1 and json.loads(reports[0].read_text())["verdict"] == "passed"


def test_max_concurrency():
    assert max_concurrency([(0, 2), (1, 3), (2, 4)]) == 2  # the first ends as the third starts
    assert max_concurrency([(0, 5), (1, 2), (1.5, 3)]) == 3
