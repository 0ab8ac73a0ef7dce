"""What the page shows, computed from the run reports only (no Airflow import, no second copy).

Everything here reads through :mod:`include.pg_migration.reports.schema`, which owns the report schema
and location; ``base`` is that module's ``base`` (``None``: ``$PG_MIGRATION_REPORTS`` or the default).
The downtime window is :func:`include.pg_migration.reports.history.downtime_window_hours`'s.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable, Iterable
from typing import Any

from include.pg_migration.reports import chart, history
from include.pg_migration.reports import schema as rpt
from include.pg_migration.run_order import REHEARSAL_DAG_ID, RUN_DAG_ID


def runs(allowed: Callable[[str], bool] | None = None, base: str | None = None) -> list[dict[str, Any]]:
    """Summaries of every report (``report.runs()``) the caller may read, newest first."""
    return [r for r in rpt.runs(base) if allowed is None or allowed(r["dag_id"])]


def read(dag_id: str, run_id: str, base: str | None = None) -> dict[str, Any] | None:
    return rpt.read(dag_id, run_id, base)


def latest(dag_id: str, summaries: Iterable[dict[str, Any]], base: str | None = None) -> dict[str, Any] | None:
    """The newest report of ``dag_id`` that migrated something (dry runs only when there is nothing else)."""
    mine = [r for r in summaries if r["dag_id"] == dag_id]
    chosen = next((r for r in mine if r.get("verdict") != "planned"), mine[0] if mine else None)
    if chosen is None:
        return None
    return rpt.read(dag_id, chosen["run_id"], base)


def _sum(values: Iterable[Any]) -> int | None:
    numbers = [v for v in values if isinstance(v, int | float)]
    return int(sum(numbers)) if numbers else None


def schema_rows(report: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per schema: status, attempts, bytes, duration, rows source/target, mismatches."""
    planned: dict[str, int] = {}
    for unit in (report.get("plan") or {}).get("units") or []:
        planned[unit["schema"]] = planned.get(unit["schema"], 0) + int(unit.get("bytes") or 0)
    out = []
    for s in report.get("schemas") or []:
        tables = s.get("tables") or []
        mismatches = list(s.get("mismatches") or []) + [f"structure: {d}" for d in s.get("structure_diffs") or []]
        units = s.get("units") or []
        out.append(
            {
                "schema": s["schema"],
                "status": s.get("status") or "unknown",
                "attempts": s.get("attempts") or 0,
                "bytes": s.get("bytes"),
                "planned_bytes": planned.get(s["schema"]),
                "seconds": s.get("seconds"),
                "validation_seconds": s.get("validation_seconds"),
                "units": len(units),
                "units_done": sum(1 for u in units if u.get("status") == "done"),
                "tables": len(tables),
                "source_rows": _sum(t.get("source_rows") for t in tables),
                "target_rows": _sum(t.get("target_rows") for t in tables),
                "mismatches": len(mismatches),
                "mismatch_details": mismatches,
                "errors": [u["error"] for u in units if u.get("error")],
            }
        )
    return out


def run_summary(report: dict[str, Any] | None) -> dict[str, Any] | None:
    """A report as the page shows it: verdict, times, totals and the per-schema rows."""
    if report is None:
        return None
    rows = schema_rows(report)
    statuses: dict[str, int] = {}
    for r in rows:
        statuses[r["status"]] = statuses.get(r["status"], 0) + 1
    return {
        "dag_id": report.get("dag_id"),
        "run_id": report.get("run_id"),
        "verdict": report.get("verdict") or "unknown",
        "started_at": report.get("started_at"),
        "finished_at": report.get("finished_at"),
        "total_seconds": report.get("total_seconds"),
        "bytes": _sum(r["bytes"] for r in rows),
        "planned_bytes": (report.get("plan") or {}).get("bytes"),
        "predicted_makespan_s": (report.get("plan") or {}).get("predicted_makespan_s"),
        "source_rows": _sum(r["source_rows"] for r in rows),
        "target_rows": _sum(r["target_rows"] for r in rows),
        "mismatches": sum(r["mismatches"] for r in rows) + len((report.get("database") or {}).get("mismatches") or []),
        "schema_statuses": statuses,
        "schemas": rows,
        "failures": list(report.get("failures") or []),
        "warnings": list(report.get("warnings") or []),
        "snapshot": (report.get("snapshot") or {}).get("note"),
        "dry_run": bool((report.get("params") or {}).get("dry_run")),
    }


