"""The pre-data phase (the ``pre_data`` task, worker phase ``pre-data``): all definitions, once, before any data.

Pre-data runs ``pg_dump --section=pre-data`` of every selected schema at once, from the run's
snapshot, and applies it to the target in ONE transaction: selected schemas are dropped and
re-created (``public`` is merged into, never dropped), so a retry, or a re-run, starts from a clean
slate and a failure leaves the target as it was. One restore of all schemas resolves every
cross-schema dependency (a child whose parent lives elsewhere, a view over another schema, a
partition in another schema), whatever order the data units run in later.

A drop never takes what other schemas built on the
selected ones (a migration in waves: a view, a foreign key, a function, a column default elsewhere):
before dropping, ``pg_depend`` is asked what the drop would cascade to outside what is re-created, and
the run is refused naming every such object unless ``replace_dependents: true``. What pre-data
(re-)created is recorded in the run's state (``_pg_migration.created``), so a retry knows its own.

Privileges on an extension's own objects (GRANT/REVOKE that differ from ``pg_init_privs``) are dumped
with ``pg_dump --extension`` and applied once the extension exists (created here, or by the target's
administrator first, as on Aurora); one the target role may not change (it owns nothing of an
extension an administrator created) is reported by name, with the statement, never dropped silently.

It also dumps post-data and stores every entry in ``_pg_migration.ddl`` with the table it belongs
to: the data unit that loads a table builds that table's indexes and keys
(:mod:`include.pg_migration.phases.data`); the post-data phase
(:mod:`include.pg_migration.phases.post_data`) applies the rest after all data.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

from include.pg_migration import catalog, roles, selection, state
from include.pg_migration.conn import Endpoint
from include.pg_migration.errors import ConfigError, MigrationError, UnitFailed
from include.pg_migration.pgtools import (
    EXTENSION_OPTION_MAJOR,
    Entry,
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

PUBLIC_RELATION_KIND = """
SELECT CASE c.relkind WHEN 'v' THEN 'VIEW' WHEN 'm' THEN 'MATERIALIZED VIEW' WHEN 'S' THEN 'SEQUENCE'
                      WHEN 'f' THEN 'FOREIGN TABLE' ELSE 'TABLE' END, c.oid
  FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname = 'public' AND c.relname = %(name)s AND c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f')
   AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d
                    WHERE d.classid = 'pg_catalog.pg_class'::pg_catalog.regclass
                      AND d.objid = c.oid AND d.deptype = 'e')
"""

PUBLIC_ROUTINES = """
SELECT p.oid::pg_catalog.regprocedure::text, p.oid
  FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
 WHERE n.nspname = 'public' AND p.proname = %(name)s
   AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d
                    WHERE d.classid = 'pg_catalog.pg_proc'::pg_catalog.regclass AND d.objid = p.oid AND d.deptype = 'e')
"""

PUBLIC_TYPE = """
SELECT CASE t.typtype WHEN 'd' THEN 'DOMAIN' ELSE 'TYPE' END, t.oid
  FROM pg_catalog.pg_type t JOIN pg_catalog.pg_namespace n ON n.oid = t.typnamespace
 WHERE n.nspname = 'public' AND t.typname = %(name)s AND t.typtype IN ('c', 'd', 'e', 'r', 'm')
   AND (t.typrelid = 0 OR (SELECT relkind FROM pg_catalog.pg_class WHERE oid = t.typrelid) = 'c')
   AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d
                    WHERE d.classid = 'pg_catalog.pg_type'::pg_catalog.regclass AND d.objid = t.oid AND d.deptype = 'e')
