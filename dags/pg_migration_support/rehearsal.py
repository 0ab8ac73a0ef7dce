"""The weekend rehearsal's schedule and docs (the DAG itself is built in ``pg_migration_dag.py``; its id is
:data:`include.pg_migration.run_order.REHEARSAL_DAG_ID`)."""

from __future__ import annotations

import os

import pendulum
from airflow.sdk import CronTriggerTimetable

REHEARSAL_TARGET_CONN_ID = "pg_target_rehearsal"
DEFAULT_CRON = "0 1 * * 6"  # Saturdays 01:00
DEFAULT_TZ = "UTC"

DOC = """
# pg_migration_rehearsal: the weekend rehearsal of the migration

The same DAG as `pg_migration` (same tasks, params and report), run **every Saturday at 01:00**
against the rehearsal target, so the team knows before go-live how long the migration takes and
whether it fits the downtime window.

* **Target**: the Airflow connection `pg_target_rehearsal` (the `target_conn_id` param's default; a
  manual trigger may point it elsewhere). Never the go-live target: the guard on the target keeps
  two runs apart, but only per target.
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
