"""Rehearsal history: predicted makespan from earlier runs, and this run compared with earlier ones.

Reads only through :mod:`include.pg_migration.reports.schema` (``history()``: one line per finished
run in ``<reports>/history.jsonl``; ``read()``: a run's ``report.json``), so it works wherever reports
live (a local folder, ``s3://...``). Imports nothing from Airflow.

* :func:`forecast` -- for the ``plan`` task: per-schema sizes and table counts, the unit order with
  a predicted start/end per unit on ``pool_size`` slots, and the predicted makespan, from sizes and
  the network bandwidth, or -- when earlier runs finished -- from the throughput they measured.
  Its result is merged into the plan (``the_plan.update(history.forecast(...))``).
* :func:`compare` -- for the ``report`` task: this run against the earlier runs of the same DAG
  (per-schema duration table, change against the previous run, total against the downtime
  window ``$PG_MIGRATION_DOWNTIME_WINDOW_H``, default 24 h), plus ``rehearsal.svg``
  (:func:`include.pg_migration.reports.chart.rehearsal_svg`) written next to ``report.md``. Its
  result goes under the report's ``"rehearsal"`` key
  (:func:`include.pg_migration.reports.markdown.rehearsal_markdown` renders it).
* :func:`downtime_window_hours` -- the one reading of the downtime window (the plan, the report and
  the Migrations page use it).

Prediction model (documented in docs/operations.md): every unit occupies one pool slot for
``bytes / rate``; ``rate`` is the schema's own throughput in the most recent finished run that
copied it (bytes over the sum of its units' seconds: so per-table overheads, index builds and
the machine's real speed are in it), else the mean throughput per slot of the recent runs, else
(no history) the bandwidth shared by the units running at once (``bandwidth / min(pool_size,
units)``: a slightly pessimistic fluid model, since a unit that finishes early frees its share). Units are placed
largest first on the least loaded slot (the order the pool takes them), and the makespan is at
least ``total bytes / bandwidth``: all slots share the network between source and workers.
"""

from __future__ import annotations

import math
import os
from statistics import median
from typing import Any

import fsspec

from include.pg_migration.reports import schema
from include.pg_migration.reports.chart import rehearsal_svg
from include.pg_migration.reports.markdown import human

WINDOW_ENV = "PG_MIGRATION_DOWNTIME_WINDOW_H"
DEFAULT_WINDOW_H = 24.0
#: How many recent finished runs feed the throughput estimate.
RECENT_RUNS = 3
CHART_FILE = "rehearsal.svg"


def downtime_window_hours(value: Any = None) -> tuple[float, str | None]:
    """The downtime window in hours -- ``value``, else ``$PG_MIGRATION_DOWNTIME_WINDOW_H``, else 24 --
    and a warning when the value given is not a positive number of hours (24 is used then)."""
    raw = value if value is not None else os.environ.get(WINDOW_ENV, "").strip()
    if raw == "":
        return DEFAULT_WINDOW_H, None
    try:
        hours = float(raw)
    except (TypeError, ValueError):
        hours = math.nan
    if not math.isfinite(hours) or hours <= 0:
        named = WINDOW_ENV if value is None else "window_h"
        return DEFAULT_WINDOW_H, f"{named}={raw!r} is not a positive number of hours: using {DEFAULT_WINDOW_H:g}"
    return hours, None


def downtime_window_h(value: Any = None) -> float:
    """The downtime window in hours (:func:`downtime_window_hours` without the warning)."""
    return downtime_window_hours(value)[0]


# -- reading the history ------------------------------------------------------------------------


def _when(row: dict[str, Any]) -> str:
    return str(row.get("finished_at") or "")


def _per_schema(row: dict[str, Any], base: str | None) -> dict[str, dict[str, float]]:
    """``{schema: {"seconds", "bytes", "unit_seconds"}}`` of a history line (report.json for older lines)."""
    secs = row.get("schemas") or {}
    if "bytes" in row:
        nbytes, unit_secs = row.get("bytes") or {}, row.get("unit_seconds") or {}
    else:  # a line written before the history carried sizes: the run's report has them
        data = schema.read(row["dag_id"], row["run_id"], base) or {}
        nbytes, unit_secs = {}, {}
        for s in data.get("schemas") or []:
            nbytes[s["schema"]] = s.get("bytes") or 0
            unit_secs[s["schema"]] = sum((u.get("seconds") or 0) for u in s.get("units") or []) or s.get("seconds")
    out = {}
    for name, seconds in secs.items():
        out[name] = {
            "seconds": float(seconds or 0),
            "bytes": float(nbytes.get(name) or 0),
            "unit_seconds": float(unit_secs.get(name) or seconds or 0),
        }
    return out


