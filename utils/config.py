"""Every setting of the pipeline in one typed object, read from the environment and an optional `.env` file.

Precedence: explicit overrides (Airflow Params, CLI flags) > environment variables > `.env` > defaults.
A value that cannot be parsed or is out of range raises `ConfigError` naming the variable.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from utils.errors import ConfigError

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATA_URL = "https://raw.githubusercontent.com/selva86/datasets/master/BreastCancer.csv"
MODELS = ("logreg", "random_forest", "gradient_boosting", "svm")
STORAGE_BACKENDS = ("local", "gdrive", "auto")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


def _env(name: str, help_text: str, **kwargs: Any) -> Any:
    """A dataclass field bound to an environment variable, with a one-line description."""
    return field(metadata={"env": name, "help": help_text}, **kwargs)


@dataclass(frozen=True)
class Settings:
    """The pipeline's settings; build it with `load_settings()`."""

    data_url: str = _env("DATA_URL", "Where `load` downloads the CSV from (http(s):// or file://).",
                         default=DEFAULT_DATA_URL)
    data_fallback: bool = _env("DATA_FALLBACK", "Use the bundled CSV when DATA_URL fails (false = strict mode).",
                               default=True)
    data_sha256: str = _env("DATA_SHA256", "If set, the loaded file must have this sha256.", default="")
    bundled_data_path: Path = _env("BUNDLED_DATA_PATH", "The offline copy of the data set.",
                                   default=PROJECT_ROOT / "data" / "BreastCancer.csv")
    download_timeout: float = _env("DOWNLOAD_TIMEOUT", "Seconds before one download attempt is abandoned.",
                                   default=30.0)
    download_retries: int = _env("DOWNLOAD_RETRIES", "Download attempts after the first one.", default=3)
    download_backoff: float = _env("DOWNLOAD_BACKOFF", "Seconds before the first retry; doubles each time.",
                                   default=1.0)
    runs_dir: Path = _env("RUNS_DIR", "Per-run working folders: <RUNS_DIR>/<run_id>/.",
                          default=PROJECT_ROOT / "data" / "runs")
    results_dir: Path = _env("RESULTS_DIR", "Where `upload` publishes each run locally.",
                             default=PROJECT_ROOT / "results")
    run_id: str = _env("RUN_ID", "Names the run's folder; steps run one by one share it.", default="local")
    run_started_at: str = _env("RUN_STARTED_AT",
                               "ISO-8601 start of the run, naming its published folders (Airflow sets it from "
                               "the run's logical date); empty: the time `load` runs.", default="")
    seed: int = _env("SEED", "Random seed for the split, cross-validation and the model.", default=42)
    test_size: float = _env("TEST_SIZE", "Share of Ids held out for the test split (0 < x < 1).", default=0.2)
    cv_folds: int = _env("CV_FOLDS", "Folds of the grouped cross-validation on the training rows.", default=5)
    model: str = _env("MODEL", "Classifier: " + ", ".join(MODELS) + ".", default="logreg")
    min_recall: float = _env("MIN_RECALL", "Quality gate: lowest acceptable recall (malignant).", default=0.90)
    min_roc_auc: float = _env("MIN_ROC_AUC", "Quality gate: lowest acceptable ROC-AUC.", default=0.95)
    storage_backend: str = _env("STORAGE_BACKEND",
                                "local, gdrive, or auto (Drive when folder and credentials are set).",
                                default="auto")
    gdrive_folder_id: str = _env("GDRIVE_FOLDER_ID", "Drive folder that receives one subfolder per run.",
                                 default="")
    google_credentials: Path = _env("GOOGLE_APPLICATION_CREDENTIALS",
                                    "Service-account key or authorized_user token file for Drive.",
                                    default=PROJECT_ROOT / "secrets" / "drive_sa.json")
    gdrive_impersonate: str = _env("GDRIVE_IMPERSONATE",
                                   "User to impersonate through domain-wide delegation (optional).", default="")
    gdrive_api_root: str = _env("GDRIVE_API_ROOT", "Drive API root URL (tests point it at a local fake).",
                                default="https://www.googleapis.com/")
    alert_webhook_url: str = _env("ALERT_WEBHOOK_URL", "POSTed a JSON alert when a run fails (optional).",
                                  default="")
    pushgateway_url: str = _env("PUSHGATEWAY_URL", "Prometheus Pushgateway for the pipeline's metrics (optional).",
                                default="")
    log_level: str = _env("LOG_LEVEL", "DEBUG, INFO, WARNING or ERROR.", default="INFO")

    def __post_init__(self) -> None:
        _check(0.0 < self.test_size < 1.0, "TEST_SIZE", self.test_size, "a number between 0 and 1")
        _check(self.cv_folds >= 2, "CV_FOLDS", self.cv_folds, "an integer of at least 2")
        _check(self.download_timeout > 0, "DOWNLOAD_TIMEOUT", self.download_timeout, "a positive number")
        _check(self.download_retries >= 0, "DOWNLOAD_RETRIES", self.download_retries, "0 or more")
        _check(self.download_backoff >= 0, "DOWNLOAD_BACKOFF", self.download_backoff, "0 or more")
        _check(self.model in MODELS, "MODEL", self.model, "one of " + ", ".join(MODELS))
        _check(self.storage_backend in STORAGE_BACKENDS, "STORAGE_BACKEND", self.storage_backend,
               "one of " + ", ".join(STORAGE_BACKENDS))
        _check(self.log_level in LOG_LEVELS, "LOG_LEVEL", self.log_level, "one of " + ", ".join(LOG_LEVELS))
        for name, value in (("MIN_RECALL", self.min_recall), ("MIN_ROC_AUC", self.min_roc_auc)):
            _check(0.0 <= value <= 1.0, name, value, "a number between 0 and 1")
        _check(bool(self.run_id.strip()), "RUN_ID", self.run_id, "a non-empty name")
        _check(not self.run_started_at or _is_timestamp(self.run_started_at), "RUN_STARTED_AT",
               self.run_started_at, "an ISO-8601 timestamp with a time zone, e.g. 2026-01-31T08:00:00+00:00")

    def run_start(self) -> datetime | None:
        """RUN_STARTED_AT as a datetime, or None when unset."""
        return datetime.fromisoformat(self.run_started_at) if self.run_started_at else None

    def replace(self, **overrides: Any) -> Settings:
        """A copy with some fields changed (values may be strings, as from a CLI or Airflow Params)."""
        return _build({**dataclasses.asdict(self), **overrides}, source="override")

    def public_dict(self) -> dict[str, Any]:
        """The settings as JSON-ready values, for manifests and logs (no secrets are held here)."""
        return {f.metadata["env"]: _to_json(getattr(self, f.name)) for f in dataclasses.fields(self)}


