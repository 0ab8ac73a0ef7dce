"""The one fixture module that owns the real PostgreSQL servers (and a repo-local Airflow).

Servers come from ``scripts/localpg.py`` (source and target: PostgreSQL 15; ``pg18`` and ``pg16`` on
request).
When they cannot be started the tests FAIL with the reason -- they never skip.

Every test that migrates gets fresh, uniquely named databases: a source database (owner
``postgres``) and a target database owned by the non-superuser ``aurora_admin`` (what Aurora's
master user is), dropped afterwards.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import select
import signal
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

REPO = Path(__file__).resolve().parents[1]
# The product owner's material beside the repo (../shared); $PG_MIGRATION_SHARED_DIR overrides.
SHARED = Path(os.environ.get("PG_MIGRATION_SHARED_DIR") or REPO.parent / "shared")
SIMPLE_AUTH_MANAGER = "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager"
sys.path.insert(0, str(REPO))

from include.pg_migration.conn import Endpoint  # noqa: E402
from scripts import localpg  # noqa: E402


@pytest.fixture(scope="session")
def pg_servers() -> dict[str, localpg.Server]:
    try:
        return localpg.ensure_up(pg18=False)
    except Exception as exc:  # noqa: BLE001
        pytest.fail(f"the local PostgreSQL servers cannot be started: {exc}", pytrace=False)


@pytest.fixture(scope="session")
def pg18_server() -> localpg.Server:
    try:
        return localpg.ensure_up(pg18=True)["pg18"]
    except Exception as exc:  # noqa: BLE001
        pytest.fail(f"the local PostgreSQL 18 server cannot be started: {exc}", pytrace=False)


@pytest.fixture(scope="session")
def pg16_server() -> localpg.Server:
    """The PostgreSQL 16 source (pgserver wheel's binaries), started on first use."""
    try:
        return localpg.ensure_server("pg16")
    except Exception as exc:  # noqa: BLE001
        pytest.fail(f"the local PostgreSQL 16 server cannot be started: {exc}", pytrace=False)


def create_db(server: localpg.Server, name: str, owner: str | None = None) -> None:
    localpg.drop_database(server, name)
    with server.connect(autocommit=True) as conn:
        stmt = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
        if owner:
            stmt += sql.SQL(" OWNER {}").format(sql.Identifier(owner))
        conn.execute(stmt)


def endpoint(server: localpg.Server, dbname: str, user: str, label: str) -> Endpoint:
    return Endpoint(
        host=server.host, port=server.port, dbname=dbname, user=user, password=server.password_for(user), label=label
    )


#: The least-privileged source role of a snapshot run: LOGIN, member of pg_read_all_data, nothing else
#: (no superuser, no BYPASSRLS, no REPLICATION). Cluster-wide roles, so created idempotently under fixed
#: names; passwords are derived from the server's superuser password (the same in every test session).
READER = "pgmig_reader"
#: The least-privileged source role of a replicate run: also REPLICATION (the slot), pg_read_all_stats
#: (the cut-over sees other roles' write transactions) and a member of the tables' owner role
#: (:data:`APP_OWNER`: publishing a table and REPLICA IDENTITY FULL need its owner).
REPLICATOR = "pgmig_replicator"
APP_OWNER = "pgmig_app_owner"
ROLES = {
    READER: ("LOGIN NOREPLICATION", ["pg_read_all_data"]),
    APP_OWNER: ("NOLOGIN NOREPLICATION", []),
    REPLICATOR: ("LOGIN REPLICATION", ["pg_read_all_data", "pg_read_all_stats", APP_OWNER]),
}
_roles: set[tuple[str, int, str]] = set()


def role_password(server: localpg.Server, role: str) -> str:
    return hashlib.sha256(f"{server.superuser_password}:{role}".encode()).hexdigest()[:32]


def ensure_role(server: localpg.Server, role: str) -> str:
    """Create or repair one of :data:`ROLES` on ``server`` (as its superuser); return its name."""
    if (server.host, server.port, role) in _roles:
        return role
    attrs, groups = ROLES[role]
    stmt = " " + attrs + " NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE PASSWORD {}"
    with server.connect(autocommit=True) as conn:
        for attempt in range(3):
            exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone()
            verb = "ALTER ROLE {} WITH" if exists else "CREATE ROLE {}"
            try:
                password = sql.Literal(role_password(server, role))
                conn.execute(sql.SQL(verb + stmt).format(sql.Identifier(role), password))
                break
            except (psycopg.errors.DuplicateObject, psycopg.errors.UniqueViolation):
                if attempt == 2:  # another session created it at the same moment: alter it then
                    raise
        for group in groups:
            if group in ROLES:
                ensure_role(server, group)
            conn.execute(sql.SQL("GRANT {} TO {}").format(sql.Identifier(group), sql.Identifier(role)))
    _roles.add((server.host, server.port, role))
    return role


#: pg_read_all_data does not cover large objects: SELECT on each, for ``role``.
GRANT_LARGE_OBJECTS = """
DO $$DECLARE o oid; BEGIN FOR o IN SELECT m.oid FROM pg_largeobject_metadata m
 WHERE NOT EXISTS (SELECT FROM aclexplode(m.lomacl) a WHERE a.grantee = {role}::regrole AND a.privilege_type = 'SELECT')
LOOP EXECUTE format('GRANT SELECT ON LARGE OBJECT %s TO %I', o, {role}); END LOOP; END$$
"""

#: Every schema, table, view, materialized view and free-standing sequence of the user schemas to ``role``.
HAND_OVER = """
DO $$DECLARE r record; BEGIN
FOR r IN SELECT n.nspname FROM pg_namespace n WHERE n.nspname !~ '^pg_' AND n.nspname <> 'information_schema' LOOP
  EXECUTE format('ALTER SCHEMA %I OWNER TO %I', r.nspname, {role});
END LOOP;
FOR r IN SELECT c.oid::regclass AS rel FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
          WHERE n.nspname !~ '^pg_' AND n.nspname <> 'information_schema' AND c.relkind IN ('r', 'p', 'v', 'm', 'S')
            AND (c.relkind <> 'S' OR NOT EXISTS (SELECT FROM pg_depend d WHERE d.objid = c.oid
                 AND d.classid = 'pg_class'::regclass AND d.deptype IN ('a', 'i')
                 AND d.refclassid = 'pg_class'::regclass)) LOOP
  EXECUTE format('ALTER TABLE %s OWNER TO %I', r.rel, {role});
END LOOP; END$$
"""


@dataclass
class Pair:
    """A fresh source database and a fresh target database (owned by the non-superuser)."""

    source_server: localpg.Server
    target_server: localpg.Server
    source_db: str
    target_db: str

    @property
    def source(self) -> Endpoint:
        return endpoint(self.source_server, self.source_db, self.source_server.superuser, "source")

    @property
    def source_reader(self) -> Endpoint:
        """The source as the least-privileged reader of a snapshot run (:data:`READER`, member of
        ``pg_read_all_data``): what the main migration and validation tests read as."""
        return self._source_as(READER)

    @property
    def source_replicator(self) -> Endpoint:
        """The source as the least-privileged role of a replicate run (:data:`REPLICATOR`, with CREATE on
        the database); the user schemas' objects are handed to its owner role :data:`APP_OWNER` first
        (call it after loading)."""
        ensure_role(self.source_server, REPLICATOR)
        with self.source_su() as conn:
            conn.execute(sql.SQL(HAND_OVER).format(role=sql.Literal(APP_OWNER)))
            db = sql.Identifier(self.source_db)  # CREATE PUBLICATION needs CREATE on the database
            conn.execute(sql.SQL("GRANT CREATE ON DATABASE {} TO {}").format(db, sql.Identifier(REPLICATOR)))
        return self._source_as(REPLICATOR)

    def _source_as(self, role: str) -> Endpoint:
        s = self.source_server
        ensure_role(s, role)
        with self.source_su() as conn:
            conn.execute(sql.SQL(GRANT_LARGE_OBJECTS).format(role=sql.Literal(role)))
        password = role_password(s, role)
        return Endpoint(host=s.host, port=s.port, dbname=self.source_db, user=role, password=password, label="source")

    @property
    def target(self) -> Endpoint:
        return endpoint(self.target_server, self.target_db, self.target_server.admin_user, "target")

    def source_su(self, **kw) -> psycopg.Connection:
        return self.source_server.connect(self.source_db, autocommit=True, **kw)

    def target_su(self, **kw) -> psycopg.Connection:
        """The target as superuser: for inspecting and for injecting differences in tests only."""
        return self.target_server.connect(self.target_db, autocommit=True, **kw)

    def airflow_env(self) -> dict[str, str]:
        return {
            "AIRFLOW_CONN_PG_SOURCE": self.source_server.uri(self.source_db),
            "AIRFLOW_CONN_PG_TARGET": self.target_server.uri(self.target_db, user=self.target_server.admin_user),
        }


def _unique(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:10]}"


