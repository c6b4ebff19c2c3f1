"""The interface every publisher implements."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol


@dataclass(frozen=True)
class RunBundle:
    """The files of one run to publish, in a folder called `name` (RunFolder.published_name) on every backend."""

    run_id: str
    name: str
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

    def publish_pointer(self, path: Path) -> str:
        """Put the file `path` (the champion pointer) at the top of the destination, replacing the one there; its
        location."""
        ...
