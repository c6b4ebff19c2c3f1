"""What a DATA_URL may name, with the standard library only (the DAG file builds its data_url Param when it is
parsed, without the settings model): the project's root, the path of a file:// URL, the forms of the allowed
folders, and a JSON-schema pattern no wider than what `load` reads."""

from __future__ import annotations

import os
import re
from pathlib import Path
from urllib.parse import unquote, urlsplit

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def resolved(path: Path) -> Path:
    """`path` with its links resolved as far as they exist (`path` normalised when they loop)."""
    try:
        return path.resolve()
    except (OSError, RuntimeError):
        return Path(os.path.normpath(path))


def file_path(url: str) -> Path:
    """The path a file:// URL names, percent-decoded, as written."""
    return Path(unquote(urlsplit(url).path))


def folder_forms(folders: tuple[Path, ...]) -> set[Path]:
    """Each folder as written (normalised) and with its links resolved."""
    return {form for folder in folders for form in (Path(os.path.normpath(folder)), resolved(folder))}


def data_url_pattern(allowed_dirs: tuple[Path, ...]) -> str:
    """A JSON-schema `pattern` no wider than what `load` reads, and carrying no credentials: http(s):// with a host
    and no user:password@, or file:// followed by one of the allowed folders (as written and resolved, each also
    percent-encoded) and no `..` or percent-encoded dot; never a query or a fragment."""
    web = r"https?://[^/?#@\s]+(?:/[^?#\s]*)?"
    folders = sorted({text.rstrip("/") for folder in folder_forms(allowed_dirs)
                      for text in (str(folder), folder.as_uri().removeprefix("file://"))})
    if not folders:
        return rf"^{web}$"
    alternatives = "|".join(_regex_escaped(folder) + "/" for folder in folders)
    return rf"^(?:{web}|file://(?:{alternatives})(?!.*(?:\.\.|%2[eE]))[^?#]*)$"


def _regex_escaped(text: str) -> str:
    """`text` as a regex matching itself, in a syntax Python and JavaScript (also with the `u` flag) share."""
    return re.sub(r"([.^$*+?()\[\]{}|\\])", r"\\\1", text)
