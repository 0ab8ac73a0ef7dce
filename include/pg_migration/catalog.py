"""Catalog queries (named constants, ``pg_catalog``-qualified) and schema discovery.

Every query here is read-only and takes no lock beyond what a catalog read takes, so it is safe
on a production source.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from typing import Any

import psycopg

from include.pg_migration import STATE_SCHEMA, selection
from include.pg_migration.conn import Endpoint
from include.pg_migration.errors import ConfigError, PlanError

#: Schemas that are never migrated (system, toast, temp, our own state, extension-owned).
SCHEMAS = """
SELECT n.nspname AS schema,
       coalesce(sum(pg_catalog.pg_total_relation_size(c.oid))
                FILTER (WHERE c.relkind IN ('r', 'm', 'p')), 0)::bigint AS bytes,
       count(c.oid) FILTER (WHERE c.relkind IN ('r', 'p'))::int AS tables,
       count(c.oid)::int AS objects
  FROM pg_catalog.pg_namespace n
  LEFT JOIN pg_catalog.pg_class c ON c.relnamespace = n.oid
 WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', %(state_schema)s)
   AND n.nspname !~ '^pg_(toast|temp_)'
   AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d
                    WHERE d.classid = 'pg_catalog.pg_namespace'::pg_catalog.regclass
                      AND d.objid = n.oid AND d.deptype = 'e')
 GROUP BY n.nspname
 ORDER BY n.nspname
"""

#: Tables (plain, partitioned, partitions, inheritance parents/children, unlogged, foreign) of some schemas.
TABLES = """
SELECT c.oid::bigint AS oid, n.nspname AS schema, c.relname AS name, c.relkind::text AS kind,
       c.relpersistence::text AS persistence, c.relispartition AS is_partition,
       (pg_catalog.pg_relation_size(c.oid)
        + coalesce(pg_catalog.pg_total_relation_size(NULLIF(c.reltoastrelid, 0)), 0))::bigint AS bytes,
       greatest(c.reltuples, 0)::bigint AS est_rows,
       EXISTS (SELECT 1 FROM pg_catalog.pg_constraint k
                WHERE k.conrelid = c.oid AND k.contype = 'p') AS has_pk,
       (SELECT pn.nspname FROM pg_catalog.pg_inherits i
          JOIN pg_catalog.pg_class p ON p.oid = i.inhparent
          JOIN pg_catalog.pg_namespace pn ON pn.oid = p.relnamespace
         WHERE i.inhrelid = c.oid LIMIT 1) AS parent_schema
  FROM pg_catalog.pg_class c
  JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname = ANY(%(schemas)s) AND c.relkind IN ('r', 'p', 'f')
 ORDER BY n.nspname, c.relname
"""

#: Columns a COPY moves (no dropped or generated ones), with whether binary COPY is safe for them:
#: built-in types (same OIDs and wire format everywhere), enums, and domains over built-in types.
#: Not arrays or composites of user-defined types: their binary form embeds type OIDs.
COPY_COLUMNS = """
SELECT a.attname AS name,
       CASE WHEN t.typtype = 'e' THEN true  -- an enum's binary form is its label
            WHEN t.typtype = 'd' THEN        -- a domain travels as its base type (checked on receipt)
                 b.oid < 16384 AND b.typsend <> 0 AND b.typreceive <> 0 AND (b.typelem = 0 OR b.typelem < 16384)
            ELSE t.oid < 16384 AND t.typsend <> 0 AND t.typreceive <> 0 AND (t.typelem = 0 OR t.typelem < 16384)
       END AS binary_ok
  FROM pg_catalog.pg_attribute a
  JOIN pg_catalog.pg_type t ON t.oid = a.atttypid
  LEFT JOIN pg_catalog.pg_type b ON b.oid = t.typbasetype
 WHERE a.attrelid = %(oid)s AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = ''
 ORDER BY a.attnum
"""

#: A table's file in the snapshot (pg_class as the transaction's snapshot sees it) and now
#: (``pg_relation_filenode`` reads the live catalog): they differ once the table was rewritten or
#: truncated after the snapshot was taken -- which that snapshot cannot see (not MVCC-safe).
FILENODES = """
SELECT c.relfilenode::bigint AS in_snapshot, pg_catalog.pg_relation_filenode(c.oid)::bigint AS live
  FROM pg_catalog.pg_class c
 WHERE c.oid = %(oid)s
"""

TABLE_OID = """
SELECT c.oid::bigint FROM pg_catalog.pg_class c
  JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname = %(schema)s AND c.relname = %(name)s
