"""The run report: one module owns its schema and where reports live.

Location: ``$PG_MIGRATION_REPORTS`` (an fsspec URL: a local path or ``file://...`` on a laptop,
``s3://bucket/prefix`` on AWS with s3fs), default ``$AIRFLOW_HOME/pg_migration_reports``.
Layout::

    <base>/<dag_id>/<run_id>/report.json   machine-readable (schema below, version 1)
    <base>/<dag_id>/<run_id>/report.md     the same for people
    <base>/history.jsonl                   one line per finished run: per-schema seconds (rehearsal trend)

``report.json`` (version 1)::

    {"version": 1, "dag_id", "run_id", "started_at", "finished_at", "verdict": "passed"|"failed"|"planned",
     "params": {...}, "source": {host, port, dbname, user, ...}, "target": {...},   # never a password
     "snapshot": {"id", "consistent", "held_seconds", "note"},
     "plan": {"units": [...], "bytes", "tables", "predicted_makespan_s",
              "schema_sizes": [{"schema", "bytes", "tables", "units"}],          # optional (history.forecast)
              "forecast": {"predicted_makespan_s", "pool_size", "bandwidth_mb_s", "bandwidth_floor_s",
                           "slot_mb_s", "basis", "history_runs", "window_h", "fits_window",
                           "schedule": [{"order", "unit_id", "slot", "start_s", "end_s", "basis"}]}},
     "preflight": [{"check", "verdict": "ok"|"warning"|"blocking", "detail"}],
     "schemas": [{"schema", "status": "passed"|"failed"|"not run", "bytes", "seconds", "attempts",
                  "units": [{"unit_id", "status", "attempts", "seconds", "bytes", "error"}],
                  "tables": [{"table", "source_rows", "target_rows", "source_rows_now", "status", "note"}],
                  "mismatches": [...], "structure_diffs": [...], "sequences": [...], "notes": [...]}],
     "database": {"large_objects": {...}, "mismatches": [...]},
     "phases": {"pre-data": {...}, "large-objects": {...}, "post-data": {...}},
     "failures": [...], "warnings": [...],
     "rehearsal": {"window_h", "total_seconds", "predicted", "fits_window", "verdict", "previous_run_id",   # optional
                   "earlier_runs": [...], "schemas": [{"schema", "seconds", "previous_s", "median_s",
                   "change_pct"}], "chart": "rehearsal.svg"|null}}

Optional keys are additive (still version 1): readers must treat them as absent in older reports.
``plan.schema_sizes``/``plan.forecast`` come from :func:`include.pg_migration.history.forecast`,
``rehearsal`` from :func:`include.pg_migration.history.compare` (which also writes ``rehearsal.svg``
next to ``report.md``).

``history.jsonl`` (one line per run that copied data; dry runs are not recorded)::

    {"dag_id", "run_id", "finished_at", "verdict", "total_seconds",
     "schemas": {schema: seconds},           # a schema's wall time (its slowest unit)
     "bytes": {schema: bytes},               # since history sizes were recorded (older lines lack
     "unit_seconds": {schema: seconds},      #   these three: history.py reads their report.json)
     "pool_size": int|null,
     "resume": bool}                         # a resumed run's kept tables took no time: not a throughput

The DAG's report task writes it; the benchmark and the UI page only read it (:func:`read`, :func:`runs`).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
from typing import Any

import fsspec

VERSION = 1


def base_url() -> str:
    explicit = os.environ.get("PG_MIGRATION_REPORTS")
    if explicit:
        return explicit.rstrip("/")
    home = os.environ.get("AIRFLOW_HOME") or os.path.expanduser("~/airflow")
    return os.path.join(home, "pg_migration_reports")


def safe(run_id: str) -> str:
    """A run id as a folder name (``manual__2026-11-26T10:00:00+00:00`` -> no ``:`` or ``+``)."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", run_id)


def run_url(dag_id: str, run_id: str, base: str | None = None) -> str:
    return f"{base or base_url()}/{dag_id}/{safe(run_id)}"


def write(report: dict[str, Any], base: str | None = None) -> str:
    """Write report.json + report.md and append to the history; return the folder URL."""
    report = {"version": VERSION, **report}
    folder = run_url(report["dag_id"], report["run_id"], base)
    fs, path = fsspec.core.url_to_fs(folder)
    fs.makedirs(path, exist_ok=True)
    with fs.open(f"{path}/report.json", "w") as f:
        json.dump(report, f, indent=2, default=str)
    with fs.open(f"{path}/report.md", "w") as f:
        f.write(to_markdown(report))
    _append_history(report, base)
    return folder


