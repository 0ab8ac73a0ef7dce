"""A warm `airflow` CLI for the tests: import Airflow once, fork one child per command.

Every ``bin/airflow dags test`` spends about 20 s on set-up (importing the CLI, building the
in-process execution API and its versioned routers); the suite runs dozens. This server is started once per
test session through ``bin/airflow --with-env`` (so it has exactly the environment, paths and
first-use set-up of ``bin/airflow``), imports those modules and then, per request, forks a child that
runs ``airflow <argv>`` as the CLI would, its stdout and stderr in a file. Nothing of the project
is imported before the fork: each child parses the DAG folder itself, as a cold CLI does.

Protocol (one JSON object per line on stdin/stdout): the server's first line is
``{"ready": pid, "env": {...}}``, then per request ``{"argv": [...], "env": {...}, "out": path}``
-> ``{"pid": n}`` then ``{"rc": n}``. A request's ``env`` is the child's complete environment.

What the fork cannot change is what Airflow read at import: its configuration (``AIRFLOW__*``,
``AIRFLOW_HOME``) and ``sys.path``. ``tests.conftest.run_dag`` sends a command here only when it
changes none of those, else it runs the cold ``bin/airflow``.
"""

from __future__ import annotations

import json
import os
import sys

PRELOAD = (
    "airflow",
    "airflow.cli.cli_parser",
    "airflow.cli.commands.dag_command",
    "airflow.api_fastapi.execution_api.app",
    "airflow.sdk",
    "airflow.sdk.execution_time.task_runner",
    "airflow.sdk.execution_time.supervisor",
    "fastapi.testclient",
    "psycopg",
)


def _child(argv: list[str], env: dict[str, str], out: str) -> None:
    code = 1
    try:
        fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        os.close(fd)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.close(null)
        os.environ.clear()
        os.environ.update(env)
        from airflow import settings

        settings.dispose_orm(do_log=False)  # no connection of the parent's pool crosses the fork
        settings.configure_orm()
        from airflow.__main__ import main

        sys.argv = ["airflow", *argv]
        try:
            main()
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except BaseException:  # noqa: BLE001 - the child reports everything in its output file
        import traceback

        traceback.print_exc()
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:  # noqa: BLE001, S110
                pass
        os._exit(code)


def _prewarm_execution_api() -> None:
    """Build the in-process execution API of ``dags test`` (one per process: an ``lru_cache``) and its
    versioned routers (Cadwyn builds them lazily at the first request: about 10 s), but not its
    transport, whose event-loop thread would not survive the fork."""
    from airflow.sdk.execution_time.supervisor import in_process_api_server
    from cadwyn import Cadwyn

    stack = [in_process_api_server().app]
    while stack:
        app = stack.pop()
        if isinstance(app, Cadwyn) and not app._cadwyn_initialized:
            app._cadwyn_initialize()
        stack.extend(r.app for r in getattr(app, "routes", ()) if getattr(r, "app", None) not in (None, app))


def serve() -> None:
    import importlib

    reply = os.fdopen(os.dup(1), "w")  # the protocol; whatever Airflow prints at import goes to stderr
    os.dup2(2, 1)
    for name in PRELOAD:
        importlib.import_module(name)
    _prewarm_execution_api()
    print(json.dumps({"ready": os.getpid(), "env": dict(os.environ)}), file=reply, flush=True)
    for line in sys.stdin:
        req = json.loads(line)
        pid = os.fork()
        if pid == 0:
            os.setsid()
            _child(req["argv"], req["env"], req["out"])
        print(json.dumps({"pid": pid}), file=reply, flush=True)
        _, status = os.waitpid(pid, 0)
        print(json.dumps({"rc": os.waitstatus_to_exitcode(status)}), file=reply, flush=True)


if __name__ == "__main__":
    serve()
