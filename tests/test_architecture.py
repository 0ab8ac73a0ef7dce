"""The house rules, checked: one import direction, small modules and functions.

* ``lint-imports`` keeps the contracts in ``pyproject.toml`` (the library imports no Airflow, AWS SDK,
  FastAPI or glue; its layers; independent phases; no cycle among siblings);
* every library module sits in a layer of the layers contract;
* a forbidden import added to a copy of the library breaks the contracts (the check can fail);
* no library module over 600 lines but pre-flight's, no function over 80 lines but the ones listed.
"""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

from tests.conftest import REPO

LIBRARY = REPO / "include" / "pg_migration"
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")

#: Modules allowed over 600 lines (path relative to the repo).
LONG_MODULES = {"include/pg_migration/preflight.py"}
#: Functions allowed over 80 lines: Param dicts (the trigger forms) and the DAG factory.
LONG_FUNCTIONS = {
    "dags/pg_migration_dag.py:build_migration_dag",
    "dags/pg_migration_dag.py:migration",
    "dags/pg_migration_support/params.py:migration_params",
    "dags/pg_migration_support/params.py:replication_params",
    "dags/pg_migration_support/params.py:cutover_params",
    "dags/pg_migration_support/params.py:ecs_params",
}
CODE = ("include", "dags", "plugins")


def _lint_imports(cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(str(cwd / p) for p in ("", "dags", "plugins"))}
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )


def test_import_contracts_are_kept():
    proc = _lint_imports(REPO)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert "0 broken" in proc.stdout


def _contracts() -> list[dict]:
    return tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]


def test_every_library_module_is_in_a_layer():
    (layers,) = [c for c in _contracts() if c["type"] == "layers"]
    named = {m.strip() for layer in layers["layers"] for m in layer.replace(":", "|").split("|")}
    modules = {p.stem for p in LIBRARY.glob("*.py") if p.name != "__init__.py"}
    modules |= {p.parent.name for p in LIBRARY.glob("*/__init__.py")}
    assert not modules - named, f"library modules in no layer of pyproject.toml: {sorted(modules - named)}"
    assert not named - modules, f"layers naming no module: {sorted(named - modules)}"


#: Modules placed on purpose (issue 16): the layer each sits in, and what may import a phase's helper.
PLACED = {"selection": "state : catalog : sessions : pgtools : roles : selection"}
PHASE_HELPERS = {"include/pg_migration/phases/data_small.py": "include.pg_migration.phases.data"}


def test_placed_modules_sit_in_their_layer_and_helpers_serve_one_phase():
    (layers,) = [c for c in _contracts() if c["type"] == "layers"]
    for module, layer in PLACED.items():
        assert layer in layers["layers"], f"{module} is not in the layer {layer!r}"
    for helper, user in PHASE_HELPERS.items():
        name = helper.removesuffix(".py").replace("/", ".")
        importers = {
            rel.removesuffix(".py").replace("/", ".")
            for rel, path in _sources()
            if rel.startswith("include/") and rel != helper and name in path.read_text()
        }
        assert importers == {user}, f"{name} is imported by {sorted(importers)}, not by {user} alone"


def test_a_forbidden_import_breaks_the_contracts(tmp_path):
    for part in ("include", "dags", "plugins"):
        shutil.copytree(REPO / part, tmp_path / part, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "pyproject.toml", tmp_path / "pyproject.toml")
    plan = tmp_path / "include" / "pg_migration" / "plan.py"
    plan.write_text(plan.read_text() + "\nimport airflow.sdk  # noqa\n")
    proc = _lint_imports(tmp_path)
    assert proc.returncode != 0, proc.stdout[-3000:]
    assert "include.pg_migration.plan -> airflow" in proc.stdout, proc.stdout[-3000:]


def _sources():
    for root in CODE:
        for path in sorted((REPO / root).rglob("*.py")):
            yield path.relative_to(REPO).as_posix(), path


def test_no_long_module_in_the_library():
    long = {
        rel: n
        for rel, path in _sources()
        if rel.startswith("include/pg_migration/")
        if (n := len(path.read_text().splitlines())) > 600
    }
    assert set(long) <= LONG_MODULES, f"library modules over 600 lines: {long}"


def test_no_long_function():
    long = {}
    for rel, path in _sources():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                if (n := node.end_lineno - node.lineno + 1) > 80:
                    long[f"{rel}:{node.name}"] = n
    extra = {k: v for k, v in long.items() if k not in LONG_FUNCTIONS}
    assert not extra, f"functions over 80 lines: {extra}"
