#!/usr/bin/env python3
"""Profiling aid: ways to move one table's rows source -> target, timed side by side (not a benchmark row).

    .venv/bin/python bench/copy_variants.py SOURCE_DB SCHEMA.TABLE [--private] [--repeat 2]

Creates ``bench_tgt_copyprobe`` on the target (aurora_admin) with the table's definition only (no
indexes), then, per variant, in one target transaction: ``TRUNCATE``; ``COPY ... FROM STDIN (FORMAT
binary, FREEZE)`` fed by ``COPY ... TO STDOUT (FORMAT binary)`` of the source; ``COMMIT``.
Variants:

* ``psycopg_per_chunk``  -- what ``include/pg_migration/phases/data.py`` does: ``for chunk in out: into.write(chunk)``
* ``psycopg_batched``    -- the same, but chunks gathered into >= 1 MiB before each ``write``
* ``psycopg_queued``     -- per chunk, with psycopg's ``QueuedLibpqWriter`` (writes in a second thread)
* ``psql_pipe``          -- ``psql -c "COPY ... TO STDOUT" | psql -1 -c TRUNCATE -c "COPY ... FROM STDIN"``:
                            the bytes never enter Python

Prints wall seconds and CPU seconds by kind of process (``bench`` = this Python process, ``pg tools`` =
the psql pair, ``source/target backends`` = the two sessions), sampled every 0.25 s.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import psycopg  # noqa: E402
from psycopg import sql  # noqa: E402

from bench import common  # noqa: E402

TGT_DB = "bench_tgt_copyprobe"


def run_psycopg(src_dsn: str, tgt_dsn: str, schema: str, table: str, mode: str) -> int:
    name = sql.Identifier(schema, table)
    out_stmt = sql.SQL("COPY {} TO STDOUT (FORMAT binary)").format(name)
    in_stmt = sql.SQL("COPY {} FROM STDIN (FORMAT binary, FREEZE)").format(name)
    nbytes = 0
    with psycopg.connect(src_dsn) as src, psycopg.connect(tgt_dsn) as tgt:
        tgt.execute("SET synchronous_commit = off")
        tgt.execute(sql.SQL("TRUNCATE ONLY {}").format(name))
        with src.cursor() as scur, tgt.cursor() as tcur:
            writer = None
            if mode == "psycopg_queued":
                from psycopg.copy import QueuedLibpqWriter

                writer = QueuedLibpqWriter(tcur)
            with scur.copy(out_stmt) as out, tcur.copy(in_stmt, writer=writer) as into:
                if mode == "psycopg_batched":
                    buf = bytearray()
                    for chunk in out:
                        buf += chunk
                        if len(buf) >= 1 << 20:
                            nbytes += len(buf)
                            into.write(buf)
                            buf = bytearray()
                    if buf:
                        nbytes += len(buf)
                        into.write(buf)
                else:
                    for chunk in out:
                        nbytes += len(chunk)
                        into.write(chunk)
        tgt.commit()
    return nbytes


def run_psql(src_srv, src_db: str, tgt_srv, schema: str, table: str) -> int:
    ident = f'"{schema}"."{table}"'
    src_env = {**os.environ, **src_srv.libpq_env(src_db)}
    tgt_env = {**os.environ, **tgt_srv.libpq_env(TGT_DB, user=tgt_srv.admin_user)}
    out = subprocess.Popen(
        [src_srv.bin("psql"), "-X", "-q", "-c", f"COPY {ident} TO STDOUT (FORMAT binary)"],
        env=src_env,
        stdout=subprocess.PIPE,
    )
    into = subprocess.Popen(
        [
            tgt_srv.bin("psql"),
            "-X",
            "-q",
            "-1",
            "-v",
            "ON_ERROR_STOP=1",
            "-c",
            "SET synchronous_commit = off",
            "-c",
            f"TRUNCATE ONLY {ident}",
            "-c",
            f"COPY {ident} FROM STDIN (FORMAT binary, FREEZE)",
        ],
        env=tgt_env,
        stdin=out.stdout,
    )
    assert out.stdout is not None
    out.stdout.close()
    if into.wait() != 0 or out.wait() != 0:
        raise RuntimeError("psql pipe failed")
    return 0


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("source_db")
    p.add_argument("table")
    p.add_argument("--private", action="store_true", help="the benchmark's private server pair")
    p.add_argument("--repeat", type=int, default=2)
    args = p.parse_args()
    if args.private:
        os.environ["BENCH_PG"] = "private"
    os.environ["BENCH_RUN"] = f"copy_variants-{os.getpid()}"  # marks the psql children as ours
    srv = common.servers()
    source, target = srv["source"], srv["target"]
    schema, table = args.table.split(".", 1)
    common.create_target_db(target, TGT_DB)
    try:
        ddl = subprocess.run(
            [
                source.bin("pg_dump"),
                "--section=pre-data",
                "--no-owner",
                "--no-privileges",
                "-t",
                f'"{schema}"."{table}"',
                "-d",
                args.source_db,
            ],
            env={**os.environ, **source.libpq_env(args.source_db)},
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        with target.connect(TGT_DB, user=target.admin_user, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)))
            ddl = "\n".join(ln for ln in ddl.splitlines() if not ln.startswith("--"))
            for stmt in ddl.split(";\n"):
                if stmt.strip().startswith(("CREATE TABLE", "CREATE TYPE", "ALTER TABLE")) and "OWNER TO" not in stmt:
                    try:
                        conn.execute(stmt)
                    except psycopg.Error as exc:
                        print(f"(skipped: {str(exc).splitlines()[0]})", file=sys.stderr)
        src_dsn = source.dsn(args.source_db)
        tgt_dsn = target.dsn(TGT_DB, user=target.admin_user)
        results = []
        for _ in range(args.repeat):
            for mode in ("psycopg_per_chunk", "psycopg_batched", "psycopg_queued", "psql_pipe"):
                common.checkpoint(source, target)
                pms = {common.postmaster_pid(source): "source", common.postmaster_pid(target): "target"}
                w0 = time.monotonic()
                with common.CpuAccount(pms, interval=0.25) as cpu:
                    if mode == "psql_pipe":
                        run_psql(source, args.source_db, target, schema, table)
                    else:
                        run_psycopg(src_dsn, tgt_dsn, schema, table, mode)
                wall = time.monotonic() - w0
                res = {"variant": mode, "wall_s": round(wall, 2), **cpu.summary()}
                print(json.dumps(res), flush=True)
                results.append(res)
    finally:
        common.drop_db(target, TGT_DB)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
