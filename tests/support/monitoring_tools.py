"""Helpers for the stack's tests: external tools and servers, and a stand-in for the statsd-exporter.

There is no statsd_exporter binary here (not packaged by Debian or PyPI), so `StatsdExporter` implements the
subset of its behaviour that monitoring/statsd/mapping.yml uses, and fails loudly on anything else:

- line protocol `name:value|type[|@rate]`, several lines per packet; types c (counter), g (gauge, `+`/`-` for a
  change), ms/h/d (timer: milliseconds, exported in seconds as a histogram);
- `defaults`: match_type glob, observer_type histogram, histogram_options.buckets, ttl (ignored),
  glob_disable_ordering false (the pre-0.20 keys timer_type and buckets are refused: newer exporters drop them);
- mappings with match, name, help, labels, action (map or drop), histogram_options.buckets, match_metric_type;
- glob matching: the name and the pattern have the same number of dot-separated parts; `*` matches one or more
  characters inside one part (a whole part or its end, as in `operator_failures_*`); the first mapping in file
  order that matches wins; `$n` and `${n}` in name and labels are the n-th `*`;
- names no mapping matches are exported with every character outside [a-zA-Z0-9_] turned into `_`, no labels;
- one metric name always has one type and one set of label names (the exporter refuses the others).

`airflow_statsd_lines()` writes the packets a real Airflow sends for a metric, from the metric registry shipped
inside the installed Airflow (plain name plus legacy name carrying the ids). Captured packets from a running
Airflow can be fed to `StatsdExporter.feed()` the same way.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import pytest
import yaml

from utils.config import PROJECT_ROOT

MONITORING = PROJECT_ROOT / "monitoring"
STATSD_MAPPING = MONITORING / "statsd" / "mapping.yml"
PROMETHEUS_DIR = MONITORING / "prometheus"
DASHBOARDS_DIR = MONITORING / "grafana" / "dashboards"
STATSD_PREFIX = "airflow"


# --- tools and processes -------------------------------------------------------------------------------------

def missing_tool(message: str) -> NoReturn:
    """A tool the test needs is missing: fail under CI=true, skip otherwise."""
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


def require_tool(name: str) -> str:
    """Path of the command `name`; a missing tool fails the test under CI=true and skips it otherwise."""
    path = shutil.which(name)
    if path is None:
        missing_tool(f"{name} is not installed (make system-deps installs the Debian tools the tests use)")
    return path


def http_get(url: str, timeout: float = 5.0) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return response.read()


# --- Prometheus ------------------------------------------------------------------------------------------------

def prometheus_query(base_url: str, expression: str) -> list[dict[str, Any]]:
    """Evaluate `expression` now through the HTTP API; fail the test with Prometheus' error if it is rejected."""
    url = f"{base_url}/api/v1/query?" + urllib.parse.urlencode({"query": expression})
    try:
        answer = json.loads(http_get(url))
    except urllib.error.HTTPError as error:
        pytest.fail(f"Prometheus rejected {expression!r}: {error.read().decode(errors='replace')}")
    assert answer["status"] == "success", answer
    return answer["data"]["result"]


def loopback_prometheus_config(targets: dict[str, str], interval: str, folder: Path) -> Path:
    """The project's prometheus.yml with each job's targets moved to `targets[job]` (host:port on loopback),
    a short scrape interval and the rules read from the project; written into `folder`."""
    config = yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text(encoding="utf-8"))
    config["global"].update(scrape_interval=interval, evaluation_interval=interval)
    config["rule_files"] = [str(PROMETHEUS_DIR / pattern) for pattern in config["rule_files"]]
    for job in config["scrape_configs"]:
        job["static_configs"] = [{"targets": [targets[job["job_name"]]]}]
    path = folder / "prometheus.yml"
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return path


# --- where the PromQL lives ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Query:
    """One PromQL expression of a dashboard panel or an alert rule."""

    source: str  # "<dashboard file>: <panel title> [<refId>]" or "<rules file>: <alert>"
    expression: str
    panel: str = ""
    ref_id: str = ""


def dashboard_queries(path: Path) -> list[Query]:
    """Every target expression of every panel (rows included) of a Grafana dashboard JSON file."""
    board = json.loads(path.read_text(encoding="utf-8"))
    panels = [*board["panels"], *(inner for panel in board["panels"] for inner in panel.get("panels", []))]
    return [Query(f"{path.name}: {panel['title']} [{target['refId']}]", target["expr"], panel["title"],
                  target["refId"])
            for panel in panels for target in panel.get("targets", [])]


def rule_queries(path: Path) -> list[Query]:
    """Every rule expression of a Prometheus rules file."""
    groups = yaml.safe_load(path.read_text(encoding="utf-8"))["groups"]
    return [Query(f"{path.name}: {rule.get('alert') or rule.get('record')}", rule["expr"])
            for group in groups for rule in group["rules"]]


def all_queries() -> list[Query]:
    """The expressions of every dashboard and every rules file of the project."""
    return ([query for path in sorted(DASHBOARDS_DIR.glob("*.json")) for query in dashboard_queries(path)]
            + [query for path in sorted((PROMETHEUS_DIR / "rules").glob("*.yml")) for query in rule_queries(path)])


