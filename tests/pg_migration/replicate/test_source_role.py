"""The cut-over's "writes stopped" seen by a source role without pg_read_all_stats (issue 19, item 2).

``pg_stat_activity`` shows another role's session to such a role with ``backend_type`` NULL (its
``backend_xid`` stays visible): a writer must still count, never a false "no write transaction".
"""

from __future__ import annotations

from include.pg_migration.cutover import writers


def test_another_roles_write_transaction_is_seen_without_pg_read_all_stats(pair):
    reader = pair.source_reader  # pg_read_all_data only
    with pair.source_su() as writer:
        writer.execute("CREATE TABLE t (i int)")
        writer.autocommit = False
        writer.execute("INSERT INTO t VALUES (1)")  # holds a transaction id, uncommitted
        with reader.connect("test", autocommit=True) as src:
            found = writers(src)
        pid = writer.info.backend_pid
        writer.rollback()
    assert [w["pid"] for w in found] == [pid], found
