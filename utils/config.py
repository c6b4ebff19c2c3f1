"""Every setting of the pipeline in one typed object, read from the environment and an optional `.env` file.

Precedence: explicit overrides (Airflow Params, CLI flags) > environment variables > `.env` > defaults.
A value that cannot be parsed or is out of range raises `ConfigError` naming the variable.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from utils import redact
from utils.errors import ConfigError

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATA_URL = "https://raw.githubusercontent.com/selva86/datasets/master/BreastCancer.csv"
MODELS = ("logreg", "random_forest", "gradient_boosting", "svm")
STORAGE_BACKENDS = ("local", "gdrive", "auto")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
DATA_URL_SCHEMES = ("http", "https", "file")
MAX_SEED = 2**32 - 1  # what numpy's RandomState accepts
PathList = tuple[Path, ...]


def _env(name: str, help_text: str, redact_rule: str = "", **kwargs: Any) -> Any:
    """A dataclass field bound to an environment variable, with a one-line description; `redact_rule`
    (utils/redact.py) marks a value that may carry a secret and says what of it may be shown."""
    return field(metadata={"env": name, "help": help_text, "redact": redact_rule}, **kwargs)


@dataclass(frozen=True, repr=False)
class Settings:
    """The pipeline's settings; build it with `load_settings()`."""

    data_url: str = _env("DATA_URL", "Where `load` reads the CSV: an http(s):// URL, or a file:// URL of a file "
                         "inside DATA_ALLOWED_DIRS.", redact_rule=redact.URL, default=DEFAULT_DATA_URL)
    data_allowed_dirs: PathList = _env(
        "DATA_ALLOWED_DIRS", "Comma-separated folders a file:// DATA_URL may read from (symlinks and .. are "
        "resolved first); a secrets/ folder and the GOOGLE_APPLICATION_CREDENTIALS file are always refused; "
        "empty: no file:// URL.", default=(PROJECT_ROOT / "data",))
    data_fallback: bool = _env("DATA_FALLBACK", "Use the bundled CSV when DATA_URL cannot be reached (DNS, refused, "
                               "timeout or 5xx after the retries); false = strict mode.", default=True)
    data_sha256: str = _env("DATA_SHA256", "If set, the loaded file must have this sha256.", default="")
    bundled_data_path: Path = _env("BUNDLED_DATA_PATH", "The offline copy of the data set.",
                                   default=PROJECT_ROOT / "data" / "BreastCancer.csv")
    download_timeout: float = _env("DOWNLOAD_TIMEOUT", "Seconds one download attempt may take in all (connect, "
                                   "headers and body) before it is abandoned.", default=30.0)
    download_max_bytes: int = _env("DOWNLOAD_MAX_BYTES", "Largest body `load` accepts, in bytes; a bigger one "
                                   "stops the transfer.", default=512 * 1024 * 1024)
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
    seed: int = _env("SEED", f"Random seed for the split, cross-validation and the model (0 to {MAX_SEED}).",
                     default=42)
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
                                redact_rule=redact.URL, default="https://www.googleapis.com/")
    alert_webhook_url: str = _env("ALERT_WEBHOOK_URL", "POSTed a JSON alert when a run fails (optional); shown "
                                  "as scheme://host only.", redact_rule=redact.ORIGIN, default="")
    pushgateway_url: str = _env("PUSHGATEWAY_URL", "Prometheus Pushgateway for the pipeline's metrics (optional).",
                                redact_rule=redact.URL, default="")
    log_level: str = _env("LOG_LEVEL", "DEBUG, INFO, WARNING or ERROR.", default="INFO")

    def __post_init__(self) -> None:
        _check(0.0 < self.test_size < 1.0, "TEST_SIZE", self.test_size, "a number between 0 and 1")
        _check(self.cv_folds >= 2, "CV_FOLDS", self.cv_folds, "an integer of at least 2")
        _check(self.download_timeout > 0, "DOWNLOAD_TIMEOUT", self.download_timeout, "a positive number")
        _check(self.download_retries >= 0, "DOWNLOAD_RETRIES", self.download_retries, "0 or more")
        _check(self.download_backoff >= 0, "DOWNLOAD_BACKOFF", self.download_backoff, "0 or more")
        _check(self.download_max_bytes >= 1, "DOWNLOAD_MAX_BYTES", self.download_max_bytes, "a positive integer")
        _check(0 <= self.seed <= MAX_SEED, "SEED", self.seed, f"an integer from 0 to {MAX_SEED}")
        _check_data_url(self.data_url, self.data_allowed_dirs)
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
        """The settings as JSON-ready values for manifests, logs and `make settings`, secrets redacted."""
        return {f.metadata["env"]: shown(f.metadata["env"], _to_json(getattr(self, f.name)))
                for f in dataclasses.fields(self)}

    def __repr__(self) -> str:  # the dataclass repr would print the secrets
        return f"Settings({self.public_dict()})"


