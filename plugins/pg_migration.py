"""Airflow plugin: the "Migrations" page (package ``plugins/pg_migration_ui``).

Mounts the page's FastAPI app at ``/pg-migration`` on the Airflow API server (page at
``/pg-migration/``, JSON under ``/pg-migration/api/``) and adds "Migrations" to the UI's navigation.
Authentication and authorization are the auth manager's own (see ``pg_migration_ui.app``).
"""

from __future__ import annotations

from urllib.parse import urlparse

from airflow.configuration import conf
from airflow.plugins_manager import AirflowPlugin
from pg_migration_ui import URL_PREFIX, LazyApp, external_views

# Under a base_url with a path (e.g. https://host/airflow/), the UI links must carry that path.
_BASE_PATH = urlparse(conf.get("api", "base_url", fallback="") or "").path.rstrip("/")


class PgMigrationUIPlugin(AirflowPlugin):
    name = "pg_migration_ui"
    # Built on first request: task processes load plugins too and need none of it.
    fastapi_apps = [{"app": LazyApp(), "url_prefix": URL_PREFIX, "name": "pg-migration"}]
    external_views = external_views(_BASE_PATH)
