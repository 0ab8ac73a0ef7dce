"""The Migrations page's logic without Airflow: reports -> page data, task instances -> progress, charts.

Reports are written with the report module itself (the one owner of their schema and location).
"""

from __future__ import annotations

import datetime as dt
import re
import sys

import pytest

from tests.conftest import REPO

sys.path.append(str(REPO / "plugins"))  # the package the API server imports from plugins/

from pg_migration_ui import data, live, page  # noqa: E402

from include.pg_migration.reports import chart, history  # noqa: E402
from include.pg_migration.reports import schema as rpt  # noqa: E402

T0 = dt.datetime(2026, 11, 28, 22, 0, tzinfo=dt.UTC)


def _report(dag_id: str, run_id: str, finished: dt.datetime, schemas: dict[str, float], **extra) -> dict:
    return {
        "dag_id": dag_id,
        "run_id": run_id,
        "started_at": str(finished - dt.timedelta(seconds=100)),
        "finished_at": finished.isoformat(timespec="seconds"),
        "total_seconds": 100.0 + len(run_id),
        "verdict": extra.pop("verdict", "passed"),
        "params": {"dry_run": False},
        "plan": {
            "units": [{"unit_id": s, "schema": s, "label": s, "bytes": 1000, "tables": ["t"]} for s in schemas],
            "bytes": 1000 * len(schemas),
            "predicted_makespan_s": 50.0,
        },
        "schemas": [
            {
                "schema": s,
                "status": "passed",
                "attempts": 1,
                "bytes": 900,
                "seconds": secs,
                "units": [
                    {"unit_id": s, "status": "done", "attempts": 1, "seconds": secs, "bytes": 900, "error": None}
                ],
                "tables": [
                    {"table": "t", "source_rows": 10, "target_rows": 10, "status": "ok"},
                    {"table": "u", "source_rows": 5, "target_rows": 5, "status": "ok"},
                ],
                "mismatches": [],
                "structure_diffs": [],
            }
            for s, secs in schemas.items()
        ],
        "failures": [],
        "warnings": [],
        **extra,
    }


@pytest.fixture
def reports(tmp_path, monkeypatch):
    base = str(tmp_path / "reports")
    monkeypatch.setenv("PG_MIGRATION_REPORTS", base)
    monkeypatch.delenv(history.WINDOW_ENV, raising=False)
    return base


def test_overview_picks_latest_run_and_rehearsal_and_sums_rows(reports):
    rpt.write(_report("pg_migration", "run_a", T0, {"sales": 30.0, "crm": 12.0}))
    rpt.write(_report("pg_migration", "dry", T0 + dt.timedelta(hours=1), {}, verdict="planned"))
    rpt.write(_report("pg_migration_rehearsal", "reh_1", T0 - dt.timedelta(days=7), {"sales": 40.0}))
    bad = _report("pg_migration_rehearsal", "reh_2", T0 - dt.timedelta(days=1), {"sales": 35.0}, verdict="failed")
    bad["schemas"][0].update(status="failed", mismatches=["sales.t: 10 source rows, 9 target rows"])
    bad["schemas"][0]["tables"][0]["target_rows"] = 9
    rpt.write(bad)

    ov = data.overview()
    assert ov["run"]["run_id"] == "run_a"  # the dry run (verdict planned) is not the latest *migration*
    assert {r["schema"]: r["status"] for r in ov["run"]["schemas"]} == {"sales": "passed", "crm": "passed"}
    sales = next(r for r in ov["run"]["schemas"] if r["schema"] == "sales")
    assert (sales["source_rows"], sales["target_rows"], sales["mismatches"], sales["attempts"]) == (15, 15, 0, 1)
    assert ov["run"]["source_rows"] == 30
    assert ov["rehearsal"]["run_id"] == "reh_2" and ov["rehearsal"]["verdict"] == "failed"
    assert ov["rehearsal"]["schemas"][0]["target_rows"] == 14 and ov["rehearsal"]["mismatches"] == 1
    assert [r["run_id"] for r in ov["runs"]] == ["dry", "run_a", "reh_2", "reh_1"]

    only_rehearsals = data.overview(allowed=lambda dag_id: dag_id == "pg_migration_rehearsal")
    assert only_rehearsals["run"] is None
    assert {r["dag_id"] for r in only_rehearsals["runs"]} == {"pg_migration_rehearsal"}