"""

#: Indexes and constraints by the table they belong to (to hand post-data DDL to the unit loading that table).
INDEX_OWNERS = """
SELECT n.nspname AS schema, i.relname AS name, tn.nspname AS table_schema, t.relname AS table_name
  FROM pg_catalog.pg_index x
  JOIN pg_catalog.pg_class i ON i.oid = x.indexrelid
  JOIN pg_catalog.pg_namespace n ON n.oid = i.relnamespace
  JOIN pg_catalog.pg_class t ON t.oid = x.indrelid
  JOIN pg_catalog.pg_namespace tn ON tn.oid = t.relnamespace
 WHERE n.nspname = ANY(%(schemas)s)
"""

CONSTRAINT_OWNERS = """
SELECT n.nspname AS schema, t.relname || ' ' || k.conname AS name, k.contype::text AS type,
       n.nspname AS table_schema, t.relname AS table_name
  FROM pg_catalog.pg_constraint k
  JOIN pg_catalog.pg_class t ON t.oid = k.conrelid
  JOIN pg_catalog.pg_namespace n ON n.oid = t.relnamespace
 WHERE n.nspname = ANY(%(schemas)s)
"""

SERVER_VERSION = "SELECT current_setting('server_version_num')::int"

SEQUENCES = """
SELECT n.nspname AS schema, c.relname AS name
  FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
 WHERE c.relkind = 'S' AND n.nspname = ANY(%(schemas)s)
 ORDER BY 1, 2
"""

MATVIEWS = """
SELECT n.nspname AS schema, c.relname AS name, c.relispopulated AS populated
  FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
 WHERE c.relkind = 'm' AND n.nspname = ANY(%(schemas)s)
 ORDER BY 1, 2
"""

LARGE_OBJECTS = "SELECT oid::bigint FROM pg_catalog.pg_largeobject_metadata ORDER BY oid"

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

DATABASE_SETTINGS = """
SELECT r.rolname AS role, s.setconfig AS settings
  FROM pg_catalog.pg_db_role_setting s
  LEFT JOIN pg_catalog.pg_roles r ON r.oid = s.setrole
 WHERE s.setdatabase = (SELECT oid FROM pg_catalog.pg_database WHERE datname = pg_catalog.current_database())
 ORDER BY r.rolname NULLS FIRST
"""

#: Objects in selected schemas that depend on objects in schemas outside the selection.
OUTSIDE_DEPENDENCIES = """
SELECT DISTINCT n.nspname AS schema, c.relname AS object, pn.nspname AS needs_schema, p.relname AS needs_object
  FROM pg_catalog.pg_inherits i
  JOIN pg_catalog.pg_class c ON c.oid = i.inhrelid
  JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
  JOIN pg_catalog.pg_class p ON p.oid = i.inhparent
  JOIN pg_catalog.pg_namespace pn ON pn.oid = p.relnamespace
 WHERE n.nspname = ANY(%(schemas)s) AND NOT pn.nspname = ANY(%(schemas)s)
UNION
SELECT DISTINCT n.nspname, c.relname || '.' || k.conname, rn.nspname, r.relname
  FROM pg_catalog.pg_constraint k
  JOIN pg_catalog.pg_class c ON c.oid = k.conrelid
  JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
  JOIN pg_catalog.pg_class r ON r.oid = k.confrelid
  JOIN pg_catalog.pg_namespace rn ON rn.oid = r.relnamespace
 WHERE k.contype = 'f' AND n.nspname = ANY(%(schemas)s) AND NOT rn.nspname = ANY(%(schemas)s)
