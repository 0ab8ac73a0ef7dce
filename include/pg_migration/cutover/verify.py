"""Before a replicate run subscribes: the copy must be verified (what the cut-over later relies on).

:func:`copy_verified` lists why the run must not subscribe: a unit or phase not done, a schema not
validated or not equal, a database-level difference. Used by the ``subscribe`` step (the DAG's and
the local harness's).
"""

from __future__ import annotations

from include.pg_migration import state
from include.pg_migration.conn import Endpoint
from include.pg_migration.phases.validate import validate_database


def copy_verified(target: Endpoint, source: Endpoint, run_id: str) -> list[str]:
    """Why the run must not subscribe (empty: every unit done, every schema validated equal)."""
    problems: list[str] = []
    with target.connect("pg_migration subscribe", autocommit=True) as tgt:
        run = state.get_run(tgt, run_id)
        if run is None:
            return [f"run {run_id!r} is not registered"]
        units = state.units_of_run(tgt, run_id)
        phases = state.phases_of_run(tgt, run_id)
        validations = state.validations_of_run(tgt, run_id)
    problems += [f"unit {u['unit_id']} is {u['status']}" for u in units if u["status"] != "done"]
    for phase in ("pre-data", "post-data"):
        if (phases.get(phase) or {}).get("status") != "done":
            problems.append(f"phase {phase} is {(phases.get(phase) or {}).get('status', 'not run')}")
    for schema in run["plan"].get("schemas", []):
        result = validations.get(schema)
        if result is None:
            problems.append(f"schema {schema} was not validated")
        elif result.get("mismatches"):
            problems.append(f"schema {schema}: " + "; ".join(result["mismatches"][:5]))
    if not problems:
        problems += validate_database(source, target)["mismatches"]
    return problems
