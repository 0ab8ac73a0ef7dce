"""The run's subscription on the target: streams the slot's changes after the copy.

``create_slot = false, copy_data = false, slot_name = <slot>``, owned by the target user (Aurora
master user; locally PostgreSQL 16+ and ``pg_create_subscription``); its connection string
(:func:`subscription_conninfo`) carries the password of the subscription's source role (a
non-superuser owner must use one) and goes only into ``CREATE SUBSCRIPTION``.
"""

from __future__ import annotations

import logging
from typing import Any

import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo
from psycopg.rows import dict_row

from include.pg_migration.conn import SSL_OPTIONS, Endpoint
from include.pg_migration.errors import ConfigError, MigrationError
from include.pg_migration.replicate import records

log = logging.getLogger(__name__)


def subscription_conninfo(endpoint: Endpoint, application_name: str) -> str:
    """The subscription's connection string. Holds the password: never log or return it."""
    if not endpoint.password:
        raise ConfigError(
            f"the subscription's source connection ({endpoint.describe()}) has no password: a non-superuser "
            "subscription owner must log in to the source with one (PostgreSQL 16+, Aurora)"
        )
    values: dict[str, Any] = {
        "host": endpoint.host,
        "port": endpoint.port,
        "dbname": endpoint.dbname,
        "user": endpoint.user,
        "password": endpoint.password,
        "application_name": application_name,
    }
    for key in SSL_OPTIONS:
        if getattr(endpoint, key):
            values[key] = getattr(endpoint, key)
    return make_conninfo(**values)


def find_subscription(tgt: psycopg.Connection, name: str) -> dict[str, Any] | None:
    with tgt.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            """SELECT s.oid, s.subenabled, s.subslotname FROM pg_catalog.pg_subscription s
                WHERE s.subname = %s
                  AND s.subdbid = (SELECT oid FROM pg_catalog.pg_database
                                    WHERE datname = pg_catalog.current_database())""",
            (name,),
        ).fetchone()


def subscribe(target: Endpoint, run_id: str, publisher: Endpoint, app: str = "pg_migration subscribe") -> dict:
    """Create the subscription on the run's slot (no slot, no copy: the copy is done); idempotent."""
    with target.connect(app, autocommit=True) as tgt:
        rep = records.get(tgt, run_id)
        if rep is None or rep["consistent_lsn"] is None:
            raise MigrationError(f"run {run_id!r} has no replication slot to subscribe to")
        if rep["dropped_at"] is not None:
            raise MigrationError(f"the replication of run {run_id!r} was dropped ({rep['status']})")
        existing = find_subscription(tgt, rep["subscription"])
        if existing is None:
            conninfo = subscription_conninfo(publisher, rep["subscription"])
            stmt = sql.SQL(
                "CREATE SUBSCRIPTION {} CONNECTION {} PUBLICATION {} "
                "WITH (create_slot = false, slot_name = {}, copy_data = false, enabled = true)"
            ).format(
                sql.Identifier(rep["subscription"]),
                sql.Literal(conninfo),
                sql.Identifier(rep["publication"]),
                sql.Literal(rep["slot"]),
            )
            try:
                tgt.execute(stmt)
            except psycopg.Error as exc:
                # The server's message names host and user, never the password; the statement is not logged here.
                raise MigrationError(
                    f"cannot create subscription {rep['subscription']} on {target.describe()}: "
                    f"{str(exc).strip().splitlines()[0]}"
                ) from None
        elif not existing["subenabled"]:
            tgt.execute(sql.SQL("ALTER SUBSCRIPTION {} ENABLE").format(sql.Identifier(rep["subscription"])))
        records.update(tgt, run_id, status="streaming", subscribed_at=records.now(tgt), error=None)
    log.info(
        "subscription %s created on the target: streaming from slot %s (publisher %s@%s:%s/%s)",
        rep["subscription"],
        rep["slot"],
        publisher.user,
        publisher.host,
        publisher.port,
        publisher.dbname,
    )
    return {"subscription": rep["subscription"], "slot": rep["slot"], "publication": rep["publication"]}