_REDACT_RULES = {f.metadata["env"]: f.metadata["redact"] for f in dataclasses.fields(Settings)}


def shown(variable: str, value: Any) -> Any:
    """`value` of the setting `variable` as it may be shown: redacted by the rule in the field's metadata."""
    rule = _REDACT_RULES[variable]
    return redact.redact_url(value, rule) if rule and isinstance(value, str) else value


def scrubbed(text: str, variable: str, value: str) -> str:
    """`text` (e.g. a library's error message) with no secret part of the setting's `value` left in it."""
    rule = _REDACT_RULES[variable]
    return redact.scrub(text, value, rule) if rule else text


def _check_data_url(url: str, allowed_dirs: PathList) -> None:
    """DATA_URL's form: an http(s) URL with a host, or a file:// URL naming a path inside DATA_ALLOWED_DIRS (as
    written: etl/load.py checks it again with links resolved, and refuses secrets)."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 (raises ValueError for a port that is not a number)
    except ValueError:
        parts = None
    shown_url = shown("DATA_URL", url)
    if parts is None or parts.scheme.lower() not in DATA_URL_SCHEMES:
        raise ConfigError(f"setting DATA_URL={shown_url!r} is invalid: expected an http://, https:// or file:// URL")
    if parts.scheme.lower() == "file" and (parts.netloc not in ("", "localhost") or not parts.path.startswith("/")):
        raise ConfigError(f"setting DATA_URL={shown_url!r} is invalid: expected file:///<absolute path> (no host)")
    if parts.scheme.lower() != "file" and not parts.hostname:
        raise ConfigError(f"setting DATA_URL={shown_url!r} is invalid: expected a host after {parts.scheme}://")
    if parts.scheme.lower() == "file" and not any(Path(os.path.normpath(file_path(url))).is_relative_to(folder)
                                                  for folder in folder_forms(allowed_dirs)):
        raise ConfigError(f"setting DATA_URL={shown_url!r} is invalid: expected a file inside DATA_ALLOWED_DIRS "
                          f"({', '.join(map(str, allowed_dirs)) or 'empty'}); add its folder there to read it")


def file_path(url: str) -> Path:
    """The path a file:// URL names, percent-decoded, as written."""
    return Path(unquote(urlsplit(url).path))


def folder_forms(folders: PathList) -> set[Path]:
    """Each folder as written (normalised) and with its links resolved."""
    return {form for folder in folders for form in (Path(os.path.normpath(folder)), folder.resolve())}


def data_url_pattern(allowed_dirs: PathList) -> str:
    """A JSON-schema `pattern` no wider than what `load` reads: http(s)://, or file:// followed by one of the
    allowed folders (as written and resolved, each also percent-encoded) and no `..` or percent-encoded dot."""
    folders = sorted({text.rstrip("/") for folder in folder_forms(allowed_dirs)
                      for text in (str(folder), folder.as_uri().removeprefix("file://"))})
    if not folders:
        return "^https?://"
    alternatives = "|".join(_regex_escaped(folder) + "/" for folder in folders)
    return rf"^(https?://|file://(?:{alternatives})(?!.*(?:\.\.|%2[eE])))"


def _is_timestamp(text: str) -> bool:
    try:
        return datetime.fromisoformat(text).tzinfo is not None
    except ValueError:
        return False


def _check(ok: bool, name: str, value: Any, expected: str) -> None:
    if not ok:
        raise ConfigError(f"setting {name}={value!r} is invalid: expected {expected}")


def _regex_escaped(text: str) -> str:
    """`text` as a regex matching itself, in a syntax Python and JavaScript (also with the `u` flag) share."""
    return re.sub(r"([.^$*+?()\[\]{}|\\])", r"\\\1", text)


def _to_json(value: Any) -> Any:
    if isinstance(value, tuple):
        return ",".join(str(item) for item in value)
    return str(value) if isinstance(value, Path) else value


def _parse(raw: Any, kind: Any, name: str) -> Any:
    """Turn a raw value (usually a string) into the field's type, or raise ConfigError naming `name`."""
    if kind is PathList:
        items = raw.split(",") if isinstance(raw, str) else raw
        if not isinstance(items, list | tuple):
            raise ConfigError(f"setting {name}={raw!r} is invalid: expected comma-separated folders")
        return tuple(_parse(item, Path, name) for item in items if not (isinstance(item, str) and not item.strip()))
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


_FIELD_TYPES = {"str": str, "bool": bool, "float": float, "int": int, "Path": Path, "PathList": PathList}


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
