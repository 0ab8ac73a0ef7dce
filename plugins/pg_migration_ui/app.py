"""The FastAPI app mounted at ``/pg-migration`` on the Airflow API server, and who may see what.

Airflow 3 does not protect a plugin's app by itself: every route here depends on the auth manager's
own checks from ``airflow.api_fastapi.core_api.security``:

* ``get_user`` (the ``_token`` cookie the Airflow UI sets at login, or an ``Authorization: Bearer``
  JWT from ``POST /auth/token``): no valid token -> 401 (the page redirects to the login page);
* one run (``/api/runs/{dag_id}/{run_id}``, ``/run/...``): ``requires_access_dag("GET", RUN)``;
* live progress (``/api/live/{dag_id}``): ``requires_access_dag("GET", TASK_INSTANCE)``;
* lists (``/api/runs``, ``/api/overview``, ``/api/trend``, the page): only the DAGs for which the
  auth manager's ``is_authorized_dag(GET, RUN)`` says yes for this user (task instances likewise).

Everything is GET and read-only.
"""

from __future__ import annotations

import functools
import logging
from pathlib import Path
from typing import Annotated, Any

from airflow.api_fastapi.app import get_auth_manager
from airflow.api_fastapi.auth.managers.models.base_user import BaseUser
from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity, DagDetails
from airflow.api_fastapi.common.db.common import SessionDep
from airflow.api_fastapi.core_api.security import GetUserDep, requires_access_dag
from airflow.models.dag import DagModel
from fastapi import Depends, FastAPI, HTTPException, Query, Request, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

from include.pg_migration.reports import history
from include.pg_migration.run_order import REHEARSAL_DAG_ID, RUN_DAG_ID

from . import data, live, page

log = logging.getLogger(__name__)
STATIC = Path(__file__).resolve().parent / "static"


def _is_authorized(user: BaseUser, dag_id: str, entity: DagAccessEntity) -> bool:
    try:
        team = DagModel.get_team_name(dag_id)
    except Exception:  # noqa: BLE001 - no team information: the auth manager decides without it
        team = None
    return get_auth_manager().is_authorized_dag(
        method="GET", access_entity=entity, details=DagDetails(id=dag_id, team_name=team), user=user
    )


def _allowed(user: BaseUser, entity: DagAccessEntity = DagAccessEntity.RUN):
    """A per-request, cached "may this user read that DAG's runs" predicate."""
    return functools.lru_cache(maxsize=None)(lambda dag_id: _is_authorized(user, dag_id, entity))


def _live_for(session, user: BaseUser, dag_ids: list[str], window_h: float) -> dict[str, dict[str, Any] | None]:
    may_read_tis = _allowed(user, DagAccessEntity.TASK_INSTANCE)
    return {d: live.read(session, d, window_h=window_h) for d in dag_ids if may_read_tis(d)}


def _relative_path(request: Request) -> str:
    """The request's path inside this app (Starlette keeps the mount point in ``root_path``)."""
    path, root = request.scope.get("path", ""), request.scope.get("root_path", "")
    return path[len(root) :] if root and path.startswith(root) else path


def create_app() -> FastAPI:
    """The app: its error handlers, the page's routes and the JSON API's."""
    app = FastAPI(
        title="pg-migration",
        description="Migration reports and live progress of the pg_migration DAGs (read-only).",
        docs_url=None,
        redoc_url=None,
        openapi_url="/api/openapi.json",
    )
    _add_error_handlers(app)
    _add_page_routes(app)
    _add_api_routes(app)
    return app


def _add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(HTTPException)
    async def _http_error(request: Request, exc: HTTPException):
        """JSON under /api/; the page sends people without a session to Airflow's login page."""
        if _relative_path(request).startswith("/api/"):
            return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers)
        if exc.status_code == status.HTTP_401_UNAUTHORIZED:
            return RedirectResponse(get_auth_manager().get_url_login(next_url=str(request.url)), status_code=303)
        text = {403: "You may not read this DAG's runs.", 404: "Not found."}.get(exc.status_code, str(exc.detail))
        return HTMLResponse(page.message_page(f"{exc.status_code}", text), status_code=exc.status_code)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError):
        return JSONResponse({"detail": exc.errors()}, status_code=422)


