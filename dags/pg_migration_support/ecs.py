"""The ECS Fargate runner (``runner: "ecs"``): the worker's phases as ``EcsRunTaskOperator`` tasks.

The same entrypoint as the local runner (``python -m include.pg_migration.worker``, configured by
environment only) runs in a Fargate task of the image built from ``include/aws/Dockerfile``, with the
task definition of ``include/aws/pg-migration.yaml``. What travels where:

* **overrides** (built by :func:`requests`, one per phase/unit, expanded with ``.expand_kwargs``):
  ``PGMIG_PHASE``, ``PGMIG_RUN_ID``, ``PGMIG_UNIT_ID`` and the non-secret endpoint settings
  (host, port, database, user, sslmode) of the Airflow connections -- never a password, never a
  table list (the worker reads its unit's definition from the target's ``_pg_migration.units``);
* **passwords**: only the task definition's ``secrets`` (Secrets Manager ARNs mapped to
  ``PGMIG_SOURCE_PASSWORD`` / ``PGMIG_TARGET_PASSWORD``), resolved by ECS when the container starts.
  Airflow never reads them: :func:`pg_migration_support.ecs_preflight.preflight` checks that the
  definition names them, and that the servers/users its plain environment names are the ones the
  Airflow connections name.

Settings (DAG params that default to null, resolved at run time, in a task, from the Airflow worker's
environment; see :data:`pg_migration_support.params.SETTINGS` and ``include/aws/README.md``):

=================================== ========================= ===========================================
param                               environment variable      default
=================================== ========================= ===========================================
``ecs_aws_conn_id``                 PG_MIGRATION_ECS_AWS_CONN_ID   ``aws_default``
``ecs_region``                      PG_MIGRATION_ECS_REGION        the AWS connection's region
``ecs_cluster``                     PG_MIGRATION_ECS_CLUSTER       required
``ecs_task_definition``             PG_MIGRATION_ECS_TASK_DEFINITION  required (family[:revision] or ARN)
``ecs_rehearsal_task_definition``   PG_MIGRATION_ECS_REHEARSAL_TASK_DEFINITION  the rehearsal DAG's (required there)
``ecs_container``                   PG_MIGRATION_ECS_CONTAINER     ``pg-migration-worker``
``ecs_subnets``                     PG_MIGRATION_ECS_SUBNETS       required (comma-separated in the env)
``ecs_security_groups``             PG_MIGRATION_ECS_SECURITY_GROUPS  none (the VPC's default group)
``ecs_assign_public_ip``            PG_MIGRATION_ECS_ASSIGN_PUBLIC_IP ``DISABLED``
``ecs_log_group``                   PG_MIGRATION_ECS_LOG_GROUP     ``/ecs/pg-migration-worker``
``ecs_log_stream_prefix``           PG_MIGRATION_ECS_LOG_STREAM_PREFIX ``pg-migration``
``ecs_poll_seconds``                PG_MIGRATION_ECS_POLL_SECONDS  ``10`` (DescribeTasks interval)
=================================== ========================= ===========================================

The snapshot holder (phase ``snapshot``) is a Fargate task too, started WITHOUT waiting (it runs until
``release_snapshot``) and found through the target like the local holder; :func:`wait_for_snapshot`
fails fast if its task stops before exporting, and :func:`stop_snapshot_holder` (from ``cleanup``)
stops it if it outlives the release.

Guards on top of the provider's operator (:class:`FargateWorkerOperator`): a stopped task counts as
success only if the worker's container really exited 0 AND the target records the unit/phase as done
for this run (a task that never started is never reported as success); a retry first re-attaches to
a still-running task (``reattach=True``) or adopts one that already finished with exit 0 (instead of
starting a second copy); a failure's exception carries the exit code's meaning and the container's
last log lines.
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
from dataclasses import asdict, dataclass, replace
from typing import Any

from airflow.providers.amazon.aws.hooks.ecs import EcsHook
from airflow.providers.amazon.aws.hooks.logs import AwsLogsHook
from airflow.providers.amazon.aws.operators.ecs import EcsRunTaskOperator
from airflow.providers.amazon.aws.utils.identifiers import generate_uuid
from airflow.providers.common.compat.sdk import AirflowException, AirflowSkipException

from include.pg_migration import run_order, state
from include.pg_migration.conn import Endpoint
from include.pg_migration.errors import ConfigError, MigrationError, SnapshotLost
from include.pg_migration.phases import snapshot as snap
from include.pg_migration.runner import worker_env
from pg_migration_support import connections
from pg_migration_support.params import SETTINGS

log = logging.getLogger("airflow.task")

#: The worker's exit codes (include/pg_migration/worker.py) and what they mean.
EXIT_CODES = {1: "the unit failed", 2: "configuration error", 3: "the run's snapshot is gone"}
#: ECS caps a RunTask's overrides at 8 KiB.
MAX_OVERRIDES_BYTES = 8192
#: How long the snapshot holder may take to start and export (Fargate provisioning + image pull).
HOLDER_START_TIMEOUT_S = 900.0
HOLDER_TASK_ID = "ecs.start_snapshot_holder"
SECRET_NAMES = {"source": "PGMIG_SOURCE_PASSWORD", "target": "PGMIG_TARGET_PASSWORD"}
#: The CA bundle inside the worker image (include/aws/image.toml, ``ca_bundle``; built in from
#: include/aws/rds-ca-bundle.pem): the containers' ``sslrootcert``, never the Airflow worker's path.
CONTAINER_CA_BUNDLE = "/etc/ssl/pg-migration/rds-ca-bundle.pem"
VERIFYING_SSLMODES = ("verify-ca", "verify-full")


# -- settings ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class EcsSettings:
    aws_conn_id: str | None
    region: str | None
    cluster: str
    task_definition: str
    rehearsal_task_definition: str | None
    container: str
    subnets: tuple[str, ...]
    security_groups: tuple[str, ...]
    assign_public_ip: str
    log_group: str
    log_stream_prefix: str
    poll_seconds: int

    @property
    def network_configuration(self) -> dict[str, Any]:
        vpc: dict[str, Any] = {"subnets": list(self.subnets), "assignPublicIp": self.assign_public_ip}
        if self.security_groups:
            vpc["securityGroups"] = list(self.security_groups)
        return {"awsvpcConfiguration": vpc}

    def operator_kwargs(self, with_logs: bool = True) -> dict[str, Any]:
        """The run-time part of an ECS task's operator arguments (everything else is in ``partial``)."""
        kwargs: dict[str, Any] = {
            "aws_conn_id": self.aws_conn_id,
            "region_name": self.region,
            "cluster": self.cluster,
            "task_definition": self.task_definition,
            "container_name": self.container,
            "network_configuration": self.network_configuration,
            "waiter_delay": self.poll_seconds,
        }
        if with_logs:
            kwargs.update(
                awslogs_group=self.log_group, awslogs_stream_prefix=self.log_stream_prefix, awslogs_region=self.region
            )
        return kwargs

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EcsSettings:
        return cls(**{**data, "subnets": tuple(data["subnets"]), "security_groups": tuple(data["security_groups"])})

    def describe(self) -> str:
        return (
            f"cluster {self.cluster}, task definition {self.task_definition}, container {self.container}, "
            f"subnets {','.join(self.subnets)}, security groups {','.join(self.security_groups) or '(default)'}, "
            f"public IP {self.assign_public_ip}, logs {self.log_group}:{self.log_stream_prefix}, "
            f"AWS connection {self.aws_conn_id}, region {self.region or '(connection)'}"
        )


