"""A run in progress, read from Airflow's own task instances (never from a copy of them).

:func:`progress` is pure (task instances and the plan in, progress out) so it is tested without a
database; :func:`read` queries the metadata DB (imports Airflow's models inside, on the API server only)
and calls it.

The units are the ``migrate_unit`` task's map indexes (``ecs.migrate_unit`` with runner ecs; the
branch not taken is skipped): map index ``i`` copies unit ``i`` of the ``plan`` task's XCom
``planned`` (``{"units": [...]}``, each with label, schema and bytes). The projected finish
of the data copy is ``now + remaining plan bytes / throughput so far`` (bytes of finished units per
wall-clock second since the first unit started); before any unit finished it is the plan's own
predicted makespan counted from the first unit's start.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

UNIT_TASK = "migrate_unit"
PLAN_TASK = "plan"
#: The ``plan`` task's XCom holding the plan (its return value is the validation groups); runs of
#: earlier versions returned the plan itself.
PLAN_KEYS = ("planned", "return_value")

# Task instance state -> what the page calls it.
CATEGORY = {
    "success": "done",
    "running": "running",
    "deferred": "running",
    "failed": "failed",
    "upstream_failed": "failed",
    "up_for_retry": "retrying",
    "up_for_reschedule": "retrying",
    "restarting": "retrying",
    "scheduled": "waiting",  # ready: waits for a pool slot (or the executor)
    "queued": "waiting",  # handed to the executor, not started yet
    "skipped": "skipped",
    "removed": "skipped",
}
CATEGORIES = ("running", "done", "failed", "retrying", "waiting", "pending", "skipped")
ACTIVE_RUN_STATES = ("running", "queued")


def category(state: str | None) -> str:
    return CATEGORY.get(str(state or "").lower(), "pending")


def is_unit_task(task_id: str) -> bool:
    """``migrate_unit`` (runner local) or ``<group>.migrate_unit`` (runner ecs: ``ecs.migrate_unit``)."""
    return task_id == UNIT_TASK or task_id.endswith(f".{UNIT_TASK}")


def _weight(ti: dict[str, Any]) -> int:
    """Which of a unit's task instances (one per runner branch) tells its state: not the skipped one."""
    cat = category(ti.get("state"))
    return 0 if cat == "skipped" else (1 if cat == "pending" else 2)


def _aware(value: Any) -> dt.datetime | None:
    if value is None:
        return None
    if isinstance(value, str):
        try:
            value = dt.datetime.fromisoformat(value)
        except ValueError:
            return None
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


def _iso(value: dt.datetime | None) -> str | None:
    return value.astimezone(dt.UTC).isoformat(timespec="seconds") if value else None


def progress(
    run: dict[str, Any],
    tis: list[dict[str, Any]],
    planned: dict[str, Any] | None,
    now: dt.datetime | None = None,
    pool: dict[str, Any] | None = None,
    window_h: float | None = None,
) -> dict[str, Any]:
    """Progress of one DAG run.

    ``run``: dag_id, run_id, state, start_date, end_date. ``tis``: task instances as dicts (task_id,
    map_index, state, rendered_map_index, start_date, end_date, try_number, pool). ``planned``: the
    ``plan`` task's XCom (``None`` before it ran).
    """
    now = _aware(now) or dt.datetime.now(dt.UTC)
    units = _units(tis, list((planned or {}).get("units") or []), now)
    counts = {c: 0 for c in CATEGORIES}
    for u in units:
        counts[u["category"]] += 1

    total = sum(u["bytes"] for u in units)
    done = sum(u["bytes"] for u in units if u["category"] in ("done", "skipped"))
    running_bytes = sum(u["bytes"] for u in units if u["category"] == "running")
    starts = [_aware(u["start_date"]) for u in units if u["start_date"]]
    data_start = min(starts) if starts else None
    in_progress = str(run.get("state") or "").lower() in ACTIVE_RUN_STATES
    throughput, projected, method = _projection(units, planned, now, data_start, in_progress)

    run_start = _aware(run.get("start_date"))
    projected_total = (projected - run_start).total_seconds() if projected and run_start else None
    other, hidden = _other_tasks(tis, units, now)

    return {
        "dag_id": run.get("dag_id"),
        "run_id": run.get("run_id"),
        "state": run.get("state"),
        "in_progress": in_progress,
        "start_date": _iso(run_start),
        "end_date": _iso(_aware(run.get("end_date"))),
        "now": _iso(now),
        "counts": counts,
        "units": units,
        "tasks": other,
        "tasks_skipped": hidden,
        "bytes": {"total": total, "done": done, "running": running_bytes, "remaining": total - done},
        "throughput_bytes_s": throughput,
        "data_started_at": _iso(data_start),
        "projected_finish": _iso(projected),
        "projected_method": method,
        "projected_total_seconds": projected_total,
        "downtime_window_h": window_h,
        "within_window": (projected_total <= window_h * 3600) if projected_total is not None and window_h else None,
        "pool": pool,
        "plan_available": planned is not None,
    }


