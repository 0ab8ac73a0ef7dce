"""The ``dag`` row: this project's DAG under a real scheduler (LocalExecutor, pool of N slots).

A throw-away AIRFLOW_HOME (SQLite) gets the scheduler, the dag-processor and the api-server
(started through ``bin/airflow``, which migrates the metadata DB and creates pool ``pg_migration``
with ``PG_MIGRATION_POOL_SIZE`` slots on first use). Connections come from ``AIRFLOW_CONN_*``
variables; runs are triggered with ``bin/airflow dags trigger`` and followed through the REST API
(the simple auth manager with every user admin: nothing but 127.0.0.1 can reach it).

After a run, its timings are taken apart:

* ``makespan`` -- the run's start to end, as the scheduler recorded them;
* ``work`` of each task instance -- the time its callable ran, from its log (task runner start-up
  over -> ``Post Execute``); without those log lines its duration minus the fixed cost of a task
  instance (the median start-up cost, duration minus callable time, over the run's task instances
  whose log has both lines). The data units' worker seconds (from the target's
  ``_pg_migration.units``) are reported next to it;
* ``ideal`` -- the makespan of the DAG with every task instance taking exactly its work and no
  scheduling delay: list scheduling over the real dependency graph with the pool's N slots;
* ``orchestration overhead`` = makespan - ideal (reported in total, per data unit, per task instance).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import secrets
import signal
import socket
import statistics
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import psutil
import psycopg

from bench.common import RssSampler, code_root, log, tail

DAG_ID = "pg_migration"
#: Task instances that take a slot of pool ``pg_migration`` (validate: one per validation group).
POOL_TASKS = {"pre_data", "migrate_unit", "large_objects", "post_data", "validate"}
POOL_TASKS |= {f"ecs.{t}" for t in ("pre_data", "migrate_unit", "large_objects", "post_data")}
WORKER_TASKS = {"pre_data": "pre-data", "large_objects": "large-objects", "post_data": "post-data"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ts(value: str | None) -> dt.datetime | None:
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00")) if value else None


#: Airflow settings for the migration window that docs/operations.md recommends ("Airflow during the
#: window"), printed with the results: the DAG files do not change mid-migration, so the dag-processor
#: re-parses them every 10 minutes instead of every 30 s (stock; ~5 CPU-s per 140 s run on this 2-core
#: machine, taken from the data path); the scheduler loops again after 0.2 s instead of 1 s when a loop
#: found nothing to do (a task that ends is followed ~0.6 s sooner, ~16 times along the DAG's critical
#: path; it costs the scheduler ~8 CPU-s more per run).
MIGRATION_WINDOW_SETTINGS = {
    "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "600",
    "AIRFLOW__SCHEDULER__SCHEDULER_IDLE_SLEEP_TIME": "0.2",
}

#: The executor's task slots: Airflow's default (the pool caps the units at N). Not fewer: a task's
#: supervisor often holds its executor slot ~5 s after the task ended (when the task process's sockets
#: close before it is reaped, the supervisor sleeps out [workers] min_heartbeat_interval); with
#: 4 slots (N+2) post_data waited 3 s for one.
PARALLELISM = 32


class AirflowStack:
    """scheduler + dag-processor + api-server in their own process groups, stopped by :meth:`stop`."""

    def __init__(self, home: Path, pool_size: int, parallelism: int, connections: dict[str, str]):
        self.home = home
        self.pool_size = pool_size
        self.parallelism = parallelism
        self.port = _free_port()
        self.procs: dict[str, subprocess.Popen] = {}
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "PGMIG_", "PG"))}
        self.env.update(
            {
                "AIRFLOW_HOME": str(home),
                "PG_MIGRATION_POOL_SIZE": str(pool_size),
                "PG_MIGRATION_REPORTS": str(home / "reports"),
                "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
                "AIRFLOW__CORE__PARALLELISM": str(parallelism),
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
                "AIRFLOW__API__PORT": str(self.port),
                "AIRFLOW__API__HOST": "127.0.0.1",
                "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{self.port}/execution/",
                "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(_free_port()),
                "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(_free_port()),
                "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_urlsafe(32),
                "AIRFLOW__CORE__FERNET_KEY": "",
                # Only the benchmark's triggered runs: scheduled DAGs of the repo (the rehearsal DAG) would
                # otherwise start runs of their own in the same pool, against the same source.
                "AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": "False",
                **MIGRATION_WINDOW_SETTINGS,
                **connections,
            }
        )
        # Experiments with the scheduler's own settings, e.g.
        # BENCH_AIRFLOW_ENV='{"AIRFLOW__SCHEDULER__SCHEDULER_IDLE_SLEEP_TIME": "0.2"}' (stock by default).
        self.env.update(json.loads(os.environ.get("BENCH_AIRFLOW_ENV") or "{}"))

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def airflow(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
        return subprocess.run(
            [str(code_root() / "bin" / "airflow"), *args], env=self.env, capture_output=True, text=True, timeout=timeout
        )

    def start(self) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        started = time.monotonic()
        result = self.airflow("version", timeout=900)  # first use: db migrate + pool
        if result.returncode != 0:
            raise RuntimeError(f"bin/airflow cannot set up {self.home}: {result.stderr[-2000:]}")
        for name, args in (
            ("api-server", ["api-server", "--port", str(self.port), "--host", "127.0.0.1"]),
            ("scheduler", ["scheduler"]),
            ("dag-processor", ["dag-processor"]),
        ):
            out = open(self.home / f"{name}.log", "ab")  # noqa: SIM115 - closed with the process
            self.procs[name] = subprocess.Popen(
                [str(code_root() / "bin" / "airflow"), *args],
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            for name, proc in self.procs.items():
                if proc.poll() is not None:
                    raise RuntimeError(f"airflow {name} exited ({proc.returncode}): {tail(self.home / f'{name}.log')}")
            try:
                dag = self.get(f"/api/v2/dags/{DAG_ID}")
                if dag.get("is_paused") is False or dag.get("dag_id"):
                    break
            except (urllib.error.URLError, OSError, ValueError):
                pass
            time.sleep(1)
        else:
            raise RuntimeError(f"the DAG was not parsed / api-server not up within 300 s; see {self.home}")
        try:
            self.pause_others()
        except (urllib.error.URLError, OSError, ValueError, KeyError) as exc:
            log(f"(could not pause the other DAGs: {exc}; scheduled runs are off anyway)")
        self.ready_s = time.monotonic() - started
        log(f"airflow stack up in {self.ready_s:.1f}s (api-server :{self.port}, pool {self.pool_size})")

    def pause_others(self) -> None:
        """Pause every DAG but pg_migration (nothing else may take pool slots or CPU during a row)."""
        req = urllib.request.Request(self.base + "/api/v2/dags?dag_id_pattern=%25&limit=100")
        with urllib.request.urlopen(req, timeout=30) as resp:
            dags = json.loads(resp.read())["dags"]
        for d in dags:
            if d["dag_id"] != DAG_ID and not d.get("is_paused"):
                patch = urllib.request.Request(
                    f"{self.base}/api/v2/dags/{d['dag_id']}",
                    data=json.dumps({"is_paused": True}).encode(),
                    method="PATCH",
                    headers={"Content-Type": "application/json"},
                )
                urllib.request.urlopen(patch, timeout=30).close()

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        deadline = time.monotonic() + 30
        for proc in self.procs.values():
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                proc.wait()
        self.procs.clear()

    def get(self, path: str) -> Any:
        with urllib.request.urlopen(self.base + path, timeout=30) as resp:
            return json.loads(resp.read())

    def trigger(self, run_id: str, conf: dict[str, Any]) -> None:
        result = self.airflow("dags", "trigger", DAG_ID, "-r", run_id, "-c", json.dumps(conf))
        if result.returncode != 0:
            raise RuntimeError(f"dags trigger failed: {result.stderr[-2000:]}")

    def wait(self, run_id: str, timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            run = self.get(f"/api/v2/dags/{DAG_ID}/dagRuns/{run_id}")
            if run["state"] in ("success", "failed"):
                return run
            time.sleep(2)
        raise TimeoutError(f"run {run_id} not finished after {timeout:.0f}s")

    def task_instances(self, run_id: str) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        while True:
            page = self.get(f"/api/v2/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances?limit=100&offset={len(out)}")
            out += page["task_instances"]
            if len(out) >= page["total_entries"] or not page["task_instances"]:
                return out

    def tasks(self) -> dict[str, list[str]]:
        return {t["task_id"]: t["downstream_task_ids"] for t in self.get(f"/api/v2/dags/{DAG_ID}/tasks")["tasks"]}


def _worker_group(target_db: str):
    """Classifies processes: the pg_migration workers of this run, and Airflow's task processes."""

    def select(proc: psutil.Process) -> str | None:
        cmd = proc.cmdline()
        if not cmd:
            return None
        text = " ".join(cmd)
        if "include.pg_migration.worker" in text:
            try:
                if proc.environ().get("PGMIG_TARGET_DBNAME") != target_db:
                    return None
            except psutil.Error:
                return None
            return "pg_migration worker"
        return None

    return select


