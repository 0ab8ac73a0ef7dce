"""Validation (the ``validate`` task, one per validation group; the cut-over validates with it too):
prove, per schema and per table, that the target equals the source.

* **Counts** -- ``count(*) FROM ONLY t`` on the target for every table (a parent's own rows;
  children are tables of their own, so nothing is ever counted twice), compared with the count
  the data unit recorded in the run's snapshot. The live source is counted too (ACCESS SHARE only,
  never blocking writers): when it differs from the snapshot count, the table "changed after the
  dump" -- information, not a failure. A target that differs from the snapshot count lost or
  gained rows: a failure.
* **Checksums** (``validation="checksums"``) -- an order-independent checksum per table computed
  in SQL on both sides: ``count(*) || ':' || sum(row hash)`` over ``FROM ONLY t``. No row leaves
  the server. Columns are taken by name (a child's column order can differ after a dump); the
  per-column expressions are decided once, from the SOURCE's catalog (:data:`COLUMN_HASHING`), and
  the very same SQL runs on both sides. A target whose columns differ by name is reported without
  hashing; one whose column types make that SQL fail is reported too (never an abort: the other
  tables are still checked). The row hash is, by the two servers:

  - both PostgreSQL 14+, same encoding (the usual case): ``hash_record_extended(ROW(...), seed)``,
    each value hashed from its binary form by its type's own extended hash function -- no text is
    rendered. Only for types whose hash is a function of the value alone, the same in any database
    and as discriminating as their text (:data:`BINARY_HASHED_TYPES`: built-in base types in
    ``pg_catalog`` with a default hash operator class that has an extended hash function, and
    domains over them); arrays of them also hash ``array_dims`` (the array hash ignores the shape:
    ``{1,2,3,4}`` = ``{{1,2},{3,4}}`` = ``[0:3]={1,2,3,4}``); ``numeric`` hashes its binary send
    form (its hash ignores the scale and makes NaN = Infinity = -Infinity). Collatable values are
    hashed under ``COLLATE "C"`` (a nondeterministic collation would hash 'A' = 'a'). Every other
    column is hashed through its text (``col::text``): enums (``hashenum`` hashes the label's OID,
    which differs between databases), composite types, domains over other types, extension types
    (citext, hstore, ...), json, jsonb (its hash loses nesting: ``[[1],2]`` = ``[[1,2]]``), interval
    (``'1 day'`` = ``'24 hours'`` in its hash), oid and reg* types, aclitem, types without a hash
    operator class (point, xml, money, bit, ranges, ...). NULL hashes as 0, which no value does
    under the (non-zero) seed: NULL, ``''``, ``0`` and ``0.0`` all differ.
    Two differences the text checksum would see are ignored, both between values their types hold
    equal: ``-0`` and ``0`` of float4/float8, and trailing blanks of ``character(n)``.
  - either server older than 14 (no ``hash_record_extended``): ``hashtextextended(ROW(...)::text)``.
  - encodings differ: an md5 of the row text's UTF-8 bytes (the same bytes on both sides).

  The session settings that change a value's text are fixed on both sides.
* **Structure** -- an inventory of tables, columns and types, indexes, constraints, views,
  materialized views, functions, triggers, sequences and privileges, per schema, diffed.
* **Sequences** -- the target's value must be at least what post-data set (never behind); the
  report shows the drift of a live source.
* **Owners** (``owners``: validate-only and cut-over runs with ``ownership`` carry/exact) -- each object's
  owner wherever the target role is a member of the source owner (it was carried), differences named
  (:func:`include.pg_migration.ownership.validate_owners`).
* **Large objects** (:func:`validate_database`) -- count and content, by a digest over 1 MiB
  ``lo_get`` reads (:mod:`include.pg_migration.lo_digest`), both sides in parallel; the seconds it
  took are recorded (``database.large_objects.seconds`` of the report).
* **Row security** -- never counted through a policy: both sides read with ``row_security = off`` (a
  source table the role does not bypass is a mismatch by name, never a filtered count); a target
  table with FORCE ROW LEVEL SECURITY is read with the forcing lifted in a rolled-back transaction.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

import psycopg
from psycopg import sql

from include.pg_migration import ownership, selection, state
from include.pg_migration.conn import Endpoint
from include.pg_migration.errors import SnapshotLost
from include.pg_migration.lo_digest import compare_large_objects, large_object_digests_both
from include.pg_migration.sessions import (
    SOURCE_SETTINGS,
    TARGET_READ_SETTINGS,
    TEXT_SETTINGS,
    apply_settings,
    open_source_snapshot,
)

SCHEMA_TABLES = """
SELECT c.relname FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname = %(schema)s AND c.relkind = 'r' ORDER BY c.relname
"""

#: Tables of a schema with FORCE ROW LEVEL SECURITY: even their owner reads them through the policies, so
#: the target counts and hashes them with the forcing lifted, in a transaction that is rolled back.
FORCED_ROW_SECURITY = """
SELECT c.relname FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname = %(schema)s AND c.relkind = 'r' AND c.relforcerowsecurity
"""

#: Built-in types (``pg_catalog``) hashed from their binary form when the catalog also shows a default
#: hash operator class with an extended hash function (amprocnum 2) -- see the module doc for why
#: the others (enums, jsonb, interval, oid and reg* types, aclitem, ...) are hashed through their text.
#: ``numeric`` hashes its binary send form (exact: scale, NaN, +-Infinity), never inside arrays.
BINARY_HASHED_TYPES = (
    "bool", "char", "int2", "int4", "int8", "float4", "float8", "numeric", "date", "time", "timetz",
    "timestamp", "timestamptz", "uuid", "bytea", "text", "name", "bpchar", "inet", "macaddr", "macaddr8",
    "pg_lsn", "tid", "xid", "xid8", "cid",
)  # fmt: skip

#: Per column of a table (by name): how it is hashed -- ``value`` (its own extended hash), ``numeric``
#: (its binary send form), ``array`` (array hash and ``array_dims``) or ``text``; and whether it is
#: collatable. A domain is judged by its base type. Run on the source (PostgreSQL 14+).
COLUMN_HASHING = """
WITH RECURSIVE col AS (
    SELECT a.attname, a.atttypid AS typid
      FROM pg_catalog.pg_attribute a
      JOIN pg_catalog.pg_class c ON c.oid = a.attrelid JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
     WHERE n.nspname = %(schema)s AND c.relname = %(table)s AND a.attnum > 0 AND NOT a.attisdropped
    UNION ALL
    SELECT col.attname, t.typbasetype FROM col JOIN pg_catalog.pg_type t ON t.oid = col.typid WHERE t.typtype = 'd'
), hashable AS (
    SELECT t.oid, t.typname
      FROM pg_catalog.pg_type t
      JOIN pg_catalog.pg_namespace n ON n.oid = t.typnamespace AND n.nspname = 'pg_catalog'
     WHERE t.typtype = 'b' AND t.typname::pg_catalog.text = ANY(%(types)s::pg_catalog.text[])
       AND EXISTS (SELECT FROM pg_catalog.pg_opclass oc
                     JOIN pg_catalog.pg_am am ON am.oid = oc.opcmethod AND am.amname = 'hash'
                     JOIN pg_catalog.pg_amproc p ON p.amprocfamily = oc.opcfamily AND p.amprocnum = 2
                                                AND p.amproclefttype = t.oid AND p.amprocrighttype = t.oid
                    WHERE oc.opcintype = t.oid AND oc.opcdefault)
)
SELECT col.attname,
       CASE WHEN h.typname = 'numeric' THEN 'numeric'
            WHEN h.oid IS NOT NULL THEN 'value'
            WHEN e.oid IS NOT NULL AND e.typname <> 'numeric' THEN 'array'
            ELSE 'text' END AS kind,
       t.typcollation <> 0 AS collatable
  FROM col
  JOIN pg_catalog.pg_type t ON t.oid = col.typid AND t.typtype <> 'd'
  LEFT JOIN hashable h ON h.oid = t.oid
  LEFT JOIN pg_catalog.pg_type et ON et.typarray = t.oid
  LEFT JOIN hashable e ON e.oid = et.oid
 ORDER BY col.attname COLLATE pg_catalog."C"
