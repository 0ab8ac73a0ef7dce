"""Inline SVG charts of the rehearsal trend, drawn on the server (no script, no CDN).

* :func:`schema_lines` -- per-schema copy duration across rehearsals (one line per schema);
* :func:`window_bars` -- each rehearsal's total duration against the downtime window.

Both take the dict of :func:`pg_migration_ui.data.trend`.
"""

from __future__ import annotations

import datetime as dt
import math
from html import escape
from typing import Any

# Colour-blind friendly (Okabe-Ito, then Tableau) so neighbouring lines stay distinguishable.
PALETTE = [
    "#0072B2",
    "#E69F00",
    "#009E73",
    "#D55E00",
    "#CC79A7",
    "#56B4E9",
    "#F0E442",
    "#000000",
    "#8c564b",
    "#7f7f7f",
    "#bcbd22",
    "#17becf",
]
MAX_LINES = len(PALETTE)
WIDTH, HEIGHT = 760, 300
LEFT, RIGHT, TOP, BOTTOM = 64, 190, 24, 56


def _unit(max_seconds: float) -> tuple[str, float]:
    if max_seconds >= 2 * 3600:
        return "h", 3600.0
    if max_seconds >= 120:
        return "min", 60.0
    return "s", 1.0


def _ticks(top: float, count: int = 5) -> list[float]:
    """Round tick values from 0 to at least ``top``."""
    if top <= 0:
        return [0.0, 1.0]
    raw = top / count
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    n = math.ceil(top / step - 1e-9)
    return [round(i * step, 10) for i in range(n + 1)]


def _fmt(value: float) -> str:
    return f"{value:.0f}" if value >= 10 or value == int(value) else f"{value:.2g}"


def _share(share: float) -> str:
    return "<0.1%" if 0 < share < 0.001 else f"{share:.1%}"


def _seconds(value: float) -> str:
    if value < 1:
        return f"{value:.2f} s"
    if value < 120:
        return f"{value:.0f} s"
    if value < 7200:
        return f"{value / 60:.1f} min"
    return f"{value / 3600:.1f} h"


def _run_label(run: dict[str, Any]) -> str:
    when = run.get("finished_at")
    try:
        parsed = dt.datetime.fromisoformat(str(when))
        return parsed.astimezone(dt.UTC).strftime("%m-%d %H:%M")
    except (TypeError, ValueError):
        return str(run.get("run_id", ""))[:12]


def _frame(title: str, y_ticks: list[float], scale_y, unit: str, runs: list[dict[str, Any]], x_of) -> list[str]:
    plot_w = WIDTH - LEFT - RIGHT
    parts = [f'<text x="{LEFT}" y="14" class="chart-title">{escape(title)}</text>']
    for tick in y_ticks:
        y = scale_y(tick)
        parts.append(f'<line x1="{LEFT}" x2="{LEFT + plot_w}" y1="{y:.1f}" y2="{y:.1f}" class="grid"/>')
        parts.append(f'<text x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end" class="tick">{_fmt(tick)} {unit}</text>')
    every = max(1, math.ceil(len(runs) / 8))
    for i, run in enumerate(runs):
        if i % every and i != len(runs) - 1:
            continue
        x = x_of(i)
        parts.append(
            f'<text x="{x:.1f}" y="{HEIGHT - BOTTOM + 16}" text-anchor="middle" class="tick">'
            f"{escape(_run_label(run))}</text>"
        )
    parts.append(f'<line x1="{LEFT}" x2="{LEFT + plot_w}" y1="{HEIGHT - BOTTOM}" y2="{HEIGHT - BOTTOM}" class="axis"/>')
    return parts


def _svg(parts: list[str], label: str, kind: str) -> str:
    return (
        f'<svg class="chart" data-chart="{kind}" role="img" aria-label="{escape(label)}" '
        f'viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" height="{HEIGHT}" xmlns="http://www.w3.org/2000/svg">'
        f"<title>{escape(label)}</title>" + "".join(parts) + "</svg>"
    )


def _empty(message: str, kind: str) -> str:
    return _svg(
        [f'<text x="{WIDTH / 2}" y="{HEIGHT / 2}" text-anchor="middle" class="empty">{escape(message)}</text>'],
        message,
        kind,
    )


