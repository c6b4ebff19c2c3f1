"""The interface every publisher implements."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol


@dataclass(frozen=True)
class RunBundle:
    """The files of one run to publish, under the folder name `<stamp>` (+ run id for local copies)."""

    run_id: str
    stamp: str
    files: tuple[Path, ...]
    checksums: dict[str, str] = field(default_factory=dict)


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
