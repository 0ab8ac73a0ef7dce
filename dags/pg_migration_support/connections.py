"""Airflow connections as the library's :class:`~include.pg_migration.conn.Endpoint` (``AIRFLOW_CONN_*`` URIs work).

Every task body asks here: :func:`endpoint` names the connection id in the error when it does not
exist or has no host; :func:`endpoints` is a run's source and target, from its params.
"""

from __future__ import annotations

from typing import Any

from airflow.sdk import Connection

from include.pg_migration.conn import SSL_OPTIONS, Endpoint
from include.pg_migration.errors import ConfigError


def endpoint(conn_id: str, label: str) -> Endpoint:
    """The Airflow connection ``conn_id`` as an Endpoint (``AIRFLOW_CONN_*`` URIs work)."""
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


def endpoints(params: dict[str, Any]) -> tuple[Endpoint, Endpoint]:
    """The run's source and target: the params' ``source_conn_id`` and ``target_conn_id``."""
    return endpoint(params["source_conn_id"], "source"), endpoint(params["target_conn_id"], "target")