"""

#: What dropping the schemas (and the ``public`` objects re-created: ``classes``/``objects``) cascades
#: to outside them, as ``DROP ... CASCADE`` would: dependents ('n', 'a', partition, extension member,
#: internal), an internal part taking its owner along, a column dropped with its type. Reported by owner
#: (a view, not its rewrite rule; a table, not its columns), as "<kind> <schema-qualified identity>".
DEPENDENTS = """
WITH RECURSIVE roots(classid, objid, objsubid) AS (
    SELECT 'pg_catalog.pg_namespace'::pg_catalog.regclass::oid, n.oid, 0
      FROM pg_catalog.pg_namespace n WHERE n.nspname = ANY(%(schemas)s)
    UNION
    SELECT r.classid, r.objid, 0
      FROM unnest(%(classes)s::text[]::pg_catalog.regclass[]::oid[], %(objects)s::oid[]) AS r(classid, objid)
), doomed(classid, objid, objsubid) AS (
    SELECT classid, objid, objsubid FROM roots
    UNION
    SELECT x.classid, x.objid, x.objsubid
      FROM doomed o, LATERAL (
          SELECT d.classid, d.objid, d.objsubid FROM pg_catalog.pg_depend d
           WHERE d.refclassid = o.classid AND d.refobjid = o.objid
             AND (o.objsubid = 0 OR d.refobjsubid = o.objsubid) AND d.deptype IN ('n', 'a', 'i', 'P', 'S', 'e')
          UNION ALL
          SELECT d.refclassid, d.refobjid, d.refobjsubid FROM pg_catalog.pg_depend d
           WHERE d.classid = o.classid AND d.objid = o.objid AND d.objsubid = o.objsubid AND d.deptype = 'i'
      ) x
), described AS (
    SELECT o.classid, o.objid, o.objsubid, i.type, i.identity,
           coalesce(i.schema, (  -- pg_identify_object's schema is quoted where needed: quote these too
               SELECT pg_catalog.quote_ident(n.nspname)
                 FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
                WHERE c.oid = CASE o.classid
                    WHEN 'pg_catalog.pg_attrdef'::pg_catalog.regclass
                        THEN (SELECT a.adrelid FROM pg_catalog.pg_attrdef a WHERE a.oid = o.objid)
                    WHEN 'pg_catalog.pg_trigger'::pg_catalog.regclass
                        THEN (SELECT t.tgrelid FROM pg_catalog.pg_trigger t WHERE t.oid = o.objid)
                    WHEN 'pg_catalog.pg_rewrite'::pg_catalog.regclass
                        THEN (SELECT r.ev_class FROM pg_catalog.pg_rewrite r WHERE r.oid = o.objid)
                    WHEN 'pg_catalog.pg_policy'::pg_catalog.regclass
                        THEN (SELECT p.polrelid FROM pg_catalog.pg_policy p WHERE p.oid = o.objid) END
           ), (
               SELECT pg_catalog.quote_ident(n.nspname)
                 FROM pg_catalog.pg_extension e JOIN pg_catalog.pg_namespace n ON n.oid = e.extnamespace
                WHERE o.classid = 'pg_catalog.pg_extension'::pg_catalog.regclass AND e.oid = o.objid
           )) AS schema
      FROM doomed o, LATERAL pg_catalog.pg_identify_object(o.classid, o.objid, o.objsubid) i
)
SELECT DISTINCT o.type || ' ' || o.identity
  FROM described o
 WHERE (o.schema IS NULL OR o.schema <> ALL(SELECT pg_catalog.quote_ident(s) FROM unnest(%(schemas)s::text[]) s))
   AND o.schema IS DISTINCT FROM 'pg_toast'
   AND NOT EXISTS (SELECT 1 FROM roots r WHERE r.classid = o.classid AND r.objid = o.objid)
   AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d
                    WHERE d.classid = o.classid AND d.objid = o.objid AND d.objsubid = o.objsubid AND d.deptype = 'i')
   AND NOT (o.objsubid <> 0 AND EXISTS (SELECT 1 FROM doomed w
                                          WHERE w.classid = o.classid AND w.objid = o.objid AND w.objsubid = 0))
   AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d
                     JOIN roots r ON r.classid = d.refclassid AND r.objid = d.refobjid
                    WHERE d.classid = o.classid AND d.objid = o.objid AND d.deptype = 'a')
 ORDER BY 1
