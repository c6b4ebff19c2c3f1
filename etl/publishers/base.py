"""The interface every publisher implements."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from utils.files import safe_run_id


@dataclass(frozen=True)
class RunBundle:
    """The files of one run to publish, in a folder named `<stamp>_<run id>` on every backend."""

    run_id: str
    stamp: str
    files: tuple[Path, ...]
    checksums: dict[str, str] = field(default_factory=dict)

    @property
    def folder_name(self) -> str:
        """`<stamp>_<run id made safe for a file name>`: readable, and unique per run even for equal stamps."""
        return f"{self.stamp}_{safe_run_id(self.run_id)}"


@dataclass(frozen=True)
class PublishResult:
    """Where a publisher put the run, and what it did with each file ("uploaded", "replaced", "skipped"...)."""

    backend: str
    location: str
    files: dict[str, str]


class Publisher(Protocol):
    """A destination for a run's artifacts. `publish` must be idempotent for the same bundle."""

    name: str

    def publish(self, bundle: RunBundle) -> PublishResult:
        """Publish every file of `bundle`; raise PublishError (or ConfigError) when it cannot."""
        ...
