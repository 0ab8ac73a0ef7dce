"""Runners: how a phase or unit's worker process is started.

The local runner starts ``python -m include.pg_migration.worker`` as a child in its own process
group, with the worker's environment (passwords included, never argv), streams its log lines to
the caller's logger, and raises with the worker's last lines when it fails. If the caller is
interrupted (task killed, timeout), the whole group is killed, so no orphaned worker keeps writing.

The ECS runner (in the DAG, via ``EcsRunTaskOperator``) starts the same module in a container with
the same environment: :func:`worker_env` is shared by both.
"""

from __future__ import annotations

import collections
import logging
import os
import signal
import subprocess
import sys
from pathlib import Path

from include.pg_migration.conn import Endpoint
from include.pg_migration.errors import ConfigError, MigrationError, SnapshotLost, UnitFailed

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[2]


def worker_env(
    source: Endpoint, target: Endpoint, run_id: str, phase: str, unit_id: str | None = None, with_passwords: bool = True
) -> dict[str, str]:
    env = {"PGMIG_PHASE": phase, "PGMIG_RUN_ID": run_id}
    if unit_id is not None:
        env["PGMIG_UNIT_ID"] = unit_id
    env.update(source.to_env("PGMIG_SOURCE", with_password=with_passwords))
    env.update(target.to_env("PGMIG_TARGET", with_password=with_passwords))
    return env


def local_env(extra: dict[str, str]) -> dict[str, str]:
    """The child's full environment: ours minus anything that looks secret, plus the worker's."""
    inherited = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("AIRFLOW_CONN_", "PGMIG_", "PGPASSWORD", "AWS_SECRET", "AIRFLOW__CORE__FERNET"))
    }
    pythonpath = os.pathsep.join(p for p in (str(REPO_ROOT), inherited.get("PYTHONPATH", "")) if p)
    return {**inherited, "PYTHONPATH": pythonpath, **extra}


def run_local(env: dict[str, str], logger: logging.Logger | None = None, label: str = "worker") -> None:
    """Run the worker to completion; raise a MigrationError subclass naming what failed."""
    logger = logger or log
    tail: collections.deque[str] = collections.deque(maxlen=20)
    proc = subprocess.Popen(
        [sys.executable, "-m", "include.pg_migration.worker"],
        cwd=REPO_ROOT,  # `-m` puts the cwd first on sys.path: the worker runs this library, wherever we run
        env=local_env(env),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        text=True,
        bufsize=1,
    )
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            line = line.rstrip("\n")
            tail.append(line)
            logger.info("%s | %s", label, line)
        code = proc.wait()
    except BaseException:
        _kill_group(proc)
        raise
    if code == 0:
        return
    last = next((ln for ln in reversed(tail) if ln.startswith("pg-migration: ")), None)
    message = (
        last[len("pg-migration: ") :] if last else f"{label} exited with status {code}: " + " | ".join(list(tail)[-5:])
    )
    if code == 2:
        raise ConfigError(message)
    if code == 3:
        raise SnapshotLost(message)
    if code < 0:
        raise UnitFailed(f"{label} was killed by signal {-code}")
    raise (UnitFailed if code == 1 else MigrationError)(message)


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()