def _append_history(report: dict[str, Any], base: str | None) -> None:
    if report.get("verdict") == "planned":
        return
    line = {
        "dag_id": report["dag_id"],
        "run_id": report["run_id"],
        "finished_at": report.get("finished_at"),
        "verdict": report.get("verdict"),
        "total_seconds": report.get("total_seconds"),
        "schemas": {s["schema"]: s.get("seconds") for s in report.get("schemas", [])},
        "bytes": {s["schema"]: s.get("bytes") or 0 for s in report.get("schemas", [])},
        "unit_seconds": {
            s["schema"]: sum((u.get("seconds") or 0) for u in s.get("units") or []) for s in report.get("schemas", [])
        },
        "pool_size": (report.get("params") or {}).get("pool_size"),
        "resume": bool((report.get("params") or {}).get("resume")),
    }
    fs, path = fsspec.core.url_to_fs(base or base_url())
    fs.makedirs(path, exist_ok=True)
    history = f"{path}/history.jsonl"
    existing = fs.cat_file(history).decode() if fs.exists(history) else ""
    kept = [
        ln
        for ln in existing.splitlines()
        if ln.strip()
        and not (json.loads(ln)["run_id"] == line["run_id"] and json.loads(ln)["dag_id"] == line["dag_id"])
    ]
    with fs.open(history, "w") as f:
        f.write("\n".join([*kept, json.dumps(line, default=str)]) + "\n")


def history(base: str | None = None, dag_id: str | None = None) -> list[dict[str, Any]]:
    fs, path = fsspec.core.url_to_fs(base or base_url())
    file = f"{path}/history.jsonl"
    if not fs.exists(file):
        return []
    rows = [json.loads(ln) for ln in fs.cat_file(file).decode().splitlines() if ln.strip()]
    return [r for r in rows if dag_id is None or r["dag_id"] == dag_id]


def read(dag_id: str, run_id: str, base: str | None = None) -> dict[str, Any] | None:
    fs, path = fsspec.core.url_to_fs(run_url(dag_id, run_id, base))
    file = f"{path}/report.json"
    if not fs.exists(file):
        return None
    return json.loads(fs.cat_file(file))


def runs(base: str | None = None) -> list[dict[str, Any]]:
    """Summaries of every report, newest first."""
    fs, path = fsspec.core.url_to_fs(base or base_url())
    out = []
    for file in fs.glob(f"{path}/*/*/report.json"):
        try:
            data = json.loads(fs.cat_file(file))
        except (OSError, ValueError):
            continue
        out.append(
            {k: data.get(k) for k in ("dag_id", "run_id", "verdict", "started_at", "finished_at", "total_seconds")}
            | {"schemas": len(data.get("schemas", []))}
        )
    return sorted(out, key=lambda r: str(r.get("finished_at") or r.get("started_at") or ""), reverse=True)


def now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


# -- markdown -------------------------------------------------------------------------------------


def to_markdown(report: dict[str, Any]) -> str:
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
    failures = report.get("failures") or []
    if failures:
        lines += ["", "## Failures", "", *[f"- {f}" for f in failures]]
    pre = report.get("preflight") or []
    if pre:
        lines += ["", "## Pre-flight", "", "| check | verdict | detail |", "|---|---|---|"]
        lines += [f"| {c['check']} | {c['verdict']} | {_cell(c.get('detail', ''))} |" for c in pre]
    plan = report.get("plan") or {}
    lines += _plan_overview(plan)
    if plan.get("units"):
        lines += [
            "",
            "## Plan",
            "",
            f"{len(plan['units'])} unit(s), {plan.get('tables', '?')} table(s), {_mb(plan.get('bytes'))} MB"
            + (
                f", predicted makespan {plan['predicted_makespan_s']:.0f} s" if plan.get("predicted_makespan_s") else ""
            ),
            "",
            "| unit | schema | tables | MB |",
            "|---|---|---|---|",
        ]
        lines += [f"| {u['unit_id']} | {u['schema']} | {len(u['tables'])} | {_mb(u['bytes'])} |" for u in plan["units"]]
    schemas = report.get("schemas") or []
    if schemas:
        lines += [
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
    db = report.get("database") or {}
    if db:
        lines += ["", "## Database", "", f"- large objects: {db.get('large_objects')}"]
        lines += [f"- **{m}**" for m in db.get("mismatches", [])]
    warnings = report.get("warnings") or []
    if warnings:
        lines += ["", "## Warnings", "", *[f"- {w}" for w in warnings]]
    if report.get("rehearsal"):
        from include.pg_migration import history

        lines += history.to_markdown(report["rehearsal"])
    return "\n".join(lines) + "\n"


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


def _where(endpoint: dict[str, Any] | None) -> str:
    if not endpoint:
        return "?"
    return f"{endpoint.get('user')}@{endpoint.get('host')}:{endpoint.get('port')}/{endpoint.get('dbname')}"


def _mb(n: Any) -> str:
    return f"{(n or 0) / 1e6:.1f}"


def _cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")
