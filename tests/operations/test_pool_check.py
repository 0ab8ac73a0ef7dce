"""The ``pg_migration pool`` finding: read over Airflow's REST API (the real API is exercised by the
stack test; here a stand-in speaks the same two routes so every verdict is reached quickly)."""

from __future__ import annotations

import json
import socket
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.conftest import REPO

sys.path.insert(0, str(REPO / "dags"))

from pg_migration_support import pool_check  # noqa: E402


class FakeAirflow:
    """``POST/GET /auth/token`` and ``GET /api/v2/pools/{name}`` as Airflow 3.3's API server answers them."""

    def __init__(self, pools: dict[str, dict], users: dict[str, str] | None = None, all_admins: bool = False):
        self.pools, self.users, self.all_admins = pools, users or {}, all_admins
        self.seen_tokens: list[str | None] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _send(self, status: int, body: dict):
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
                if self.path == "/auth/token" and fake.users.get(body.get("username")) == body.get("password"):
                    return self._send(201, {"access_token": f"tok-{body['username']}"})
                return self._send(401, {"detail": "Invalid credentials"})

            def do_GET(self):
                if self.path == "/auth/token":
                    if fake.all_admins:
                        return self._send(201, {"access_token": "tok-admin"})
                    return self._send(403, {"detail": "all admins disabled"})
                auth = self.headers.get("Authorization")
                fake.seen_tokens.append(auth)
                if not auth or not auth.startswith("Bearer tok-"):
                    return self._send(401, {"detail": "Not authenticated"})
                name = self.path.rsplit("/", 1)[-1]
                if self.path.startswith("/api/v2/pools/") and name in fake.pools:
                    return self._send(200, {"name": name, **fake.pools[name]})
                return self._send(404, {"detail": f"The Pool with name: `{name}` was not found"})

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def fake():
    servers = []

    def make(**kw):
        servers.append(FakeAirflow(**kw))
        return servers[-1]

    yield make
    for s in servers:
        s.close()


POOL_OK = {"slots": 4, "include_deferred": True, "occupied_slots": 0, "deferred_slots": 0}


def test_pool_present_with_the_planned_slots_and_deferred_counted(fake):
    api = fake(pools={"pg_migration": POOL_OK}, users={"admin": "s3cret"})
    access = pool_check.ApiAccess(api.url, login="admin", password="s3cret", source="test")
    f = pool_check.check({"pool_size": 4, "runner": "local"}, api=access)
    assert f == {
        "check": "pg_migration pool",
        "verdict": "ok",
        "detail": "pool 'pg_migration': 4 slot(s), include_deferred=true",
    }
    assert api.seen_tokens == ["Bearer tok-admin"]
    assert "s3cret" not in access.describe() and "s3cret" not in repr(access)


def test_missing_pool_is_blocking(fake):
    api = fake(pools={}, all_admins=True)
    f = pool_check.check({"pool_size": 4}, api=pool_check.ApiAccess(api.url))
    assert f["verdict"] == "blocking" and "does not exist" in f["detail"] and "never be scheduled" in f["detail"]


@pytest.mark.parametrize("runner,verdict", [("local", "warning"), ("ecs", "blocking")])
def test_pool_not_counting_deferred_tasks(fake, runner, verdict):
    api = fake(pools={"pg_migration": {**POOL_OK, "include_deferred": False}}, all_admins=True)
    f = pool_check.check({"pool_size": 4, "runner": runner}, api=pool_check.ApiAccess(api.url))
    assert f["verdict"] == verdict and "include_deferred=false" in f["detail"]


def test_pool_smaller_than_planned_is_a_warning(fake):
    api = fake(pools={"pg_migration": {**POOL_OK, "slots": 2}}, users={}, all_admins=False)
    token = pool_check.ApiAccess(api.url, token="tok-deployment")  # e.g. an Astronomer API token
    f = pool_check.check({"pool_size": 8}, api=token)
    assert f["verdict"] == "warning" and "2 slot(s)" in f["detail"] and "pool_size 8" in f["detail"]


def test_api_not_answering_is_a_warning_that_says_how_to_verify(fake):
    api = fake(pools={"pg_migration": POOL_OK}, users={"admin": "right"})
    f = pool_check.check({}, api=pool_check.ApiAccess(api.url, login="admin", password="wrong"))
    assert f["verdict"] == "warning" and "not verified" in f["detail"] and "HTTP 401" in f["detail"]
    assert "wrong" not in f["detail"]
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    f = pool_check.check({}, api=pool_check.ApiAccess(f"http://127.0.0.1:{closed}"))
    assert f["verdict"] == "warning" and "airflow pools get pg_migration" in f["detail"]


def test_api_found_from_the_execution_api_url(monkeypatch):
    monkeypatch.setenv("AIRFLOW__CORE__EXECUTION_API_SERVER_URL", "http://airflow.internal:9091/execution/")
    assert pool_check.api_from_config().base_url == "http://airflow.internal:9091"
    assert not pool_check.in_process_test_run()  # no task running here
