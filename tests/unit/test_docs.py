"""The documents' links to files in the repository point at files that exist."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from utils.config import PROJECT_ROOT

DOCUMENTS = sorted([PROJECT_ROOT / "README.md", PROJECT_ROOT / "README.ru.md", *(PROJECT_ROOT / "docs").glob("*.md")])
MARKDOWN_LINK = re.compile(r"\]\(([^)\s]+)\)")
HTML_SOURCE = re.compile(r"""<img[^>]*\ssrc="([^"]+)\"""")


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
