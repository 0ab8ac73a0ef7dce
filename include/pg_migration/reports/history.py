"""Rehearsal history: predicted makespan from earlier runs, and this run compared with earlier ones.

Reads only through :mod:`include.pg_migration.report` (``history()``: one line per finished run in
``<reports>/history.jsonl``; ``read()``: a run's ``report.json``), so it works wherever reports live
(a local folder, ``s3://...``). Imports nothing from Airflow.

* :func:`forecast` -- for the ``plan`` task: per-schema sizes and table counts, the unit order with
  a predicted start/end per unit on ``pool_size`` slots, and the predicted makespan, from sizes and
  the network bandwidth, or -- when earlier runs finished -- from the throughput they measured.
  Its result is merged into the plan (``the_plan.update(history.forecast(...))``).
* :func:`compare` -- for the ``report`` task: this run against the earlier runs of the same DAG
  (per-schema duration table, change against the previous run, total against the downtime
  window ``$PG_MIGRATION_DOWNTIME_WINDOW_H``, default 24 h), plus ``rehearsal.svg`` written next to
  ``report.md``. Its result goes under the report's ``"rehearsal"`` key.

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

import datetime as dt
import math
import os
from html import escape
from statistics import median
from typing import Any

import fsspec

from include.pg_migration import report as rpt

WINDOW_ENV = "PG_MIGRATION_DOWNTIME_WINDOW_H"
DEFAULT_WINDOW_H = 24.0
#: How many recent finished runs feed the throughput estimate.
RECENT_RUNS = 3
CHART_FILE = "rehearsal.svg"


def downtime_window_h(value: Any = None) -> float:
    """The downtime window in hours: ``value``, else ``$PG_MIGRATION_DOWNTIME_WINDOW_H``, else 24."""
    raw = value if value is not None else os.environ.get(WINDOW_ENV, "")
    try:
        hours = float(raw)
    except (TypeError, ValueError):
        return DEFAULT_WINDOW_H
    return hours if math.isfinite(hours) and hours > 0 else DEFAULT_WINDOW_H


# -- reading the history ------------------------------------------------------------------------


def _when(row: dict[str, Any]) -> str:
    return str(row.get("finished_at") or "")


def _per_schema(row: dict[str, Any], base: str | None) -> dict[str, dict[str, float]]:
    """``{schema: {"seconds", "bytes", "unit_seconds"}}`` of a history line (report.json for older lines)."""
    secs = row.get("schemas") or {}
    if "bytes" in row:
        nbytes, unit_secs = row.get("bytes") or {}, row.get("unit_seconds") or {}
    else:  # a line written before the history carried sizes: the run's report has them
        data = rpt.read(row["dag_id"], row["run_id"], base) or {}
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
        for r in rpt.history(base)
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
    prev_schemas = _per_schema(previous, base) if previous else {}
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
    fits = (total is not None) and total <= window * 3600
    if total is None:
        sentence = "no duration measured: whether it fits the downtime window is unknown"
    else:
        share = total / (window * 3600)
        what = "predicted" if dry_run else "took"
        sentence = f"the whole migration {what} {_human(total)}, {share:.1%} of the {window:g} h downtime window: " + (
            "FITS" if fits else "DOES NOT FIT"
        )
        if previous and previous.get("total_seconds") and not dry_run:
            sentence += f" (previous rehearsal {_human(previous['total_seconds'])})"
    out = {
        "window_h": window,
        "total_seconds": total,
        "predicted": dry_run,
        "fits_window": fits,
        "verdict": sentence,
        "previous_run_id": previous["run_id"] if previous else None,
        "earlier_runs": [{k: r.get(k) for k in ("run_id", "finished_at", "verdict", "total_seconds")} for r in earlier],
        "schemas": rows,
        "chart": None,
    }
    if chart:
        svg = chart_svg(out, earlier, this_schemas, run_id, report.get("finished_at"))
        folder = rpt.run_url(dag_id, run_id, base)
        fs, path = fsspec.core.url_to_fs(folder)
        fs.makedirs(path, exist_ok=True)
        with fs.open(f"{path}/{CHART_FILE}", "w") as f:
            f.write(svg)
        out["chart"] = CHART_FILE
    return out


def to_markdown(rehearsal: dict[str, Any]) -> list[str]:
    """The report.md section of :func:`compare`'s result (report.to_markdown calls it)."""
    lines = ["", "## Rehearsal", "", f"**{rehearsal['verdict']}**", ""]
    earlier = rehearsal.get("earlier_runs") or []
    lines.append(
        f"{len(earlier)} earlier run(s) of this DAG"
        + (f"; previous: `{rehearsal['previous_run_id']}`" if rehearsal.get("previous_run_id") else "")
    )
    if rehearsal.get("chart"):
        lines += ["", f"![per-schema durations across runs]({rehearsal['chart']})"]
    rows = rehearsal.get("schemas") or []
    if rows:
        lines += ["", "| schema | this run | previous | median earlier | change |", "|---|---|---|---|---|"]
        for r in rows:
            change = f"{r['change_pct']:+.1f} %" if r.get("change_pct") is not None else "–"
            lines.append(
                f"| {r['schema']} | {_human(r.get('seconds'))} | {_human(r.get('previous_s'))} | "
                f"{_human(r.get('median_s'))} | {change} |"
            )
    return lines


def _human(seconds: Any) -> str:
    if not isinstance(seconds, int | float) or not math.isfinite(seconds):
        return "–"
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.2f} h"


# -- chart ---------------------------------------------------------------------------------------------

PALETTE = ["#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#000000"]


