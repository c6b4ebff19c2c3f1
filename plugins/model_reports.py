"""The model report inside Airflow's UI: an Airflow 3 plugin adding a **Model report** tab to every run of the
training DAG and a **Models** page to the navigation, both served by a FastAPI app that the api-server mounts
under /model-reports (docs/airflow.md, "The model report in the UI").

Airflow imports this file in every process that loads plugins (the scheduler, each task), so it imports only the
plugin base class; the app, FastAPI, Airflow's security dependencies and the project's settings are imported when
the api-server first asks for `fastapi_apps`. Each route depends on Airflow's own `requires_access_dag`: the user
comes from the api-server's JWT (the `_token` cookie the UI holds, or an `Authorization: Bearer` header) and the
auth manager decides whether that user may read the DAG's runs; without a valid token the answer is 401/403 and
no byte of a report. What the pages show: plugins/model_report_pages.py.
"""

from __future__ import annotations

import functools
from typing import Any

from airflow.plugins_manager import AirflowPlugin

PREFIX = "/model-reports"


@functools.cache
def app() -> Any:
    """The FastAPI app of the two pages, built once."""
    from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity
    from airflow.api_fastapi.core_api.security import requires_access_dag
    from fastapi import Depends, FastAPI
    from fastapi.responses import Response
    from model_report_pages import DAG_ID, Page, models_page, run_report

    from utils.config import load_settings

    def answer(page: Page) -> Response:
        return Response(page.body, page.status, page.headers, media_type="text/html; charset=utf-8")

    reports = FastAPI(title="Model reports", docs_url=None, redoc_url=None, openapi_url=None)

    @reports.get("/dags/{dag_id}/runs/{run_id}",
                 dependencies=[Depends(requires_access_dag("GET", DagAccessEntity.RUN))])
    def run_tab(dag_id: str, run_id: str) -> Response:
        """The Model report tab of a run (the dag_id of the path is the one the auth manager checks)."""
        return answer(run_report(load_settings().results_dir, dag_id, run_id))

    @reports.get("/models", dependencies=[Depends(requires_access_dag("GET", DagAccessEntity.RUN, DAG_ID))])
    def models() -> Response:
        """The Models page: the champion, the history and the latest scored batches."""
        return answer(models_page(load_settings().results_dir))

    return reports


class ModelReportsPlugin(AirflowPlugin):
    """The tab (external view on each DAG run: Airflow's UI lists it on every DAG's runs; other DAGs' get a 404
    page) and the navigation page, and the app that serves them."""

    name = "model_reports"
    external_views = [  # noqa: RUF012 (AirflowPlugin declares these as class attributes)
        {"name": "Model report", "href": f"{PREFIX}/dags/{{DAG_ID}}/runs/{{RUN_ID}}", "destination": "dag_run",
         "url_route": "model-report"},
        {"name": "Models", "href": f"{PREFIX}/models", "destination": "nav", "url_route": "models"},
    ]

    @property
    def fastapi_apps(self) -> list[dict[str, Any]]:  # type: ignore[override]
        """Built on first use: only the api-server (and `GET /api/v2/plugins`) asks for it."""
        return [{"app": app(), "url_prefix": PREFIX, "name": "Model reports"}]