def _units(tis: list[dict[str, Any]], plan_units: list[dict[str, Any]], now: dt.datetime) -> list[dict[str, Any]]:
    """One row per data unit: the plan's unit ``i`` with the state of map index ``i`` (either runner's)."""
    unit_tis: dict[int, dict[str, Any]] = {}
    for ti in tis:
        if is_unit_task(ti["task_id"]) and ti["map_index"] >= 0:
            seen = unit_tis.get(ti["map_index"])
            if seen is None or _weight(ti) > _weight(seen):
                unit_tis[ti["map_index"]] = ti
    units = []
    for index in sorted(set(range(len(plan_units))) | set(unit_tis)):
        unit = plan_units[index] if index < len(plan_units) else {}
        ti = unit_tis.get(index) or {}
        start, end = _aware(ti.get("start_date")), _aware(ti.get("end_date"))
        state = ti.get("state")
        cat = category(state)
        seconds = None
        if start:
            seconds = ((end if end and cat != "running" else now) - start).total_seconds()
        units.append(
            {
                "map_index": index,
                "label": unit.get("label") or ti.get("rendered_map_index") or f"unit {index}",
                "schema": unit.get("schema"),
                "bytes": int(unit.get("bytes") or 0),
                "state": state,
                "category": cat,
                "try_number": ti.get("try_number") or 0,
                "start_date": _iso(start),
                "end_date": _iso(end) if cat != "running" else None,
                "seconds": seconds,
            }
        )
    return units


def _projection(
    units: list[dict[str, Any]],
    planned: dict[str, Any] | None,
    now: dt.datetime,
    data_start: dt.datetime | None,
    in_progress: bool,
) -> tuple[float | None, dt.datetime | None, str | None]:
    """Throughput so far (bytes/s), the projected finish of the data copy and how it was projected."""
    total = sum(u["bytes"] for u in units)
    done = sum(u["bytes"] for u in units if u["category"] in ("done", "skipped"))
    ends = [_aware(u["end_date"]) for u in units if u["end_date"]]
    all_units_finished = bool(units) and all(u["category"] in ("done", "skipped", "failed") for u in units)

    throughput = None
    projected = None
    method = None
    if data_start and done > 0:
        elapsed = (now - data_start).total_seconds()
        if all_units_finished and ends:
            elapsed = (max(ends) - data_start).total_seconds()
        if elapsed > 0:
            throughput = done / elapsed
    if all_units_finished and ends:
        projected, method = max(ends), "finished"
    elif in_progress and units:
        if throughput:
            projected = now + dt.timedelta(seconds=(total - done) / throughput)
            method = "throughput so far"
        else:
            makespan = (planned or {}).get("plan", {}).get("predicted_makespan_s")
            if isinstance(makespan, int | float):
                projected = (data_start or now) + dt.timedelta(seconds=makespan)
                method = "plan (no unit finished yet)"
    return throughput, projected, method


def _other_tasks(
    tis: list[dict[str, Any]], units: list[dict[str, Any]], now: dt.datetime
) -> tuple[list[dict[str, Any]], int]:
    """The run's tasks other than the data units, in start order, and how many skipped ones were left out."""
    other = []
    hidden = 0
    for ti in sorted(tis, key=lambda t: (_aware(t.get("start_date")) or now, t["task_id"], t["map_index"])):
        if is_unit_task(ti["task_id"]) and (ti["map_index"] >= 0 or units):
            continue
        if category(ti.get("state")) == "skipped":
            hidden += 1  # the branch not taken (runner local vs ecs)
            continue
        other.append(
            {
                "task_id": ti["task_id"],
                "map_index": ti["map_index"],
                "label": ti.get("rendered_map_index"),
                "state": ti.get("state"),
                "category": category(ti.get("state")),
                "try_number": ti.get("try_number") or 0,
            }
        )
    return other, hidden