"""

COLUMNS_BY_NAME = """
SELECT a.attname FROM pg_catalog.pg_attribute a
  JOIN pg_catalog.pg_class c ON c.oid = a.attrelid JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname = %(schema)s AND c.relname = %(table)s AND a.attnum > 0 AND NOT a.attisdropped
 ORDER BY a.attname COLLATE "C"
"""

#: (kind, name, definition) of every object of a schema; compared as sets between the two sides.
#: ``name`` is text (a ``name`` first column would cut every later row's name to 63 bytes: privileges
#: on long function signatures would then compare equal whoever they are granted to).
INVENTORY = """
WITH ns AS (SELECT oid, nspname, nspowner, nspacl FROM pg_catalog.pg_namespace WHERE nspname = %(schema)s)
SELECT 'table' AS kind, c.relname::text AS name, c.relkind::text AS definition
  FROM pg_catalog.pg_class c JOIN ns ON ns.oid = c.relnamespace WHERE c.relkind IN ('r', 'p', 'f')
UNION ALL
SELECT 'column', c.relname || '.' || a.attname,
       pg_catalog.format_type(a.atttypid, a.atttypmod) || CASE WHEN a.attnotnull THEN ' NOT NULL' ELSE '' END
       || coalesce(' DEFAULT ' || pg_catalog.pg_get_expr(d.adbin, d.adrelid), '')
  FROM pg_catalog.pg_attribute a JOIN pg_catalog.pg_class c ON c.oid = a.attrelid JOIN ns ON ns.oid = c.relnamespace
  LEFT JOIN pg_catalog.pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
 WHERE c.relkind IN ('r', 'p', 'f', 'v', 'm') AND a.attnum > 0 AND NOT a.attisdropped
