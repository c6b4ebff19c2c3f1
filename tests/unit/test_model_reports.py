"""The model report plugin's lookups and pages (plugins/model_report_pages.py) on hand-made RESULTS_DIR folders:
a run id is looked up, never joined into a path (traversal, encoded, absolute, a link out of RESULTS_DIR: 404);
a published file is read only when its manifest vouches for it; hostile history cells come out escaped; and the
plugin file itself loads without FastAPI, pandas or scikit-learn."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from etl import catalog, champion
from etl.run_folder import short_run_id
from etl.scoring import SCORING_RESULTS
from etl.steps import DAG_ID
from utils.config import PROJECT_ROOT
from utils.files import sha256_bytes

PLUGINS = PROJECT_ROOT / "plugins"
sys.path.insert(0, str(PLUGINS))  # as Airflow does for its plugins folder (settings.prepare_syspath_...)
import model_report_pages as pages  # noqa: E402

RUN_ID = "manual__2026-12-04T10:00:00.123456+00:00"
CARD = b"<!DOCTYPE html><html><body><h1>Model card</h1><div class='summary'>logreg at 0.0809</div></body></html>"
HOSTILE = "<script>alert(1)</script>"


def publish(results: Path, run_id: str, files: dict[str, bytes], stamp: str = "20261204_100000") -> Path:
    """A published run's folder as upload leaves it: the files and a manifest with their sha256 and the run id."""
    folder = results / f"{stamp}_{short_run_id(run_id)}"
    folder.mkdir(parents=True)
    for name, content in files.items():
        (folder / name).write_bytes(content)
    manifest = {"run_id": run_id, "files": {name: sha256_bytes(content) for name, content in files.items()}}
    (folder / catalog.MANIFEST).write_text(json.dumps(manifest))
    return folder


def history(results: Path, **row: str) -> None:
    champion.record_in_history(results, row)


def text(page: pages.Page) -> str:
    return page.body.decode("utf-8")


def test_a_published_runs_report_html_is_served_as_it_is_under_a_strict_policy(tmp_path):
    publish(tmp_path, RUN_ID, {catalog.MODEL_CARD: CARD, catalog.REPORT: b"# Report\n"})
    page = pages.run_report(tmp_path, DAG_ID, RUN_ID)
    assert (page.status, page.body) == (200, CARD)
    assert page.headers["X-Content-Type-Options"] == "nosniff"
    policy = page.headers["Content-Security-Policy"]
    assert "default-src 'none'" in policy and "img-src data:" in policy and "script" not in policy


def test_without_report_html_the_markdown_is_shown_escaped_with_its_charts_inline(tmp_path):
    png = b"\x89PNG fake"
    markdown = f"# Model report\n\nwinner {HOSTILE}\n\n![ROC](roc_curve.png)\n![x](../../etc/passwd)\n"
    publish(tmp_path, RUN_ID, {catalog.REPORT: markdown.encode(), catalog.ROC_CURVE: png})
    page = pages.run_report(tmp_path, DAG_ID, RUN_ID)
    assert page.status == 200 and "<h1>Model report</h1>" in text(page)
    assert HOSTILE not in text(page) and "&lt;script&gt;" in text(page)
    assert "data:image/png;base64," in text(page) and text(page).count("<img") == 1


def test_a_published_file_that_changed_or_is_a_link_is_not_served(tmp_path):
    folder = publish(tmp_path, RUN_ID, {catalog.MODEL_CARD: CARD, catalog.REPORT: b"# Report\n"})
    (folder / catalog.MODEL_CARD).write_bytes(CARD + b"<script>evil()</script>")
    page = pages.run_report(tmp_path, DAG_ID, RUN_ID)
    assert b"evil" not in page.body and "<h1>Report</h1>" in text(page)  # report.md, which still matches
    outside = tmp_path.parent / "outside.md"
    outside.write_bytes(b"# Report\n")
    (folder / catalog.REPORT).unlink()
    (folder / catalog.REPORT).symlink_to(outside)
    page = pages.run_report(tmp_path, DAG_ID, RUN_ID)
    assert page.status == 404 and b"evil" not in page.body


@pytest.mark.parametrize("run_id", ["..", "../..", "%2e%2e", "%2e%2e%2f%2e%2e", "/etc/passwd", "a/../../b",
                                    "20261204_100000_x", "latest", ".", "", "x" * 300, "nul\x00", "unknown_run"])
def test_a_crafted_or_unknown_run_id_is_a_404(tmp_path, run_id):
    publish(tmp_path, RUN_ID, {catalog.MODEL_CARD: CARD})
    (tmp_path / "latest").symlink_to(next(tmp_path.glob("2026*")))
    page = pages.run_report(tmp_path, DAG_ID, run_id)
    assert page.status == 404 and CARD not in page.body


