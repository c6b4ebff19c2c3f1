"""Every setting of the pipeline in one typed object (pydantic-settings), read from the environment and an optional
`.env` file; where to add a setting.

Precedence: explicit overrides (Airflow Params, tests) > environment variables > `.env` (ENV_FILE, default
`<project>/.env`) > defaults. Each field's alias is its environment variable; its description feeds the README's
table, `make settings` and the DAG's Params; `redact` in its extra says what of a secret-bearing value may be shown.
A value that cannot be used raises ConfigError naming the variable.
"""

from __future__ import annotations

import os
import re
import sys
import textwrap
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

from dotenv.parser import parse_stream
from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from utils import redact
from utils.errors import ConfigError, excerpt

PROJECT_ROOT = Path(__file__).resolve().parent.parent
BUNDLED_DATA = PROJECT_ROOT / "data" / "BreastCancer.csv"
DEFAULT_DATA_URL = "https://raw.githubusercontent.com/selva86/datasets/master/BreastCancer.csv"
Candidate = Literal["logreg", "random_forest", "hist_gradient_boosting", "linear_svm"]  # simplest first
SelectionMetric = Literal["roc_auc", "pr_auc"]
StorageBackend = Literal["local", "gdrive", "auto"]
LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR"]
CANDIDATE_NAMES: tuple[str, ...] = get_args(Candidate)
# Test metrics a challenger may be compared on: the threshold-free ones, then those at the operating threshold.
PromotionMetric = Literal["roc_auc", "pr_auc", "brier_score", "recall", "f1", "balanced_accuracy", "accuracy",
                          "precision", "specificity"]
PROMOTION_METRICS: tuple[str, ...] = get_args(PromotionMetric)
STORAGE_BACKENDS: tuple[str, ...] = get_args(StorageBackend)
DATA_URL_SCHEMES = ("http", "https", "file")
MAX_SEED = 2**32 - 1  # what numpy's RandomState accepts
Folders = Annotated[tuple[Path, ...], NoDecode]  # comma-separated in the environment, not JSON
Candidates = Annotated[tuple[Candidate, ...], NoDecode]  # likewise


def setting(variable: str, default: Any, description: str, redact_rule: str = "", **constraints: Any) -> Any:
    """A field read from `variable`, with its one-line description and, for a secret-bearing URL, its redaction."""
    extra = {"redact": redact_rule} if redact_rule else None
    return Field(default, alias=variable, description=description, json_schema_extra=extra, **constraints)


