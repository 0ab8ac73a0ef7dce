"""Every file in dags/ imports cleanly, with nothing patched, and touches no database at parse time."""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

from tests.conftest import REPO

DAGS = REPO / "dags"

PARSE = textwrap.dedent("""
    import json, socket, sys
    # Any network access while parsing (metadata DB, PostgreSQL, AWS) is a bug: make it loud.
    def refuse(*a, **k):
        raise RuntimeError(f"network access at parse time: {a!r}")
    socket.socket.connect = refuse
    socket.create_connection = refuse
    from airflow.dag_processing.dagbag import DagBag
    bag = DagBag(dag_folder=sys.argv[1])
    out = {"errors": {k: str(v) for k, v in bag.import_errors.items()}, "dags": {}}
    for dag_id, dag in bag.dags.items():
        tasks = {}
        for t in dag.tasks:
            rule = getattr(t.trigger_rule, "value", str(t.trigger_rule))
            tasks[t.task_id] = {"pool": t.pool, "retries": t.retries, "trigger_rule": rule,
                                "mapped": bool(getattr(t, "is_mapped", False)) or "Mapped" in type(t).__name__,
                                "downstream": sorted(t.downstream_task_ids)}
        out["dags"][dag_id] = {"tasks": tasks, "params": sorted(dag.params.keys()),
                               "max_active_runs": dag.max_active_runs, "doc_md": bool(dag.doc_md)}
    print(json.dumps(out))
""")


def dagbag_env(dags: Path, pythonpath: str) -> dict[str, str]:
    """The environment of a parse: no metadata DB or PostgreSQL reachable, no example DAGs, a scratch home."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    env.update(
        {
            "PYTHONPATH": pythonpath,
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": "postgresql://nobody:x@127.0.0.1:1/unreachable",
            "AIRFLOW_CONN_PG_SOURCE": "postgresql://nobody:x@127.0.0.1:1/unreachable",
            "AIRFLOW_CONN_PG_TARGET": "postgresql://nobody:x@127.0.0.1:1/unreachable",
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
            "AIRFLOW_HOME": "/tmp/pg-migration-dagbag-test",
        }
    )
    return env


@functools.cache
def parse_dags() -> dict:
    # As Airflow itself does: the dags folder (and the repo root, for include/) on sys.path.
    env = dagbag_env(DAGS, f"{REPO}:{DAGS}")
    proc = subprocess.run(
        [sys.executable, "-c", PARSE, str(DAGS)], env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_cutover_validates_in_groups():
    tasks = parse_dags()["dags"]["pg_migration_cutover"]["tasks"]
    assert "schemas_to_validate" not in tasks
    assert tasks["validate"]["mapped"] and tasks["validate"]["pool"] == "pg_migration"
    assert "validate" in tasks["begin"]["downstream"] and tasks["matviews"]["downstream"] == ["validate"]


def test_dags_import_without_errors_or_network():
    result = parse_dags()
    assert result["errors"] == {}
    assert "pg_migration" in result["dags"]


def test_pg_migration_shape():
    dag = parse_dags()["dags"]["pg_migration"]
    tasks = dag["tasks"]
    assert dag["max_active_runs"] == 1 and dag["doc_md"]
    unit = tasks["migrate_unit"]
    assert unit["mapped"] and unit["pool"] == "pg_migration" and unit["retries"] >= 2
    assert tasks["validate"]["mapped"] and tasks["validate"]["pool"] == "pg_migration"
    assert tasks["validate"]["trigger_rule"] == "all_done"  # validate-only runs validate too
    # No hop task between the plan and what maps over it: the plan's return value is the validation
    # groups, pre_data's the units; one branch decides the copy (runner's path, or none).
    assert not {"units_to_copy", "schemas_to_validate", "copy_wanted"} & set(tasks)
    upstream = {t: {u for u, info in tasks.items() if t in info["downstream"]} for t in tasks}
    assert upstream["migrate_unit"] == {"pre_data"} and "plan" in upstream["validate"]
    # the branch sits beside the source checks (off the critical path); both paths wait for the plan
    assert upstream["choose_runner"] == {"discover"}
    assert set(tasks["choose_runner"]["downstream"]) == {"snapshot", "ecs.settings"}
    assert upstream["snapshot"] == upstream["ecs.settings"] == {"plan", "choose_runner"}
    # the report beside the cleanup; the verdict waits for both
    assert upstream["verdict"] == {"report", "cleanup"}
    # The story ends in one verdict, downstream of everything, that runs whatever happened.
    leaves = [t for t, info in tasks.items() if not info["downstream"]]
    assert leaves == ["verdict"]
    assert tasks["verdict"]["trigger_rule"] == "all_done"
    for p in (
        "schemas",
        "exclude_schemas",
        "tables",
        "exclude_tables",
        "exclude_table_data",
        "runner",
        "validation",
        "validate_only",
        "dry_run",
        "consistent",
        "resume",
        "source_conn_id",
        "target_conn_id",
    ):
        assert p in dag["params"]
