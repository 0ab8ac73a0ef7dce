"""Shared helpers of the benchmark: servers, databases, process memory sampling, verification.

Nothing here imports Airflow. Verification is independent of the library's own validation: it is
the benchmark's proof that a row produced a target equal to the source.
"""

from __future__ import annotations

import concurrent.futures as cf
import json
import os
import platform
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import psycopg
from psycopg import sql

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from scripts import localpg  # noqa: E402

#: Databases the benchmark creates: every name starts with this prefix (and nothing else does).
PREFIX = "bench_"

#: Where the code under test (bin/airflow, dags/, include/) is taken from: the work tree, or, with
#: BENCH_CODE=head, an export of the committed HEAD (so that others' uncommitted edits in a shared
#: work tree cannot change or break a measurement). Set by run.py before anything runs.
CODE = {"root": REPO}


def code_root() -> Path:
    return CODE["root"]


def export_head(work: Path, rev: str = "HEAD") -> tuple[Path, str]:
    """``git archive <rev>`` into ``work/code-<sha>`` (re-used), with the repo's .venv linked in."""
    sha = subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", "--verify", f"{rev}^{{commit}}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    dest = work / f"code-{sha[:12]}"
    if not (dest / ".exported").exists():
        dest.mkdir(parents=True, exist_ok=True)
        archive = subprocess.run(
            ["git", "-C", str(REPO), "archive", "--format=tar", sha], capture_output=True, check=True
        ).stdout
        subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)
        (dest / ".exported").write_text(sha + "\n")
    venv = dest / ".venv"
    if not venv.exists():
        venv.symlink_to(REPO / ".venv")
    return dest, sha


def code_version() -> dict[str, Any]:
    root = code_root()
    if root != REPO:
        return {"code": "exported HEAD", "commit": (root / ".exported").read_text().strip(), "dirty": False}
    sha = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run(
        ["git", "-C", str(REPO), "status", "--porcelain", "--", "include", "dags", "bin"],
        capture_output=True,
        text=True,
    ).stdout.strip()
    return {"code": "work tree", "commit": sha, "dirty": bool(dirty)}


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", flush=True)


# -- machine -----------------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    cpu_model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = psutil.virtual_memory()
    disk = psutil.disk_usage(str(REPO))
    return {
        "cores": os.cpu_count(),
        "physical_cores": psutil.cpu_count(logical=False),
        "cpu_model": cpu_model,
        "ram_gb": round(mem.total / 2**30, 1),
        "disk_free_gb": round(disk.free / 2**30, 1),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
    }


# -- servers and databases -----------------------------------------------------------------------


#: ``BENCH_PG=private``: a pair of the benchmark's own (same version, same settings, made by
#: localpg's code) on these ports, for when 25432/25433 are held by servers of another checkout.
PRIVATE_SPECS = {"source": ("bench-source", 25442), "target": ("bench-target", 25443)}


def servers() -> dict[str, localpg.Server]:
    """The project's local source (25432) and target (25433) servers, started if needed."""
    if os.environ.get("BENCH_PG", "") != "private":
        try:
            return localpg.ensure_up(pg18=False)
        except localpg.LocalPgError as exc:
            raise SystemExit(
                f"bench: the local servers cannot be used: {exc}\n(BENCH_PG=private runs the benchmark on a "
                f"private pair of the same kind on ports {PRIVATE_SPECS['source'][1]}/{PRIVATE_SPECS['target'][1]})"
            ) from None
    out = {}
    with localpg._lock():
        for role, (name, port) in PRIVATE_SPECS.items():
            localpg.SPECS.setdefault(name, localpg.Spec(name, port, 15))
            out[role] = localpg._up_one(name, False)
    return out


def drop_db(server: localpg.Server, name: str) -> None:
    assert name.startswith(PREFIX), name
    localpg.drop_database(server, name)


def create_target_db(server: localpg.Server, name: str) -> None:
    """A fresh target database owned by the non-superuser ``aurora_admin`` (Aurora's master user)."""
    assert name.startswith(PREFIX), name
    localpg.create_database(server, name, owner=server.admin_user)


def db_exists(server: localpg.Server, name: str) -> bool:
    with server.connect(autocommit=True) as conn:
        return conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone() is not None


def db_size(server: localpg.Server, name: str) -> int:
    with server.connect(autocommit=True) as conn:
        return conn.execute("SELECT pg_database_size(%s)", (name,)).fetchone()[0]


