"""Ownership: carry the source's owners over where the target role may (the ``ownership`` param).

``pg_dump --no-owner`` makes the target role own every object it creates, and the data units need that
(loading a table needs its owner). Owners decide what SECURITY DEFINER functions may do, whose
privileges a view checks (unless ``security_invoker``) and who bypasses row security, so:

* ``carry`` (default) -- after load and validation (the ``ownership`` step, last before subscribing and
  the report) every object of the selected schemas -- schemas, tables, partitions, foreign tables,
  sequences not owned by a column, views, materialized views, functions, procedures, aggregates,
  domains, enum/range/composite types -- and every large object is handed to its source owner
  wherever the target role may: it must be able to ``SET ROLE`` to the owner (up to PostgreSQL 15 a
  CREATEROLE role grants itself membership in any non-superuser role; from 16 only in roles it holds
  ADMIN OPTION on, such as those it created), and the owner needs CREATE on the schema (a schema's
  owner: on the database). Owners missing on the target are created (``create_roles``) with their
  attributes and memberships (:mod:`include.pg_migration.roles`). An owner that cannot be carried (a
  superuser like ``postgres``, a role without ADMIN OPTION, a missing CREATE) leaves its objects with
  the target role: a pre-flight warning naming object and role, and a warning of the step.
* ``exact`` -- the same, but an owner that cannot be carried is blocking in pre-flight (nothing is
  written), and a hand-over that fails is a failure of the run.
* ``target_user`` -- the target role keeps everything (the behaviour before this param).

The target role stays a member (with INHERIT) of every owner it carried to: later validate-only and
cut-over runs read as that member, with the owner's privileges (row security as before: reads with
``row_security = off``, which the owner's privileges bypass; FORCE ROW LEVEL SECURITY lifted in a
rolled-back transaction by the owner's member). Validation then compares owners wherever the
target role is a member of the source owner (:func:`compare_owners`), naming each difference.

Replicate mode, target PostgreSQL 16+: the subscription (created without ``run_as_owner``) applies each
change as the table's owner, so the target role must be able to SET ROLE to every carried owner: the
hand-over grants exactly that (:func:`apply_role_finding` says which holds).

Left with the target role whatever the mode: operators, collations, text search objects, conversions,
event triggers, default privileges (``ALTER DEFAULT PRIVILEGES FOR ROLE``), and objects of extensions.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from include.pg_migration import catalog, roles, state
from include.pg_migration.conn import Endpoint
from include.pg_migration.findings import finding, names_list

log = logging.getLogger(__name__)

MODES = ("carry", "exact", "target_user")
DEFAULT = "carry"
#: A run recorded before the param existed kept the target role as owner.
RECORDED_DEFAULT = "target_user"
PHASE = "ownership"

#: Every owned object of the selected schemas (extension members and column-owned sequences excluded:
#: they follow their extension and table), with its owner and whether the owner has the CREATE it needs
#: (a schema: on the database; anything else: on its schema). The same query runs on both sides.
OWNED_OBJECTS = """
WITH sel AS (SELECT oid, nspname, nspowner FROM pg_catalog.pg_namespace WHERE nspname = ANY(%(schemas)s)),
ext AS (SELECT classid, objid FROM pg_catalog.pg_depend WHERE deptype = 'e')
SELECT 'schema' AS kind, s.nspname AS schema, s.nspname::pg_catalog.text AS name, '' AS args,
       pg_catalog.pg_get_userbyid(s.nspowner) AS owner,
       pg_catalog.has_database_privilege(s.nspowner, pg_catalog.current_database(), 'CREATE') AS can_create
  FROM sel s