UNION ALL
SELECT 'index', i.relname, pg_catalog.pg_get_indexdef(x.indexrelid)
  FROM pg_catalog.pg_index x JOIN pg_catalog.pg_class i ON i.oid = x.indexrelid JOIN ns ON ns.oid = i.relnamespace
UNION ALL
SELECT 'constraint', c.relname || '.' || k.conname, pg_catalog.pg_get_constraintdef(k.oid)
  FROM pg_catalog.pg_constraint k JOIN pg_catalog.pg_class c ON c.oid = k.conrelid JOIN ns ON ns.oid = c.relnamespace
 WHERE k.contype <> 'n'  -- NOT NULL (catalogued from 18 on) is compared with the columns
UNION ALL
SELECT CASE c.relkind WHEN 'v' THEN 'view' WHEN 'm' THEN 'materialized view' ELSE 'sequence' END, c.relname, ''
  FROM pg_catalog.pg_class c JOIN ns ON ns.oid = c.relnamespace WHERE c.relkind IN ('v', 'm', 'S')
UNION ALL
SELECT 'function', p.proname || '(' || pg_catalog.pg_get_function_identity_arguments(p.oid) || ')', p.prokind::text
  FROM pg_catalog.pg_proc p JOIN ns ON ns.oid = p.pronamespace
UNION ALL
SELECT 'trigger', c.relname || '.' || t.tgname, t.tgenabled::text
  FROM pg_catalog.pg_trigger t JOIN pg_catalog.pg_class c ON c.oid = t.tgrelid JOIN ns ON ns.oid = c.relnamespace
 WHERE NOT t.tgisinternal
