"""File helpers: atomic writes (temp file + rename), JSON artifacts and checksums."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from utils.errors import ArtifactError


@contextlib.contextmanager
def atomic_path(target: Path) -> Iterator[Path]:
    """Yield a temporary path beside `target`; on success it is renamed onto `target`, on error removed.

    Readers therefore see either the old file or the complete new one, never a half-written file.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    tmp.chmod(0o644)  # mkstemp makes 0600; artifacts are shared with other services and users
    try:
        yield tmp
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def write_bytes_atomic(target: Path, data: bytes) -> Path:
    """Write `data` to `target` atomically."""
    with atomic_path(target) as tmp:
        tmp.write_bytes(data)
    return target


def write_text_atomic(target: Path, text: str) -> Path:
    """Write UTF-8 `text` to `target` atomically."""
    return write_bytes_atomic(target, text.encode("utf-8"))


def write_json_atomic(target: Path, payload: Any) -> Path:
    """Write `payload` as indented, key-sorted JSON to `target` atomically."""
    return write_text_atomic(target, json.dumps(payload, indent=2, sort_keys=True, default=str) + "\n")


def read_json(path: Path) -> Any:
    """Read a JSON artifact, with an error naming the file when it is missing or unreadable."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ArtifactError(f"{path} is missing: run the step that writes it first") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ArtifactError(f"{path} is not valid JSON: {exc}") from None


def sha256_bytes(data: bytes) -> str:
    """Hex sha256 of `data`."""
    return hashlib.sha256(data).hexdigest()


def file_digest(path: Path, algorithm: str) -> str:
    """Hex digest of a file, read in chunks; `algorithm` as hashlib names it ("sha256", "md5", ...).

    Checksums here detect corruption, not attacks, hence `usedforsecurity=False` (md5 stays usable on FIPS hosts).
    """
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, lambda: hashlib.new(algorithm, usedforsecurity=False)).hexdigest()


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file: the checksum the pipeline records for every artifact."""
    return file_digest(path, "sha256")


def require_file(path: Path, produced_by: str) -> Path:
    """Return `path` if it exists, else raise an error naming the step that should have written it."""
    if not path.is_file():
        raise ArtifactError(f"{path} is missing: it is written by the '{produced_by}' step, run that first")
    return path


def verify_checksum(path: Path, expected_sha256: str) -> None:
    """Raise ArtifactError when the file's sha256 differs from the recorded one."""
    actual = sha256_file(path)
    if actual != expected_sha256:
        raise ArtifactError(f"{path} has sha256 {actual}, but {expected_sha256} was recorded: "
                            "the file changed after it was written; rerun the step that writes it")
