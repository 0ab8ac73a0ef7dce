"""Fixtures of the replicate-mode tests: two databases on the PostgreSQL 18 server, a live writer.

Both sides are on ``pg18`` (a non-superuser may own a subscription from PostgreSQL 16 on): the
source database is owned by ``postgres`` (the migration reads and publishes as superuser), the
target by ``aurora_admin`` (member of ``pg_create_subscription``), and the subscription logs in to
the source as ``migrator`` (REPLICATION, with its password) -- what a production set-up looks like.
"""

from __future__ import annotations

import random
import threading
import time
import uuid

import psycopg
import pytest

from include.pg_migration.conn import Endpoint
from scripts import localpg
from tests.conftest import Pair, create_db

BIG_DOC_BYTES = 1_200_000


def big_json(seed: int, size: int = BIG_DOC_BYTES) -> str:
    """A JSON document of about ``size`` bytes (TEXT on both sides)."""
    items = ",".join(f'{{"k":{i},"v":"{seed:06d}-{i:08d}-abcdefghijklmnopqrstuvwxyz"}}' for i in range(size // 56))
    return f'{{"seed":{seed},"items":[{items}]}}'


SCHEMA = """
CREATE SCHEMA sales;
CREATE SCHEMA archive;
CREATE SCHEMA docs;
CREATE TABLE sales.customers (id int PRIMARY KEY, name text NOT NULL);
CREATE TABLE sales.orders (id bigserial PRIMARY KEY, customer int NOT NULL REFERENCES sales.customers,
                           amount numeric(12,2) NOT NULL, note text);
-- an inherited child in another schema, with rows of its own (the DMS double-count/apply trap)
CREATE TABLE archive.orders_old (archived_at timestamptz NOT NULL DEFAULT now()) INHERITS (sales.orders);
ALTER TABLE archive.orders_old ADD PRIMARY KEY (id);
-- a partitioned table with a partition in another schema
CREATE TABLE sales.events (id bigint NOT NULL, day date NOT NULL, payload text, PRIMARY KEY (id, day))
    PARTITION BY RANGE (day);
CREATE TABLE sales.events_2024 PARTITION OF sales.events FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');
CREATE TABLE archive.events_2025 PARTITION OF sales.events FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
-- big JSON documents in TEXT
CREATE TABLE docs.documents (id int PRIMARY KEY, body text NOT NULL);
-- no primary key, no replica identity
CREATE TABLE docs.audit_log (at timestamptz NOT NULL, who text, what text);
CREATE TABLE docs.attachments (id int PRIMARY KEY, blob oid);

INSERT INTO sales.customers SELECT g, 'customer ' || g FROM generate_series(1, 50) g;
INSERT INTO sales.orders (customer, amount, note)
    SELECT 1 + g % 50, g * 1.25, 'order ' || g FROM generate_series(1, 2000) g;
INSERT INTO archive.orders_old (id, customer, amount, note)
    SELECT nextval('sales.orders_id_seq'), 1 + g % 50, g, 'old ' || g FROM generate_series(1, 500) g;
INSERT INTO sales.events SELECT g, DATE '2024-01-01' + (g % 700), 'event ' || g FROM generate_series(1, 2000) g;
INSERT INTO docs.documents SELECT g, '{"small": ' || g || '}' FROM generate_series(10, 40) g;
INSERT INTO docs.audit_log SELECT now() - g * interval '1 minute', 'user' || g % 7, 'did ' || g % 13
    FROM generate_series(1, 500) g;
INSERT INTO docs.audit_log SELECT at, who, what FROM docs.audit_log LIMIT 20;  -- duplicate rows
INSERT INTO docs.attachments VALUES (1, lo_from_bytea(0, 'attachment one')), (2, lo_from_bytea(0, 'two'));
CREATE MATERIALIZED VIEW sales.order_totals AS
    SELECT customer, count(*) AS n, sum(amount) AS total FROM sales.orders GROUP BY customer;
"""


def load_source(conn: psycopg.Connection) -> None:
    conn.execute(SCHEMA)
    for i in range(1, 4):
        conn.execute("INSERT INTO docs.documents VALUES (%s, %s)", (i, big_json(i)))


class Writer(threading.Thread):
    """An application writing to the source the whole time: inserts, updates and deletes in the
    inherited parent and child, the partitioned table (moving rows across partitions), the big JSON
    documents and the table without a primary key. Its writes must never fail."""

    def __init__(self, dsn: str, seed: int = 7, pause_s: float = 0.005):
        super().__init__(daemon=True, name="source-writer")
        self.dsn = dsn
        self.rng = random.Random(seed)
        self.pause_s = pause_s
        self.stop_event = threading.Event()
        self.ops = 0
        self.errors: list[str] = []
        self.kinds: set[str] = set()
        self.id_base = seed * 1_000_000  # writers with different seeds never collide

    def stop(self) -> None:
        self.stop_event.set()
        self.join(timeout=30)

    def run(self) -> None:
        with psycopg.connect(self.dsn, autocommit=True, application_name="app-writer") as conn:
            step = 0
            while not self.stop_event.is_set():
                step += 1
                kind, stmt, args = self._next(step)
                try:
                    conn.execute(stmt, args)
                    self.ops += 1
                    self.kinds.add(kind)
                except psycopg.Error as exc:
                    self.errors.append(f"{kind}: {str(exc).strip().splitlines()[0]}")
                time.sleep(self.pause_s)

    def _next(self, step: int) -> tuple[str, str, tuple]:
        r = self.rng
        c = 1 + r.randrange(50)
        ops = [
            (
                "insert parent",
                "INSERT INTO sales.orders (customer, amount, note) VALUES (%s, %s, %s)",
                (c, r.randrange(10_000) / 4, f"live {step}"),
            ),
            (
                "insert child",
                "INSERT INTO archive.orders_old (id, customer, amount, note) "
                "VALUES (nextval('sales.orders_id_seq'), %s, %s, %s)",
                (c, 1, f"live old {step}"),
            ),
            # without ONLY: the UPDATE reaches parent and child rows alike
            (
                "update parent+child",
                "UPDATE sales.orders SET amount = amount + 1, note = %s WHERE customer = %s",
                (f"upd {step}", c),
            ),
            (
                "update child",
                "UPDATE ONLY archive.orders_old SET note = %s WHERE id = (SELECT max(id) FROM ONLY archive.orders_old)",
                (f"child {step}",),
            ),
            ("delete parent", "DELETE FROM ONLY sales.orders WHERE id = (SELECT min(id) FROM ONLY sales.orders)", ()),
            ("delete child", "DELETE FROM archive.orders_old WHERE id = (SELECT min(id) FROM archive.orders_old)", ()),
            (
                "insert partition",
                "INSERT INTO sales.events VALUES (%s, DATE '2024-03-01' + %s, 'live')",
                (100_000 + self.id_base + step, r.randrange(600)),
            ),
            (
                "move across partitions",
                "UPDATE sales.events SET day = day + 366 WHERE id = "
                "(SELECT min(id) FROM sales.events_2024 WHERE day < DATE '2024-12-01')",
                (),
            ),
            ("delete partition", "DELETE FROM sales.events WHERE id = (SELECT max(id) FROM archive.events_2025)", ()),
            (
                "update big json",
                "UPDATE docs.documents SET body = replace(body, '\"seed\":', %s) WHERE id = %s",
                (f'"step{step}":0,"seed":', 1 + r.randrange(3)),
            ),
            (
                "update small json",
                "UPDATE docs.documents SET body = %s WHERE id = %s",
                (f'{{"small": {step}}}', 10 + r.randrange(30)),
            ),
            ("insert no-pk", "INSERT INTO docs.audit_log VALUES (now(), %s, %s)", (f"user{c % 7}", f"live {step}")),
            (
                "update no-pk",
                "UPDATE docs.audit_log SET what = %s WHERE who = %s AND what LIKE 'did 1%%'",
                (f"changed {step}", f"user{c % 7}"),
            ),
            ("delete no-pk", "DELETE FROM docs.audit_log WHERE at = (SELECT min(at) FROM docs.audit_log)", ()),
        ]
        if step % 97 == 0:
            return (
                "insert big json",
                "INSERT INTO docs.documents VALUES (%s, %s) ON CONFLICT (id) DO UPDATE SET body = EXCLUDED.body",
                (1000 + self.id_base + step, big_json(step, 300_000)),
            )
        return ops[step % len(ops)]


def _unique(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:10]}"


@pytest.fixture
def rpair(pg18_server) -> Pair:
    """A fresh source and target database on the PostgreSQL 18 server (dropped after: their
    subscriptions and slots too, whatever the test left)."""
    p = Pair(pg18_server, pg18_server, _unique("rsrc"), _unique("rtgt"))
    create_db(p.source_server, p.source_db)
    create_db(p.target_server, p.target_db, owner=p.target_server.admin_user)
    yield p
    localpg.drop_database(p.target_server, p.target_db)
    localpg.drop_database(p.source_server, p.source_db)


def publisher(p: Pair) -> Endpoint:
    """How the target's subscription logs in to the source: ``migrator``, with its password."""
    s = p.source_server
    return Endpoint(
        host=s.host,
        port=s.port,
        dbname=p.source_db,
        user=s.migrator_user,
        password=s.migrator_password,
        label="subscription source",
    )


def run_id() -> str:
    return f"test__{uuid.uuid4().hex[:8]}"


def source_objects(p: Pair) -> dict[str, list]:
    """Replication objects on the source database and subscriptions on the target database."""
    with p.source_su() as src, p.target_su() as tgt:
        return {
            "slots": src.execute(
                "SELECT slot_name FROM pg_replication_slots WHERE database = current_database()"
            ).fetchall(),
            "publications": src.execute("SELECT pubname FROM pg_publication").fetchall(),
            "subscriptions": tgt.execute(
                "SELECT subname FROM pg_subscription WHERE subdbid = "
                "(SELECT oid FROM pg_database WHERE datname = current_database())"
            ).fetchall(),
        }