def schema_lines(trend: dict[str, Any]) -> str:
    runs = trend.get("runs") or []
    series = {k: v for k, v in (trend.get("schemas") or {}).items() if any(isinstance(x, int | float) for x in v)}
    if not runs or not series:
        return _empty("no finished rehearsal yet", "schema-lines")

    # The slowest schemas (by their latest known duration) get a line; the rest are counted.
    def last(values: list[Any]) -> float:
        return next((float(x) for x in reversed(values) if isinstance(x, int | float)), 0.0)

    ranked = sorted(series, key=lambda k: (-last(series[k]), k))
    drawn, hidden = ranked[:MAX_LINES], ranked[MAX_LINES:]
    peak = max(float(x) for k in drawn for x in series[k] if isinstance(x, int | float))
    unit, factor = _unit(peak)
    ticks = _ticks(peak / factor * 1.05 or 1)
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def y_of(v: float) -> float:
        return TOP + plot_h - (v / ticks[-1]) * plot_h

    def x_of(i: int) -> float:
        return LEFT + (plot_w / 2 if len(runs) == 1 else i * plot_w / (len(runs) - 1))

    parts = _frame("Copy duration per schema, by rehearsal", ticks, y_of, unit, runs, x_of)
    for n, name in enumerate(drawn):
        color = PALETTE[n % len(PALETTE)]
        points = [
            (x_of(i), y_of(float(v) / factor), v, i) for i, v in enumerate(series[name]) if isinstance(v, int | float)
        ]
        if len(points) > 1:
            path = " ".join(f"{x:.1f},{y:.1f}" for x, y, _, _ in points)
            parts.append(f'<polyline points="{path}" fill="none" stroke="{color}" stroke-width="2"/>')
        for x, y, v, i in points:
            tip = f"{name} · {_run_label(runs[i])} · {_seconds(float(v))}"
            parts.append(
                f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3.5" fill="{color}" data-schema="{escape(name)}">'
                f"<title>{escape(tip)}</title></circle>"
            )
        ly = TOP + 6 + n * 17
        parts.append(f'<rect x="{WIDTH - RIGHT + 14}" y="{ly - 8}" width="12" height="12" fill="{color}"/>')
        parts.append(
            f'<text x="{WIDTH - RIGHT + 32}" y="{ly + 2}" class="legend">{escape(name[:22])} '
            f"({_seconds(last(series[name]))})</text>"
        )
    if hidden:
        ly = TOP + 6 + len(drawn) * 17
        parts.append(
            f'<text x="{WIDTH - RIGHT + 14}" y="{ly + 2}" class="legend">+{len(hidden)} faster schema(s)</text>'
        )
    return _svg(parts, f"per-schema duration over {len(runs)} run(s) of {trend.get('dag_id')}", "schema-lines")


def window_bars(trend: dict[str, Any]) -> str:
    runs = trend.get("runs") or []
    window_s = float(trend.get("downtime_window_h") or 24) * 3600
    totals = [r.get("total_seconds") for r in runs]
    if not runs or not any(isinstance(t, int | float) for t in totals):
        return _empty("no finished rehearsal yet", "window-bars")
    peak = max([window_s] + [float(t) for t in totals if isinstance(t, int | float)])
    unit, factor = _unit(peak)
    ticks = _ticks(peak / factor * 1.08)
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    slot = plot_w / len(runs)
    bar_w = max(4.0, min(48.0, slot * 0.6))

    def y_of(v: float) -> float:
        return TOP + plot_h - (v / ticks[-1]) * plot_h

    def x_of(i: int) -> float:
        return LEFT + slot * (i + 0.5)

    parts = _frame("Total duration vs downtime window", ticks, y_of, unit, runs, x_of)
    for i, run in enumerate(runs):
        total = run.get("total_seconds")
        if not isinstance(total, int | float):
            continue
        share = total / window_s
        cls = "ok" if share <= 0.8 else ("tight" if share <= 1 else "over")
        top = y_of(total / factor)
        height = max(2.0, HEIGHT - BOTTOM - top)
        x = x_of(i) - bar_w / 2
        tip = f"{_run_label(run)} · {run.get('verdict')} · {_seconds(total)} = {_share(share)} of the window"
        parts.append(
            f'<rect x="{x:.1f}" y="{HEIGHT - BOTTOM - height:.1f}" width="{bar_w:.1f}" height="{height:.1f}" '
            f'class="bar {cls}" data-total="{total:.3f}"><title>{escape(tip)}</title></rect>'
        )
        if i == len(runs) - 1 or len(runs) <= 6:
            parts.append(
                f'<text x="{x_of(i):.1f}" y="{HEIGHT - BOTTOM - height - 5:.1f}" text-anchor="middle" class="value">'
                f"{_share(share)}</text>"
            )
    wy = y_of(window_s / factor)
    parts.append(f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{wy:.1f}" y2="{wy:.1f}" class="window"/>')
    parts.append(
        f'<text x="{WIDTH - RIGHT + 8}" y="{wy + 4:.1f}" class="window-label">'
        f"window {trend.get('downtime_window_h'):g} h</text>"
    )
    last = next((r for r in reversed(runs) if isinstance(r.get("total_seconds"), int | float)), None)
    if last:
        parts.append(
            f'<text x="{WIDTH - RIGHT + 8}" y="{HEIGHT - BOTTOM - 4}" class="legend">latest: '
            f"{_seconds(last['total_seconds'])} ({_share(last['total_seconds'] / window_s)})</text>"
        )
    return _svg(
        parts,
        f"total duration of {len(runs)} run(s) of {trend.get('dag_id')} vs a "
        f"{trend.get('downtime_window_h'):g} h downtime window",
        "window-bars",
    )
