"""The DAGs' trigger forms: every param with title, description and type, told here once.

* :func:`migration_params` -- ``pg_migration`` and its rehearsal (with :func:`replication_params`
  for mode ``replicate`` and :func:`ecs_params` for runner ``ecs``);
* :func:`cutover_params` -- ``pg_migration_cutover``; :func:`abort_params` -- ``pg_migration_abort``;
* :data:`SETTINGS` -- the ECS runner's settings: a param each (null by default) and an environment
  variable each, resolved at run time by :func:`pg_migration_support.ecs.resolve`.

Nothing here imports a provider: every DAG file's parse needs these forms.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from airflow.sdk import Param as _Param

from include.pg_migration import run_order

ENV_PREFIX = "PG_MIGRATION_ECS_"

# Each field's JSON Schema names draft-07. Airflow checks every param's schema against its meta-schema
# each time it resolves the param: for every task of every serialization of the DAG (each parse by the
# DAG processor, three times per `dags test`), about 6,000 checks per parse here. Against the default
# (2020-12) meta-schema a check costs 2.6 times as much: 7.5 s of CPU per parse instead of 2.8 s.
DRAFT_07 = {"$schema": "http://json-schema.org/draft-07/schema#"}


def Param(default: Any, **schema: Any) -> _Param:  # noqa: N802 - reads like the class it builds
    """``airflow.sdk.Param`` with its schema on JSON Schema draft-07 (see ``DRAFT_07``)."""
    return _Param(default, **DRAFT_07, **schema)


SECTION = "ECS runner (runner: ecs)"


# -- the migration --------------------------------------------------------------------------------


def connection_params(target_conn_id: str = "pg_target") -> dict[str, Param]:
    """The source and target connection ids of a trigger form (the migration's and the cut-over's)."""
    return {
        "source_conn_id": Param(
            "pg_source",
            type="string",
            minLength=1,
            title="Source connection",
            description="Airflow connection id of the source PostgreSQL database.",
        ),
        "target_conn_id": Param(
            target_conn_id,
            type="string",
            minLength=1,
            title="Target connection",
            description="Airflow connection id of the target (Aurora) database. "
            "Its owner needs no SUPERUSER (the Aurora master user is enough).",
        ),
    }


def migration_params(target_conn_id: str = "pg_target", runner: str = "local") -> dict[str, Param]:
    """The trigger form of ``pg_migration`` (and, with another target and runner, of the rehearsal DAG)."""
    return {
        **connection_params(target_conn_id),
        "schemas": Param(
            [],
            type="array",
            items={"type": "string", "minLength": 1},
            uniqueItems=True,
            title="Schemas to migrate",
            description="Empty: every schema discovered in the source (never system schemas).",
        ),
        "exclude_schemas": Param(
            [], type="array", items={"type": "string", "minLength": 1}, uniqueItems=True, title="Schemas to leave out"
        ),
        "tables": Param(
            [],
            type="array",
            items={"type": "string", "minLength": 1},
            uniqueItems=True,
            title="Tables to migrate (pg_dump -t patterns)",
            description="Empty: every table of the schemas. Else only the tables matching a pattern, and only "
            'the schemas holding one: pg_dump\'s rules (* ? quoted "Parts" schema.table, unquoted letters '
            "fold to lower case; no schema part: tables on the search_path). A pattern matching nothing fails.",
        ),
        "exclude_tables": Param(
            [],
            type="array",
            items={"type": "string", "minLength": 1},
            uniqueItems=True,
            title="Tables to leave out (pg_dump -T patterns)",
            description="Neither definition nor data. Pre-flight refuses a selection that cannot be restored "
            "(a child or partition of a table left out, a key into one).",
        ),
        "exclude_table_data": Param(
            [],
            type="array",
            items={"type": "string", "minLength": 1},
            uniqueItems=True,
            title="Tables created empty (pg_dump --exclude-table-data patterns)",
            description="The definition is migrated, no row: validation expects 0 rows on the target.",
        ),
        "runner": Param(
            runner,
            type="string",
            enum=["local", "ecs"],
            title="Runner",
            description="local: worker processes on the Airflow worker; ecs: one Fargate task per "
            "phase/unit (settings: the ecs_* params, or $PG_MIGRATION_ECS_* on the Airflow workers).",
        ),
        "validation": Param(
            "counts",
            type="string",
            enum=["counts", "checksums"],
            title="Validation",
            description="counts: exact per-table row counts (ONLY). checksums: also an "
            "order-independent content checksum per table (slower: ~30% of the copy).",
        ),
        "validate_only": Param(
            False,
            type="boolean",
            title="Validate only",
            description="Copy nothing: validate an already migrated target.",
        ),
        "dry_run": Param(
            False,
            type="boolean",
            title="Dry run",
            description="Discover, pre-flight and plan only (predicted makespan); nothing is written.",
        ),
        "consistent": Param(
            True,
            type="boolean",
            title="One consistent snapshot",
            description="One exported snapshot for the whole run (holds back VACUUM on the "
            "source while the data units run). false: a snapshot per unit; "
            "cross-table foreign keys are then added NOT VALID and validated after.",
        ),
        "resume": Param(
            False,
            type="boolean",
            title="Resume",
            description="Keep tables that an earlier run loaded and verified; copy only the rest.",
        ),
        "create_roles": Param(
            True,
            type="boolean",
            title="Create missing roles",
            description="Create roles that grants name (and, with ownership carry/exact, roles that own "
            "objects) but the target lacks, with their attributes and memberships where the target role may "
            "(no password unless the source role is a superuser); otherwise those grants are reported and "
            "skipped.",
        ),
        "ownership": Param(
            "carry",
            type="string",
            enum=["carry", "exact", "target_user"],
            title="Ownership",
            description="carry: after load and validation, hand every object to its source owner where the "
            "target role may (it can SET ROLE to the owner, the owner has CREATE on the schema); an owner it "
            "cannot carry (a superuser, a role without ADMIN OPTION) is a pre-flight warning naming object "
            "and role. exact: such an owner fails the run in pre-flight. target_user: the target role owns "
            "everything.",
        ),
        "replace_dependents": Param(
            False,
            type="boolean",
            title="Replace dependent objects",
            description="A schema already on the target is dropped and re-created (public: the objects "
            "re-created). If that would also drop objects OUTSIDE the migrated schemas that depend on "
            "them (a view, foreign key, function, type or column default of another schema, e.g. one "
            "migrated by an earlier run), the run refuses, naming each, and changes nothing. true: drop "
            "them (the report lists them; re-create them afterwards).",
        ),
        "lock_share": Param(
            0.5,
            type="number",
            exclusiveMinimum=0,
            maximum=1,
            title="Lock table share",
            description="The share of each server's lock table (max_locks_per_transaction x server process "
            "slots, read from each server) that all the run's sessions together may hold; the rest is left to "
            "production. Pre-data dumps and applies the definitions in batches that fit; pre-flight prints "
            "the batches and blocks a step that fits no batching, naming the setting it needs.",
        ),
        "pool_size": Param(
            4,
            type="integer",
            minimum=1,
            maximum=256,
            title="Pool size (planning hint)",
            description="Slots of the pg_migration pool: how many units run at once. Used to "
            "split big schemas and to predict the makespan; the pool itself caps.",
        ),
        "bandwidth_mb_s": Param(
            93,
            type="number",
            exclusiveMinimum=0,
            title="Network bandwidth (MB/s)",
            description="Source-to-worker bandwidth for the dry run's prediction "
            "(8 TB in 24 h needs ~93 MB/s sustained).",
        ),
        "split_mb": Param(
            None,
            type=["null", "integer"],
            minimum=1,
            title="Split schemas above (MB)",
            description="Empty: automatic (a third of one slot's share of the bytes).",
        ),
        **ecs_params(),
    }


# -- replicate mode, the cut-over, the abort -------------------------------------------------------


def replication_params() -> dict[str, Param]:
    """Params ``pg_migration`` needs for replicate mode (merge into its params)."""
    return {
        "mode": Param(
            "snapshot",
            type="string",
            enum=list(run_order.MODES),
            title="Mode",
            description="snapshot: copy one consistent cut (downtime = the whole run). replicate: copy from a "
            "logical replication slot's snapshot, then stream every later change into the target until "
            "pg_migration_cutover (downtime = the cut-over) or pg_migration_abort. Needs wal_level=logical "
            "and REPLICATION on the source, PostgreSQL 16+ (or Aurora) on the target.",
        ),
        "replica_identity_full": Param(
            False,
            type="boolean",
            title="Allow REPLICA IDENTITY FULL",
            description="replicate: tables without a primary key get REPLICA IDENTITY FULL on the source (restored "
            "after the cut-over or abort); otherwise the plan fails naming them (their UPDATE/DELETE would "
            "fail on the source once published).",
        ),
        "subscription_conn_id": Param(
            "",
            type="string",
            title="Subscription's source connection",
            description="replicate: Airflow connection the TARGET server uses to reach the source (host as seen "
            "from the target; a role with REPLICATION and a password). Empty: the source connection.",
        ),
        "catchup_timeout_s": Param(
            300,
            type="integer",
            minimum=0,
            title="Catch-up wait (s)",
            description="replicate: how long the run waits for the target to catch up after subscribing "
            "(the replication goes on either way; the report shows the lag).",
        ),
    }


def cutover_params() -> dict[str, Param]:
    """The trigger form of ``pg_migration_cutover``."""
    return {
        **connection_params(),
        "validation": Param(
            "counts",
            type="string",
            enum=["counts", "checksums"],
            title="Validation",
            description="counts: exact per-table row counts (ONLY); checksums: also content.",
        ),
        "read_only_source": Param(
            False,
            type="boolean",
            title="Make the source read-only",
            description="Set default_transaction_read_only on the source database and end "
            "its client sessions before checking that writes stopped (reset by abort or a "
            "failed cut-over; kept after a successful one).",
        ),
        "replicate_run_id": Param(
            "",
            type="string",
            title="Replicate run",
            description="The pg_migration run whose replication to cut over. Empty: the "
            "one streaming into the target (recorded there).",
        ),
        "quiet_seconds": Param(
            10,
            type="number",
            minimum=0.5,
            title="Quiet window (s)",
            description="No transaction of the source database may commit for this long.",
        ),
        "writes_timeout_s": Param(300, type="integer", minimum=1, title="Writes-stopped timeout (s)"),
        "lag_timeout_s": Param(1800, type="integer", minimum=1, title="Catch-up timeout (s)"),
    }


def abort_params() -> dict[str, Param]:
    """The trigger form of ``pg_migration_abort``."""
    return {
        **connection_params(),
        "replicate_run_id": Param(
            "",
            type="string",
            title="Replicate run",
            description="The pg_migration run whose replication to drop. Empty: every "
            "replication recorded as live on the target.",
        ),
    }


# -- the ECS runner's settings -------------------------------------------------------------------


@dataclass(frozen=True)
class Setting:
    name: str  # EcsSettings field; param "ecs_<name>"; env PG_MIGRATION_ECS_<NAME>
    default: Any
    kind: str  # "string" | "list" | "int"
    title: str
    description: str
    required: bool = False

    @property
    def param(self) -> str:
        return f"ecs_{self.name}"

    @property
    def env(self) -> str:
        return ENV_PREFIX + self.name.upper()


SETTINGS: tuple[Setting, ...] = (
    Setting("aws_conn_id", "aws_default", "string", "AWS connection", "Airflow connection id for AWS."),
    Setting("region", None, "string", "AWS region", "Empty: the AWS connection's region."),
    Setting("cluster", None, "string", "ECS cluster", "Cluster name or ARN (stack output).", required=True),
    Setting(
        "task_definition",
        None,
        "string",
        "Task definition",
        "Family, family:revision or ARN of the worker's task definition (stack output).",
        required=True,
    ),
    Setting(
        "rehearsal_task_definition",
        None,
        "string",
        "Rehearsal task definition",
        "The rehearsal DAG's task definition (its own target and secret; stack output EcsRehearsalTaskDefinition).",
    ),
    Setting("container", "pg-migration-worker", "string", "Container name", "The worker's container."),
    Setting("subnets", None, "list", "Subnets", "Private subnets that reach source and target.", required=True),
    Setting("security_groups", None, "list", "Security groups", "Empty: the VPC's default security group."),
    Setting("assign_public_ip", "DISABLED", "string", "Assign public IP", "ENABLED or DISABLED."),
    Setting("log_group", "/ecs/pg-migration-worker", "string", "CloudWatch log group", "The awslogs group."),
    Setting("log_stream_prefix", "pg-migration", "string", "Log stream prefix", "The awslogs stream prefix."),
    Setting("poll_seconds", 10, "int", "Poll interval (s)", "How often a waiting task asks ECS (DescribeTasks)."),
)


def ecs_params() -> dict[str, Param]:
    """DAG params of the ECS runner: all null by default, resolved at run time
    (:func:`pg_migration_support.ecs.resolve`)."""
    types = {"string": ["null", "string"], "list": ["null", "array"], "int": ["null", "integer"]}
    out = {}
    for s in SETTINGS:
        extra: dict[str, Any] = {"items": {"type": "string", "minLength": 1}} if s.kind == "list" else {}
        if s.kind == "int":
            extra["minimum"] = 0
        default = "required" if s.required else f"default {s.default!r}" if s.default is not None else "none"
        out[s.param] = Param(
            None,
            type=types[s.kind],
            title=s.title,
            description=f"{s.description} Empty: ${s.env} on the Airflow worker ({default}).",
            section=SECTION,
            **extra,
        )
    return out
