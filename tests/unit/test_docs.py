"""The documents stay in step with the repository: their links to files point at files that exist, the README stays a
short front door with a Russian mirror of the same sections, and the pipeline diagram is the DAG's graph."""

from __future__ import annotations

import itertools
import re
from pathlib import Path

import pytest

from etl.steps import DAG_ID
from tests.unit.test_dag import parsed_dags
from utils.config import PROJECT_ROOT

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
