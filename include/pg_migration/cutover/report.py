"""The cut-over's report: report.json (a run's schema, plus ``cutover``) and its report.md section.

:func:`cutover_report` assembles it from the replication row and the validations of the cut-over
run; :func:`cutover_markdown` is the cut-over section appended to report.md;
:func:`write_cutover_report` writes both under the reports base.
"""

from __future__ import annotations

from typing import Any

import fsspec

from include.pg_migration import report as rpt
from include.pg_migration import state
from include.pg_migration.conn import Endpoint
from include.pg_migration.errors import MigrationError
from include.pg_migration.replicate.lag import mb
from include.pg_migration.replicate.records import by_cutover, has_table


def cutover_report(
    source: Endpoint | None,
    target: Endpoint,
    cutover_run_id: str,
    dag_id: str,
    params: dict[str, Any],
    failed_tasks: list[str],
    started_at: str | None = None,
) -> dict[str, Any]:
    """The cut-over's report (same schema as a run's, plus ``cutover``): its downtime, per schema results."""
    failures = list(failed_tasks)
    data: dict[str, Any] = {
        "dag_id": dag_id,
        "run_id": cutover_run_id,
        "params": params,
        "finished_at": rpt.now(),
        "started_at": started_at,
        "source": source.public() if source else None,
        "target": target.public(),
        "schemas": [],
        "failures": [],
        "warnings": [],
    }
    rep = None
    with target.connect("pg_migration report", autocommit=True) as tgt:
        if state.exists(tgt) and has_table(tgt):
            try:
                rep = by_cutover(tgt, cutover_run_id)
            except MigrationError as exc:
                failures.append(str(exc))
            validations = state.validations_of_run(tgt, cutover_run_id)
        else:
            validations = {}
            failures.append("the target has no replication state")
    if rep is not None:
        detail = rep["detail"] or {}
        downtime = None
        if rep["validated_at"] and rep["writes_stopped_at"]:
            downtime = (rep["validated_at"] - rep["writes_stopped_at"]).total_seconds()
        data["started_at"] = str(rep["cutover_started_at"])
        data["cutover"] = {
            "replicate_run_id": rep["run_id"],
            "subscription": rep["subscription"],
            "slot": rep["slot"],
            "publication": rep["publication"],
            "writes_stopped_at": str(rep["writes_stopped_at"]),
            "caught_up_at": str(rep["caught_up_at"]),
            "validated_at": str(rep["validated_at"]),
            "downtime_seconds": downtime,
            "replication_dropped": rep["dropped_at"] is not None,
            "read_only_source": bool(rep["read_only_set"]),
            "sequences": len(detail.get("sequences", [])),
            "large_objects": detail.get("large_objects"),
            "matviews": detail.get("matviews", []),
            "drop": detail.get("drop"),
        }
        data["snapshot"] = {
            "id": None,
            "consistent": True,
            "note": (
                f"cut-over of replicate run {rep['run_id']}: downtime {downtime:.1f} s (writes stopped -> validated)"
                if downtime is not None
                else f"cut-over of replicate run {rep['run_id']}: not validated"
            ),
        }
        data["total_seconds"] = downtime
        for schema in rep["schemas"]:
            v = validations.get(schema)
            entry = {
                "schema": schema,
                "units": [],
                "attempts": 0,
                "bytes": 0,
                "seconds": (v or {}).get("seconds", 0),
                "tables": (v or {}).get("tables", []),
                "mismatches": (v or {}).get("mismatches", []),
                "structure_diffs": (v or {}).get("structure_diffs", []),
                "sequences": (v or {}).get("sequences", []),
                "notes": (v or {}).get("notes", []),
                "status": "not validated" if v is None else ("failed" if v.get("mismatches") else "passed"),
            }
            data["schemas"].append(entry)
            failures += [f"{schema}: {m}" for m in entry["mismatches"]]
            if v is None:
                failures.append(f"schema {schema} was not validated")
        if rep["dropped_at"] is None:
            failures.append(
                f"replication of run {rep['run_id']} not dropped (status {rep['status']}): the cut-over "
                "did not finish; the source remains the system of record"
            )
        for problem in detail.get("problems", []):
            failures.append(problem)
    data["failures"] = list(dict.fromkeys(failures))
    data["verdict"] = "passed" if not data["failures"] and rep is not None else "failed"
    return data


def _lo_text(c: dict[str, Any]) -> str:
    lo = c.get("large_objects")
    if not lo:
        return "not checked"
    return f"{lo['checked']} checked, {len(lo['copied'])} re-copied, {len(lo['unlinked'])} unlinked"


def cutover_markdown(data: dict[str, Any]) -> str:
    """The cut-over section appended to report.md."""
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
        lines.append(f"- the slot retained {mb(drop['retained_wal_bytes'])} of WAL when it was dropped")
    return "\n".join(lines) + "\n"


def write_cutover_report(data: dict[str, Any]) -> str:
    """report.json + report.md (with the cut-over section) under the reports base; returns the folder."""
    folder = rpt.write(data)
    fs, path = fsspec.core.url_to_fs(folder)
    text = fs.cat_file(f"{path}/report.md").decode()
    with fs.open(f"{path}/report.md", "w") as f:
        f.write(text + cutover_markdown(data))
    return folder
