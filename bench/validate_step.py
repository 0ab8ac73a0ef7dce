"""Validation alone, as the DAG's mapped ``validate`` tasks do it: one schema per job, N at a time.

    python bench/validate_step.py MODE JOBS   (endpoints from PGMIG_SOURCE_* / PGMIG_TARGET_*)

Runs in its own process so that the benchmark can sample its memory; prints one JSON line.
Schemas are taken largest first (like the plan's units).
"""

from __future__ import annotations

import concurrent.futures as cf
import json
import os
import sys
import time
from pathlib import Path

# The code under test: the work tree, or the exported HEAD the benchmark runs (BENCH_CODE_ROOT).
sys.path.insert(0, os.environ.get("BENCH_CODE_ROOT") or str(Path(__file__).resolve().parents[1]))

from include.pg_migration.conn import Endpoint  # noqa: E402
from include.pg_migration.phases.validate import validate_schema  # noqa: E402

SCHEMAS = """
SELECT n.nspname FROM pg_catalog.pg_namespace n LEFT JOIN pg_catalog.pg_class c ON c.relnamespace = n.oid
 WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', '_pg_migration', 'pgcopydb')
   AND n.nspname !~ '^pg_(toast|temp)'
 GROUP BY n.nspname ORDER BY coalesce(sum(pg_catalog.pg_total_relation_size(c.oid)), 0) DESC, 1
"""


def main() -> int:
    mode, jobs = sys.argv[1], int(sys.argv[2])
    source = Endpoint.from_env("PGMIG_SOURCE", "source")
    target = Endpoint.from_env("PGMIG_TARGET", "target")
    with source.connect("bench validate", autocommit=True) as conn:
        schemas = [r[0] for r in conn.execute(SCHEMAS)]
    started = time.monotonic()
    results = {}
    with cf.ThreadPoolExecutor(max_workers=jobs) as pool:
        futures = {pool.submit(validate_schema, source, target, s, None, mode): s for s in schemas}
        for fut in cf.as_completed(futures):
            r = fut.result()
            results[futures[fut]] = {"seconds": r.seconds, "tables": len(r.tables), "mismatches": r.mismatches}
    wall = time.monotonic() - started
    print(json.dumps({"wall_s": wall, "schemas": results}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