"""

#: Notices of a GRANT/REVOKE that changed nothing: the role may not (01007 not granted, 01006 not revoked).
PRIVILEGE_NOT_CHANGED = ("01006", "01007")


def _missing_role(exc: psycopg.Error) -> str | None:
    m = re.search(r'role "([^"]+)" does not exist', str(exc))
    return m.group(1) if m else None


def _settings_known(conn: psycopg.Connection) -> set[str]:
    return {r[0] for r in conn.execute("SELECT name FROM pg_catalog.pg_settings")}


def run_pre_data(source: Endpoint, target: Endpoint, run_id: str, app: str) -> dict[str, Any]:
    """Apply every selected schema's definitions to the target in one transaction; store post-data."""
    with target.connect(app) as tgt:
        run = state.get_run(tgt, run_id)
        if run is None:
            raise MigrationError(f"run {run_id!r} is not registered on the target (the plan task registers it)")
        schemas: list[str] = run["plan"]["schemas"]
        snapshot = run["snapshot_id"] if run["consistent"] else None
        resume = bool(run["params"].get("resume"))
        existing = {r[0] for r in tgt.execute(TARGET_SCHEMAS, {"schemas": schemas})}
        left_out = selection.dump_exclusions(selection.left_out(run["plan"]))  # pg_dump -T of the selection

        src = open_source_snapshot(source, app, snapshot)
        with src:
            version = catalog.server_version(src)
            snapshot_for_dump = snapshot or src.execute("SELECT pg_catalog.pg_export_snapshot()").fetchone()[0]
            owners = _owners(src, schemas)
            extensions = src.execute(EXTENSIONS).fetchall()
            matviews = src.execute(catalog.MATVIEWS, {"schemas": schemas}).fetchall()
            apply_schemas = [s for s in schemas if not (resume and s in existing)] if resume else schemas
            ext_names = [e[0] for e in extensions]
            pre_text = (
                dump_schema(
                    source,
                    apply_schemas,
                    "pre-data",
                    snapshot_for_dump,
                    version,
                    app,
                    extensions=ext_names,
                    exclude=left_out,
                )
                if apply_schemas
                else ""
            )
            post_text = dump_schema(source, schemas, "post-data", snapshot_for_dump, version, app, exclude=left_out)

        warnings: list[str] = []
        if ext_names and choose(version).major < EXTENSION_OPTION_MAJOR:
            warnings.append(
                f"privileges on the objects of extensions {', '.join(ext_names)} are not carried: pg_dump "
                f"{choose(version).major} has no --extension (install pg_dump {EXTENSION_OPTION_MAJOR}+)"
            )
        cleared: dict[str, Any] = {}
        if apply_schemas:
            preamble, entries = split_entries(pre_text)
            if run["params"].get("create_roles"):
                warnings += _create_roles(source, tgt, apply_schemas, app)
            drops = Drops(run_id, apply_schemas, existing, bool(run["params"].get("replace_dependents")))
            cleared = _apply_pre_data(tgt, drops, preamble, entries, extensions)
            warnings += cleared.pop("warnings")
        else:
            log.info("resume: every selected schema already exists on the target; pre-data kept as is")
        _, post_entries = split_entries(post_text)
        count = _store_post_data(tgt, run_id, post_entries, owners, matviews)
        detail = {
            "schemas": apply_schemas,
            "kept_by_resume": sorted(set(schemas) - set(apply_schemas)),
            "dropped_own": cleared.get("dropped_own", []),
            "dropped_existing": cleared.get("dropped_existing", []),
            "dependents_dropped": cleared.get("dependents_dropped", []),
            "warnings": warnings,
            "post_data_entries": count,
        }
        state.set_phase(tgt, run_id, "pre-data", "done", detail)
        for w in warnings:
            log.warning("pre-data: %s", w)
        return detail


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
    tgt: psycopg.Connection,
    drops: Drops,
    preamble: list[str],
    entries: list[Entry],
    extensions: list[tuple[str, str]],
) -> dict[str, Any]:
    known = _settings_known(tgt)
    with tgt.transaction():
        for line in settings_for_target(preamble, known):
            tgt.execute(line)
        # Clear what a previous attempt or run left, once nothing outside would go with it.
        cleared = _clear(tgt, drops, entries)
        warnings: list[str] = cleared["warnings"]
        tgt.execute(state.q("DELETE FROM {s}.tables WHERE schema_name = ANY(%s)"), (drops.schemas,))
        schema_entries = [e for e in entries if e.type == "SCHEMA"]
        for entry in schema_entries:
            if entry.name == "public":
                continue  # exists on every target, owned by pg_database_owner: merge into it
            _execute(tgt, entry)
        for extname, ext_schema in extensions:
            _create_extension(tgt, extname, ext_schema)
        for entry in entries:
            if entry.type in ("SCHEMA", "EXTENSION") or (
                entry.type == "COMMENT" and entry.name.startswith("EXTENSION ")
            ):
                # Extensions: created above, only where missing (an administrator may have); their
                # comment is the extension's own, from its control file, on the target too.
                continue
            if entry.type == "ACL" or (entry.type == "COMMENT" and entry.name.startswith("SCHEMA ")):
                warning = _apply_privileges(tgt, entry)
                if warning:
                    warnings.append(warning)
                continue
            _execute(tgt, entry)
    return cleared


