"""The "Migrations" page of the Airflow UI (Airflow 3 plugin; registered by ``plugins/pg_migration.py``).

A FastAPI app mounted on the Airflow API server at ``/pg-migration``:

* ``/pg-migration/``                          the page (HTML, server-rendered, no JavaScript needed);
* ``/pg-migration/run/{dag_id}/{run_id}``     one run's report as a page;
* ``/pg-migration/api/runs``                  every run report (summaries, newest first);
* ``/pg-migration/api/runs/{dag_id}/{run_id}`` one run's ``report.json``, as the DAG wrote it;
* ``/pg-migration/api/overview``              what the page shows: latest run and rehearsal per schema;
* ``/pg-migration/api/live/{dag_id}``         progress of the DAG's current (or given) run from Airflow's
  own task instances: units running/done/failed/waiting in the pool, projected finish;
* ``/pg-migration/api/trend``                 rehearsal durations per schema (history.jsonl) vs the window.

Data comes only from the reports (:mod:`include.pg_migration.reports.schema`) and, for the live view, from
Airflow's task instances. Everything is read-only and behind the auth manager's own checks.

Modules: :mod:`.data` (reports -> page data), :mod:`.live` (task instances -> progress),
:mod:`.page` (HTML, with the inline SVG charts of :mod:`include.pg_migration.reports.chart`),
:mod:`.app` (routes and authorization). Only ``app`` and ``live`` import Airflow.

This folder holds an ``.airflowignore``: Airflow's plugin loader would otherwise import every file in
it as a top-level module of its own.
"""

from __future__ import annotations

import sys
import threading
from pathlib import Path
from typing import Any

# ``include.pg_migration`` lives at the repository root, which bin/airflow and docker-compose put on
# PYTHONPATH; fall back to the checkout this plugin sits in.
try:
    import include.pg_migration  # noqa: F401
except ImportError:  # pragma: no cover - depends on how Airflow was started
    sys.path.append(str(Path(__file__).resolve().parents[2]))

URL_PREFIX = "/pg-migration"


def external_views(base_path: str = "") -> list[dict[str, Any]]:
    """The "Migrations" entry of the Airflow UI's navigation (the page embedded at /plugin/pg-migration)."""
    return [
        {
            "name": "Migrations",
            "href": f"{base_path}{URL_PREFIX}/",
            "url_route": "pg-migration",
            "destination": "nav",
            "icon": f"{base_path}{URL_PREFIX}/static/icon.svg",
            "nav_top_level": True,
        }
    ]


class LazyApp:
    """The plugin's ASGI app, built (``app.create_app``) on its first request.

    Every Airflow process loads plugins -- each task process too, for macros -- but only the API
    server serves this app: building it imports the API server's security and models (~1.5 s), which
    task processes should not pay for.
    """

    def __init__(self) -> None:
        self._app = None
        self._lock = threading.Lock()

    def get(self):
        if self._app is None:
            with self._lock:
                if self._app is None:
                    from .app import create_app  # noqa: PLC0415 - the API server's security and models: on first request only

                    self._app = create_app()
        return self._app

    async def __call__(self, scope, receive, send) -> None:
        await self.get()(scope, receive, send)