def chart_svg(
    comparison: dict[str, Any],
    earlier: list[dict[str, Any]],
    this_schemas: dict[str, Any],
    run_id: str,
    finished_at: Any = None,
) -> str:
    """Two panels: per-schema duration across runs (lines, this run last), total vs the window (bars)."""
    runs = [(r["run_id"], r.get("schemas") or {}, r.get("total_seconds")) for r in earlier]
    runs.append((run_id, this_schemas, comparison.get("total_seconds")))
    n = len(runs)
    by_latest = sorted({name for _, s, _ in runs for name in s}, key=lambda name: -(this_schemas.get(name) or 0))
    shown = by_latest[: len(PALETTE)]
    w, h, left, top, bottom, right_legend = 860, 320, 56, 30, 60, 150
    panel_w = 440
    top_s = max([float(s.get(name) or 0) for _, s, _ in runs for name in shown] + [1e-9])
    scale_u, unit = (3600.0, "h") if top_s >= 7200 else (60.0, "min") if top_s >= 120 else (1.0, "s")
    ymax = _nice(top_s / scale_u)
    plot_h = h - top - bottom

    def x(i: int) -> float:
        return left + (panel_w - left - 10) * (i / (n - 1) if n > 1 else 0.5)

    def y(v: float) -> float:
        return top + plot_h * (1 - (v / scale_u) / ymax)

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" '
        'font-family="sans-serif" font-size="11">',
        f'<text x="{left}" y="16" font-size="13" font-weight="bold">Per-schema duration ({unit}), oldest run '
        "to this one</text>",
    ]
    for k in range(5):
        v = ymax * k / 4
        yy = top + plot_h * (1 - k / 4)
        parts.append(f'<line x1="{left}" y1="{yy:.1f}" x2="{panel_w - 10}" y2="{yy:.1f}" stroke="#ddd"/>')
        parts.append(f'<text x="{left - 6}" y="{yy + 4:.1f}" text-anchor="end">{v:g}</text>')
    for i, (rid, _, _) in enumerate(runs):
        label = "this run" if i == n - 1 else f"-{n - 1 - i}"
        parts.append(
            f'<text x="{x(i):.1f}" y="{h - bottom + 16}" text-anchor="middle">{label}'
            f"<title>{escape(rid)}</title></text>"
        )
    for c, name in enumerate(shown):
        color = PALETTE[c]
        pts = [(x(i), y(float(s[name]))) for i, (_, s, _) in enumerate(runs) if s.get(name) is not None]
        if len(pts) > 1:
            parts.append(
                f'<polyline fill="none" stroke="{color}" stroke-width="2" points="'
                + " ".join(f"{px:.1f},{py:.1f}" for px, py in pts)
                + '"/>'
            )
        for px, py in pts:
            parts.append(
                f'<circle cx="{px:.1f}" cy="{py:.1f}" r="3" fill="{color}"><title>{escape(name)}</title></circle>'
            )
        parts.append(f'<rect x="{panel_w - 4}" y="{top + 14 * c - 8}" width="10" height="10" fill="{color}"/>')
        parts.append(f'<text x="{panel_w + 10}" y="{top + 14 * c + 1}">{escape(name[:22])}</text>')
    if len(by_latest) > len(shown):
        parts.append(
            f'<text x="{panel_w + 10}" y="{top + 14 * len(shown) + 1}">+{len(by_latest) - len(shown)} more</text>'
        )
    # right panel: totals against the downtime window
    window_s = comparison["window_h"] * 3600
    x0, x1 = panel_w + right_legend, w - 20
    totals = [t for _, _, t in runs]
    tmax = max([t or 0 for t in totals] + [window_s])
    parts.append(
        f'<text x="{x0}" y="16" font-size="13" font-weight="bold">Total vs {comparison["window_h"]:g} h window</text>'
    )
    bar_w = max(4.0, (x1 - x0) / max(n, 1) * 0.7)
    for i, t in enumerate(totals):
        if t is None:
            continue
        bh = plot_h * (t / tmax)
        bx = x0 + (x1 - x0) * (i + 0.15) / max(n, 1)
        color = "#009E73" if t <= window_s else "#D55E00"
        parts.append(
            f'<rect x="{bx:.1f}" y="{top + plot_h - bh:.1f}" width="{bar_w:.1f}" height="{bh:.1f}" '
            f'fill="{color}"><title>{_human(t)}</title></rect>'
        )
        parts.append(
            f'<text x="{bx + bar_w / 2:.1f}" y="{top + plot_h - bh - 4:.1f}" text-anchor="middle">'
            f"{t / window_s:.0%}</text>"
        )
        label = "this run" if i == n - 1 else f"-{n - 1 - i}"
        parts.append(f'<text x="{bx + bar_w / 2:.1f}" y="{h - bottom + 16}" text-anchor="middle">{label}</text>')
    wy = top + plot_h * (1 - window_s / tmax)
    parts.append(f'<line x1="{x0}" y1="{wy:.1f}" x2="{x1}" y2="{wy:.1f}" stroke="#000" stroke-dasharray="4 3"/>')
    parts.append(f'<text x="{x1}" y="{wy - 4:.1f}" text-anchor="end">window</text>')
    stamp = finished_at or dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    parts.append(
        f'<text x="{left}" y="{h - 10}" fill="#555">{escape(comparison["verdict"])} ({escape(str(stamp))})</text>'
    )
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


def _nice(top: float) -> float:
    if top <= 0:
        return 1.0
    magnitude = 10 ** math.floor(math.log10(top))
    return next(m * magnitude for m in (1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10) if m * magnitude >= top)
