"""Query the real Airflow API app (plugins included) in-process with FastAPI's TestClient.

Run in the repo's Airflow environment (``bin/airflow --with-env python tests/plugins/probe_app.py``)
so that Airflow's configuration, metadata DB and plugins folder are those of that AIRFLOW_HOME;
pytest's own process may have imported Airflow with another configuration already.

Reads a JSON list of requests on stdin: ``[{"path": "/pg-migration/api/runs", "as": "admin"}, ...]``
where "as" is ``admin`` / ``viewer`` (a JWT minted by the auth manager for a user of that role),
``norole`` (a valid JWT for a user without a role), ``bad`` (a forged token) or ``none`` (no
credentials). Prints one JSON line: a list of ``{"status", "headers", "json" | "text"}``.
"""

from __future__ import annotations

import json
import sys


def main() -> int:
    requests = json.load(sys.stdin)
    from airflow.api_fastapi.app import create_app, get_auth_manager
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser
    from fastapi.testclient import TestClient

    app = create_app()
    manager = get_auth_manager()
    tokens = {
        "admin": manager.generate_jwt(SimpleAuthManagerUser(username="probe-admin", role="admin")),
        "viewer": manager.generate_jwt(SimpleAuthManagerUser(username="probe-viewer", role="viewer")),
        "norole": manager.generate_jwt(SimpleAuthManagerUser(username="probe-nobody", role=None)),
        "bad": "not-a-jwt",
    }
    out = []
    with TestClient(app, base_url="http://localhost:8080") as client:
        for req in requests:
            who = req.get("as", "admin")
            headers = {}
            cookies = {}
            if who in tokens:
                if req.get("cookie"):
                    cookies["_token"] = tokens[who]
                else:
                    headers["Authorization"] = f"Bearer {tokens[who]}"
            client.cookies.clear()
            for k, v in cookies.items():
                client.cookies.set(k, v)
            resp = client.get(req["path"], headers=headers, follow_redirects=False)
            entry = {"path": req["path"], "as": who, "status": resp.status_code, "headers": dict(resp.headers)}
            if resp.headers.get("content-type", "").startswith("application/json"):
                entry["json"] = resp.json()
            else:
                entry["text"] = resp.text
            out.append(entry)
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