def series_names(expression: str, prefix: str) -> set[str]:
    """Metric names starting with `prefix` in a PromQL expression (the project's own series all do)."""
    return set(re.findall(rf"\b{re.escape(prefix)}[a-zA-Z0-9_]*", expression))


# --- the statsd-exporter stand-in ------------------------------------------------------------------------------

TYPES = {"c": "counter", "g": "gauge", "ms": "timer", "h": "timer", "d": "timer"}
MAPPING_KEYS = {"match", "name", "help", "labels", "action", "histogram_options", "match_metric_type"}
DEFAULT_KEYS = {"match_type", "observer_type", "histogram_options", "ttl", "glob_disable_ordering"}
HISTOGRAM_OPTION_KEYS = {"buckets"}
CAPTURE = re.compile(r"\$\{(\d+)\}|\$(\d+)")


@dataclass(frozen=True)
class StatsdSample:
    """One parsed StatsD line."""

    name: str
    kind: str  # counter, gauge or timer
    value: float
    delta: bool = False  # a gauge change (+n / -n) rather than a new value


@dataclass(frozen=True)
class Mapped:
    """What the exporter makes of one StatsD name: a Prometheus name and labels, or a drop."""

    name: str
    labels: tuple[tuple[str, str], ...] = ()
    dropped: bool = False
    buckets: tuple[float, ...] = ()


def parse_statsd(packet: str) -> list[StatsdSample]:
    """The samples of a StatsD packet (lines `name:value|type[|@rate]`); anything else raises ValueError."""
    samples = []
    for line in filter(None, packet.splitlines()):
        name, _, rest = line.partition(":")
        parts = rest.split("|")
        if not name or len(parts) < 2 or parts[1] not in TYPES:
            raise ValueError(f"not a StatsD line this stand-in understands: {line!r}")
        rate = next((float(part[1:]) for part in parts[2:] if part.startswith("@")), 1.0)
        kind, text = TYPES[parts[1]], parts[0]
        value = float(text)
        if kind == "counter":
            value /= rate
        samples.append(StatsdSample(name, kind, value, delta=kind == "gauge" and text[:1] in "+-"))
    return samples


def _glob_regex(pattern: str) -> re.Pattern[str]:
    parts = [re.escape(part).replace(r"\*", "([^.]+)") for part in pattern.split(".")]
    return re.compile(r"\.".join(parts) + r"\Z")


def _expand(template: str, captures: tuple[str, ...]) -> str:
    return CAPTURE.sub(lambda match: captures[int(match.group(1) or match.group(2)) - 1], template)


def _buckets(section: dict[str, Any], default: tuple[float, ...]) -> tuple[float, ...]:
    return tuple(section.get("histogram_options", {}).get("buckets", default))


def escape_name(name: str) -> str:
    """The exporter's name for an unmapped StatsD metric."""
    escaped = re.sub(r"[^a-zA-Z0-9_]", "_", name)
    return f"_{escaped}" if escaped[:1].isdigit() else escaped


@dataclass
class StatsdMapping:
    """A statsd-exporter mapping file, checked to use only the emulated subset."""

    rules: list[tuple[re.Pattern[str], dict[str, Any]]]
    default_buckets: tuple[float, ...]

    @classmethod
    def load(cls, path: Path = STATSD_MAPPING) -> StatsdMapping:
        config = yaml.safe_load(path.read_text(encoding="utf-8"))
        defaults = config.get("defaults", {})
        problems = [f"defaults.{key}" for key in set(defaults) - DEFAULT_KEYS]
        problems += [f"defaults.histogram_options.{key}"
                     for key in set(defaults.get("histogram_options", {})) - HISTOGRAM_OPTION_KEYS]
        if defaults.get("match_type", "glob") != "glob" or defaults.get("observer_type") != "histogram":
            problems.append("defaults: match_type must be glob and observer_type histogram")
        if defaults.get("glob_disable_ordering"):
            problems.append("defaults.glob_disable_ordering")
        for number, mapping in enumerate(config["mappings"], start=1):
            problems += [f"mapping {number} ({mapping.get('match')}): {key}" for key in set(mapping) - MAPPING_KEYS]
            problems += [f"mapping {number}: histogram_options.{key}"
                         for key in set(mapping.get("histogram_options", {})) - HISTOGRAM_OPTION_KEYS]
            if "match" not in mapping or "name" not in mapping:
                problems.append(f"mapping {number}: needs match and name")
        if problems:
            raise ValueError(f"{path} uses what the stand-in does not emulate: {'; '.join(problems)}")
        rules = [(_glob_regex(str(mapping["match"])), mapping) for mapping in config["mappings"]]
        return cls(rules, _buckets(defaults, ()))

    def map(self, name: str, kind: str) -> Mapped:
        """The Prometheus name and labels of StatsD metric `name` of type `kind`; the first matching rule wins."""
        for pattern, mapping in self.rules:
            if mapping.get("match_metric_type", kind) != kind:
                continue
            found = pattern.match(name)
            if found is None:
                continue
            if mapping.get("action", "map") == "drop":
                return Mapped(name="", dropped=True)
            captures = found.groups()
            labels = tuple(sorted((key, _expand(str(value), captures))
                                  for key, value in mapping.get("labels", {}).items()))
            return Mapped(_expand(str(mapping["name"]), captures), labels,
                          buckets=_buckets(mapping, self.default_buckets))
        return Mapped(escape_name(name), buckets=self.default_buckets)