def resolve(params: dict[str, Any], environ: dict[str, str] | None = None, rehearsal: bool = False) -> EcsSettings:
    """The ECS settings of a run: the param if set, else ``$PG_MIGRATION_ECS_*``, else the default.
    ``rehearsal``: the run's task definition is the rehearsal one (required)."""
    env = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    missing = []
    for s in SETTINGS:
        value = params.get(s.param)
        if value in (None, "", []):
            raw = env.get(s.env, "").strip()
            value = raw or None
            if value is not None and s.kind == "list":
                value = [v.strip() for v in re.split(r"[,\s]+", value) if v.strip()]
        if value in (None, []):
            value = s.default
        if s.required and value in (None, "", []) and not (rehearsal and s.name == "task_definition"):
            missing.append(f"{s.param} (or ${s.env})")
        if s.kind == "list":
            value = tuple(value or ())
        elif s.kind == "int" and value is not None:
            try:
                value = int(value)
            except ValueError:
                raise ConfigError(f"{s.param} / ${s.env} must be an integer, got {value!r}") from None
        values[s.name] = value
    if rehearsal:
        values["task_definition"] = values["rehearsal_task_definition"]
        if not values["task_definition"]:
            missing.append("ecs_rehearsal_task_definition (or $PG_MIGRATION_ECS_REHEARSAL_TASK_DEFINITION)")
    if missing:
        raise ConfigError(f"runner ecs{' (rehearsal)' if rehearsal else ''} needs: " + ", ".join(missing))
    public_ip = str(values["assign_public_ip"]).upper()
    public_ip = {"TRUE": "ENABLED", "FALSE": "DISABLED"}.get(public_ip, public_ip)
    if public_ip not in ("ENABLED", "DISABLED"):
        raise ConfigError(f"ecs_assign_public_ip must be ENABLED or DISABLED, got {values['assign_public_ip']!r}")
    values["assign_public_ip"] = public_ip
    if str(values["aws_conn_id"]).lower() == "none":
        values["aws_conn_id"] = None  # boto3's default credential chain
    return EcsSettings(**values)


