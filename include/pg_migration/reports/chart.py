"""Inline SVG charts of the rehearsal trend, drawn on the server (no script, no CDN): one module for
the Migrations page and the report.

* :func:`schema_lines` -- per-schema copy duration across rehearsals (one line per schema);
* :func:`window_bars` -- each rehearsal's total duration against the downtime window;
* :func:`rehearsal_svg` -- both side by side in one standalone file: the report's ``rehearsal.svg``
  (:func:`include.pg_migration.reports.history.compare` writes it next to ``report.md``).

The charts take a trend: ``{"dag_id", "downtime_window_h", "runs": [{run_id, finished_at, verdict,
total_seconds}] (oldest first), "schemas": {schema: [seconds or None, one per run]}}`` (the page's
``pg_migration_ui.data.trend``; :func:`series` builds ``schemas`` from history lines). Shared
primitives: the palette, time units, nice ticks, the scales and the frame (grid, axis, run labels).
Styling is by class: :data:`STYLE` is in the page's style sheet and embedded in ``rehearsal.svg``.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable
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
#: The charts' classes (the page's style sheet includes these rules; ``rehearsal.svg`` embeds them).
STYLE = """svg .grid{stroke:#edf2f7}svg .axis{stroke:#a0aec0}svg .tick{font-size:11px;fill:#718096}
svg .chart-title{font-size:13px;font-weight:600;fill:#2d3748}svg .legend{font-size:11px;fill:#2d3748}
svg .empty{font-size:14px;fill:#a0aec0}svg .value{font-size:11px;fill:#2d3748}
svg .bar.ok{fill:#48bb78}svg .bar.tight{fill:#ed8936}svg .bar.over{fill:#e53e3e}
svg .window{stroke:#e53e3e;stroke-width:2;stroke-dasharray:6 4}
svg .window-label{font-size:12px;fill:#c53030;font-weight:600}
"""
EMPTY = "no finished rehearsal yet"


# -- primitives ----------------------------------------------------------------------------------------


def time_unit(max_seconds: float) -> tuple[str, float]:
    """The unit durations up to ``max_seconds`` read best in, and its length in seconds."""
    if max_seconds >= 2 * 3600:
        return "h", 3600.0
    if max_seconds >= 120:
        return "min", 60.0
    return "s", 1.0


def ticks(top: float, count: int = 5) -> list[float]:
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


def _number(value: Any) -> bool:
    return isinstance(value, int | float)


def run_label(run: dict[str, Any]) -> str:
    """A run on the x axis: when it finished (UTC), else the start of its id."""
    when = run.get("finished_at")
    try:
        parsed = dt.datetime.fromisoformat(str(when))
        return parsed.astimezone(dt.UTC).strftime("%m-%d %H:%M")
    except (TypeError, ValueError):
        return str(run.get("run_id", ""))[:12]


def series(rows: list[dict[str, Any]]) -> dict[str, list[Any]]:
    """``{schema: [seconds or None per row]}`` of history lines (``{"schemas": {schema: seconds}}``), sorted."""
    schemas: dict[str, list[Any]] = {}
    for i, row in enumerate(rows):
        for name, seconds in (row.get("schemas") or {}).items():
            schemas.setdefault(name, [None] * len(rows))[i] = seconds
    return dict(sorted(schemas.items()))


def _y_scale(top_tick: float) -> Callable[[float], float]:
    plot_h = HEIGHT - TOP - BOTTOM
    return lambda v: TOP + plot_h - (v / top_tick) * plot_h


def _frame(title: str, y_ticks: list[float], scale_y, unit: str, labels: list[str], x_of) -> list[str]:
    """Title, horizontal grid with the y ticks, run labels under the x axis, the axis."""
    plot_w = WIDTH - LEFT - RIGHT
    parts = [f'<text x="{LEFT}" y="14" class="chart-title">{escape(title)}</text>']
    for tick in y_ticks:
        y = scale_y(tick)
        parts.append(f'<line x1="{LEFT}" x2="{LEFT + plot_w}" y1="{y:.1f}" y2="{y:.1f}" class="grid"/>')
        parts.append(f'<text x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end" class="tick">{_fmt(tick)} {unit}</text>')
    every = max(1, math.ceil(len(labels) / 8))
    for i, label in enumerate(labels):
        if i % every and i != len(labels) - 1:
            continue
        x = x_of(i)
        parts.append(
            f'<text x="{x:.1f}" y="{HEIGHT - BOTTOM + 16}" text-anchor="middle" class="tick">{escape(label)}</text>'
        )
    parts.append(f'<line x1="{LEFT}" x2="{LEFT + plot_w}" y1="{HEIGHT - BOTTOM}" y2="{HEIGHT - BOTTOM}" class="axis"/>')
    return parts


def _svg(parts: list[str], label: str, kind: str) -> str:
    return (
        f'<svg class="chart" data-chart="{kind}" role="img" aria-label="{escape(label)}" '
        f'viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" height="{HEIGHT}" xmlns="http://www.w3.org/2000/svg">'
        f"<title>{escape(label)}</title>" + "".join(parts) + "</svg>"
    )


def _empty_text(message: str) -> str:
    return f'<text x="{WIDTH / 2}" y="{HEIGHT / 2}" text-anchor="middle" class="empty">{escape(message)}</text>'


def _empty(message: str, kind: str) -> str:
    return _svg([_empty_text(message)], message, kind)


# -- per-schema lines ------------------------------------------------------------------------------------


def schema_lines(trend: dict[str, Any]) -> str:
    runs = trend.get("runs") or []
    parts = _lines_panel(trend, [run_label(r) for r in runs])
    if parts is None:
        return _empty(EMPTY, "schema-lines")
    return _svg(parts, f"per-schema duration over {len(runs)} run(s) of {trend.get('dag_id')}", "schema-lines")


def _lines_panel(trend: dict[str, Any], labels: list[str]) -> list[str] | None:
    """One line per schema (the slowest by their latest known duration; the rest counted); None: no data."""
    runs = trend.get("runs") or []
    series_ = {k: v for k, v in (trend.get("schemas") or {}).items() if any(_number(x) for x in v)}
    if not runs or not series_:
        return None

    def last(values: list[Any]) -> float:
        return next((float(x) for x in reversed(values) if _number(x)), 0.0)

    ranked = sorted(series_, key=lambda k: (-last(series_[k]), k))
    drawn, hidden = ranked[:MAX_LINES], ranked[MAX_LINES:]
    peak = max(float(x) for k in drawn for x in series_[k] if _number(x))
    unit, factor = time_unit(peak)
    y_ticks = ticks(peak / factor * 1.05 or 1)
    y_of = _y_scale(y_ticks[-1])
    plot_w = WIDTH - LEFT - RIGHT

    def x_of(i: int) -> float:
        return LEFT + (plot_w / 2 if len(runs) == 1 else i * plot_w / (len(runs) - 1))

    parts = _frame("Copy duration per schema, by rehearsal", y_ticks, y_of, unit, labels, x_of)
    for n, name in enumerate(drawn):
        color = PALETTE[n % len(PALETTE)]
        points = [(x_of(i), y_of(float(v) / factor), v, i) for i, v in enumerate(series_[name]) if _number(v)]
        if len(points) > 1:
            path = " ".join(f"{x:.1f},{y:.1f}" for x, y, _, _ in points)
            parts.append(f'<polyline points="{path}" fill="none" stroke="{color}" stroke-width="2"/>')
        for x, y, v, i in points:
            tip = f"{name} · {labels[i]} · {_seconds(float(v))}"
            parts.append(
                f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3.5" fill="{color}" data-schema="{escape(name)}">'
                f"<title>{escape(tip)}</title></circle>"
            )
        parts += _legend_entry(n, color, f"{name[:22]} ({_seconds(last(series_[name]))})")
    if hidden:
        ly = TOP + 6 + len(drawn) * 17
        parts.append(
            f'<text x="{WIDTH - RIGHT + 14}" y="{ly + 2}" class="legend">+{len(hidden)} faster schema(s)</text>'
        )
    return parts


def _legend_entry(n: int, color: str, text: str) -> list[str]:
    ly = TOP + 6 + n * 17
    return [
        f'<rect x="{WIDTH - RIGHT + 14}" y="{ly - 8}" width="12" height="12" fill="{color}"/>',
        f'<text x="{WIDTH - RIGHT + 32}" y="{ly + 2}" class="legend">{escape(text)}</text>',
    ]


# -- totals against the window ------------------------------------------------------------------------------


def window_bars(trend: dict[str, Any]) -> str:
    runs = trend.get("runs") or []
    parts = _bars_panel(trend, [run_label(r) for r in runs])
    if parts is None:
        return _empty(EMPTY, "window-bars")
    return _svg(
        parts,
        f"total duration of {len(runs)} run(s) of {trend.get('dag_id')} vs a "
        f"{trend.get('downtime_window_h'):g} h downtime window",
        "window-bars",
    )


def _bars_panel(trend: dict[str, Any], labels: list[str]) -> list[str] | None:
    """A bar per run (green, orange above 80 %, red above the window) and the window's line; None: no data."""
    runs = trend.get("runs") or []
    window_s = float(trend.get("downtime_window_h") or 24) * 3600
    totals = [r.get("total_seconds") for r in runs]
    if not runs or not any(_number(t) for t in totals):
        return None
    peak = max([window_s] + [float(t) for t in totals if _number(t)])
    unit, factor = time_unit(peak)
    y_ticks = ticks(peak / factor * 1.08)
    y_of = _y_scale(y_ticks[-1])
    slot = (WIDTH - LEFT - RIGHT) / len(runs)
    bar_w = max(4.0, min(48.0, slot * 0.6))

    def x_of(i: int) -> float:
        return LEFT + slot * (i + 0.5)

    parts = _frame("Total duration vs downtime window", y_ticks, y_of, unit, labels, x_of)
    for i, run in enumerate(runs):
        total = run.get("total_seconds")
        if not _number(total):
            continue
        share = total / window_s
        cls = "ok" if share <= 0.8 else ("tight" if share <= 1 else "over")
        height = max(2.0, HEIGHT - BOTTOM - y_of(total / factor))
        x = x_of(i) - bar_w / 2
        tip = f"{labels[i]} · {run.get('verdict')} · {_seconds(total)} = {_share(share)} of the window"
        parts.append(
            f'<rect x="{x:.1f}" y="{HEIGHT - BOTTOM - height:.1f}" width="{bar_w:.1f}" height="{height:.1f}" '
            f'class="bar {cls}" data-total="{total:.3f}"><title>{escape(tip)}</title></rect>'
        )
        if i == len(runs) - 1 or len(runs) <= 6:
            parts.append(
                f'<text x="{x_of(i):.1f}" y="{HEIGHT - BOTTOM - height - 5:.1f}" text-anchor="middle" class="value">'
                f"{_share(share)}</text>"
            )
    return parts + _window_line(trend, y_of(window_s / factor), window_s)


def _window_line(trend: dict[str, Any], wy: float, window_s: float) -> list[str]:
    parts = [
        f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{wy:.1f}" y2="{wy:.1f}" class="window"/>',
        f'<text x="{WIDTH - RIGHT + 8}" y="{wy + 4:.1f}" class="window-label">'
        f"window {trend.get('downtime_window_h'):g} h</text>",
    ]
    last = next((r for r in reversed(trend.get("runs") or []) if _number(r.get("total_seconds"))), None)
    if last:
        parts.append(
            f'<text x="{WIDTH - RIGHT + 8}" y="{HEIGHT - BOTTOM - 4}" class="legend">latest: '
            f"{_seconds(last['total_seconds'])} ({_share(last['total_seconds'] / window_s)})</text>"
        )
    return parts


# -- the report's figure ---------------------------------------------------------------------------------


def rehearsal_svg(comparison: dict[str, Any], runs: list[dict[str, Any]]) -> str:
    """``rehearsal.svg``: per-schema lines and totals vs the window, earlier runs and this one (last).

    ``comparison`` is :func:`include.pg_migration.reports.history.compare`'s result (window, verdict);
    ``runs`` are history lines (``run_id``, ``finished_at``, ``verdict``, ``total_seconds``,
    ``schemas``), oldest first, this run last. Runs are labelled ``-n`` .. ``-1``, ``this run``.
    """
    n = len(runs)
    labels = ["this run" if i == n - 1 else f"-{n - 1 - i}" for i in range(n)]
    trend = {"downtime_window_h": comparison["window_h"], "runs": runs, "schemas": series(runs)}
    lines = _lines_panel(trend, labels) or [_empty_text("no duration per schema")]
    bars = _bars_panel(trend, labels) or [_empty_text("no total duration")]
    stamp = (runs[-1].get("finished_at") if runs else None) or dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    width, height = 2 * WIDTH, HEIGHT + 24
    label = f"per-schema durations across runs; {comparison['verdict']}"
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
        f'font-family="sans-serif" font-size="11" role="img" aria-label="{escape(label)}">\n'
        f"<style>\n{STYLE}</style>\n"
        f"<g>{''.join(lines)}</g>\n"
        f'<g transform="translate({WIDTH},0)">{"".join(bars)}</g>\n'
        f'<text x="{LEFT}" y="{height - 8}" class="legend">'
        f"{escape(comparison['verdict'])} ({escape(str(stamp))})</text>\n"
        "</svg>\n"
    )