def finished_runs(
    base: str | None = None, dag_ids: list[str] | tuple[str, ...] | None = None, passed_only: bool = True
) -> list[dict[str, Any]]:
    """History lines of runs that copied data (no dry runs), oldest first."""
    rows = [
        r
        for r in schema.history(base)
        if (dag_ids is None or r["dag_id"] in dag_ids)
        and r.get("verdict") != "planned"
        and (not passed_only or r.get("verdict") == "passed")
    ]
    return sorted(rows, key=_when)


def throughput(
    base: str | None = None, dag_ids: list[str] | tuple[str, ...] | None = None, recent: int = RECENT_RUNS
) -> dict[str, Any]:
    """Measured throughput: per slot over the recent passed runs, and per schema (latest run having it)."""
    # a resumed run skipped what an earlier run loaded: its seconds say nothing about throughput
    rows = [r for r in finished_runs(base, dag_ids) if not r.get("resume")][-recent:]
    total_bytes = total_secs = 0.0
    schemas: dict[str, float] = {}
    for row in rows:  # oldest first: a later run overwrites a schema's rate
        for name, s in _per_schema(row, base).items():
            if s["bytes"] > 0 and s["unit_seconds"] > 0:
                total_bytes += s["bytes"]
                total_secs += s["unit_seconds"]
                schemas[name] = s["bytes"] / s["unit_seconds"]
    return {
        "runs": [r["run_id"] for r in rows],
        "slot_bytes_per_s": (total_bytes / total_secs) if total_secs > 0 else None,
        "schemas": schemas,
    }


# -- forecast for the plan ------------------------------------------------------------------------


def schedule(durations: list[tuple[str, float]], pool_size: int) -> list[dict[str, Any]]:
    """Units (already in the pool's order) placed on the least loaded of ``pool_size`` slots."""
    slots = [0.0] * max(1, pool_size)
    out = []
    for position, (unit_id, seconds) in enumerate(durations, start=1):
        i = slots.index(min(slots))
        out.append(
            {
                "order": position,
                "unit_id": unit_id,
                "slot": i + 1,
                "start_s": round(slots[i], 3),
                "end_s": round(slots[i] + seconds, 3),
            }
        )
        slots[i] += seconds
    return out


def forecast(
    the_plan: dict[str, Any],
    inventory: dict[str, Any] | None,
    pool_size: int,
    bandwidth_mb_s: float,
    *,
    base: str | None = None,
    dag_ids: list[str] | tuple[str, ...] | None = None,
    window_h: float | None = None,
) -> dict[str, Any]:
    """Keys to merge into the plan: ``schema_sizes``, ``forecast`` and ``predicted_makespan_s``."""
    units = the_plan.get("units") or []
    bandwidth = max(float(bandwidth_mb_s or 0) * 1e6, 1.0)
    pool = max(1, int(pool_size or 1))
    measured = throughput(base, dag_ids)
    slot_rate = measured["slot_bytes_per_s"]
    # no measurement: the link is shared by the units running at once
    shared = bandwidth / max(1, min(pool, len(units)))
    durations, basis_per_unit = [], {}
    for u in units:
        rate = measured["schemas"].get(u["schema"])
        basis = "schema history"
        if rate is None:
            rate, basis = (slot_rate, "recent runs") if slot_rate else (shared, "bandwidth")
        # a slot never gets more than the whole link
        rate = min(rate, bandwidth)
        durations.append((u["unit_id"], (u.get("bytes") or 0) / max(rate, 1.0)))
        basis_per_unit[u["unit_id"]] = basis
    placed = schedule(durations, pool)
    for p in placed:
        p["basis"] = basis_per_unit[p["unit_id"]]
    total_bytes = sum(u.get("bytes") or 0 for u in units)
    floor = total_bytes / bandwidth
    makespan = max([p["end_s"] for p in placed] + [floor]) if units else 0.0
    window = downtime_window_h(window_h)
    if measured["runs"]:
        basis = f"measured throughput of {len(measured['runs'])} earlier run(s): {', '.join(measured['runs'])}"
    else:
        basis = (
            f"sizes and the bandwidth ({bandwidth / 1e6:g} MB/s shared by the units running at once): "
            "no earlier run finished"
        )
    sizes = []
    by_schema_units: dict[str, int] = {}
    for u in units:
        by_schema_units[u["schema"]] = by_schema_units.get(u["schema"], 0) + 1
    for s in (inventory or {}).get("schemas") or []:
        sizes.append(
            {
                "schema": s["name"],
                "bytes": s.get("bytes") or 0,
                "tables": len(s.get("tables") or []),
                "units": by_schema_units.get(s["name"], 0),
            }
        )
    return {
        "schema_sizes": sizes,
        "predicted_makespan_s": round(makespan, 3),
        "forecast": {
            "predicted_makespan_s": round(makespan, 3),
            "pool_size": pool,
            "bandwidth_mb_s": bandwidth / 1e6,
            "bandwidth_floor_s": round(floor, 3),
            "slot_mb_s": round(slot_rate / 1e6, 3) if slot_rate else None,
            "basis": basis,
            "history_runs": measured["runs"],
            "window_h": window,
            "fits_window": makespan <= window * 3600,
            "schedule": placed,
        },
    }


