"""The plugin loads in Airflow, and its API serves what a real DAG run wrote, to whom it may.

The demo warehouse is migrated with ``airflow dags test`` (``dag_runner``); then the real Airflow
API app (plugins included) is queried in a subprocess with FastAPI's TestClient
(``tests/plugins/probe_app.py``), with JWTs the auth manager itself issues.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
import sqlite3
import subprocess
from pathlib import Path
from urllib.parse import quote

import pytest

from include.pg_migration.plan import validation_groups
from tests.conftest import REPO, _airflow_env

PROBE = REPO / "tests" / "plugins" / "probe_app.py"
PY = REPO / ".venv" / "bin" / "python"


def probe(home: Path, requests: list[dict], env: dict[str, str] | None = None, direct: bool = False) -> list[dict]:
    """Run the probe in ``home``'s Airflow environment (``bin/airflow --with-env``, or ``direct``ly)."""
    full_env = _airflow_env(home, env or {})
    if direct:  # a copied home: same variables as bin/airflow, without its first-use set-up
        full_env.update(
            {
                "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home}/airflow.db",
                "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
                "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO / "plugins"),
                "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
                "PYTHONPATH": str(REPO),
            }
        )
        cmd = [str(PY), str(PROBE)]
    else:
        cmd = [str(REPO / "bin" / "airflow"), "--with-env", str(PY), str(PROBE)]
    proc = subprocess.run(cmd, input=json.dumps(requests), env=full_env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_plugin_is_listed_without_import_errors(airflow_home):
    env = _airflow_env(airflow_home, {})
    listed = subprocess.run(
        [str(REPO / "bin" / "airflow"), "plugins", "-o", "json"], env=env, capture_output=True, text=True, timeout=300
    )
    assert listed.returncode == 0, listed.stderr[-3000:]
    plugins = {p["name"]: p for p in json.loads(listed.stdout[listed.stdout.index("[") :])}
    ui = plugins["pg_migration_ui"]
    assert ui["source"] == "$PLUGINS_FOLDER/pg_migration.py"
    assert [(a["url_prefix"], a["name"], a["app"]) for a in ui["fastapi_apps"]] == [
        ("/pg-migration", "pg-migration", "pg_migration_ui.LazyApp")
    ]
    assert [(v["name"], v["href"], v["url_route"]) for v in ui["external_views"]] == [
        ("Migrations", "/pg-migration/", "pg-migration")
    ]
    errors = subprocess.run(
        [
            str(REPO / "bin" / "airflow"),
            "--with-env",
            str(PY),
            "-c",
            "import json, sys; from airflow import plugins_manager as pm; p, e = pm._get_plugins(); "
            "print(json.dumps({'plugins': [x.name for x in p], 'errors': e, "
            "'api_imported': 'airflow.api_fastapi.core_api.security' in sys.modules}))",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert errors.returncode == 0, errors.stderr[-3000:]
    loaded = json.loads(errors.stdout.strip().splitlines()[-1])
    # Every process (each task's too) loads plugins: the app is built on its first request only.
    assert loaded == {"plugins": ["pg_migration_ui"], "errors": {}, "api_imported": False}


def _schema_expectations(report: dict) -> dict[str, dict]:
    return {
        s["schema"]: {
            "status": s["status"],
            "attempts": s["attempts"],
            "bytes": s["bytes"],
            "seconds": s["seconds"],
            "source_rows": sum(t["source_rows"] for t in s["tables"]) if s["tables"] else None,
            "target_rows": sum(t["target_rows"] for t in s["tables"]) if s["tables"] else None,
            "mismatches": len(s["mismatches"]) + len(s["structure_diffs"]),
        }
        for s in report["schemas"]
    }


def _set_in_progress(db: Path, run_id: str, now: dt.datetime) -> None:
    """Rewind a finished run in a copy of the metadata DB to "units being copied"."""
    fmt = "%Y-%m-%d %H:%M:%S.%f"
    at = {k: (now - dt.timedelta(seconds=s)).strftime(fmt) for k, s in (("start", 60), ("end", 30), ("run", 20))}
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE dag_run SET state='running', end_date=NULL WHERE run_id=?", (run_id,))
        later = ("large_objects", "release_snapshot", "post_data", "validate", "report", "cleanup", "verdict")
        conn.execute(
            f"UPDATE task_instance SET state=NULL, start_date=NULL, end_date=NULL WHERE run_id=? "
            f"AND task_id IN ({','.join('?' * len(later))})",
            (run_id, *later),
        )
        units = {
            0: ("success", at["start"], at["end"], 1),
            1: ("success", at["start"], at["end"], 1),
            2: ("success", at["start"], at["end"], 1),
            3: ("running", at["run"], None, 1),
            4: ("up_for_retry", at["start"], at["end"], 2),
            5: ("failed", at["start"], at["end"], 4),
            6: ("scheduled", None, None, 0),
        }
        conn.execute(
            "UPDATE task_instance SET state=NULL, start_date=NULL, end_date=NULL, try_number=0 "
            "WHERE run_id=? AND task_id='migrate_unit'",
            (run_id,),
        )
        for index, (state, start, end, tries) in units.items():
            conn.execute(
                "UPDATE task_instance SET state=?, start_date=?, end_date=?, try_number=? "
                "WHERE run_id=? AND task_id='migrate_unit' AND map_index=?",
                (state, start, end, tries, run_id, index),
            )


def test_api_serves_the_reports_and_task_instances_of_a_real_run(demo_pair, dag_runner, airflow_home, tmp_path):
    result = dag_runner("pg_migration", env=demo_pair.airflow_env())
    assert result.state == "success", result.output[-3000:]
    report = result.report()
    run_id, dag_id = report["run_id"], "pg_migration"
    one = f"/pg-migration/api/runs/{dag_id}/{quote(run_id, safe='')}"
    expected = _schema_expectations(report)
    labels = [u["label"] for u in report["plan"]["units"]]
    assert len(expected) >= 5 and len(labels) >= 7  # the demo warehouse

    got = probe(
        airflow_home,
        [
            {"path": "/pg-migration/api/runs"},
            {"path": "/pg-migration/api/runs", "as": "viewer"},
            {"path": "/pg-migration/api/runs", "as": "norole"},
            {"path": "/pg-migration/api/runs", "as": "none"},
            {"path": "/pg-migration/api/runs", "as": "bad"},
            {"path": one},
            {"path": one, "as": "norole"},
            {"path": one, "as": "none"},
            {"path": f"/pg-migration/api/runs/{dag_id}/no_such_run"},
            {"path": "/pg-migration/api/overview"},
            {"path": f"/pg-migration/api/live/{dag_id}?run_id={quote(run_id, safe='')}"},
            {"path": f"/pg-migration/api/live/{dag_id}", "as": "norole"},
            {"path": f"/pg-migration/api/trend?dag_id={dag_id}"},
            {"path": "/pg-migration/", "cookie": True},
            {"path": "/pg-migration/", "as": "none"},
            {"path": f"/pg-migration/run/{dag_id}/{quote(run_id, safe='')}", "cookie": True},
            {"path": f"/pg-migration/run/{dag_id}/{quote(run_id, safe='')}", "as": "norole", "cookie": True},
            {"path": "/pg-migration/api/openapi.json", "as": "none"},
        ],
    )
    (
        runs,
        runs_viewer,
        runs_norole,
        runs_none,
        runs_bad,
        detail,
        detail_norole,
        detail_none,
        missing,
        overview,
        live,
        live_norole,
        trend,
        page,
        page_none,
        run_page,
        run_page_norole,
        spec,
    ) = got

    # The stable addresses, described (the description itself is public, like Airflow's own).
    assert spec["status"] == 200 and {
        "/api/runs",
        "/api/runs/{dag_id}/{run_id}",
        "/api/live/{dag_id}",
        "/api/overview",
        "/api/trend",
    } <= set(spec["json"]["paths"])

    # Authentication and authorization: the auth manager's own checks, never open by default.
    assert (runs_none["status"], runs_none["json"]["detail"]) == (401, "Not authenticated")
    assert runs_bad["status"] == 403 and detail_none["status"] == 401
    assert detail_norole["status"] == 403 and live_norole["status"] == 403 and run_page_norole["status"] == 403
    assert runs_norole["status"] == 200 and runs_norole["json"]["runs"] == []  # lists only what one may read
    assert page_none["status"] == 303 and page_none["headers"]["location"].startswith("/auth/login?next=")

    # The list and the one run: report.runs() / report.read(), nothing recomputed.
    mine = [r for r in runs["json"]["runs"] if r["run_id"] == run_id]
    assert runs["status"] == 200 and len(mine) == 1
    assert mine[0] | {"href": None, "page": None} == {
        "dag_id": dag_id,
        "run_id": run_id,
        "verdict": "passed",
        "started_at": report["started_at"],
        "finished_at": report["finished_at"],
        "total_seconds": report["total_seconds"],
        "schemas": len(report["schemas"]),
        "href": None,
        "page": None,
    }
    assert mine[0]["href"] == one
    assert runs_viewer["json"]["runs"] == runs["json"]["runs"]
    assert detail["status"] == 200 and detail["json"] == report
    assert missing["status"] == 404

    # What the page shows: the latest run, per schema.
    latest = overview["json"]["run"]
    assert latest["run_id"] == run_id and latest["verdict"] == "passed"
    got_rows = {r["schema"]: {k: r[k] for k in next(iter(expected.values()))} for r in latest["schemas"]}
    assert got_rows == expected

    # Live view from Airflow's task instances of that run.
    lv = live["json"]
    assert live["status"] == 200 and lv["run_id"] == run_id and lv["state"] == "success" and not lv["in_progress"]
    assert [u["label"] for u in lv["units"]] == labels
    planned_bytes = sum(u["bytes"] for u in report["plan"]["units"])
    assert lv["counts"]["done"] == len(labels) and lv["bytes"]["done"] == lv["bytes"]["total"] == planned_bytes
    assert lv["projected_method"] == "finished" and lv["pool"]["name"] == "pg_migration"
    # validation: one task instance per validation group (the plan's), shown with the group's label
    validations = [t for t in lv["tasks"] if t["task_id"] == "validate"]
    groups = validation_groups(report["plan"]["schema_sizes"], report["params"]["pool_size"])
    assert sorted(s for g in groups for s in g["schemas"]) == sorted(expected)
    assert len(validations) == len(groups) < len(expected)  # the demo has more schemas than groups
    assert sorted(t["label"] for t in validations) == sorted(g["label"] for g in groups)
    assert {t["state"] for t in validations} == {"success"}

    # Trend from history.jsonl: this run's per-schema seconds.
    row = next(r for i, r in enumerate(trend["json"]["runs"]) if r["run_id"] == run_id)
    i = trend["json"]["runs"].index(row)
    assert {s: v[i] for s, v in trend["json"]["schemas"].items() if v[i] is not None} == {
        s["schema"]: s["seconds"] for s in report["schemas"] if s["seconds"] is not None
    }
    assert row["total_seconds"] == report["total_seconds"]

    # The page and the run page show every schema with its status.
    for html in (page["text"], run_page["text"]):
        for schema, exp in expected.items():
            attr = schema.replace("&", "&amp;").replace('"', "&quot;")
            assert f'data-schema="{attr}" data-status="{exp["status"]}"' in html
    assert f'data-section="Latest run" data-run-id="{run_id}"' in page["text"]
    assert 'data-chart="schema-lines"' in page["text"] and 'data-chart="window-bars"' in page["text"]

    # The same run seen while its units are being copied (a copy of the metadata DB, rewound).
    copy = tmp_path / "home"
    copy.mkdir()
    shutil.copy(airflow_home / "airflow.db", copy / "airflow.db")
    now = dt.datetime.now(dt.UTC)
    _set_in_progress(copy / "airflow.db", run_id, now)
    inflight, inflight_page = probe(
        copy,
        [
            {"path": f"/pg-migration/api/live/{dag_id}"},
            {"path": "/pg-migration/", "cookie": True},
        ],
        env={"PG_MIGRATION_REPORTS": str(airflow_home / "reports"), "PG_MIGRATION_DOWNTIME_WINDOW_H": "8"},
        direct=True,
    )
    p = inflight["json"]
    assert p["run_id"] == run_id and p["in_progress"] is True
    assert p["counts"] == {
        "running": 1,
        "done": 3,
        "failed": 1,
        "retrying": 1,
        "waiting": 1,
        "pending": len(labels) - 7,
        "skipped": 0,
    }
    assert [u["category"] for u in p["units"][:7]] == ["done"] * 3 + ["running", "retrying", "failed", "waiting"]
    assert p["pool"] == {"name": "pg_migration", "slots": 4, "running": 1, "queued": 0, "waiting": 1}
    done = sum(u["bytes"] for u in report["plan"]["units"][:3])
    total = sum(u["bytes"] for u in report["plan"]["units"])
    assert p["bytes"]["done"] == done and p["bytes"]["remaining"] == total - done
    # Throughput so far: bytes of the 3 finished units over the time since the first unit started
    # (60 s before the DB was rewound, plus however long the probe took to start).
    assert p["projected_method"] == "throughput so far"
    probe_now = dt.datetime.fromisoformat(p["now"])
    elapsed = (probe_now - (now - dt.timedelta(seconds=60))).total_seconds()
    ahead = (dt.datetime.fromisoformat(p["projected_finish"]) - probe_now).total_seconds()
    assert ahead == pytest.approx((total - done) * elapsed / done, abs=3)
    assert p["downtime_window_h"] == 8.0
    html = inflight_page["text"]
    assert '<meta http-equiv="refresh"' in html and "RUNNING" in html and 'data-category="running"' in html
