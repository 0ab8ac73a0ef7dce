"""The worker: the one process that does a unit's work, locally or in a Fargate container.

    python -m include.pg_migration.worker

It is configured by environment only (nothing secret ever in argv):

=========================== ===============================================================
``PGMIG_PHASE``             ``snapshot`` | ``pre-data`` | ``data`` | ``large-objects`` | ``post-data``
``PGMIG_RUN_ID``            the DAG run id; the unit's definition is read from the target's
                            ``_pg_migration.units`` by run id + unit id
``PGMIG_UNIT_ID``           the unit (phase ``data``)
``PGMIG_SOURCE_HOST``       source endpoint; also ``_PORT``, ``_DBNAME``, ``_USER``,
                            ``_SSLMODE``, ``_SSLROOTCERT`` (non-secret: fine in ECS overrides;
                            a missing or unreadable ``_SSLROOTCERT`` file: exit 2, naming the path)
``PGMIG_SOURCE_PASSWORD``   secret: from the local runner's environment, or from the ECS task
                            definition's ``secrets`` (Secrets Manager) -- never an override
``PGMIG_TARGET_*``          the same for the target
``PGMIG_MAX_HOLD_S``        snapshot phase: release the snapshot after this long (default 48 h)
``PGMIG_PG_BIN``            optional: directory of the ``pg_dump`` to prefer
=========================== ===============================================================

Each phase's work is a function of :mod:`include.pg_migration.phases` (``snapshot.hold``,
``pre_data.run_pre_data``, ``data.run_data_unit``, ``large_objects.run_large_objects``,
``post_data.run_post_data``); this module only reads the environment, dispatches to that function
and, before reporting success, makes the phase's commits durable (:func:`make_durable`).

Exit status: 0 done, 1 failed (the last line on stderr says what, naming the schema/table),
2 bad configuration, 3 the run's snapshot is gone.
"""

from __future__ import annotations

import logging
import os
import sys

from include.pg_migration import state
from include.pg_migration.conn import Endpoint
from include.pg_migration.errors import ConfigError, MigrationError, SnapshotLost
from include.pg_migration.run_order import DATA, LARGE_OBJECTS, PHASES, PRE_DATA, SNAPSHOT
from include.pg_migration.sessions import phase_tag


def make_durable(target: Endpoint, app: str, run_id: str) -> None:
    """Before the phase reports success: every commit it made is on the target's disk.

    The loads commit with ``synchronous_commit = off`` (no wait for the WAL flush per table). A
    transaction that changes a row, committed with it on, flushes the WAL up to its own commit record,
    and so every earlier commit of every session: a crash or failover of the target right after the
    phase (which Airflow has then marked done and will not retry) cannot take its tables, keys or
    records back. (A transaction that wrote nothing would commit without the flush.)
    """
    with target.connect(app, autocommit=True) as conn:
        conn.execute("SET synchronous_commit = on")
        with conn.transaction():
            conn.execute(state.q("UPDATE {s}.runs SET run_id = run_id WHERE run_id = %s"), (run_id,))


def main() -> int:
    logging.basicConfig(
        level=os.environ.get("PGMIG_LOG_LEVEL", "INFO"),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    logging.getLogger("psycopg").setLevel(logging.WARNING)
    phase = os.environ.get("PGMIG_PHASE", "")
    try:
        if phase not in PHASES:
            raise ConfigError(f"PGMIG_PHASE must be one of {', '.join(PHASES)} (got {phase!r})")
        run_id = os.environ.get("PGMIG_RUN_ID") or ""
        if not run_id:
            raise ConfigError("PGMIG_RUN_ID is not set")
        source = Endpoint.from_env("PGMIG_SOURCE", "source")
        target = Endpoint.from_env("PGMIG_TARGET", "target")
        source.check_tls_files()  # a missing or unreadable CA bundle fails the phase, naming the path
        target.check_tls_files()
        app = phase_tag(run_id, phase)
        # A phase's module is imported only when that phase runs: each worker loads only its own phase's code.
        if phase == SNAPSHOT:
            from include.pg_migration.phases.snapshot import DEFAULT_MAX_HOLD_S, hold  # noqa: PLC0415 - a worker loads only its own phase's code

            hold(source, target, run_id, app, float(os.environ.get("PGMIG_MAX_HOLD_S", DEFAULT_MAX_HOLD_S)))
        elif phase == PRE_DATA:
            from include.pg_migration.phases.pre_data import run_pre_data  # noqa: PLC0415 - a worker loads only its own phase's code

            run_pre_data(source, target, run_id, app)
        elif phase == DATA:
            from include.pg_migration.phases.data import run_data_unit  # noqa: PLC0415 - a worker loads only its own phase's code

            unit_id = os.environ.get("PGMIG_UNIT_ID") or ""
            if not unit_id:
                raise ConfigError("PGMIG_UNIT_ID is not set for phase data")
            run_data_unit(source, target, run_id, unit_id)
        elif phase == LARGE_OBJECTS:
            from include.pg_migration.phases.large_objects import run_large_objects  # noqa: PLC0415 - a worker loads only its own phase's code

            run_large_objects(source, target, run_id, app)
        else:
            from include.pg_migration.phases.post_data import run_post_data  # noqa: PLC0415 - a worker loads only its own phase's code

            run_post_data(source, target, run_id, app)
        if phase != SNAPSHOT:
            make_durable(target, app, run_id)
    except ConfigError as exc:
        print(f"pg-migration: {exc}", file=sys.stderr)
        return 2
    except SnapshotLost as exc:
        print(f"pg-migration: {exc}", file=sys.stderr)
        return 3
    except MigrationError as exc:
        print(f"pg-migration: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
