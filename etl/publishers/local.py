"""Publish a run into the local results folder: `results/<stamp>_<run_id>/`, swapped in whole."""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from etl.publishers.base import PublishResult, RunBundle
from utils.errors import PublishError
from utils.files import no_space_note, sha256_file, verify_checksum
from utils.logger import get_logger

LATEST_LINK = "latest"
STAMP_CHARS = len("YYYYMMDD_HHMMSS")  # a published name starts with its run's start stamp, which sorts as text
STAMPED_NAME = re.compile(r"\d{8}_\d{6}_.+")
AT_FDCWD = -100  # <fcntl.h>: paths relative to the working directory
RENAME_EXCHANGE = 2  # <linux/fs.h>: swap the two names in one step
UNSUPPORTED_EXCHANGE = (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP)
_renameat2 = getattr(ctypes.CDLL(None, use_errno=True), "renameat2", None)
if _renameat2 is not None:
    _renameat2.argtypes = (ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint)
    _renameat2.restype = ctypes.c_int
log = get_logger("publish")


def exchange(first: Path, second: Path) -> None:
    """Swap two existing paths atomically (Linux renameat2 with RENAME_EXCHANGE), or raise OSError."""
    if _renameat2 is None:
        raise OSError(errno.ENOSYS, "renameat2() is not available: it needs Linux with glibc 2.28 or later",
                      str(first), None, str(second))
    if _renameat2(AT_FDCWD, os.fsencode(first), AT_FDCWD, os.fsencode(second), RENAME_EXCHANGE) != 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code), str(first), None, str(second))


def exchange_hint(exc: OSError, results_dir: Path) -> str:
    """What to do when the results folder's file system cannot exchange two folders; "" for other errors."""
    if exc.errno not in UNSUPPORTED_EXCHANGE:
        return ""
    return (f". RESULTS_DIR={results_dir} must be on a Linux file system that can swap two folders atomically "
            "(renameat2 RENAME_EXCHANGE: ext4, xfs, btrfs, tmpfs, overlayfs; not NFS), so that a republished run "
            "never goes missing; the folder published before was left as it was")


def publish_error(doing: str, exc: OSError, results_dir: Path, hint: str = "") -> PublishError:
    """The PublishError for `exc` met while `doing`: a full disk in words (`no_space_note`: RESULTS_DIR, its free
    and total space, the errno), not retried, since the disk stays full until someone frees space; any other error
    as it is, then `hint`."""
    note = no_space_note(exc, results_dir)
    error = PublishError(f"{doing}: {note or exc}{'' if note else hint}")
    error.transient = not note
    return error


@contextlib.contextmanager
def held_folder(folder: Path) -> Iterator[None]:
    """Hold `folder` against other processes doing the same (a blocking `flock` on the folder itself: no lock
    file is left beside the published runs; the kernel drops it when the holder exits or is killed)."""
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def started_later(name: str, than: str) -> bool:
    """Whether the published run `name` started after the one named `than` (by their start stamps)."""
    return name[:STAMP_CHARS] > than[:STAMP_CHARS]


def holds(folder: Path, bundle: RunBundle) -> bool:
    """Whether `folder` is a real folder holding exactly the bundle's files, each with its recorded sha256."""
    names = {path.name for path in bundle.files}
    if folder.is_symlink() or not folder.is_dir() or set(bundle.checksums) != names:
        return False
    return ({path.name for path in folder.iterdir()} == names
            and all(sha256_file(folder / name) == bundle.checksums[name] for name in names))


