"""pg-migration: move PostgreSQL schemas to Aurora PostgreSQL, per schema, in parallel, proven equal.

This package is the whole migration logic. It imports nothing from Airflow: the DAGs in ``dags/``
only wire its functions into tasks. Entry points:

* :mod:`include.pg_migration.worker` -- the one process a unit of work runs (locally or on ECS);
* :mod:`include.pg_migration.catalog` -- discovery of schemas and tables;
* :mod:`include.pg_migration.plan` -- units of work;
* :mod:`include.pg_migration.phases.validate` -- row counts, checksums and structure comparison;
* :mod:`include.pg_migration.reports` -- the run report (``report.json`` + ``report.md``), the rehearsal history.
"""

STATE_SCHEMA = "_pg_migration"
"""Schema on the TARGET holding the migration's own state (never migrated, never validated)."""
