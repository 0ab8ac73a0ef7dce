"""Deterministic demo warehouse generator.

``load_warehouse(conninfo, scale, seed)`` fills an empty PostgreSQL database
with a small, deliberately awkward data warehouse: a dozen schemas of very
different sizes (one of them empty, one named ``"Reporting Mart"``), table
inheritance across schemas (including a child attached with ``ALTER TABLE ...
INHERIT`` whose column order differs from its parent's), a range-partitioned
table with a partition in another schema, JSON documents over 1 MB stored as
text, large objects, cross-schema and self-referencing foreign keys, identity,
serial and standalone sequences, views, a materialized view, triggers,
comments, grants and a database-level ``search_path``.

All rows are generated server-side from ``generate_series`` and hash/arithmetic
expressions of the row number, so the same ``(scale, seed)`` always yields the
same data.  The SQL lives in :mod:`.warehouse_sql` (definitions), :mod:`.warehouse_rows` (data) and
:mod:`.warehouse_post` (indexes, keys, views, grants).
"""

from __future__ import annotations

import logging
import math
import time
from typing import Any

import psycopg
from psycopg import sql

from . import warehouse_post as post
from . import warehouse_rows as rows
from . import warehouse_sql
from .warehouse_sql import Block

#: The blocks of the load transaction, in this order (definitions, data, then what spans tables).
LOAD_BLOCKS: tuple[Block, ...] = (
    warehouse_sql.HELPERS,
    warehouse_sql.SCHEMAS,
    warehouse_sql.FUNCTIONS,
    warehouse_sql.TABLES,
    rows.REFERENCE_DATA,
    rows.HR_DATA,
    rows.CRM_DATA,
    rows.INVENTORY_DATA,
    rows.SALES_DATA,
    rows.SALES_DOCUMENTS,
    rows.ANALYTICS_DATA,
    rows.FINANCE_DATA,
    rows.STAGING_DATA,
    post.INDEXES,
    post.CONSTRAINTS,
    post.TRIGGERS,
    post.VIEWS,
    post.COMMENTS,
    post.PRIVILEGES,
    post.DATABASE_SETTINGS,
)

log = logging.getLogger(__name__)

# Every schema the generator creates, biggest first (at any scale).
SCHEMAS: tuple[str, ...] = (
    "sales",
    "analytics",
    "finance",
    "crm",
    "archive",
    "inventory",
    "staging",
    "hr",
    "Reporting Mart",
    "ref",
    "util",
    "sandbox",
)

# OIDs of the large objects are fixed so that loads are reproducible:
# 1000000 + crm.customer_documents.document_id.
LARGE_OBJECT_OID_BASE = 1_000_000

# Row counts at scale 1.0 and the floor applied at small scales so that every
# table keeps some rows.  Reference tables (countries, currencies, departments,
# warehouses, accounts, KPI targets) have fixed sizes.
BASE_COUNTS: dict[str, int] = {
    "customers": 10_000,
    "customer_docs": 20,
    "products": 3_000,
    "employees": 300,
    "orders": 30_000,
    "order_docs": 400,
    "big_docs": 2,
    "events_parent": 5_000,
    "events_2023": 5_000,
    "events_2024": 10_000,
    "events_2025": 10_000,
    "events_legacy": 2_000,
    "ledger": 40_000,
    "raw_clicks": 5_000,
}
MIN_COUNTS: dict[str, int] = {
    "customers": 100,
    "customer_docs": 3,
    "products": 50,
    "employees": 30,
    "orders": 200,
    "order_docs": 10,
    "big_docs": 1,
    "events_parent": 50,
    "events_2023": 50,
    "events_2024": 50,
    "events_2025": 50,
    "events_legacy": 20,
    "ledger": 300,
    "raw_clicks": 100,
}

_KINDS = {
    "r": "table",
    "partition": "partition",
    "p": "partitioned table",
    "m": "materialized view",
}


class WarehouseError(RuntimeError):
    """The target database cannot receive the demo warehouse."""