def run_dag(stack: AirflowStack, run_id: str, conf: dict[str, Any], target_db: str, timeout: float) -> dict[str, Any]:
    """Trigger one run, wait for it, sample worker memory meanwhile; the run's API records."""
    started = time.monotonic()
    profile = os.environ.get("BENCH_PROFILE", "") not in ("", "0")
    prof = Profiler(target_db, stack.home / f"py-spy-{run_id}") if profile else None
    with RssSampler(_worker_group(target_db), scan_all=True, interval=0.5) as rss:
        if prof:
            prof.__enter__()
        try:
            stack.trigger(run_id, conf)
            run = stack.wait(run_id, timeout)
        finally:
            if prof:
                prof.__exit__(None, None, None)
    waited = time.monotonic() - started
    tis = stack.task_instances(run_id)
    out = {"run": run, "tis": tis, "rss": rss.summary(), "waited_s": waited}
    if prof:
        out["profile"] = prof.summary()
    return out


# -- taking a run's time apart -------------------------------------------------------------------


def _ti_log(home: Path, run_id: str, ti: dict[str, Any]) -> dict[str, Any]:
    """From a task instance's log: when its callable started and ended, and the task runner's DAG parse time.

    The task runner logs ``::endgroup::`` when its start-up (DAG file parse, API calls) is over and
    the callable starts, and ``::group::Post Execute`` when the callable has returned.
    """
    folder = home / "logs" / f"dag_id={DAG_ID}" / f"run_id={run_id}" / f"task_id={ti['task_id']}"
    if ti["map_index"] >= 0:
        folder = folder / f"map_index={ti['map_index']}"
    path = folder / f"attempt={max(1, ti['try_number'])}.log"
    facts: dict[str, Any] = {}
    if not path.exists():
        return facts
    for line in path.read_text(errors="replace").splitlines():
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        event = str(rec.get("event", ""))
        if "dag_file_parse_ms" in rec:
            facts["parse_ms"] = rec["dag_file_parse_ms"]
        if event == "::endgroup::" and "exec_start" not in facts:
            facts["exec_start"] = _ts(rec["timestamp"])
        elif event == "::group::Post Execute":
            facts["exec_end"] = _ts(rec["timestamp"])
    return facts


