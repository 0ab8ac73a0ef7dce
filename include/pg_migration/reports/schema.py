"""The run report's schema and where reports live: one module owns both.

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
     "database": {"large_objects": {"source", "target", "content": "digest", "seconds"}, "mismatches": [...]},
     "phases": {"pre-data": {...}, "large-objects": {...}, "post-data": {...},
                "ownership": {"mode", "carried", "kept", "roles", "roles_created", "warnings", "failures"}},
     "failures": [...], "warnings": [...],
     "rehearsal": {"window_h", "total_seconds", "predicted", "fits_window", "verdict", "previous_run_id",   # optional
                   "earlier_runs": [...], "schemas": [{"schema", "seconds", "previous_s", "median_s",
                   "change_pct"}], "chart": "rehearsal.svg"|null}}

Optional keys are additive (still version 1): readers must treat them as absent in older reports.
``plan.schema_sizes``/``plan.forecast`` come from :func:`include.pg_migration.reports.history.forecast`,
``rehearsal`` from :func:`include.pg_migration.reports.history.compare` (which also writes ``rehearsal.svg``
next to ``report.md``). A cut-over's report adds ``cutover``, an abort's ``abort``; every kind is
assembled by :mod:`include.pg_migration.reports.assemble` and rendered to ``report.md`` by
:mod:`include.pg_migration.reports.markdown`.

``history.jsonl`` (one line per run that copied data; dry runs are not recorded)::

    {"dag_id", "run_id", "finished_at", "verdict", "total_seconds",
     "schemas": {schema: seconds},           # a schema's wall time (its slowest unit)
     "bytes": {schema: bytes},               # since history sizes were recorded (older lines lack
     "unit_seconds": {schema: seconds},      #   these three: reports/history.py reads their report.json)
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

from include.pg_migration.reports.markdown import to_markdown

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
