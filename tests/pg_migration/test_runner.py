"""The local runner starts the worker of THIS library, whatever the caller's working directory holds.

``python -m`` puts the working directory first on ``sys.path``: started from another checkout (the
benchmark's ``--code`` export, an Airflow worker's cwd), the child would import that checkout's
``include.pg_migration`` instead. The runner starts it in its own repo root.
"""

from __future__ import annotations

import pytest

from include.pg_migration.errors import ConfigError
from include.pg_migration.runner import run_local


def test_the_worker_is_this_librarys_whatever_the_cwd(tmp_path, monkeypatch):
    shadow = tmp_path / "include" / "pg_migration"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("")
    (shadow / "worker.py").write_text("raise SystemExit(7)\n")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match="PGMIG_PHASE must be one of"):  # the real worker: exit 2, named
        run_local({"PGMIG_PHASE": "no-such-phase", "PGMIG_RUN_ID": "r"}, label="cwd check")