def unit_work(target_dsn: str, run_id: str) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The plan's units in map order with the worker's seconds, and the run's phase details."""
    with psycopg.connect(target_dsn, autocommit=True) as conn:
        plan = conn.execute("SELECT plan FROM _pg_migration.runs WHERE run_id = %s", (run_id,)).fetchone()[0]
        rows = {
            r[0]: {"seconds": r[1], "bytes": r[2], "attempts": r[3], "status": r[4]}
            for r in conn.execute(
                "SELECT unit_id, seconds, bytes, attempts, status FROM _pg_migration.units WHERE run_id = %s",
                (run_id,),
            )
        }
        phases = {
            r[0]: r[1]
            for r in conn.execute("SELECT phase, detail FROM _pg_migration.phases WHERE run_id = %s", (run_id,))
        }
        tables = conn.execute(
            "SELECT sum(seconds), sum(bytes), count(*), count(*) FILTER (WHERE copy_format = 'binary') "
            "FROM _pg_migration.tables WHERE run_id = %s",
            (run_id,),
        ).fetchone()
    units = [{**u, **rows.get(u["unit_id"], {})} for u in plan["units"]]
    return units, {
        "phases": phases,
        "tables": {"copy_seconds_sum": tables[0], "bytes": tables[1], "count": tables[2], "binary": tables[3]},
    }