def test_trend_orders_rehearsals_and_falls_back_to_runs(reports, monkeypatch):
    rpt.write(_report("pg_migration", "run_a", T0, {"sales": 30.0}))
    fallback = data.trend()
    assert fallback["fallback_from"] == "pg_migration_rehearsal" and fallback["dag_id"] == "pg_migration"

    rpt.write(_report("pg_migration_rehearsal", "reh_2", T0 - dt.timedelta(days=1), {"sales": 35.0, "hr": 2.0}))
    rpt.write(_report("pg_migration_rehearsal", "reh_1", T0 - dt.timedelta(days=7), {"sales": 40.0}))
    monkeypatch.setenv(history.WINDOW_ENV, "6")
    tr = data.trend()
    assert tr["fallback_from"] is None and tr["dag_id"] == "pg_migration_rehearsal"
    assert [r["run_id"] for r in tr["runs"]] == ["reh_1", "reh_2"]  # oldest first
    assert tr["schemas"] == {"hr": [None, 2.0], "sales": [40.0, 35.0]}
    assert tr["downtime_window_h"] == 6.0
    assert tr["runs"][0]["window_fraction"] == pytest.approx(tr["runs"][0]["total_seconds"] / (6 * 3600))

    monkeypatch.setenv(history.WINDOW_ENV, "soon")
    assert history.downtime_window_hours()[0] == 24.0 and "not a positive number" in data.trend()["warnings"][0]


def _ti(task_id, map_index, state, start=None, end=None, try_number=1, label=None):
    return {
        "task_id": task_id,
        "map_index": map_index,
        "state": state,
        "rendered_map_index": label,
        "start_date": start,
        "end_date": end,
        "try_number": try_number,
        "pool": "pg_migration",
    }


PLANNED = {
    "plan": {"predicted_makespan_s": 200.0},
    "units": [{"label": f"s{i}", "schema": f"s{i}", "bytes": b} for i, b in enumerate([400, 300, 100, 100, 50, 50])],
}
RUN = {"dag_id": "pg_migration", "run_id": "r1", "state": "running", "start_date": T0 - dt.timedelta(seconds=30)}


def test_progress_counts_units_and_projects_from_throughput():
    now = T0 + dt.timedelta(seconds=50)
    tis = [
        _ti("pre_data", -1, "success", T0 - dt.timedelta(seconds=5), T0),
        _ti("migrate_unit", 0, "success", T0, T0 + dt.timedelta(seconds=40), label="s0"),
        _ti("migrate_unit", 1, "running", T0 + dt.timedelta(seconds=1), label="s1"),
        _ti("migrate_unit", 2, "failed", T0, T0 + dt.timedelta(seconds=3), try_number=4),
        _ti("migrate_unit", 3, "up_for_retry", T0, T0 + dt.timedelta(seconds=2), try_number=2),
        _ti("migrate_unit", 4, "scheduled"),
        _ti("migrate_unit", 5, None),
        _ti("validate", -1, None),
    ]
    p = live.progress(RUN, tis, PLANNED, now=now, window_h=24)
    assert p["in_progress"] and p["counts"] == {
        "running": 1,
        "done": 1,
        "failed": 1,
        "retrying": 1,
        "waiting": 1,
        "pending": 1,
        "skipped": 0,
    }
    assert [u["label"] for u in p["units"]] == ["s0", "s1", "s2", "s3", "s4", "s5"]
    assert p["units"][1]["seconds"] == pytest.approx(49.0)  # running: elapsed until now
    assert p["bytes"] == {"total": 1000, "done": 400, "running": 300, "remaining": 600}
    # 400 bytes in the 50 s since the first unit started: 8 B/s, 600 bytes left -> 75 s from now.
    assert p["throughput_bytes_s"] == pytest.approx(8.0)
    assert p["projected_method"] == "throughput so far"
    assert dt.datetime.fromisoformat(p["projected_finish"]) == now + dt.timedelta(seconds=75)
    assert p["projected_total_seconds"] == pytest.approx(30 + 50 + 75) and p["within_window"] is True
    assert [t["task_id"] for t in p["tasks"]] == ["pre_data", "validate"]