def test_a_link_named_like_a_publication_that_points_out_of_results_dir_is_not_followed(tmp_path):
    outside = publish(tmp_path / "elsewhere", RUN_ID, {catalog.MODEL_CARD: CARD})
    results = tmp_path / "results"
    results.mkdir()
    (results / outside.name).symlink_to(outside)
    assert pages.published_run(results, RUN_ID) is None
    assert pages.run_report(results, DAG_ID, RUN_ID).status == 404


def test_another_dags_run_gets_a_404(tmp_path):
    publish(tmp_path, RUN_ID, {catalog.MODEL_CARD: CARD})
    assert pages.run_report(tmp_path, "another_dag", RUN_ID).status == 404


def test_a_failed_run_says_where_and_why_escaped(tmp_path):
    history(tmp_path, run_id=HOSTILE, reason=f"failed at evaluate: QualityGateError: {HOSTILE} below 0.9",
            recorded_at="2026-12-04T10:00:00+00:00", promoted="false")
    page = pages.run_report(tmp_path, DAG_ID, HOSTILE)
    assert page.status == 200 and HOSTILE not in text(page)
    assert "evaluate" in text(page) and "QualityGateError: &lt;script&gt;" in text(page)


def test_the_models_page_shows_the_champion_the_history_with_intervals_and_the_scored_batches_escaped(tmp_path):
    folder = publish(tmp_path, RUN_ID, {catalog.MODEL_CARD: CARD})
    champion.write_pointer(tmp_path, {"name": folder.name, "run_id": RUN_ID, "model_sha256": "0" * 64,
                                      "operating_threshold": 0.0809, "metric": "roc_auc",
                                      "promoted_at": "2026-12-04T10:01:00+00:00", "metrics": {"recall": 1.0}})
    history(tmp_path, run_id=RUN_ID, name=folder.name, model="logreg", promoted="true", recall="1.0",
            recall_lower="0.926", recall_upper="1.0", roc_auc="0.996", roc_auc_lower="0.989", roc_auc_upper="1.0",
            difference="0.001", difference_lower="-0.01", difference_upper="0.02", reason="no champion yet")
    history(tmp_path, run_id=f'"><img src=x onerror=alert(1)>{HOSTILE}', model=HOSTILE, promoted="false",
            reason=f"failed at load: {HOSTILE}")
    batch = tmp_path / SCORING_RESULTS / "batch-1"
    batch.mkdir(parents=True)
    (batch / catalog.SCORING_SUMMARY).write_text(json.dumps({
        "batch": "batch-1", "rows": 12, "predicted_malignant": 5, "model": {"name": folder.name},
        "drift": {"max_psi": 0.31, "max_psi_feature": "Mitoses", "drifted": True, "drifted_features": [HOSTILE]}}))
    elsewhere = tmp_path.parent / "planted"
    elsewhere.mkdir()
    (elsewhere / catalog.SCORING_SUMMARY).write_text(json.dumps({"batch": "planted", "rows": 1}))
    (tmp_path / SCORING_RESULTS / "planted").symlink_to(elsewhere)
    body = text(pages.models_page(tmp_path))
    assert HOSTILE not in body and "<img src=x" not in body and "&lt;script&gt;" in body
    assert "logreg" in body and "0.0809" in body and pages.tab_link(RUN_ID) in body.replace("&amp;", "&")
    assert "1.0000 [0.9260, 1.0000]" in body and "0.9960 [0.9890, 1.0000]" in body
    assert "0.0010 [-0.0100, 0.0200]" in body
    assert "batch-1" in body and "0.3100 (Mitoses)" in body and "planted" not in body


def test_the_models_page_of_an_empty_results_dir_says_so(tmp_path):
    body = text(pages.models_page(tmp_path / "absent"))
    assert "No champion yet" in body and "No run has been recorded" in body and "No batch" in body


def test_the_plugin_file_loads_without_fastapi_pandas_or_sklearn_and_names_the_tab_route():
    code = ("import sys; sys.path.insert(0, sys.argv[1]); import model_reports as m; "
            "print([name for name in ('fastapi', 'pandas', 'sklearn', 'model_report_pages') if name in sys.modules]); "
            "print([view['url_route'] for view in m.ModelReportsPlugin.external_views])")
    result = subprocess.run([sys.executable, "-c", code, str(PLUGINS)], capture_output=True, text=True, check=True)
    loaded, routes = result.stdout.splitlines()[-2:]
    assert loaded == "[]" and pages.TAB_ROUTE in routes
