"""The pre-data phase (the ``pre_data`` task, worker phase ``pre-data``): all definitions, once, before any data.

Pre-data runs ``pg_dump --section=pre-data`` of the selected schemas from the run's snapshot in batches
that fit the lock budget of both servers, and applies each batch on the target in a transaction of its
own (:mod:`include.pg_migration.batching`: schemas, types and functions first, then the relations in
dependency order, so no batch needs an object of a later one, whatever schema it lives in). Selected
schemas are dropped and re-created first (``public`` is merged into, never dropped), in batches too, so
a retry, or a re-run, starts from a clean slate; the phase counts as done only once every batch is in.
A transaction that finds the lock table full (production took it) fails by name, whole.

A drop never takes what other schemas built on the
selected ones (a migration in waves: a view, a foreign key, a function, a column default elsewhere):
before dropping, ``pg_depend`` is asked what the drop would cascade to outside what is re-created, and
the run is refused naming every such object unless ``replace_dependents: true``. What pre-data
(re-)created is recorded in the run's state (``_pg_migration.created``), so a retry knows its own.

Privileges on an extension's own objects (GRANT/REVOKE that differ from ``pg_init_privs``) are dumped
with ``pg_dump --extension`` and applied once the extension exists; one the target role may not change
is reported by name, with the statement, never dropped silently.

It also dumps post-data (in the same batches) and stores every entry in ``_pg_migration.ddl`` with the
table it belongs to: the data unit that loads a table builds its indexes and keys
(:mod:`include.pg_migration.phases.data`); the post-data phase applies the rest after all data.
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import sql

from include.pg_migration import batching, catalog, locks, roles, selection, state
from include.pg_migration.conn import Endpoint
from include.pg_migration.drops import DEPENDENTS, drop_plan, public_drops
from include.pg_migration.errors import ConfigError, MigrationError, UnitFailed
from include.pg_migration.pgtools import (
    EXTENSION_OPTION_MAJOR,
    Entry,
    LocksExhausted,
    choose,
    dump_schema,
    settings_for_target,
    split_entries,
)
from include.pg_migration.sessions import open_source_snapshot

log = logging.getLogger(__name__)

FOR_ROLE = re.compile(r'ALTER DEFAULT PRIVILEGES FOR ROLE (?:"(?:[^"]|"")+"|\w+) ')

#: Entry types that a data unit builds for the table it loaded.
UNIT_KINDS = ("INDEX", "CONSTRAINT")

EXTENSIONS = """
SELECT e.extname, n.nspname AS schema
  FROM pg_catalog.pg_extension e JOIN pg_catalog.pg_namespace n ON n.oid = e.extnamespace
 WHERE e.extname <> 'plpgsql'
 ORDER BY e.oid
"""

TRIGGER_OWNERS = """
SELECT n.nspname AS schema, c.relname || ' ' || t.tgname AS name, n.nspname AS table_schema, c.relname AS table_name
  FROM pg_catalog.pg_trigger t
  JOIN pg_catalog.pg_class c ON c.oid = t.tgrelid
  JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
 WHERE NOT t.tgisinternal AND n.nspname = ANY(%(schemas)s)
