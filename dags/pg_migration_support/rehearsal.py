"""The weekend rehearsal's schedule, runner, target and docs, and its own pre-flight checks (the DAG itself
is built in ``pg_migration_dag.py``; its id is :data:`include.pg_migration.run_order.REHEARSAL_DAG_ID`).

Read when the DAG file is parsed: ``$PG_MIGRATION_REHEARSAL_RUNNER`` (``local`` or ``ecs``; default
``ecs`` when the ECS runner is configured, i.e. ``$PG_MIGRATION_ECS_CLUSTER``, ``_TASK_DEFINITION`` and
``_SUBNETS`` are set, else ``local``) and ``$PG_MIGRATION_REHEARSAL_TARGET_CONN_ID`` (default
``pg_target_rehearsal``): the defaults of the rehearsal's ``runner`` and ``target_conn_id`` params.

Nothing here imports a provider (every parse imports this module)."""

from __future__ import annotations

import os

import pendulum
from airflow.sdk import CronTriggerTimetable

from include.pg_migration.conn import Endpoint

REHEARSAL_TARGET_CONN_ID = "pg_target_rehearsal"
#: The go-live DAG's target connection: a rehearsal never writes there (pre-flight, :func:`check_target`).
GOLIVE_TARGET_CONN_ID = "pg_target"
RUNNERS = ("local", "ecs")
#: The ECS settings whose presence makes ``ecs`` the rehearsal's default runner.
ECS_CONFIGURED_BY = ("PG_MIGRATION_ECS_CLUSTER", "PG_MIGRATION_ECS_TASK_DEFINITION", "PG_MIGRATION_ECS_SUBNETS")
DEFAULT_CRON = "0 1 * * 6"  # Saturdays 01:00
DEFAULT_TZ = "UTC"

DOC = """
# pg_migration_rehearsal: the weekend rehearsal of the migration

The same DAG as `pg_migration` (same tasks, params and report), run **every Saturday at 01:00**
against the rehearsal target, so the team knows before go-live how long the migration takes and
whether it fits the downtime window.

* **Target**: the Airflow connection `$PG_MIGRATION_REHEARSAL_TARGET_CONN_ID` (default
  `pg_target_rehearsal`; the `target_conn_id` param's default; a manual trigger may point it
  elsewhere). Never the go-live target: pre-flight blocks when its host, port and database are those
  of the go-live connection `pg_target`.
* **Runner**: `$PG_MIGRATION_REHEARSAL_RUNNER` (`local` or `ecs`; default `ecs` when the ECS runner is
  configured by `$PG_MIGRATION_ECS_*`, else `local`), so the rehearsal runs the path go-live runs.
  With `ecs` it runs the stack's **rehearsal task definition** (`ecs_rehearsal_task_definition`,
  `$PG_MIGRATION_ECS_REHEARSAL_TASK_DEFINITION`: its own target host, user and password secret);
  pre-flight blocks when that definition maps the go-live definition's target password secret.
* **Schedule**: `$PG_MIGRATION_REHEARSAL_CRON` (default `0 1 * * 6`) in the time zone
  `$PG_MIGRATION_REHEARSAL_TZ` (default `UTC`; an IANA name such as `Europe/Paris`; daylight saving
  time is followed), read when the DAG file is parsed. No catch-up (a missed weekend is not re-run),
  one run at a time. **Deployed paused**: unpause it when rehearsals should start (Airflow then
  starts the most recent missed Saturday at once: unpause it on a Saturday, or expect that run).
* **Report**: besides the usual report, the rehearsal compares itself with the earlier rehearsals
  (per-schema duration table, `rehearsal.svg` chart next to `report.md`) and states whether the
  whole migration fits `$PG_MIGRATION_DOWNTIME_WINDOW_H` hours (default 24). The history behind it
  is `history.jsonl` next to the reports.

See docs/operations.md ("Running a rehearsal").
"""


