"""The large-objects phase (the ``large_objects`` task, worker phase ``large-objects``): database-wide,
copied with their OIDs (tables reference them by OID).

Each object is re-created (unlink if present, create with the same OID and its first chunk, write
the rest in chunks), read from the run's snapshot, so a retry simply writes it again. The phase
groups objects into pipelined target transactions of up to :data:`BATCH_OBJECTS` objects or
:data:`BATCH_BYTES` bytes, committed without waiting for the WAL flush (as the data path's loads):
5 500 objects (200 MB) take 1.4-1.7 s instead of 4.6-5.3 s with a synchronous transaction per object.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import psycopg

from include.pg_migration import catalog, state
from include.pg_migration.conn import Endpoint
from include.pg_migration.loading import LOAD_SETTINGS
from include.pg_migration.sessions import apply_settings, open_source_snapshot

log = logging.getLogger(__name__)

CHUNK = 1024 * 1024
BATCH_OBJECTS = 1000
BATCH_BYTES = 64 * 1024 * 1024

UNLINK_IF_PRESENT = """
SELECT pg_catalog.lo_unlink(m.oid) FROM pg_catalog.pg_largeobject_metadata m WHERE m.oid = %s
"""


def copy_large_object(src: psycopg.Connection, tgt: psycopg.Connection, oid: int) -> int:
    """Re-create one large object on the target with its OID, in one transaction; return its size."""
    with tgt.transaction():
        return _write_large_object(src, tgt, oid)


def _write_large_object(src: psycopg.Connection, tgt: psycopg.Connection, oid: int) -> int:
    """Unlink ``oid`` on the target if present and write it anew from the source (caller's transaction)."""
    tgt.execute(UNLINK_IF_PRESENT, (oid,))
    offset = 0
    while True:
        data = src.execute("SELECT pg_catalog.lo_get(%s, %s, %s)", (oid, offset, CHUNK)).fetchone()[0] or b""
        if offset == 0:
            tgt.execute("SELECT pg_catalog.lo_from_bytea(%s, %s)", (oid, data))
        elif data:
            tgt.execute("SELECT pg_catalog.lo_put(%s, %s, %s)", (oid, offset, data))
        offset += len(data)
        if len(data) < CHUNK:
            return offset


def run_large_objects(source: Endpoint, target: Endpoint, run_id: str, app: str) -> dict[str, Any]:
    started = time.monotonic()
    total = 0
    with target.connect(app, autocommit=True) as tgt:
        apply_settings(tgt, LOAD_SETTINGS)  # flushed to disk at the phase's end (worker.make_durable)
        run = state.get_run(tgt, run_id)
        snapshot = run["snapshot_id"] if run["consistent"] else None
        with open_source_snapshot(source, app, snapshot) as src:
            oids = [r[0] for r in src.execute(catalog.LARGE_OBJECTS).fetchall()]
            pending = iter(oids)
            oid = next(pending, None)
            while oid is not None:
                count = size = 0
                # pipelined: the target's statements do not wait for their results (only the source's
                # reads do); an error surfaces at the batch's end and rolls the whole batch back
                with tgt.pipeline(), tgt.transaction():
                    while oid is not None and count < BATCH_OBJECTS and size < BATCH_BYTES:
                        size += _write_large_object(src, tgt, oid)
                        count += 1
                        oid = next(pending, None)
                total += size
        detail = {"count": len(oids), "bytes": total, "seconds": round(time.monotonic() - started, 3)}
        state.set_phase(tgt, run_id, "large-objects", "done", detail)
    log.info("large objects: %d copied (%.1f MB)", len(oids), total / 1e6)
    return detail