class Settings(BaseSettings):
    """The pipeline's settings; build it with `load_settings()`."""

    model_config = SettingsConfigDict(frozen=True, populate_by_name=True, extra="ignore", case_sensitive=True,
                                      env_file_encoding="utf-8", validate_default=True)

    data_url: str = setting("DATA_URL", DEFAULT_DATA_URL, "Where `load` reads the CSV: an http(s):// URL, or a "
                            "file:// URL of a file inside DATA_ALLOWED_DIRS.", redact.URL)
    data_allowed_dirs: Folders = setting(
        "DATA_ALLOWED_DIRS", (PROJECT_ROOT / "data",), "Comma-separated folders a file:// DATA_URL may read from "
        "(symlinks and .. are resolved first); a secrets/ folder and the GOOGLE_APPLICATION_CREDENTIALS file are "
        "always refused; empty: no file:// URL.")
    data_fallback: bool = setting("DATA_FALLBACK", True, "Use the bundled CSV when DATA_URL cannot be reached (DNS, "
                                  "refused, timeout or 5xx after the retries); false = strict mode.")
    data_sha256: str = setting("DATA_SHA256", "", "If set, the loaded file must have this sha256.")
    bundled_data_path: Path = setting("BUNDLED_DATA_PATH", BUNDLED_DATA, "The offline copy of the data set.")
    download_timeout: float = setting("DOWNLOAD_TIMEOUT", 30.0, "Seconds one download attempt may take in all "
                                      "(connect, headers and body) before it is abandoned.", gt=0)
    download_max_bytes: int = setting("DOWNLOAD_MAX_BYTES", 512 * 1024 * 1024, "Largest body `load` accepts, in "
                                      "bytes; a bigger one stops the transfer.", ge=1)
    download_retries: int = setting("DOWNLOAD_RETRIES", 3, "Download attempts after the first one.", ge=0)
    download_backoff: float = setting("DOWNLOAD_BACKOFF", 1.0, "Seconds before the first retry; doubles each time.",
                                      ge=0)
    runs_dir: Path = setting("RUNS_DIR", PROJECT_ROOT / "data" / "runs", "Per-run working folders: "
                             "<RUNS_DIR>/<run id>/.")
    results_dir: Path = setting("RESULTS_DIR", PROJECT_ROOT / "results", "Where `upload` publishes each run locally.")
    seed: int = setting("SEED", 42, f"Random seed for the split, cross-validation and the model (0 to {MAX_SEED}).",
                        ge=0, le=MAX_SEED)
    test_size: float = setting("TEST_SIZE", 0.2, "Share of Ids held out for the test split (0 < x < 1).", gt=0, lt=1)
    cv_folds: int = setting("CV_FOLDS", 5, "Folds of the grouped cross-validation on the training rows.", ge=2)
    # Choosing the model (etl/train.py trains each candidate, etl/select.py picks one and its threshold).
    candidates: Candidates = setting(
        "CANDIDATES", CANDIDATE_NAMES, "Comma-separated candidate models, each cross-validated on the training rows: "
        + ", ".join(CANDIDATE_NAMES) + " (simplest first: a tie in SELECTION_METRIC goes to the earlier one).",
        min_length=1)
    selection_metric: SelectionMetric = setting(
        "SELECTION_METRIC", "roc_auc", "Cross-validated metric that picks the winning candidate: roc_auc or pr_auc "
        "(threshold-free: the operating threshold is chosen after).")
    target_recall: float = setting("TARGET_RECALL", 0.97, "Sensitivity the operating threshold must reach on the "
                                   "out-of-fold predictions (with TARGET_CONFIDENCE); the highest such threshold "
                                   "is used: the best specificity there (0 < x <= 1).",
                                   gt=0, le=1)
    target_confidence: float = setting(
        "TARGET_CONFIDENCE", 0.95, "How sure the threshold must be of TARGET_RECALL: the one-sided lower "
        "confidence bound (Clopper-Pearson) of its out-of-fold recall must reach it; 0 = the observed recall must "
        "(0 <= x < 1).", ge=0, lt=1)
    min_recall: float = setting("MIN_RECALL", 0.90, "Quality gate: lowest acceptable recall (malignant).",
                                ge=0, le=1)
    min_roc_auc: float = setting("MIN_ROC_AUC", 0.95, "Quality gate: lowest acceptable ROC-AUC.", ge=0, le=1)
    storage_backend: StorageBackend = setting("STORAGE_BACKEND", "auto", "local, gdrive, or auto (Drive when "
                                              "folder and credentials are set).")
    gdrive_folder_id: str = setting("GDRIVE_FOLDER_ID", "", "Drive folder that receives one subfolder per run.")
    google_credentials: Path = setting("GOOGLE_APPLICATION_CREDENTIALS", PROJECT_ROOT / "secrets" / "drive_sa.json",
                                       "Service-account key or authorized_user token file for Drive.")
    gdrive_impersonate: str = setting("GDRIVE_IMPERSONATE", "", "User to impersonate through domain-wide "
                                      "delegation (optional).")
    gdrive_api_root: str = setting("GDRIVE_API_ROOT", "https://www.googleapis.com/", "Drive API root URL (tests "
                                   "point it at a local fake).", redact.URL)
    alert_webhook_url: str = setting("ALERT_WEBHOOK_URL", "", "POSTed a JSON alert when a run fails (optional); "
                                     "shown as scheme://host only.", redact.ORIGIN)
    pushgateway_url: str = setting("PUSHGATEWAY_URL", "", "Prometheus Pushgateway for the pipeline's metrics "
                                   "(optional).", redact.URL)
    # Champion and challenger (etl/compare.py, etl/promote.py).
    promotion_metric: PromotionMetric = setting(
        "PROMOTION_METRIC", "roc_auc", "Test metric on which a run's model (the challenger) must not be worse than "
        "the champion to replace it: " + ", ".join(PROMOTION_METRICS) + " (brier_score: lower is better).")
    promotion_tolerance: float = setting(
        "PROMOTION_TOLERANCE", 0.005, "How much worse than the champion on PROMOTION_METRIC the challenger may be "
        "and still be promoted; negative: it must be that much better.", ge=-1, le=1)
    approval_required: bool = setting(
        "APPROVAL_REQUIRED", False, "Ask a person in the Airflow UI (or REST API) to approve each new champion "
        "before it is promoted (read when the DAG is parsed).")
    approval_timeout: float = setting(
        "APPROVAL_TIMEOUT", 1440.0, "Minutes the approval waits for an answer; no answer counts as a rejection.",
        gt=0)
    log_level: LogLevel = setting("LOG_LEVEL", "INFO", "DEBUG, INFO, WARNING or ERROR.")
    # Scoring new samples (etl/predict.py, etl/scoring.py) and their drift (etl/drift.py).
    predict_run: str = setting("PREDICT_RUN", "", "Published run (folder name under RESULTS_DIR) that scores "
                               "samples; empty: the champion (RESULTS_DIR/champion.json), else the newest run.")
    incoming_dir: Path = setting("INCOMING_DIR", PROJECT_ROOT / "data" / "incoming", "Where batches of samples "
                                 "(CSV files) wait for the scoring DAG.")
    processed_dir: Path = setting("PROCESSED_DIR", PROJECT_ROOT / "data" / "processed", "Where the scoring DAG "
                                  "moves a batch once its predictions are published.")
    drift_psi_threshold: float = setting("DRIFT_PSI_THRESHOLD", 0.2, "A feature drifts when its population "
                                         "stability index against the training rows is above this.", gt=0)

    @field_validator("data_allowed_dirs", mode="before")
    @classmethod
    def _split_folders(cls, value: Any) -> Any:
        """`a, b,` from the environment as two folders; empty items are dropped."""
        return comma_separated(value)

    @field_validator("candidates", mode="before")
    @classmethod
    def _split_candidates(cls, value: Any) -> Any:
        """`logreg, linear_svm` from the environment as two names; at least one, each at most once."""
        names = comma_separated(value)
        if not names:
            raise ValueError(f"expected at least one of {', '.join(CANDIDATE_NAMES)}")
        repeated = sorted({name for name in names if names.count(name) > 1})
        if repeated:
            raise ValueError(f"expected each candidate once, got {', '.join(map(str, repeated))} more than once")
        return names

    @field_validator("bundled_data_path", "runs_dir", "results_dir", "google_credentials", "data_allowed_dirs",
                     "incoming_dir", "processed_dir")
    @classmethod
    def _inside_the_project(cls, value: Path | tuple[Path, ...]) -> Path | tuple[Path, ...]:
        """Relative paths are relative to the project, wherever the command runs."""
        if isinstance(value, tuple):
            return tuple(project_path(path) for path in value)
        return project_path(value)

    @model_validator(mode="after")
    def _data_url_is_readable(self) -> Settings:
        check_data_url(self.data_url, self.data_allowed_dirs)
        return self

    def public_dict(self) -> dict[str, Any]:
        """The settings by variable as JSON-ready values for manifests, logs and `make settings`, secrets redacted."""
        return {variable: shown(variable, _to_json(getattr(self, name))) for name, variable in VARIABLES.items()}

    def __repr__(self) -> str:  # pydantic's repr would print the secrets
        return f"Settings({self.public_dict()})"


