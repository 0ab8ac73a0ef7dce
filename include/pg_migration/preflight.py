"""Pre-flight checks: everything knowable before a single byte is written to the target.

Each check yields a finding ``{"check", "verdict": "ok"|"warning"|"blocking", "detail"}``. The DAG
logs them all, writes them to the report, and fails the run before anything is written when one
is blocking. Every query is read-only.
"""

from __future__ import annotations

from typing import Any

import psycopg

from include.pg_migration import catalog, pgtools
from include.pg_migration.conn import Endpoint
from include.pg_migration.errors import MigrationError

EXTENSIONS_USED = "SELECT extname FROM pg_catalog.pg_extension WHERE extname <> 'plpgsql' ORDER BY 1"
EXTENSIONS_AVAILABLE = """
SELECT a.name, a.installed_version IS NOT NULL AS installed,
       coalesce((SELECT bool_or(v.trusted) FROM pg_catalog.pg_available_extension_versions v
                  WHERE v.name = a.name), false) AS trusted
  FROM pg_catalog.pg_available_extensions a
"""

#: Roles named by grants on objects of the selected schemas.
GRANTEES = """
WITH acls AS (
    SELECT nspacl AS acl FROM pg_catalog.pg_namespace WHERE nspname = ANY(%(schemas)s)
    UNION ALL
    SELECT c.relacl FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
     WHERE n.nspname = ANY(%(schemas)s)
    UNION ALL
    SELECT p.proacl FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
     WHERE n.nspname = ANY(%(schemas)s)
    UNION ALL
    SELECT t.typacl FROM pg_catalog.pg_type t JOIN pg_catalog.pg_namespace n ON n.oid = t.typnamespace
     WHERE n.nspname = ANY(%(schemas)s)
)
SELECT DISTINCT pg_catalog.pg_get_userbyid(a.grantee) AS role
  FROM acls, LATERAL pg_catalog.aclexplode(acls.acl) a
 WHERE acls.acl IS NOT NULL AND a.grantee <> 0
 ORDER BY 1
"""

OWNERS = """
SELECT DISTINCT pg_catalog.pg_get_userbyid(c.relowner) FROM pg_catalog.pg_class c
  JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = ANY(%(schemas)s)
"""

CONNECTIONS = """
SELECT current_setting('max_connections')::int
       - current_setting('superuser_reserved_connections')::int
       - (SELECT count(*) FROM pg_catalog.pg_stat_activity WHERE backend_type = 'client backend')
"""

ENCODING = """
SELECT pg_catalog.pg_encoding_to_char(encoding), datcollate, datctype
  FROM pg_catalog.pg_database WHERE datname = pg_catalog.current_database()
"""

TARGET_SCHEMA_OBJECTS = """
SELECT n.nspname, count(c.oid)::int FROM pg_catalog.pg_namespace n
  LEFT JOIN pg_catalog.pg_class c ON c.relnamespace = n.oid
 WHERE n.nspname = ANY(%(schemas)s) GROUP BY n.nspname
"""

#: Sessions one unit opens at most (source: admin + copy; target: control + load + index builder).
SESSIONS_PER_UNIT = {"source": 2, "target": 3}


def finding(check: str, verdict: str, detail: str) -> dict[str, str]:
    return {"check": check, "verdict": verdict, "detail": detail}


def run(source: Endpoint, target: Endpoint, inventory: dict[str, Any], params: dict[str, Any]) -> list[dict[str, str]]:
    schemas = [s["name"] for s in inventory["schemas"]]
    tables = [t for s in inventory["schemas"] for t in s["tables"]]
    out: list[dict[str, str]] = []
    with source.connect("pg_migration preflight", autocommit=True) as src:
        try:
            tgt = target.connect("pg_migration preflight", autocommit=True)
        except MigrationError as exc:
            return [finding("target connection", "blocking", str(exc))]
        with tgt:
            out += _versions(src, tgt)
            out += _encodings(src, tgt)
            out += _extensions(src, tgt)
            out += _roles(src, tgt, schemas, params)
            out += _connections(src, tgt, params)
            out += _target_schemas(tgt, schemas, params)
    out += _dependencies(inventory)
    out += _tables(tables)
    return out


def _versions(src: psycopg.Connection, tgt: psycopg.Connection) -> list[dict[str, str]]:
    sv, tv = catalog.server_version(src), catalog.server_version(tgt)
    out = [
        finding(
            "server versions",
            "ok" if tv // 10000 >= sv // 10000 else "warning",
            f"source {sv // 10000}.{sv % 10000}, target {tv // 10000}.{tv % 10000}"
            + (
                ""
                if tv // 10000 >= sv // 10000
                else ": the target is older; text COPY is used and newer syntax may fail"
            ),
        )
    ]
    try:
        tool = pgtools.choose(sv)
        note = f"pg_dump {tool.version} ({tool.path})"
        if tool.major > tv // 10000:
            note += f"; it is newer than the target ({tv // 10000}): settings the target lacks are dropped"
        out.append(finding("pg_dump", "ok", note))
    except MigrationError as exc:
        out.append(finding("pg_dump", "blocking", str(exc)))
    return out


def _encodings(src: psycopg.Connection, tgt: psycopg.Connection) -> list[dict[str, str]]:
    s_enc, s_coll, s_ctype = src.execute(ENCODING).fetchone()
    t_enc, t_coll, t_ctype = tgt.execute(ENCODING).fetchone()
    if s_enc == t_enc:
        verdict, note = "ok", f"both {s_enc}"
    elif s_enc == "SQL_ASCII":
        verdict, note = (
            "warning",
            (
                f"source is SQL_ASCII (any bytes), target {t_enc}: values that are not valid "
                f"{t_enc} will fail the load of their table"
            ),
        )
    else:
        verdict, note = "warning", f"source {s_enc} is converted to {t_enc} by the server while loading"
    out = [finding("encoding", verdict, note)]
    if (s_coll, s_ctype) != (t_coll, t_ctype):
        out.append(
            finding(
                "collation",
                "warning",
                f"source {s_coll}/{s_ctype}, target {t_coll}/{t_ctype}: "
                "text sort order (and so index order) may differ",
            )
        )
    return out


