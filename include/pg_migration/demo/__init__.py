"""Deterministic demo warehouse for exercising the migration (no Airflow imports).

    from include.pg_migration.demo import load_warehouse
    summary = load_warehouse("host=... dbname=empty_db user=postgres", scale=1.0, seed=42)

or ``python -m include.pg_migration.demo --dsn "..." [--scale S] [--seed N]``.
"""

from .warehouse import (
    BASE_COUNTS,
    LARGE_OBJECT_OID_BASE,
    SCHEMAS,
    WarehouseError,
    load_warehouse,
    plan_counts,
    warehouse_summary,
)

__all__ = [
    "BASE_COUNTS",
    "LARGE_OBJECT_OID_BASE",
    "SCHEMAS",
    "WarehouseError",
    "load_warehouse",
    "plan_counts",
    "warehouse_summary",
]