class LocalPublisher:
    """Copies the bundle into a staging folder beside the target, checks every copy, then swaps it into place.

    A republish (e.g. an upload retried after Drive failed) must replace a folder that readers may be using, and
    a kill may come at any moment. Two renames (old aside, new in) leave a moment without the folder, which a
    kill makes last until the next publish. Making `<stamp>_<run_id>` a symlink to a content folder would fix
    that, but turns the published run into a link that `cp -r`, rsync, zip and Docker volume browsers copy as a
    link. So the staging folder and the published one are exchanged in one step (renameat2 RENAME_EXCHANGE):
    the name always holds a complete copy, old or new. The old copy, now under the staging name, is removed
    next; whatever a kill leaves as `.<stamp>_<run_id>.*` the next publish of the same run removes first.
    A folder that already holds exactly the bundle (a retry) is left alone. Where the exchange is not available
    (not Linux, NFS) a republish of changed files fails with a clear error and the published folder stays as it
    was; a first publish is one rename and works everywhere. A full disk removes the staging copy and fails with
    RESULTS_DIR's free space named; the published runs and `latest` stay as they were.
    """

    name = "local"

    def __init__(self, results_dir: Path) -> None:
        self.results_dir = results_dir

    def destination(self, bundle: RunBundle) -> Path:
        return self.results_dir / bundle.name

    def publish(self, bundle: RunBundle) -> PublishResult:
        target = self.destination(bundle)
        try:
            self.results_dir.mkdir(parents=True, exist_ok=True)
            self._remove_leftovers(target)
            outcome = "skipped" if holds(target, bundle) else "copied"
            if outcome == "copied":
                self._copy_in(bundle, target)
        except OSError as exc:
            raise publish_error(f"could not publish run {bundle.run_id} to {target}", exc, self.results_dir,
                                exchange_hint(exc, self.results_dir)) from None
        return PublishResult(self.name, str(target), {f.name: outcome for f in bundle.files})

    def point_latest_at(self, bundle: RunBundle) -> Path:
        """Point `results/latest` at the bundle's folder in one rename, unless it names a published run that started
        later (runs publishing at the same time: the newest run wins, not the last to finish; of two runs that
        started in the same second, the later publication); upload calls it once every backend has the run."""
        target = self.destination(bundle)
        link = self.results_dir / LATEST_LINK
        staged_link = self.results_dir / f".{target.name}.{LATEST_LINK}"
        try:
            with held_folder(self.results_dir):
                newer = self._latest_run(link)
                if newer and started_later(newer, target.name):
                    log.info("%s stays at %s: run %s started earlier", link, newer, bundle.run_id)
                    return link
                staged_link.unlink(missing_ok=True)
                staged_link.symlink_to(target.name)
                os.replace(staged_link, link)
        except OSError as exc:
            raise publish_error(f"could not point {link} at {target}", exc, self.results_dir) from None
        return link

    def _latest_run(self, link: Path) -> str:
        """The published run that `link` names, "" when it names none (missing, dangling, not a run's folder)."""
        if not link.is_symlink():
            return ""
        name = os.readlink(link)
        folder = self.results_dir / name
        published = STAMPED_NAME.fullmatch(name) and folder.is_dir() and not folder.is_symlink()
        return name if published else ""

    def _remove_leftovers(self, target: Path) -> None:
        """Remove what killed publishes of this run left: `.<target name>.<word>` staging copies and links."""
        # Only this run's. <word> (mkdtemp's random part, or "latest") has no dot, so `.<target>.b.x1y2` of a run
        # whose folder is `<target>.b` (a run id with a dot, maybe publishing right now) never matches.
        own = re.compile(rf"\.{re.escape(target.name)}\.[^.]+")
        for path in self.results_dir.iterdir():
            if not own.fullmatch(path.name):
                continue
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink()

    def _copy_in(self, bundle: RunBundle, target: Path) -> None:
        """Copy and check the bundle in a staging folder, then put it in place of `target`."""
        staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=self.results_dir))
        try:
            for source in bundle.files:
                copy = staging / source.name
                shutil.copy2(source, copy)
                if source.name in bundle.checksums:
                    verify_checksum(copy, bundle.checksums[source.name])
            staging.chmod(0o755)
            self._swap_in(staging, target)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)  # the error goes on; what stays, the next publish removes
            raise

    @staticmethod
    def _swap_in(staging: Path, target: Path) -> None:
        """Put `staging` at `target`: a rename the first time, an exchange then removing the old copy after."""
        if not os.path.lexists(target):
            os.rename(staging, target)
            return
        exchange(staging, target)
        shutil.rmtree(staging)