"""

TARGET_SCHEMAS = "SELECT nspname FROM pg_catalog.pg_namespace WHERE nspname = ANY(%(schemas)s)"

#: Notices of a GRANT/REVOKE that changed nothing: the role may not (01007 not granted, 01006 not revoked).
PRIVILEGE_NOT_CHANGED = ("01006", "01007")


def _missing_role(exc: psycopg.Error) -> str | None:
    m = re.search(r'role "([^"]+)" does not exist', str(exc))
    return m.group(1) if m else None


def _settings_known(conn: psycopg.Connection) -> set[str]:
    return {r[0] for r in conn.execute("SELECT name FROM pg_catalog.pg_settings")}


def run_pre_data(source: Endpoint, target: Endpoint, run_id: str, app: str) -> dict[str, Any]:
    """Apply every selected schema's definitions to the target in batches within the lock budget; store
    post-data (:mod:`include.pg_migration.batching`)."""
    with target.connect(app, autocommit=True) as tgt:
        run = state.get_run(tgt, run_id)
        if run is None:
            raise MigrationError(f"run {run_id!r} is not registered on the target (the plan task registers it)")
        schemas: list[str] = run["plan"]["schemas"]
        snapshot = run["snapshot_id"] if run["consistent"] else None
        resume = bool(run["params"].get("resume"))
        share = locks.share_of(run["params"])
        existing = {r[0] for r in tgt.execute(TARGET_SCHEMAS, {"schemas": schemas})}
        apply_schemas = [s for s in schemas if not (resume and s in existing)] if resume else schemas
        job = Job(source, tgt, run_id, app, locks.read_budget(tgt, "target", share))
        job.exclude = [(e["schema"], e["table"]) for e in selection.left_out(run["plan"])["tables"]]

        src = open_source_snapshot(source, app, snapshot)
        with src:
            job.version = catalog.server_version(src)
            job.snapshot = snapshot or src.execute("SELECT pg_catalog.pg_export_snapshot()").fetchone()[0]
            job.source_budget = locks.read_budget(src, "source", share)
            owners = _owners(src, schemas)
            extensions = src.execute(EXTENSIONS).fetchall()
            matviews = src.execute(catalog.MATVIEWS, {"schemas": schemas}).fetchall()
            pre_plan, post_plan = job.plans(src, apply_schemas, schemas)
            if snapshot:
                src.commit()  # the plan is read: its catalog locks go, the run's snapshot stays the holder's
            ext_names = [e[0] for e in extensions]
            warnings: list[str] = []
            if ext_names and choose(job.version).major < EXTENSION_OPTION_MAJOR:
                warnings.append(
                    f"privileges on the objects of extensions {', '.join(ext_names)} are not carried: pg_dump "
                    f"{choose(job.version).major} has no --extension (install pg_dump {EXTENSION_OPTION_MAJOR}+)"
                )
            cleared: dict[str, Any] = {}
            # One pg_dump at a time, in the background: the next batch is dumped while one is applied.
            with ThreadPoolExecutor(max_workers=1, thread_name_prefix="pg_dump") as job.pool:
                dumps = job.queue(apply_schemas, ext_names, pre_plan, schemas, post_plan)
                try:
                    if pre_plan is not None:
                        log.info("pre-data: %s; %s", job.source_budget.describe(), job.target.describe())
                        log.info("pre-data: %s", pre_plan.describe())
                        if run["params"].get("create_roles"):
                            warnings += _create_roles(source, tgt, apply_schemas, app)
                        drops = Drops(run_id, apply_schemas, existing, bool(run["params"].get("replace_dependents")))
                        cleared = _apply_pre_data(job, drops, pre_plan, dumps, extensions)
                        warnings += cleared.pop("warnings")
                    else:
                        log.info("resume: every selected schema already exists on the target; pre-data kept as is")
                    post_entries = [e for f in dumps["post"] for e in f.result()[1]]
                finally:
                    for f in [f for fs in dumps.values() for f in fs]:
                        f.cancel()
        count = _store_post_data(tgt, run_id, post_entries, owners, matviews)
        detail = {
            "schemas": apply_schemas,
            "kept_by_resume": sorted(set(schemas) - set(apply_schemas)),
            "dropped_own": cleared.get("dropped_own", []),
            "dropped_existing": cleared.get("dropped_existing", []),
            "dependents_dropped": cleared.get("dependents_dropped", []),
            "warnings": warnings,
            "post_data_entries": count,
            "locks": job.measured(),
        }
        state.set_phase(tgt, run_id, "pre-data", "done", detail)
        for w in warnings:
            log.warning("pre-data: %s", w)
        return detail


@dataclass
class Job:
    """One pre-data attempt: its sessions, budgets and what each of its transactions held."""

    source: Endpoint
    tgt: psycopg.Connection
    run_id: str
    app: str
    target: locks.Budget
    source_budget: locks.Budget | None = None
    version: int = 0
    snapshot: str | None = None
    held: list[tuple[str, int]] = field(default_factory=list)  # (step, lock entries held at its commit)
    pool: ThreadPoolExecutor | None = None
    exclude: list[tuple[str, str]] = field(default_factory=list)  # the tables the selection leaves out (-T)

    def plans(
        self, src: psycopg.Connection, apply_schemas: list[str], schemas: list[str]
    ) -> tuple[batching.Plan | None, batching.Plan]:
        """The batches to create (None: nothing to create) and to dump post-data by; refused, before
        anything is written, when a step fits no batching (pre-flight blocks it first)."""
        assert self.source_budget is not None
        post = batching.dump_plan(src, schemas, self.source_budget)
        if not apply_schemas:
            return None, post
        pre = batching.plan(src, apply_schemas, self.source_budget, self.target)
        too_big = batching.indivisible(src, apply_schemas, pre, self.source_budget, self.target)
        if too_big:  # the catalog may have changed since pre-flight
            raise ConfigError("pre-data refused, nothing written: " + "; ".join(too_big))
        return pre, post

    def dump(self, section: str, schemas: list[str], what: str, **kw: Any) -> tuple[list[str], list[Entry]]:
        try:
            text = dump_schema(
                self.source, schemas, section, self.snapshot, self.version, self.app, exclude=self.exclude, **kw
            )
        except LocksExhausted as exc:
            assert self.source_budget is not None
            with self.source.connect(self.app, autocommit=True) as conn:
                now = locks.held(conn)
            raise UnitFailed(locks.exhausted_message(f"pg_dump {what}", self.source_budget, now, str(exc))) from None
        return split_entries(text)

    @contextlib.contextmanager
    def step(self, what: str, settings: list[str]) -> Iterator[None]:
        """One target transaction of pre-data; the lock table running out fails it by name, whole."""
        try:
            with self.tgt.transaction():
                for line in settings:
                    self.tgt.execute(line)
                yield
                self.held.append((what, locks.held(self.tgt, here=True)))
        except LocksExhausted as exc:
            now = locks.held(self.tgt)
            raise UnitFailed(locks.exhausted_message(f"pre-data {what}", self.target, now, str(exc))) from None
        log.info("pre-data: %s committed (%d lock entries held)", what, self.held[-1][1])

    def apply(self, plan: batching.Plan, entries: list[Entry], what: str, settings: list[str]) -> list[str]:
        """Apply entries in dump order, in consecutive transactions within the target's budget (each
        committed one a prefix of the dump's order: whatever an entry needs is in it or before it)."""
        warnings: list[str] = []
        room = max(plan.target_limit - batching.APPLY_BASE, 1)
        start, parts = 0, 0
        while start < len(entries):
            end, cost, seen = start, 0, set()
            while end < len(entries):
                e = entries[end]
                cost += plan.entry_cost(e.type, e.schema, e.name, seen)
                if cost > room and end > start:
                    break
                end += 1
            parts += 1
            label = what if start == 0 and end == len(entries) else f"{what} part {parts}"
            with self.step(f"{label}: {end - start} entries", settings):
                warnings += _apply_entries(self.tgt, entries[start:end])
            start = end
        return warnings

    def queue(
        self,
        schemas: list[str],
        ext_names: list[str],
        pre: batching.Plan | None,
        all_schemas: list[str],
        post: batching.Plan,
    ) -> dict[str, list[Future]]:
        """Every pg_dump of the phase, queued in the order they are needed (one runs at a time)."""
        assert self.pool is not None
        later = self.pool.submit
        out: dict[str, list[Future]] = {"types": [], "pre": [], "post": []}
        if pre is not None:
            what = "of the schemas' types and functions"
            out["types"].append(
                later(self.dump, "pre-data", schemas, what, extensions=ext_names, without_relations=True)
            )
            for n, batch in enumerate(pre.batches, start=1):
                out["pre"].append(later(self.dump, "pre-data", [], f"batch {n}", tables=batch.relations))
        out["post"].append(later(self.dump, "post-data", all_schemas, "post-data", without_relations=True))
        for n, batch in enumerate(post.batches, start=1):
            out["post"].append(later(self.dump, "post-data", [], f"post-data batch {n}", tables=batch.relations))
        return out

    def measured(self) -> dict[str, Any]:
        top = max(self.held, key=lambda h: h[1], default=("", 0))
        return {
            "target_budget": self.target.to_dict(),
            "source_budget": self.source_budget.to_dict() if self.source_budget else None,
            "transactions": len(self.held),
            "max_held": top[1],
            "max_held_by": top[0],
        }