def plan_counts(scale: float) -> dict[str, int]:
    """Row counts for the scaled tables at ``scale``."""
    if not (isinstance(scale, (int, float)) and math.isfinite(scale) and scale > 0):
        raise ValueError(f"scale must be a positive number, got {scale!r}")
    return {name: max(MIN_COUNTS[name], round(base * scale)) for name, base in BASE_COUNTS.items()}


def load_warehouse(conninfo: str, scale: float = 1.0, seed: int = 42) -> dict[str, Any]:
    """Create and fill the demo warehouse in the (empty) database ``conninfo``.

    Must run as a superuser, or as the database owner if the roles
    ``wh_reader``/``wh_writer`` already exist (otherwise CREATEROLE is needed
    too).  Everything except the two cluster-wide roles is created in a single
    transaction: on failure the database is left as it was.

    Returns the summary built by :func:`warehouse_summary` plus ``scale``,
    ``seed``, ``counts`` (planned row counts) and ``load_seconds``.
    """
    counts = plan_counts(scale)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ValueError(f"seed must be an integer, got {seed!r}")

    started = time.perf_counter()
    with psycopg.connect(conninfo, autocommit=True) as conn:
        _check_empty(conn)
        try:
            _run_block(conn, warehouse_sql.ROLES)
        except psycopg.errors.InsufficientPrivilege as exc:
            raise WarehouseError(
                "roles wh_reader/wh_writer are missing and the connecting role may not create "
                f"them ({exc.diag.message_primary}); create them first or connect as a superuser"
            ) from exc
        _configure_session(conn, counts, seed)
        with conn.transaction():
            for block in LOAD_BLOCKS:
                _run_block(conn, block)
        _analyze(conn)
        summary = warehouse_summary(conn)
    elapsed = time.perf_counter() - started
    log.info(
        "demo warehouse loaded: %d tables, %d rows, %.1f MB in %.1f s",
        summary["totals"]["tables"],
        summary["totals"]["rows"],
        summary["database_bytes"] / 1e6,
        elapsed,
    )
    return {
        **summary,
        "scale": scale,
        "seed": seed,
        "counts": counts,
        "load_seconds": round(elapsed, 3),
    }


def _check_empty(conn: psycopg.Connection[Any]) -> None:
    existing = [
        row[0]
        for row in conn.execute(
            "SELECT n.nspname FROM pg_catalog.pg_namespace AS n WHERE n.nspname = ANY(%s) ORDER BY n.nspname",
            (list(SCHEMAS),),
        )
    ]
    if existing:
        raise WarehouseError(
            f"database already contains demo warehouse schemas {existing}; load into a new, empty database"
        )
    row = conn.execute(
        "SELECT count(*) FROM pg_catalog.pg_largeobject_metadata WHERE oid::bigint > %s AND oid::bigint <= %s",
        (LARGE_OBJECT_OID_BASE, LARGE_OBJECT_OID_BASE + 10_000_000),
    ).fetchone()
    if row and row[0]:
        raise WarehouseError(f"database already has {row[0]} large objects in the OID range the demo uses")


def _configure_session(conn: psycopg.Connection[Any], counts: dict[str, int], seed: int) -> None:
    # Nothing the generator computes depends on these, but pin them anyway so a
    # stray default cannot leak into the data.
    conn.execute("SET search_path = pg_catalog, pg_temp")
    conn.execute("SET TimeZone = 'UTC'")
    conn.execute("SET DateStyle = 'ISO, YMD'")
    conn.execute("SET IntervalStyle = 'postgres'")
    conn.execute("SET extra_float_digits = 1")
    conn.execute("SET synchronous_commit = off")
    conn.execute("SET maintenance_work_mem = '256MB'")
    conn.execute("SET check_function_bodies = on")
    settings = {"demo_wh.seed": str(seed)}
    settings.update({f"demo_wh.n_{name}": str(n) for name, n in counts.items()})
    for name, value in settings.items():
        conn.execute("SELECT pg_catalog.set_config(%s, %s, false)", (name, value))