def _clear(tgt: psycopg.Connection, drops: Drops, entries: list[Entry]) -> dict[str, Any]:
    """Drop the selected schemas that exist and the ``public`` objects the dump re-creates, unless that
    would also drop objects outside them (refused, naming each, without ``replace_dependents``)."""
    to_drop = drops.schemas_to_drop()
    public = _public_drops(tgt, entries) if "public" in drops.schemas else []
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
    for schema in to_drop:
        tgt.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))
    for statement, _, _ in public:
        tgt.execute(statement)
    state.record_created(
        tgt,
        drops.run_id,
        "schema",
        {s: (s in drops.existing and s not in own) for s in drops.schemas if s != "public"},
    )
    return {
        "dropped_own": sorted(s for s in to_drop if s in own),
        "dropped_existing": sorted(s for s in to_drop if s not in own),
        "dependents_dropped": dependents,
        "warnings": warnings,
    }


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


def _public_drops(tgt: psycopg.Connection, entries: list[Entry]) -> list[tuple[sql.Composed, str, int]]:
    """The objects of ``public`` that the dump re-creates (never the schema, never extension objects):
    (the DROP statement, the catalog, the oid) of each."""
    drops: list[tuple[sql.Composed, str, int]] = []
    for entry in entries:
        if entry.schema != "public":
            continue
        if entry.type in ("TABLE", "VIEW", "MATERIALIZED VIEW", "SEQUENCE", "FOREIGN TABLE"):
            row = tgt.execute(PUBLIC_RELATION_KIND, {"name": entry.name}).fetchone()
            if row:
                stmt = sql.SQL("DROP {} IF EXISTS {} CASCADE").format(
                    sql.SQL(row[0]), sql.Identifier("public", entry.name)
                )
                drops.append((stmt, "pg_catalog.pg_class", row[1]))
        elif entry.type in ("FUNCTION", "PROCEDURE", "AGGREGATE"):
            for signature, oid in tgt.execute(PUBLIC_ROUTINES, {"name": entry.name.split("(")[0]}).fetchall():
                kind = "AGGREGATE" if entry.type == "AGGREGATE" else "ROUTINE"
                drops.append(
                    (
                        sql.SQL("DROP {} IF EXISTS {} CASCADE").format(sql.SQL(kind), sql.SQL(signature)),
                        "pg_catalog.pg_proc",
                        oid,
                    )
                )
        elif entry.type in ("TYPE", "DOMAIN"):
            row = tgt.execute(PUBLIC_TYPE, {"name": entry.name}).fetchone()
            if row:
                stmt = sql.SQL("DROP {} IF EXISTS {} CASCADE").format(
                    sql.SQL(row[0]), sql.Identifier("public", entry.name)
                )
                drops.append((stmt, "pg_catalog.pg_type", row[1]))
    return drops


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