@pytest.fixture
def pair(pg_servers, request) -> Pair:
    """Fresh empty source + target databases, dropped after the test."""
    p = Pair(pg_servers["source"], pg_servers["target"], _unique("src"), _unique("tgt"))
    create_db(p.source_server, p.source_db)
    create_db(p.target_server, p.target_db, owner=p.target_server.admin_user)
    yield p
    localpg.drop_database(p.source_server, p.source_db)
    localpg.drop_database(p.target_server, p.target_db)


@pytest.fixture
def fresh_source_db(pg_servers) -> str:
    """DSN of a new empty database on the source server, as superuser ``postgres``."""
    server = pg_servers["source"]
    name = _unique("demo")
    create_db(server, name)
    yield server.dsn(name)
    localpg.drop_database(server, name)


@pytest.fixture(scope="session")
def demo_source(pg_servers) -> str:
    """A source database holding the demo warehouse (small scale), shared read-only by tests."""
    from include.pg_migration.demo import load_warehouse

    server = pg_servers["source"]
    name = _unique("demo_shared")
    create_db(server, name)
    load_warehouse(server.dsn(name), scale=0.2)
    yield name
    localpg.drop_database(server, name)


@pytest.fixture
def demo_pair(pg_servers, demo_source) -> Pair:
    """The shared demo source + a fresh target database."""
    p = Pair(pg_servers["source"], pg_servers["target"], demo_source, _unique("tgt"))
    create_db(p.target_server, p.target_db, owner=p.target_server.admin_user)
    yield p
    localpg.drop_database(p.target_server, p.target_db)


