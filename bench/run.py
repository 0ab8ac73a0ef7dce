#!/usr/bin/env python3
"""Benchmark: this project's DAG against pg_dump | pg_restore, pg_dump/pg_restore -j and pgcopydb.

    make bench                                  # = .venv/bin/python bench/run.py
    BENCH_SCALE=40 BENCH_KEEP_SOURCE=1 make bench
    .venv/bin/python bench/run.py --rows dag,validate_counts --scaling-schemas 0

See bench/README.md for what each row does, how the numbers are taken and the targets.
Results: bench/results/latest.json and latest.md (plus a log folder under .local/bench/).
"""

from __future__ import annotations

import argparse
import datetime as dt
import fcntl
import json
import os
import shutil
import subprocess
import sys
import time
import traceback
from pathlib import Path
from typing import Any

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import baselines, dagrun, scaling  # noqa: E402
from bench.common import (  # noqa: E402
    CODE,
    REPO,
    ActivitySampler,
    CpuAccount,
    RssSampler,
    checkpoint,
    code_root,
    code_version,
    compare,
    create_target_db,
    db_comment,
    db_exists,
    db_size,
    drop_db,
    export_head,
    fingerprint,
    log,
    machine,
    postmaster_pid,
    servers,
    set_db_comment,
    wait_for_quiet,
    write_json,
)

#: Demo warehouse scale giving ~10 GB on disk in the source (measured: see bench/README.md).
DEFAULT_SCALE = 275.0
MIGRATION_ROWS = ("seed_single_stream", "pg_dump_restore_jobs", "pgcopydb", "dag")
VALIDATION_ROWS = ("validate_counts", "validate_checksums")
ALL_ROWS = MIGRATION_ROWS + VALIDATION_ROWS
SEED = 42
WORK = REPO / ".local" / "bench"
RESULTS = Path(__file__).resolve().parent / "results"

TARGETS = {
    "dag_vs_pgcopydb": 1.0,
    "dag_vs_seed": 0.5,
    "overhead_per_unit_s": 1.0,
    "validate_counts_share": 0.05,
    "validate_checksums_share": 0.30,
    "worker_rss_mb": 100.0,
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    env = os.environ
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--scale",
        type=float,
        default=float(env.get("BENCH_SCALE", DEFAULT_SCALE)),
        help=f"demo warehouse scale (BENCH_SCALE; default {DEFAULT_SCALE} = ~10 GB on disk)",
    )
    p.add_argument(
        "--jobs",
        type=int,
        default=int(env.get("BENCH_JOBS", env.get("PG_MIGRATION_POOL_SIZE", 2))),
        help="N: pool size / -j / --table-jobs (BENCH_JOBS; default 2 = the cores of this machine)",
    )
    p.add_argument(
        "--rows",
        default=env.get("BENCH_ROWS", ",".join(ALL_ROWS)),
        help="comma-separated rows to run (BENCH_ROWS; default all)",
    )
    p.add_argument(
        "--scaling-schemas",
        type=int,
        default=int(env.get("BENCH_SCALING_SCHEMAS", 200)),
        help="schemas of the scaling run (BENCH_SCALING_SCHEMAS; 0 skips it)",
    )
    p.add_argument(
        "--keep-source",
        action="store_true",
        default=env.get("BENCH_KEEP_SOURCE", "") not in ("", "0"),
        help="keep the source warehouse for the next run (BENCH_KEEP_SOURCE=1); default: drop it",
    )
    p.add_argument("--out", type=Path, default=Path(env.get("BENCH_OUT", RESULTS)), help="results folder")
    p.add_argument(
        "--datapath",
        type=int,
        default=int(env.get("BENCH_DATAPATH", 1)),
        help="1 (default): also run the diagnostic 'data path without Airflow' (BENCH_DATAPATH)",
    )
    p.add_argument(
        "--quiet-wait",
        type=float,
        default=float(env.get("BENCH_QUIET_WAIT", 300)),
        help="before each row wait up to this many s for the shared machine to be quiet (BENCH_QUIET_WAIT)",
    )
    p.add_argument(
        "--code",
        default=env.get("BENCH_CODE", "worktree"),
        help="code under test: 'worktree' (default), 'head' or a commit: an export of it (BENCH_CODE)",
    )
    p.add_argument(
        "--merge-from",
        type=Path,
        default=env.get("BENCH_MERGE_FROM") or None,
        help="results JSON of an earlier run on the same source: its rows that this run does not "
        "re-run are kept, marked with from_run (BENCH_MERGE_FROM)",
    )
    p.add_argument("--dag-timeout", type=float, default=float(env.get("BENCH_DAG_TIMEOUT", 6 * 3600)))
    args = p.parse_args(argv)
    args.rows = [r.strip() for r in args.rows.split(",") if r.strip()]
    unknown = set(args.rows) - set(ALL_ROWS) - {"datapath"}  # datapath: the diagnostic alone
    if unknown:
        p.error(f"unknown row(s) {sorted(unknown)}; rows are {', '.join(ALL_ROWS)}")
    if args.jobs < 1 or args.scale <= 0:
        p.error("--jobs must be >= 1 and --scale > 0")
    return args


