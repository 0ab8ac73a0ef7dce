"""What the phases that write the target share: the bulk-load sessions' settings, and whether a
post-data entry's object already exists (which makes every re-run idempotent).

Used by :mod:`include.pg_migration.phases.data` (the loads and the index builder),
:mod:`include.pg_migration.phases.large_objects` (its loads) and
:mod:`include.pg_migration.phases.post_data` (what is already applied). Below the phases: it imports
no phase.
"""

from __future__ import annotations

from typing import Any

import psycopg

#: Settings of the target's bulk-load sessions: no wait for the WAL flush per table; the unit flushes
#: everything before it reports success (worker.make_durable).
LOAD_SETTINGS = {"synchronous_commit": "off"}
INDEX_SETTINGS = {"maintenance_work_mem": "512MB", "synchronous_commit": "off"}

#: Does the object a post-data entry creates already exist on the target? (makes re-runs idempotent)
_TABLE = "pg_catalog.to_regclass(pg_catalog.format('%%I.%%I', %(table_schema)s::text, %(table_name)s::text))"
_OBJECT = "pg_catalog.to_regclass(pg_catalog.format('%%I.%%I', %(schema)s::text, %(object)s::text))"
EXISTS_SQL = {
    "INDEX": f"SELECT {_OBJECT} IS NOT NULL",
    "CONSTRAINT": f"""SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_constraint
                       WHERE conname = %(object)s::text AND conrelid = {_TABLE})""",
    "TRIGGER": f"""SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_trigger
                    WHERE tgname = %(object)s::text AND tgrelid = {_TABLE})""",
    "INDEX ATTACH": f"SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_inherits WHERE inhrelid = {_OBJECT})",
}
EXISTS_SQL["FK CONSTRAINT"] = EXISTS_SQL["CONSTRAINT"]
EXISTS_SQL["CHECK CONSTRAINT"] = EXISTS_SQL["CONSTRAINT"]


def ddl_exists(conn: psycopg.Connection, entry: dict[str, Any]) -> bool:
    query = EXISTS_SQL.get(entry["kind"])
    if query is None or entry.get("table_name") is None and entry["kind"] not in ("INDEX", "INDEX ATTACH"):
        return False
    obj = entry["name"]
    if entry["kind"] not in ("INDEX", "INDEX ATTACH") and entry.get("table_name"):
        prefix = entry["table_name"] + " "
        obj = obj[len(prefix) :] if obj.startswith(prefix) else obj
    params = {
        "schema": entry["schema_name"],
        "object": obj,
        "table_schema": entry.get("table_schema"),
        "table_name": entry.get("table_name"),
    }
    return bool(conn.execute(query, params).fetchone()[0])
