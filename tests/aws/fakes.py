"""A fake Fargate behind moto: what a RunTask of the worker's task definition does, for tests.

moto records RunTask but runs nothing (its containers stay PENDING). :class:`FakeFargate` wraps moto's
``run_task`` so that every Fargate task gets a "container" that really runs, in a thread:

* its environment is built like ECS builds a container's: the task definition's ``environment``, then
  the RunTask ``containerOverrides`` environment (overrides win), then the definition's ``secrets``,
  each resolved from moto's Secrets Manager (``arn:...:secret:name-XXXXXX[:json-key::]``);
* what it runs is ``program(env)`` -- by default the real worker, ``python -m include.pg_migration.worker``
  (from the repository, as in the image), streaming its output to the task's CloudWatch stream
  ``<prefix>/<container>/<task id>`` like the awslogs driver;
* while it runs the task is RUNNING; when it exits the container gets its exit code and the task is
  STOPPED (desired status too, as ECS does), with ``stopCode`` EssentialContainerExited.

Every RunTask (with its overrides and the environment handed to the container) is recorded in
:attr:`FakeFargate.runs` for assertions. Works with in-process ``mock_aws()`` and with
``ThreadedMotoServer`` (same process, same backends).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from moto.ecs import models as ecs_models
from moto.moto_api import state_manager

REPO = Path(__file__).resolve().parents[2]
ACCOUNT = "123456789012"
REGION = "us-east-1"

#: A container's main: (environment, emit a log line) -> exit code, or None for "never started".
Program = Callable[[dict[str, str], Callable[[str], None]], int | None]


def run_worker(env: dict[str, str], emit: Callable[[str], None]) -> int:
    """The real worker entrypoint in a child process: what the image's ENTRYPOINT runs."""
    base = {k: os.environ[k] for k in ("PATH", "HOME", "LANG", "TZ") if k in os.environ}
    proc = subprocess.Popen(
        [sys.executable, "-m", "include.pg_migration.worker"],
        env={**base, "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1", **env},
        cwd=str(REPO),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    FakeFargate.processes.append(proc)
    assert proc.stdout is not None
    for line in proc.stdout:
        emit(line.rstrip("\n"))
    return proc.wait()


@dataclass
class Run:
    task_arn: str
    started_by: str
    launch_type: str
    overrides: dict[str, Any]
    network_configuration: dict[str, Any] | None
    platform_version: str | None
    env: dict[str, str]
    exit_code: int | None = None
    log: list[str] = field(default_factory=list)

    @property
    def phase(self) -> str:
        return self.env.get("PGMIG_PHASE", "")

    @property
    def unit_id(self) -> str | None:
        return self.env.get("PGMIG_UNIT_ID")


class FakeFargate:
    processes: list[subprocess.Popen] = []

    def __init__(self, program: Program = run_worker, synchronous: bool | Callable[[dict[str, str]], bool] = False):
        """``synchronous``: the container finishes inside RunTask (True, or a predicate of its env),
        else in a thread while the task is RUNNING (the trigger then polls until STOPPED)."""
        self.program = program
        self.synchronous = synchronous
        self.runs: list[Run] = []
        self.threads: list[threading.Thread] = []
        self._original = ecs_models.EC2ContainerServiceBackend.run_task

    # -- installing ----------------------------------------------------------------------------------
    def install(self, monkeypatch) -> FakeFargate:
        fake = self
        original = self._original

        def run_task(backend, *args, **kwargs):
            tasks = original(backend, *args, **kwargs)
            for task in tasks:
                fake._start(backend, task)
            return tasks

        monkeypatch.setattr(ecs_models.EC2ContainerServiceBackend, "run_task", run_task)
        # Tasks stay RUNNING until their container exits (no automatic progression to STOPPED).
        state_manager.set_transition("ecs::task", {"progression": "manual", "times": 10**9})
        return self

    def wait(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        for t in list(self.threads):
            t.join(max(0.0, deadline - time.monotonic()))

    @classmethod
    def kill_all(cls) -> None:
        for proc in cls.processes:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        cls.processes.clear()

    # -- a task's container ------------------------------------------------------------------------------
    def _start(self, backend, task) -> None:
        td = backend.describe_task_definition(task.task_definition_arn)
        cdef = td.container_definitions[0]
        name = cdef["name"]
        env = {e["name"]: e["value"] for e in cdef.get("environment") or []}
        for co in (task.overrides or {}).get("containerOverrides") or []:
            if co.get("name") == name:
                env.update({e["name"]: e["value"] for e in co.get("environment") or []})
        for secret in cdef.get("secrets") or []:
            env[secret["name"]] = resolve_secret(secret["valueFrom"])
        run = Run(
            task_arn=task.task_arn,
            started_by=task.started_by,
            launch_type=task.launch_type,
            overrides=json.loads(json.dumps(task.overrides or {})),
            network_configuration=getattr(task, "network_configuration", None),
            platform_version=task.platform_version,
            env=env,
        )
        self.runs.append(run)
        container = task.containers[0]
        container.last_status = "RUNNING"
        container.exitCode = None
        task.last_status = "RUNNING"
        logs = (cdef.get("logConfiguration") or {}).get("options") or {}
        stream = None
        if logs.get("awslogs-group"):
            stream = f"{logs['awslogs-stream-prefix']}/{name}/{task.id}"
            logs_backend().create_log_stream(logs["awslogs-group"], stream)

        def emit(line: str) -> None:
            run.log.append(line)
            if stream:
                logs_backend().put_log_events(
                    logs["awslogs-group"], stream, [{"timestamp": int(time.time() * 1000), "message": line}]
                )

        def container_main() -> None:
            try:
                code = self.program(env, emit)
            except Exception as exc:  # noqa: BLE001 - a crashing fake container exits 1, like a real one
                emit(f"fake container crashed: {exc!r}")
                code = 1
            run.exit_code = code
            container.exitCode = code
            container.last_status = "STOPPED"
            if code is None:  # never started (image pull, ENI, capacity): no exit code at all
                task.stopped_reason = "CannotPullContainerError: pull image manifest has been retried 5 time(s)"
                task.stop_code = "TaskFailedToStart"
            else:
                task.stopped_reason = "Essential container in task exited"
                task.stop_code = "EssentialContainerExited"
            task.desired_status = "STOPPED"
            task.last_status = "STOPPED"

        if self.synchronous(env) if callable(self.synchronous) else self.synchronous:
            container_main()
        else:
            thread = threading.Thread(target=container_main, name=f"fargate-{task.id}", daemon=True)
            self.threads.append(thread)
            thread.start()


def logs_backend():
    from moto.logs.models import logs_backends

    return logs_backends[ACCOUNT][REGION]


def resolve_secret(value_from: str) -> str:
    """``arn:aws:secretsmanager:region:acct:secret:name-XXXXXX[:json-key:stage:version]``, as ECS does."""
    from moto.secretsmanager.models import secretsmanager_backends

    parts = value_from.split(":")
    arn, json_key = ":".join(parts[:7]), parts[7] if len(parts) > 7 else ""
    value = secretsmanager_backends[ACCOUNT][REGION].get_secret_value(arn, None, None)["SecretString"]
    return json.loads(value)[json_key] if json_key else value


def scripted(exit_code: int | None, *lines: str) -> Program:
    """A container that prints ``lines`` and exits with ``exit_code`` (None: it never starts)."""

    def program(env: dict[str, str], emit: Callable[[str], None]) -> int:
        for line in lines:
            emit(line)
        return exit_code

    return program
