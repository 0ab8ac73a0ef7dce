"""Near-zero downtime: keep the target in sync with logical replication until the cut-over.

``mode: "replicate"`` of ``pg_migration`` runs the usual copy, but from the exported snapshot of a
logical replication slot, then subscribes the target to that slot, so every change committed on
the source after the cut streams into the target until ``pg_migration_cutover`` (the downtime
window, :mod:`include.pg_migration.cutover`) or ``pg_migration_abort`` (calling it off). The source
stays in production throughout.

Objects (named after the run: ``pgmig_<12 hex of sha1(run id)>``; :func:`.records.names`):

============== ========= ==================================================================
publication    source    ``FOR TABLE ONLY`` every plain table of the plan, ``publish_via_
                         partition_root = false``: the unit of change is the physical table,
                         exactly as the copy's unit of loading is (an inheritance parent's own
                         rows, each child, each leaf partition). A row lives in one table, so it
                         is copied once and its changes are applied once (no DMS double-apply).
slot           source    logical, ``pgoutput``; created on a replication connection with
                         ``CREATE_REPLICATION_SLOT ... LOGICAL pgoutput (SNAPSHOT 'export')`` by
                         the snapshot holder (:func:`include.pg_migration.phases.snapshot.hold_replication`)
                         AFTER the publication exists, so every change after the cut is published.
subscription   target    ``create_slot = false, copy_data = false, slot_name = <slot>``, owned by
                         the target user (Aurora master user; locally PostgreSQL 16+ and
                         ``pg_create_subscription``); its connection string carries the password
                         of the subscription's source role (a non-superuser owner must use one).
============== ========= ==================================================================

Order in a run: checks (:func:`.checks.check`) -> publication (+ ``REPLICA IDENTITY FULL`` where
allowed; :func:`.publication.prepare_publication`) -> slot + exported snapshot (holder;
:mod:`.slot`) -> pre-data, units, large objects, in that snapshot -> release -> post-data ->
validation against the snapshot -> the copy verified
(:func:`include.pg_migration.cutover.verify.copy_verified`) -> :func:`.subscription.subscribe` ->
:func:`.lag.wait_caught_up` (report the lag). A run that does not reach "streaming" drops
everything (:func:`.teardown.cleanup_run`, :func:`.teardown.drop_all`).

Modules, by concern (none imports anything above this package):

================ ==================================================================================
``records``      the replication's own state table ``_pg_migration.replication`` on the target,
                 one row per replicate run (what was created, what identity was changed, cut-over
                 timestamps); the password is never stored there (it lives in the target's
                 ``pg_subscription``, readable by superusers only)
``checks``       the replication checks, one function per finding
``publication``  the publication and replica identity (source)
``slot``         the slot, its replication connection, the holder's wait and errors (source)
``subscription`` the subscription (target)
``lag``          slot and subscription status, lag, catching up, the run's ``replication`` phase
``teardown``     dropping what a run created: ``drop_all``, ``cleanup_run``, ``abort``, ``leftovers``
================ ==================================================================================

Source rights the mode needs: ``REPLICATION`` (slot, replication connection; RDS:
``rds_replication``), ``CREATE`` on the database and ownership of every published table (publication;
``REPLICA IDENTITY FULL``), ``wal_level = logical``, a free replication slot and WAL sender. The
subscription's source role needs ``REPLICATION`` and a password.
"""
