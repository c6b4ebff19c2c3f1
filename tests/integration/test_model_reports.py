"""The model report plugin in a real Airflow api-server: two real `airflow dags test` runs (one good, published;
one failing its quality gate) in a migrated SQLite home, then `airflow api-server` alone with plugins/ as its
plugins folder. Over HTTP: the plugin and its views are listed by the REST API; a signed-in user (a JWT from
POST /auth/token) gets the run's report, the failed run's reason and the Models page; no token or a forged one
gets 401/403 and not a byte of the report; crafted paths get 404. In headless Chromium: log in, open the finished
run, its Model report tab, the Models page from the navigation; screenshots for docs/img."""

from __future__ import annotations

import json
import shutil
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest

from etl import catalog
from tests.support.airflow_api import AirflowApi
from tests.support.airflow_runs import AIRFLOW, DAG_ID, Folders, base_environment, dags_test, migrate
from tests.support.browser import chromium, open_plugin_page, open_run, open_run_tab, ui_login
from tests.support.processes import Processes, wait_until
from tests.support.scoring import batch, write_batch
from tests.support.servers import free_port
from utils.config import PROJECT_ROOT, load_settings

pytestmark = pytest.mark.slow
PREFIX = "/model-reports"
USER, PASSWORD = "admin", "model-reports-test"
SCREENSHOTS = PROJECT_ROOT / "results" / "ui-screenshots"  # docs/img/airflow-model-report.png etc. are copies


@dataclass(frozen=True)
class Server:
    """The api-server with its two finished runs."""

    api: AirflowApi
    results: Path
    good_run: str
    failed_run: str
    log_dir: Path