def _create_roles(source: Endpoint, tgt: psycopg.Connection, schemas: list[str], app: str) -> list[str]:
    """Create the roles that grants on the schemas name but the target lacks, with their attributes and
    memberships where the target role may (:func:`include.pg_migration.roles.create_roles`)."""
    with source.connect(app, autocommit=True) as src:
        grantees = [r[0] for r in src.execute(catalog.GRANTEES, {"schemas": schemas})]
        supers = {r[0] for r in src.execute("SELECT rolname FROM pg_catalog.pg_roles WHERE rolsuper")}
        have = {r[0] for r in tgt.execute("SELECT rolname FROM pg_catalog.pg_roles")}
        missing = [role for role in grantees if role not in have and role not in supers]
        return roles.create_roles(src, tgt, missing)[1] if missing else []


def _owners(src: psycopg.Connection, schemas: list[str]) -> dict[tuple[str, str, str], tuple[str, str]]:
    """(kind, schema, TOC name) -> (table schema, table name) for indexes, constraints and triggers."""
    owners: dict[tuple[str, str, str], tuple[str, str]] = {}
    for row in src.execute(catalog.INDEX_OWNERS, {"schemas": schemas}):
        owners[("INDEX", row[0], row[1])] = (row[2], row[3])
    for row in src.execute(catalog.CONSTRAINT_OWNERS, {"schemas": schemas}):
        kind = "FK CONSTRAINT" if row[2] == "f" else ("CHECK CONSTRAINT" if row[2] == "c" else "CONSTRAINT")
        owners[(kind, row[0], row[1])] = (row[3], row[4])
    for row in src.execute(TRIGGER_OWNERS, {"schemas": schemas}):
        owners[("TRIGGER", row[0], row[1])] = (row[2], row[3])
    return owners


