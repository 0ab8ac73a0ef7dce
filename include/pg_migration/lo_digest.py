"""Large objects compared by content: a digest per object over chunked reads, both sides at once.

Used by validation (``phases.validate.validate_database``) and by the cut-over (which re-copies the
objects whose digest differs). Each object is read ``lo_get(oid, offset, length)`` by
:data:`LO_CHUNK` bytes on the server and only each chunk's md5 travels, so objects of any size
compare (also over 1 GB, more than one ``lo_get`` or a ``bytea`` can hold). Reading needs SELECT on
each object: ``pg_read_all_data`` does not cover large objects (checked on 15 and 18), so a source role
without it needs ``GRANT SELECT ON LARGE OBJECT ...`` (or ``lo_compat_privileges``).
"""

from __future__ import annotations

import hashlib
from concurrent.futures import ThreadPoolExecutor

import psycopg

#: Large objects' content is compared by a digest over chunked reads (``lo_get(oid, offset, length)``), so
#: objects of any size compare (also over 1 GB, which one ``lo_get`` or ``bytea`` cannot hold); only a
#: chunk's md5 travels. The first chunk of every object comes in one query; bigger objects chunk by chunk.
LO_CHUNK = 1024 * 1024
LO_FIRST_CHUNKS = """
SELECT m.oid::bigint, pg_catalog.md5(c.data), pg_catalog.length(c.data)
  FROM pg_catalog.pg_largeobject_metadata m, LATERAL pg_catalog.lo_get(m.oid, 0, %(chunk)s) AS c(data)
 ORDER BY 1
"""
LO_CHUNK_DIGEST = (
    "SELECT pg_catalog.md5(c.data), pg_catalog.length(c.data) FROM pg_catalog.lo_get(%s, %s, %s) AS c(data)"
)


def large_object_digests(conn: psycopg.Connection, chunk: int = LO_CHUNK) -> dict[int, str]:
    """``{oid: digest}`` of every large object of ``conn``'s database: a sha256 over its chunks' md5s
    and its size (``lo_get`` per ``chunk`` bytes)."""
    out = {}
    for oid, first, length in conn.execute(LO_FIRST_CHUNKS, {"chunk": chunk}).fetchall():
        digest = hashlib.sha256(first.encode())
        size = length
        while length == chunk:
            part, length = conn.execute(LO_CHUNK_DIGEST, (oid, size, chunk)).fetchone()
            if length:
                digest.update(part.encode())
            size += length
        digest.update(f":{size}".encode())
        out[oid] = digest.hexdigest()
    return out


def large_object_digests_both(
    src: psycopg.Connection, tgt: psycopg.Connection, chunk: int = LO_CHUNK
) -> tuple[dict[int, str], dict[int, str]]:
    """:func:`large_object_digests` of both sides at once (a thread per side, each on its own session)."""
    with ThreadPoolExecutor(2, thread_name_prefix="lo-digest") as pool:
        futures = [pool.submit(large_object_digests, conn, chunk) for conn in (src, tgt)]
        return futures[0].result(), futures[1].result()


def compare_large_objects(src_lo: dict[int, str], tgt_lo: dict[int, str]) -> list[str]:
    """Mismatches naming each large object missing, extra or of another content on the target."""
    out = [f"large object {oid} missing on the target" for oid in sorted(set(src_lo) - set(tgt_lo))]
    out += [f"large object {oid} exists only on the target" for oid in sorted(set(tgt_lo) - set(src_lo))]
    out += [
        f"large object {oid}: content differs (digest)"
        for oid in sorted(set(src_lo) & set(tgt_lo))
        if src_lo[oid] != tgt_lo[oid]
    ]
    return out