UNION ALL
SELECT CASE c.relkind WHEN 'v' THEN 'view' WHEN 'm' THEN 'materialized view' WHEN 'S' THEN 'sequence'
                      WHEN 'f' THEN 'foreign table' ELSE 'table' END,
       s.nspname, c.relname::pg_catalog.text, '', pg_catalog.pg_get_userbyid(c.relowner),
       pg_catalog.has_schema_privilege(c.relowner, s.oid, 'CREATE')
  FROM pg_catalog.pg_class c JOIN sel s ON s.oid = c.relnamespace
 WHERE c.relkind IN ('r', 'p', 'f', 'v', 'm', 'S')
   AND NOT EXISTS (SELECT FROM ext WHERE ext.classid = 'pg_catalog.pg_class'::pg_catalog.regclass
                                     AND ext.objid = c.oid)
   AND NOT (c.relkind = 'S' AND EXISTS (
            SELECT FROM pg_catalog.pg_depend d
             WHERE d.classid = 'pg_catalog.pg_class'::pg_catalog.regclass AND d.objid = c.oid
               AND d.refclassid = 'pg_catalog.pg_class'::pg_catalog.regclass AND d.deptype IN ('a', 'i')))
UNION ALL
SELECT CASE p.prokind WHEN 'p' THEN 'procedure' WHEN 'a' THEN 'aggregate' ELSE 'function' END,
       s.nspname, p.proname::pg_catalog.text, pg_catalog.pg_get_function_identity_arguments(p.oid),
       pg_catalog.pg_get_userbyid(p.proowner), pg_catalog.has_schema_privilege(p.proowner, s.oid, 'CREATE')
  FROM pg_catalog.pg_proc p JOIN sel s ON s.oid = p.pronamespace
 WHERE NOT EXISTS (SELECT FROM ext WHERE ext.classid = 'pg_catalog.pg_proc'::pg_catalog.regclass
                                     AND ext.objid = p.oid)
   AND NOT EXISTS (SELECT FROM pg_catalog.pg_depend d  -- a range type's constructors follow the type
                    WHERE d.classid = 'pg_catalog.pg_proc'::pg_catalog.regclass AND d.objid = p.oid
                      AND d.deptype = 'i')
UNION ALL
SELECT CASE t.typtype WHEN 'd' THEN 'domain' ELSE 'type' END, s.nspname, t.typname::pg_catalog.text, '',
       pg_catalog.pg_get_userbyid(t.typowner), pg_catalog.has_schema_privilege(t.typowner, s.oid, 'CREATE')
  FROM pg_catalog.pg_type t JOIN sel s ON s.oid = t.typnamespace
 WHERE (t.typtype IN ('d', 'e', 'r')
        OR (t.typtype = 'c' AND (SELECT c.relkind FROM pg_catalog.pg_class c WHERE c.oid = t.typrelid) = 'c'))
   AND NOT EXISTS (SELECT FROM ext WHERE ext.classid = 'pg_catalog.pg_type'::pg_catalog.regclass
                                     AND ext.objid = t.oid)
"""

#: Large objects are database-wide (the large_objects step copies them all).
LARGE_OBJECT_OWNERS = """
SELECT 'large object' AS kind, '' AS schema, m.oid::pg_catalog.text AS name, '' AS args,
       pg_catalog.pg_get_userbyid(m.lomowner) AS owner, true AS can_create
  FROM pg_catalog.pg_largeobject_metadata m
"""

#: Superusers of the source: never carried (a non-superuser cannot reproduce what they may do).
SOURCE_SUPERUSERS = "SELECT rolname FROM pg_catalog.pg_roles WHERE rolsuper"

#: How the current (target) role stands towards each named role. ``set`` is ``SET`` from 16 on (the
#: right ALTER ... OWNER TO needs), ``MEMBER`` before; ``usage``: it has the role's privileges.
TARGET_ROLES = """
SELECT r.rolname, r.rolsuper,
       pg_catalog.pg_has_role(current_user, r.oid, {set}) AS can_set,
       pg_catalog.pg_has_role(current_user, r.oid, 'USAGE') AS usage,
       pg_catalog.pg_has_role(current_user, r.oid, 'MEMBER WITH ADMIN OPTION') AS admin,
       pg_catalog.has_database_privilege(r.oid, pg_catalog.current_database(), 'CREATE') AS db_create
  FROM pg_catalog.pg_roles r WHERE r.rolname = ANY(%(roles)s)