UNION ALL
SELECT 'privilege', a.privilege_type || ' on ' || o.object || ' to '
       || CASE WHEN a.grantee = 0 THEN 'PUBLIC' WHEN a.grantee = o.owner THEN 'OWNER'
               ELSE pg_catalog.pg_get_userbyid(a.grantee) END,
       CASE WHEN a.is_grantable THEN 'WITH GRANT OPTION' ELSE '' END
  FROM (SELECT 'schema ' || ns.nspname AS object, ns.nspowner AS owner,
               coalesce(ns.nspacl, pg_catalog.acldefault('n', ns.nspowner)) AS acl FROM ns
        UNION ALL
        SELECT CASE WHEN c.relkind = 'S' THEN 'sequence ' ELSE 'table ' END || c.relname, c.relowner,
               coalesce(c.relacl, pg_catalog.acldefault(
                   (CASE WHEN c.relkind = 'S' THEN 's' ELSE 'r' END)::"char", c.relowner))
          FROM pg_catalog.pg_class c JOIN ns ON ns.oid = c.relnamespace
         WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f', 'S')
        UNION ALL
        SELECT 'function ' || p.proname || '(' || pg_catalog.pg_get_function_identity_arguments(p.oid) || ')',
               p.proowner, coalesce(p.proacl, pg_catalog.acldefault('f', p.proowner))
          FROM pg_catalog.pg_proc p JOIN ns ON ns.oid = p.pronamespace
        UNION ALL
        SELECT 'type ' || t.typname, t.typowner, coalesce(t.typacl, pg_catalog.acldefault('T', t.typowner))
          FROM pg_catalog.pg_type t JOIN ns ON ns.oid = t.typnamespace
         WHERE t.typtype IN ('d', 'e', 'r', 'm') OR (t.typtype = 'c'
               AND (SELECT relkind FROM pg_catalog.pg_class WHERE oid = t.typrelid) = 'c')
       ) o, LATERAL pg_catalog.aclexplode(o.acl) a
 WHERE a.grantee <> o.owner  -- the owner's own rights are implicit (and grow between versions: MAINTAIN)
"""

DB_SETTINGS = """
SELECT coalesce(r.rolname, '(database)') AS role, unnest(s.setconfig) AS setting
  FROM pg_catalog.pg_db_role_setting s LEFT JOIN pg_catalog.pg_roles r ON r.oid = s.setrole
 WHERE s.setdatabase = (SELECT oid FROM pg_catalog.pg_database WHERE datname = pg_catalog.current_database())