VARIABLES = {name: field.alias for name, field in Settings.model_fields.items()}  # field name -> variable
_REDACT_RULES = {field.alias: (field.json_schema_extra or {}).get("redact", "")
                 for field in Settings.model_fields.values()}


def comma_separated(value: Any) -> Any:
    """A comma-separated string as a tuple of its stripped, non-empty items; a sequence with the same cleaning."""
    items = value.split(",") if isinstance(value, str) else value
    return tuple(item.strip() if isinstance(item, str) else item for item in items
                 if not (isinstance(item, str) and not item.strip()))


def project_path(path: Path) -> Path:
    """`path` with `~` expanded, relative to the project when it is relative."""
    path = path.expanduser()
    return path if path.is_absolute() else PROJECT_ROOT / path


def shown(variable: str, value: Any) -> Any:
    """`value` of the setting `variable` as it may be shown: redacted by the rule in the field's metadata."""
    rule = _REDACT_RULES.get(variable, "")
    return redact.redact_url(value, rule) if rule and isinstance(value, str) else value


def scrubbed(text: str, variable: str, value: str) -> str:
    """`text` (e.g. a library's error message) with no secret part of the setting's `value` left in it."""
    rule = _REDACT_RULES[variable]
    return redact.scrub(text, value, rule) if rule else text


