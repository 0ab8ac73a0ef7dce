"""The replication checks, before anything is created: one function per finding, like the pre-flight's.

:func:`check` runs them in order and returns their findings (:func:`include.pg_migration.findings.finding`);
:func:`raise_blocking` fails the run naming every blocking one. Every mode: no replication of an
earlier run may still be streaming into the target. Replicate mode: the params it refuses, the
target user's subscription rights; on the source (read-only queries): ``wal_level``, free slots and
WAL senders, REPLICATION, publication rights, ``max_slot_wal_keep_size``, unlogged tables, tables
without replica identity.
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg.rows import dict_row

from include.pg_migration.conn import Endpoint
from include.pg_migration.errors import PlanError
from include.pg_migration.findings import finding, names_list
from include.pg_migration.replicate import records
from include.pg_migration.replicate.publication import PUBLISHABLE, no_identity

SOURCE_SETUP = """
SELECT current_setting('wal_level') AS wal_level,
       current_setting('server_version_num')::int AS version,
       current_setting('max_replication_slots')::int AS max_slots,
       (SELECT count(*) FROM pg_catalog.pg_replication_slots)::int AS slots,
       current_setting('max_wal_senders')::int AS max_senders,
       (SELECT count(*) FROM pg_catalog.pg_stat_activity WHERE backend_type = 'walsender')::int AS senders,
       current_setting('max_slot_wal_keep_size', true) AS keep_size,
       r.rolname, r.rolsuper, r.rolreplication,
       pg_catalog.has_database_privilege(pg_catalog.current_database(), 'CREATE') AS can_create
  FROM pg_catalog.pg_roles r WHERE r.rolname = current_user
"""
SOURCE_COLUMNS = (
    "wal_level",
    "version",
    "max_slots",
    "slots",
    "max_senders",
    "senders",
    "keep_size",
    "role",
    "rolsuper",
    "rolreplication",
    "can_create",
)

TARGET_SETUP = """
SELECT current_setting('server_version_num')::int AS version, r.rolsuper,
       pg_catalog.has_database_privilege(pg_catalog.current_database(), 'CREATE') AS can_create,
       EXISTS (SELECT 1 FROM pg_catalog.pg_roles g
                WHERE g.rolname IN ('pg_create_subscription', 'rds_superuser')
                  AND pg_catalog.pg_has_role(current_user, g.oid, 'USAGE')) AS can_subscribe
  FROM pg_catalog.pg_roles r WHERE r.rolname = current_user
"""
TARGET_COLUMNS = ("version", "rolsuper", "can_create", "can_subscribe")

Findings = list[dict[str, str]]


def check(
    source: Endpoint | None,
    target: Endpoint,
    schemas: list[str],
    params: dict[str, Any],
    run_id: str | None = None,
) -> Findings:
    """Findings ``{check, verdict: ok|warning|blocking, detail}`` for a run in ``params["mode"]``.

    Every mode: no replication of an earlier run may still be streaming into the target (anything
    written there would be overwritten by, or conflict with, its changes). Replicate mode, on the
    source (read-only queries): ``wal_level``, free slots and WAL senders, REPLICATION, publication
    rights, tables without replica identity, unlogged tables; on the target: subscription rights.
    """
    mode = records.mode_of(params)
    with target.connect("pg_migration replicate-check", autocommit=True) as tgt:
        out = _other_replication(tgt, run_id)
        if mode != "replicate":
            return out
        t = dict(zip(TARGET_COLUMNS, tgt.execute(TARGET_SETUP).fetchone(), strict=True))
    out += _resume(params) + _consistent(params) + _validate_only(params)
    out += _target_subscription_rights(t) + _target_create(t)
    if source is None:
        return out
    with source.connect("pg_migration replicate-check", autocommit=True) as src:
        s, tables = _source_setup(src, schemas)
    out += _wal_level(s) + _replication_slots(s) + _wal_senders(s) + _replication_right(s)
    out += _publication_create(s) + _publication_ownership(s, tables)
    out += _wal_keep_size(s) + _unlogged_tables(tables) + _replica_identity(s, tables, params)
    return out


def raise_blocking(findings: Findings) -> None:
    blocking = [f for f in findings if f["verdict"] == "blocking"]
    if blocking:
        raise PlanError(
            "replication checks failed; nothing was created: "
            + "; ".join(f"{f['check']}: {f['detail']}" for f in blocking)
        )


def _source_setup(src: psycopg.Connection, schemas: list[str]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The source's settings and role (:data:`SOURCE_SETUP`), and the tables to publish."""
    s = dict(zip(SOURCE_COLUMNS, src.execute(SOURCE_SETUP).fetchone(), strict=True))
    with src.cursor(row_factory=dict_row) as cur:
        tables = cur.execute(PUBLISHABLE, {"schemas": schemas}).fetchall()
    return s, tables