def get(url: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    """Status, headers and body of a GET, error answers included."""
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    root = tmp_path_factory.mktemp("model-reports")
    home, folders = migrate(root / "airflow"), Folders(root / "runs", root / "results")
    good = dags_test(home, datetime(2026, 12, 1, tzinfo=UTC), folders.settings())
    failed = dags_test(home, datetime(2026, 12, 2, tzinfo=UTC), folders.settings(), conf={"min_roc_auc": 1})
    assert (good.state, failed.state) == ("success", "failed"), good.output[-3000:] + failed.output[-3000:]
    scored = score_batches(root, folders)
    assert {summary["batch"] for summary in scored["scored"]} == {"clinic-a", "clinic-b"}, scored
    (home / "passwords.json").write_text(json.dumps({USER: PASSWORD}))
    port = free_port()
    env = {**base_environment(home), **folders.settings(),
           "AIRFLOW__CORE__PLUGINS_FOLDER": str(PROJECT_ROOT / "plugins"),
           "AIRFLOW__API__PORT": str(port), "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{port}/",
           "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{USER}:admin",
           "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(home / "passwords.json")}
    processes = Processes(root / "logs")
    started = processes.start("api-server", [str(AIRFLOW), "api-server", "--port", str(port)], env, cwd=PROJECT_ROOT)
    base_url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: get(f"{base_url}/api/v2/monitor/health")[0] == 200, 120, "the api-server to answer",
                   details=started.log_tail)
        yield Server(AirflowApi(base_url, USER, PASSWORD), folders.results, good.run_id, failed.run_id, root / "logs")
    finally:
        processes.stop_all()


def score_batches(root: Path, folders: Folders) -> dict:
    """Two batches scored with the champion, as the scoring DAG does: one like the training rows, one drifted."""
    from etl.scoring import score_pending  # pandas: only once the fixture runs

    settings = load_settings(env_file=root / "none.env", **{name.lower(): value for name, value in
                                                          folders.settings().items()},
                             incoming_dir=root / "incoming", processed_dir=root / "processed")
    write_batch(settings.incoming_dir, "clinic-a", batch(60, 1))
    write_batch(settings.incoming_dir, "clinic-b", batch(60, 2, drift=True))
    return score_pending(settings)


def tab_url(server: Server, run_id: str, dag_id: str = DAG_ID) -> str:
    return f"{server.api.base_url}{PREFIX}/dags/{dag_id}/runs/{urllib.parse.quote(run_id, safe='')}"


def bearer(server: Server) -> dict[str, str]:
    return {"Authorization": f"Bearer {server.api.token()}"}


def test_the_rest_api_lists_the_plugin_with_its_app_and_both_views(server):
    (plugin,) = [found for found in server.api.call("/api/v2/plugins")["plugins"] if found["name"] == "model_reports"]
    assert [app["url_prefix"] for app in plugin["fastapi_apps"]] == [PREFIX]
    assert {(view["name"], view["destination"], view["url_route"]) for view in plugin["external_views"]} == {
        ("Model report", "dag_run", "model-report"), ("Models", "nav", "models")}


def test_a_signed_in_user_gets_the_runs_published_report_under_a_strict_policy(server):
    status, headers, body = get(tab_url(server, server.good_run), bearer(server))
    (folder,) = server.results.glob("2026*")  # only the good run published
    assert status == 200, body[:500]
    assert body == (folder / catalog.MODEL_CARD).read_bytes()  # the model card, byte for byte
    assert "default-src 'none'" in headers["content-security-policy"]
    assert headers["x-content-type-options"] == "nosniff"


def test_a_failed_run_shows_where_and_why(server):
    status, _, body = get(tab_url(server, server.failed_run), bearer(server))
    assert status == 200 and "failed at evaluate" in body.decode() and "QualityGateError" in body.decode()


def test_the_models_page_shows_the_champion_the_history_and_escapes(server):
    status, headers, body = get(f"{server.api.base_url}{PREFIX}/models", bearer(server))
    text = body.decode()
    assert status == 200 and "Champion:" in text and "logreg" in text and "failed at evaluate" in text
    assert "clinic-a" in text and "clinic-b" in text and "True" in text  # clinic-b drifted
    assert "default-src 'none'" in headers["content-security-policy"]


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer not-a-jwt"}, {"Cookie": "_token=forged"}])
def test_without_a_valid_token_no_report_is_served(server, headers):
    for url in (tab_url(server, server.good_run), f"{server.api.base_url}{PREFIX}/models"):
        status, _, body = get(url, headers)
        assert status in (401, 403) and b"<h1" not in body and b"Champion" not in body, (url, status, body[:300])


@pytest.mark.parametrize("path", ["..", "%2e%2e", "%2E%2E%2F%2E%2E%2Fetc%2Fpasswd", "%2Fetc%2Fpasswd",
                                  "..%2F..%2Fhistory.csv", "latest", "20261201_000000_x"])
def test_crafted_run_paths_are_404(server, path):
    status, _, body = get(f"{server.api.base_url}{PREFIX}/dags/{DAG_ID}/runs/{path}", bearer(server))
    assert status == 404 and b"root:" not in body and b"run_id," not in body


def test_a_link_out_of_results_dir_named_like_the_runs_publication_is_404(server, tmp_path):
    (folder,) = server.results.glob("2026*")
    moved = tmp_path / folder.name
    shutil.move(folder, moved)
    try:
        folder.symlink_to(moved)
        status, _, body = get(tab_url(server, server.good_run), bearer(server))
        assert status == 404 and b"<h1>Not found</h1>" in body
    finally:
        folder.unlink(missing_ok=True)
        shutil.move(moved, folder)


def test_in_chromium_the_run_has_a_model_report_tab_and_the_nav_a_models_page(server, tmp_path):
    processes = Processes(server.log_dir)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    try:
        with chromium(processes, tmp_path / "profile") as driver:
            ui_login(driver, server.api.base_url, USER, PASSWORD)
            open_run(driver, server.api.base_url, DAG_ID, server.good_run, (server.good_run, "Model report"))
            text = open_run_tab(driver, "Model report", ("Summary", "Operating threshold"))
            assert "logreg" in text and "Sensitivity" in text  # the model card's summary box
            driver.save_screenshot(str(SCREENSHOTS / "airflow-model-report.png"))
            text = open_plugin_page(driver, server.api.base_url, "Models", ("Champion:", "History of runs"))
            assert "failed at evaluate" in text
            driver.save_screenshot(str(SCREENSHOTS / "airflow-models-page.png"))
    finally:
        processes.stop_all()
    assert not processes.kill_strays(), "chromedriver or chromium outlived quit()"