"""


@dataclass
class TableCheck:
    table: str
    source_rows: int | None = None  # in the run's snapshot (recorded by the unit) or live
    target_rows: int | None = None
    source_rows_now: int | None = None  # live source, at validation time
    status: str = "ok"  # ok | mismatch | missing | extra
    note: str = ""
    source_checksum: str | None = None
    target_checksum: str | None = None


@dataclass
class SchemaValidation:
    schema: str
    mode: str
    tables: list[TableCheck] = field(default_factory=list)
    structure_diffs: list[str] = field(default_factory=list)
    sequences: list[dict[str, Any]] = field(default_factory=list)
    mismatches: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.mismatches

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["ok"] = self.ok
        return data


def _count(conn: psycopg.Connection, schema: str, table: str, forced: set[str] = frozenset()) -> int:
    with unforced(conn, schema, table, forced):
        query = sql.SQL("SELECT count(*) FROM ONLY {}").format(sql.Identifier(schema, table))
        return conn.execute(query).fetchone()[0]


def _try_count(
    conn: psycopg.Connection,
    schema: str,
    table: str,
    result: SchemaValidation,
    side: str,
    forced: set[str] = frozenset(),
) -> int | None:
    """:func:`_count`, or None and a mismatch naming the table when the role may not read it (row
    security with ``row_security = off``, no SELECT right, not the owner of a forced table)."""
    try:
        return _count(conn, schema, table, forced)
    except psycopg.errors.InsufficientPrivilege as exc:
        result.mismatches.append(
            f"table {schema}.{table}: cannot be counted on the {side} ({exc.diag.message_primary})"
        )
        return None


@contextlib.contextmanager
def unforced(tgt: psycopg.Connection, schema: str, table: str, forced: set[str]) -> Iterator[None]:
    """Read a target table (autocommit session, ``row_security = off``) never through a policy: one in
    ``forced`` (:data:`FORCED_ROW_SECURITY`) with ``NO FORCE ROW LEVEL SECURITY`` (its owner, the target
    role, may), inside a transaction that is rolled back -- the forcing is never lifted for anyone else."""
    if table not in forced:
        yield
        return
    with tgt.transaction(force_rollback=True):
        tgt.execute("SET LOCAL lock_timeout = '30s'")  # ALTER TABLE takes an ACCESS EXCLUSIVE lock until rollback
        tgt.execute(sql.SQL("ALTER TABLE ONLY {} NO FORCE ROW LEVEL SECURITY").format(sql.Identifier(schema, table)))
        yield


#: Per-row hashes. Binary (both servers 14+): each value by its type's extended hash function; the
#: seed is non-zero so that no value hashes like NULL (0): float 0 and a numeric NaN hash to the seed.
ROW_HASH_BINARY = "pg_catalog.hash_record_extended({row}, {seed})"
ROW_HASH_SEED = 7_316_021_840_211_731_613
#: Text (a server older than 14): the server's built-in 64-bit text hash of the row's text. When the two
#: databases' encodings differ, the same bytes must be hashed on both sides: the row's UTF-8 bytes go
#: through md5 instead.
ROW_HASH = "pg_catalog.hashtextextended({row}::text, 0)"
ROW_HASH_PORTABLE = "('x' || left(pg_catalog.md5(pg_catalog.convert_to({row}::text, 'UTF8')), 16))::bit(64)::bigint"
CHECKSUM = "SELECT count(*)::text || ':' || coalesce(sum({row_hash}), 0)::text FROM ONLY {table}"

C_COLLATION = sql.SQL(' COLLATE pg_catalog."C"')


def checksum_method(src: psycopg.Connection, tgt: psycopg.Connection) -> str:
    """``binary``, ``text`` (a server older than 14) or ``portable`` (the encodings differ)."""
    encodings = {c.execute("SELECT pg_catalog.current_setting('server_encoding')").fetchone()[0] for c in (src, tgt)}
    if len(encodings) > 1:
        return "portable"
    if min(src.info.server_version, tgt.info.server_version) < 140000:
        return "text"
    return "binary"


def column_hashing(conn: psycopg.Connection, schema: str, table: str) -> list[tuple[str, str, bool]]:
    """``(name, kind, collatable)`` of a table's columns by name (:data:`COLUMN_HASHING`); run on the source."""
    params = {"schema": schema, "table": table, "types": list(BINARY_HASHED_TYPES)}
    return [tuple(r) for r in conn.execute(COLUMN_HASHING, params).fetchall()]


def row_hash(columns: list[tuple[str, str, bool]], method: str = "binary") -> sql.Composed:
    """The row-hash expression over ``columns`` (from :func:`column_hashing`): the same SQL on both sides."""
    if method != "binary":
        row = sql.SQL("ROW({})").format(sql.SQL(", ").join(sql.Identifier(name) for name, _, _ in columns))
        return sql.SQL(ROW_HASH_PORTABLE if method == "portable" else ROW_HASH).format(row=row)
    parts: list[sql.Composable] = []
    for name, kind, collatable in columns:
        col = sql.Identifier(name)
        if kind == "numeric":
            parts.append(sql.SQL("pg_catalog.numeric_send({})").format(col))
        elif kind == "text":
            parts.append(sql.SQL("({}::pg_catalog.text)").format(col) + C_COLLATION)
        else:
            parts.append(col + C_COLLATION if collatable else col)
            if kind == "array":
                parts.append(sql.SQL("pg_catalog.array_dims({})").format(col))
    row = sql.SQL("ROW({})").format(sql.SQL(", ").join(parts))
    return sql.SQL(ROW_HASH_BINARY).format(row=row, seed=sql.Literal(ROW_HASH_SEED))


def checksum(conn: psycopg.Connection, schema: str, table: str, row_hash_sql: sql.Composable) -> str:
    """``count:sum-of-row-hashes`` of a table's own rows (``row_hash_sql`` from :func:`row_hash`)."""
    query = sql.SQL(CHECKSUM).format(row_hash=row_hash_sql, table=sql.Identifier(schema, table))
    return conn.execute(query).fetchone()[0]