def check_data_url(url: str, allowed_dirs: tuple[Path, ...]) -> None:
    """DATA_URL's form: an http(s) URL with a host, or a file:// URL naming a path inside DATA_ALLOWED_DIRS (as
    written: etl/load.py checks it again with links resolved, and refuses secrets)."""
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 (raises ValueError for a port that is not a number)
    except ValueError:
        parts = None
    if parts is None or parts.scheme.lower() not in DATA_URL_SCHEMES:
        raise ValueError("expected an http://, https:// or file:// URL")
    scheme = parts.scheme.lower()
    if scheme == "file" and (parts.netloc not in ("", "localhost") or not parts.path.startswith("/")):
        raise ValueError("expected file:///<absolute path> (no host)")
    if scheme != "file" and not parts.hostname:
        raise ValueError(f"expected a host after {parts.scheme}://")
    if scheme == "file" and not any(Path(os.path.normpath(file_path(url))).is_relative_to(folder)
                                    for folder in folder_forms(allowed_dirs)):
        raise ValueError(f"expected a file inside DATA_ALLOWED_DIRS ({', '.join(map(str, allowed_dirs)) or 'empty'});"
                         " add its folder there to read it")


def file_path(url: str) -> Path:
    """The path a file:// URL names, percent-decoded, as written."""
    from urllib.parse import unquote, urlsplit

    return Path(unquote(urlsplit(url).path))


def folder_forms(folders: tuple[Path, ...]) -> set[Path]:
    """Each folder as written (normalised) and with its links resolved."""
    return {form for folder in folders for form in (Path(os.path.normpath(folder)), folder.resolve())}


def data_url_pattern(allowed_dirs: tuple[Path, ...]) -> str:
    """A JSON-schema `pattern` no wider than what `load` reads: http(s)://, or file:// followed by one of the
    allowed folders (as written and resolved, each also percent-encoded) and no `..` or percent-encoded dot."""
    folders = sorted({text.rstrip("/") for folder in folder_forms(allowed_dirs)
                      for text in (str(folder), folder.as_uri().removeprefix("file://"))})
    if not folders:
        return "^https?://"
    alternatives = "|".join(_regex_escaped(folder) + "/" for folder in folders)
    return rf"^(https?://|file://(?:{alternatives})(?!.*(?:\.\.|%2[eE])))"


def _regex_escaped(text: str) -> str:
    """`text` as a regex matching itself, in a syntax Python and JavaScript (also with the `u` flag) share."""
    return re.sub(r"([.^$*+?()\[\]{}|\\])", r"\\\1", text)


def _to_json(value: Any) -> Any:
    if isinstance(value, tuple):
        return ",".join(str(item) for item in value)
    return str(value) if isinstance(value, Path) else value


