"""The phases of a migration run: one module per task users see in the Grid view.

:mod:`.snapshot` (task ``snapshot``), :mod:`.pre_data` (``pre_data``), :mod:`.data` (``migrate_unit``),
:mod:`.large_objects` (``large_objects``), :mod:`.post_data` (``post_data``) and :mod:`.validate`
(``validate``). Which function does each task's work, and under which ``PGMIG_PHASE`` value the
worker runs it, is told once: :data:`include.pg_migration.run_order.MIGRATION` (also the table in
``docs/architecture.md``).

The worker (:mod:`include.pg_migration.worker`) dispatches a ``PGMIG_PHASE`` value to its phase's
function; the validation runs in the Airflow task itself. Which phases need the run's snapshot held
is :func:`include.pg_migration.run_order.needs_snapshot`. Phases are independent: no phase module
imports another; what several of them share lives below them (:mod:`include.pg_migration.loading`,
:mod:`include.pg_migration.catalog`, :mod:`include.pg_migration.sessions`, ...).
"""