def rehearsal_timetable(environ: dict[str, str] | None = None) -> CronTriggerTimetable:
    """Saturdays 01:00 (``$PG_MIGRATION_REHEARSAL_CRON``) in ``$PG_MIGRATION_REHEARSAL_TZ`` (default UTC)."""
    env = os.environ if environ is None else environ
    cron = (env.get("PG_MIGRATION_REHEARSAL_CRON") or DEFAULT_CRON).strip()
    tz_name = (env.get("PG_MIGRATION_REHEARSAL_TZ") or DEFAULT_TZ).strip()
    try:
        tz = pendulum.timezone(tz_name)
    except Exception as exc:  # pendulum's InvalidTimezone and friends: say which setting is wrong
        raise ValueError(
            f"PG_MIGRATION_REHEARSAL_TZ={tz_name!r} is not a time zone (use an IANA name, e.g. Europe/Paris)"
        ) from exc
    return CronTriggerTimetable(cron, timezone=tz)


def rehearsal_runner(environ: dict[str, str] | None = None) -> str:
    """``$PG_MIGRATION_REHEARSAL_RUNNER``, else ``ecs`` when the ECS runner is configured, else ``local``."""
    env = os.environ if environ is None else environ
    runner = (env.get("PG_MIGRATION_REHEARSAL_RUNNER") or "").strip().lower()
    if not runner:
        return "ecs" if all((env.get(k) or "").strip() for k in ECS_CONFIGURED_BY) else "local"
    if runner not in RUNNERS:
        raise ValueError(f"PG_MIGRATION_REHEARSAL_RUNNER={runner!r}: use one of {', '.join(RUNNERS)}")
    return runner


def rehearsal_target_conn_id(environ: dict[str, str] | None = None) -> str:
    """``$PG_MIGRATION_REHEARSAL_TARGET_CONN_ID``, else ``pg_target_rehearsal``."""
    env = os.environ if environ is None else environ
    return (env.get("PG_MIGRATION_REHEARSAL_TARGET_CONN_ID") or "").strip() or REHEARSAL_TARGET_CONN_ID


def _finding(check: str, verdict: str, detail: str) -> dict[str, str]:
    return {"check": check, "verdict": verdict, "detail": detail}


def _where(e: Endpoint) -> tuple[str, int, str]:
    return (e.host.strip().lower().rstrip("."), int(e.port), e.dbname)


def check_target(target: Endpoint, golive: Endpoint | None) -> dict[str, str]:
    """A rehearsal's target must not be the go-live target (same host, port and database)."""
    if golive is None:
        return _finding(
            "rehearsal target", "ok", f"{target.describe()}; no go-live connection {GOLIVE_TARGET_CONN_ID!r} here"
        )
    if _where(target) == _where(golive):
        return _finding(
            "rehearsal target",
            "blocking",
            f"{target.describe()} is the go-live target ({golive.describe()}): a rehearsal never writes there; "
            "point $PG_MIGRATION_REHEARSAL_TARGET_CONN_ID (or target_conn_id) at the rehearsal cluster",
        )
    return _finding("rehearsal target", "ok", f"{target.describe()}, not the go-live target {golive.describe()}")


def _secret_base(value_from: str) -> str:
    """A secret's ARN without its JSON key/version part (``arn:...:secret:name-XXXXXX``)."""
    parts = value_from.split(":")
    return ":".join(parts[:7]) if len(parts) >= 7 and parts[2] == "secretsmanager" else value_from


def check_task_definitions(rehearsal_td: dict, golive_td: dict | None, container: str) -> dict[str, str]:
    """The rehearsal task definition must map its own target secret, not the go-live definition's."""
    name = f"{rehearsal_td.get('family')}:{rehearsal_td.get('revision')}"

    def target_secret(td: dict) -> str | None:
        for c in td.get("containerDefinitions") or []:
            if c.get("name") == container:
                for s in c.get("secrets") or []:
                    if s.get("name") == "PGMIG_TARGET_PASSWORD":
                        return _secret_base(s.get("valueFrom", ""))
        return None

    if golive_td is None:
        return _finding("ecs rehearsal secret", "warning", f"{name}: no go-live task definition to compare with")
    mine, theirs = target_secret(rehearsal_td), target_secret(golive_td)
    golive_name = f"{golive_td.get('family')}:{golive_td.get('revision')}"
    if mine and mine == theirs:
        return _finding(
            "ecs rehearsal secret",
            "blocking",
            f"the rehearsal task definition {name} maps the go-live target's password secret "
            f"({mine.rsplit(':', 1)[-1]}, as {golive_name} does): deploy the stack with RehearsalTarget* parameters",
        )
    return _finding("ecs rehearsal secret", "ok", f"{name} has its own target secret (not {golive_name}'s)")
