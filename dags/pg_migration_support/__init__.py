"""Airflow glue shared by the project's DAGs (the library itself never imports Airflow).

* :func:`endpoint` turns an Airflow connection into the library's :class:`Endpoint`, with a clear
  error naming the connection id when it does not exist;
* :func:`params` holds every DAG param with title, description and type (the trigger form);
* :func:`run_worker` starts a worker phase/unit with the local runner; the ECS runner's tasks,
  params and pre-flight are in :mod:`pg_migration_support.ecs`.

This folder is listed in ``dags/.airflowignore``: it holds no DAG.
"""

from __future__ import annotations

import logging
from typing import Any

from airflow.sdk import Param

from include.pg_migration.conn import SSL_OPTIONS, Endpoint
from include.pg_migration.errors import ConfigError

log = logging.getLogger("airflow.task")

POOL = "pg_migration"


def endpoint(conn_id: str, label: str) -> Endpoint:
    """The Airflow connection ``conn_id`` as an Endpoint (``AIRFLOW_CONN_*`` URIs work)."""
    from airflow.sdk import Connection

    try:
        conn = Connection.get(conn_id)
    except Exception as exc:  # AirflowNotFoundException and friends: name the connection
        if (
            "isn't defined" in str(exc)
            or "not found" in str(exc).lower()
            or type(exc).__name__.endswith("NotFoundException")
        ):
            raise ConfigError(f"Airflow connection {conn_id!r} ({label}) does not exist") from None
        raise
    if not conn.host:
        raise ConfigError(f"Airflow connection {conn_id!r} ({label}) has no host")
    extra = conn.extra_dejson or {}
    return Endpoint(
        host=conn.host,
        port=int(conn.port or 5432),
        dbname=conn.schema or "postgres",
        user=conn.login or "postgres",
        password=conn.password,
        label=f"{label} connection {conn_id!r}",
        **{k: extra[k] for k in SSL_OPTIONS if extra.get(k)},
    )


def connection_params(target_conn_id: str = "pg_target") -> dict[str, Param]:
    """The source and target connection ids of a trigger form (the migration's and the cut-over's)."""
    return {
        "source_conn_id": Param(
            "pg_source",
            type="string",
            minLength=1,
            title="Source connection",
            description="Airflow connection id of the source PostgreSQL database.",
        ),
        "target_conn_id": Param(
            target_conn_id,
            type="string",
            minLength=1,
            title="Target connection",
            description="Airflow connection id of the target (Aurora) database. "
            "Its owner needs no SUPERUSER (the Aurora master user is enough).",
        ),
    }


def migration_params(target_conn_id: str = "pg_target") -> dict[str, Param]:
    """The trigger form of ``pg_migration`` (and, with another target, of the rehearsal DAG)."""
    # Here, not at the top: the Amazon provider (boto3) costs every parse ~0.1 s, and the cut-over
    # and abort DAGs, which import this package too, have no ECS tasks.
    from pg_migration_support.ecs import ecs_params

    return {
        **connection_params(target_conn_id),
        "schemas": Param(
            [],
            type="array",
            items={"type": "string", "minLength": 1},
            uniqueItems=True,
            title="Schemas to migrate",
            description="Empty: every schema discovered in the source (never system schemas).",
        ),
        "exclude_schemas": Param(
            [], type="array", items={"type": "string", "minLength": 1}, uniqueItems=True, title="Schemas to leave out"
        ),
        "runner": Param(
            "local",
            type="string",
            enum=["local", "ecs"],
            title="Runner",
            description="local: worker processes on the Airflow worker; ecs: one Fargate task per "
            "phase/unit (settings: the ecs_* params, or $PG_MIGRATION_ECS_* on the Airflow workers).",
        ),
        "validation": Param(
            "counts",
            type="string",
            enum=["counts", "checksums"],
            title="Validation",
            description="counts: exact per-table row counts (ONLY). checksums: also an "
            "order-independent content checksum per table (slower: ~30% of the copy).",
        ),
        "validate_only": Param(
            False,
            type="boolean",
            title="Validate only",
            description="Copy nothing: validate an already migrated target.",
        ),
        "dry_run": Param(
            False,
            type="boolean",
            title="Dry run",
            description="Discover, pre-flight and plan only (predicted makespan); nothing is written.",
        ),
        "consistent": Param(
            True,
            type="boolean",
            title="One consistent snapshot",
            description="One exported snapshot for the whole run (holds back VACUUM on the "
            "source while the data units run). false: a snapshot per unit; "
            "cross-table foreign keys are then added NOT VALID and validated after.",
        ),
        "resume": Param(
            False,
            type="boolean",
            title="Resume",
            description="Keep tables that an earlier run loaded and verified; copy only the rest.",
        ),
        "create_roles": Param(
            True,
            type="boolean",
            title="Create missing roles",
            description="Create roles that grants name but the target lacks (NOLOGIN, no "
            "password); otherwise those grants are reported and skipped.",
        ),
        "pool_size": Param(
            4,
            type="integer",
            minimum=1,
            maximum=256,
            title="Pool size (planning hint)",
            description="Slots of the pg_migration pool: how many units run at once. Used to "
            "split big schemas and to predict the makespan; the pool itself caps.",
        ),
        "bandwidth_mb_s": Param(
            93,
            type="number",
            exclusiveMinimum=0,
            title="Network bandwidth (MB/s)",
            description="Source-to-worker bandwidth for the dry run's prediction "
            "(8 TB in 24 h needs ~93 MB/s sustained).",
        ),
        "split_mb": Param(
            None,
            type=["null", "integer"],
            minimum=1,
            title="Split schemas above (MB)",
            description="Empty: automatic (a third of one slot's share of the bytes).",
        ),
        **ecs_params(),
    }


def connection_ids(params: dict[str, Any]) -> tuple[Endpoint, Endpoint]:
    return endpoint(params["source_conn_id"], "source"), endpoint(params["target_conn_id"], "target")


from pg_migration_support import steps  # noqa: E402  (task bodies; imports this module lazily)

run_worker = steps.run_worker