def _extensions(src: psycopg.Connection, tgt: psycopg.Connection) -> list[dict[str, str]]:
    used = [r[0] for r in src.execute(EXTENSIONS_USED)]
    available = {name: (installed, trusted) for name, installed, trusted in tgt.execute(EXTENSIONS_AVAILABLE)}
    superuser = tgt.execute("SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user").fetchone()[0]
    missing = [e for e in used if e not in available]
    if missing:
        return [finding("extensions", "blocking", "the target does not have: " + ", ".join(missing)
                        + " (on Aurora: see rds.allowed_extensions; ask the administrator)")]
    to_create = [e for e in used if not available[e][0]]
    untrusted = [e for e in to_create if not available[e][1] and not superuser]
    out = [finding("extensions", "ok", (f"used: {', '.join(used)}" if used else "none used")
                   + (f"; to be created: {', '.join(to_create)}" if to_create else ""))]
    if untrusted:
        out.append(finding("untrusted extensions", "warning",
                           f"{', '.join(untrusted)} can only be created by a superuser (on Aurora: rds_superuser): "
                           "ask the administrator to create them in the target database first"))
    return out


def _roles(
    src: psycopg.Connection, tgt: psycopg.Connection, schemas: list[str], params: dict[str, Any]
) -> list[dict[str, str]]:
    grantees = [r[0] for r in src.execute(GRANTEES, {"schemas": schemas})]
    owners = sorted(r[0] for r in src.execute(OWNERS, {"schemas": schemas}))
    have = {r[0] for r in tgt.execute("SELECT rolname FROM pg_catalog.pg_roles")}
    missing = [g for g in grantees if g not in have and g not in owners]
    out = [
        finding(
            "object owners",
            "ok",
            f"{', '.join(owners) or 'none'}: objects will be owned by the target "
            f"user (no ownership commands: the target is not superuser)",
        )
    ]
    if missing:
        action = "will be created NOLOGIN (create_roles)" if params.get("create_roles") else "their grants are skipped"
        out.append(
            finding("roles", "warning", f"grants name roles missing on the target: {', '.join(missing)}; {action}")
        )
    else:
        out.append(finding("roles", "ok", f"grantees present on the target: {', '.join(grantees) or 'none'}"))
    return out


def _connections(src: psycopg.Connection, tgt: psycopg.Connection, params: dict[str, Any]) -> list[dict[str, str]]:
    pool = int(params.get("pool_size") or 4)
    out = []
    for side, conn in (("source", src), ("target", tgt)):
        free = conn.execute(CONNECTIONS).fetchone()[0]
        need = pool * SESSIONS_PER_UNIT[side] + 2
        verdict = "ok" if free >= need else ("warning" if free >= pool else "blocking")
        out.append(finding(f"{side} connections", verdict, f"{free} free, {need} needed for a pool of {pool}"))
    return out


def _target_schemas(tgt: psycopg.Connection, schemas: list[str], params: dict[str, Any]) -> list[dict[str, str]]:
    existing = {n: c for n, c in tgt.execute(TARGET_SCHEMA_OBJECTS, {"schemas": schemas}).fetchall() if n != "public"}
    if params.get("validate_only") or params.get("resume"):
        return []
    non_empty = [f"{n} ({c} objects)" for n, c in sorted(existing.items()) if c]
    if non_empty:
        return [
            finding(
                "target schemas", "warning", "already on the target and replaced by this run: " + ", ".join(non_empty)
            )
        ]
    return [finding("target schemas", "ok", "none of the selected schemas holds objects on the target")]


def _dependencies(inventory: dict[str, Any]) -> list[dict[str, str]]:
    outside = inventory.get("outside_dependencies") or []
    if outside:
        names = "; ".join(f"{d['schema']}.{d['object']} needs {d['needs_schema']}.{d['needs_object']}" for d in outside)
        return [
            finding(
                "dependencies",
                "blocking",
                "objects depend on schemas outside the selection: "
                + names
                + " (add those schemas, or migrate them first)",
            )
        ]
    return [finding("dependencies", "ok", "no dependency on schemas outside the selection")]


def _tables(tables: list[dict[str, Any]]) -> list[dict[str, str]]:
    out = []
    no_pk = [f"{t['schema']}.{t['name']}" for t in tables if t["kind"] == "r" and not t["has_pk"]]
    if no_pk:
        out.append(
            finding(
                "tables without a primary key",
                "warning",
                ", ".join(no_pk[:50]) + (f" and {len(no_pk) - 50} more" if len(no_pk) > 50 else ""),
            )
        )
    unlogged = [f"{t['schema']}.{t['name']}" for t in tables if t["persistence"] == "u"]
    if unlogged:
        out.append(
            finding(
                "unlogged tables",
                "warning",
                "copied, and unlogged on the target too (emptied by a crash): " + ", ".join(unlogged),
            )
        )
    foreign = [f"{t['schema']}.{t['name']}" for t in tables if t["kind"] == "f"]
    if foreign:
        out.append(
            finding(
                "foreign tables",
                "warning",
                "definitions only (their data lives elsewhere; the "
                "foreign server must exist on the target): " + ", ".join(foreign),
            )
        )
    return out