# -- overrides --------------------------------------------------------------------------------------------


def overrides(settings: EcsSettings, env: dict[str, str]) -> dict[str, Any]:
    """RunTask overrides carrying the worker's non-secret environment (checked: no password, <= 8 KiB)."""
    secret = sorted(k for k in env if k.endswith("_PASSWORD") or "SECRET" in k)
    if secret:
        raise ConfigError(f"refusing to put {', '.join(secret)} into ECS overrides")
    result = {
        "containerOverrides": [
            {"name": settings.container, "environment": [{"name": k, "value": v} for k, v in sorted(env.items())]}
        ]
    }
    size = len(json.dumps(result, separators=(",", ":")).encode())
    if size > MAX_OVERRIDES_BYTES:
        raise ConfigError(
            f"ECS overrides of {env.get('PGMIG_PHASE')} {env.get('PGMIG_UNIT_ID', '')} are {size} bytes "
            f"(ECS accepts {MAX_OVERRIDES_BYTES})"
        )
    return result


def requests(
    settings: EcsSettings | dict[str, Any], params: dict[str, Any], run_id: str, planned: dict[str, Any], phase: str
) -> list[dict[str, Any]]:
    """Operator arguments of ``phase`` for ``.expand_kwargs``: one per unit for ``data`` (largest
    first), none for ``snapshot`` when the run is not consistent, else one."""
    if isinstance(settings, dict):
        settings = EcsSettings.from_dict(settings)
    source, target = (in_container(e) for e in connections.endpoints(params))

    def one(phase: str, unit_id: str | None = None, label: str | None = None, with_logs: bool = True):
        env = worker_env(source, target, run_id, phase, unit_id, with_passwords=False)
        return {
            **settings.operator_kwargs(with_logs=with_logs),
            "overrides": overrides(settings, env),
            "phase": phase,
            "unit_id": unit_id,
            "unit_label": label or phase,
        }

    if phase == "data":
        out = [one("data", u["unit_id"], u["label"]) for u in planned["units"]]
    elif phase == "snapshot":
        out = [one("snapshot", with_logs=False)] if params["consistent"] else []
    else:
        out = [one(phase)]
    for kw in out:
        log.info("%s: RunTask overrides %s", kw["unit_id"] or phase, json.dumps(kw["overrides"]))
    return out


def in_container(endpoint: Endpoint) -> Endpoint:
    """The endpoint as the container sees it: its ``sslrootcert`` is the image's CA bundle (a path on
    the Airflow worker means nothing there); client certificate files are not in the image: dropped."""
    rootcert = endpoint.sslrootcert
    if rootcert != "system" and (rootcert or endpoint.sslmode in VERIFYING_SSLMODES):
        rootcert = CONTAINER_CA_BUNDLE
    return replace(endpoint, sslrootcert=rootcert, sslcert=None, sslkey=None)


# -- the operator ------------------------------------------------------------------------------------------