def config_error(error: ValidationError) -> ConfigError:
    """The first problem pydantic found, as a ConfigError naming the variable and quoting a short excerpt."""
    problem = error.errors()[0]
    field = str(problem["loc"][0]) if problem["loc"] else ""
    variable = VARIABLES.get(field, field)
    if not field:  # a model validator: DATA_URL's check is the only one
        variable, value = "DATA_URL", problem["input"].get("DATA_URL", problem["input"].get("data_url", ""))
    else:
        value = problem["input"]
    reason = problem["msg"].removeprefix("Value error, ")
    shown_value = excerpt(str(shown(variable, value))) if value is not None else ""
    return ConfigError(f"setting {variable}={shown_value!r} is invalid: {reason[:1].lower()}{reason[1:]}")


def check_env_file(path: Path) -> None:
    """Refuse a `.env` line that is not `KEY=VALUE` (python-dotenv would only warn and skip it), naming the line."""
    if not path.is_file():
        return
    with open(path, encoding="utf-8") as handle:
        for binding in parse_stream(handle):
            if binding.error:
                raise ConfigError(f"{path}:{binding.original.line}: expected KEY=VALUE, got "
                                  f"{excerpt(binding.original.string.strip())!r}")


def load_settings(env_file: Path | None = None, **overrides: Any) -> Settings:
    """Settings from the environment over `env_file` (default: ENV_FILE, else the project's `.env`), with
    `overrides` (by field name; None values are ignored) on top."""
    env_file = env_file or Path(os.environ.get("ENV_FILE", PROJECT_ROOT / ".env"))
    check_env_file(env_file)
    unknown = set(overrides) - set(VARIABLES)
    if unknown:
        raise ConfigError(f"unknown setting(s): {', '.join(sorted(unknown))}")
    try:
        return Settings(_env_file=env_file, **{name: value for name, value in overrides.items() if value is not None})
    except ValidationError as exc:
        raise config_error(exc) from None


def default_text(name: str) -> str:
    """A field's default as the docs show it (paths relative to the project, booleans as `.env` writes them)."""
    default = _to_json(Settings.model_fields[name].default)
    if isinstance(default, bool):
        return str(default).lower()
    return str(default).replace(f"{PROJECT_ROOT}/", "")


def _markdown_text(text: str) -> str:
    """`text` as literal Markdown table-cell text: `<run id>` would be read as an HTML tag, `|` as a new cell."""
    return re.sub(r"([<|])", r"\\\1", text)


def markdown_table() -> str:
    """The README's table of settings: variable, default (`empty` when it is empty), meaning."""
    rows = [f"| `{variable}` | {f'`{default_text(name)}`' if default_text(name) else 'empty'} | "
            f"{_markdown_text(Settings.model_fields[name].description or '')} |"
            for name, variable in VARIABLES.items()]
    return "\n".join(["| variable | default | meaning |", "|---|---|---|", *rows])


def env_example() -> str:
    """The pipeline's part of `.env.example`: each setting's meaning, then the setting commented out at its default,
    so that a `.env` sets only what its owner uncommented and a default changed here reaches every `.env`."""
    return "\n".join(
        textwrap.fill(Settings.model_fields[name].description, width=116, initial_indent="# ", subsequent_indent="# ")
        + f"\n# {variable}={default_text(name)}" for name, variable in VARIABLES.items())


def main(argv: list[str]) -> None:
    """`python -m utils.config`: every setting's current value and meaning; `--markdown`: the README's table;
    `--env-example`: the pipeline's part of `.env.example`."""
    if argv == ["--markdown"]:
        print(markdown_table())
        return
    if argv == ["--env-example"]:
        print(env_example())
        return
    current = load_settings().public_dict()
    for name, variable in VARIABLES.items():
        print(f"{variable}={current[variable]}\n    {Settings.model_fields[name].description}")


if __name__ == "__main__":
    main(sys.argv[1:])