def simulate(
    tis: list[dict[str, Any]], downstream: dict[str, list[str]], work: dict[tuple[str, int], float], slots: int
) -> float:
    """Makespan with zero scheduling delay: list scheduling on the dependency graph, pool of ``slots``."""
    upstream: dict[str, set[str]] = {t: set() for t in downstream}
    for t, downs in downstream.items():
        for d in downs:
            upstream.setdefault(d, set()).add(t)
    by_task: dict[str, list[tuple[str, int]]] = {}
    for ti in tis:
        by_task.setdefault(ti["task_id"], []).append((ti["task_id"], ti["map_index"]))
    for keys in by_task.values():
        keys.sort(key=lambda k: k[1])
    task_done: dict[str, float] = {}
    pending = dict(by_task)
    pool_free = [0.0] * max(1, slots)
    while pending:
        ready = [t for t in pending if all(u in task_done or u not in by_task for u in upstream.get(t, ()))]
        if not ready:
            raise RuntimeError(f"cycle or missing tasks: {sorted(pending)}")
        # Earliest-ready task first (what a scheduler without delay would start first).
        ready.sort(key=lambda t: max([task_done.get(u, 0.0) for u in upstream.get(t, ()) if u in by_task] or [0.0]))
        task = ready[0]
        start_at = max([task_done.get(u, 0.0) for u in upstream.get(task, ()) if u in by_task] or [0.0])
        ends = []
        for key in pending.pop(task):
            w = work.get(key, 0.0)
            if task in POOL_TASKS:
                i = min(range(len(pool_free)), key=lambda j: pool_free[j])
                begin = max(start_at, pool_free[i])
                pool_free[i] = begin + w
                ends.append(begin + w)
            else:
                ends.append(start_at + w)
        task_done[task] = max(ends) if ends else start_at
    return max(task_done.values()) if task_done else 0.0


