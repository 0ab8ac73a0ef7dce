"""``report.md``: a report (schema in :mod:`include.pg_migration.reports.schema`) for people.

:func:`to_markdown` renders every kind of report: a run's (pre-flight, plan and forecast, schemas,
database checks), with the rehearsal section (:func:`rehearsal_markdown`) when the report has a
``rehearsal`` and the cut-over section (:func:`cutover_markdown`) when it has a ``cutover``.
Pure text: it imports nothing of the package (:func:`include.pg_migration.reports.schema.write`
calls it for every report it writes).
"""

from __future__ import annotations

import math
from typing import Any


def to_markdown(report: dict[str, Any]) -> str:
    lines = _header(report)
    failures = report.get("failures") or []
    if failures:
        lines += ["", "## Failures", "", *[f"- {f}" for f in failures]]
    pre = report.get("preflight") or []
    if pre:
        lines += ["", "## Pre-flight", "", "| check | verdict | detail |", "|---|---|---|"]
        lines += [f"| {c['check']} | {c['verdict']} | {_cell(c.get('detail', ''))} |" for c in pre]
    plan = report.get("plan") or {}
    lines += _plan_overview(plan)
    lines += _plan_units(plan)
    lines += _left_out(plan)
    lines += _schemas(report.get("schemas") or [])
    db = report.get("database") or {}
    if db:
        lines += ["", "## Database", "", f"- large objects: {db.get('large_objects')}"]
        lines += [f"- **{m}**" for m in db.get("mismatches", [])]
    warnings = report.get("warnings") or []
    if warnings:
        lines += ["", "## Warnings", "", *[f"- {w}" for w in warnings]]
    if report.get("rehearsal"):
        lines += rehearsal_markdown(report["rehearsal"])
    return "\n".join(lines) + "\n" + cutover_markdown(report)


def _header(report: dict[str, Any]) -> list[str]:
    verdict = str(report.get("verdict", "?")).upper()
    lines = [
        f"# pg-migration report: {verdict}",
        "",
        f"- DAG `{report.get('dag_id')}`, run `{report.get('run_id')}`",
        f"- started {report.get('started_at')}, finished {report.get('finished_at')}"
        + (f", {report['total_seconds']:.0f} s" if report.get("total_seconds") else ""),
        f"- source `{_where(report.get('source'))}` -> target `{_where(report.get('target'))}`",
    ]
    snap = report.get("snapshot") or {}
    if snap:
        lines.append(f"- snapshot: {snap.get('note', '')}")
    return lines


def _plan_overview(plan: dict[str, Any]) -> list[str]:
    """Schemas (sizes, tables, units) and the forecast's unit order, when the plan has them."""
    lines: list[str] = []
    sizes = plan.get("schema_sizes") or []
    if sizes:
        lines += ["", "## Schemas planned", "", "| schema | MB | tables | units |", "|---|---|---|---|"]
        lines += [f"| {s['schema']} | {_mb(s.get('bytes'))} | {s.get('tables')} | {s.get('units')} |" for s in sizes]
    fc = plan.get("forecast") or {}
    if fc:
        fits = "fits" if fc.get("fits_window") else "DOES NOT fit"
        lines += [
            "",
            "## Forecast",
            "",
            f"Predicted makespan {fc.get('predicted_makespan_s', 0):.0f} s on {fc.get('pool_size')} slot(s) "
            f"({fits} the {fc.get('window_h', 0):g} h window; network floor {fc.get('bandwidth_floor_s', 0):.0f} s "
            f"at {fc.get('bandwidth_mb_s', 0):g} MB/s); basis: {fc.get('basis')}.",
        ]
        if fc.get("schedule"):
            lines += ["", "| order | unit | slot | start s | end s | rate from |", "|---|---|---|---|---|---|"]
            lines += [
                f"| {u['order']} | {u['unit_id']} | {u['slot']} | {u['start_s']:.0f} | {u['end_s']:.0f} | "
                f"{u.get('basis', '')} |"
                for u in fc["schedule"]
            ]
    return lines


def _plan_units(plan: dict[str, Any]) -> list[str]:
    if not plan.get("units"):
        return []
    lines = [
        "",
        "## Plan",
        "",
        f"{len(plan['units'])} unit(s), {plan.get('tables', '?')} table(s), {_mb(plan.get('bytes'))} MB"
        + (f", predicted makespan {plan['predicted_makespan_s']:.0f} s" if plan.get("predicted_makespan_s") else ""),
        "",
        "| unit | schema | tables | MB |",
        "|---|---|---|---|",
    ]
    lines += [f"| {u['unit_id']} | {u['schema']} | {len(u['tables'])} | {_mb(u['bytes'])} |" for u in plan["units"]]
    return lines


#: Tables a report.md names under "Left out" (all of them are in report.json's plan.left_out).
LEFT_OUT_LISTED = 50


