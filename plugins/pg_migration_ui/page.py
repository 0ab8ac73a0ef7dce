"""The page's HTML, rendered on the server from :mod:`.data`, :mod:`.live` and the charts of
:mod:`include.pg_migration.reports.chart`.

No JavaScript and nothing loaded from elsewhere: while a run is in progress the page reloads itself
every ``REFRESH_S`` seconds. Every value from a report is escaped.
"""

from __future__ import annotations

from html import escape
from typing import Any
from urllib.parse import quote

from include.pg_migration.reports import chart
from include.pg_migration.run_order import REHEARSAL_DAG_ID, RUN_DAG_ID

from . import URL_PREFIX
from .data import count, duration, short_time, size

REFRESH_S = 20

CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;margin:0;padding:16px 24px;
 color:#1a202c;background:#fff;font-size:14px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid #e2e8f0;padding-bottom:4px}
h3{font-size:15px;margin:16px 0 6px}
.muted{color:#718096}.small{font-size:12px}
.verdicts{display:flex;gap:12px;flex-wrap:wrap;margin:12px 0}
.verdict{border-radius:8px;padding:10px 14px;min-width:220px;border:1px solid #e2e8f0}
.verdict .big{font-size:20px;font-weight:700;letter-spacing:.5px}
.v-passed{background:#f0fff4;border-color:#9ae6b4}.v-passed .big{color:#276749}
.v-failed{background:#fff5f5;border-color:#feb2b2}.v-failed .big{color:#c53030}
.v-planned,.v-none{background:#f7fafc}.v-running{background:#ebf8ff;border-color:#90cdf4}.v-running .big{color:#2b6cb0}
table{border-collapse:collapse;margin:6px 0 10px;min-width:600px}
th,td{border-bottom:1px solid #edf2f7;padding:5px 10px;text-align:left;white-space:nowrap}
th{background:#f7fafc;font-weight:600;font-size:12px;text-transform:uppercase;color:#4a5568}
td.num{text-align:right;font-variant-numeric:tabular-nums}
.status{display:inline-block;border-radius:10px;padding:1px 8px;font-size:12px;font-weight:600}
.s-passed,.s-done,.s-success{background:#c6f6d5;color:#22543d}
.s-failed,.s-upstream_failed{background:#fed7d7;color:#822727}
.s-running{background:#bee3f8;color:#2a4365}.s-retrying{background:#feebc8;color:#7b341e}
.s-waiting{background:#e9d8fd;color:#44337a}.s-pending,.s-skipped,.s-not-run,.s-not-validated{background:#edf2f7;color:#4a5568}
.mismatch{color:#c53030;font-weight:600}
.bar-outer{background:#edf2f7;border-radius:4px;height:14px;width:420px;display:flex;overflow:hidden}
.bar-outer span{display:block;height:100%}
.b-done{background:#48bb78}.b-running{background:#4299e1}.b-failed{background:#f56565}.b-retrying{background:#ed8936}
.b-waiting{background:#9f7aea}.b-pending{background:#cbd5e0}.b-skipped{background:#a0aec0}
.charts{display:flex;flex-wrap:wrap;gap:12px;align-items:flex-start}
svg.chart{flex:1 1 520px;max-width:760px;height:auto;border:1px solid #edf2f7;border-radius:6px}
"""
CSS += chart.STYLE
CSS += """details{margin:4px 0}summary{cursor:pointer;color:#2b6cb0}
ul.plain{margin:4px 0;padding-left:18px}a{color:#2b6cb0}
.warn{background:#fffaf0;border:1px solid #fbd38d;padding:6px 10px;border-radius:6px;margin:6px 0}
"""


ORDER = ("running", "done", "failed", "retrying", "waiting", "pending", "skipped")
BAR_ORDER = ("done", "running", "retrying", "failed", "waiting", "pending", "skipped")


def _details(summary: str, items_html: str, opened: bool = False) -> str:
    """``items_html``: already escaped ``<li>`` elements."""
    return (
        f"<details{' open' if opened else ''}><summary>{escape(summary)}</summary>"
        f'<ul class="plain">{items_html}</ul></details>'
    )


def _status(value: Any) -> str:
    text = str(value or "unknown")
    return f'<span class="status s-{escape(text.replace(" ", "-"))}">{escape(text)}</span>'


def run_href(dag_id: str, run_id: str) -> str:
    return f"{URL_PREFIX}/run/{quote(dag_id, safe='')}/{quote(run_id, safe='')}"


def api_href(dag_id: str, run_id: str) -> str:
    return f"{URL_PREFIX}/api/runs/{quote(dag_id, safe='')}/{quote(run_id, safe='')}"


def document(title: str, body: str, refresh: bool = False) -> str:
    meta = f'<meta http-equiv="refresh" content="{REFRESH_S}">' if refresh else ""
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f"<title>{escape(title)}</title>{meta}"
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f'<link rel="icon" href="{URL_PREFIX}/static/icon.svg"><style>{CSS}</style></head>'
        f"<body>{body}</body></html>"
    )


def verdict_card(kind: str, summary: dict[str, Any] | None, live: dict[str, Any] | None = None) -> str:
    if live and live.get("in_progress"):
        c = live["counts"]
        total = len(live["units"])
        finish = short_time(live.get("projected_finish")) if live.get("projected_finish") else "–"
        return (
            f'<div class="verdict v-running" data-kind="{escape(kind)}"><div class="muted small">{escape(kind)}</div>'
            f'<div class="big">RUNNING</div><div class="small">{c["done"]}/{total} units done, {c["running"]} running, '
            f"{c['failed']} failed · projected data finish {escape(finish)}</div>"
            + (
                f'<div class="small muted">last finished: {escape(summary["verdict"].upper())} '
                f"{escape(short_time(summary['finished_at']))}</div>"
                if summary
                else ""
            )
            + "</div>"
        )
    if summary is None:
        return (
            f'<div class="verdict v-none" data-kind="{escape(kind)}"><div class="muted small">{escape(kind)}</div>'
            '<div class="big muted">NO REPORT</div><div class="small muted">no finished run yet</div></div>'
        )
    verdict = summary["verdict"]
    statuses = ", ".join(f"{n} {escape(s)}" for s, n in sorted(summary["schema_statuses"].items())) or "no schema"
    statuses += f" · {summary['mismatches']} mismatch(es)"
    return (
        f'<div class="verdict v-{escape(verdict)}" data-kind="{escape(kind)}" data-verdict="{escape(verdict)}">'
        f'<div class="muted small">{escape(kind)}</div><div class="big">{escape(verdict.upper())}</div>'
        f'<div class="small">{escape(short_time(summary["finished_at"]))} · '
        f"{escape(duration(summary['total_seconds']))} · {statuses}</div></div>"
    )


def schema_table(summary: dict[str, Any]) -> str:
    rows = []
    for r in summary["schemas"]:
        mism = f'<span class="mismatch">{r["mismatches"]}</span>' if r["mismatches"] else '<span class="muted">0</span>'
        rows.append(
            f'<tr data-schema="{escape(r["schema"])}" data-status="{escape(r["status"])}">'
            f"<td>{escape(r['schema'])}</td><td>{_status(r['status'])}</td>"
            f'<td class="num">{r["attempts"]}</td><td class="num">{escape(size(r["bytes"]))}</td>'
            f'<td class="num">{escape(duration(r["seconds"]))}</td>'
            f'<td class="num">{escape(count(r["source_rows"]))}</td>'
            f'<td class="num">{escape(count(r["target_rows"]))}</td>'
            f'<td class="num">{mism}</td><td class="num">{r["units_done"]}/{r["units"]}</td></tr>'
        )
    head = (
        "<tr><th>schema</th><th>status</th><th>attempts</th><th>bytes</th><th>duration</th>"
        "<th>rows source</th><th>rows target</th><th>mismatches</th><th>units</th></tr>"
    )
    total = (
        f'<tr class="total"><th>total</th><th></th><th></th><th class="num">{escape(size(summary["bytes"]))}</th>'
        f'<th class="num">{escape(duration(summary["total_seconds"]))}</th>'
        f'<th class="num">{escape(count(summary["source_rows"]))}</th>'
        f'<th class="num">{escape(count(summary["target_rows"]))}</th>'
        f'<th class="num">{summary["mismatches"]}</th><th></th></tr>'
    )
    table = f'<table class="schemas">{head}{"".join(rows)}{total}</table>'
    details = []
    for r in summary["schemas"]:
        if r["mismatch_details"] or r["errors"]:
            items = "".join(f"<li>{escape(str(m))}</li>" for m in r["mismatch_details"] + r["errors"])
            details.append(_details(f"{r['schema']}: details", items))
    return table + "".join(details)


def run_section(kind: str, summary: dict[str, Any] | None) -> str:
    if summary is None:
        return (
            f'<section data-section="{escape(kind)}"><h2>{escape(kind)}</h2>'
            '<p class="muted">No report yet.</p></section>'
        )
    links = (
        f'<a href="{run_href(summary["dag_id"], summary["run_id"])}">page</a> · '
        f'<a href="{api_href(summary["dag_id"], summary["run_id"])}">report.json</a>'
    )
    meta = (
        f'<p class="small"><b>{escape(summary["verdict"].upper())}</b> · DAG <code>{escape(summary["dag_id"])}</code> '
        f"run <code>{escape(summary['run_id'])}</code> · started {escape(short_time(summary['started_at']))}, finished "
        f"{escape(short_time(summary['finished_at']))} · {escape(duration(summary['total_seconds']))} · {links}</p>"
    )
    if summary.get("dry_run"):
        meta += '<p class="muted small">dry run: planned only, nothing copied.</p>'
    failures = summary["failures"]
    fail_html = ""
    if failures:
        items = "".join(f"<li>{escape(str(f))}</li>" for f in failures[:50])
        more = f"<li>… {len(failures) - 50} more</li>" if len(failures) > 50 else ""
        fail_html = _details(f"{len(failures)} failure(s)", items + more, opened=True)
    warn_html = ""
    if summary["warnings"]:
        items = "".join(f"<li>{escape(str(w))}</li>" for w in summary["warnings"][:50])
        warn_html = _details(f"{len(summary['warnings'])} warning(s)", items)
    return (
        f'<section data-section="{escape(kind)}" data-run-id="{escape(summary["run_id"])}"><h2>{escape(kind)}</h2>'
        f"{meta}{schema_table(summary)}{fail_html}{warn_html}</section>"
    )


def live_section(dag_id: str, live: dict[str, Any] | None) -> str:
    title = f"Live: {dag_id}"
    if live is None:
        return (
            f'<section data-section="live" data-dag="{escape(dag_id)}"><h3>{escape(title)}</h3>'
            '<p class="muted">No run.</p></section>'
        )
    c, units = live["counts"], live["units"]
    state = live.get("state") or "unknown"
    head = (
        f'<p class="small">run <code>{escape(live["run_id"])}</code> {_status(state)} · started '
        f"{escape(short_time(live.get('start_date')))}"
    )
    if not live["in_progress"]:
        head += f" · ended {escape(short_time(live.get('end_date')))}"
    head += "</p>"
    if not units:
        if live["plan_available"]:
            note = "no data unit in this run (dry run or validate only)"
        elif live["in_progress"]:
            note = "planning: the units are known once the plan task has run"
        else:
            note = "no plan: the run ended before planning"
        return (
            f'<section data-section="live" data-dag="{escape(dag_id)}" data-run-id="{escape(live["run_id"])}">'
            f'<h3>{escape(title)}</h3>{head}<p class="muted small">{note}.</p>{_tasks_line(live)}</section>'
        )
    total = max(1, len(units))
    bar = "".join(
        f'<span class="b-{k}" style="width:{100 * c[k] / total:.2f}%" title="{c[k]} {k}"></span>'
        for k in BAR_ORDER
        if c[k]
    )
    summary = ", ".join(f"{c[k]} {k}" for k in ORDER if c[k])
    b = live["bytes"]
    tput = f" · throughput {escape(size(live['throughput_bytes_s']))}/s" if live.get("throughput_bytes_s") else ""
    return (
        f'<section data-section="live" data-dag="{escape(dag_id)}" data-run-id="{escape(live["run_id"])}">'
        f"<h3>{escape(title)}</h3>{head}"
        f'<div class="bar-outer" title="{escape(summary)}">{bar}</div>'
        f'<p class="small">{len(units)} units: {escape(summary)} · {escape(size(b["done"]))} of '
        f'{escape(size(b["total"]))} (plan) copied{tput}{_pool_text(live)}</p><p class="small">{_finish_text(live)}</p>'
        f"{_tasks_line(live)}"
        f"<details{' open' if live['in_progress'] else ''}><summary>units</summary>{_units_table(units)}</details>"
        "</section>"
    )


def _finish_text(live: dict[str, Any]) -> str:
    """The projected (or actual) end of the data copy and its share of the downtime window."""
    proj = ""
    if live.get("projected_finish"):
        if live["projected_method"] == "finished":
            proj = f"data copy finished {escape(short_time(live['projected_finish']))}"
        else:
            proj = (
                f"projected data finish <b>{escape(short_time(live['projected_finish']))}</b> "
                f"({escape(live['projected_method'])})"
            )
        if live.get("projected_total_seconds") is not None and live.get("downtime_window_h"):
            share = live["projected_total_seconds"] / (live["downtime_window_h"] * 3600)
            pct = "<0.1%" if 0 < share < 0.001 else f"{share:.1%}"
            proj += (
                f" · run at {escape(duration(live['projected_total_seconds']))} = {escape(pct)} of the "
                f"{live['downtime_window_h']:g} h window"
            )
    return proj


def _pool_text(live: dict[str, Any]) -> str:
    pool = live.get("pool")
    return (
        f" · pool <code>{escape(pool['name'])}</code>: {pool['running']}/{pool['slots']} slots busy, "
        f"{pool['waiting'] + pool['queued']} waiting"
        if pool
        else ""
    )


def _units_table(units: list[dict[str, Any]]) -> str:
    """The data units, running first, then retrying, failed, waiting, pending, done, skipped."""
    rows = []
    order = {"running": 0, "retrying": 1, "failed": 2, "waiting": 3, "pending": 4, "done": 5, "skipped": 6}
    for u in sorted(units, key=lambda u: (order[u["category"]], u["map_index"])):
        label = "waiting (pool)" if u["category"] == "waiting" else u["category"]
        rows.append(
            f'<tr data-unit="{escape(u["label"])}" data-category="{escape(u["category"])}">'
            f"<td>{escape(u['label'])}</td>"
            f'<td><span class="status s-{escape(u["category"])}">{escape(label)}</span></td>'
            f'<td class="num">{u["try_number"]}</td><td class="num">{escape(size(u["bytes"]))}</td>'
            f'<td class="num">{escape(duration(u["seconds"]))}</td></tr>'
        )
    return (
        '<table class="units"><tr><th>unit</th><th>state</th><th>try</th><th>plan bytes</th><th>elapsed</th></tr>'
        + "".join(rows)
        + "</table>"
    )


def _tasks_line(live: dict[str, Any]) -> str:
    """The run's other tasks in order, a mapped task as one chip ("validate 12/12")."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for t in live["tasks"]:
        groups.setdefault(t["task_id"], []).append(t)
    worst = ("failed", "retrying", "running", "waiting", "pending", "skipped", "done")
    parts = []
    for task_id, tis in groups.items():
        cat = next(c for c in worst + (tis[0]["category"],) if any(t["category"] == c for t in tis))
        if len(tis) == 1 and tis[0]["map_index"] < 0:
            name, tip = task_id, str(tis[0]["state"])
        else:
            done = sum(1 for t in tis if t["category"] == "done")
            name = f"{task_id} {done}/{len(tis)}"
            tip = ", ".join(f"{t.get('label') or t['map_index']}: {t['state']}" for t in tis)
        parts.append(f'<span class="status s-{escape(cat)}" title="{escape(tip)}">{escape(name)}</span>')
    return f'<p class="small">tasks: {" ".join(parts)}</p>' if parts else ""


def trend_section(trend: dict[str, Any]) -> str:
    note = ""
    if trend.get("fallback_from"):
        note = (
            f'<p class="muted small">No run of <code>{escape(trend["fallback_from"])}</code> has finished yet: '
            f"showing the runs of <code>{escape(trend['dag_id'])}</code>.</p>"
        )
    return (
        f'<section data-section="trend"><h2>Rehearsal trend</h2>{note}'
        f'<div class="charts">{chart.schema_lines(trend)}{chart.window_bars(trend)}</div>'
        f'<p class="muted small">{len(trend["runs"])} finished run(s) of <code>{escape(trend["dag_id"])}</code> '
        f"from history.jsonl; downtime window {trend['downtime_window_h']:g} h "
        "(<code>PG_MIGRATION_DOWNTIME_WINDOW_H</code>). Per-schema duration is the schema's slowest unit.</p>"
        "</section>"
    )


def runs_section(runs: list[dict[str, Any]], limit: int = 30) -> str:
    rows = "".join(
        f'<tr><td><code>{escape(r["dag_id"])}</code></td><td><a href="{run_href(r["dag_id"], r["run_id"])}">'
        f"{escape(r['run_id'])}</a></td><td>{_status(r.get('verdict'))}</td>"
        f"<td>{escape(short_time(r.get('finished_at')))}</td>"
        f'<td class="num">{escape(duration(r.get("total_seconds")))}</td><td class="num">{r.get("schemas", 0)}</td>'
        f'<td><a href="{api_href(r["dag_id"], r["run_id"])}">json</a></td></tr>'
        for r in runs[:limit]
    )
    more = ""
    if len(runs) > limit:
        more = (
            f'<p class="muted small">{len(runs) - limit} older run(s): <a href="{URL_PREFIX}/api/runs">api/runs</a></p>'
        )
    return (
        '<section data-section="runs"><h2>All runs</h2><table><tr><th>DAG</th><th>run</th><th>verdict</th>'
        f"<th>finished</th><th>duration</th><th>schemas</th><th></th></tr>{rows}</table>{more}</section>"
    )


def overview_page(
    overview: dict[str, Any], lives: dict[str, dict[str, Any] | None], trend: dict[str, Any], user: str | None
) -> str:
    in_progress = any(v and v.get("in_progress") for v in lives.values())
    warnings = "".join(f'<p class="warn">{escape(w)}</p>' for w in overview["warnings"])
    header = (
        '<h1>Migrations</h1><p class="muted small">PostgreSQL → Aurora · from the run reports and Airflow\'s task '
        f"instances · read-only{' · signed in as ' + escape(user) if user else ''}"
        f"{f' · reloads every {REFRESH_S} s while a run is in progress' if in_progress else ''}</p>"
    )
    cards = (
        '<div class="verdicts" data-section="verdicts">'
        + verdict_card("Latest run (pg_migration)", overview["run"], lives.get(RUN_DAG_ID))
        + verdict_card("Latest rehearsal (pg_migration_rehearsal)", overview["rehearsal"], lives.get(REHEARSAL_DAG_ID))
        + "</div>"
    )
    live_html = "".join(live_section(dag_id, live) for dag_id, live in lives.items())
    body = (
        header
        + warnings
        + cards
        + '<h2>Progress <span class="muted small">(from Airflow\'s task instances)</span></h2>'
        + f'<div data-section="live-all">{live_html or "<p class=muted>No DAG visible.</p>"}</div>'
        + run_section("Latest run", overview["run"])
        + run_section("Latest rehearsal", overview["rehearsal"])
        + trend_section(trend)
        + runs_section(overview["runs"])
    )
    return document("Migrations", body, refresh=in_progress)


def run_page(summary: dict[str, Any], live: dict[str, Any] | None) -> str:
    body = (
        f'<p class="small"><a href="{URL_PREFIX}/">← Migrations</a></p>'
        f'<div class="verdicts">{verdict_card(summary["dag_id"], summary)}</div>'
        + run_section(f"Run {summary['run_id']}", summary)
        + (live_section(summary["dag_id"], live) if live else "")
    )
    return document(f"Migration run {summary['run_id']}", body)


def message_page(title: str, text: str) -> str:
    body = f'<h1>{escape(title)}</h1><p>{escape(text)}</p><p><a href="{URL_PREFIX}/">Migrations</a></p>'
    return document(title, body)