# -- the metadata DB ---------------------------------------------------------------------------------


def read(session, dag_id: str, run_id: str | None = None, window_h: float | None = None) -> dict[str, Any] | None:
    """Progress of ``run_id`` (default: the DAG's run in progress, else its newest run); None if no run."""
    from airflow.models.dagrun import DagRun  # noqa: PLC0415 - the ORM: API server only (progress() needs none)
    from airflow.models.taskinstance import TaskInstance  # noqa: PLC0415 - the ORM: API server only (progress() needs none)
    from sqlalchemy import select  # noqa: PLC0415 - with the ORM models above

    query = select(DagRun).where(DagRun.dag_id == dag_id)
    if run_id is not None:
        dag_run = session.scalars(query.where(DagRun.run_id == run_id)).first()
    else:
        dag_run = (
            session.scalars(query.where(DagRun.state.in_(ACTIVE_RUN_STATES)).order_by(DagRun.run_after.desc())).first()
            or session.scalars(query.order_by(DagRun.run_after.desc())).first()
        )
    if dag_run is None:
        return None
    tis = [
        {
            "task_id": ti.task_id,
            "map_index": ti.map_index,
            "state": _value(ti.state),
            "rendered_map_index": ti.rendered_map_index,
            "start_date": ti.start_date,
            "end_date": ti.end_date,
            "try_number": ti.try_number,
            "pool": ti.pool,
        }
        for ti in session.scalars(
            select(TaskInstance).where(TaskInstance.dag_id == dag_id, TaskInstance.run_id == dag_run.run_id)
        )
    ]
    run = {
        "dag_id": dag_id,
        "run_id": dag_run.run_id,
        "state": _value(dag_run.state),
        "start_date": dag_run.start_date,
        "end_date": dag_run.end_date,
    }
    pools = {ti["pool"] for ti in tis if is_unit_task(ti["task_id"]) and category(ti["state"]) != "skipped"}
    return progress(
        run,
        tis,
        _plan_xcom(session, dag_id, dag_run.run_id),
        pool=_pool(session, next(iter(pools))) if len(pools) == 1 else None,
        window_h=window_h,
    )


def _value(state: Any) -> str | None:
    """A state enum (or plain string) as its string value."""
    if state is None:
        return None
    return str(getattr(state, "value", state))


def _plan_xcom(session, dag_id: str, run_id: str) -> dict[str, Any] | None:
    from airflow.models.xcom import XComModel  # noqa: PLC0415 - the ORM: API server only (progress() needs none)
    from sqlalchemy import select  # noqa: PLC0415 - with the ORM models above

    rows = {
        row.key: row
        for row in session.scalars(
            select(XComModel).where(
                XComModel.dag_id == dag_id,
                XComModel.run_id == run_id,
                XComModel.task_id == PLAN_TASK,
                XComModel.map_index == -1,
                XComModel.key.in_(PLAN_KEYS),
            )
        )
    }
    for key in PLAN_KEYS:
        if key in rows:
            value = XComModel.deserialize_value(rows[key])
            if isinstance(value, dict):
                return value
    return None


def _pool(session, name: str) -> dict[str, Any] | None:
    """The pool's slots and who holds them (all DAGs: the pool is shared by runs and rehearsals)."""
    from airflow.models.pool import Pool  # noqa: PLC0415 - the ORM: API server only (progress() needs none)
    from airflow.models.taskinstance import TaskInstance  # noqa: PLC0415 - the ORM: API server only (progress() needs none)
    from sqlalchemy import func, select  # noqa: PLC0415 - with the ORM models above

    pool = session.scalars(select(Pool).where(Pool.pool == name)).first()
    if pool is None:
        return None
    by_state = {
        _value(state): n
        for state, n in session.execute(
            select(TaskInstance.state, func.count())
            .where(TaskInstance.pool == name, TaskInstance.state.in_(("running", "queued", "scheduled", "deferred")))
            .group_by(TaskInstance.state)
        ).all()
    }
    return {
        "name": name,
        "slots": pool.slots,
        "running": int(by_state.get("running", 0)) + int(by_state.get("deferred", 0)),
        "queued": int(by_state.get("queued", 0)),
        "waiting": int(by_state.get("scheduled", 0)),
    }