def inventory(conn: psycopg.Connection, schema: str) -> set[tuple[str, str, str]]:
    conn.execute("SELECT pg_catalog.set_config('search_path', '', false)")
    return {tuple(r) for r in conn.execute(INVENTORY, {"schema": schema}).fetchall()}


def diff_inventory(source: set[tuple[str, str, str]], target: set[tuple[str, str, str]]) -> list[str]:
    diffs = []
    src_by_key = {(k, n): d for k, n, d in source}
    tgt_by_key = {(k, n): d for k, n, d in target}
    for key in sorted(set(src_by_key) | set(tgt_by_key)):
        kind, name = key
        if key not in tgt_by_key:
            diffs.append(f"{kind} {name} missing on the target")
        elif key not in src_by_key:
            diffs.append(f"{kind} {name} exists only on the target")
        elif src_by_key[key] != tgt_by_key[key]:
            diffs.append(f"{kind} {name} differs: source {src_by_key[key]!r}, target {tgt_by_key[key]!r}")
    return diffs


def validate_schema(
    source: Endpoint,
    target: Endpoint,
    schema: str,
    run_id: str | None = None,
    mode: str = "counts",
    snapshot_id: str | None = None,
    structure: bool = True,
    owners: bool = False,
) -> SchemaValidation:
    """Compare one schema on both sides (see module doc). Never raises for a difference: reports it.
    ``owners``: also the owners wherever the target role is a member of the source owner (carried)."""
    started = time.monotonic()
    result = SchemaValidation(schema=schema, mode=mode)
    app = f"pg_migration validate {schema}"[:63]
    with source.connect(app, autocommit=True) as src, target.connect(app, autocommit=True) as tgt:
        apply_settings(src, {**SOURCE_SETTINGS, **TEXT_SETTINGS})
        apply_settings(tgt, {**TARGET_READ_SETTINGS, **TEXT_SETTINGS})
        recorded = state.loaded_tables(tgt, [schema]) if state.exists(tgt) else {}
        run = state.get_run(tgt, run_id) if run_id is not None and state.exists(tgt) else None
        skip, empty = selection.left_out_in((run or {}).get("plan"), schema)  # left out, data left out
        src_tables = [r[0] for r in src.execute(SCHEMA_TABLES, {"schema": schema}) if r[0] not in skip]
        tgt_tables = {r[0] for r in tgt.execute(SCHEMA_TABLES, {"schema": schema})}
        forced = {r[0] for r in tgt.execute(FORCED_ROW_SECURITY, {"schema": schema})}
        for table in src_tables:
            check = TableCheck(table=table)
            result.tables.append(check)
            check.source_rows_now = _try_count(src, schema, table, result, "source")
            if check.source_rows_now is None:
                check.status = "mismatch"
                continue
            rec = recorded.get((schema, table))
            if table in empty:
                check.source_rows, check.note = 0, selection.no_data_note(check.source_rows_now)
            elif run_id is not None and rec is not None:
                check.source_rows = rec["source_rows"]
                if rec["run_id"] != run_id:
                    check.note = f"loaded by run {rec['run_id']} (resume: another snapshot)"
            else:
                check.source_rows = check.source_rows_now
            if table not in tgt_tables:
                check.status = "missing"
                result.mismatches.append(f"table {schema}.{table} is missing on the target")
                continue
            check.target_rows = _try_count(tgt, schema, table, result, "target", forced)
            if check.target_rows is None:
                check.status = "mismatch"
                continue
            if check.target_rows != check.source_rows:
                check.status = "mismatch"
                lost = check.source_rows - check.target_rows
                what = f"{lost} row(s) lost" if lost > 0 else f"{-lost} extra row(s)"
                result.mismatches.append(
                    f"table {schema}.{table}: {what} (source {check.source_rows}, target {check.target_rows})"
                )
            if check.source_rows_now != check.source_rows:
                delta = check.source_rows_now - check.source_rows
                check.note = (
                    check.note + "; " if check.note else ""
                ) + f"changed after the dump ({delta:+d} rows since)"
        for table in sorted(tgt_tables - set(src_tables)):
            rows = _count(tgt, schema, table, forced)
            result.tables.append(TableCheck(table=table, target_rows=rows, status="extra"))
            result.mismatches.append(f"table {schema}.{table} exists only on the target")
        if mode == "checksums":
            _checksums(source, tgt, schema, result, snapshot_id, app, forced)
        if structure:
            source_items = selection.without_left_out(src, schema, inventory(src, schema), skip)
            result.structure_diffs = diff_inventory(source_items, inventory(tgt, schema))
            result.mismatches += [f"structure: {d}" for d in result.structure_diffs]
        if owners:
            differences = ownership.validate_owners(src, tgt, schema)
            result.structure_diffs += differences
            result.mismatches += [f"ownership: {d}" for d in differences]
        _sequences(src, tgt, schema, result, run_id)
    result.seconds = round(time.monotonic() - started, 3)
    return result