def _left_out(plan: dict[str, Any]) -> list[str]:
    """What the table-level selection left out (patterns, tables, tables without data), when any."""
    left = plan.get("left_out")
    if not left:
        return []
    patterns = "; ".join(f"{k}: {', '.join(v)}" for k, v in (left.get("patterns") or {}).items() if v)
    lines = ["", "## Left out by the selection", "", f"Patterns: {patterns}."]
    if left.get("schemas"):
        lines.append(f"Schemas holding no selected table: {', '.join(left['schemas'])}.")
    for key, title in (("tables", "left out (no definition, no data)"), ("data", "created empty (data left out)")):
        entries = left.get(key) or []
        lines += ["", f"{len(entries)} table(s) {title}" + (":" if entries else "."), ""]
        lines += [f"- {e['schema']}.{e['table']} ({e['why']})" for e in entries[:LEFT_OUT_LISTED]]
        if len(entries) > LEFT_OUT_LISTED:
            lines.append(f"- ... and {len(entries) - LEFT_OUT_LISTED} more (report.json: plan.left_out)")
    return lines


def _schemas(schemas: list[dict[str, Any]]) -> list[str]:
    if not schemas:
        return []
    lines = [
        "",
        "## Schemas",
        "",
        "| schema | status | attempts | MB | seconds | tables | mismatches |",
        "|---|---|---|---|---|---|---|",
    ]
    for s in schemas:
        lines.append(
            f"| {s['schema']} | {s['status']} | {s.get('attempts', 0)} | {_mb(s.get('bytes'))} | "
            f"{s.get('seconds') or 0:.1f} | {len(s.get('tables', []))} | {len(s.get('mismatches', []))} |"
        )
    for s in schemas:
        lines += ["", f"### {s['schema']} ({s['status']})", ""]
        for m in s.get("mismatches", []):
            lines.append(f"- **{m}**")
        for n in s.get("notes", []):
            lines.append(f"- {n}")
        if s.get("tables"):
            lines += [
                "",
                "| table | source rows | target rows | source now | status | note |",
                "|---|---|---|---|---|---|",
            ]
            lines += [
                f"| {t['table']} | {t.get('source_rows')} | {t.get('target_rows')} | {t.get('source_rows_now')} "
                f"| {t['status']} | {_cell(t.get('note', ''))} |"
                for t in s["tables"]
            ]
    return lines


# -- the rehearsal section -------------------------------------------------------------------------


def rehearsal_markdown(rehearsal: dict[str, Any]) -> list[str]:
    """The report.md section of :func:`include.pg_migration.reports.history.compare`'s result."""
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
                f"| {r['schema']} | {human(r.get('seconds'))} | {human(r.get('previous_s'))} | "
                f"{human(r.get('median_s'))} | {change} |"
            )
    return lines


def human(seconds: Any) -> str:
    """A duration for people: seconds, minutes or hours; ``–`` when there is none."""
    if not isinstance(seconds, int | float) or not math.isfinite(seconds):
        return "–"
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.2f} h"


# -- the cut-over section ----------------------------------------------------------------------------


def _lo_text(c: dict[str, Any]) -> str:
    lo = c.get("large_objects")
    if not lo:
        return "not checked"
    return f"{lo['checked']} checked, {len(lo['copied'])} re-copied, {len(lo['unlinked'])} unlinked"


def cutover_markdown(data: dict[str, Any]) -> str:
    """The cut-over section at the end of report.md (empty unless the report has a ``cutover``)."""
    c = data.get("cutover") or {}
    if not c:
        return ""
    down = c.get("downtime_seconds")
    lines = [
        "",
        "## Cut-over",
        "",
        f"- **downtime {down:.1f} s** (writes stopped {c['writes_stopped_at']} -> validated {c['validated_at']})"
        if down is not None
        else "- downtime: not measured (not validated)",
        f"- replicate run `{c['replicate_run_id']}`: subscription `{c['subscription']}`, slot `{c['slot']}`, "
        f"publication `{c['publication']}`: {'dropped' if c['replication_dropped'] else 'KEPT (still streaming)'}",
        f"- caught up at {c['caught_up_at']}; {c['sequences']} sequence(s) set; large objects: {_lo_text(c)}; "
        f"materialized views refreshed: {', '.join(c.get('matviews') or []) or 'none'}",
        f"- source made read-only by the cut-over: {'yes' if c['read_only_source'] else 'no'}",
    ]
    drop = c.get("drop") or {}
    if drop.get("retained_wal_bytes") is not None:
        lines.append(f"- the slot retained {drop['retained_wal_bytes'] / 1e6:.1f} MB of WAL when it was dropped")
    return "\n".join(lines) + "\n"


# -- cells ---------------------------------------------------------------------------------------------


def _where(endpoint: dict[str, Any] | None) -> str:
    if not endpoint:
        return "?"
    return f"{endpoint.get('user')}@{endpoint.get('host')}:{endpoint.get('port')}/{endpoint.get('dbname')}"


def _mb(n: Any) -> str:
    return f"{(n or 0) / 1e6:.1f}"


def _cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")
