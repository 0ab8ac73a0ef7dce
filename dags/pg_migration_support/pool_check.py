"""Pre-flight finding ``pg_migration pool``: the pool exists, has the planned slots, counts deferred tasks.

Why it is not a plain Task SDK call (Airflow 3.3.2, checked in the installed code): a task may not
touch the metadata DB (``block_orm_access`` in the task supervisor: "Direct database access via the
ORM is not allowed"), and the Execution API the task talks to has no pools route (routes:
connections, variables, xcoms, task instances, dag runs, assets, hitl... but no pools). What a
task can do is call Airflow's public REST API, ``GET /api/v2/pools/{name}``, like any client, with a
token. So :func:`check` reads the pool there:

* **Where**: the Airflow connection ``pg_migration_airflow_api`` when it exists (``http(s)://host:port``,
  e.g. ``AIRFLOW_CONN_PG_MIGRATION_AIRFLOW_API='http://admin:PASSWORD@localhost:8080'``; an extra
  ``{"token": "..."}`` is sent as a bearer token as is, e.g. an Astronomer deployment API token);
  otherwise the API server the task's Execution API lives on (``[core] execution_api_server_url``
  without ``/execution/``), with no credentials.
* **Token**: ``POST /auth/token`` with the connection's login/password (Airflow's simple auth
  manager; FAB accepts the same body), or ``GET /auth/token`` without credentials, which the simple
  auth manager grants only with ``simple_auth_manager_all_admins`` (a local stack).
* When nothing answers (no API server: ``airflow dags test`` runs tasks in process and ignores pools
  anyway; or no credentials), the finding is a **warning** saying it was not verified and how to
  verify it: ``bin/airflow`` creates the pool on first use (``pools.json``, ``include_deferred``),
  and ``airflow pools get pg_migration`` shows it.

Verdicts: pool missing -> **blocking** (a task in a missing pool is never scheduled: the run would
hang); ``include_deferred`` false -> **blocking** with runner ``ecs`` (deferred Fargate tasks would not
take slots, so the pool would not cap them), a warning otherwise; slots different from the
``pool_size`` param -> warning (the plan's prediction assumed ``pool_size``).

Wiring (DAG owner): in :func:`pg_migration_support.tasks.preflight`, before the blocking check::

    from pg_migration_support import pool_check
    findings.append(pool_check.check(params))
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from typing import Any
from urllib import error, parse, request

from airflow.sdk import Connection
from airflow.sdk.configuration import conf
from airflow.sdk.execution_time import task_runner

from include.pg_migration.run_order import POOL

log = logging.getLogger("airflow.task")

API_CONN_ID = "pg_migration_airflow_api"
CHECK = "pg_migration pool"
TIMEOUT_S = 10.0


@dataclass(frozen=True)
class ApiAccess:
    """How to reach Airflow's public REST API (no secret is ever printed: ``describe`` omits them)."""

    base_url: str
    login: str | None = None
    password: str | None = field(default=None, repr=False)
    token: str | None = field(default=None, repr=False)
    source: str = "configuration"

    def describe(self) -> str:
        return f"{self.base_url} ({self.source})"


class ApiUnavailable(Exception):
    """The REST API cannot be asked (unreachable, or no token): the pool is then not verified."""


def finding(verdict: str, detail: str) -> dict[str, str]:
    return {"check": CHECK, "verdict": verdict, "detail": detail}


# -- where the API is ---------------------------------------------------------------------------------


def api_from_connection(conn_id: str = API_CONN_ID) -> ApiAccess | None:
    """The Airflow connection ``conn_id`` as API access, or None when it is not defined."""
    try:
        conn = Connection.get(conn_id)
    except Exception:  # noqa: BLE001 - not defined (or no Task SDK context): fall back
        return None
    if not conn or not conn.host:
        return None
    host = conn.host
    if "://" in host:  # a host given as a URL
        base = host.rstrip("/")
    else:
        scheme = "https" if (conn.conn_type or "").lower() == "https" else "http"
        base = f"{scheme}://{host}" + (f":{conn.port}" if conn.port else "")
        if conn.schema:
            base += "/" + conn.schema.strip("/")
    extra = conn.extra_dejson or {}
    return ApiAccess(
        base_url=base,
        login=conn.login or None,
        password=conn.password or None,
        token=extra.get("token"),
        source=f"connection {conn_id!r}",
    )


def api_from_config() -> ApiAccess:
    """The API server the task's Execution API is served by (no credentials)."""
    url = os.environ.get("AIRFLOW__CORE__EXECUTION_API_SERVER_URL")
    if not url:
        try:
            url = conf.get("core", "execution_api_server_url", fallback=None)
            if not url:
                base = conf.get("api", "base_url", fallback="/") or "/"
                url = (base if not base.startswith("/") else f"http://localhost:8080{base}").rstrip("/") + "/execution/"
        except Exception:  # noqa: BLE001 - outside Airflow: the documented default
            url = "http://localhost:8080/execution/"
    base = url.rstrip("/")
    if base.endswith("/execution"):
        base = base[: -len("/execution")]
    return ApiAccess(base_url=base, source="the Execution API server ([core] execution_api_server_url)")


