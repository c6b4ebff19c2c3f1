"""The documents stay in step with the repository: their links to files point at files that exist, the README stays a
short front door with a Russian mirror of the same sections, the pipeline diagram is the DAG's graph, and the example
run's charts and figures they show are what the current code draws and computes."""

from __future__ import annotations

import itertools
import json
import re
from pathlib import Path

import pytest

from etl import catalog
from etl.pipeline import run_all
from etl.run_folder import RunFolder
from etl.steps import DAG_ID
from tests.support.data import BUNDLED_CSV, open_run
from tests.unit.test_dag import parsed_dags
from utils.config import PROJECT_ROOT, load_settings

DOCUMENTS = sorted([PROJECT_ROOT / "README.md", PROJECT_ROOT / "README.ru.md", *(PROJECT_ROOT / "docs").glob("*.md")])
MARKDOWN_LINK = re.compile(r"\]\(([^)\s]+)\)")
HTML_SOURCE = re.compile(r"""<img[^>]*\ssrc="([^"]+)\"""")
README_MAX_LINES = 220  # issue 20: a front door of about 200 lines; the detail lives in docs/
DIAGRAMS = ("README.md", "README.ru.md", "docs/pipeline.md")  # each holds one Mermaid flowchart of the DAG
MERMAID_BLOCK = re.compile(r"^```mermaid\n(.*?)^```", re.M | re.S)
MERMAID_LINK = re.compile(r"\s*(?:-->|-\.->)(?:\|[^|]*\|)?\s*")  # a solid or dotted arrow, with an optional label
MERMAID_NODE = re.compile(r"\s*([A-Za-z_]\w*)")  # a node's id, before its optional ["label"]
APPROVAL_TASK = "approve"  # drawn dotted: only in the DAG parsed with APPROVAL_REQUIRED=true


def local_targets(text: str) -> set[str]:
    """Link and image targets that name a file of the repository (no scheme, no pure #anchor)."""
    targets = set(MARKDOWN_LINK.findall(text)) | set(HTML_SOURCE.findall(text))
    return {target.split("#")[0] for target in targets
            if not re.match(r"[a-z][a-z0-9+.-]*:", target) and not target.startswith("#")}


def test_local_targets_ignores_web_addresses_and_anchors() -> None:
    text = '[a](docs/x.md#part) [b](https://example.org/y) [c](#top) <img src="docs/img/z.png" width="1">'
    assert local_targets(text) == {"docs/x.md", "docs/img/z.png"}


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda path: str(path.relative_to(PROJECT_ROOT)))
def test_every_local_link_and_image_exists(document: Path) -> None:
    missing = [target for target in sorted(local_targets(document.read_text(encoding="utf-8")))
               if not (document.parent / target).exists()]
    assert not missing, f"{document.name} links to missing files: {missing}"


def test_the_readme_is_a_short_front_door() -> None:
    lines = (PROJECT_ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    assert len(lines) <= README_MAX_LINES, (
        f"README.md has {len(lines)} lines (at most {README_MAX_LINES}): move the detail into a page of docs/")


def test_the_russian_readme_mirrors_the_sections_of_the_english_one() -> None:
    def sections(name: str) -> list[str]:
        return re.findall(r"^## (.+)$", (PROJECT_ROOT / name).read_text(encoding="utf-8"), flags=re.M)

    english, russian = sections("README.md"), sections("README.ru.md")
    assert len(russian) == len(english), f"README.md's sections {english} against README.ru.md's {russian}"


def diagram_edges(text: str) -> set[tuple[str, str]]:
    """The edges of the one Mermaid flowchart in `text`: `a --> b["label"] -.->|label| c` and `a & b --> c`."""
    (block,) = MERMAID_BLOCK.findall(text)
    lines = block.splitlines()
    assert lines[0].split() == ["flowchart", "LR"], lines[0]
    edges = set()
    for line in lines[1:]:
        groups = [[MERMAID_NODE.match(node).group(1) for node in part.split("&")]
                  for part in MERMAID_LINK.split(line.strip())]
        edges |= {(source, target) for sources, targets in itertools.pairwise(groups)
                  for source in sources for target in targets}
    return edges


def test_diagram_edges_reads_chains_labels_and_groups() -> None:
    text = '```mermaid\nflowchart LR\n    a --> b["B ×N<br/>x"] -.->|why| c\n    a & c -.-> d\n```\n'
    assert diagram_edges(text) == {("a", "b"), ("b", "c"), ("a", "d"), ("c", "d")}


def dag_edges(tmp_path_factory: pytest.TempPathFactory, **settings: str) -> set[tuple[str, str]]:
    """The training DAG's edges as Airflow parses dags/, with no settings from the shell or `.env` but `settings`."""
    bag = parsed_dags(tmp_path_factory, **settings)
    assert DAG_ID in bag.dags, f"the DAG does not import: {bag.import_errors}"
    return {(task.task_id, downstream) for task in bag.dags[DAG_ID].tasks for downstream in task.downstream_task_ids}


@pytest.fixture(scope="module")
def dag_graphs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, set[tuple[str, str]]]:
    return {"default": dag_edges(tmp_path_factory), "approval": dag_edges(tmp_path_factory, APPROVAL_REQUIRED="true")}