def test_progress_before_any_unit_finished_uses_the_plan_and_ecs_units_count():
    now = T0 + dt.timedelta(seconds=10)
    tis = [_ti("migrate_unit", -1, "skipped")]  # runner ecs: the local branch is skipped...
    tis += [_ti("ecs.migrate_unit", i, "deferred" if i < 2 else "scheduled", T0 if i < 2 else None) for i in range(6)]
    p = live.progress(RUN, tis, PLANNED, now=now, window_h=24)
    assert p["counts"]["running"] == 2 and p["counts"]["waiting"] == 4  # ...its Fargate tasks are the units
    assert p["projected_method"] == "plan (no unit finished yet)"
    assert dt.datetime.fromisoformat(p["projected_finish"]) == T0 + dt.timedelta(seconds=200)

    nothing = live.progress({**RUN, "state": "queued"}, [], None, now=now)
    assert nothing["units"] == [] and nothing["plan_available"] is False and nothing["projected_finish"] is None


def test_finished_run_reports_when_the_copy_ended():
    tis = [_ti("migrate_unit", i, "success", T0, T0 + dt.timedelta(seconds=10 * (i + 1))) for i in range(6)]
    p = live.progress({**RUN, "state": "success"}, tis, PLANNED, now=T0 + dt.timedelta(hours=1))
    assert not p["in_progress"] and p["projected_method"] == "finished"
    assert dt.datetime.fromisoformat(p["projected_finish"]) == T0 + dt.timedelta(seconds=60)
    assert p["throughput_bytes_s"] == pytest.approx(1000 / 60)


def test_charts_and_page_escape_report_text(reports):
    evil = '<script>alert("x")</script>'
    rpt.write(_report("pg_migration_rehearsal", "reh_1", T0, {evil: 3.0, "sales": 7200.0}))
    rpt.write(_report("pg_migration", "run_1", T0, {evil: 3.0}, failures=[evil]))
    tr = data.trend()
    lines, bars = chart.schema_lines(tr), chart.window_bars(tr)
    assert "<script>" not in lines and "&lt;script&gt;" in lines
    assert 'data-chart="schema-lines"' in lines and lines.count("<circle") == 2
    assert 'class="window"' in bars and "window 24 h" in bars and bars.count('class="bar ') == 1
    html = page.overview_page(data.overview(), {"pg_migration": None}, tr, user="<b>me</b>")
    assert "<script>" not in html and "&lt;b&gt;me&lt;/b&gt;" in html
    assert re.search(r'data-schema="&lt;script&gt;alert\(&quot;x&quot;\)&lt;/script&gt;" data-status="passed"', html)

    empty = chart.schema_lines({"runs": [], "schemas": {}, "downtime_window_h": 24})
    assert "no finished rehearsal yet" in empty


def test_validation_groups_show_as_one_chip_with_their_labels():
    tis = [_ti("migrate_unit", i, "success", T0, T0 + dt.timedelta(seconds=5), label=f"s{i}") for i in range(6)] + [
        _ti("validate", 0, "success", T0, T0 + dt.timedelta(seconds=1), label="s0"),
        _ti("validate", 1, "running", T0, label="s2 +3"),
    ]
    p = live.progress(RUN, tis, PLANNED, now=T0 + dt.timedelta(seconds=9), window_h=24)
    assert [(t["task_id"], t["label"]) for t in p["tasks"]] == [("validate", "s0"), ("validate", "s2 +3")]
    html = page.live_section("pg_migration", p)
    assert 'title="s0: success, s2 +3: running">validate 1/2</span>' in html
