"""``ReplicateRun``: a replicate run driven step by step without Airflow (tests; the reference for the DAG).

The local harness of replicate mode, built on :class:`include.pg_migration.pipeline.LocalRun`.
Nothing in the library imports it.
"""

from __future__ import annotations

from typing import Any

from include.pg_migration import cutover, pipeline, snapshot, state
from include.pg_migration.conn import Endpoint
from include.pg_migration.cutover.verify import copy_verified
from include.pg_migration.errors import ConfigError, MigrationError
from include.pg_migration.pipeline import LocalRun
from include.pg_migration.replicate import checks, lag, publication, records, subscription, teardown
from include.pg_migration.runner import local_env, run_local
from include.pg_migration.validate import validate_schema


class ReplicateRun(LocalRun):
    """``LocalRun`` in replicate mode: what ``pg_migration`` with ``mode: "replicate"`` does, in order.

    start():  discover, plan, checks (:func:`include.pg_migration.replicate.checks.check`), register,
              publication, slot + snapshot (holder), pre-data
    unit():   a data unit in the slot's snapshot (inherited)
    finish(): large objects, release, post-data, validate, subscribe, catch up (lag in the run's phases);
              whatever happens, :meth:`end` (a run that is not streaming drops what it created)
    """

    def __init__(
        self,
        source: Endpoint,
        target: Endpoint,
        run_id: str,
        *,
        publisher: Endpoint | None = None,
        replica_identity_full: bool = False,
        catchup_timeout_s: float = 60.0,
        validation: str = "counts",
        **options: Any,
    ):
        if options.get("resume"):
            raise ConfigError("resume: true is refused in replicate mode (see replicate.checks.check)")
        options.pop("consistent", None)
        super().__init__(source, target, run_id, consistent=True, **options)
        self.params.update(mode="replicate", replica_identity_full=replica_identity_full, validation=validation)
        self.publisher = publisher or source
        self.catchup_timeout_s = catchup_timeout_s
        self.validation = validation
        self.findings: list[dict[str, str]] = []
        self.lag: dict[str, Any] = {}

    def start(self) -> dict[str, Any]:
        inventory = pipeline.discover(self.source, self.include, self.exclude)
        self.plan = pipeline.make_plan(inventory, self.pool_size)
        self.findings = checks.check(self.source, self.target, self.plan["schemas"], self.params, self.run_id)
        checks.raise_blocking(self.findings)
        pipeline.register(self.target, self.run_id, self.dag_id, self.params, self.plan, self.source, True)
        records.register(
            self.target, self.run_id, self.dag_id, self.source, self.plan, bool(self.params["replica_identity_full"])
        )
        publication.prepare_publication(self.source, self.target, self.run_id)
        log_file = self.log_dir / f"pg_migration-snapshot-{self.run_id}.log"
        snapshot.start_local(local_env(self.env("snapshot")), log_file)
        snapshot.wait_for_snapshot(self.target, self.run_id)
        run_local(self.env("pre-data"), label="pre-data")
        return self.plan

    def finish(self) -> dict[str, Any]:
        try:
            run_local(self.env("large-objects"), label="large-objects")
            if self.validation != "checksums":
                state.request_release(self.target, self.run_id)
            run_local(self.env("post-data"), label="post-data")
            with self.target.connect(autocommit=True) as tgt:
                snapshot_id = state.get_run(tgt, self.run_id)["snapshot_id"]
            for schema in self.plan["schemas"]:
                result = validate_schema(
                    self.source,
                    self.target,
                    schema,
                    run_id=self.run_id,
                    mode=self.validation,
                    snapshot_id=snapshot_id if self.validation == "checksums" else None,
                )
                with self.target.connect(autocommit=True) as tgt:
                    state.save_validation(tgt, self.run_id, schema, result.to_dict())
            state.request_release(self.target, self.run_id)
            problems = copy_verified(self.target, self.source, self.run_id)
            if problems:
                raise MigrationError("not subscribing: the copy is not verified: " + "; ".join(problems[:10]))
            subscription.subscribe(self.target, self.run_id, self.publisher)
            self.lag = lag.wait_caught_up(self.source, self.target, self.run_id, timeout_s=self.catchup_timeout_s)
            lag.record_replication_phase(self.target, self.run_id, self.lag, {"caught_up": self.lag["caught_up"]})
            return self.lag
        finally:
            self.end()

    def end(self) -> dict[str, Any]:
        """Drop everything unless streaming; release the snapshot and the guard."""
        try:
            return teardown.cleanup_run(self.source, self.target, self.run_id)
        finally:
            self.close()

    def close(self) -> None:
        state.request_release(self.target, self.run_id)
        with self.target.connect(autocommit=True) as conn:
            if state.exists(conn):
                state.release_guard(conn, self.run_id)

    def cutover(self, cutover_run_id: str | None = None, **options: Any) -> dict[str, Any]:
        return cutover.run_cutover(
            self.source, self.target, cutover_run_id or f"{self.run_id}__cutover", run_id=self.run_id, **options
        )

    def abort(self) -> dict[str, Any]:
        return teardown.abort(self.source, self.target, self.run_id)
