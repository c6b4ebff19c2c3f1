"""Publish a run into the local results folder: `results/<stamp>_<run_id>/`, swapped in whole."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from etl.publishers.base import PublishResult, RunBundle
from utils.errors import PublishError
from utils.files import safe_run_id, verify_checksum

LATEST_LINK = "latest"


class LocalPublisher:
    """Copies the bundle into a temporary folder, checks every copy, then renames it into place.

    A repeated publish of the same run replaces the earlier folder, so readers never see a half-copied run.
    """

    name = "local"

    def __init__(self, results_dir: Path) -> None:
        self.results_dir = results_dir

    def destination(self, bundle: RunBundle) -> Path:
        return self.results_dir / f"{bundle.stamp}_{safe_run_id(bundle.run_id)}"

    def publish(self, bundle: RunBundle) -> PublishResult:
        target = self.destination(bundle)
        self.results_dir.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=self.results_dir))
        try:
            for source in bundle.files:
                copy = staging / source.name
                shutil.copy2(source, copy)
                if source.name in bundle.checksums:
                    verify_checksum(copy, bundle.checksums[source.name])
            staging.chmod(0o755)
            self._swap_in(staging, target)
        except OSError as exc:
            raise PublishError(f"could not publish run {bundle.run_id} to {target}: {exc}") from None
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        self._point_latest_at(target)
        return PublishResult(self.name, str(target), {f.name: "copied" for f in bundle.files})

    @staticmethod
    def _swap_in(staging: Path, target: Path) -> None:
        """Rename `staging` onto `target`; an existing `target` (a retry) is moved aside first, then removed."""
        if target.exists():
            retired = target.with_name(f".{target.name}.old")
            shutil.rmtree(retired, ignore_errors=True)
            os.replace(target, retired)
            os.replace(staging, target)
            shutil.rmtree(retired, ignore_errors=True)
        else:
            os.replace(staging, target)

    def _point_latest_at(self, target: Path) -> None:
        link = self.results_dir / LATEST_LINK
        tmp_link = self.results_dir / f".{LATEST_LINK}.tmp"
        tmp_link.unlink(missing_ok=True)
        tmp_link.symlink_to(target.name)
        os.replace(tmp_link, link)
