"""The rows that do not use this project: pg_dump | pg_restore, pg_dump -Fd -j / pg_restore -j, pgcopydb.

Every row restores into a fresh target database owned by the non-superuser ``aurora_admin`` (what
Aurora's master user is), connected as that user, with the flags Aurora needs (``--no-owner
--no-privileges --no-tablespaces --no-security-labels``): roles, tablespaces and security labels of
the source do not exist there and the master user is no superuser.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil

from bench.common import RssSampler, log, run_logged, tail

AURORA_RESTORE_FLAGS = ["--no-owner", "--no-privileges", "--no-tablespaces", "--no-security-labels"]

#: Client programs whose memory counts as the row's "worker" memory.
PG_TOOLS = ("pg_dump", "pg_restore", "pgcopydb", "psql")


def _tool_group(proc: psutil.Process) -> str | None:
    try:
        name = proc.name()
    except psutil.Error:
        return None
    return name if name in PG_TOOLS else None


def _env(server, dbname: str, user: str | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env.update(server.libpq_env(dbname, user=user))
    return env


def _restore_errors(log_path: Path) -> int:
    text = log_path.read_text(errors="replace") if log_path.exists() else ""
    return text.count("pg_restore: error:")


def seed_single_stream(src_server, src_db: str, tgt_server, tgt_db: str, work: Path) -> dict[str, Any]:
    """The seed's baseline: ``pg_dump -Fc`` (default compression) piped into one ``pg_restore``."""
    log_path = work / "seed_single_stream.log"
    dump_cmd = [src_server.bin("pg_dump"), "-Fc", "-d", src_db]
    restore_cmd = [tgt_server.bin("pg_restore"), *AURORA_RESTORE_FLAGS, "-d", tgt_db]
    started = time.monotonic()
    with RssSampler(_tool_group) as rss, open(log_path, "ab") as out:
        out.write(("$ " + " ".join(dump_cmd) + " | " + " ".join(restore_cmd) + "\n").encode())
        out.flush()
        dump = subprocess.Popen(
            dump_cmd, env=_env(src_server, src_db), stdout=subprocess.PIPE, stderr=out, stdin=subprocess.DEVNULL
        )
        restore = subprocess.Popen(
            restore_cmd, env=_env(tgt_server, tgt_db, tgt_server.admin_user), stdin=dump.stdout, stdout=out, stderr=out
        )
        rss.add_root(dump.pid)
        rss.add_root(restore.pid)
        assert dump.stdout is not None
        dump.stdout.close()  # pg_restore owns the pipe's read end now
        restore_rc, dump_rc = restore.wait(), dump.wait()
    wall = time.monotonic() - started
    if dump_rc != 0:
        raise RuntimeError(f"pg_dump failed ({dump_rc}): {tail(log_path)}")
    return {
        "wall_s": wall,
        "rss": rss.summary(),
        "detail": {
            "pg_restore_exit": restore_rc,
            "pg_restore_errors": _restore_errors(log_path),
            "log": str(log_path),
            "command": "pg_dump -Fc | pg_restore " + " ".join(AURORA_RESTORE_FLAGS),
        },
    }


def dump_restore_jobs(src_server, src_db: str, tgt_server, tgt_db: str, work: Path, jobs: int) -> dict[str, Any]:
    """``pg_dump -Fd -j N`` into a temporary directory, then ``pg_restore -j N`` from it."""
    log_path = work / "pg_dump_restore_jobs.log"
    dump_dir = Path(tempfile.mkdtemp(prefix="bench-dump-", dir=work))
    out_dir = dump_dir / "d"
    try:
        dump_cmd = [src_server.bin("pg_dump"), "-Fd", "-j", str(jobs), "-f", str(out_dir), "-d", src_db]
        restore_cmd = [tgt_server.bin("pg_restore"), "-j", str(jobs), *AURORA_RESTORE_FLAGS, "-d", tgt_db, str(out_dir)]
        started = time.monotonic()
        with RssSampler(_tool_group) as rss:
            rc = run_logged(dump_cmd, _env(src_server, src_db), log_path, rss)
            dumped = time.monotonic()
            if rc != 0:
                raise RuntimeError(f"pg_dump -Fd failed ({rc}): {tail(log_path)}")
            dump_bytes = sum(f.stat().st_size for f in out_dir.iterdir())
            restore_rc = run_logged(restore_cmd, _env(tgt_server, tgt_db, tgt_server.admin_user), log_path, rss)
        wall = time.monotonic() - started
    finally:
        shutil.rmtree(dump_dir, ignore_errors=True)
    return {
        "wall_s": wall,
        "rss": rss.summary(),
        "detail": {
            "dump_s": round(dumped - started, 1),
            "restore_s": round(wall - (dumped - started), 1),
            "dump_dir_bytes": dump_bytes,
            "pg_restore_exit": restore_rc,
            "pg_restore_errors": _restore_errors(log_path),
            "log": str(log_path),
            "command": f"pg_dump -Fd -j {jobs} (default compression) ; pg_restore -j {jobs} "
            + " ".join(AURORA_RESTORE_FLAGS),
        },
    }


def ensure_pgcopydb() -> tuple[str | None, str]:
    """The pgcopydb binary, installing the Debian package when missing (as root); else (None, why)."""
    found = shutil.which("pgcopydb")
    if found:
        return found, ""
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        return None, "pgcopydb is not installed and this user cannot apt-get install it"
    log("pgcopydb missing: apt-get install -y pgcopydb")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (
        ["apt-get", "install", "-y", "-qq", "pgcopydb"],
        ["apt-get", "update", "-qq"],
        ["apt-get", "install", "-y", "-qq", "pgcopydb"],
    ):
        result = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
        if cmd[1] == "install" and result.returncode == 0 and shutil.which("pgcopydb"):
            break
    found = shutil.which("pgcopydb")
    return (found, "") if found else (None, "apt-get install pgcopydb failed: " + result.stderr.strip()[-300:])


