"""The DAGs parse laid out the Amazon MWAA way: ``include/`` copied INTO the DAGs folder.

MWAA ships only the DAGs folder (plus ``plugins.zip`` and ``requirements.txt``) and puts that folder on
``sys.path``; the repo root is not there. So ``include.pg_migration`` must resolve from
``<dags>/include/pg_migration``, and the DAG processor must take neither the glue
(``pg_migration_support/``) nor the library (``include/``) for DAG files: ``dags/.airflowignore`` lists
both. The parse runs in a fresh interpreter whose ``sys.path`` is MWAA's: the DAGs folder first, then
the plugins folder, then Python's own (no repo root, no current directory).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.dags.test_dag_integrity import dagbag_env

DAG_FILES = ("pg_migration_dag.py", "pg_migration_cutover_dag.py", "pg_migration_abort_dag.py")
DAG_IDS = {"pg_migration", "pg_migration_rehearsal", "pg_migration_cutover", "pg_migration_abort"}
NO_CACHE = shutil.ignore_patterns("__pycache__", "*.pyc")

PARSE = textwrap.dedent("""
    import json, socket, sys
    dags, plugins = sys.argv[1], sys.argv[2]
    # MWAA's sys.path: the DAGs folder first, then the plugins folder; no repo root, no current directory.
    sys.path[:] = [dags, plugins] + [p for p in sys.path if p not in ("", ".")]
    def refuse(*a, **k):
        raise RuntimeError(f"network access at parse time: {a!r}")
    socket.socket.connect = refuse
    socket.create_connection = refuse
    from airflow.dag_processing.dagbag import DagBag
    from airflow.utils.file import list_py_file_paths
    bag = DagBag(dag_folder=dags)
    import include.pg_migration, pg_migration_support, pg_migration_ui.data
    print(json.dumps({
        "errors": {k: str(v) for k, v in bag.import_errors.items()},
        "dags": {d: dag.fileloc for d, dag in bag.dags.items()},
        "parsed": sorted(s.file for s in bag.dagbag_stats),
        "unsafe_listing": sorted(list_py_file_paths(dags, safe_mode=False)),
        "modules": {
            "include.pg_migration": include.pg_migration.__path__[0],
            "pg_migration_support": pg_migration_support.__file__,
            "pg_migration_ui": pg_migration_ui.data.__file__,
        },
        "dag_modules": sorted(
            getattr(m, "__file__", "") or "" for n, m in list(sys.modules.items()) if n.startswith("unusual_prefix_")
        ),
    }))
""")


def mwaa_layout(root: Path) -> tuple[Path, Path]:
    """``root/dags``: the DAG files, the glue, ``.airflowignore`` and ``include/``; ``root/plugins``: plugins.zip's."""
    dags, plugins = root / "dags", root / "plugins"
    dags.mkdir()
    for name in DAG_FILES:
        shutil.copy2(REPO / "dags" / name, dags / name)
    shutil.copy2(REPO / "dags" / ".airflowignore", dags / ".airflowignore")
    shutil.copytree(REPO / "dags" / "pg_migration_support", dags / "pg_migration_support", ignore=NO_CACHE)
    shutil.copytree(REPO / "include", dags / "include", ignore=NO_CACHE)
    shutil.copytree(REPO / "plugins", plugins, ignore=NO_CACHE)
    return dags, plugins


@pytest.fixture(scope="module")
def parsed(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("mwaa")
    dags, plugins = mwaa_layout(root)
    env = dagbag_env(dags, "")
    env.pop("PYTHONPATH")
    env["AIRFLOW_HOME"] = str(root / "airflow_home")
    env["AIRFLOW__CORE__PLUGINS_FOLDER"] = str(plugins)
    proc = subprocess.run(
        [sys.executable, "-c", PARSE, str(dags), str(plugins)],
        env=env,
        cwd=root,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return {"folder": dags, "plugins_folder": plugins, **json.loads(proc.stdout.strip().splitlines()[-1])}


def test_the_dags_parse_without_import_errors(parsed):
    assert parsed["errors"] == {}
    assert set(parsed["dags"]) == DAG_IDS
    assert {Path(f).name for f in parsed["dags"].values()} == set(DAG_FILES)


def test_the_library_and_the_glue_come_from_the_dags_folder(parsed):
    dags = parsed["folder"]
    assert Path(parsed["modules"]["include.pg_migration"]) == dags / "include" / "pg_migration"
    assert Path(parsed["modules"]["pg_migration_support"]) == dags / "pg_migration_support" / "__init__.py"
    assert Path(parsed["modules"]["pg_migration_ui"]).is_relative_to(parsed["plugins_folder"])


def test_no_glue_or_library_module_is_taken_for_a_dag(parsed):
    dags = parsed["folder"]
    assert parsed["parsed"] == sorted(DAG_FILES)  # the files the DagBag imported as DAG files
    # even without the safe-mode heuristic ("airflow" and "dag" in the text), .airflowignore alone leaves
    # only the DAG files: neither pg_migration_support/ nor include/ is ever parsed as DAGs
    assert parsed["unsafe_listing"] == sorted(str(dags / name) for name in DAG_FILES)
    assert parsed["dag_modules"] == sorted(str(dags / name) for name in DAG_FILES)
