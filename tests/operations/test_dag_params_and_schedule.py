"""The trigger form rejects bad input, and the rehearsal DAG runs Saturdays 01:00 in its time zone.

Both read the DAGs the way Airflow does (``DagBag`` over ``dags/``, in a subprocess with nothing
patched and no database), then validate params with Airflow's own ``ParamsDict.validate()`` (what
a trigger does with its conf) and step the rehearsal's timetable with Airflow's scheduler logic.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

from tests.conftest import REPO

DAGS = REPO / "dags"

BAD = {
    "runner foo": {"runner": "foo"},
    "schemas not a list": {"schemas": "sales"},
    "schemas with an empty name": {"schemas": [""]},
    "exclude_schemas repeated": {"exclude_schemas": ["a", "a"]},
    "tables with an empty pattern": {"tables": [""]},
    "exclude_table_data not a list": {"exclude_table_data": "sales.audit*"},
    "pool_size 0": {"pool_size": 0},
    "pool_size as text": {"pool_size": "4"},
    "validation md5": {"validation": "md5"},
    "dry_run yes": {"dry_run": "yes"},
    "bandwidth 0": {"bandwidth_mb_s": 0},
    "split_mb 0": {"split_mb": 0},
    "source_conn_id empty": {"source_conn_id": ""},
    "ownership owner": {"ownership": "owner"},
}
GOOD = {
    "defaults": {},
    "a full form": {
        "schemas": ["sales", "Reporting Mart"],
        "exclude_schemas": [],
        "tables": ["sales.*", '"Reporting Mart".daily_?'],
        "exclude_tables": ["sales.tmp_*"],
        "exclude_table_data": ["sales.audit_log"],
        "runner": "ecs",
        "validation": "checksums",
        "pool_size": 8,
        "bandwidth_mb_s": 250.5,
        "split_mb": 512,
        "dry_run": True,
        "resume": False,
        "ownership": "exact",
    },
}

PROBE = textwrap.dedent("""
    import copy, json, os, sys
    from airflow.dag_processing.dagbag import DagBag
    from airflow.serialization.encoders import coerce_to_core_timetable
    from airflow.timetables.base import TimeRestriction
    import pendulum

    cases = json.loads(sys.argv[2])
    variants = json.loads(sys.argv[3])
    out = {}
    for variant, env in variants.items():   # the DAG files read the environment when parsed
        for k in ("PG_MIGRATION_REHEARSAL_TZ", "PG_MIGRATION_REHEARSAL_CRON"):
            os.environ.pop(k, None)
        os.environ.update(env)
        bag = DagBag(dag_folder=sys.argv[1])
        got = out[variant] = {"errors": {k: str(v) for k, v in bag.import_errors.items()}, "dags": {}}
        for dag_id in ("pg_migration", "pg_migration_rehearsal"):
            dag = bag.dags[dag_id]
            results = {}
            for name, conf in (cases.items() if variant == "paris" else ()):
                params = copy.deepcopy(dag.params)
                try:
                    for k, v in conf.items():
                        params[k] = v          # a Param validates on assignment too
                    params.validate()
                    results[name] = None
                except Exception as exc:
                    results[name] = f"{type(exc).__name__}: {exc}"
            form = {k: {"title": p.schema.get("title"), "description": p.description or p.schema.get("description"),
                        "type": p.schema.get("type")} for k, p in dag.params.items()}
            info = {"results": results, "form": form, "max_active_runs": dag.max_active_runs, "catchup": dag.catchup,
                    "target_conn_id": dag.params["target_conn_id"], "timetable": type(dag.timetable).__name__,
                    "paused_upon_creation": dag.is_paused_upon_creation}
            if dag_id == "pg_migration_rehearsal":
                tt = coerce_to_core_timetable(dag.timetable)
                start = pendulum.datetime(2026, 3, 16, tz="UTC")
                runs, last = [], None
                for _ in range(4):
                    nxt = tt.next_dagrun_info(last_automated_data_interval=last,
                                              restriction=TimeRestriction(earliest=start, latest=None, catchup=True))
                    runs.append(nxt.run_after.isoformat())
                    last = nxt.data_interval
                info["runs"] = runs
                info["expression"] = dag.timetable.expression
                info["timezone"] = str(getattr(dag.timetable.timezone, "name", dag.timetable.timezone))
            got["dags"][dag_id] = info
    print(json.dumps(out))