def scale_tag(scale: float) -> str:
    return f"{scale:g}".replace(".", "_")


# -- the source ----------------------------------------------------------------------------------------


def ensure_source(srv, scale: float) -> tuple[str, dict[str, Any]]:
    """The source warehouse at ``scale``, re-used when a complete one exists (its database comment says so)."""
    from include.pg_migration.demo import load_warehouse

    name = f"bench_src_{scale_tag(scale)}"
    want = f"bench warehouse scale={scale:g} seed={SEED} complete"
    if db_exists(srv, name) and (db_comment(srv, name) or "").startswith(want):
        log(f"source {name}: re-using the complete warehouse ({db_size(srv, name) / 1e9:.2f} GB)")
        return name, {"load_s": None, "reused": True}
    log(f"source {name}: loading the demo warehouse at scale {scale:g} (this takes a while)")
    drop_db(srv, name)
    with srv.connect(autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    started = time.monotonic()
    summary = load_warehouse(srv.dsn(name), scale=scale, seed=SEED)
    load_s = time.monotonic() - started
    with srv.connect(name, autocommit=True) as conn:
        conn.execute("VACUUM (FREEZE, ANALYZE)")  # every row's hint bits set once, not on the first row's clock
    set_db_comment(srv, name, f"{want} at {dt.datetime.now(dt.UTC):%Y-%m-%dT%H:%M:%SZ}")
    log(f"source {name}: {summary['database_bytes'] / 1e9:.2f} GB loaded in {load_s:.0f}s")
    return name, {"load_s": round(load_s, 1), "reused": False}


def schema_bytes(srv, db: str) -> list[dict[str, Any]]:
    with srv.connect(db, autocommit=True) as conn:
        return [
            {"schema": r[0], "mb": round(float(r[1]) / 1e6, 1), "tables": r[2]}
            for r in conn.execute(
                """SELECT n.nspname,
                          coalesce(sum(pg_total_relation_size(c.oid)) FILTER (WHERE c.relkind IN ('r', 'm')), 0),
                          count(*) FILTER (WHERE c.relkind = 'r')
                     FROM pg_namespace n LEFT JOIN pg_class c ON c.relnamespace = n.oid
                    WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname !~ '^pg_'
                    GROUP BY 1 ORDER BY 2 DESC"""
            )
        ]


def source_fingerprint(srv, db: str, jobs: int) -> dict[str, Any]:
    cache = WORK / f"{db}.fingerprint.json"
    comment = db_comment(srv, db)
    if cache.exists():
        data = json.loads(cache.read_text())
        if data.get("comment") == comment:
            return data["fingerprint"]
    log(f"source {db}: computing its fingerprint (count + row hashes per table)")
    fp = fingerprint(srv.dsn(db), jobs)
    write_json(cache, {"comment": comment, "fingerprint": fp})
    log(f"source fingerprint: {len(fp['tables'])} relations in {fp['seconds']}s")
    return fp


# -- rows ---------------------------------------------------------------------------------------------------


def verify(tgt_srv, tgt_db: str, src_fp: dict[str, Any], jobs: int) -> dict[str, Any]:
    fp = fingerprint(tgt_srv.dsn(tgt_db), jobs)
    diffs = compare(src_fp, fp)
    log(f"verify {tgt_db}: {'EQUAL to the source' if not diffs else f'{len(diffs)} DIFFERENCE(S)'} ({fp['seconds']}s)")
    for d in diffs[:10]:
        log(f"  differs: {d}")
    return {"verified": not diffs, "differences": diffs[:50], "verify_s": fp["seconds"]}


def run_baseline(name: str, srv: dict, src_db: str, tgt_db: str, jobs: int, work: Path) -> dict[str, Any]:
    source, target = srv["source"], srv["target"]
    if name == "seed_single_stream":
        return baselines.seed_single_stream(source, src_db, target, tgt_db, work)
    if name == "pg_dump_restore_jobs":
        return baselines.dump_restore_jobs(source, src_db, target, tgt_db, work, jobs)
    return baselines.pgcopydb_clone(source, src_db, target, tgt_db, work, jobs)


def peak_of(rss: dict[str, Any], group: str | None = None) -> float | None:
    values = [v["peak_rss_mb"] for g, v in rss.items() if group is None or g == group]
    return round(max(values), 1) if values else None


class Bench:
    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.started = dt.datetime.now(dt.UTC)
        self.work = WORK / f"run-{self.started:%Y%m%dT%H%M%SZ}"
        self.work.mkdir(parents=True, exist_ok=True)
        self.rows: dict[str, dict[str, Any]] = {}
        self.stack: dagrun.AirflowStack | None = None
        self.dag_target: str | None = None
        self.dag_analysis: dict[str, Any] | None = None
        self.scaling: dict[str, Any] | None = None
        self.diagnostics: dict[str, Any] = {}

    def run(self) -> dict[str, Any]:
        args = self.args
        self.srv = servers()
        source, target = self.srv["source"], self.srv["target"]
        for db in (
            "bench_tgt_seed_single_stream",
            "bench_tgt_pg_dump_restore_jobs",
            "bench_tgt_pgcopydb",
            "bench_tgt_dag",
            "bench_tgt_scaling",
        ):
            drop_db(target, db)  # leftovers of an interrupted run
        self.src_db, self.source_info = ensure_source(source, args.scale)
        self.source_bytes = db_size(source, self.src_db)
        self.source_info["schemas"] = schema_bytes(source, self.src_db)
        self.src_fp = source_fingerprint(source, self.src_db, args.jobs)
        if args.merge_from:
            self.merge(args.merge_from)
        try:
            for name in MIGRATION_ROWS:
                if name == "dag" and args.datapath and ("dag" in args.rows or "datapath" in args.rows):
                    self.datapath_diagnostic()
                if name in args.rows:
                    self.migration_row(name)
            if args.scaling_schemas > 0:
                self.scaling_run()
            if self.stack:
                self.stack.stop()
                self.stack = None
            for name in VALIDATION_ROWS:
                if name in args.rows:
                    self.validation_row(name)
        finally:
            if self.stack:
                self.stack.stop()
            for db in ("bench_tgt_dag", "bench_tgt_scaling"):
                drop_db(target, db)
            drop_db(source, "bench_src_scaling")
            if not args.keep_source:
                log(f"dropping the source {self.src_db} (BENCH_KEEP_SOURCE=1 keeps it)")
                drop_db(source, self.src_db)
        return self.results()

    def merge(self, path: Path) -> None:
        """Keep the rows of an earlier run (same source database and scale) that this run does not re-run."""
        old = json.loads(path.read_text())
        if old.get("scale") != self.args.scale or old.get("source", {}).get("database") != self.src_db:
            raise SystemExit(f"bench: {path} is of another source ({old.get('source')}, scale {old.get('scale')})")
        for r in old["rows"]:
            if r["name"] not in self.args.rows:
                row = {
                    **r.get("detail", {}),
                    "name": r["name"],
                    "verified": r["verified"],
                    "from_run": old.get("started_at"),
                    "from_code": old.get("code"),
                }
                for key in ("wall_s", "skipped", "error"):
                    if r.get(key) is not None:
                        row[key] = r[key]
                self.rows[r["name"]] = row
        if ("dag" not in self.args.rows or not self.args.datapath) and old.get("diagnostics"):
            self.diagnostics.update(old["diagnostics"])
        log(f"kept rows {sorted(set(self.rows))} of the run of {old.get('started_at')} ({path})")

    # -- migration rows --
    def migration_row(self, name: str) -> None:
        source, target = self.srv["source"], self.srv["target"]
        tgt_db = f"bench_tgt_{name}"
        create_target_db(target, tgt_db)
        if name == "dag":
            self.warm_up()
        quiet = self.quiet()
        checkpoint(source, target)
        log(f"row {name}: migrating {self.src_db} -> {tgt_db} (N={self.args.jobs})")
        row: dict[str, Any] = {"name": name, "machine_before": quiet}
        postmasters = {postmaster_pid(source): "source", postmaster_pid(target): "target"}
        try:
            with (
                CpuAccount({k: v for k, v in postmasters.items() if k}, interval=1.0) as cpu,
                ActivitySampler({"source": source, "target": target}, {"source": self.src_db, "target": tgt_db}) as act,
            ):
                if name == "dag":
                    out = self.dag_row(tgt_db)
                else:
                    out = run_baseline(name, self.srv, self.src_db, tgt_db, self.args.jobs, self.work)
            row["where_time_goes"] = {**cpu.summary(), **act.summary()}
            if out.get("skipped"):
                row.update({"skipped": out["skipped"], "verified": False})
                log(f"row {name}: SKIPPED ({out['skipped']})")
            else:
                row.update(out)
                log(f"row {name}: {out['wall_s']:.1f}s; verifying the target against the source")
                row.update(verify(target, tgt_db, self.src_fp, self.args.jobs))
                row["target_bytes"] = db_size(target, tgt_db)
        except Exception as exc:  # noqa: BLE001 - one failed row must not lose the others
            row.update({"error": f"{type(exc).__name__}: {exc}", "verified": False})
            log(f"row {name}: FAILED: {exc}")
            (self.work / f"{name}.traceback").write_text(traceback.format_exc())
        self.rows[name] = row
        if name == "dag" and row.get("verified"):
            self.dag_target = tgt_db  # kept for the validation rows
        else:
            drop_db(target, tgt_db)
        self.save_partial()

    def quiet(self) -> dict[str, Any]:
        q = wait_for_quiet(self.args.quiet_wait)
        if q["waited_s"] >= 3.5 or not q["quiet"]:
            log(
                f"machine busy ({q['busy_at_start']:.0%} CPU by others): waited {q['waited_s']}s"
                + ("" if q["quiet"] else ", going on anyway (see other_cpu_share in the results)")
            )
        return q

    def endpoints(self, tgt_db: str):
        from include.pg_migration.conn import Endpoint

        source, target = self.srv["source"], self.srv["target"]
        src = Endpoint(
            host=source.host,
            port=source.port,
            dbname=self.src_db,
            user=source.superuser,
            password=source.superuser_password,
            label="source",
        )
        tgt = Endpoint(
            host=target.host,
            port=target.port,
            dbname=tgt_db,
            user=target.admin_user,
            password=target.admin_password,
            label="target",
        )
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PGMIG_", "PG"))}
        env["BENCH_CODE_ROOT"] = str(code_root())
        env.update(src.to_env("PGMIG_SOURCE"))
        env.update(tgt.to_env("PGMIG_TARGET"))
        return env

    def datapath_diagnostic(self) -> None:
        """The DAG's steps and workers without Airflow (bench/datapath.py), N units at a time."""
        source, target = self.srv["source"], self.srv["target"]
        tgt_db = "bench_tgt_datapath"
        create_target_db(target, tgt_db)
        out: dict[str, Any] = {"machine_before": self.quiet()}
        checkpoint(source, target)
        log("diagnostic: the DAG's data path without Airflow (same workers, N units at a time)")
        env = self.endpoints(tgt_db)
        env["BENCH_LOG_DIR"] = str(self.work)
        postmasters = {postmaster_pid(source): "source", postmaster_pid(target): "target"}
        try:
            with (
                CpuAccount({k: v for k, v in postmasters.items() if k}, interval=1.0) as cpu,
                ActivitySampler({"source": source, "target": target}, {"source": self.src_db, "target": tgt_db}) as act,
                RssSampler(
                    lambda p: "pg_migration worker" if "include.pg_migration.worker" in " ".join(p.cmdline()) else None
                ) as rss,
            ):
                proc = subprocess.Popen(
                    [
                        sys.executable,
                        str(Path(__file__).with_name("datapath.py")),
                        str(self.args.jobs),
                        f"bench_datapath_{dt.datetime.now(dt.UTC):%Y%m%dT%H%M%S}",
                    ],
                    env=env,
                    stdout=subprocess.PIPE,
                    stderr=open(self.work / "datapath.log", "wb"),
                    text=True,
                )
                rss.add_root(proc.pid)
                stdout, _ = proc.communicate()
            if proc.returncode != 0:
                raise RuntimeError(f"datapath.py failed ({proc.returncode}); see {self.work / 'datapath.log'}")
            out.update(json.loads(stdout.strip().splitlines()[-1]))
            out["where_time_goes"] = {**cpu.summary(), **act.summary()}
            out["peak_rss_mb"] = peak_of(rss.summary())
            if out.get("wall_s"):
                with psycopg.connect(target.dsn(tgt_db), autocommit=True) as conn:
                    out["unit_worker_s"] = [
                        {"unit": r[0], "s": round(r[1], 1)}
                        for r in conn.execute("SELECT unit_id, seconds FROM _pg_migration.units ORDER BY seconds DESC")
                    ]
                out.update(verify(target, tgt_db, self.src_fp, self.args.jobs))
                log(
                    f"diagnostic data path: {out['wall_s']:.1f}s (start {out['start_s']:.1f}, units "
                    f"{out['units_s']:.1f}, finish {out['finish_s']:.1f})"
                )
        except Exception as exc:  # noqa: BLE001
            out["error"] = f"{type(exc).__name__}: {exc}"
            log(f"diagnostic FAILED: {exc}")
        finally:
            drop_db(target, tgt_db)
        self.diagnostics["dag_data_path_without_airflow"] = out
        self.save_partial()

    def start_stack(self) -> dagrun.AirflowStack:
        if self.stack is None:
            source, target = self.srv["source"], self.srv["target"]
            conns = {
                "AIRFLOW_CONN_PG_SOURCE": source.uri(self.src_db),
                "AIRFLOW_CONN_PG_TARGET": target.uri("bench_tgt_dag", user=target.admin_user),
                "AIRFLOW_CONN_BENCH_SCALE_SOURCE": source.uri("bench_src_scaling"),
                "AIRFLOW_CONN_BENCH_SCALE_TARGET": target.uri("bench_tgt_scaling", user=target.admin_user),
            }
            home = self.work / "airflow_home"
            shutil.rmtree(home, ignore_errors=True)
            self.stack = dagrun.AirflowStack(home, self.args.jobs, dagrun.PARALLELISM, conns)
            self.stack.start()
        return self.stack

    def warm_up(self) -> None:
        """A dry run of the DAG before the measured one, outside the measurement: a long-running Airflow
        has warm executor workers (a fresh LocalExecutor worker's first task spends ~2.7 s importing the
        task runner's modules), and the measured row is about the migration, not the stack's start."""
        stack = self.start_stack()
        run_id = f"bench_warmup_{dt.datetime.now(dt.UTC):%Y%m%dT%H%M%S}"
        started = time.monotonic()
        try:
            stack.trigger(run_id, {"pool_size": self.args.jobs, "dry_run": True})
            state = stack.wait(run_id, 600)["state"]
        except Exception as exc:  # noqa: BLE001 - a warm-up that fails only leaves the stack cold
            state = f"failed: {exc}"
        log(f"airflow stack warmed by a dry run ({state}, {time.monotonic() - started:.1f}s)")

    def dag_row(self, tgt_db: str) -> dict[str, Any]:
        stack = self.start_stack()
        run_id = f"bench_{dt.datetime.now(dt.UTC):%Y%m%dT%H%M%S}"
        conf = {"pool_size": self.args.jobs, "validation": "counts"}
        result = dagrun.run_dag(stack, run_id, conf, tgt_db, self.args.dag_timeout)
        target = self.srv["target"]
        analysis = dagrun.analyse(stack, result, target.dsn(tgt_db), run_id)
        self.dag_analysis = analysis
        log(
            f"dag run {run_id}: {analysis['state']}, makespan {analysis['makespan_s']}s (migration through "
            f"post_data {analysis['migration_s']}s), ideal {analysis['ideal_s']}s, overhead {analysis['overhead_s']}s "
            f"= {analysis['overhead_per_unit_s']}s per unit"
        )
        if analysis["state"] != "success":
            raise RuntimeError(f"the DAG run ended {analysis['state']} (logs: {stack.home / 'logs'})")
        return {
            "wall_s": analysis["makespan_s"],
            "rss": result["rss"],
            "worker_group": "pg_migration worker",
            "detail": {
                "run_id": run_id,
                "conf": conf,
                "airflow_home": str(stack.home),
                **analysis,
                **({"py_spy": result["profile"]} if result.get("profile") else {}),
            },
        }

    def scaling_run(self) -> None:
        n = self.args.scaling_schemas
        source, target = self.srv["source"], self.srv["target"]
        log(f"scaling run: {n} small schemas")
        out: dict[str, Any] = {"schemas": n}
        try:
            drop_db(source, "bench_src_scaling")
            with source.connect(autocommit=True) as conn:
                conn.execute('CREATE DATABASE "bench_src_scaling"')
            with source.connect("bench_src_scaling", autocommit=True) as conn:
                scaling.build_source(conn, n)
            create_target_db(target, "bench_tgt_scaling")
            stack = self.start_stack()
            run_id = f"bench_scaling_{dt.datetime.now(dt.UTC):%Y%m%dT%H%M%S}"
            conf = {
                "pool_size": self.args.jobs,
                "validation": "counts",
                "source_conn_id": "bench_scale_source",
                "target_conn_id": "bench_scale_target",
            }
            result = dagrun.run_dag(stack, run_id, conf, "bench_tgt_scaling", self.args.dag_timeout)
            analysis = dagrun.analyse(stack, result, target.dsn("bench_tgt_scaling"), run_id)
            analysis.pop("unit_work", None)
            src_fp = fingerprint(source.dsn("bench_src_scaling"), self.args.jobs)
            tgt_fp = fingerprint(target.dsn("bench_tgt_scaling"), self.args.jobs)
            diffs = compare(src_fp, tgt_fp)
            out.update(
                {
                    "run_id": run_id,
                    "verified": not diffs and analysis["state"] == "success",
                    "differences": diffs[:20],
                    "worker_rss": result["rss"],
                    **analysis,
                }
            )
            log(
                f"scaling: {analysis['state']}, makespan {analysis['makespan_s']}s, ideal {analysis['ideal_s']}s, "
                f"overhead {analysis['overhead_per_unit_s']}s per unit ({analysis['units']} units)"
            )
        except Exception as exc:  # noqa: BLE001
            out["error"] = f"{type(exc).__name__}: {exc}"
            log(f"scaling run FAILED: {exc}")
            (self.work / "scaling.traceback").write_text(traceback.format_exc())
        finally:
            drop_db(target, "bench_tgt_scaling")
            drop_db(source, "bench_src_scaling")
        env = scaling.env_without_conns()
        env["AIRFLOW_HOME"] = str(self.stack.home if self.stack else self.work / "airflow_home")
        out["parse"] = scaling.parse_times(env)
        log(f"DAG parse: {out['parse']}")
        self.scaling = out
        self.save_partial()

    # -- validation rows --
    def validation_row(self, name: str) -> None:
        mode = "counts" if name == "validate_counts" else "checksums"
        row: dict[str, Any] = {"name": name}
        if self.dag_target is None:
            row.update(
                {"skipped": "no verified migrated target (the dag row did not run or failed)", "verified": False}
            )
            self.rows[name] = row
            return
        source, target = self.srv["source"], self.srv["target"]
        env = self.endpoints(self.dag_target)
        row["machine_before"] = self.quiet()
        checkpoint(source, target)
        log(f"row {name}: validate_schema(mode={mode}) per schema, {self.args.jobs} at a time")
        started = time.monotonic()
        postmasters = {postmaster_pid(source): "source", postmaster_pid(target): "target"}
        with (
            CpuAccount({k: v for k, v in postmasters.items() if k}, interval=1.0) as cpu,
            RssSampler(lambda p: "validation") as rss,
        ):
            proc = subprocess.Popen(
                [sys.executable, str(Path(__file__).with_name("validate_step.py")), mode, str(self.args.jobs)],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            rss.add_root(proc.pid)
            stdout, stderr = proc.communicate()
        wall = time.monotonic() - started
        if proc.returncode != 0:
            row.update({"error": stderr[-2000:], "verified": False})
        else:
            data = json.loads(stdout.strip().splitlines()[-1])
            mismatches = {s: v["mismatches"] for s, v in data["schemas"].items() if v["mismatches"]}
            row.update(
                {
                    "wall_s": wall,
                    "rss": rss.summary(),
                    "where_time_goes": cpu.summary(),
                    "verified": not mismatches,
                    "detail": {
                        "in_process_s": round(data["wall_s"], 2),
                        "mismatches": mismatches,
                        "schemas": {s: v["seconds"] for s, v in data["schemas"].items()},
                    },
                }
            )
            log(f"row {name}: {wall:.1f}s, {'no mismatch' if not mismatches else mismatches}")
        self.rows[name] = row
        self.save_partial()

    # -- results --
    def results(self) -> dict[str, Any]:
        mb = self.source_bytes / 1e6
        seed = self.rows.get("seed_single_stream", {}).get("wall_s")
        rows_out = []
        for name in ALL_ROWS:
            r = self.rows.get(name)
            if r is None:
                continue
            wall = r.get("wall_s")
            others = [
                o["wall_s"]
                for n, o in self.rows.items()
                if n != name and n in MIGRATION_ROWS and o.get("wall_s") and o.get("verified")
            ]
            best = min(others) if others else None
            rss = r.get("rss") or {}
            out = {
                "name": name,
                "wall_s": round(wall, 2) if wall else None,
                "mb_per_s": round(mb / wall, 1) if wall else None,
                "peak_rss_mb": peak_of(rss, r.get("worker_group")) if rss else None,
                "verified": bool(r.get("verified")),
                "ratio_to_seed": round(wall / seed, 3) if wall and seed else None,
                "ratio_to_best_other": round(wall / best, 3) if wall and best else None,
                "other_cpu_share": (r.get("where_time_goes") or {}).get("other_cpu_share"),
            }
            for key in ("skipped", "error", "from_run"):
                if r.get(key):
                    out[key] = r[key]
            out["detail"] = {
                k: v for k, v in r.items() if k not in ("name", "wall_s", "verified", "skipped", "error", "from_run")
            }
            rows_out.append(out)
        return {
            "machine": machine(),
            "scale": self.args.scale,
            "source_bytes": self.source_bytes,
            "rows": rows_out,
            "jobs": self.args.jobs,
            "airflow_settings": {
                **dagrun.MIGRATION_WINDOW_SETTINGS,
                **json.loads(os.environ.get("BENCH_AIRFLOW_ENV") or "{}"),
            },
            "code": code_version(),
            "started_at": f"{self.started:%Y-%m-%dT%H:%M:%SZ}",
            "finished_at": f"{dt.datetime.now(dt.UTC):%Y-%m-%dT%H:%M:%SZ}",
            "source": {"database": self.src_db, **self.source_info},
            "targets": self.targets(),
            "scaling": self.scaling,
            "diagnostics": self.diagnostics,
            "work_dir": str(self.work),
        }

    def targets(self) -> dict[str, Any]:
        wall = {n: r.get("wall_s") for n, r in self.rows.items() if r.get("verified") or n in VALIDATION_ROWS}
        out: dict[str, Any] = {}
        dag = wall.get("dag")
        mig = (self.dag_analysis or {}).get("migration_s")

        def entry(value: float | None, limit: float, what: str) -> dict[str, Any]:
            return {
                "value": None if value is None else round(value, 3),
                "target": limit,
                "met": None if value is None else value <= limit,
                "what": what,
            }

        out["dag_vs_pgcopydb"] = entry(
            dag / wall["pgcopydb"] if dag and wall.get("pgcopydb") else None,
            TARGETS["dag_vs_pgcopydb"],
            "DAG makespan / pgcopydb wall time",
        )
        out["dag_vs_seed"] = entry(
            dag / wall["seed_single_stream"] if dag and wall.get("seed_single_stream") else None,
            TARGETS["dag_vs_seed"],
            "DAG makespan / seed's pg_dump -Fc | pg_restore",
        )
        out["overhead_per_unit_s"] = entry(
            (self.dag_analysis or {}).get("overhead_per_unit_s"),
            TARGETS["overhead_per_unit_s"],
            "(DAG makespan - ideal schedule of the task work) / data units",
        )
        if self.scaling and self.scaling.get("overhead_per_unit_s") is not None:
            out["scaling_overhead_per_unit_s"] = entry(
                self.scaling["overhead_per_unit_s"],
                TARGETS["overhead_per_unit_s"],
                f"same, scaling run ({self.scaling['schemas']} small schemas)",
            )
        base = mig or dag
        for name, key in (
            ("validate_counts", "validate_counts_share"),
            ("validate_checksums", "validate_checksums_share"),
        ):
            v = wall.get(name)
            out[key] = entry(
                v / base if v and base else None,
                TARGETS[key],
                f"{name} wall / DAG migration time (run start to post_data end)",
            )
        rss = self.rows.get("dag", {}).get("rss", {})
        out["worker_rss_mb"] = entry(
            peak_of(rss, "pg_migration worker") if rss else None,
            TARGETS["worker_rss_mb"],
            "peak RSS of one pg_migration worker process",
        )
        return out

    def save_partial(self) -> None:
        try:
            write_json(self.work / "partial.json", self.results())
        except Exception as exc:  # noqa: BLE001
            log(f"(could not write partial results: {exc})")


# -- output ------------------------------------------------------------------------------------------------


def table(data: dict[str, Any]) -> str:
    m = data["machine"]
    lines = [
        f"Machine: {m['cores']} cores ({m['cpu_model']}), {m['ram_gb']} GB RAM; "
        f"N (pool size, -j, jobs) = {data['jobs']}",
        "Airflow of the dag row: LocalExecutor, SQLite, warmed by one dry run before the measured run; "
        + ", ".join(f"{k} = {v}" for k, v in data.get("airflow_settings", {}).items()),
        f"Source: demo warehouse scale {data['scale']:g}, {data['source_bytes'] / 1e9:.2f} GB on disk "
        f"(pg_database_size), PostgreSQL 15 -> PostgreSQL 15 on the same machine",
        "",
        "| row | wall s | source MB/s | peak RSS MB | verified | × seed | × best other | others' CPU |",
        "|---|---:|---:|---:|:---:|---:|---:|---:|",
    ]
    for r in data["rows"]:

        def f(v: Any, fmt: str = "{:.1f}") -> str:
            return "–" if v is None else fmt.format(v)

        status = "yes" if r["verified"] else ("skipped" if r.get("skipped") else "NO")
        lines.append(
            f"| {r['name']} | {f(r['wall_s'])} | {f(r['mb_per_s'])} | {f(r['peak_rss_mb'])} | {status} | "
            f"{f(r['ratio_to_seed'], '{:.2f}')} | {f(r['ratio_to_best_other'], '{:.2f}')} | "
            f"{f(r.get('other_cpu_share'), '{:.0%}')} |"
        )
    for r in data["rows"]:
        if r.get("skipped"):
            lines.append(f"\n{r['name']} skipped: {r['skipped']}")
        if r.get("error"):
            lines.append(f"\n{r['name']} failed: {r['error'][:500]}")
        if r.get("from_run"):
            lines.append(f"\n{r['name']}: kept from the run started {r['from_run']} (same source database)")
    lines += [
        "",
        "others' CPU: share of the machine's CPU used during the row by processes this run did not start "
        "(the machine is shared with colleagues' test runs).",
        "",
        "Targets (ratios between the rows above; a row kept from an earlier run says so):",
        "",
        "| target | value | limit | met |",
        "|---|---:|---:|:---:|",
    ]
    for key, t in data["targets"].items():
        met = "–" if t["met"] is None else ("yes" if t["met"] else "NO")
        lines.append(f"| {key}: {t['what']} | {'–' if t['value'] is None else t['value']} | {t['target']} | {met} |")
    cpu_rows = [(r["name"], r["detail"].get("where_time_goes")) for r in data["rows"]]
    diag = (data.get("diagnostics") or {}).get("dag_data_path_without_airflow") or {}
    cpu_rows.append(("(diagnostic) dag data path without Airflow", diag.get("where_time_goes")))
    lines += [
        "",
        "Where the time goes: CPU seconds by kind of process during each row (sampled; the machine's "
        "capacity is wall × cores), and active database session-seconds by statement (sampled each second):",
        "",
    ]
    for name, w in cpu_rows:
        if not w:
            continue
        cpu = ", ".join(f"{k} {v}" for k, v in list(w["cpu_s_by_kind"].items())[:7])
        act = ", ".join(f"{k} {v}" for k, v in list(w.get("active_session_s_by_statement", {}).items())[:6]) or "–"
        lines.append(
            f"- {name}: machine {w['machine_cpu_s']} of {w['machine_cpu_capacity_s']} CPU-s: {cpu}. Sessions: {act}"
        )
    if diag.get("wall_s"):
        lines += [
            "",
            f"Diagnostic -- the DAG's data path without Airflow (same worker processes, {data['jobs']} units "
            f"at a time): {diag['wall_s']:.1f} s (discover..pre-data {diag['start_s']:.1f} s, units "
            f"{diag['units_s']:.1f} s, large objects + post-data {diag['finish_s']:.1f} s), verified: "
            f"{diag.get('verified')}, peak worker RSS {diag.get('peak_rss_mb')} MB",
        ]
    elif diag.get("error") or diag.get("skipped"):
        lines += ["", f"Diagnostic data path without Airflow: {diag.get('error') or diag.get('skipped')}"]
    dag = next((r for r in data["rows"] if r["name"] == "dag" and r.get("detail", {}).get("makespan_s")), None)
    if dag:
        d = dag["detail"]
        lines += [
            "",
            f"DAG run: makespan {d['makespan_s']} s, migration (start to post_data end) {d['migration_s']} s, "
            f"ideal schedule of the task work {d['ideal_s']} s, orchestration overhead {d['overhead_s']} s "
            f"({d['units']} data units, {d['task_instances']} task instances; fixed cost of one task instance "
            f"{d['task_instance_fixed_cost_s']} s)",
            "",
            "| task | from s | to s | instances | Airflow task s (sum) | work s (sum) |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        for task, t in sorted(d["timeline"].items(), key=lambda kv: kv[1]["from_s"]):
            lines.append(
                f"| {task} | {t['from_s']} | {t['to_s']} | {t['instances']} | {t['ti_seconds_sum']} | "
                f"{t['work_seconds_sum']} |"
            )
    s = data.get("scaling")
    if s:
        lines += ["", f"Scaling run ({s['schemas']} small schemas):"]
        if s.get("error"):
            lines.append(f"failed: {s['error'][:500]}")
        elif s.get("makespan_s") is not None:
            lines.append(
                f"makespan {s['makespan_s']} s, ideal {s['ideal_s']} s, overhead {s['overhead_s']} s = "
                f"{s['overhead_per_unit_s']} s per data unit ({s['units']} units, {s['task_instances']} task "
                f"instances, {s['overhead_per_task_instance_s']} s per task instance), verified: {s['verified']}"
            )
        p = s.get("parse") or {}
        if "import_airflow_s" in p:
            lines.append(
                f"DAG parse (fresh interpreter, median of 3): import airflow {p['import_airflow_s']} s, DagBag of "
                f"dags/ {p['dagbag_first_parse_s']} s, re-parse of pg_migration_dag.py {p['reparse_s']} s; "
                f"import errors: {p['import_errors'] or 'none'}"
            )
            top = ", ".join(f"{t['module']} {t['cumulative_ms']} ms" for t in p.get("top_imports", [])[:8])
            lines.append(f"Imports the DAG file adds on top of Airflow: {top}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    WORK.mkdir(parents=True, exist_ok=True)
    lock = open(WORK / ".lock", "w")  # noqa: SIM115 - held for the whole run
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        print("bench: another benchmark run holds .local/bench/.lock", file=sys.stderr)
        return 1
    if args.code != "worktree":
        CODE["root"], sha = export_head(WORK, "HEAD" if args.code == "head" else args.code)
        log(f"code under test: commit {sha[:12]} ({args.code}) exported to {CODE['root']}")
    bench = Bench(args)
    os.environ["BENCH_RUN"] = bench.work.name  # inherited by every process the run starts (CPU accounting)
    log(f"benchmark: scale {args.scale:g}, N={args.jobs}, rows {', '.join(args.rows)}; logs in {bench.work}")
    data = bench.run()
    text = table(data)
    print("\n" + text + "\n")
    args.out.mkdir(parents=True, exist_ok=True)
    write_json(args.out / "latest.json", data)
    (args.out / "latest.md").write_text(f"# Benchmark results ({data['finished_at']})\n\n{text}\n")
    log(f"wrote {args.out / 'latest.json'} and latest.md")
    return 0 if all(r["verified"] or r.get("skipped") for r in data["rows"]) else 1


if __name__ == "__main__":
    raise SystemExit(main())