def db_comment(server: localpg.Server, name: str) -> str | None:
    with server.connect(autocommit=True) as conn:
        row = conn.execute(
            "SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = %s", (name,)
        ).fetchone()
    return row[0] if row else None


def set_db_comment(server: localpg.Server, name: str, text: str) -> None:
    with server.connect(autocommit=True) as conn:
        conn.execute(sql.SQL("COMMENT ON DATABASE {} IS {}").format(sql.Identifier(name), sql.Literal(text)))


def checkpoint(*servers_: localpg.Server) -> None:
    """CHECKPOINT both servers so one row's dirty buffers are not flushed on the next row's clock."""
    for server in servers_:
        with server.connect(autocommit=True) as conn:
            conn.execute("CHECKPOINT")


def bench_databases(server: localpg.Server) -> list[str]:
    with server.connect(autocommit=True) as conn:
        return [r[0] for r in conn.execute("SELECT datname FROM pg_database WHERE datname LIKE 'bench\\_%' ORDER BY 1")]


# -- memory of the processes doing the work ----------------------------------------------------------


@dataclass
class RssSampler:
    """Samples, every ``interval`` s, the RSS of processes selected by ``select(proc) -> group``.

    ``roots``: pids whose descendants are scanned (plus the roots themselves); with ``scan_all`` every
    process of the machine is scanned instead (for detached children). The peak of each single process
    and the peak of each group's sum are kept.
    """

    select: Callable[[psutil.Process], str | None]
    roots: list[int] = field(default_factory=list)
    scan_all: bool = False
    interval: float = 0.25
    peak_single: dict[str, float] = field(default_factory=dict)
    peak_sum: dict[str, float] = field(default_factory=dict)
    peak_proc: dict[str, str] = field(default_factory=dict)
    samples: int = 0

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def add_root(self, pid: int) -> None:
        self.roots.append(pid)

    def _procs(self) -> Iterable[psutil.Process]:
        if self.scan_all:
            yield from psutil.process_iter()
            return
        seen: set[int] = set()
        for pid in list(self.roots):
            try:
                root = psutil.Process(pid)
                for p in [root, *root.children(recursive=True)]:
                    if p.pid not in seen:
                        seen.add(p.pid)
                        yield p
            except psutil.Error:
                continue

    def _run(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.interval)

    def sample(self) -> None:
        sums: dict[str, float] = {}
        for p in self._procs():
            try:
                group = self.select(p)
                if group is None:
                    continue
                rss = p.memory_info().rss / 2**20
                name = " ".join(p.cmdline()[:4])[:120]
            except psutil.Error:
                continue
            sums[group] = sums.get(group, 0.0) + rss
            if rss > self.peak_single.get(group, 0.0):
                self.peak_single[group] = rss
                self.peak_proc[group] = name
        for group, total in sums.items():
            self.peak_sum[group] = max(self.peak_sum.get(group, 0.0), total)
        self.samples += 1

    def summary(self) -> dict[str, Any]:
        return {
            group: {
                "peak_rss_mb": round(self.peak_single[group], 1),
                "peak_sum_rss_mb": round(self.peak_sum.get(group, 0.0), 1),
                "peak_process": self.peak_proc.get(group),
            }
            for group in sorted(self.peak_single)
        }


def run_logged(
    cmd: list[str], env: dict[str, str], log_path: Path, sampler: RssSampler | None = None, **kw: Any
) -> int:
    """Run ``cmd`` with output to ``log_path``; its pid is added to ``sampler``'s roots."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as out:
        out.write(("\n$ " + " ".join(cmd) + "\n").encode())
        out.flush()
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, **kw)
        if sampler is not None:
            sampler.add_root(proc.pid)
        return proc.wait()


def tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


# -- verification: target == source, by query ----------------------------------------------------------

#: Everything that renders a value as text is pinned, so both sides produce the same row text.
TEXT_SETTINGS = (
    "SET TimeZone = 'UTC'; SET DateStyle = 'ISO, YMD'; SET IntervalStyle = 'postgres'; "
    "SET extra_float_digits = 3; SET bytea_output = 'hex'; SET statement_timeout = 0"
)

RELATIONS = """
SELECT n.nspname, c.relname, c.relkind::text FROM pg_catalog.pg_class c
  JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
 WHERE c.relkind IN ('r', 'm') AND n.nspname NOT IN ('pg_catalog', 'information_schema', '_pg_migration', 'pgcopydb')
   AND n.nspname !~ '^pg_(toast|temp)'
 ORDER BY pg_catalog.pg_relation_size(c.oid) DESC, 1, 2