def overview(allowed: Callable[[str], bool] | None = None, base: str | None = None) -> dict[str, Any]:
    """The latest run and the latest rehearsal (per-schema rows), newest reports first."""
    summaries = runs(allowed, base)
    window, warning = history.downtime_window_hours()
    return {
        "run": run_summary(latest(RUN_DAG_ID, summaries, base)),
        "rehearsal": run_summary(latest(REHEARSAL_DAG_ID, summaries, base)),
        "runs": summaries,
        "downtime_window_h": window,
        "warnings": [warning] if warning else [],
    }


# -- rehearsal trend ---------------------------------------------------------------------------------


def _when(row: dict[str, Any]) -> str:
    return str(row.get("finished_at") or "")


def trend(
    dag_id: str = REHEARSAL_DAG_ID,
    allowed: Callable[[str], bool] | None = None,
    base: str | None = None,
    limit: int = 30,
) -> dict[str, Any]:
    """Per-schema duration across the DAG's finished runs (``history.jsonl``), oldest first.

    When the rehearsal DAG has no history yet, the migration DAG's runs stand in (``fallback_from``
    says so) so the chart is never empty while any run finished.
    """
    window, warning = history.downtime_window_hours()
    rows_all = [r for r in rpt.history(base) if allowed is None or allowed(r["dag_id"])]
    rows = [r for r in rows_all if r["dag_id"] == dag_id]
    shown = dag_id
    fallback_from = None
    if not rows and dag_id == REHEARSAL_DAG_ID:
        others = [r for r in rows_all if r["dag_id"] == RUN_DAG_ID]
        if others:
            rows, shown, fallback_from = others, RUN_DAG_ID, dag_id
    rows = sorted(rows, key=_when)[-limit:]
    runs_out = [
        {
            "run_id": r["run_id"],
            "finished_at": r.get("finished_at"),
            "verdict": r.get("verdict"),
            "total_seconds": r.get("total_seconds"),
            "window_fraction": (r["total_seconds"] / (window * 3600)) if r.get("total_seconds") else None,
        }
        for r in rows
    ]
    return {
        "dag_id": shown,
        "requested_dag_id": dag_id,
        "fallback_from": fallback_from,
        "downtime_window_h": window,
        "runs": runs_out,
        "schemas": chart.series(rows),
        "warnings": [warning] if warning else [],
    }


# -- formatting helpers shared by the page -----------------------------------------------------------


def duration(seconds: Any) -> str:
    if not isinstance(seconds, int | float) or not math.isfinite(seconds):
        return "–"
    seconds = float(seconds)
    if seconds < 10:
        return f"{seconds:.1f} s"
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def size(n: Any) -> str:
    if not isinstance(n, int | float):
        return "–"
    for unit, factor in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if abs(n) >= factor:
            return f"{n / factor:.1f} {unit}"
    return f"{int(n)} B"


def count(n: Any) -> str:
    return f"{n:,}" if isinstance(n, int) else "–"


def parse_time(value: Any) -> dt.datetime | None:
    """Report times are ISO strings (``2026-11-26T23:58:37+00:00`` or ``2026-11-26 23:58:33.17+00:00``)."""
    if not value:
        return None
    try:
        parsed = dt.datetime.fromisoformat(str(value))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


def short_time(value: Any) -> str:
    parsed = parse_time(value)
    return parsed.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M UTC") if parsed else "–"