# -- Airflow -----------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def airflow_home(tmp_path_factory) -> Path:
    """A throw-away AIRFLOW_HOME (SQLite), migrated once by bin/airflow on first use."""
    home = tmp_path_factory.mktemp("airflow_home")
    result = subprocess.run(
        [str(REPO / "bin" / "airflow"), "version"],
        env=_airflow_env(home, {}),
        capture_output=True,
        text=True,
        timeout=600,
    )
    if result.returncode != 0:
        pytest.fail(f"bin/airflow cannot set up Airflow: {result.stderr[-2000:]}", pytrace=False)
    return home


def _airflow_env(home: Path, extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW_CONN_")}
    env.update({"AIRFLOW_HOME": str(home), "PG_MIGRATION_REPORTS": str(home / "reports")})
    env.update(extra)
    return env


def stop_process_group(proc: subprocess.Popen | None) -> None:
    """Stop a process started with ``start_new_session`` and everything left in its group
    (forked executor workers, gunicorn...): SIGTERM, then SIGKILL after 30 s, then SIGKILL the rest."""
    if proc is None or proc.poll() is not None:
        return
    pgid = proc.pid  # start_new_session: this group is the one the test started
    os.killpg(pgid, signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(pgid, signal.SIGKILL)
        proc.wait(timeout=30)
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def standalone_env(home: Path, port: int, extra: dict[str, str]) -> dict[str, str]:
    """Environment of a local `bin/airflow standalone` on free ports (simple auth manager), plus ``extra``."""
    base = f"http://127.0.0.1:{port}"
    return _airflow_env(
        home,
        {
            "AIRFLOW__API__PORT": str(port),
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__BASE_URL": base,
            "AIRFLOW__API__WORKERS": "1",
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{base}/execution/",
            "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
            "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(free_port()),
            "AIRFLOW__CORE__AUTH_MANAGER": SIMPLE_AUTH_MANAGER,
            **extra,
        },
    )


@dataclass
class DagRunResult:
    state: str
    output: str
    report_dir: Path | None

    def report(self) -> dict:
        assert self.report_dir is not None, f"no report path in the output:\n{self.output[-3000:]}"
        return json.loads((self.report_dir / "report.json").read_text())


# What Airflow reads at import (configuration, paths) or bin/airflow's first-use set-up depends on: a
# command changing one of these runs cold, never in the warm server's fork.
_COLD_KEYS = ("AIRFLOW__", "AIRFLOW_HOME", "PYTHONPATH", "PATH", "PG_MIGRATION_POOL_SIZE")


class WarmAirflow:
    """One ``tests/warm_airflow.py`` server per AIRFLOW_HOME: `airflow` commands as forks of a process
    that imported Airflow once (about 15 s saved per ``dags test``); see that module."""

    _servers: dict[Path, WarmAirflow] = {}

    def __init__(self, home: Path) -> None:
        self.home = home
        self.base_env = _airflow_env(home, {})
        self.proc = subprocess.Popen(
            [str(REPO / "bin" / "airflow"), "--with-env", sys.executable, "-m", "tests.warm_airflow"],
            env=self.base_env,
            cwd=REPO,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=(home / "warm-airflow.log").open("w"),
            text=True,
            start_new_session=True,
        )
        hello = self.proc.stdout.readline()
        if not hello.startswith('{"ready"'):
            log = (home / "warm-airflow.log").read_text(errors="replace")[-3000:]
            raise RuntimeError(f"tests/warm_airflow.py did not start: {hello!r}\n{log}")
        self.env: dict[str, str] = json.loads(hello)["env"]  # bin/airflow's environment

    @classmethod
    def get(cls, home: Path) -> WarmAirflow:
        server = cls._servers.get(home)
        if server is None or server.proc.poll() is not None:
            server = cls._servers[home] = cls(home)
        return server

    def accepts(self, env: dict[str, str]) -> bool:
        changed = {k for k in env.keys() | self.base_env.keys() if env.get(k) != self.base_env.get(k)}
        return not any(k.startswith(_COLD_KEYS) for k in changed)

    def child_env(self, env: dict[str, str]) -> dict[str, str]:
        """The server's environment (bin/airflow's) with the request's differences from the base."""
        out = dict(self.env)
        for k in env.keys() | self.base_env.keys():
            if env.get(k) == self.base_env.get(k):
                continue
            if k in env:
                out[k] = env[k]
            else:
                out.pop(k, None)
        return out

    def run(self, argv: list[str], env: dict[str, str], timeout: float) -> tuple[int, str]:
        out = self.home / f"warm-{uuid.uuid4().hex[:8]}.log"
        req = {"argv": argv, "env": self.child_env(env), "out": str(out)}
        self.proc.stdin.write(json.dumps(req) + "\n")
        self.proc.stdin.flush()
        pid = json.loads(self.proc.stdout.readline())["pid"]
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        if not ready:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
            self.proc.stdout.readline()
            raise subprocess.TimeoutExpired(argv, timeout)
        rc = json.loads(self.proc.stdout.readline())["rc"]
        text = out.read_text(errors="replace")
        out.unlink(missing_ok=True)
        return rc, text

    @classmethod
    def stop_all(cls) -> None:
        for server in cls._servers.values():
            stop_process_group(server.proc)
        cls._servers.clear()


def run_dag(
    home: Path, dag_id: str, conf: dict | None = None, env: dict[str, str] | None = None, timeout: float = 900
) -> DagRunResult:
    """``bin/airflow dags test`` and the run's final state (the CLI exits 0 even when it failed).

    Run in the session's warm Airflow (tests/warm_airflow.py) unless ``env`` changes what Airflow
    reads at import; ``PG_MIGRATION_TEST_COLD_AIRFLOW=1`` runs every command cold."""
    args = ["dags", "test", dag_id]
    if conf:
        args += ["-c", json.dumps(conf)]
    full_env = _airflow_env(home, env or {})
    if os.environ.get("PG_MIGRATION_TEST_COLD_AIRFLOW") != "1" and WarmAirflow.get(home).accepts(full_env):
        returncode, out = WarmAirflow.get(home).run(args, full_env, timeout)
    else:
        proc = subprocess.run(
            [str(REPO / "bin" / "airflow"), *args], env=full_env, capture_output=True, text=True, timeout=timeout
        )
        returncode, out = proc.returncode, proc.stdout + proc.stderr
    m = re.findall(r"DagRun Finished: .*?state=(\w+)", out)
    state = m[-1] if m else f"unknown (exit {returncode})"
    rep = re.findall(r"report written to (\S+)/report\.json", out)
    return DagRunResult(state=state, output=out, report_dir=Path(rep[-1]) if rep else None)


@pytest.fixture(scope="session", autouse=True)
def _stop_warm_airflow():
    yield
    WarmAirflow.stop_all()


@pytest.fixture
def dag_runner(airflow_home):
    def _run(
        dag_id: str = "pg_migration", conf: dict | None = None, env: dict[str, str] | None = None, timeout: float = 900
    ) -> DagRunResult:
        return run_dag(airflow_home, dag_id, conf, env, timeout)

    return _run


# -- comparing both sides by query ----------------------------------------------------------------------

TABLES = """
SELECT n.nspname, c.relname FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
 WHERE c.relkind = 'r' AND n.nspname NOT IN ('pg_catalog', 'information_schema', '_pg_migration')
   AND n.nspname !~ '^pg_toast' ORDER BY 1, 2
"""


def table_fingerprints(conn: psycopg.Connection) -> dict[tuple[str, str], tuple[int, str]]:
    """Per table: (own row count, md5 of the sorted text of its own rows, columns taken by name)."""
    conn.execute("SET TimeZone = 'UTC'; SET extra_float_digits = 3; SET DateStyle = 'ISO, YMD'")
    out = {}
    for schema, table in conn.execute(TABLES).fetchall():
        cols = [
            r[0]
            for r in conn.execute(
                "SELECT attname FROM pg_attribute WHERE attrelid = %s::regclass AND attnum > 0 AND NOT attisdropped "
                'ORDER BY attname COLLATE "C"',
                (sql.Identifier(schema, table).as_string(conn),),
            ).fetchall()
        ]
        row = sql.SQL(", ").join(sql.Identifier(c) for c in cols)
        q = sql.SQL(
            "SELECT count(*), md5(coalesce(string_agg(r, E'\\n' ORDER BY r COLLATE \"C\"), '')) "
            "FROM (SELECT ROW({})::text AS r FROM ONLY {}) s"
        ).format(row, sql.Identifier(schema, table))
        out[(schema, table)] = tuple(conn.execute(q).fetchone())
    return out


def assert_equal_data(source: psycopg.Connection, target: psycopg.Connection) -> None:
    src, tgt = table_fingerprints(source), table_fingerprints(target)
    assert set(src) == set(tgt), f"tables differ: only source {set(src) - set(tgt)}, only target {set(tgt) - set(src)}"
    diffs = {k: (src[k], tgt[k]) for k in src if src[k] != tgt[k]}
    assert not diffs, f"tables differ: {diffs}"