def in_process_test_run() -> bool:
    """True under ``airflow dags test`` / ``dag.test()``: tasks run in this process, pools are ignored."""
    comms = getattr(task_runner, "SUPERVISOR_COMMS", None)
    return comms is not None and "InProcess" in type(comms).__name__


# -- REST -------------------------------------------------------------------------------------------


def _call(method: str, url: str, body: dict[str, Any] | None = None, token: str | None = None) -> tuple[int, Any]:
    data = json.dumps(body).encode() if body is not None else None
    req = request.Request(url, data=data, method=method)
    req.add_header("Accept", "application/json")
    if data is not None:
        req.add_header("Content-Type", "application/json")
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with request.urlopen(req, timeout=TIMEOUT_S) as resp:  # noqa: S310 - http(s) URL from configuration
            raw = resp.read()
            return resp.status, json.loads(raw) if raw else None
    except error.HTTPError as exc:
        raw = exc.read()
        try:
            return exc.code, json.loads(raw) if raw else None
        except ValueError:
            return exc.code, raw.decode(errors="replace")[:200]
    except (error.URLError, OSError, TimeoutError) as exc:
        raise ApiUnavailable(f"{url}: {getattr(exc, 'reason', exc)}") from None


def token_for(api: ApiAccess) -> str:
    if api.token:
        return api.token
    if api.login and api.password is not None:
        status, body = _call("POST", f"{api.base_url}/auth/token", {"username": api.login, "password": api.password})
    else:
        status, body = _call("GET", f"{api.base_url}/auth/token")
    if status in (200, 201) and isinstance(body, dict) and body.get("access_token"):
        return body["access_token"]
    who = f"user {api.login!r}" if api.login else "no credentials (only simple_auth_manager_all_admins allows that)"
    raise ApiUnavailable(f"{api.base_url}/auth/token refused a token for {who} (HTTP {status})")


def read_pool(api: ApiAccess, pool: str = POOL) -> dict[str, Any] | None:
    """The pool as the REST API returns it (``slots``, ``include_deferred``, ...), None when it does not exist."""
    token = token_for(api)
    status, body = _call("GET", f"{api.base_url}/api/v2/pools/{parse.quote(pool, safe='')}", token=token)
    if status == 404:
        return None
    if status != 200 or not isinstance(body, dict):
        raise ApiUnavailable(f"GET /api/v2/pools/{pool} answered HTTP {status}: {body}")
    return body


# -- the finding --------------------------------------------------------------------------------------


def evaluate(pool: dict[str, Any] | None, params: dict[str, Any], name: str = POOL) -> dict[str, str]:
    """The finding for a pool as read from the API (pure: tests call it directly)."""
    if pool is None:
        return finding(
            "blocking",
            f"pool {name!r} does not exist: the mapped units would never be scheduled. Create it "
            "(`airflow pools import pools.json`, or `airflow pools set pg_migration 4 'pg-migration units' "
            "--include-deferred`), then trigger again",
        )
    slots = int(pool.get("slots") or 0)
    deferred = bool(pool.get("include_deferred"))
    planned = params.get("pool_size")
    runner = params.get("runner") or "local"
    notes = [f"pool {name!r}: {slots} slot(s), include_deferred={str(deferred).lower()}"]
    verdict = "ok"
    if slots < 1:
        return finding("blocking", notes[0] + ": no slot, nothing would run")
    if not deferred:
        verdict = "blocking" if runner == "ecs" else "warning"
        notes.append(
            "deferred tasks do not take slots, so deferrable ECS tasks would not be capped by it"
            + (" (runner ecs: fix it first)" if runner == "ecs" else "")
            + "; set include_deferred (pools.json has it)"
        )
    if planned and int(planned) != slots:
        if verdict == "ok":
            verdict = "warning"
        notes.append(f"the plan assumed pool_size {planned}: its split and predicted makespan are for that size")
    return finding(verdict, "; ".join(notes))


def check(params: dict[str, Any], api: ApiAccess | None = None, pool: str = POOL) -> dict[str, str]:
    """The ``pg_migration pool`` finding, read from the REST API (see the module docstring)."""
    explicit = api is not None
    api = api or api_from_connection()
    explicit = explicit or api is not None
    if api is None:
        if in_process_test_run():
            return finding(
                "ok",
                "not checked: `airflow dags test` runs tasks one at a time in process and ignores pools "
                f"(define the connection {API_CONN_ID!r} to check the pool anyway)",
            )
        api = api_from_config()
    try:
        return evaluate(read_pool(api, pool), params, pool)
    except ApiUnavailable as exc:
        hint = (
            ""
            if explicit
            else f"; define the Airflow connection {API_CONN_ID!r} (http://LOGIN:PASSWORD@api-server:8080, "
            'or an extra {"token": ...}) so tasks can read pools'
        )
        return finding(
            "warning",
            f"pool {pool!r} not verified: Airflow's REST API at {api.describe()} cannot be asked ({exc}){hint}. "
            "A task in a missing pool is never scheduled: `airflow pools get pg_migration` must show it "
            "(bin/airflow creates it from pools.json on first use, include_deferred=true)",
        )
