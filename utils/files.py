"""File helpers: atomic writes (temp file + rename), reading only regular files, JSON artifacts and checksums, and
the words for a full disk."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import io
import json
import os
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

from utils.errors import ArtifactError, DiskFullError, UnsafeFileError

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")  # what makes a spreadsheet read a cell as a formula
_KINDS = ((stat.S_ISLNK, "a symbolic link"), (stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
          (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
          (stat.S_ISREG, "a regular file"))
NO_SPACE = {errno.ENOSPC: ("no space left on", "free space there"),  # errno -> what happened, what to do
            errno.EDQUOT: ("the disk quota is used up on", "free space there or raise the quota")}
SIZE_UNITS = ("B", "KiB", "MiB", "GiB", "TiB", "PiB")


def human_size(size: int) -> str:
    """`size` bytes for people: '0 B', '1023 B', '1.5 KiB', '12 KiB', '64 MiB'."""
    power = 0
    while power < len(SIZE_UNITS) - 1 and size >= 1024 ** (power + 1):
        power += 1
    value = size / 1024 ** power
    shown = f"{value:.1f}".removesuffix(".0") if power and value < 10 else f"{value:.0f}"
    return f"{shown} {SIZE_UNITS[power]}"


def space_left(folder: Path) -> str:
    """'12 KiB free of 64 MiB': the space the file system holding `folder` (or its nearest existing parent) has
    left for ordinary users, and its size; "" when it cannot be read."""
    existing = next((path for path in (folder, *folder.parents) if path.is_dir()), folder)
    try:
        fs = os.statvfs(existing)
    except OSError:
        return ""
    return f"{human_size(fs.f_bavail * fs.f_frsize)} free of {human_size(fs.f_blocks * fs.f_frsize)}"


def no_space_note(exc: BaseException, folder: Path) -> str:
    """What to do when a write into `folder` failed for want of space (ENOSPC, EDQUOT), in words a data engineer
    acts on: 'no space left on the file system holding /opt/airflow/results (12 KiB free of 64 MiB; ENOSPC): free
    space there, then retry the task'; "" for any other error. The one place these words are made: atomic writes
    (DiskFullError) and the local publisher (PublishError) add it to their errors."""
    code = getattr(exc, "errno", None)
    if not isinstance(exc, OSError) or code not in NO_SPACE:
        return ""
    what, remedy = NO_SPACE[code]
    space = space_left(folder)
    return (f"{what} the file system holding {folder} ({space + '; ' if space else ''}{errno.errorcode[code]}): "
            f"{remedy}, then retry the task")


@contextlib.contextmanager
def writing(target: Path) -> Iterator[None]:
    """Raise a full disk (ENOSPC, EDQUOT) met while `target` is written as DiskFullError: 'could not write
    <target>: <no_space_note of its folder>', the original errno kept; other errors pass as they are."""
    try:
        yield
    except DiskFullError:
        raise
    except OSError as exc:
        note = no_space_note(exc, target.parent)
        if not note:
            raise
        raise DiskFullError(exc.errno, f"could not write {target}: {note}", str(target)) from None


@contextlib.contextmanager
def atomic_path(target: Path) -> Iterator[Path]:
    """Yield a temporary path beside `target`; on success it is renamed onto `target`, on error removed.

    Readers therefore see either the old file or the complete new one, never a half-written file. A full disk
    raises DiskFullError naming the folder and its free space (`writing`), once the temporary file is removed.
    """
    with writing(target):
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
        os.close(fd)
        tmp = Path(tmp_name)
        try:
            tmp.chmod(0o644)  # mkstemp makes 0600; artifacts are shared with other services and users
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


def write_model_atomic(model: object, target: Path) -> str:
    """Dump a fitted model with joblib to `target` atomically; returns its sha256 (what loads it checks first)."""
    import joblib  # not at import time: the DAG file's imports reach this module

    with atomic_path(target) as tmp:
        joblib.dump(model, tmp)
    return sha256_file(target)


def load_model(content: bytes, expected_sha256: str, source: Path, recorded_by: str, written: str,
               remedy: str) -> Any:
    """The one place a model is unpickled (joblib runs code): from `content`, the bytes of `source` as they were
    read, only when their sha256 is `expected_sha256`, which `recorded_by` recorded when the file was `written`
    (published, or written by its step). Otherwise ArtifactError ending with `remedy`, and nothing is loaded."""
    actual = sha256_bytes(content)
    if actual != expected_sha256:
        raise ArtifactError(f"{source} has sha256 {actual[:12]}…, but {recorded_by} records {expected_sha256[:12]}…: "
                            f"it changed after {written}; {remedy}")
    import joblib  # not at import time: the DAG file's imports reach this module

    return joblib.load(io.BytesIO(content))


def kind_of(mode: int) -> str:
    """What a `stat` mode describes, for people: 'a symbolic link', 'a FIFO (named pipe)', 'a regular file', ..."""
    return next((kind for test, kind in _KINDS if test(mode)), "not a regular file")


def regular_handle(path: Path) -> BinaryIO:
    """`path` opened for reading, only when it is a regular file itself: a symbolic link is not followed
    (O_NOFOLLOW), a FIFO cannot block the open (O_NONBLOCK), and what the opened descriptor turns out to be is
    checked (fstat), not what the name looked like a moment earlier. Anything else raises UnsafeFileError naming
    the path and what it is, without a byte of it read; a missing file raises FileNotFoundError. The caller
    closes the handle (`with regular_handle(path) as handle:`)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENXIO):  # a link (O_NOFOLLOW), a socket
            raise UnsafeFileError(f"{path} is {kind_of(os.lstat(path).st_mode)}; expected a regular file "
                                  "(links are never followed)") from None
        raise
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        raise UnsafeFileError(f"{path} is {kind_of(mode)}; expected a regular file")
    return os.fdopen(fd, "rb")


def read_regular(path: Path) -> bytes:
    """The bytes of the regular file `path` (see `regular_handle`)."""
    with regular_handle(path) as handle:
        return handle.read()


def read_json(path: Path) -> Any:
    """Read a JSON artifact (a regular file, never through a link), with an error naming the file when it is
    missing or unreadable."""
    try:
        return json.loads(read_regular(path).decode("utf-8"))
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
    with regular_handle(path) as handle:
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


def spreadsheet_cell(value: Any) -> Any:
    """`value` as a CSV cell that a spreadsheet shows and never runs: text starting with `= + - @`, a tab or a
    carriage return gets a leading `'` (the usual CSV-injection rule); numbers, and text that reads as one
    (`-0.5`), stay as they are. Idempotent."""
    if not isinstance(value, str) or not value.startswith(FORMULA_STARTS):
        return value
    try:
        float(value)
    except ValueError:
        return f"'{value}"
    return value