class FargateWorkerOperator(EcsRunTaskOperator):
    """``EcsRunTaskOperator`` running one worker phase/unit, with the migration's guards (module doc).

    ``phase``/``unit_id`` say what the container does (they are also in its overrides); ``unit_label``
    is what the task's ``map_index_template`` shows.
    """

    def __init__(self, *, phase: str, unit_id: str | None = None, unit_label: str = "", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.phase = phase
        self.unit_id = unit_id
        self.unit_label = unit_label or unit_id or phase
        self._context: Any = None

    # -- before starting
    def execute(self, context):
        self._context = context
        params = context["params"]
        if run_order.needs_snapshot(self.phase, bool(params.get("consistent"))):
            # A clear error now instead of a container failing on a released snapshot.
            snap.check_alive(self._target(), context["run_id"])
        if self.phase == "snapshot" and self._run_has_a_cut(context["run_id"]):
            return None
        return super().execute(context)

    def _run_has_a_cut(self, run_id: str) -> bool:
        """A re-run of the holder's start: the run's one cut must still be held, never replaced."""
        snapshot_id = snap.reuse_cut(self._target(), run_id)
        if snapshot_id is None:
            return False
        self.log.info("snapshot %s of this run is still held: no new holder", snapshot_id)
        return True

    def execute_complete(self, context, event=None):
        self._context = context
        return super().execute_complete(context, event)

    def _try_reattach_task(self, started_by: str):
        super()._try_reattach_task(started_by)
        if self.arn or not self.wait_for_completion:
            return
        # A task that finished while Airflow lost track of it (worker or triggerer died): adopt its
        # success instead of starting a second copy. ECS lists stopped tasks for about an hour.
        stopped = self.client.list_tasks(cluster=self.cluster, desiredStatus="STOPPED", startedBy=started_by)
        arns = stopped.get("taskArns") or []
        if not arns:
            return
        for task in self.client.describe_tasks(cluster=self.cluster, tasks=arns[:100]).get("tasks", []):
            if self._exit_code(task) == 0:
                self.arn = task["taskArn"]
                self.log.info("Adopting ECS task %s: it already finished with exit code 0", self.arn)
                return

    # -- after it stopped
    def _exit_code(self, task: dict[str, Any]) -> int | None:
        if task.get("lastStatus") != "STOPPED" or task.get("stopCode") == "TaskFailedToStart":
            return None
        for container in task.get("containers") or []:
            if container.get("name") == self.container_name:
                return container.get("exitCode") if container.get("lastStatus") == "STOPPED" else None
        return None

    def _check_success_task(self) -> None:
        if not self.client or not self.arn:
            return
        try:
            super()._check_success_task()
            task = (self.client.describe_tasks(cluster=self.cluster, tasks=[self.arn]).get("tasks") or [{}])[0]
            code = self._exit_code(task)
            if code != 0:
                raise AirflowException(
                    f"ECS task {self.arn} has no exit code 0 for container {self.container_name!r} "
                    f"(exit code {code}, last status {task.get('lastStatus')}, stop code {task.get('stopCode')}, "
                    f"reason {task.get('stoppedReason')!r}): it never ran, or ran another container"
                )
        except AirflowSkipException:
            raise
        except Exception as exc:  # AirflowException, EcsTaskFailToStart: add what the worker said
            raise AirflowException(self._failure_message(exc)) from exc
        self._check_recorded()

    def _failure_message(self, exc: Exception) -> str:
        code = None
        try:
            task = (self.client.describe_tasks(cluster=self.cluster, tasks=[self.arn]).get("tasks") or [{}])[0]
            code = self._exit_code(task) if task.get("lastStatus") == "STOPPED" else None
            if code is None:
                code = next(
                    (c.get("exitCode") for c in task.get("containers") or [] if c.get("name") == self.container_name),
                    None,
                )
        except Exception:  # noqa: BLE001 - the message is best effort; the failure stands
            pass
        lines = self._last_log_lines()
        worker_says = next((ln for ln in reversed(lines) if ln.startswith("pg-migration: ")), None)
        head = f"{self.phase} {self.unit_label}: ECS task {self.arn} failed"
        if code is not None:
            head += f" with exit code {code}" + (f" ({EXIT_CODES[code]})" if code in EXIT_CODES else "")
        if worker_says:
            head += f": {worker_says[len('pg-migration: ') :]}"
        tail = "\n".join(lines[-self.number_logs_exception :]) if lines else "(no log lines)"
        return f"{head}\nECS: {str(exc)[:2000]}\nlast log lines:\n{tail}"

    def _last_log_lines(self) -> list[str]:
        if not (self.awslogs_group and self.awslogs_stream_prefix):
            return []
        try:
            logs = AwsLogsHook(aws_conn_id=self.aws_conn_id, region_name=self.resolve_awslogs_region()).conn
            events = logs.get_log_events(
                logGroupName=self.awslogs_group,
                logStreamName=self._get_logs_stream_name(),
                startFromHead=False,
                limit=max(self.number_logs_exception, 20),
            )["events"]
            return [e["message"].rstrip("\n") for e in events]
        except Exception as exc:  # noqa: BLE001 - no stream when the container never started
            self.log.warning("cannot read the container's log: %s", exc)
            return []

    def _check_recorded(self) -> None:
        """The target, not ECS, says whether the work was done: the worker records it last."""
        if self._context is None:
            return
        run_id = self._context["run_id"]
        with self._target().connect("pg_migration ecs-check", autocommit=True) as conn:
            if self.phase == "data":
                row = state.get_unit(conn, run_id, self.unit_id) or {}
                status = row.get("status")
            else:
                status = (state.phases_of_run(conn, run_id).get(self.phase) or {}).get("status")
        if status != "done":
            raise AirflowException(
                f"{self.phase} {self.unit_label}: ECS task {self.arn} exited 0 but the target records "
                f"status {status!r} for it in run {run_id!r} (expected 'done')"
            )
        self.log.info("%s %s: done (exit 0, recorded on the target)", self.phase, self.unit_label)

    def _target(self) -> Endpoint:
        return connections.endpoint(self._context["params"]["target_conn_id"], "target")


def worker_task(task_id: str, *, wait: bool = True, **kwargs: Any):
    """``FargateWorkerOperator.partial(...)`` with the runner's fixed settings; expand with
    ``.expand_kwargs(requests(...)[phase])``. ``wait=False`` is the snapshot holder: started, not awaited."""
    fixed: dict[str, Any] = {
        "launch_type": "FARGATE",
        "platform_version": "LATEST",
        "reattach": True,
        "do_xcom_push": False,
        "number_logs_exception": 20,
        "map_index_template": "{{ task.unit_label }}",
    }
    if wait:
        fixed.update(pool=run_order.POOL, deferrable=True, wait_for_completion=True)
    else:  # the snapshot holder: like the local `snapshot` task, no retry (a new holder = a new cut)
        fixed.update(deferrable=False, wait_for_completion=False, retries=0)
    return FargateWorkerOperator.partial(task_id=task_id, **{**fixed, **kwargs})


# -- snapshot holder ------------------------------------------------------------------------------------------


def _ecs_client(settings: EcsSettings):
    return EcsHook(aws_conn_id=settings.aws_conn_id, region_name=settings.region).conn


def holder_started_by(dag_id: str, run_id: str) -> str:
    """The holder's ``startedBy`` (what ``reattach`` computes for its one mapped instance)."""
    return generate_uuid(dag_id, HOLDER_TASK_ID, run_id, "0")


def wait_for_snapshot(params: dict[str, Any], run_id: str, dag_id: str, timeout_s: float = HOLDER_START_TIMEOUT_S):
    """Wait until the holder task exported the run's snapshot (found through the target); fail fast
    if the holder's ECS task stopped first."""
    if not params["consistent"]:
        log.info("consistent=false: every unit takes its own snapshot")
        return None
    settings = resolve(params, rehearsal=dag_id == run_order.REHEARSAL_DAG_ID)
    _, target = connections.endpoints(params)
    ecs = _ecs_client(settings)
    started_by = holder_started_by(dag_id, run_id)
    deadline = time.monotonic() + timeout_s
    next_ecs_check = 0.0
    while True:
        try:
            snapshot_id = snap.check_alive(target, run_id)
            log.info("snapshot %s exported; held by ECS task(s) started by %s", snapshot_id, started_by)
            return snapshot_id
        except SnapshotLost:
            pass
        if time.monotonic() >= next_ecs_check:
            next_ecs_check = time.monotonic() + max(settings.poll_seconds, 1)
            running = ecs.list_tasks(cluster=settings.cluster, startedBy=started_by, desiredStatus="RUNNING")
            if not running.get("taskArns"):
                stopped = ecs.list_tasks(cluster=settings.cluster, startedBy=started_by, desiredStatus="STOPPED")
                arns = stopped.get("taskArns") or []
                why = "no holder task is running"
                if arns:
                    task = ecs.describe_tasks(cluster=settings.cluster, tasks=arns[:1])["tasks"][0]
                    codes = [c.get("exitCode") for c in task.get("containers") or []]
                    why = (
                        f"the holder task {task['taskArn']} stopped ({task.get('stopCode')}: "
                        f"{task.get('stoppedReason')!r}, exit code(s) {codes}); see its log in {settings.log_group}"
                    )
                raise MigrationError(f"the snapshot was not exported: {why}")
        if time.monotonic() >= deadline:
            raise MigrationError(f"the ECS snapshot holder did not export a snapshot within {timeout_s:.0f}s")
        time.sleep(1.0)


def stop_snapshot_holder(params: dict[str, Any], run_id: str, dag_id: str) -> None:
    """Stop a holder task still running after the release (best effort; ``cleanup`` calls it)."""
    try:
        settings = resolve(params, rehearsal=dag_id == run_order.REHEARSAL_DAG_ID)
        ecs = _ecs_client(settings)
        arns = ecs.list_tasks(
            cluster=settings.cluster, startedBy=holder_started_by(dag_id, run_id), desiredStatus="RUNNING"
        ).get("taskArns", [])
        for arn in arns:
            ecs.stop_task(cluster=settings.cluster, task=arn, reason="pg-migration: snapshot released")
            log.info("stopped the snapshot holder task %s", arn)
    except Exception as exc:  # noqa: BLE001 - cleanup never fails the run; the holder ends after max hold
        log.warning("cleanup: cannot check/stop the ECS snapshot holder: %s", exc)