def _add_page_routes(app: FastAPI) -> None:
    """The page (``/``), one run's page (``/run/...``) and the icon."""

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def index(user: GetUserDep, session: SessionDep) -> HTMLResponse:
        allowed = _allowed(user)
        overview = data.overview(allowed)
        dag_ids = [RUN_DAG_ID, REHEARSAL_DAG_ID] + sorted(
            {r["dag_id"] for r in overview["runs"]} - {RUN_DAG_ID, REHEARSAL_DAG_ID}
        )
        lives = _live_for(session, user, [d for d in dag_ids if allowed(d)], overview["downtime_window_h"])
        trend = data.trend(REHEARSAL_DAG_ID, allowed)
        return HTMLResponse(page.overview_page(overview, lives, trend, user.get_name()))

    @app.get(
        "/run/{dag_id}/{run_id}",
        response_class=HTMLResponse,
        include_in_schema=False,
        dependencies=[Depends(requires_access_dag("GET", DagAccessEntity.RUN))],
    )
    def run_page(dag_id: str, run_id: str, user: GetUserDep, session: SessionDep) -> HTMLResponse:
        report = data.read(dag_id, run_id)
        if report is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"no report for {dag_id} run {run_id}")
        window, _ = history.downtime_window_hours()
        progress = None
        if _is_authorized(user, dag_id, DagAccessEntity.TASK_INSTANCE):
            progress = live.read(session, dag_id, run_id, window_h=window)
        return HTMLResponse(page.run_page(data.run_summary(report), progress))

    @app.get("/static/icon.svg", include_in_schema=False)
    def icon() -> Response:
        return Response((STATIC / "icon.svg").read_bytes(), media_type="image/svg+xml")


def _add_api_routes(app: FastAPI) -> None:
    """The JSON under ``/api/``: runs, one run's report, the overview, live progress, the trend."""

    @app.get("/api/runs")
    def api_runs(
        user: GetUserDep,
        dag_id: Annotated[str | None, Query(description="only this DAG's runs")] = None,
        limit: Annotated[int, Query(ge=1, le=10000)] = 1000,
    ) -> dict[str, Any]:
        """Every run report the caller may read (``report.runs()`` summaries), newest first."""
        allowed = _allowed(user)
        rows = [r for r in data.runs(allowed) if dag_id is None or r["dag_id"] == dag_id][:limit]
        for r in rows:
            r["href"] = page.api_href(r["dag_id"], r["run_id"])
            r["page"] = page.run_href(r["dag_id"], r["run_id"])
        return {"runs": rows, "total_entries": len(rows)}

    @app.get("/api/runs/{dag_id}/{run_id}", dependencies=[Depends(requires_access_dag("GET", DagAccessEntity.RUN))])
    def api_run(dag_id: str, run_id: str) -> dict[str, Any]:
        """One run's ``report.json``, exactly as the DAG's report task wrote it."""
        report = data.read(dag_id, run_id)
        if report is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"no report for {dag_id} run {run_id}")
        return report

    @app.get("/api/overview")
    def api_overview(user: GetUserDep) -> dict[str, Any]:
        """The latest run and the latest rehearsal with their per-schema rows (what the page shows)."""
        return data.overview(_allowed(user))

    @app.get(
        "/api/live/{dag_id}",
        dependencies=[Depends(requires_access_dag("GET", DagAccessEntity.TASK_INSTANCE))],
    )
    def api_live(
        dag_id: str,
        session: SessionDep,
        run_id: Annotated[str | None, Query(description="default: the run in progress, else the newest")] = None,
    ) -> dict[str, Any]:
        """Progress of a run from Airflow's task instances: units by state, bytes, projected finish."""
        window, _ = history.downtime_window_hours()
        progress = live.read(session, dag_id, run_id, window_h=window)
        if progress is None:
            which = f" with id {run_id}" if run_id else ""
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"no run of {dag_id}{which}")
        return progress

    @app.get("/api/trend")
    def api_trend(
        user: GetUserDep,
        dag_id: Annotated[str, Query(description="the DAG whose finished runs to show")] = REHEARSAL_DAG_ID,
        limit: Annotated[int, Query(ge=1, le=1000)] = 30,
    ) -> dict[str, Any]:
        """Per-schema seconds of the DAG's last runs (history.jsonl) and the downtime window."""
        return data.trend(dag_id, _allowed(user), limit=limit)