def _checksums(
    source: Endpoint,
    tgt: psycopg.Connection,
    schema: str,
    result: SchemaValidation,
    snapshot_id: str | None,
    app: str,
    forced: set[str],
) -> None:
    """Checksums on both sides; the source's in the run's snapshot when it is still held."""
    try:
        src = open_source_snapshot(source, app, snapshot_id)
        in_snapshot = bool(snapshot_id)
    except SnapshotLost:
        src = open_source_snapshot(source, app, None)
        in_snapshot = False
        result.notes.append("checksums: the run's snapshot was released; the source was read live")
    with src:
        apply_settings(src, TEXT_SETTINGS)
        method = checksum_method(src, tgt)
        if method == "text":
            result.notes.append("checksums: row text hashed (a server is older than PostgreSQL 14)")
        elif method == "portable":
            result.notes.append("checksums: md5 of the rows' UTF-8 text (the databases' encodings differ)")
        for check in result.tables:
            if check.status in ("missing", "extra") or check.note.startswith(selection.NO_DATA):
                continue
            problem = _checksum_pair(src, tgt, schema, check, method, forced)
            if problem:
                check.status = "mismatch"
                result.mismatches.append(f"table {schema}.{check.table}: {problem}")
            elif check.source_checksum != check.target_checksum:
                if not in_snapshot and check.source_rows_now != check.source_rows:
                    check.note += "; checksum not comparable (changed after the dump)"
                    continue
                check.status = "mismatch"
                result.mismatches.append(f"table {schema}.{check.table}: content differs (checksum)")


def _checksum_pair(
    src: psycopg.Connection,
    tgt: psycopg.Connection,
    schema: str,
    check: TableCheck,
    method: str,
    forced: set[str] = frozenset(),
) -> str | None:
    """Both checksums of one table into ``check``; what prevented the comparison, if anything.

    A statement error (a target column of another type, a dropped table...) is that table's
    problem: the source's runs in a savepoint (its snapshot transaction stays usable), and the
    other tables are still checked. A lost connection still raises."""
    table = check.table
    side = "source"
    try:
        with src.transaction():
            columns = column_hashing(src, schema, table)
            expr = row_hash(columns, method)
            check.source_checksum = checksum(src, schema, table, expr)
        src_cols = [name for name, _, _ in columns]
        side = "target"
        tgt_cols = [r[0] for r in tgt.execute(COLUMNS_BY_NAME, {"schema": schema, "table": table}).fetchall()]
        if tgt_cols != src_cols:
            only_src = sorted(set(src_cols) - set(tgt_cols))
            only_tgt = sorted(set(tgt_cols) - set(src_cols))
            return (
                f"content not compared: columns differ (only on the source {only_src}, only on the target {only_tgt})"
            )
        with unforced(tgt, schema, table, forced):
            check.target_checksum = checksum(tgt, schema, table, expr)
    except psycopg.OperationalError:
        raise
    except psycopg.DatabaseError as exc:
        message = exc.diag.message_primary or str(exc).strip() or type(exc).__name__
        return f"checksum failed on the {side} ({exc.sqlstate}: {message})"
    return None