"""

OBJECTS = """
SELECT 'indexes', count(*) FROM pg_catalog.pg_index x JOIN pg_catalog.pg_class c ON c.oid = x.indexrelid
  JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', '_pg_migration', 'pgcopydb') AND n.nspname !~ '^pg_toast'
UNION ALL
SELECT 'constraints', count(*) FROM pg_catalog.pg_constraint k JOIN pg_catalog.pg_namespace n ON n.oid = k.connamespace
 WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', '_pg_migration', 'pgcopydb')
UNION ALL
SELECT 'large objects', count(*) FROM pg_catalog.pg_largeobject_metadata
"""

LO_HASH = """
SELECT coalesce(sum(pg_catalog.hashtextextended(pg_catalog.md5(pg_catalog.lo_get(oid)), 7)::numeric), 0)::text
  FROM pg_catalog.pg_largeobject_metadata
"""


def _table_fingerprint(dsn: str, schema: str, table: str) -> tuple[int, str]:
    with psycopg.connect(dsn, autocommit=True, application_name="bench verify") as conn:
        conn.execute(TEXT_SETTINGS)
        cols = [
            r[0]
            for r in conn.execute(
                "SELECT attname FROM pg_catalog.pg_attribute WHERE attrelid = %s::regclass AND attnum > 0 "
                'AND NOT attisdropped ORDER BY attname COLLATE "C"',
                (sql.Identifier(schema, table).as_string(conn),),
            )
        ]
        row = sql.SQL("ROW({})").format(sql.SQL(", ").join(sql.Identifier(c) for c in cols))
        query = sql.SQL(
            "SELECT count(*), coalesce(sum(pg_catalog.hashtextextended({}::text, 7)::numeric), 0)::text FROM ONLY {}"
        ).format(row, sql.Identifier(schema, table))
        count, digest = conn.execute(query).fetchone()
        return int(count), digest


def fingerprint(dsn: str, jobs: int = 2) -> dict[str, Any]:
    """Per table/materialized view: (own row count, sum of 64-bit row hashes with columns by name);
    plus counts of indexes, constraints and large objects, and a hash of the large objects' bytes."""
    started = time.monotonic()
    with psycopg.connect(dsn, autocommit=True, application_name="bench verify") as conn:
        rels = conn.execute(RELATIONS).fetchall()
        objects = {k: int(v) for k, v in conn.execute(OBJECTS).fetchall()}
        objects["large object bytes hash"] = conn.execute(LO_HASH).fetchone()[0]
    tables: dict[str, Any] = {}
    with cf.ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        futures = {pool.submit(_table_fingerprint, dsn, s, t): f"{s}.{t}" for s, t, _ in rels}
        for fut in cf.as_completed(futures):
            tables[futures[fut]] = list(fut.result())
    return {"tables": dict(sorted(tables.items())), "objects": objects, "seconds": round(time.monotonic() - started, 1)}


def compare(src: dict[str, Any], tgt: dict[str, Any]) -> list[str]:
    diffs = []
    for name in sorted(set(src["tables"]) | set(tgt["tables"])):
        a, b = src["tables"].get(name), tgt["tables"].get(name)
        if a is None:
            diffs.append(f"{name}: only on the target")
        elif b is None:
            diffs.append(f"{name}: missing on the target")
        elif a != b:
            diffs.append(f"{name}: source {a[0]} rows / {a[1]}, target {b[0]} rows / {b[1]}")
    for key in sorted(set(src["objects"]) | set(tgt["objects"])):
        if src["objects"].get(key) != tgt["objects"].get(key):
            diffs.append(f"{key}: source {src['objects'].get(key)}, target {tgt['objects'].get(key)}")
    return diffs


def write_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str) + "\n")
    tmp.replace(path)


# -- where the time goes: CPU seconds by kind of process, and what the sessions are doing -------------


