"""End to end: the local Airflow stack, a login, and the Migrations page in headless Chromium.

1. ``bin/airflow standalone`` starts in a fresh AIRFLOW_HOME on free ports (simple auth manager) and,
   meanwhile, the demo warehouse is migrated (``dag_runner``: ``airflow dags test``), whose report
   the stack reads (``PG_MIGRATION_REPORTS``);
2. without a session the plugin refuses: its API answers 401, its page redirects to the login page;
3. Chromium (Debian's ``chromium`` + ``chromium-driver``, installed by ``scripts/install_browser.sh``,
   driven by selenium) logs in with the password standalone generated, opens ``/pg-migration/`` and
   finds every schema of the run with its status; then the Airflow UI's "Migrations" entry
   (``/plugin/pg-migration``) embeds the same page.

Screenshots go to ``test-artifacts/`` (git-ignored).
"""

from __future__ import annotations

import json
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import REPO, free_port, standalone_env, stop_process_group

ARTIFACTS = REPO / "test-artifacts"
STARTUP_TIMEOUT_S = 120


def _get(url: str, cookie: str | None = None) -> tuple[int, dict[str, str], bytes]:
    """GET without following redirects."""

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args, **kwargs):
            return None

    req = urllib.request.Request(url, headers={"Cookie": f"_token={cookie}"} if cookie else {})
    try:
        with urllib.request.build_opener(NoRedirect).open(req, timeout=10) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), err.read()


def install_browser() -> tuple[str, str]:
    proc = subprocess.run(
        ["bash", str(REPO / "scripts" / "install_browser.sh")], capture_output=True, text=True, timeout=600
    )
    if proc.returncode != 0:
        pytest.fail(f"scripts/install_browser.sh failed: {proc.stderr[-2000:]}", pytrace=False)
    browser, driver = proc.stdout.split()[-2:]
    return browser, driver


class Stack:
    """``bin/airflow standalone`` in its own process group, stopped by that group's id."""

    def __init__(self, home: Path, log: Path, reports: Path):
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.home = home
        self.log = log
        self.env = standalone_env(
            home,
            self.port,
            {
                "AIRFLOW__CORE__PARALLELISM": "2",
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "False",
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin",
                "PG_MIGRATION_REPORTS": str(reports),
            },
        )
        self.proc: subprocess.Popen | None = None

    def __enter__(self) -> Stack:
        """Start it (``wait_ready`` waits for it): a fresh AIRFLOW_HOME is set up by bin/airflow first."""
        self.home.mkdir(parents=True, exist_ok=True)
        self.log_file = self.log.open("w")
        self.proc = subprocess.Popen(
            [str(REPO / "bin" / "airflow"), "standalone"],
            env=self.env,
            cwd=self.home,
            stdout=self.log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.started = time.monotonic()
        return self

    def wait_ready(self) -> Stack:
        deadline = self.started + STARTUP_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"airflow standalone exited ({self.proc.returncode}):\n{self.tail()}", pytrace=False)
            try:
                status, _, body = _get(f"{self.base}/api/v2/monitor/health")
                if status == 200 and self.password_file().exists():
                    return self
            except OSError:
                pass
            time.sleep(1)
        pytest.fail(f"airflow standalone not ready in {STARTUP_TIMEOUT_S} s:\n{self.tail()}", pytrace=False)

    def password_file(self) -> Path:
        return self.home / "simple_auth_manager_passwords.json.generated"

    def password(self, user: str = "admin") -> str:
        return json.loads(self.password_file().read_text())[user]

    def tail(self, n: int = 4000) -> str:
        try:
            return self.log.read_text(errors="replace")[-n:]
        except OSError:
            return ""

    def __exit__(self, *exc) -> None:
        stop_process_group(self.proc)
        self.log_file.close()


def chromium(browser: str, driver_path: str, profile: Path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--disable-dev-shm-usage",
        f"--user-data-dir={profile}",
        "--window-size=1400,1000",
    ):
        options.add_argument(flag)
    return webdriver.Chrome(options=options, service=Service(executable_path=driver_path))


def full_page_screenshot(driver, path: Path) -> None:
    height = driver.execute_script("return Math.max(document.body.scrollHeight, 800)")
    driver.set_window_size(1400, min(int(height) + 120, 6000))
    driver.save_screenshot(str(path))


