"""The run's publication on the source (and ``REPLICA IDENTITY FULL`` where it is allowed and needed).

``FOR TABLE ONLY`` every plain table of the plan, ``publish_via_partition_root = false``: the unit
of change is the physical table, exactly as the copy's unit of loading is. Created before the slot
(by :func:`prepare_publication`, run by the snapshot holder or the DAG before it), so every change
after the slot's cut is published.
"""

from __future__ import annotations

import logging
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from include.pg_migration.conn import Endpoint
from include.pg_migration.errors import ConfigError, MigrationError, PlanError
from include.pg_migration.replicate import records
from include.pg_migration.sessions import SOURCE_SETTINGS, apply_settings

log = logging.getLogger(__name__)


def source_admin(source: Endpoint, app: str) -> psycopg.Connection:
    """An autocommit source session that may write DDL even when the database was made read-only."""
    conn = source.connect(app, autocommit=True)
    apply_settings(conn, {**SOURCE_SETTINGS, "default_transaction_read_only": "off"})
    return conn


#: Plain tables of the selected schemas with what publishing them needs.
PUBLISHABLE = """
SELECT n.nspname AS schema, c.relname AS name, c.relreplident::text AS identity,
       c.relpersistence::text AS persistence,
       EXISTS (SELECT 1 FROM pg_catalog.pg_index i WHERE i.indrelid = c.oid AND i.indisprimary) AS has_pk,
       pg_catalog.pg_has_role(c.relowner, 'USAGE') AS owned,
       pg_catalog.pg_get_userbyid(c.relowner) AS owner
  FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname = ANY(%(schemas)s) AND c.relkind = 'r'
 ORDER BY 1, 2
"""


def no_identity(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Tables whose UPDATE/DELETE would fail once published: no primary key and no replica identity."""
    return [r for r in rows if r["identity"] == "n" or (r["identity"] == "d" and not r["has_pk"])]


def prepare_publication(source: Endpoint, target: Endpoint, run_id: str, app: str = "pg_migration replicate") -> dict:
    """Set REPLICA IDENTITY FULL where allowed and needed, and create the run's publication (idempotent).

    Runs before the slot exists, so the publication covers every change after the slot's cut.
    """
    with target.connect(app, autocommit=True) as tgt:
        rep = records.get(tgt, run_id)
        if rep is None:
            raise ConfigError(f"run {run_id!r} is not registered for replication")
        if rep["consistent_lsn"] is not None:  # the slot exists: its publication must stay as it was
            log.info("publication %s kept: the run's slot already exists", rep["publication"])
            return {"publication": rep["publication"], "tables": len(rep["tables"]), "identity_full": []}
        tables = [tuple(t) for t in rep["tables"]]
        with source_admin(source, app) as src:
            with src.cursor(row_factory=dict_row) as cur:
                rows = cur.execute(PUBLISHABLE, {"schemas": rep["schemas"]}).fetchall()
            wanted = set(tables)
            missing = [r for r in no_identity(rows) if (r["schema"], r["name"]) in wanted]
            if missing and not rep["replica_identity_full"]:
                raise PlanError(
                    "tables without a primary key or replica identity: "
                    + ", ".join(f"{r['schema']}.{r['name']}" for r in missing)
                )
            changed = [list(t) for t in rep["identity_changed"]]
            known = {(t[0], t[1]) for t in changed}
            changed += [
                [r["schema"], r["name"], r["identity"]] for r in missing if (r["schema"], r["name"]) not in known
            ]
            records.update(tgt, run_id, identity_changed=changed)  # recorded before altering: cleanup can restore
            for r in missing:
                try:
                    src.execute(
                        sql.SQL("ALTER TABLE ONLY {} REPLICA IDENTITY FULL").format(
                            sql.Identifier(r["schema"], r["name"])
                        )
                    )
                except psycopg.Error as exc:  # e.g. lock_timeout: a long transaction holds the table
                    raise MigrationError(
                        f"cannot set REPLICA IDENTITY FULL on {r['schema']}.{r['name']} on the source: "
                        f"{str(exc).strip().splitlines()[0]}"
                    ) from None
                log.warning(
                    "REPLICA IDENTITY FULL set on %s.%s (it has no primary key); restored after the cut-over",
                    r["schema"],
                    r["name"],
                )
            pub = sql.Identifier(rep["publication"])
            listed = sql.SQL(", ").join(sql.SQL("ONLY {}").format(sql.Identifier(s, t)) for s, t in tables)
            exists = src.execute(
                "SELECT 1 FROM pg_catalog.pg_publication WHERE pubname = %s", (rep["publication"],)
            ).fetchone()
            stmt = sql.SQL("CREATE PUBLICATION {}").format(pub)
            if tables:
                stmt += sql.SQL(" FOR TABLE {}").format(listed)
            stmt += sql.SQL(" WITH (publish = 'insert, update, delete, truncate', publish_via_partition_root = false)")
            try:
                with src.transaction():
                    if exists:
                        src.execute(sql.SQL("DROP PUBLICATION {}").format(pub))
                    src.execute(stmt)
            except psycopg.Error as exc:
                raise MigrationError(
                    f"cannot create publication {rep['publication']} on the source: {str(exc).strip().splitlines()[0]}"
                ) from None
    log.info(
        "publication %s: %d table(s), each published as its own table (children and partitions too)",
        rep["publication"],
        len(tables),
    )
    return {"publication": rep["publication"], "tables": len(tables), "identity_full": [c[:2] for c in changed]}