def _run_block(conn: psycopg.Connection[Any], block: Block) -> None:
    started = time.perf_counter()
    conn.execute(block.sql)  # static SQL, several statements, no parameters
    log.info("  %-18s %6.2f s", block.name, time.perf_counter() - started)


def _relations(conn: psycopg.Connection[Any]) -> list[tuple[Any, ...]]:
    """(schema, name, kind, parent schema, parent name, total bytes) of each table-like relation."""
    return conn.execute(
        """
        SELECT n.nspname, c.relname,
               CASE WHEN c.relispartition THEN 'partition' ELSE c.relkind::text END,
               p.nspname, p.relname,
               pg_catalog.pg_total_relation_size(c.oid)
        FROM pg_catalog.pg_class AS c
        JOIN pg_catalog.pg_namespace AS n ON n.oid = c.relnamespace
        LEFT JOIN LATERAL (
            SELECT pn.nspname, pc.relname
            FROM pg_catalog.pg_inherits AS i
            JOIN pg_catalog.pg_class AS pc ON pc.oid = i.inhparent
            JOIN pg_catalog.pg_namespace AS pn ON pn.oid = pc.relnamespace
            WHERE i.inhrelid = c.oid
            ORDER BY i.inhseqno
            LIMIT 1
        ) AS p ON true
        WHERE n.nspname = ANY(%s) AND c.relkind IN ('r', 'p', 'm')
        ORDER BY n.nspname, c.relname
        """,
        (list(SCHEMAS),),
    ).fetchall()


def _analyze(conn: psycopg.Connection[Any]) -> None:
    started = time.perf_counter()
    for schema, name, *_ in _relations(conn):
        conn.execute(sql.SQL("ANALYZE {}.{}").format(sql.Identifier(schema), sql.Identifier(name)))
    log.info("  %-18s %6.2f s", "analyze", time.perf_counter() - started)


def warehouse_summary(conn: psycopg.Connection[Any]) -> dict[str, Any]:
    """Schemas, tables, exact row counts and on-disk bytes of the demo warehouse.

    ``rows`` are the table's own rows (``FROM ONLY``: an inheritance parent
    does not include its children, a partitioned table has none of its own);
    ``bytes`` is ``pg_total_relation_size`` (heap + TOAST + indexes).
    """
    tables: list[dict[str, Any]] = []
    for schema, name, relkind, parent_schema, parent_name, size in _relations(conn):
        ident = sql.SQL("{}.{}").format(sql.Identifier(schema), sql.Identifier(name))
        (rows,) = conn.execute(sql.SQL("SELECT count(*) FROM ONLY {}").format(ident)).fetchone()
        tables.append(
            {
                "schema": schema,
                "name": name,
                "kind": _KINDS[relkind],
                "rows": rows,
                "bytes": size,
                # inheritance parent, or the partitioned table of a partition
                "parent": (None if parent_name is None else {"schema": parent_schema, "name": parent_name}),
            }
        )

    schemas = []
    for schema in SCHEMAS:
        own = [t for t in tables if t["schema"] == schema]
        schemas.append(
            {
                "name": schema,
                "tables": len(own),
                "rows": sum(t["rows"] for t in own),
                "bytes": sum(t["bytes"] for t in own),
            }
        )

    db_name, db_bytes, lo_count, lo_bytes, version = conn.execute(
        """
        SELECT pg_catalog.current_database(),
               pg_catalog.pg_database_size(pg_catalog.current_database()),
               (SELECT count(*) FROM pg_catalog.pg_largeobject_metadata),
               pg_catalog.pg_total_relation_size('pg_catalog.pg_largeobject'),
               pg_catalog.current_setting('server_version')
        """
    ).fetchone()
    return {
        "database": db_name,
        "server_version": version,
        "schemas": schemas,
        "tables": tables,
        "totals": {
            "schemas": len(schemas),
            "tables": len(tables),
            "rows": sum(t["rows"] for t in tables),
            "bytes": sum(t["bytes"] for t in tables),
        },
        "large_objects": {"count": lo_count, "bytes": lo_bytes},
        "database_bytes": db_bytes,
    }
