"""Diagnostic: the DAG's data path without Airflow -- the same steps and worker processes, N units at a time.

    python bench/datapath.py JOBS RUN_ID   (endpoints from PGMIG_SOURCE_* / PGMIG_TARGET_*)

``include.pg_migration.harness.LocalRun`` (``pipeline.LocalRun`` before the redesign) drives
discover/plan/register, the snapshot holder and
pre-data; the data units run as worker processes (``run_local``), N at a time, largest first, like
the pool; then large objects, release, post-data. No validation. The difference between this and
the ``dag`` row's migration time is what orchestration costs; this against pgcopydb is the data path.
Prints one JSON line.
"""

from __future__ import annotations

import concurrent.futures as cf
import json
import logging
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, os.environ.get("BENCH_CODE_ROOT") or str(Path(__file__).resolve().parents[1]))

from include.pg_migration.conn import Endpoint  # noqa: E402


def main() -> int:
    jobs, run_id = int(sys.argv[1]), sys.argv[2]
    # The workers' output, timestamped, on stderr (the run's datapath.log): where the time went.
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    try:
        from include.pg_migration.harness import LocalRun
    except ImportError:
        try:  # the code under test predates the redesign (--code <older commit>)
            from include.pg_migration.pipeline import LocalRun
        except ImportError as exc:
            print(json.dumps({"skipped": f"the code under test has no harness.LocalRun ({exc})"}))
            return 0
    source = Endpoint.from_env("PGMIG_SOURCE", "source")
    target = Endpoint.from_env("PGMIG_TARGET", "target")
    t0 = time.monotonic()
    run = LocalRun(source, target, run_id, pool_size=jobs, log_dir=Path(os.environ.get("BENCH_LOG_DIR", "/tmp")))
    try:
        plan = run.start()
        t1 = time.monotonic()
        units = [u["unit_id"] for u in plan["units"]]  # largest first
        with cf.ThreadPoolExecutor(max_workers=jobs) as pool:
            for fut in [pool.submit(run.unit, u) for u in units]:
                fut.result()
        t2 = time.monotonic()
    except BaseException:
        run.close()
        raise
    run.finish()
    t3 = time.monotonic()
    print(
        json.dumps(
            {
                "wall_s": t3 - t0,
                "start_s": t1 - t0,
                "units_s": t2 - t1,
                "finish_s": t3 - t2,
                "units": len(units),
            }
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
