"""The pipeline's own metrics, pushed to a Prometheus Pushgateway (best effort).

Batch-job convention: one group per step under the job named as the DAG (etl/steps.py's DAG_ID,
`breast_cancer_pipeline`), never per run id, which would grow the gateway forever. A missing or failing gateway
is logged as a warning and never fails a step.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Gauge, pushadd_to_gateway

from etl.steps import DAG_ID
from utils.config import Settings, scrubbed, shown
from utils.logger import get_logger

JOB = DAG_ID  # the dashboards and alert rules select job="breast_cancer_pipeline"
PUSH_TIMEOUT_SECONDS = 5.0
log = get_logger("telemetry")


@dataclass(frozen=True)
class Sample:
    """One gauge value: `pipeline_<name>{labels} value`."""

    name: str
    value: float
    labels: dict[str, str] = field(default_factory=dict)
    help: str = ""


def step_samples(step: str, duration_seconds: float, succeeded: bool) -> list[Sample]:
    """Duration and last success/failure time of one step run."""
    outcome = "success" if succeeded else "failure"
    return [
        Sample("step_duration_seconds", duration_seconds, {"step": step}, "Wall time of the step's last run."),
        Sample(f"step_last_{outcome}_timestamp_seconds", time.time(), {"step": step},
               f"Unix time of the step's last {outcome}."),
    ]


def build_registry(samples: list[Sample]) -> CollectorRegistry:
    """A registry holding one gauge per sample name (samples sharing a name must share label names)."""
    registry = CollectorRegistry()
    gauges: dict[str, Gauge] = {}
    for sample in samples:
        gauge = gauges.get(sample.name)
        if gauge is None:
            gauge = Gauge(f"pipeline_{sample.name}", sample.help or sample.name,
                          labelnames=sorted(sample.labels), registry=registry)
            gauges[sample.name] = gauge
        (gauge.labels(**sample.labels) if sample.labels else gauge).set(sample.value)
    return registry


def push_metrics(settings: Settings, step: str, samples: list[Sample]) -> bool:
    """Push `samples` to PUSHGATEWAY_URL in the step's group; returns whether the push happened."""
    if not settings.pushgateway_url or not samples:
        return False
    try:
        pushadd_to_gateway(settings.pushgateway_url, job=JOB, grouping_key={"step": step},
                           registry=build_registry(samples), timeout=PUSH_TIMEOUT_SECONDS)
    except Exception as exc:  # best effort by design: monitoring must never fail the pipeline
        url = settings.pushgateway_url
        log.warning("could not push metrics of step %s to %s: %s", step, shown("PUSHGATEWAY_URL", url),
                    scrubbed(str(exc), "PUSHGATEWAY_URL", url))
        return False
    return True
