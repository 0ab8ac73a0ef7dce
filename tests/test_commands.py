"""Every command the docs show still works: the state CLI, the worker entrypoint (as the image runs it),
``bin/airflow``, the ``make`` targets, and every ``python -m <module>`` the docs and deployment files name.

Quick checks only (no migration runs): each command is started the way a reader would start it and
answers without touching a database.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO, _airflow_env

DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md")), REPO / "include" / "aws" / "README.md"]
DOCKERFILE = REPO / "include" / "aws" / "Dockerfile"
#: Files whose commands run something: the docs, and what builds or starts the stack and the image.
COMMAND_FILES = [*DOCS, REPO / "Makefile", REPO / "bin" / "airflow", REPO / "docker-compose.yaml", DOCKERFILE]


def _run(cmd: list[str], env: dict[str, str] | None = None, cwd: Path = REPO) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def _clean_env(**extra: str) -> dict[str, str]:
    """No PGMIG_* or AIRFLOW_* from the caller: the command sees only what the test gives it."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PGMIG_", "AIRFLOW", "PYTHONPATH"))}
    return {**env, **extra}


# -- python -m include.pg_migration.state ------------------------------------------------------------


def test_state_cli_shows_its_commands():
    proc = _run([sys.executable, "-m", "include.pg_migration.state", "--help"], env=_clean_env())
    assert proc.returncode == 0, proc.stderr
    assert "usage: python -m include.pg_migration.state" in proc.stdout
    for command in ("drop", "release-guard", "show"):
        assert command in proc.stdout


def test_state_cli_refuses_an_unknown_command_naming_drop():
    proc = _run([sys.executable, "-m", "include.pg_migration.state", "dorp"], env=_clean_env())
    assert proc.returncode == 2
    assert "invalid choice: 'dorp'" in proc.stderr and "'drop'" in proc.stderr


# -- the worker entrypoint ---------------------------------------------------------------------------


def _entrypoint() -> list[str]:
    """The image's ENTRYPOINT (JSON form) as the Dockerfile says it."""
    line = next(ln for ln in DOCKERFILE.read_text().splitlines() if ln.startswith("ENTRYPOINT "))
    return json.loads(line.removeprefix("ENTRYPOINT "))


def test_the_image_entrypoint_is_the_worker_module():
    assert _entrypoint() == ["python", "-m", "include.pg_migration.worker"]


def test_worker_refuses_an_unknown_phase_naming_pgmig_phase():
    proc = _run([sys.executable, "-m", "include.pg_migration.worker"], env=_clean_env(PGMIG_PHASE="copy"))
    assert proc.returncode == 2, proc.stderr
    assert "PGMIG_PHASE" in proc.stderr.splitlines()[-1]


def test_worker_starts_from_the_image_layout(tmp_path):
    """Only what the Dockerfile copies (``COPY <src> /app/<src>``, minus the .dockerignore's exclusions) at
    ``/app`` (the image's PYTHONPATH and WORKDIR): the entrypoint starts and answers a bad phase with exit 2."""
    copies = re.findall(r"^COPY (\S+) /app/(\S+)$", DOCKERFILE.read_text(), flags=re.M)
    assert copies, "the Dockerfile copies nothing into /app"
    app = tmp_path / "app"
    excluded = shutil.ignore_patterns("__pycache__", "*.pyc", "demo")
    for src, dest in copies:
        assert src == dest and (REPO / src).is_dir(), (src, dest)
        shutil.copytree(REPO / src, app / dest, ignore=excluded)
    program = _entrypoint()
    proc = _run([sys.executable, *program[1:]], env=_clean_env(PYTHONPATH=str(app), PGMIG_PHASE="copy"), cwd=app)
    assert proc.returncode == 2, proc.stderr
    assert "PGMIG_PHASE" in proc.stderr.splitlines()[-1]


# -- bin/airflow ---------------------------------------------------------------------------------------


def test_bin_airflow_runs_the_repos_airflow(airflow_home):
    proc = _run([str(REPO / "bin" / "airflow"), "version"], env=_airflow_env(airflow_home, {}))
    assert proc.returncode == 0, proc.stderr[-2000:]
    from airflow import __version__

    assert proc.stdout.strip().splitlines()[-1] == __version__


def test_bin_airflow_with_env_runs_a_command_in_the_repos_environment(airflow_home):
    code = "import include.pg_migration, pg_migration_support, os; print(os.environ['AIRFLOW__CORE__DAGS_FOLDER'])"
    proc = _run(
        [str(REPO / "bin" / "airflow"), "--with-env", sys.executable, "-c", code], env=_airflow_env(airflow_home, {})
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == str(REPO / "dags")


# -- make ------------------------------------------------------------------------------------------------

MAKE = re.compile(r"^(?:[A-Z_]+=\S*\s+)*make\s+([a-z][\w-]*)")


def make_targets_in_docs() -> set[str]:
    """Targets of every ``make X`` the docs show: in code blocks, and in inline code (`` `make X` ``)."""
    targets = set()
    for doc in DOCS:
        fenced = False
        for line in doc.read_text().splitlines():
            if line.lstrip().startswith("```"):
                fenced = not fenced
                continue
            spans = [line.strip()] if fenced else re.findall(r"`([^`]+)`", line)
            targets |= {m.group(1) for m in map(MAKE.match, spans) if m}
    return targets


def test_the_docs_show_the_two_commands():
    assert {"demo", "test"} <= make_targets_in_docs()


@pytest.mark.parametrize("target", sorted(make_targets_in_docs()))
def test_every_make_target_the_docs_name_exists(target):
    if shutil.which("make") is None:
        pytest.fail("make is not installed", pytrace=False)
    proc = _run(["make", "-n", target], env=_clean_env())
    assert proc.returncode == 0, proc.stderr


# -- python -m <module> -----------------------------------------------------------------------------------


def modules_run_by_the_docs_and_deployment_files() -> set[str]:
    """Every module a ``python -m X`` (or an exec-form ``["python", "-m", "X"]``, or a YAML command list
    ``[python, -m, X, ...]``) names in the docs, the Makefile, bin/airflow, docker-compose and the Dockerfile."""
    found = set()
    pattern = re.compile(r"""python[\d.]*"?,?\s+"?-m"?,?\s+"?([A-Za-z_][\w.]*)""")
    for path in COMMAND_FILES:
        found |= set(pattern.findall(path.read_text()))
    for service in yaml.safe_load((REPO / "docker-compose.yaml").read_text())["services"].values():
        command = service.get("command")
        if isinstance(command, list):
            found |= {command[i + 2] for i in range(len(command) - 2) if command[i : i + 2] == ["python", "-m"]}
    return found


def test_the_docs_run_the_worker_and_the_state_cli():
    assert {
        "include.pg_migration.worker",
        "include.pg_migration.state",
    } <= modules_run_by_the_docs_and_deployment_files()


@pytest.mark.parametrize("module", sorted(modules_run_by_the_docs_and_deployment_files()))
def test_every_module_a_command_runs_exists(module):
    sys.path.insert(0, str(REPO))
    try:
        assert importlib.util.find_spec(module) is not None, f"no module {module}"
    finally:
        sys.path.remove(str(REPO))
