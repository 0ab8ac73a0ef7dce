"""The phases of a migration run: one module per task users see in the Grid view.

================================= ================= ===============================================
task id (``pg_migration`` DAG)    ``PGMIG_PHASE``   module: function
================================= ================= ===============================================
``snapshot``                      ``snapshot``      :mod:`.snapshot`: ``hold`` (replicate mode:
                                                    ``hold_replication``; a re-run: ``reuse_cut``)
``pre_data``                      ``pre-data``      :mod:`.pre_data`: ``run_pre_data``
``migrate_unit`` (one per unit)   ``data``          :mod:`.data`: ``run_data_unit``
``large_objects``                 ``large-objects`` :mod:`.large_objects`: ``run_large_objects``
``post_data``                     ``post-data``     :mod:`.post_data`: ``run_post_data``
``release_snapshot``, ``cleanup`` --                :mod:`.snapshot`: ``request_release``
``validate`` (one per group)      --                :mod:`.validate`: ``validate_and_record``
================================= ================= ===============================================

The worker (:mod:`include.pg_migration.worker`) dispatches a ``PGMIG_PHASE`` value to its phase's
function; the validation runs in the Airflow task itself. Which phases need the run's snapshot held
is :func:`include.pg_migration.run_order.needs_snapshot`. Phases are independent: no phase module
imports another; what several of them share lives below them (:mod:`include.pg_migration.loading`,
:mod:`include.pg_migration.catalog`, :mod:`include.pg_migration.sessions`, ...).
"""