"""

#: Roles the current (target) role has the privileges of (itself included): where owners are compared.
MEMBER_OF = """
SELECT r.rolname FROM pg_catalog.pg_roles r WHERE r.rolname = ANY(%(roles)s)
   AND pg_catalog.pg_has_role(current_user, r.oid, 'USAGE') AND NOT r.rolsuper
"""

#: The ALTER ... OWNER TO statement per kind (functions: name and identity arguments).
ALTER = {
    "schema": "ALTER SCHEMA {name} OWNER TO {owner}",
    "table": "ALTER TABLE {name} OWNER TO {owner}",
    "foreign table": "ALTER FOREIGN TABLE {name} OWNER TO {owner}",
    "view": "ALTER VIEW {name} OWNER TO {owner}",
    "materialized view": "ALTER MATERIALIZED VIEW {name} OWNER TO {owner}",
    "sequence": "ALTER SEQUENCE {name} OWNER TO {owner}",
    "function": "ALTER FUNCTION {name}({args}) OWNER TO {owner}",
    "procedure": "ALTER PROCEDURE {name}({args}) OWNER TO {owner}",
    "aggregate": "ALTER AGGREGATE {name}({args}) OWNER TO {owner}",
    "domain": "ALTER DOMAIN {name} OWNER TO {owner}",
    "type": "ALTER TYPE {name} OWNER TO {owner}",
    "large object": "ALTER LARGE OBJECT {name} OWNER TO {owner}",
}
#: Statements per committed batch: ALTER ... OWNER locks each object until commit (max_locks_per_transaction).
BATCH = 500


@dataclass(frozen=True)
class Owned:
    kind: str
    schema: str
    name: str
    args: str
    owner: str
    can_create: bool

    @property
    def key(self) -> tuple[str, str, str, str]:
        return (self.kind, self.schema, self.name, self.args)

    def label(self) -> str:
        if self.kind == "schema":
            return f"schema {self.name}"
        if self.kind == "large object":
            return f"large object {self.name}"
        return f"{self.kind} {self.schema}.{self.name}" + (f"({self.args})" if self.kind in _ROUTINES else "")

    def alter(self) -> sql.Composed:
        if self.kind == "schema":
            name: sql.Composable = sql.Identifier(self.name)
        elif self.kind == "large object":
            name = sql.Literal(int(self.name))
        else:
            name = sql.Identifier(self.schema, self.name)
        # identity arguments come from pg_get_function_identity_arguments under search_path '': qualified SQL
        return sql.SQL(ALTER[self.kind]).format(name=name, args=sql.SQL(self.args), owner=sql.Identifier(self.owner))


_ROUTINES = ("function", "procedure", "aggregate")


@dataclass
class Analysis:
    """Which owners can be carried: per role the reason it cannot (None: it can), and per object."""

    mode: str
    me: str
    reasons: dict[str, str | None] = field(default_factory=dict)  # role -> why not carried (None: carried)
    to_create: list[str] = field(default_factory=list)  # owners the hand-over creates (create_roles)
    to_grant: list[str] = field(default_factory=list)  # owners the target role grants itself
    carried: list[Owned] = field(default_factory=list)
    kept: list[tuple[Owned, str]] = field(default_factory=list)  # (object, why it stays the target role's)

    def not_carried_text(self) -> str:
        by_role: dict[tuple[str, str], list[str]] = {}
        for obj, why in self.kept:
            by_role.setdefault((obj.owner, why), []).append(obj.label())
        return "; ".join(f"{role} ({why}): {names_list(labels, 10)}" for (role, why), labels in sorted(by_role.items()))


def mode_of(params: dict[str, Any], default: str = RECORDED_DEFAULT) -> str:
    return params.get("ownership") or default


def owned_objects(conn: psycopg.Connection, schemas: list[str], large_objects: bool = True) -> list[Owned]:
    """:data:`OWNED_OBJECTS` (and :data:`LARGE_OBJECT_OWNERS`) of one side."""
    path = conn.execute("SELECT pg_catalog.current_setting('search_path')").fetchone()[0]
    conn.execute("SELECT pg_catalog.set_config('search_path', '', false)")  # qualified argument types
    try:
        rows = conn.execute(OWNED_OBJECTS, {"schemas": schemas}).fetchall()
        if large_objects:
            rows += conn.execute(LARGE_OBJECT_OWNERS).fetchall()
    finally:
        conn.execute("SELECT pg_catalog.set_config('search_path', %s, false)", (path,))
    return [Owned(*r) for r in rows]


def target_roles(tgt: psycopg.Connection, names: list[str]) -> dict[str, dict[str, Any]]:
    set_right = sql.Literal("SET" if tgt.info.server_version >= 160000 else "MEMBER")
    with tgt.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(sql.SQL(TARGET_ROLES).format(set=set_right), {"roles": names}).fetchall()
    return {r["rolname"]: r for r in rows}


def role_reason(
    name: str, facts: dict[str, Any] | None, me: dict[str, Any], source_super: bool, create_roles: bool
) -> tuple[str | None, str]:
    """(why ``name`` cannot be an owner on the target or None, the action: ``self``/``member``/``grant``/``create``)."""
    if name == me["rolname"]:
        return None, "self"
    if source_super and not me["rolsuper"]:
        return "a superuser on the source", ""
    if facts is None:
        if not create_roles:
            return "missing on the target (create_roles is off)", ""
        if not me["rolcreaterole"] and not me["rolsuper"]:
            return "missing on the target, and the target role may not create roles (no CREATEROLE)", ""
        return None, "create"
    if facts["rolsuper"] and not me["rolsuper"]:
        return "a superuser on the target", ""
    if facts["can_set"] and facts["usage"]:
        return None, "member"
    if facts["admin"] or me["rolsuper"] or (me["version"] < 160000 and me["rolcreaterole"]):
        return None, "grant"
    if me["version"] >= 160000:
        fix = f"GRANT {name} TO {me['rolname']} WITH ADMIN OPTION, or WITH INHERIT TRUE, SET TRUE"
        return f"a role the target role holds no ADMIN OPTION on (PostgreSQL 16+: {fix})", ""
    return "a role the target role is not a member of (and it has no CREATEROLE)", ""


def analyse(src: psycopg.Connection, tgt: psycopg.Connection, objects: list[Owned], params: dict[str, Any]) -> Analysis:
    """Judge every owner of ``objects`` (read on the source) against the target (see the module doc)."""
    me = roles.self_facts(tgt)
    result = Analysis(mode=mode_of(params, DEFAULT), me=me["rolname"])
    owners = sorted({o.owner for o in objects})
    supers = {r[0] for r in src.execute(SOURCE_SUPERUSERS)}
    facts = target_roles(tgt, owners)
    for name in owners:
        why, action = role_reason(name, facts.get(name), me, name in supers, bool(params.get("create_roles")))
        result.reasons[name] = why
        if action == "create":
            result.to_create.append(name)
        if action in ("create", "grant"):
            result.to_grant.append(name)
    schema_owner = {o.name: o.owner for o in objects if o.kind == "schema"}
    carried_schemas: set[str] = set()
    for obj in sorted(objects, key=lambda o: o.kind != "schema"):  # schemas first: their owners' CREATE
        why = result.reasons[obj.owner]
        if obj.kind == "schema" and obj.owner in facts:  # a role the target has: its CREATE there
            obj = replace(obj, can_create=facts[obj.owner]["db_create"])
        if obj.kind != "schema" and schema_owner.get(obj.schema) == obj.owner:
            # CREATE on its own schema comes with owning it: only if the schema is carried too
            obj = replace(obj, can_create=obj.schema in carried_schemas)
        if why is None and not obj.can_create and obj.owner != me["rolname"]:
            why = "without CREATE on the database" if obj.kind == "schema" else f"without CREATE on schema {obj.schema}"
        if why is None:
            result.carried.append(obj)
            if obj.kind == "schema":
                carried_schemas.add(obj.name)
        else:
            result.kept.append((obj, why))
    return result


# -- pre-flight -------------------------------------------------------------------------------------------


def preflight(src: psycopg.Connection, tgt: psycopg.Connection, schemas: list[str], params: dict[str, Any]) -> list:
    """The ``ownership`` and ``role attributes`` findings (and ``replication apply role`` in replicate mode)."""
    mode = mode_of(params, DEFAULT)
    supers = {r[0] for r in src.execute(SOURCE_SUPERUSERS)}
    grantees = []
    if params.get("create_roles"):  # pre-data creates them (never a source superuser)
        grantees = [r[0] for r in src.execute(catalog.GRANTEES, {"schemas": schemas}) if r[0] not in supers]
    if mode == "target_user":
        out = [finding("ownership", "ok", "ownership: target_user: every object is owned by the target role")]
        return out + role_findings(src, tgt, grantees)
    objects = owned_objects(src, schemas)
    analysis = analyse(src, tgt, objects, params)
    carried_roles = sorted({o.owner for o in analysis.carried if o.owner != analysis.me})
    what = (
        f"{len(analysis.carried)} of {len(objects)} object(s) handed to their source owners after validation"
        + (f" ({', '.join(carried_roles)})" if carried_roles else "")
        + (f"; roles created: {', '.join(analysis.to_create)}" if analysis.to_create else "")
    )
    if analysis.kept:
        verdict = "blocking" if mode == "exact" else "warning"
        tail = " (ownership: exact fails the run on them)" if mode == "exact" else " (they stay the target role's)"
        out = [finding("ownership", verdict, f"{what}; owners not carried{tail}: {analysis.not_carried_text()}")]
    else:
        out = [finding("ownership", "ok", what)]
    out += role_findings(src, tgt, sorted(set(analysis.to_create) | set(grantees)))
    if params.get("mode") == "replicate":
        out += apply_role_finding(tgt, carried_roles)
    return out


def role_findings(src: psycopg.Connection, tgt: psycopg.Connection, names: list[str]) -> list:
    """``role attributes``: per role the run would create, what is not carried (attributes, password)."""
    plan = roles.plan_roles(src, tgt, names)
    if not plan.missing:
        return []
    if not plan.notes:
        return [finding("role attributes", "ok", f"created with their attributes: {', '.join(plan.missing)}")]
    detail = "; ".join(f"{role}: {', '.join(notes)}" for role, notes in sorted(plan.notes.items()))
    return [finding("role attributes", "warning", f"roles created on the target without all of it: {detail}")]


def apply_role_finding(tgt: psycopg.Connection, carried_roles: list[str]) -> list:
    """Replicate mode: as whom the subscription's apply worker will write (``run_as_owner``)."""
    if tgt.info.server_version < 160000:
        return [
            finding(
                "replication apply role",
                "ok",
                "target before PostgreSQL 16: the apply worker writes as the subscription's owner (the target "
                "role), which stays a member of every carried owner",
            )
        ]
    return [
        finding(
            "replication apply role",
            "ok",
            "target PostgreSQL 16+, subscription created with run_as_owner = false: the apply worker writes "
            "every change as the table's owner"
            + (
                f" ({', '.join(carried_roles)}): the hand-over grants the target role SET on each; their "
                "triggers and the tables' row security then act as those owners"
                if carried_roles
                else ""
            ),
        )
    ]