# -- every mode ------------------------------------------------------------------------------------


def _other_replication(tgt: psycopg.Connection, run_id: str | None) -> Findings:
    others = [r for r in records.live(tgt) if r["run_id"] != run_id]
    if not others:
        return []
    r = others[0]
    return [
        finding(
            "replication on the target",
            "blocking",
            f"run {r['run_id']!r} still replicates into this target (status {r['status']}, subscription "
            f"{r['subscription']}): run pg_migration_cutover to finish it or pg_migration_abort to drop it",
        )
    ]


# -- replicate mode: params and the target ----------------------------------------------------------


def _resume(params: dict[str, Any]) -> Findings:
    if not params.get("resume"):
        return []
    return [
        finding(
            "resume",
            "blocking",
            "resume: true is refused in replicate mode: tables kept from an "
            "older cut would miss the changes made between that cut and the new slot's",
        )
    ]


def _consistent(params: dict[str, Any]) -> Findings:
    if params.get("consistent") is not False:
        return []
    return [finding("consistent", "blocking", "replicate mode needs one consistent cut (the slot's snapshot)")]


def _validate_only(params: dict[str, Any]) -> Findings:
    if not params.get("validate_only"):
        return []
    return [finding("validate_only", "blocking", "validate_only copies nothing: it cannot start replication")]


def _target_subscription_rights(t: dict[str, Any]) -> Findings:
    if not (t["rolsuper"] or t["can_subscribe"]):
        return [
            finding(
                "target subscription rights",
                "blocking",
                "the target user cannot create subscriptions: grant it pg_create_subscription "
                "(PostgreSQL 16+; on Aurora the master user has it through rds_superuser)",
            )
        ]
    verdict = "ok" if (t["version"] >= 160000 or t["rolsuper"]) else "blocking"
    detail = f"target {t['version'] // 10000}: the target user may create subscriptions"
    if verdict == "blocking":
        detail = f"target {t['version'] // 10000}: a non-superuser subscription owner needs PostgreSQL 16+"
    return [finding("target subscription rights", verdict, detail)]


def _target_create(t: dict[str, Any]) -> Findings:
    if t["can_create"] or t["rolsuper"]:
        return []
    return [finding("target subscription rights", "blocking", "the target user lacks CREATE on the database")]


# -- replicate mode: the source ----------------------------------------------------------------------


def _wal_level(s: dict[str, Any]) -> Findings:
    logical = s["wal_level"] == "logical"
    return [
        finding(
            "wal_level",
            "ok" if logical else "blocking",
            f"wal_level = {s['wal_level']}"
            + (
                ""
                if logical
                else ": logical replication needs wal_level = logical on the source (a restart; on RDS the "
                "parameter rds.logical_replication = 1)"
            ),
        )
    ]


def _replication_slots(s: dict[str, Any]) -> Findings:
    free_slots = s["max_slots"] - s["slots"]
    return [
        finding(
            "replication slots",
            "ok" if free_slots >= 1 else "blocking",
            f"{free_slots} of max_replication_slots = {s['max_slots']} free (1 needed)",
        )
    ]