def _is_timestamp(text: str) -> bool:
    try:
        return datetime.fromisoformat(text).tzinfo is not None
    except ValueError:
        return False


def _check(ok: bool, name: str, value: Any, expected: str) -> None:
    if not ok:
        raise ConfigError(f"setting {name}={value!r} is invalid: expected {expected}")


def _to_json(value: Any) -> Any:
    return str(value) if isinstance(value, Path) else value


def _parse(raw: Any, kind: type, name: str) -> Any:
    """Turn a raw value (usually a string) into the field's type, or raise ConfigError naming `name`."""
    if not isinstance(raw, str):
        if kind is float and isinstance(raw, int) and not isinstance(raw, bool):
            return float(raw)
        if kind is Path and isinstance(raw, Path):
            return raw
        if isinstance(raw, kind) and not (kind is int and isinstance(raw, bool)):
            return raw
        raise ConfigError(f"setting {name}={raw!r} is invalid: expected {kind.__name__}")
    text = raw.strip()
    try:
        if kind is bool:
            lowered = text.lower()
            if lowered in ("1", "true", "yes", "on"):
                return True
            if lowered in ("0", "false", "no", "off"):
                return False
            raise ValueError(text)
        if kind is Path:
            path = Path(text).expanduser()
            return path if path.is_absolute() else PROJECT_ROOT / path
        return kind(text)
    except ValueError:
        raise ConfigError(f"setting {name}={raw!r} is invalid: expected {kind.__name__}") from None


_FIELD_TYPES = {"str": str, "bool": bool, "float": float, "int": int, "Path": Path}


def _build(values: Mapping[str, Any], source: str) -> Settings:
    parsed = {}
    for f in dataclasses.fields(Settings):
        if f.name in values:
            parsed[f.name] = _parse(values[f.name], _FIELD_TYPES[str(f.type)], f.metadata["env"])
    unknown = set(values) - {f.name for f in dataclasses.fields(Settings)}
    if unknown:
        raise ConfigError(f"unknown setting(s) in {source}: {', '.join(sorted(unknown))}")
    return Settings(**parsed)


def read_env_file(path: Path) -> dict[str, str]:
    """Parse a `.env` file: KEY=VALUE lines, `#` comments, optional quotes, `export ` prefix."""
    values: dict[str, str] = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.removeprefix("export ").partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"{path}:{number}: expected KEY=VALUE, got {line!r}")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        values[key.strip()] = value
    return values


def load_settings(env: Mapping[str, str] | None = None, env_file: Path | None = None,
                  **overrides: Any) -> Settings:
    """Read settings from `env` (default: os.environ) over `env_file` (default: ENV_FILE or ./.env)."""
    env = os.environ if env is None else env
    env_file = env_file or Path(env.get("ENV_FILE", PROJECT_ROOT / ".env"))
    file_values = read_env_file(env_file) if env_file.is_file() else {}
    by_env_name = {**file_values, **{k: v for k, v in env.items()}}
    values: dict[str, Any] = {}
    for f in dataclasses.fields(Settings):
        if f.metadata["env"] in by_env_name:
            values[f.name] = by_env_name[f.metadata["env"]]
    values.update({k: v for k, v in overrides.items() if v is not None})
    return _build(values, source="overrides")


def settings_help() -> list[tuple[str, str, str]]:
    """(variable, default, description) for every setting: feeds the README table and `make settings`."""
    rows = []
    for f in dataclasses.fields(Settings):
        default = _to_json(f.default)
        if isinstance(default, str) and default.startswith(str(PROJECT_ROOT)):
            default = default[len(str(PROJECT_ROOT)) + 1:]
        rows.append((f.metadata["env"], str(default), f.metadata["help"]))
    return rows


def main() -> None:
    """`python -m utils.config`: print every setting's variable, current value and meaning."""
    current = load_settings().public_dict()
    for variable, _default, description in settings_help():
        print(f"{variable}={current[variable]}\n    {description}")


if __name__ == "__main__":
    main()