# -- the hand-over (the ownership step) ---------------------------------------------------------------


def hand_over(source: Endpoint, target: Endpoint, run_id: str, app: str = "pg_migration ownership") -> dict[str, Any]:
    """The ``ownership`` step: hand every object to its source owner where the target role may (module
    doc), then read the owners back. Recorded as the run's phase ``ownership`` (its warnings and
    failures go to the report); idempotent (a retry re-grants nothing and re-alters to the same owner)."""
    with target.connect(app, autocommit=True) as tgt:
        run = state.get_run(tgt, run_id) or {}
        params = run.get("params") or {}
        mode = mode_of(params)
        if mode == "target_user" or params.get("validate_only") or params.get("dry_run"):
            return {"mode": mode, "skipped": True}
        schemas = (run.get("plan") or {}).get("schemas") or []
        with source.connect(app, autocommit=True) as src:
            analysis = analyse(src, tgt, owned_objects(src, schemas), params)
            created, notes = roles.create_roles(src, tgt, analysis.to_create) if analysis.to_create else ([], [])
        problems = _grant_self(tgt, analysis.to_grant)
        handed = [o for o in analysis.carried if o.owner not in problems]
        failed, failed_keys = _alter_all(tgt, [o for o in handed if o.owner != analysis.me])
        handed = [o for o in handed if o.key not in failed_keys]
        differences = compare_owners(handed, owned_objects(tgt, schemas))
        kept = [f"{obj.label()} stays the target role's: owner {obj.owner} is {why}" for obj, why in analysis.kept]
        kept += [f"objects of {role} stay the target role's: {why}" for role, why in problems.items()]
        if mode == "exact":
            warnings, failures = notes, [*kept, *failed, *differences]
        else:
            warnings, failures = [*notes, *kept, *failed], differences
        detail = {
            "mode": mode,
            "carried": len(handed),
            "kept": len(analysis.kept),
            "roles": sorted({o.owner for o in analysis.carried} - {analysis.me}),
            "roles_created": created,
            "warnings": warnings,
            "failures": failures,
        }
        state.set_phase(tgt, run_id, PHASE, "failed" if failures else "done", detail)
    for w in warnings:
        log.warning("ownership: %s", w)
    for f in failures:
        log.error("ownership: %s", f)
    return detail