#: Inheritance children whose own column order differs from the parent-first order a dump re-creates:
#: pgcopydb 0.10 COPYs them without a column list, which fails (pg_dump names the columns).
MISORDERED_CHILDREN = """
SELECT n.nspname, c.relname FROM pg_catalog.pg_inherits i
  JOIN pg_catalog.pg_class c ON c.oid = i.inhrelid JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
 WHERE c.relkind = 'r' AND EXISTS (
       SELECT 1 FROM pg_catalog.pg_attribute pa
         JOIN pg_catalog.pg_attribute ca ON ca.attrelid = c.oid AND ca.attname = pa.attname
        WHERE pa.attrelid = i.inhparent AND pa.attnum > 0 AND NOT pa.attisdropped AND ca.attnum <> pa.attnum)
"""


def _copy_by_name(src_dsn: str, tgt_dsn: str, schema: str, table: str) -> int:
    """Copy one table's own rows with a column list on both sides (binary)."""
    import psycopg
    from psycopg import sql

    with psycopg.connect(src_dsn) as src, psycopg.connect(tgt_dsn) as tgt:
        cols = [
            r[0]
            for r in src.execute(
                "SELECT attname FROM pg_catalog.pg_attribute WHERE attrelid = %s::regclass AND attnum > 0 "
                "AND NOT attisdropped ORDER BY attnum",
                (sql.Identifier(schema, table).as_string(src),),
            )
        ]
        col_list = sql.SQL(", ").join(sql.Identifier(c) for c in cols)
        name = sql.Identifier(schema, table)
        n = 0
        copy_out = sql.SQL("COPY (SELECT {} FROM ONLY {}) TO STDOUT (FORMAT binary)").format(col_list, name)
        copy_in = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT binary)").format(name, col_list)
        with src.cursor().copy(copy_out) as out, tgt.cursor().copy(copy_in) as into:
            for chunk in out:
                n += len(chunk)
                into.write(chunk)
        tgt.commit()
        return n


def pgcopydb_clone(src_server, src_db: str, tgt_server, tgt_db: str, work: Path, jobs: int) -> dict[str, Any]:
    """``pgcopydb clone --table-jobs N --index-jobs N`` (source as superuser, target as aurora_admin).

    Two work-arounds for pgcopydb 0.10 on the demo warehouse, both inside the timed row: the source
    session's ``search_path`` is ``pg_catalog`` (the source database's own search_path setting would
    make the index definitions it reads unqualified: ``'pending'::order_status`` then fails on the
    target), and the data of inheritance children with a different column order is excluded from
    the clone (``[exclude-table-data]``) and copied right after it with a column list.
    """
    import psycopg

    binary, why = ensure_pgcopydb()
    if binary is None:
        return {"skipped": why}
    log_path = work / "pgcopydb.log"
    run_dir = Path(tempfile.mkdtemp(prefix="bench-pgcopydb-", dir=work))
    version = subprocess.run([binary, "--version"], capture_output=True, text=True)
    version_line = next((ln for ln in (version.stdout + version.stderr).splitlines() if "pgcopydb version" in ln), "")
    with psycopg.connect(src_server.dsn(src_db)) as conn:
        misordered = conn.execute(MISORDERED_CHILDREN).fetchall()
    filters = run_dir / "filters.ini"
    quoted = ['"{}"."{}"'.format(s.replace('"', '""'), t.replace('"', '""')) for s, t in misordered]
    filters.write_text("[exclude-table-data]\n" + "".join(q + "\n" for q in quoted))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PG", "PGCOPYDB"))}
    # URIs go through the environment (PGCOPYDB_SOURCE_PGURI / _TARGET_PGURI), not argv.
    env["PGCOPYDB_SOURCE_PGURI"] = src_server.uri(src_db) + "?options=-c%20search_path%3Dpg_catalog"
    env["PGCOPYDB_TARGET_PGURI"] = tgt_server.uri(tgt_db, user=tgt_server.admin_user)
    env["PATH"] = f"{Path(src_server.bin('pg_dump')).parent}:{env.get('PATH', '')}"
    cmd = [
        binary,
        "clone",
        "--table-jobs",
        str(jobs),
        "--index-jobs",
        str(jobs),
        "--no-owner",
        "--no-acl",
        "--dir",
        str(run_dir / "work"),
    ]
    if misordered:
        cmd += ["--filters", str(filters)]
    fixup_s = 0.0
    try:
        started = time.monotonic()
        with RssSampler(_tool_group) as rss:
            # pgcopydb signals its whole process group when it fails: give it its own.
            rc = run_logged(cmd, env, log_path, rss, start_new_session=True)
            if rc == 0:
                t = time.monotonic()
                for schema, table in misordered:
                    _copy_by_name(
                        src_server.dsn(src_db), tgt_server.dsn(tgt_db, user=tgt_server.admin_user), schema, table
                    )
                fixup_s = time.monotonic() - t
        wall = time.monotonic() - started
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)
    if rc != 0:
        raise RuntimeError(f"pgcopydb clone failed ({rc}): {tail(log_path, 25)}")
    return {
        "wall_s": wall,
        "rss": rss.summary(),
        "detail": {
            "version": version_line.strip(),
            "log": str(log_path),
            "command": f"pgcopydb clone --table-jobs {jobs} --index-jobs {jobs} --no-owner --no-acl",
            "workarounds": {
                "source_search_path": "pg_catalog",
                "data_copied_after_clone_by_column_name": [f"{s}.{t}" for s, t in misordered],
                "fixup_s": round(fixup_s, 2),
            },
        },
    }
