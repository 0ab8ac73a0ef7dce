"""The DAG files are no package: they import only the glue, ``airflow.sdk``, ``pendulum`` and the standard library.

Everything else -- the library (``include.pg_migration``), providers' operators, psycopg -- comes
through the glue (``pg_migration_support``), so that what a DAG file's parse costs and what it may
touch is decided in one place. Checked on the source (ast), imports inside functions included.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

DAG_FILES = sorted((REPO / "dags").glob("*.py"))
ALLOWED_ROOTS = {"pg_migration_support", "pendulum", "__future__"}


def allowed(module: str) -> bool:
    root = module.split(".")[0]
    return (
        root in ALLOWED_ROOTS
        or module == "airflow.sdk"
        or module.startswith("airflow.sdk.")
        or root in sys.stdlib_module_names
    )


def forbidden_imports(source: str, filename: str = "<dag file>") -> list[str]:
    """Every import of ``source`` (at any depth) that a DAG file may not make, as ``line: module``."""
    out = []
    for node in ast.walk(ast.parse(source, filename)):
        if isinstance(node, ast.Import):
            out += [f"{node.lineno}: {a.name}" for a in node.names if not allowed(a.name)]
        elif isinstance(node, ast.ImportFrom):
            module = "." * node.level + (node.module or "")
            if node.level or not allowed(module):
                out.append(f"{node.lineno}: {module}")
        elif isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", None)) in (
            "__import__",
            "import_module",
        ):
            out.append(f"{node.lineno}: {ast.unparse(node)}")  # a dynamic import would hide what is imported
    return sorted(out, key=lambda found: int(found.split(":")[0]))


def test_there_are_dag_files():
    assert {p.name for p in DAG_FILES} >= {"pg_migration_dag.py", "pg_migration_cutover_dag.py"}


@pytest.mark.parametrize("path", DAG_FILES, ids=lambda p: p.name)
def test_a_dag_file_imports_only_the_glue_airflow_sdk_pendulum_and_the_standard_library(path: Path):
    assert forbidden_imports(path.read_text(), str(path)) == []


def test_the_check_sees_any_other_import_also_inside_a_function():
    source = (
        "import os, pendulum\n"
        "from airflow.sdk import dag\n"
        "from pg_migration_support import tasks\n"
        "from airflow.providers.amazon.aws.operators.ecs import EcsRunTaskOperator\n"
        "def body():\n"
        "    from include.pg_migration.errors import MigrationError\n"
        "    import psycopg\n"
        "    from . import sibling\n"
        "    importlib.import_module('include.pg_migration')\n"
    )
    assert [f.split(":")[0] for f in forbidden_imports(source)] == ["4", "6", "7", "8", "9"]