def _wal_senders(s: dict[str, Any]) -> Findings:
    free_senders = s["max_senders"] - s["senders"]
    return [
        finding(
            "WAL senders",
            "ok" if free_senders >= 2 else ("warning" if free_senders == 1 else "blocking"),
            f"{free_senders} of max_wal_senders = {s['max_senders']} free (2 needed for a moment: the "
            "snapshot holder and the subscription; 1 while streaming)",
        )
    ]


def _replication_right(s: dict[str, Any]) -> Findings:
    may = s["rolsuper"] or s["rolreplication"]
    return [
        finding(
            "REPLICATION right",
            "ok" if may else "blocking",
            f"role {s['role']} "
            + (
                "may create replication slots"
                if may
                else "lacks REPLICATION: ALTER ROLE ... REPLICATION (RDS: GRANT rds_replication)"
            ),
        )
    ]


def _publication_create(s: dict[str, Any]) -> Findings:
    if s["rolsuper"] or s["can_create"]:
        return []
    return [
        finding(
            "publication rights",
            "blocking",
            f"role {s['role']} lacks CREATE on the source database (needed for CREATE PUBLICATION)",
        )
    ]


def _publication_ownership(s: dict[str, Any], tables: list[dict[str, Any]]) -> Findings:
    if s["rolsuper"]:
        return []
    not_owned = [f"{r['schema']}.{r['name']} (owner {r['owner']})" for r in tables if not r["owned"]]
    if not_owned:
        return [
            finding(
                "publication rights",
                "blocking",
                f"role {s['role']} must own the tables it publishes; it does not own: " + names_list(not_owned),
            )
        ]
    return [finding("publication rights", "ok", f"role {s['role']} owns every table to publish")]


def _wal_keep_size(s: dict[str, Any]) -> Findings:
    keep = s["keep_size"]
    unlimited = keep in (None, "-1")
    return [
        finding(
            "max_slot_wal_keep_size",
            "ok" if not unlimited else "warning",
            f"max_slot_wal_keep_size = {keep}"
            + (
                ": unlimited, so a slot left behind retains WAL until the source's disk fills "
                "(pg_migration_abort drops it; consider a limit)"
                if unlimited
                else ": a slot retaining more is invalidated and the replication must be started again"
            ),
        )
    ]


def _unlogged_tables(tables: list[dict[str, Any]]) -> Findings:
    unlogged = [f"{r['schema']}.{r['name']}" for r in tables if r["persistence"] == "u"]
    if not unlogged:
        return []
    return [
        finding(
            "unlogged tables",
            "blocking",
            "unlogged tables cannot be published, so their changes "
            "would be lost: " + names_list(unlogged) + " (ALTER TABLE ... SET LOGGED, or exclude "
            "their schema)",
        )
    ]


def _replica_identity(s: dict[str, Any], tables: list[dict[str, Any]], params: dict[str, Any]) -> Findings:
    missing = [r for r in no_identity(tables) if r["persistence"] != "u"]
    names_missing = [f"{r['schema']}.{r['name']}" for r in missing]
    if not missing:
        return [finding("replica identity", "ok", f"every one of {len(tables)} table(s) has a replica identity")]
    if not params.get("replica_identity_full"):
        return [
            finding(
                "replica identity",
                "blocking",
                "tables without a primary key or replica identity: once "
                "published, UPDATE and DELETE on them would FAIL on the source: "
                + names_list(names_missing)
                + ". Add a primary key (or REPLICA IDENTITY USING INDEX), or allow "
                "replica_identity_full: true (REPLICA IDENTITY FULL, more WAL, restored after the cut-over)",
            )
        ]
    cannot = [f"{r['schema']}.{r['name']}" for r in missing if not r["owned"] and not s["rolsuper"]]
    if cannot:
        return [
            finding(
                "replica identity",
                "blocking",
                f"role {s['role']} must own these tables to set REPLICA IDENTITY FULL: " + names_list(cannot),
            )
        ]
    return [
        finding(
            "replica identity",
            "warning",
            "REPLICA IDENTITY FULL will be set (and restored after the cut-over or abort) on: "
            + names_list(names_missing),
        )
    ]
