"""The worker: the one process that does a unit's work, locally or in a Fargate container.

    python -m include.pg_migration.worker

It is configured by environment only (nothing secret ever in argv):

=========================== ===============================================================
``PGMIG_PHASE``             ``snapshot`` | ``pre-data`` | ``data`` | ``large-objects`` | ``post-data``
``PGMIG_RUN_ID``            the DAG run id; the unit's definition is read from the target's
                            ``_pg_migration.units`` by run id + unit id
``PGMIG_UNIT_ID``           the unit (phase ``data``)
``PGMIG_SOURCE_HOST``       source endpoint; also ``_PORT``, ``_DBNAME``, ``_USER``,
                            ``_SSLMODE``, ``_SSLROOTCERT`` (non-secret: fine in ECS overrides)
``PGMIG_SOURCE_PASSWORD``   secret: from the local runner's environment, or from the ECS task
                            definition's ``secrets`` (Secrets Manager) -- never an override
``PGMIG_TARGET_*``          the same for the target
``PGMIG_MAX_HOLD_S``        snapshot phase: release the snapshot after this long (default 48 h)
``PGMIG_PG_BIN``            optional: directory of the ``pg_dump`` to prefer
=========================== ===============================================================

Exit status: 0 done, 1 failed (the last line on stderr says what, naming the schema/table),
2 bad configuration, 3 the run's snapshot is gone.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from typing import Any

from include.pg_migration import state
from include.pg_migration.conn import Endpoint
from include.pg_migration.errors import ConfigError, MigrationError, SnapshotLost, UnitFailed
from include.pg_migration.phases.data import IndexBuilder, PsqlSource, copy_table
from include.pg_migration.sessions import end_stale_sessions, hold_unit_lock, lock_key, open_source_snapshot, tag

log = logging.getLogger("pg_migration.worker")

PHASES = ("snapshot", "pre-data", "data", "large-objects", "post-data")


def run_data_unit(source: Endpoint, target: Endpoint, run_id: str, unit_id: str) -> dict[str, Any]:
    """Copy a unit's tables (skipping those this run already loaded) and build their indexes."""
    app = tag(run_id, unit_id)
    started = time.monotonic()
    with target.connect(app, autocommit=True) as tgt:
        # A killed earlier attempt may still have sessions writing: end them, then hold the unit's lock.
        end_stale_sessions(tgt, app)
        hold_unit_lock(tgt, lock_key(run_id, unit_id))
        row = state.get_unit(tgt, run_id, unit_id)
        if row is None:
            raise ConfigError(f"unit {unit_id!r} is not in the plan of run {run_id!r}")
        unit = row["definition"]
        run = state.get_run(tgt, run_id)
        attempt = state.unit_started(tgt, run_id, unit_id)
        snapshot_id = run["snapshot_id"] if run["consistent"] else None
        resume = bool(run["params"].get("resume"))
        log.info(
            "unit %s (attempt %d): %d table(s) of schema %r, snapshot %s",
            unit_id,
            attempt,
            len(unit["tables"]),
            unit["schema"],
            snapshot_id or "(own)",
        )
        loaded = state.loaded_tables(tgt, [unit["schema"]])
        try:
            with source.connect(app, autocommit=True) as src_admin:
                end_stale_sessions(src_admin, app)
            src = open_source_snapshot(source, app, snapshot_id)
            builder = IndexBuilder(target, app, run_id).start()
            total_bytes = 0
            with src, target.connect(app) as load:
                server_version = load.info.server_version
                allow_binary = server_version >= src.info.server_version // 10000 * 10000
                reader = PsqlSource.for_unit(source, app, src)
                for table in unit["tables"]:
                    done = loaded.get((unit["schema"], table))
                    if done and done["source_rows"] == done["target_rows"] and (done["run_id"] == run_id or resume):
                        log.info(
                            "%s.%s already loaded and verified (run %s): kept", unit["schema"], table, done["run_id"]
                        )
                    else:
                        result = copy_table(
                            src, load, unit["schema"], table, run_id, unit_id, snapshot_id, allow_binary, reader
                        )
                        total_bytes += result.bytes
                    builder.submit(unit["schema"], table)
            builder.finish()
        except MigrationError as exc:
            state.unit_finished(tgt, run_id, unit_id, "failed", time.monotonic() - started, error=str(exc))
            raise
        except Exception as exc:
            state.unit_finished(tgt, run_id, unit_id, "failed", time.monotonic() - started, error=str(exc))
            raise UnitFailed(f"unit {unit_id}: {exc}") from exc
        seconds = time.monotonic() - started
        state.unit_finished(tgt, run_id, unit_id, "done", seconds, nbytes=total_bytes)
    log.info("unit %s done: %.1f MB in %.1fs", unit_id, total_bytes / 1e6, seconds)
    return {"unit_id": unit_id, "bytes": total_bytes, "seconds": seconds}


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
        app = tag(run_id, phase)
        if phase == "snapshot":
            from include.pg_migration.phases.snapshot import DEFAULT_MAX_HOLD_S, hold

            hold(source, target, run_id, app, float(os.environ.get("PGMIG_MAX_HOLD_S", DEFAULT_MAX_HOLD_S)))
        elif phase == "pre-data":
            from include.pg_migration.phases.pre_data import run_pre_data

            run_pre_data(source, target, run_id, app)
        elif phase == "data":
            unit_id = os.environ.get("PGMIG_UNIT_ID") or ""
            if not unit_id:
                raise ConfigError("PGMIG_UNIT_ID is not set for phase data")
            run_data_unit(source, target, run_id, unit_id)
        elif phase == "large-objects":
            from include.pg_migration.phases.large_objects import run_large_objects

            run_large_objects(source, target, run_id, app)
        else:
            from include.pg_migration.phases.pre_data import run_post_data

            run_post_data(source, target, run_id, app)
        if phase != "snapshot":
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