def check_page(stack: Stack, report: dict, browser: str, driver_path: str, profile: Path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    ARTIFACTS.mkdir(exist_ok=True)
    for stale in ARTIFACTS.glob("migrations-failure.*"):
        stale.unlink()
    driver = chromium(browser, driver_path, profile)
    try:
        wait = WebDriverWait(driver, 45)
        # Not logged in: the page sends the browser to Airflow's login form.
        driver.get(f"{stack.base}/pg-migration/")
        user = wait.until(ec.presence_of_element_located((By.NAME, "username")))
        assert "/auth/login" in driver.current_url
        user.send_keys("admin")
        driver.find_element(By.NAME, "password").send_keys(stack.password("admin"))
        driver.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
        section = wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, 'section[data-section="Latest run"]')))
        assert driver.current_url.rstrip("/").endswith("/pg-migration")
        assert section.get_attribute("data-run-id") == report["run_id"]
        verdict = driver.find_element(By.CSS_SELECTOR, ".verdict[data-verdict]")
        assert verdict.get_attribute("data-verdict") == report["verdict"] == "passed"
        assert "PASSED" in verdict.text
        shown = {}
        for row in section.find_elements(By.CSS_SELECTOR, "tr[data-schema]"):
            cells = row.find_elements(By.TAG_NAME, "td")
            shown[cells[0].text] = (row.get_attribute("data-status"), cells[1].text)
        assert shown == {s["schema"]: (s["status"], s["status"]) for s in report["schemas"]}
        assert driver.find_elements(By.CSS_SELECTOR, 'svg[data-chart="window-bars"] line.window')
        full_page_screenshot(driver, ARTIFACTS / "migrations-page.png")

        # The Airflow UI's own navigation entry embeds the page.
        driver.set_window_size(1400, 1000)
        driver.get(f"{stack.base}/plugin/pg-migration")
        frame = wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, 'iframe[src*="/pg-migration/"]')))
        assert wait.until(ec.presence_of_element_located((By.XPATH, '//*[text()="Migrations"]')))
        driver.switch_to.frame(frame)
        wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, 'section[data-section="Latest run"]')))
        driver.switch_to.default_content()
        driver.save_screenshot(str(ARTIFACTS / "airflow-ui-migrations.png"))
    except Exception:
        try:
            driver.save_screenshot(str(ARTIFACTS / "migrations-failure.png"))
            (ARTIFACTS / "migrations-failure.html").write_text(driver.page_source)
        except Exception:  # noqa: BLE001 - keep the original error
            pass
        raise
    finally:
        driver.quit()


@pytest.mark.stack
def test_migrations_page_in_a_browser(demo_pair, dag_runner, airflow_home, tmp_path):
    times = {"start": time.monotonic()}
    browser, driver_path = install_browser()
    times["browser installed"] = time.monotonic()
    # The stack (its own AIRFLOW_HOME, reading the reports dag_runner writes) starts while the demo runs.
    with Stack(tmp_path / "stack_home", tmp_path / "standalone.log", reports=airflow_home / "reports") as stack:
        result = dag_runner("pg_migration", env=demo_pair.airflow_env())
        assert result.state == "success", result.output[-3000:]
        report = result.report()
        times["demo run"] = time.monotonic()
        stack.wait_ready()
        times["stack ready"] = time.monotonic()
        # The plugin's app is open to nobody without a session, whatever the page does.
        status, _, body = _get(f"{stack.base}/pg-migration/api/runs")
        assert status == 401, body[:300]
        status, headers, _ = _get(f"{stack.base}/pg-migration/")
        assert status == 303 and headers["location"].startswith("/auth/login"), headers
        status, _, _ = _get(f"{stack.base}/pg-migration/api/runs", cookie="forged")
        assert status == 403

        check_page(stack, report, browser, driver_path, tmp_path / "chromium-profile")
        times["browser checks"] = time.monotonic()
    times["stack stopped"] = time.monotonic()
    assert (ARTIFACTS / "migrations-page.png").stat().st_size > 10_000
    steps = list(times.items())
    pairs = zip(steps, steps[1:], strict=False)
    print("e2e: " + ", ".join(f"{name} {t - prev:.0f} s" for (_, prev), (name, t) in pairs))