@dataclass
class Drops:
    """What pre-data clears before re-creating: the selected schemas that exist, and in ``public`` the
    objects the dump re-creates."""

    run_id: str
    schemas: list[str]
    existing: set[str]
    replace_dependents: bool

    def schemas_to_drop(self) -> list[str]:
        return [s for s in self.schemas if s != "public" and s in self.existing]


def _apply_pre_data(
    job: Job, drops: Drops, plan: batching.Plan, dumps: dict[str, list[Future]], extensions: list[tuple[str, str]]
) -> dict[str, Any]:
    """Drop what an earlier attempt or run left (batched), then create: schemas, types and functions,
    then the relations batch by batch, each batch dumped and applied in one transaction of its own."""
    tgt = job.tgt
    preamble, entries = dumps["types"][0].result()
    settings = settings_for_target(preamble, _settings_known(tgt))
    public = [Entry("TABLE", t, s, "") for b in plan.batches for s, t in b.relations if s == "public"]
    cleared = _clear(job, drops, entries + public, settings)
    deferred = plan.deferred_functions()
    later = {(e.schema, e.name): e for e in entries if e.type in FUNCTION_KINDS and (e.schema, e.name) in deferred}
    first = [e for e in entries if (e.schema, e.name) not in later or e.type not in FUNCTION_KINDS]
    with job.step("schemas", settings):
        tgt.execute(state.q("DELETE FROM {s}.tables WHERE schema_name = ANY(%s)"), (drops.schemas,))
        for entry in first:
            if entry.type == "SCHEMA" and entry.name != "public":  # public: on every target, merged into
                _execute(tgt, entry)
        for extname, ext_schema in extensions:
            _create_extension(tgt, extname, ext_schema)
    rest = [e for e in first if e.type != "SCHEMA"]
    cleared["warnings"] += job.apply(plan, rest, "types and functions", settings)
    for n, batch in enumerate(plan.batches, start=1):
        what = f"batch {n}/{len(plan.batches)} ({len(batch.relations)} relations, {batch.relations[0][0]}."
        what += f"{batch.relations[0][1]} .. {batch.relations[-1][0]}.{batch.relations[-1][1]})"
        _, batch_entries = dumps["pre"][n - 1].result()
        functions = [later[f] for f in batch.functions if f in later]
        cleared["warnings"] += job.apply(plan, batch_entries + functions, what, settings)
    return cleared


#: Entry types of routines (a function needing a relation is applied after the batch creating it).
FUNCTION_KINDS = ("FUNCTION", "PROCEDURE", "AGGREGATE")


