"""Large objects: database-wide, copied with their OIDs (tables reference them by OID).

Each object is re-created in its own target transaction (unlink if present, create with the same
OID, write in chunks), read from the run's snapshot, so a retry simply writes it again.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import psycopg

from include.pg_migration import catalog, state
from include.pg_migration.conn import Endpoint
from include.pg_migration.sessions import open_source_snapshot

log = logging.getLogger(__name__)

CHUNK = 1024 * 1024


def copy_large_object(src: psycopg.Connection, tgt: psycopg.Connection, oid: int) -> int:
    """Re-create one large object on the target with its OID, in one transaction; return its size."""
    with tgt.transaction():
        if tgt.execute("SELECT 1 FROM pg_catalog.pg_largeobject_metadata WHERE oid = %s", (oid,)).fetchone():
            tgt.execute("SELECT pg_catalog.lo_unlink(%s)", (oid,))
        tgt.execute("SELECT pg_catalog.lo_create(%s)", (oid,))
        offset = 0
        while True:
            data = src.execute("SELECT pg_catalog.lo_get(%s, %s, %s)", (oid, offset, CHUNK)).fetchone()[0]
            if not data:
                break
            tgt.execute("SELECT pg_catalog.lo_put(%s, %s, %s)", (oid, offset, data))
            offset += len(data)
            if len(data) < CHUNK:
                break
    return offset


def run_large_objects(source: Endpoint, target: Endpoint, run_id: str, app: str) -> dict[str, Any]:
    started = time.monotonic()
    total = 0
    with target.connect(app) as tgt:
        run = state.get_run(tgt, run_id)
        snapshot = run["snapshot_id"] if run["consistent"] else None
        with open_source_snapshot(source, app, snapshot) as src:
            oids = [r[0] for r in src.execute(catalog.LARGE_OBJECTS).fetchall()]
            for oid in oids:
                total += copy_large_object(src, tgt, oid)
        detail = {"count": len(oids), "bytes": total, "seconds": round(time.monotonic() - started, 3)}
        state.set_phase(tgt, run_id, "large-objects", "done", detail)
    log.info("large objects: %d copied (%.1f MB)", len(oids), total / 1e6)
    return detail
