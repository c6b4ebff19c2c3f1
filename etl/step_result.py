"""What a step's `run(run, settings)` hands back to the runner (etl/pipeline.py)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from utils.errors import PipelineError
    from utils.telemetry import Sample


@dataclass(frozen=True)
class StepResult:
    """Fields for the step's record (`<step>.json`, beside the checksums the runner adds), the small summary a
    person reads in XCom and the CLI, the gauges to push, `failure`: an error to raise once the outputs are
    recorded (a failed quality gate: its metrics are kept, and pushed, for people), and `consumed`: inputs known
    only when the step ran (select: the candidates that succeeded)."""

    record: dict[str, Any]
    summary: dict[str, Any]
    samples: list[Sample] = field(default_factory=list)
    failure: PipelineError | None = None
    consumed: tuple[str, ...] = ()
