"""The data phase's cost per small table, on a generated many-tables source.

    .venv/bin/python bench/small_tables.py [--schemas 12] [--pool 2] [--keep-source NAME]

Generates ``include.pg_migration.demo.many_tables`` (``Shape(schemas=N)``: 12 gives about 1,936
tables, all small) into a fresh source database (or re-uses ``--keep-source NAME`` when it holds
one), runs discover .. pre-data with ``harness.LocalRun``, then the data units as worker processes,
``--pool`` at a time (largest first, like the Airflow pool), and prints one JSON line:

    data_s (the data phase's wall time), small_tables (tables under 1 MB that hold rows),
    ms_per_small_table = data_s x pool / small_tables   (issue 16's goal: at most 25 ms)

Then it runs post-data and compares both sides (``count(*) FROM ONLY`` of every table). Its
databases (``bench_st_*``) are dropped at the end, the source unless ``--keep-source``.
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import json
import sys
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from psycopg import sql  # noqa: E402

from include.pg_migration.conn import Endpoint  # noqa: E402
from include.pg_migration.demo.many_tables import Shape, generate  # noqa: E402
from include.pg_migration.harness import LocalRun  # noqa: E402
from scripts import localpg  # noqa: E402

SMALL = 1024 * 1024
COUNTS = """
SELECT n.nspname, c.relname FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
 WHERE c.relkind = 'r' AND n.nspname NOT IN ('pg_catalog', 'information_schema', '_pg_migration')
   AND n.nspname !~ '^pg_toast' ORDER BY 1, 2
"""


def _endpoint(server: localpg.Server, db: str, user: str, label: str) -> Endpoint:
    return Endpoint(server.host, server.port, db, user, server.password_for(user), label=label)


def _create(server: localpg.Server, name: str, owner: str | None = None) -> None:
    localpg.drop_database(server, name)
    with server.connect(autocommit=True) as conn:
        stmt = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
        if owner:
            stmt += sql.SQL(" OWNER {}").format(sql.Identifier(owner))
        conn.execute(stmt)


def _counts(conn) -> dict[tuple[str, str], int]:
    out = {}
    for schema, table in conn.execute(COUNTS).fetchall():
        q = sql.SQL("SELECT count(*) FROM ONLY {}").format(sql.Identifier(schema, table))
        out[(schema, table)] = conn.execute(q).fetchone()[0]
    return out


def _has_tables(server: localpg.Server, name: str) -> bool:
    try:
        with server.connect(name, autocommit=True) as conn:
            return conn.execute("SELECT count(*) FROM pg_catalog.pg_class WHERE relkind = 'r'").fetchone()[0] > 100
    except Exception:  # noqa: BLE001 - no such database
        return False


def measure(schemas: int, pool: int, keep_source: str | None) -> dict:
    servers = localpg.ensure_up(pg18=False)
    src_server, tgt_server = servers["source"], servers["target"]
    src_db = keep_source or f"bench_st_src_{uuid.uuid4().hex[:8]}"
    tgt_db = f"bench_st_tgt_{uuid.uuid4().hex[:8]}"
    generated = None
    if not (keep_source and _has_tables(src_server, src_db)):
        _create(src_server, src_db)
        generated = generate(src_server.dsn(src_db), Shape(schemas=schemas))
    _create(tgt_server, tgt_db, owner=tgt_server.admin_user)
    source = _endpoint(src_server, src_db, src_server.superuser, "source")
    target = _endpoint(tgt_server, tgt_db, tgt_server.admin_user, "target")
    run = LocalRun(source, target, f"bench_st_{uuid.uuid4().hex[:8]}", pool_size=pool)
    try:
        t0 = time.monotonic()
        plan = run.start()
        t1 = time.monotonic()
        with cf.ThreadPoolExecutor(max_workers=pool) as workers:
            for fut in [workers.submit(run.unit, u["unit_id"]) for u in plan["units"]]:
                fut.result()
        t2 = time.monotonic()
        run.finish()
        t3 = time.monotonic()
        small = sum(1 for s in run.inventory["schemas"] for t in s["tables"] if t["kind"] == "r" and t["bytes"] < SMALL)
        with src_server.connect(src_db, autocommit=True) as s, tgt_server.connect(tgt_db, autocommit=True) as t:
            src_counts, tgt_counts = _counts(s), _counts(t)
        return {
            "generated": generated,
            "tables": plan["tables"],
            "units": len(plan["units"]),
            "small_tables": small,
            "pool": pool,
            "start_s": round(t1 - t0, 2),
            "data_s": round(t2 - t1, 2),
            "finish_s": round(t3 - t2, 2),
            "ms_per_small_table": round((t2 - t1) * pool / max(small, 1) * 1000, 1),
            "equal": src_counts == tgt_counts,
        }
    finally:
        run.close()
        localpg.drop_database(tgt_server, tgt_db)
        if not keep_source:
            localpg.drop_database(src_server, src_db)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--schemas", type=int, default=12)
    ap.add_argument("--pool", type=int, default=2)
    ap.add_argument("--keep-source", metavar="NAME", help="source database to re-use (generated if empty)")
    args = ap.parse_args(argv)
    print(json.dumps(measure(args.schemas, args.pool, args.keep_source)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
