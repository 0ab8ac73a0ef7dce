"""Passwords appear in none of: process argv, task logs, XCom, rendered fields, the report files."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path


class ArgvWatcher(threading.Thread):
    """Samples every process's argv while the run goes on."""

    def __init__(self, secrets: list[str]):
        super().__init__(daemon=True)
        self.secrets = secrets
        self.stop = threading.Event()
        self.leaks: set[str] = set()
        self.samples = 0

    def run(self):
        while not self.stop.is_set():
            for proc in Path("/proc").iterdir():
                if not proc.name.isdigit():
                    continue
                try:
                    argv = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                except OSError:
                    continue
                for s in self.secrets:
                    if s in argv:
                        self.leaks.add(argv[:200].replace(s, "<SECRET>"))
            self.samples += 1
            self.stop.wait(0.02)


def _files_containing(root: Path, secrets: list[str]) -> list[str]:
    hits = []
    for path in root.rglob("*"):
        if path.is_file() and path.suffix not in (".db", ".db-journal", ".db-wal"):
            try:
                text = path.read_text(errors="replace")
            except OSError:
                continue
            if any(s in text for s in secrets):
                hits.append(str(path))
    return hits


def test_no_password_leaks_anywhere(demo_pair, dag_runner, airflow_home):
    secrets = [demo_pair.source_server.superuser_password, demo_pair.target_server.admin_password]
    assert all(len(s) >= 12 for s in secrets)
    watcher = ArgvWatcher(secrets)
    watcher.start()
    try:
        result = dag_runner("pg_migration", env=demo_pair.airflow_env())
    finally:
        watcher.stop.set()
        watcher.join()
    assert result.state == "success", result.output[-3000:]
    assert watcher.samples > 10
    assert watcher.leaks == set()
    assert not any(s in result.output for s in secrets), "a password is in the task output"
    assert _files_containing(airflow_home / "logs", secrets) == []
    assert _files_containing(result.report_dir, secrets) == []
    with sqlite3.connect(airflow_home / "airflow.db") as db:
        for table, column in (("xcom", "value"), ("rendered_task_instance_fields", "rendered_fields")):
            for (value,) in db.execute(f"SELECT {column} FROM {table}"):  # noqa: S608 - fixed names
                text = value.decode(errors="replace") if isinstance(value, bytes) else str(value)
                assert not any(s in text for s in secrets), f"a password is in {table}"