def _sequences(
    src: psycopg.Connection, tgt: psycopg.Connection, schema: str, result: SchemaValidation, run_id: str | None
) -> None:
    set_values: dict[str, int] = {}
    if run_id is not None and state.exists(tgt):
        phase = state.phases_of_run(tgt, run_id).get("post-data")
        for s in (phase or {}).get("detail", {}).get("sequences", []):
            if s["schema"] == schema:
                set_values[s["name"]] = s["value"]
    names = [
        r[0]
        for r in src.execute(
            "SELECT c.relname FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = %s AND c.relkind = 'S' ORDER BY 1",
            (schema,),
        )
    ]
    for name in names:
        ident = sql.Identifier(schema, name)
        src_value = src.execute(sql.SQL("SELECT last_value FROM {}").format(ident)).fetchone()[0]
        try:
            tgt_value = tgt.execute(sql.SQL("SELECT last_value FROM {}").format(ident)).fetchone()[0]
        except psycopg.errors.UndefinedTable:
            continue  # reported by the structure check
        floor = set_values.get(name, src_value)
        entry = {"sequence": name, "source": src_value, "target": tgt_value, "drift": src_value - tgt_value}
        result.sequences.append(entry)
        if tgt_value < floor:
            result.mismatches.append(
                f"sequence {schema}.{name} is behind: target {tgt_value}, expected at least {floor}"
            )
        elif src_value != tgt_value:
            result.notes.append(
                f"sequence {schema}.{name} drifted by {src_value - tgt_value} since post-data (live source)"
            )


def validate_database(source: Endpoint, target: Endpoint) -> dict[str, Any]:
    """Database-wide checks: large objects (count and content, :func:`.lo_digest.large_object_digests`, both sides
    in parallel; the time it took is recorded) and database-level settings."""
    with (
        source.connect("pg_migration validate", autocommit=True) as src,
        target.connect("pg_migration validate", autocommit=True) as tgt,
    ):
        apply_settings(src, SOURCE_SETTINGS)
        apply_settings(tgt, TARGET_READ_SETTINGS)
        started = time.monotonic()
        src_lo, tgt_lo = large_object_digests_both(src, tgt)
        lo_seconds = round(time.monotonic() - started, 3)
        settings = [{tuple(r) for r in c.execute(DB_SETTINGS).fetchall()} for c in (src, tgt)]
    mismatches = []
    if len(src_lo) != len(tgt_lo):
        mismatches.append(f"large objects: source {len(src_lo)}, target {len(tgt_lo)}")
    mismatches += compare_large_objects(src_lo, tgt_lo)
    for role, setting in sorted(settings[0] - settings[1]):
        mismatches.append(f"setting {setting!r} of {role} missing on the target")
    large_objects = {"source": len(src_lo), "target": len(tgt_lo), "content": "digest", "seconds": lo_seconds}
    return {"large_objects": large_objects, "mismatches": mismatches}


def validate_and_record(
    source: Endpoint,
    target: Endpoint,
    schema: str,
    record_as: str,
    *,
    run_id: str | None = None,
    mode: str = "counts",
    snapshot_id: str | None = None,
    owners: bool = False,
    logger: logging.Logger | None = None,
) -> dict[str, Any]:
    """:func:`validate_schema`, stored in ``_pg_migration.validations`` under ``record_as`` (the
    report reads it from there) and logged; returns a short summary."""
    logger = logger or logging.getLogger(__name__)
    result = validate_schema(source, target, schema, run_id=run_id, mode=mode, snapshot_id=snapshot_id, owners=owners)
    with target.connect("pg_migration validate", autocommit=True) as conn:
        state.save_validation(conn, record_as, schema, result.to_dict())
    for m in result.mismatches:
        logger.error("MISMATCH %s", m)
    logger.info(
        "schema %s: %d table(s) checked, %d mismatch(es) in %.1fs",
        schema,
        len(result.tables),
        len(result.mismatches),
        result.seconds,
    )
    return {"schema": schema, "ok": result.ok, "mismatches": len(result.mismatches)}