# -- comparison for the report -------------------------------------------------------------------


def compare(
    report: dict[str, Any],
    base: str | None = None,
    *,
    window_h: float | None = None,
    limit: int = 10,
    chart: bool = True,
) -> dict[str, Any]:
    """This run against the earlier finished runs of its DAG (the report's ``"rehearsal"`` key).

    Returns ``{"window_h", "total_seconds", "predicted": bool, "fits_window", "verdict" (a sentence),
    "previous_run_id", "earlier_runs": [{run_id, finished_at, verdict, total_seconds}],
    "schemas": [{schema, seconds, previous_s, median_s, change_pct}], "chart"}`` and writes
    ``rehearsal.svg`` into the run's report folder (``chart`` names it; None when not written).
    """
    dag_id, run_id = report["dag_id"], report["run_id"]
    window = downtime_window_h(window_h)
    earlier = [r for r in finished_runs(base, [dag_id], passed_only=False) if r["run_id"] != run_id][-limit:]
    dry_run = report.get("verdict") == "planned" or bool((report.get("params") or {}).get("dry_run"))
    this_schemas = {s["schema"]: s.get("seconds") for s in report.get("schemas") or []}
    if dry_run:
        total = (report.get("plan") or {}).get("predicted_makespan_s")
    else:
        total = report.get("total_seconds")
    previous = earlier[-1] if earlier else None
    fits = (total is not None) and total <= window * 3600
    out = {
        "window_h": window,
        "total_seconds": total,
        "predicted": dry_run,
        "fits_window": fits,
        "verdict": _window_sentence(total, window, fits, dry_run, previous),
        "previous_run_id": previous["run_id"] if previous else None,
        "earlier_runs": [{k: r.get(k) for k in ("run_id", "finished_at", "verdict", "total_seconds")} for r in earlier],
        "schemas": _schema_rows(this_schemas, earlier, _per_schema(previous, base) if previous else {}),
        "chart": None,
    }
    if chart:
        this_run = {
            "run_id": run_id,
            "finished_at": report.get("finished_at"),
            "verdict": report.get("verdict"),
            "total_seconds": total,
            "schemas": this_schemas,
        }
        svg = rehearsal_svg(out, [*earlier, this_run])
        fs, path = fsspec.core.url_to_fs(schema.run_url(dag_id, run_id, base))
        fs.makedirs(path, exist_ok=True)
        with fs.open(f"{path}/{CHART_FILE}", "w") as f:
            f.write(svg)
        out["chart"] = CHART_FILE
    return out


def _schema_rows(
    this_schemas: dict[str, Any], earlier: list[dict[str, Any]], prev_schemas: dict[str, dict[str, float]]
) -> list[dict[str, Any]]:
    """Per schema: this run's seconds, the previous run's, the median of the earlier ones, the change."""
    names = sorted(set(this_schemas) | {n for r in earlier for n in (r.get("schemas") or {})})
    rows = []
    for name in names:
        history_s = [float(r["schemas"][name]) for r in earlier if (r.get("schemas") or {}).get(name) is not None]
        now = this_schemas.get(name)
        prev = prev_schemas.get(name, {}).get("seconds")
        change = ((now - prev) / prev * 100.0) if (now is not None and prev) else None
        rows.append(
            {
                "schema": name,
                "seconds": now,
                "previous_s": prev,
                "median_s": median(history_s) if history_s else None,
                "change_pct": round(change, 1) if change is not None else None,
            }
        )
    return rows


def _window_sentence(
    total: float | None, window: float, fits: bool, dry_run: bool, previous: dict[str, Any] | None
) -> str:
    if total is None:
        return "no duration measured: whether it fits the downtime window is unknown"
    share = total / (window * 3600)
    what = "predicted" if dry_run else "took"
    sentence = f"the whole migration {what} {human(total)}, {share:.1%} of the {window:g} h downtime window: " + (
        "FITS" if fits else "DOES NOT FIT"
    )
    if previous and previous.get("total_seconds") and not dry_run:
        sentence += f" (previous rehearsal {human(previous['total_seconds'])})"
    return sentence