def analyse(stack: AirflowStack, result: dict[str, Any], target_dsn: str, run_id: str) -> dict[str, Any]:
    run, tis = result["run"], result["tis"]
    start, end = _ts(run["start_date"]), _ts(run["end_date"])
    makespan = (end - start).total_seconds()
    try:
        units, extra = unit_work(target_dsn, run_id)
    except (psycopg.Error, TypeError) as exc:  # a run that failed before registering its plan
        units, extra = [], {"state_tables": f"unreadable: {exc}".splitlines()[0]}
    downstream = stack.tasks()
    tis = [ti for ti in tis if ti["state"] != "skipped"]  # branches not taken: no work, no slot
    durations = {(ti["task_id"], ti["map_index"]): ti["duration"] or 0.0 for ti in tis}
    work: dict[tuple[str, int], float] = {}
    parse_ms: list[float] = []
    for ti in tis:
        key = (ti["task_id"], ti["map_index"])
        facts = _ti_log(stack.home, run_id, ti)
        if "parse_ms" in facts:
            parse_ms.append(facts["parse_ms"])
        if "exec_start" in facts and "exec_end" in facts:
            work[key] = max(0.0, (facts["exec_end"] - facts["exec_start"]).total_seconds())
    # The fixed cost of a task instance (process start, DAG parse, API calls): its duration minus its
    # callable's time, median over the task instances whose log tells both.
    startup = [max(0.0, durations[k] - w) for k, w in work.items()]
    fixed = statistics.median(startup) if startup else 0.0
    exec_missing = len(durations) - len(work)
    for key in durations:
        work.setdefault(key, max(0.0, durations[key] - fixed))
    ideal = simulate(tis, downstream, work, stack.pool_size)
    n_units = sum(1 for ti in tis if ti["task_id"] == "migrate_unit")
    overhead = makespan - ideal

    def span_of(task: str) -> dict[str, Any] | None:
        mine = [ti for ti in tis if ti["task_id"] == task and ti["start_date"]]
        if not mine:
            return None
        first = min(_ts(ti["start_date"]) for ti in mine)
        last = max(_ts(ti["end_date"]) for ti in mine if ti["end_date"])
        return {
            "from_s": round((first - start).total_seconds(), 1),
            "to_s": round((last - start).total_seconds(), 1),
            "instances": len(mine),
            "ti_seconds_sum": round(sum(ti["duration"] or 0 for ti in mine), 1),
            "work_seconds_sum": round(sum(work.get((ti["task_id"], ti["map_index"]), 0) for ti in mine), 1),
        }

    timeline = {t: span_of(t) for t in downstream if span_of(t)}
    post = timeline.get("post_data")
    unit_ti = [durations[(t, m)] - work[(t, m)] for (t, m) in durations if t == "migrate_unit"]
    all_ti = [durations[k] - work[k] for k in durations]
    unit_exec = sum(work[k] for k in work if k[0] == "migrate_unit")
    unit_worker = sum(float(u.get("seconds") or 0) for u in units)
    gaps = _scheduling_gaps(tis, downstream)
    return {
        "state": run["state"],
        "makespan_s": round(makespan, 2),
        "migration_s": round(post["to_s"], 2) if post else None,
        "ideal_s": round(ideal, 2),
        "overhead_s": round(overhead, 2),
        "units": n_units,
        "task_instances": len(tis),
        "overhead_per_unit_s": round(overhead / n_units, 3) if n_units else None,
        "overhead_per_task_instance_s": round(overhead / len(tis), 3) if tis else None,
        "task_instance_fixed_cost_s": round(fixed, 2),
        "in_task_overhead_s": {
            "what": "task instance duration minus its callable's run time (process start, DAG parse, API calls)",
            "median_all": round(statistics.median(all_ti), 2) if all_ti else None,
            "median_units": round(statistics.median(unit_ti), 2) if unit_ti else None,
            "max_units": round(max(unit_ti), 2) if unit_ti else None,
            "sum_all": round(sum(all_ti), 1),
        },
        "task_runner_dag_parse_ms_median": statistics.median(parse_ms) if parse_ms else None,
        "units_callable_s_sum": round(unit_exec, 1),
        "units_worker_s_sum": round(unit_worker, 1),
        "exec_span_missing": exec_missing,
        "scheduling_gaps": gaps,
        "timeline": timeline,
        "unit_work": [
            {
                "unit": u["label"],
                "mb": round((u.get("bytes") or u["bytes"]) / 1e6, 1),
                "seconds": u.get("seconds"),
                "attempts": u.get("attempts"),
                "tables": len(u["tables"]),
            }
            for u in units
        ],
        **extra,
    }


