"""Rehearsal history: the plan's forecast (from sizes, then from measured throughput) and the
report's comparison with earlier rehearsals (table, window verdict, SVG chart), through reports/schema.py."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import pytest

from include.pg_migration.reports import history
from include.pg_migration.reports import schema as rpt
from include.pg_migration.reports.markdown import to_markdown

MB = 1_000_000
DAG = "pg_migration_rehearsal"


def unit(uid: str, schema: str, nbytes: int) -> dict:
    return {
        "unit_id": uid,
        "schema": schema,
        "tables": ["t"],
        "bytes": nbytes,
        "part": 1,
        "parts": 1,
        "kind": "data",
        "label": uid,
    }


PLAN = {
    "schemas": ["sales", "crm", "hr", "ops"],
    "units": [
        unit("sales", "sales", 400 * MB),
        unit("crm", "crm", 300 * MB),
        unit("hr", "hr", 200 * MB),
        unit("ops", "ops", 100 * MB),
    ],
    "bytes": 1000 * MB,
    "tables": 4,
}
INVENTORY = {
    "schemas": [
        {"name": s, "bytes": b, "tables": [{}] * n}
        for s, b, n in (("sales", 410 * MB, 3), ("crm", 300 * MB, 1), ("hr", 200 * MB, 2), ("ops", 100 * MB, 1))
    ]
}


def finished(
    run_id: str,
    seconds: dict[str, float],
    total: float,
    finished_at: str,
    verdict: str = "passed",
    dag_id: str = DAG,
    nbytes: dict[str, int] | None = None,
) -> dict:
    """A finished run's report (as assemble.run_report makes it: units with seconds and bytes)."""
    nbytes = nbytes or {u["schema"]: u["bytes"] for u in PLAN["units"]}
    return {
        "dag_id": dag_id,
        "run_id": run_id,
        "verdict": verdict,
        "finished_at": finished_at,
        "total_seconds": total,
        "params": {"pool_size": 2},
        "schemas": [
            {
                "schema": s,
                "status": "passed",
                "seconds": sec,
                "bytes": nbytes[s],
                "units": [{"unit_id": s, "status": "done", "seconds": sec, "bytes": nbytes[s]}],
            }
            for s, sec in seconds.items()
        ],
    }


def test_forecast_without_history_uses_sizes_and_shared_bandwidth(tmp_path):
    out = history.forecast(PLAN, INVENTORY, pool_size=2, bandwidth_mb_s=100, base=str(tmp_path))
    fc = out["forecast"]
    # 100 MB/s shared by 2 slots: 8, 6, 4, 2 s, largest first on the least loaded slot -> 10 s (= 1000 MB / 100 MB/s)
    assert out["predicted_makespan_s"] == pytest.approx(10.0) and fc["bandwidth_floor_s"] == pytest.approx(10.0)
    assert [(u["order"], u["unit_id"], u["slot"], u["start_s"], u["end_s"]) for u in fc["schedule"]] == [
        (1, "sales", 1, 0, 8),
        (2, "crm", 2, 0, 6),
        (3, "hr", 2, 6, 10),
        (4, "ops", 1, 8, 10),
    ]
    assert fc["basis"].startswith("sizes and the bandwidth") and fc["history_runs"] == []
    assert out["schema_sizes"][0] == {"schema": "sales", "bytes": 410 * MB, "tables": 3, "units": 1}
    assert fc["fits_window"] is True
    # more slots than units: the link is shared by the 4 units (25 MB/s each), so sales takes 16 s
    wide = history.forecast(PLAN, INVENTORY, pool_size=16, bandwidth_mb_s=100, base=str(tmp_path))
    assert wide["predicted_makespan_s"] == pytest.approx(16.0)
    # and the network floor binds when measured slots would be faster than the link
    rpt.write(
        finished("fast", {"sales": 1.0, "crm": 1.0, "hr": 1.0, "ops": 1.0}, 2, "2026-11-01T00:00:00+00:00"),
        str(tmp_path),
    )
    fast = history.forecast(PLAN, INVENTORY, pool_size=16, bandwidth_mb_s=100, base=str(tmp_path))
    assert fast["predicted_makespan_s"] == pytest.approx(10.0) and fast["forecast"]["bandwidth_floor_s"] == 10.0


def test_forecast_uses_measured_throughput_of_earlier_runs(tmp_path):
    base = str(tmp_path)
    # an earlier rehearsal measured sales at 10 MB/s and crm at 30 MB/s (hr/ops were not in it)
    rpt.write(finished("r1", {"sales": 40.0, "crm": 10.0}, 50, "2026-11-07T03:00:00+00:00"), base)
    rpt.write({**finished("dry", {}, 0, "2026-11-08T03:00:00+00:00"), "verdict": "planned"}, base)  # not history
    out = history.forecast(PLAN, INVENTORY, pool_size=2, bandwidth_mb_s=1000, base=base)
    fc = out["forecast"]
    by_unit = {u["unit_id"]: u for u in fc["schedule"]}
    assert by_unit["sales"]["end_s"] - by_unit["sales"]["start_s"] == pytest.approx(40.0)
    assert by_unit["crm"]["end_s"] - by_unit["crm"]["start_s"] == pytest.approx(10.0)
    # hr/ops: the run's mean slot throughput, (400+300) MB / 50 s = 14 MB/s
    assert by_unit["hr"]["end_s"] - by_unit["hr"]["start_s"] == pytest.approx(200 / 14, abs=1e-3)
    assert by_unit["hr"]["basis"] == "recent runs" and by_unit["sales"]["basis"] == "schema history"
    assert fc["history_runs"] == ["r1"] and fc["slot_mb_s"] == pytest.approx(14.0)
    assert out["predicted_makespan_s"] == pytest.approx(max(u["end_s"] for u in fc["schedule"]))
    assert history.forecast(PLAN, INVENTORY, 2, 1000, base=base, window_h=0.001)["forecast"]["fits_window"] is False