def _apply_entries(tgt: psycopg.Connection, entries: list[Entry]) -> list[str]:
    warnings = []
    for entry in entries:
        if entry.type in ("SCHEMA", "EXTENSION") or (entry.type == "COMMENT" and entry.name.startswith("EXTENSION ")):
            # Extensions: created first, only where missing (an administrator may have); their
            # comment is the extension's own, from its control file, on the target too.
            continue
        if entry.type == "ACL" or (entry.type == "COMMENT" and entry.name.startswith("SCHEMA ")):
            warning = _apply_privileges(tgt, entry)
            if warning:
                warnings.append(warning)
            continue
        _execute(tgt, entry)
    return warnings


def _clear(job: Job, drops: Drops, entries: list[Entry], settings: list[str]) -> dict[str, Any]:
    """Drop the selected schemas that exist and the ``public`` objects the dump re-creates, unless that
    would also drop objects outside them (refused, naming each, without ``replace_dependents``); in
    transactions within the target's budget, dependents first."""
    tgt = job.tgt
    to_drop = drops.schemas_to_drop()
    public = public_drops(tgt, entries) if "public" in drops.schemas else []
    dependents = [
        r[0]
        for r in tgt.execute(
            DEPENDENTS,
            {"schemas": to_drop, "classes": [p[1] for p in public], "objects": [p[2] for p in public]},
        )
    ]
    what = ", ".join([f"schema {s}" for s in to_drop] + (["objects of public re-created"] if public else []))
    warnings = []
    if dependents and not drops.replace_dependents:
        raise ConfigError(
            f"pre-data refused: re-creating {what} would also drop {len(dependents)} object(s) outside them "
            f"that depend on them: {'; '.join(dependents)}. Nothing was changed. Leave those schemas out, or "
            "re-run with replace_dependents: true to drop these objects (re-create them afterwards)."
        )
    if dependents:
        warnings.append(
            f"replace_dependents: re-creating {what} dropped {len(dependents)} object(s) outside them: "
            + "; ".join(dependents)
        )
    own = state.created_by(tgt, drops.run_id, "schema")
    with tgt.transaction():  # first: a retry after a drop knows which schemas existed before the run
        state.record_created(
            tgt,
            drops.run_id,
            "schema",
            {s: (s in drops.existing and s not in own) for s in drops.schemas if s != "public"},
        )
    _drop_batched(job, to_drop, settings)
    step = max(job.target.per_transaction // 8, 1)
    for i in range(0, len(public), step):
        with job.step(f"drop of public objects {i + 1}-{min(i + step, len(public))}", settings):
            for statement, _, _ in public[i : i + step]:
                tgt.execute(statement)
    return {
        "dropped_own": sorted(s for s in to_drop if s in own),
        "dropped_existing": sorted(s for s in to_drop if s not in own),
        "dependents_dropped": dependents,
        "warnings": warnings,
    }


def _drop_batched(job: Job, schemas: list[str], settings: list[str]) -> None:
    """The schemas' relations in transactions within the budget (dependents first), then each schema."""
    if not schemas:
        return
    batches, _ = drop_plan(job.tgt, schemas, job.target.per_transaction)
    for n, batch in enumerate(batches, start=1):
        with job.step(f"drop batch {n}/{len(batches)}", settings):
            for kind, names in batch.relations.items():
                targets = sql.SQL(", ").join(sql.Identifier(s, t) for s, t in names)
                job.tgt.execute(sql.SQL("DROP {} IF EXISTS {} CASCADE").format(sql.SQL(kind), targets))
    for schema in schemas:
        with job.step(f"drop of schema {schema}", settings):
            job.tgt.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))