def _scheduling_gaps(tis: list[dict[str, Any]], downstream: dict[str, list[str]]) -> dict[str, Any]:
    """Per task: the delay between its last upstream ending and its first instance starting."""
    upstream: dict[str, set[str]] = {}
    for t, downs in downstream.items():
        for d in downs:
            upstream.setdefault(d, set()).add(t)
    ends: dict[str, dt.datetime] = {}
    starts: dict[str, dt.datetime] = {}
    queued: dict[str, dt.datetime] = {}
    for ti in tis:
        if ti["end_date"]:
            e = _ts(ti["end_date"])
            ends[ti["task_id"]] = max(ends.get(ti["task_id"], e), e)
        if ti["start_date"]:
            s = _ts(ti["start_date"])
            starts[ti["task_id"]] = min(starts.get(ti["task_id"], s), s)
        if ti.get("queued_when"):
            q = _ts(ti["queued_when"])
            queued[ti["task_id"]] = min(queued.get(ti["task_id"], q), q)
    out = {}
    for task, s in starts.items():
        ups = [ends[u] for u in upstream.get(task, ()) if u in ends]
        if ups:
            ready = max(ups)
            q = queued.get(task)
            out[task] = {
                "to_queued_s": round((q - ready).total_seconds(), 2) if q else None,
                "to_start_s": round((s - ready).total_seconds(), 2),
            }
    return out


class Profiler:
    """``BENCH_PROFILE=1``: py-spy (``pip install py-spy``, not a project dependency) records every data
    worker of the run (``--format raw``, collapsed stacks); :meth:`summary` aggregates them."""

    def __init__(self, target_db: str, out_dir: Path, rate: int = 50):
        import shutil
        import threading

        self.py_spy = shutil.which("py-spy") or str(Path(os.sys.executable).with_name("py-spy"))
        self.target_db = target_db
        self.out_dir = out_dir
        self.rate = rate
        self.seen: dict[int, subprocess.Popen] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Profiler:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        if Path(self.py_spy).exists():
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        for proc in self.seen.values():
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()

    def _run(self) -> None:
        while not self._stop.wait(0.2):
            for p in psutil.process_iter(["cmdline"]):
                try:
                    if p.pid in self.seen or "include.pg_migration.worker" not in " ".join(p.info["cmdline"] or []):
                        continue
                    env = p.environ()
                    if env.get("PGMIG_TARGET_DBNAME") != self.target_db or env.get("PGMIG_PHASE") != "data":
                        continue
                    name = (env.get("PGMIG_UNIT_ID") or str(p.pid)).replace("/", "_").replace(" ", "_")
                    self.seen[p.pid] = subprocess.Popen(
                        [
                            self.py_spy,
                            "record",
                            "--pid",
                            str(p.pid),
                            "--rate",
                            str(self.rate),
                            "--format",
                            "raw",
                            "--nonblocking",
                            "--threads",
                            "-o",
                            str(self.out_dir / f"{name}.txt"),
                        ],
                        stdout=subprocess.DEVNULL,
                        stderr=subprocess.DEVNULL,
                    )
                except psutil.Error:
                    continue

    def summary(self, top: int = 15) -> dict[str, Any]:
        self_counts: dict[str, int] = {}
        incl: dict[str, int] = {}
        total = 0
        for path in self.out_dir.glob("*.txt"):
            for line in path.read_text(errors="replace").splitlines():
                stack, _, count = line.rpartition(" ")
                if not stack or not count.isdigit():
                    continue
                n = int(count)
                total += n
                frames = [f for f in stack.split(";") if not f.startswith("thread ")]
                if frames:
                    self_counts[frames[-1]] = self_counts.get(frames[-1], 0) + n
                for f in set(frames):
                    incl[f] = incl.get(f, 0) + n

        def rank(d: dict[str, int]) -> list[dict[str, Any]]:
            return [
                {"frame": k, "samples": v, "share": round(v / total, 3)}
                for k, v in sorted(d.items(), key=lambda kv: -kv[1])[:top]
            ]

        return {
            "rate_hz": self.rate,
            "workers": len(self.seen),
            "samples": total,
            "active_python_s": round(total / self.rate, 1),
            "self": rank(self_counts),
            "inclusive": rank({k: v for k, v in incl.items() if "pg_migration" in k or "psycopg" in k}),
        }