@pytest.mark.parametrize("document", DIAGRAMS)
def test_the_pipeline_diagram_is_the_dags_graph(document: str, dag_graphs: dict) -> None:
    """Without approval the DAG is the diagram minus `approve`; with it, the diagram minus the direct upload → promote
    (the approval sits between them)."""
    drawn = diagram_edges((PROJECT_ROOT / document).read_text(encoding="utf-8"))
    assert {edge for edge in drawn if APPROVAL_TASK not in edge} == dag_graphs["default"]
    assert drawn - {("upload", "promote")} == dag_graphs["approval"]


# --- the example run's figures and images (`make docs-images` draws them) ---------------------------------------
EXAMPLE_CHARTS = {f"docs/img/example-{chart.removesuffix('.png').replace('_', '-')}.png": chart
                  for chart in catalog.CHARTS}
HEADLINE_DOCUMENTS = ("README.md", "README.ru.md", "docs/results.md")


@pytest.fixture(scope="module")
def example_run(tmp_path_factory: pytest.TempPathFactory) -> RunFolder:
    """A run of the current code as `make docs-images` makes it: the bundled data, the defaults, run id example."""
    root = tmp_path_factory.mktemp("example")
    settings = load_settings(env_file=root / "none.env", data_url=BUNDLED_CSV.as_uri(), runs_dir=root / "runs",
                             results_dir=root / "results", storage_backend="local")
    run = open_run(settings, "example")
    run_all(run, settings)
    return run


@pytest.mark.parametrize("image", EXAMPLE_CHARTS)
def test_every_example_chart_in_the_docs_is_what_the_current_code_draws(example_run: RunFolder, image: str) -> None:
    assert (PROJECT_ROOT / image).read_bytes() == example_run.file(EXAMPLE_CHARTS[image]).read_bytes(), (
        f"{image} is stale: run `make docs-images`")


def headline_figures(metrics: dict) -> list[str]:
    """How the documents quote the example run: the threshold, and each headline figure with its counts and
    interval as `0.953 (82/86; 95% CI 0.885–0.987)`."""
    def quoted(name: str) -> str:
        interval = metrics["intervals"][name]
        counts = f"{interval['successes']}/{interval['trials']}; " if "successes" in interval else ""
        return f"{interval['estimate']:.3f} ({counts}95% CI {interval['lower']:.3f}–{interval['upper']:.3f})"

    return [f"{metrics['operating_threshold']:.4f}", *(quoted(name) for name in ("recall", "specificity", "roc_auc"))]


@pytest.mark.parametrize("document", HEADLINE_DOCUMENTS)
def test_the_documents_quote_the_example_run_with_its_intervals(example_run: RunFolder, document: str) -> None:
    text = (PROJECT_ROOT / document).read_text(encoding="utf-8")
    metrics = json.loads(example_run.file(catalog.METRICS).read_text())
    missing = [figure for figure in headline_figures(metrics) if figure not in text]
    assert not missing, f"{document} does not quote the example run's {missing}"