def _apply_privileges(tgt: psycopg.Connection, entry: Entry) -> str | None:
    """Apply a GRANT/REVOKE (or a schema's or extension's comment); return a warning naming what was not.

    Grants to roles missing on the target are reported by name, never fatal; a REVOKE ... FROM PUBLIC
    always applies (it names no role) where the target role may change the object's privileges. One it
    may not (an extension's object that an administrator's CREATE EXTENSION left to the bootstrap
    superuser: the server then only warns, changing nothing) is reported with the statement to run."""
    unchanged: list[str] = []

    def notice(diag: psycopg.errors.Diagnostic) -> None:
        if diag.sqlstate in PRIVILEGE_NOT_CHANGED:
            unchanged.append(diag.message_primary or diag.sqlstate)

    what = f"{entry.type} on {entry.schema + '.' if entry.schema else ''}{entry.name}"
    tgt.add_notice_handler(notice)
    try:
        with tgt.transaction():
            tgt.execute(entry.sql)
    except psycopg.Error as exc:
        if locks.is_exhausted(exc):
            raise LocksExhausted(str(exc)) from None
        role = _missing_role(exc)
        if role:
            return f"{what} not applied: role {role!r} does not exist on the target"
        return f"{what} not applied: {str(exc).strip().splitlines()[0]}"
    finally:
        tgt.remove_notice_handler(notice)
    if unchanged:
        return (
            f"{what} not applied: {'; '.join(dict.fromkeys(unchanged))} -- the target role neither owns it nor "
            "holds the privileges WITH GRANT OPTION (an extension's objects created by an administrator belong "
            f"to the administrator); have its owner run: {' '.join(entry.sql.split())}"
        )
    return None


def _execute(tgt: psycopg.Connection, entry: Entry) -> None:
    try:
        with tgt.transaction():
            tgt.execute(entry.sql)
    except psycopg.Error as exc:
        if locks.is_exhausted(exc):
            raise LocksExhausted(str(exc)) from None
        where = f"{entry.schema}.{entry.name}" if entry.schema else entry.name
        raise UnitFailed(
            f"pre-data: cannot create {entry.type} {where} on the target: {str(exc).strip().splitlines()[0]}"
        ) from None


def _create_extension(tgt: psycopg.Connection, extname: str, ext_schema: str) -> None:
    have = tgt.execute("SELECT 1 FROM pg_catalog.pg_extension WHERE extname = %s", (extname,)).fetchone()
    if have:
        return
    if not tgt.execute("SELECT 1 FROM pg_catalog.pg_namespace WHERE nspname = %s", (ext_schema,)).fetchone():
        stmt = sql.SQL("CREATE EXTENSION IF NOT EXISTS {}").format(sql.Identifier(extname))
    else:
        stmt = sql.SQL("CREATE EXTENSION IF NOT EXISTS {} WITH SCHEMA {}").format(
            sql.Identifier(extname), sql.Identifier(ext_schema)
        )
    try:
        with tgt.transaction():
            tgt.execute(stmt)
    except psycopg.Error as exc:
        raise UnitFailed(
            f"pre-data: extension {extname!r} (used by the source) cannot be created on the target: "
            f"{str(exc).strip().splitlines()[0]}. Ask the target's administrator to create it "
            "(on Aurora: allowed by rds.allowed_extensions), then retry."
        ) from None


def _store_post_data(
    tgt: psycopg.Connection,
    run_id: str,
    entries: list[Entry],
    owners: dict[tuple[str, str, str], tuple[str, str]],
    matviews: list[tuple],
) -> int:
    rows = []
    for seq, entry in enumerate(entries, start=1):
        table = owners.get((entry.type, entry.schema or "", entry.name), (None, None))
        statement = entry.sql
        if entry.type == "DEFAULT ACL":
            # Objects are owned by the target's user (no ownership commands), so the source owner's
            # default privileges become the target user's: drop "FOR ROLE <source owner>".
            statement = FOR_ROLE.sub("ALTER DEFAULT PRIVILEGES ", statement)
        rows.append((run_id, seq, entry.type, entry.schema, entry.name, table[0], table[1], statement))
    seq = len(rows)
    for schema, name, populated in matviews:
        if populated:
            seq += 1
            stmt = sql.SQL("REFRESH MATERIALIZED VIEW {}").format(sql.Identifier(schema, name)).as_string(tgt)
            rows.append((run_id, seq, "MATVIEW REFRESH", schema, name, None, None, stmt))
    with tgt.transaction():
        tgt.execute(state.q("DELETE FROM {s}.ddl WHERE run_id = %s"), (run_id,))
        with tgt.cursor() as cur:
            cur.executemany(
                state.q("""INSERT INTO {s}.ddl
                                  (run_id, seq, kind, schema_name, name, table_schema, table_name, statement)
                           VALUES (%s, %s, %s, %s, %s, %s, %s, %s)"""),
                rows,
            )
    return len(rows)