""")

VARIANTS = {
    "paris": {"PG_MIGRATION_REHEARSAL_TZ": "Europe/Paris"},
    "new_york": {"PG_MIGRATION_REHEARSAL_TZ": "America/New_York", "PG_MIGRATION_REHEARSAL_CRON": "30 2 * * 0"},
    "default": {},
}


def parse(cases: dict) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "PG_MIGRATION_REHEARSAL"))}
    env.update(
        {
            "PYTHONPATH": f"{REPO}:{DAGS}",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": "postgresql://nobody:x@127.0.0.1:1/unreachable",
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS),
            "AIRFLOW_HOME": "/tmp/pg-migration-dagbag-test",
        }
    )
    proc = subprocess.run(
        [sys.executable, "-c", PROBE, str(DAGS), json.dumps(cases), json.dumps(VARIANTS)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def parsed() -> dict:
    return parse({**BAD, **GOOD})


@pytest.fixture(scope="module")
def paris(parsed) -> dict:
    return parsed["paris"]


def test_params_reject_bad_input_and_accept_a_full_form(paris):
    assert paris["errors"] == {}
    for dag_id in ("pg_migration", "pg_migration_rehearsal"):
        results = paris["dags"][dag_id]["results"]
        accepted = [name for name in BAD if results[name] is None]
        assert accepted == [], f"{dag_id} accepted bad input: {accepted}"
        assert "ParamValidationError" in results["runner foo"] and "foo" in results["runner foo"]
        assert {name: results[name] for name in GOOD} == {name: None for name in GOOD}


def test_every_param_is_a_form_field_with_title_description_and_type(paris):
    form = paris["dags"]["pg_migration"]["form"]
    for name in (
        "schemas",
        "exclude_schemas",
        "tables",
        "exclude_tables",
        "exclude_table_data",
        "runner",
        "validation",
        "dry_run",
        "pool_size",
        "resume",
        "validate_only",
        "consistent",
        "ownership",
        "bandwidth_mb_s",
        "source_conn_id",
        "target_conn_id",
    ):
        assert form[name]["title"], name
        assert form[name]["type"], name
    for name in ("schemas", "tables", "runner", "validation", "dry_run", "pool_size", "resume", "bandwidth_mb_s"):
        assert form[name]["description"], name


def test_rehearsal_runs_saturdays_at_one_in_its_time_zone(paris):
    dag = paris["dags"]["pg_migration_rehearsal"]
    assert dag["timetable"] == "CronTriggerTimetable"
    assert (dag["expression"], dag["timezone"]) == ("0 1 * * 6", "Europe/Paris")
    assert dag["max_active_runs"] == 1 and dag["catchup"] is False
    assert dag["target_conn_id"] == "pg_target_rehearsal"
    assert dag["paused_upon_creation"] is True  # unpausing starts the rehearsals: a decision
    # Saturdays 01:00 Paris time, across the switch to summer time on 2026-03-29
    assert dag["runs"] == [
        "2026-03-21T00:00:00+00:00",  # CET (UTC+1)
        "2026-03-28T00:00:00+00:00",  # still CET: summer time starts on Sunday the 29th
        "2026-04-03T23:00:00+00:00",  # CEST (UTC+2): Saturday 4 April, 01:00 in Paris
        "2026-04-10T23:00:00+00:00",
    ]


def test_rehearsal_time_zone_and_cron_come_from_the_environment(parsed):
    assert all(v["errors"] == {} for v in parsed.values())
    dag = parsed["new_york"]["dags"]["pg_migration_rehearsal"]
    assert (dag["expression"], dag["timezone"]) == ("30 2 * * 0", "America/New_York")
    assert dag["runs"][0] == "2026-03-22T06:30:00+00:00"  # Sunday 02:30 EDT
    default = parsed["default"]["dags"]["pg_migration_rehearsal"]
    assert (default["expression"], default["timezone"]) == ("0 1 * * 6", "UTC")
    assert default["runs"][0] == "2026-03-21T01:00:00+00:00"