def test_history_lines_carry_sizes_and_old_lines_are_read_through_their_report(tmp_path):
    base = str(tmp_path)
    rpt.write(finished("r1", {"sales": 40.0}, 41, "2026-11-07T03:00:00+00:00"), base)
    line = rpt.history(base)[0]
    assert line["bytes"] == {"sales": 400 * MB} and line["unit_seconds"] == {"sales": 40.0} and line["pool_size"] == 2
    # a resumed run (most tables kept, so seconds near zero) does not count as a throughput
    resumed = finished("r2", {"sales": 0.5}, 1, "2026-11-08T03:00:00+00:00")
    rpt.write({**resumed, "params": {"pool_size": 2, "resume": True}}, base)
    assert history.throughput(base)["runs"] == ["r1"]
    # a line as written before sizes were recorded: the report supplies them
    path = tmp_path / "history.jsonl"
    path.write_text(
        json.dumps({k: line[k] for k in ("dag_id", "run_id", "finished_at", "verdict", "total_seconds", "schemas")})
        + "\n"
    )
    assert history.throughput(base)["schemas"] == {"sales": pytest.approx(10 * MB)}


def test_compare_with_earlier_rehearsals_table_window_and_chart(tmp_path, monkeypatch):
    base = str(tmp_path)
    monkeypatch.setenv("PG_MIGRATION_DOWNTIME_WINDOW_H", "0.02")  # 72 s
    rpt.write(finished("r1", {"sales": 40.0, "crm": 10.0, "hr": 5.0}, 50, "2026-11-07T03:00:00+00:00"), base)
    rpt.write(finished("r2", {"sales": 44.0, "crm": 12.0, "hr": 5.0}, 60, "2026-11-14T03:00:00+00:00"), base)
    rpt.write(finished("other", {"sales": 1.0}, 1, "2026-11-15T03:00:00+00:00", dag_id="pg_migration"), base)
    this = finished("r3", {"sales": 55.0, "crm": 11.0, "ops": 2.0}, 80, "2026-11-21T03:00:00+00:00")

    cmp = history.compare(this, base)
    assert cmp["previous_run_id"] == "r2" and [r["run_id"] for r in cmp["earlier_runs"]] == ["r1", "r2"]
    rows = {r["schema"]: r for r in cmp["schemas"]}
    assert rows["sales"] == {
        "schema": "sales",
        "seconds": 55.0,
        "previous_s": 44.0,
        "median_s": 42.0,
        "change_pct": 25.0,
    }
    assert rows["ops"]["previous_s"] is None and rows["hr"]["seconds"] is None  # new / not in this run
    assert cmp["window_h"] == 0.02 and cmp["fits_window"] is False
    assert "DOES NOT FIT" in cmp["verdict"] and "previous rehearsal 60.0 s" in cmp["verdict"]

    # the chart is written next to report.md, and the report renders the comparison
    folder = rpt.write({**this, "rehearsal": cmp}, base)
    svg = (tmp_path / DAG / "r3" / "rehearsal.svg").read_text()
    root = ET.fromstring(svg)
    lines = root.findall(".//{http://www.w3.org/2000/svg}polyline")
    assert root.tag.endswith("svg") and len(lines) == 3  # sales, crm, hr (ops has one point: a dot)
    assert "sales" in svg and "window" in svg
    md = (tmp_path / DAG / "r3" / "report.md").read_text()
    assert "## Rehearsal" in md and "![per-schema durations across runs](rehearsal.svg)" in md
    assert "| sales | 55.0 s | 44.0 s | 42.0 s | +25.0 % |" in md
    assert json.loads((tmp_path / DAG / "r3" / "report.json").read_text())["rehearsal"]["fits_window"] is False
    assert folder.endswith("/r3")

    monkeypatch.setenv("PG_MIGRATION_DOWNTIME_WINDOW_H", "24")
    assert history.compare(this, base, chart=False)["fits_window"] is True


def test_compare_of_a_dry_run_uses_the_predicted_makespan(tmp_path):
    plan = {**PLAN, **history.forecast(PLAN, INVENTORY, 2, 100, base=str(tmp_path))}
    dry = {
        "dag_id": DAG,
        "run_id": "d1",
        "verdict": "planned",
        "params": {"dry_run": True},
        "plan": plan,
        "schemas": [],
    }
    cmp = history.compare(dry, str(tmp_path), chart=False)
    assert cmp["predicted"] is True and cmp["total_seconds"] == pytest.approx(10.0) and cmp["fits_window"] is True
    assert "predicted 10.0 s" in cmp["verdict"]
    md = to_markdown({**dry, "rehearsal": cmp})
    assert "## Schemas planned" in md and "## Forecast" in md and "| 1 | sales | 1 | 0 | 8 | bandwidth |" in md


@pytest.mark.parametrize("raw,hours", [("", 24.0), ("8", 8.0), ("nope", 24.0), ("-1", 24.0), ("0.5", 0.5)])
def test_downtime_window_from_the_environment(raw, hours, monkeypatch):
    monkeypatch.setenv("PG_MIGRATION_DOWNTIME_WINDOW_H", raw)
    assert history.downtime_window_h() == hours