def _grant_self(tgt: psycopg.Connection, names: list[str]) -> dict[str, str]:
    """Make the target role a member of each role, with INHERIT (it reads as the owner later) and SET
    (ALTER ... OWNER TO needs it); returns role -> why that failed."""
    options = " WITH INHERIT TRUE, SET TRUE" if tgt.info.server_version >= 160000 else ""
    problems = {}
    for name in names:
        stmt = sql.SQL("GRANT {} TO CURRENT_USER" + options).format(sql.Identifier(name))
        try:
            with tgt.transaction():
                tgt.execute(stmt)
        except psycopg.Error as exc:
            problems[name] = f"membership not granted: {str(exc).strip().splitlines()[0]}"
    return problems


def _alter_all(tgt: psycopg.Connection, objects: list[Owned]) -> tuple[list[str], set[tuple[str, str, str, str]]]:
    """ALTER ... OWNER TO for each object (schemas first: their owner's CREATE), committed in batches;
    a statement that fails is named (savepoint), the others go on."""
    order = sorted(objects, key=lambda o: (o.kind != "schema", o.kind == "large object"))
    failed, keys = [], set()
    for start in range(0, len(order), BATCH):
        with tgt.transaction():
            for obj in order[start : start + BATCH]:
                try:
                    with tgt.transaction():
                        tgt.execute(obj.alter())
                except psycopg.Error as exc:
                    failed.append(f"{obj.label()}: owner {obj.owner} not set: {str(exc).strip().splitlines()[0]}")
                    keys.add(obj.key)
    return failed, keys


def compare_owners(expected: list[Owned], target: list[Owned]) -> list[str]:
    """Each object of ``expected`` (source owners) whose target owner differs, named (a missing object is
    the structure check's)."""
    have = {o.key: o.owner for o in target}
    out = []
    for obj in expected:
        owner = have.get(obj.key)
        if owner is not None and owner != obj.owner:
            out.append(f"owner of {obj.label()} differs: source {obj.owner}, target {owner}")
    return out


def validate_owners(src: psycopg.Connection, tgt: psycopg.Connection, schema: str) -> list[str]:
    """Validation's owner check of one schema: owners compared wherever the target role has the source
    owner's privileges (it carried to it, or could read as it); the differences named."""
    source = owned_objects(src, [schema], large_objects=False)
    names = sorted({o.owner for o in source})
    members = {r[0] for r in tgt.execute(MEMBER_OF, {"roles": names})}
    supers = {r[0] for r in src.execute(SOURCE_SUPERUSERS)}
    expected = [o for o in source if o.owner in members and o.owner not in supers]
    return compare_owners(expected, owned_objects(tgt, [schema], large_objects=False))