@dataclass
class _Series:
    kind: str
    buckets: tuple[float, ...]
    value: float = 0.0
    observations: list[float] = field(default_factory=list)


class StatsdExporter:
    """Accumulates StatsD samples through a mapping and renders Prometheus' text format, like the exporter."""

    def __init__(self, mapping: StatsdMapping) -> None:
        self.mapping = mapping
        self.series: dict[tuple[str, tuple[tuple[str, str], ...]], _Series] = {}
        self.signatures: dict[str, tuple[str, tuple[str, ...]]] = {}

    def feed(self, packets: Iterable[str]) -> None:
        for packet in packets:
            for sample in parse_statsd(packet):
                self.add(sample)

    def add(self, sample: StatsdSample) -> None:
        mapped = self.mapping.map(sample.name, sample.kind)
        if mapped.dropped:
            return
        signature = (sample.kind, tuple(key for key, _ in mapped.labels))
        known = self.signatures.setdefault(mapped.name, signature)
        if known != signature:
            raise ValueError(f"{sample.name} maps to {mapped.name} as {signature}, already seen as {known}: "
                             "the exporter would refuse it")
        series = self.series.setdefault((mapped.name, mapped.labels), _Series(sample.kind, mapped.buckets))
        if sample.kind == "counter":
            series.value += sample.value
        elif sample.kind == "gauge":
            series.value = series.value + sample.value if sample.delta else sample.value
        else:
            series.observations.append(sample.value / 1000.0)

    def exposition(self) -> str:
        """The /metrics page."""
        lines = []
        for name in sorted(self.signatures):
            kind = self.signatures[name][0]
            lines.append(f"# TYPE {name} {'histogram' if kind == 'timer' else kind}")
            for (series_name, labels), series in sorted(self.series.items()):
                if series_name == name:
                    lines += _series_lines(name, dict(labels), series)
        return "\n".join(lines) + "\n"

    def names(self) -> set[str]:
        """Every exported series name (histograms as their _bucket, _sum and _count series)."""
        return {f"{name}{suffix}" for name, (kind, _) in self.signatures.items()
                for suffix in (("_bucket", "_sum", "_count") if kind == "timer" else ("",))}


def _labels_text(labels: dict[str, str]) -> str:
    if not labels:
        return ""
    escaped = (value.replace("\\", r"\\").replace('"', r"\"").replace("\n", r"\n") for value in labels.values())
    return "{" + ",".join(f'{key}="{value}"' for key, value in zip(labels, escaped, strict=True)) + "}"


def _series_lines(name: str, labels: dict[str, str], series: _Series) -> list[str]:
    if series.kind != "timer":
        return [f"{name}{_labels_text(labels)} {series.value!r}"]
    lines = [f"{name}_bucket{_labels_text({**labels, 'le': repr(bound)})} "
             f"{sum(value <= bound for value in series.observations)}" for bound in series.buckets]
    lines.append(f"{name}_bucket{_labels_text({**labels, 'le': '+Inf'})} {len(series.observations)}")
    lines.append(f"{name}_sum{_labels_text(labels)} {sum(series.observations)!r}")
    lines.append(f"{name}_count{_labels_text(labels)} {len(series.observations)}")
    return lines


# --- what a real Airflow sends ---------------------------------------------------------------------------------

STATSD_SUFFIX = {"counter": "c", "gauge": "g", "timer": "ms"}


def airflow_metric_registry() -> dict[str, dict[str, Any]]:
    """The installed Airflow's metric registry (name -> type, legacy_name, name_variables)."""
    spec = importlib.util.find_spec("airflow")  # finds the package without importing it (which takes seconds)
    assert spec is not None and spec.origin is not None, "Airflow is not installed"
    template = Path(spec.origin).parent / "_shared" / "observability" / "metrics" / "metrics_template.yaml"
    return {metric["name"]: metric for metric in yaml.safe_load(template.read_text(encoding="utf-8"))["metrics"]}


def airflow_statsd_lines(registry: dict[str, dict[str, Any]], stat: str, value: float,
                         **tags: str) -> list[str]:
    """The StatsD lines Airflow sends for `stat` with `tags` (legacy names on, no tag support): the legacy name
    with the ids in it (dots in ids become `__`), then the plain name."""
    metric = registry[stat]
    suffix = STATSD_SUFFIX[metric["type"]]
    ids = {key: str(tags[key]).replace(".", "__") for key in metric["name_variables"]}
    names = [stat.format(**ids)]  # a few plain names carry a variable too, e.g. "{job_name}_start"
    if metric.get("legacy_name", "-") != "-":
        names.insert(0, metric["legacy_name"].format(**ids))
    return [f"{STATSD_PREFIX}.{name}:{value:g}|{suffix}" for name in names]