ORDER BY 1, 2
"""

SYSTEM_SCHEMA = re.compile(r"^(pg_catalog|information_schema|pg_toast.*|pg_temp_.*)$")


@dataclass
class Table:
    schema: str
    name: str
    kind: str = "r"  # r plain/child/partition, p partitioned (no data), f foreign
    bytes: int = 0
    est_rows: int = 0
    has_pk: bool = True
    is_partition: bool = False
    persistence: str = "p"
    parent_schema: str | None = None

    @property
    def qualified(self) -> str:
        return f"{self.schema}.{self.name}"

    @property
    def holds_data(self) -> bool:
        """Only plain tables hold rows of their own (a partitioned table's rows live in its partitions)."""
        return self.kind == "r"


@dataclass
class Schema:
    name: str
    bytes: int = 0
    objects: int = 0
    tables: list[Table] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Schema:
        return cls(
            name=data["name"],
            bytes=data.get("bytes", 0),
            objects=data.get("objects", 0),
            tables=[Table(**t) for t in data.get("tables", [])],
        )


def server_version(conn: psycopg.Connection) -> int:
    """``server_version_num``, e.g. 150018."""
    return conn.execute(SERVER_VERSION).fetchone()[0]


#: The oldest source major the migration reads (``pg_attribute.attgenerated``, ``pg_proc.prokind``,
#: ``pg_index.indnkeyatts``: PostgreSQL 12); older sources are refused before anything is written.
MIN_SOURCE_MAJOR = 12


def version_text(version_num: int) -> str:
    """``server_version_num`` as people write it: 150018 -> 15.18, 90624 -> 9.6.24."""
    if version_num >= 100000:
        return f"{version_num // 10000}.{version_num % 10000}"
    return f"{version_num // 10000}.{version_num // 100 % 100}.{version_num % 100}"


def unsupported_source(version_num: int) -> str | None:
    """Why a source of this ``server_version_num`` is refused, or None (12 or newer)."""
    if version_num // 10000 >= MIN_SOURCE_MAJOR:
        return None
    return (
        f"PostgreSQL {version_text(version_num)} is not supported as a source: {MIN_SOURCE_MAJOR} or newer is "
        "needed (the migration reads attgenerated, prokind and indnkeyatts of the source's catalog); "
        "upgrade the source first"
    )


def discover(
    conn: psycopg.Connection,
    include: list[str] | None = None,
    exclude: list[str] | None = None,
) -> list[Schema]:
    """The schemas to migrate, with sizes and tables; unknown requested schemas raise, naming them."""
    include = [s for s in (include or []) if s is not None]
    exclude = [s for s in (exclude or []) if s is not None]
    for name in include:
        if SYSTEM_SCHEMA.match(name) or name == STATE_SCHEMA:
            raise PlanError(f"schema {name!r} is a system schema and cannot be migrated")
    rows = conn.execute(SCHEMAS, {"state_schema": STATE_SCHEMA}).fetchall()
    found = {r[0]: r for r in rows}
    missing = [s for s in include if s not in found]
    if missing:
        raise PlanError(
            "schema(s) not found in the source: "
            + ", ".join(repr(s) for s in missing)
            + f" (the source has: {', '.join(repr(s) for s in sorted(found)) or 'none'})"
        )
    unknown_excludes = [s for s in exclude if s not in found]
    if unknown_excludes:
        raise PlanError(
            "exclude_schemas names schema(s) not in the source: " + ", ".join(repr(s) for s in unknown_excludes)
        )
    selected = [s for s in (include or sorted(found)) if s not in exclude]
    # `public` with nothing in it is not worth a unit; any other empty schema still gets created.
    selected = [s for s in selected if not (s == "public" and found[s][3] == 0 and "public" not in include)]
    schemas = {s: Schema(name=s, bytes=found[s][1], objects=found[s][3]) for s in selected}
    if schemas:
        with conn.cursor(row_factory=psycopg.rows.dict_row) as cur:
            for row in cur.execute(TABLES, {"schemas": list(schemas)}):
                row.pop("oid")
                schemas[row["schema"]].tables.append(Table(**row))
    return list(schemas.values())


def outside_dependencies(conn: psycopg.Connection, schemas: list[str]) -> list[dict[str, str]]:
    """Inheritance parents and FK targets that live outside the selected schemas."""
    with conn.cursor(row_factory=psycopg.rows.dict_row) as cur:
        return cur.execute(OUTSIDE_DEPENDENCIES, {"schemas": schemas}).fetchall()


def inventory(
    source: Endpoint, include: list[str] | None, exclude: list[str] | None, tables: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The ``discover`` task's work: the source's version, the selected schemas (sizes, tables) and
    what they depend on outside the selection. Unknown requested schemas raise, naming them.
    ``tables``: the table-level selection's params (:mod:`.selection`: ``tables``, ``exclude_tables``,
    ``exclude_table_data``); what it leaves out is the inventory's ``selection``."""
    with source.connect("pg_migration discover", autocommit=True) as conn:
        version = server_version(conn)
        problem = unsupported_source(version)
        if problem:  # refused by its version, before a catalog query of 12+ fails on it
            raise ConfigError(f"{source.describe()}: {problem}")
        schemas = discover(conn, include, exclude)
        schemas, left_out = selection.choose(conn, selection.Selection.of(tables), schemas)
        outside = outside_dependencies(conn, [s.name for s in schemas]) if schemas else []
    found = {"server_version_num": version, "schemas": [s.to_dict() for s in schemas], "outside_dependencies": outside}
    return {**found, "selection": left_out} if left_out else found