def postmaster_pid(server: localpg.Server) -> int | None:
    try:
        return int((server.data_dir / "postmaster.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


@dataclass
class CpuAccount:
    """CPU seconds used during a row, by kind of process (sampled every ``interval`` s, all processes).

    Kinds: ``source backends`` / ``target backends`` (sessions of the two servers, by their
    postmaster), ``source/target background`` (checkpointer, WAL writer, autovacuum...),
    ``pg_migration worker``, ``airflow`` (scheduler, dag-processor, api-server, task runners),
    ``pg tools`` (pg_dump, pg_restore, pgcopydb), ``other``. A process that lives shorter than one
    interval is missed: the totals are a lower bound; ``machine_cpu_s`` is the whole machine's.
    """

    postmasters: dict[int, str]
    interval: float = 0.5
    first: dict[int, float] = field(default_factory=dict)
    last: dict[int, float] = field(default_factory=dict)
    kind: dict[int, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="cpu-account", daemon=True)

    def __enter__(self) -> CpuAccount:
        self._t0 = psutil.cpu_times()
        self._w0 = time.monotonic()
        self._sample(initial=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()
        t1 = psutil.cpu_times()
        self.machine_cpu_s = sum(
            getattr(t1, f) - getattr(self._t0, f) for f in ("user", "system", "nice", "irq", "softirq")
        )
        self.wall_s = time.monotonic() - self._w0

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._sample()

    def _classify(self, p: psutil.Process, info: dict[str, Any]) -> str:
        name = info.get("name") or ""
        cmd = " ".join(info.get("cmdline") or [])
        if name == "postgres" or cmd.startswith("postgres:"):
            side = self.postmasters.get(info.get("ppid") or 0) or self.postmasters.get(p.pid)
            if side is None:
                return "other"
            text = cmd.split(":", 1)[1].split() if ":" in cmd else []
            if "parallel worker" in cmd:
                return f"{side} backends"  # a session's parallel helper (parallel CREATE INDEX, scans)
            if p.pid in self.postmasters or len(text) < 3:
                return f"{side} background"
            # "postgres: <user> <database> <client> <state>" for sessions; anything else is a helper process
            if len(text) >= 3 and ("(" in text[2] or text[2] == "[local]"):
                return f"{side} backends" if text[1].startswith(PREFIX) else "other (sessions of other databases)"
            return f"{side} background"
        if "include.pg_migration.worker" in cmd:
            return "pg_migration worker" if self._mine(p) else "other"
        if name in ("pg_dump", "pg_restore", "pgcopydb", "psql"):
            # a worker's psql runs with a minimal environment (libpq's variables only): known by its parent
            return "pg tools" if self._mine(p) or self._worker_child(info) else "other"
        if any(f in cmd for f in ("bench/run.py", "validate_step.py", "copy_variants.py", "datapath.py")):
            return "bench"
        if "airflow" in cmd:
            # setproctitle (the executor's workers, task supervisors) hides a process's environment:
            # those are known by an ancestor of this run's stack
            return f"airflow: {self._airflow_role(cmd)}" if self._mine(p) or self._mine_ancestor(p) else "other"
        return "other"

    def _mine_ancestor(self, p: psutil.Process) -> bool:
        try:
            return any(self._mine(a) for a in p.parents()[:6])
        except psutil.Error:
            return False

    @staticmethod
    def _airflow_role(cmd: str) -> str:
        """Which part of the benchmark's Airflow stack (process titles as Airflow 3 sets them)."""
        for marker, role in (
            ("api-server", "api-server"),
            ("api_server", "api-server"),
            ("uvicorn", "api-server"),
            ("dag-processor", "dag-processor"),
            ("dag_processor", "dag-processor"),
            ("LocalExecutor", "executor/task processes"),
            ("airflow worker", "executor/task processes"),  # a task's supervisor: "airflow worker -- <ti id>"
            ("task", "executor/task processes"),
            ("scheduler", "scheduler"),
            ("serve-logs", "serve-logs"),
            ("dags trigger", "CLI (dags trigger)"),
        ):
            if marker in cmd:
                return role
        return cmd[:40]

    @staticmethod
    def _worker_child(info: dict[str, Any]) -> bool:
        try:
            parent = psutil.Process(info.get("ppid") or 0)
            return "include.pg_migration.worker" in " ".join(parent.cmdline())
        except psutil.Error:
            return False

    def _mine(self, p: psutil.Process) -> bool:
        """Started by this benchmark: its environment carries BENCH_RUN (inherited by every child)."""
        try:
            return p.environ().get("BENCH_RUN") == os.environ.get("BENCH_RUN")
        except psutil.Error:
            return False

    def _sample(self, initial: bool = False) -> None:
        for p in psutil.process_iter(["name", "cmdline", "ppid", "cpu_times"]):
            try:
                t = p.info["cpu_times"]
                if t is None:
                    continue
                used = t.user + t.system
                if p.pid not in self.kind:
                    self.kind[p.pid] = self._classify(p, p.info)
                    # a process already running at the start counts from there; a new one from zero
                    self.first[p.pid] = used if initial else 0.0
                self.last[p.pid] = used
            except psutil.Error:
                continue

    def summary(self) -> dict[str, Any]:
        by_kind: dict[str, float] = {}
        for pid, kind in self.kind.items():
            by_kind[kind] = by_kind.get(kind, 0.0) + max(0.0, self.last.get(pid, 0.0) - self.first.get(pid, 0.0))
        capacity = self.wall_s * (os.cpu_count() or 1)
        other = sum(v for k, v in by_kind.items() if k.startswith("other"))
        return {
            "cpu_s_by_kind": {k: round(v, 1) for k, v in sorted(by_kind.items(), key=lambda kv: -kv[1]) if v >= 0.05},
            "machine_cpu_s": round(self.machine_cpu_s, 1),
            "machine_cpu_capacity_s": round(capacity, 1),
            "other_cpu_share": round(other / capacity, 3) if capacity else None,
        }


def wait_for_quiet(max_wait_s: float, busy_limit: float = 0.25, window_s: float = 3.0) -> dict[str, Any]:
    """Wait (at most ``max_wait_s``) until the machine is quiet: less than ``busy_limit`` of its CPU used
    over ``window_s`` (this machine is shared: colleagues' test runs would be measured with the row)."""
    started = time.monotonic()
    busy = 1.0
    while True:
        busy = psutil.cpu_percent(interval=window_s) / 100
        waited = time.monotonic() - started
        if busy < busy_limit or waited >= max_wait_s:
            return {"waited_s": round(waited, 1), "busy_at_start": round(busy, 2), "quiet": busy < busy_limit}


ACTIVITY = """
SELECT datname, state, coalesce(wait_event_type || ':' || wait_event, 'CPU') AS wait,
       left(query, 60)
       || CASE WHEN query ~* '^[[:space:]]*COPY' AND query ~* 'FROM[[:space:]]+STDIN' THEN ' FROM STDIN' ELSE '' END
  FROM pg_catalog.pg_stat_activity
 WHERE datname = ANY(%s) AND pid <> pg_catalog.pg_backend_pid() AND backend_type = 'client backend'
"""


def _statement_kind(query: str) -> str:
    q = " ".join(query.split()).upper()
    for prefix, kind in (
        ("COPY", None),
        ("CREATE UNIQUE INDEX", "CREATE INDEX"),
        ("CREATE INDEX", "CREATE INDEX"),
        ("ALTER TABLE", "ALTER TABLE (keys, FKs)"),
        ("ANALYZE", "ANALYZE"),
        ("VACUUM", "VACUUM"),
        ("REFRESH MATERIALIZED", "REFRESH MATVIEW"),
        ("SELECT COUNT(*)", "count(*)"),
    ):
        if q.startswith(prefix):
            if kind is None:
                return "COPY FROM STDIN" if "FROM STDIN" in q else "COPY TO STDOUT"
            return kind
    return "other"


@dataclass
class ActivitySampler:
    """Samples pg_stat_activity of both servers every ``interval`` s: active session-seconds by statement
    kind and by wait event (``CPU`` = no wait event: running)."""

    servers: dict[str, localpg.Server]
    databases: dict[str, str]
    interval: float = 1.0
    by_kind: dict[str, float] = field(default_factory=dict)
    by_wait: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="activity", daemon=True)

    def __enter__(self) -> ActivitySampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        conns = {}
        try:
            for side, server in self.servers.items():
                conns[side] = server.connect(autocommit=True, application_name="bench activity")
            while not self._stop.wait(self.interval):
                for side, conn in conns.items():
                    for _db, state, wait, query in conn.execute(ACTIVITY, ([self.databases[side]],)).fetchall():
                        if state != "active":
                            continue
                        kind = f"{side}: {_statement_kind(query or '')}"
                        self.by_kind[kind] = self.by_kind.get(kind, 0.0) + self.interval
                        key = f"{side}: {wait}"
                        self.by_wait[key] = self.by_wait.get(key, 0.0) + self.interval
        except psycopg.Error:
            pass
        finally:
            for conn in conns.values():
                conn.close()

    def summary(self) -> dict[str, Any]:
        def top(d: dict[str, float]) -> dict[str, float]:
            return {k: round(v, 1) for k, v in sorted(d.items(), key=lambda kv: -kv[1])[:15]}

        return {"active_session_s_by_statement": top(self.by_kind), "active_session_s_by_wait": top(self.by_wait)}
