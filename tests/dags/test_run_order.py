"""The run order is told once (``include.pg_migration.run_order``): the DAGs follow it, the docs map it.

* each DAG's dependencies follow its step list (the list itself, not a copy): every step runs after
  the step before it, a step ``beside`` another runs after that one's predecessor and before its
  successor, and no two steps of the main line run side by side;
* every step's function exists in the library, and its phase is a worker phase;
* ``docs/architecture.md``'s task -> phase -> module -> function table lists exactly these steps.
"""

from __future__ import annotations

import importlib
import re

import pytest

from include.pg_migration import run_order
from tests.conftest import REPO
from tests.dags.test_dag_integrity import parse_dags


def _downstream_closure(tasks: dict, task_id: str) -> set[str]:
    seen, todo = set(), [task_id]
    while todo:
        for d in tasks[todo.pop()]["downstream"]:
            if d not in seen:
                seen.add(d)
                todo.append(d)
    return seen


def _main_line(steps: tuple[run_order.Step, ...]) -> list[run_order.Step]:
    return [s for s in steps if not s.beside]


@pytest.mark.parametrize("dag_id", sorted(run_order.STEPS))
def test_the_dag_follows_its_step_list(dag_id):
    dags = parse_dags()["dags"]
    assert dag_id in dags, f"{dag_id} is not built by dags/"
    tasks = dags[dag_id]["tasks"]
    steps = run_order.STEPS[dag_id]
    missing = [s.task_id for s in steps if s.task_id not in tasks]
    assert not missing, f"{dag_id}: steps without a task: {missing}"
    after = {t: _downstream_closure(tasks, t) for t in tasks}
    line = _main_line(steps)
    for a, b in zip(line, line[1:], strict=False):
        assert b.task_id in after[a.task_id], f"{dag_id}: {b.task_id} does not run after {a.task_id}"
    for s in steps:
        if not s.beside:
            continue
        i = [x.task_id for x in line].index(s.beside)
        if i > 0:
            assert s.task_id in after[line[i - 1].task_id], f"{dag_id}: {s.task_id} does not run after {line[i - 1]}"
        if i + 1 < len(line):
            nxt = line[i + 1].task_id
            assert nxt in after[s.task_id], f"{dag_id}: {nxt} does not run after {s.task_id}"
        assert s.task_id not in after[s.beside] and s.beside not in after[s.task_id], (
            f"{dag_id}: {s.task_id} is meant to run beside {s.beside}, not after or before it"
        )


@pytest.mark.parametrize("step", [s for steps in run_order.STEPS.values() for s in steps], ids=lambda s: s.task_id)
def test_every_step_names_a_library_function(step):
    module = importlib.import_module(step.module)
    assert callable(getattr(module, step.callable, None)), f"{step.function} does not exist"
    assert step.phase is None or step.phase in run_order.PHASES
    assert set(step.modes) <= set(run_order.MODES)


TABLE_ROW = re.compile(
    r"^\|\s*`(?P<dag>[a-z_]+)`\s*\|\s*`(?P<task>[a-z_]+)`\s*\|\s*(?P<phase>[^|]*)\|\s*(?P<fn>[^|]*)\|"
)


def _doc_rows() -> list[tuple[str, str, str | None, str]]:
    rows = []
    for line in (REPO / "docs" / "architecture.md").read_text().splitlines():
        m = TABLE_ROW.match(line)
        if m:
            phase = m["phase"].strip().strip("`") or None
            phase = None if phase in ("-", "—") else phase
            rows.append((m["dag"], m["task"], phase, m["fn"].strip().strip("`")))
    return rows


def test_docs_map_every_task_to_its_function():
    expected = [
        (dag_id, s.task_id, s.phase, s.function)
        for dag_id in (run_order.RUN_DAG_ID, run_order.CUTOVER_DAG_ID, run_order.ABORT_DAG_ID)
        for s in run_order.STEPS[dag_id]
    ]
    assert _doc_rows() == expected, "docs/architecture.md's task table and run_order.py differ"
