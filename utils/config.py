"""Every setting of the pipeline in one typed object (pydantic-settings), read from the environment and an optional
`.env` file; where to add a setting.

Precedence: explicit overrides (Airflow Params, tests) > environment variables > `.env` (ENV_FILE, default
`<project>/.env`) > defaults. Each field's alias is its environment variable; its description feeds docs/settings.md's
table, `make settings` and the DAG's Params; `redact` in its extra says what of a secret-bearing value may be shown.
A value that cannot be used raises ConfigError naming the variable: every number is finite and bounded (the
bounds are in the descriptions), every URL has an http(s) scheme (DATA_URL also file://) and a host, every folder
is non-empty and not an existing non-folder, the four state folders are apart (none equal to or inside another),
and no value holds a control character.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import stat
import sys
import textwrap
import unicodedata
from pathlib import Path
from typing import Annotated, Any, Literal, get_args
from urllib.parse import SplitResult, urlsplit

from dotenv.parser import parse_stream
from pydantic import Field, ValidationError, ValidationInfo, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from etl.candidates import CANDIDATE_NAMES, described
from utils import redact
from utils.data_url import PROJECT_ROOT, file_path, folder_forms, resolved
from utils.errors import ConfigError, excerpt

BUNDLED_DATA = PROJECT_ROOT / "data" / "BreastCancer.csv"
DEFAULT_DATA_URL = "https://raw.githubusercontent.com/selva86/datasets/master/BreastCancer.csv"
Candidate = Literal[CANDIDATE_NAMES]  # etl/candidates.py's registry, simplest first
SelectionMetric = Literal["roc_auc", "pr_auc"]
StorageBackend = Literal["local", "gdrive", "auto"]
LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR"]
# Test metrics a challenger may be compared on: the threshold-free ones, then those at the operating threshold.
PromotionMetric = Literal["roc_auc", "pr_auc", "brier_score", "recall", "f1", "balanced_accuracy", "accuracy",
                          "precision", "specificity"]
PROMOTION_METRICS: tuple[str, ...] = get_args(PromotionMetric)
STORAGE_BACKENDS: tuple[str, ...] = get_args(StorageBackend)
DATA_URL_SCHEMES = ("http", "https", "file")
HTTP_SCHEMES = ("http", "https")
MAX_SEED = 2**32 - 1  # what numpy's RandomState accepts
# Upper bounds: beyond them a value cannot work (or overflows), whatever the machine.
MAX_DOWNLOAD_SECONDS = 600.0  # the load task's own execution_timeout (etl/steps.py): a longer attempt never ends
MIN_DOWNLOAD_SECONDS = 0.1  # less fails every attempt and trains on the bundled copy
MAX_DOWNLOAD_BYTES = 4 * 1024**3  # the body is held in memory
MAX_DOWNLOAD_RETRIES = 10
MAX_BACKOFF_SECONDS = 60.0  # also the longest single wait between two attempts (etl/load.py)
MAX_CV_FOLDS = 20  # each class of the bundled data has far more Ids; more folds only cost time
MAX_CV_REPEATS = 20  # beyond, the mean out-of-fold probability barely moves; each repeat costs a CV
MAX_REPEATED_ROWS = 2_000_000  # repeats x training rows of the repeated CV (etl/modelling.py): its cost at scale
MIN_BOOTSTRAP_REPLICATES, MAX_BOOTSTRAP_REPLICATES = 200, 10000  # fewer make a 95% percentile interval noisy
MAX_APPROVAL_MINUTES = 30 * 24 * 60  # 30 days
MAX_PSI_THRESHOLD = 10.0  # a population stability index above 0.25 is already a large shift
MAX_URL_CHARS = 2048
MAX_NAME_CHARS = 255  # a folder name (PREDICT_RUN), a Drive id, an e-mail address
# The settings a user may change per run ("Trigger DAG w/ config": the DAG's Params), and the others the DAG files
# read when they are parsed (the approval task, data_url's pattern, the folder the scoring DAG's watcher lists);
# utils/dag_settings.py reads them there.
PER_RUN_SETTINGS = ("candidates", "test_size", "min_recall", "min_roc_auc", "promotion_metric", "promotion_tolerance",
                    "storage_backend", "data_url")
PARSE_TIME_SETTINGS = ("approval_required", "approval_timeout", "data_allowed_dirs", "incoming_dir")
PARAM_KEYWORDS = ("type", "enum", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "items", "minItems",
                  "maxLength")  # what a Param checks of a setting's JSON schema
PARAM_EXTRA_KEYWORDS = {"candidates": {"uniqueItems": True},  # what the settings check that their schema omits
                        "incoming_dir": {"pattern": r"\S"}}  # not empty: it would be the project's root
Folders = Annotated[tuple[Path, ...], NoDecode]  # comma-separated in the environment, not JSON
Candidates = Annotated[tuple[Candidate, ...], NoDecode]  # likewise
FILE_FIELDS = ("bundled_data_path", "google_credentials")
STATE_FOLDERS = ("runs_dir", "results_dir", "incoming_dir", "processed_dir")  # apart: none equal to or inside another
PATH_FIELDS = (*FILE_FIELDS, *STATE_FOLDERS)
PORTABLE_FIELDS = (*PATH_FIELDS, "data_allowed_dirs", "data_url")  # made `portable` in published files
UNPRINTABLE = ("Cc", "Cs")  # control characters (newline, tab, NUL...), bytes that were not UTF-8


class SettingError(ValueError):
    """A problem found across settings (a model validator), with the variable it is about and that one's value."""

    def __init__(self, variable: str, value: Any, reason: str) -> None:
        super().__init__(reason)
        self.variable, self.value = variable, value


def setting(variable: str, default: Any, description: str, redact_rule: str = "", **constraints: Any) -> Any:
    """A field read from `variable`, with its one-line description and, for a secret-bearing URL, its redaction."""
    extra = {"redact": redact_rule} if redact_rule else None
    return Field(default, alias=variable, description=description, json_schema_extra=extra, **constraints)


class Settings(BaseSettings):
    """The pipeline's settings; build it with `load_settings()`."""

    model_config = SettingsConfigDict(frozen=True, populate_by_name=True, extra="ignore", case_sensitive=True,
                                      env_file_encoding="utf-8", validate_default=True, allow_inf_nan=False)

    data_url: str = setting("DATA_URL", DEFAULT_DATA_URL, "Where `load` reads the CSV: an http(s):// URL, or a "
                            "file:// URL of a file inside DATA_ALLOWED_DIRS. Its user:password@ goes as Basic auth "
                            "to its own origin (scheme, host, port) only: a redirect to another origin drops it; one "
                            "from https to http, or to another scheme, is refused. The DAG's data_url Param shows it "
                            "redacted.", redact.URL, max_length=MAX_URL_CHARS)
    data_allowed_dirs: Folders = setting(
        "DATA_ALLOWED_DIRS", (PROJECT_ROOT / "data",), "Comma-separated folders a file:// DATA_URL may read from "
        "(symlinks and .. are resolved first); a secrets/ folder and the GOOGLE_APPLICATION_CREDENTIALS file are "
        "always refused; empty: no file:// URL.")
    data_fallback: bool = setting("DATA_FALLBACK", True, "Use the bundled CSV when DATA_URL cannot be reached (DNS, "
                                  "refused, timeout or 5xx after the retries); false = strict mode.")
    data_sha256: str = setting("DATA_SHA256", "", "If set, the loaded file must have this sha256 (64 hex digits).")
    bundled_data_path: Path = setting("BUNDLED_DATA_PATH", BUNDLED_DATA, "The offline copy of the data set.")
    download_timeout: float = setting("DOWNLOAD_TIMEOUT", 30.0, "Seconds one download attempt may take in all "
                                      f"(connect, headers and body) before it is abandoned ({MIN_DOWNLOAD_SECONDS:g} "
                                      f"to {MAX_DOWNLOAD_SECONDS:g}).", ge=MIN_DOWNLOAD_SECONDS,
                                      le=MAX_DOWNLOAD_SECONDS)
    download_max_bytes: int = setting("DOWNLOAD_MAX_BYTES", 512 * 1024 * 1024, "Largest body `load` accepts, in "
                                      f"bytes (1 to {MAX_DOWNLOAD_BYTES}); a bigger one stops the transfer.", ge=1,
                                      le=MAX_DOWNLOAD_BYTES)
    download_retries: int = setting("DOWNLOAD_RETRIES", 3, "Download attempts after the first one (0 to "
                                    f"{MAX_DOWNLOAD_RETRIES}).", ge=0, le=MAX_DOWNLOAD_RETRIES)
    download_backoff: float = setting("DOWNLOAD_BACKOFF", 1.0, "Seconds before the first retry; doubles each time, "
                                      f"up to {MAX_BACKOFF_SECONDS:g} s a wait (0 to {MAX_BACKOFF_SECONDS:g}).",
                                      ge=0, le=MAX_BACKOFF_SECONDS)
    runs_dir: Path = setting("RUNS_DIR", PROJECT_ROOT / "data" / "runs", "Per-run working folders: "
                             "<RUNS_DIR>/<run id>/. It, RESULTS_DIR, INCOMING_DIR and PROCESSED_DIR are four "
                             "folders apart: none equal to or inside another.")
    results_dir: Path = setting("RESULTS_DIR", PROJECT_ROOT / "results", "Where `upload` publishes each run locally.")
    seed: int = setting("SEED", 42, f"Random seed for the split, cross-validation and the model (0 to {MAX_SEED}).",
                        ge=0, le=MAX_SEED)
    test_size: float = setting("TEST_SIZE", 0.2, "Share of Ids held out for the test split (0 < x < 1).", gt=0, lt=1)
    cv_folds: int = setting("CV_FOLDS", 5, f"Folds of the grouped cross-validation on the training rows (2 to "
                            f"{MAX_CV_FOLDS}).", ge=2, le=MAX_CV_FOLDS)
    cv_repeats: int = setting("CV_REPEATS", 5, "Times the selected candidate's grouped cross-validation is repeated "
                              "with another fold draw; each training row's out-of-fold probability is the mean over "
                              "them, and gives the threshold, the calibration check and the internal validation "
                              f"(1 to {MAX_CV_REPEATS}; fewer at scale: repeats x training rows stay within "
                              f"{MAX_REPEATED_ROWS:,}).", ge=1, le=MAX_CV_REPEATS)
    bootstrap_replicates: int = setting(
        "BOOTSTRAP_REPLICATES", 1000, "Resamples of Ids behind every bootstrap interval (ROC-AUC, PR-AUC, Brier, "
        f"calibration, the champion comparison) ({MIN_BOOTSTRAP_REPLICATES} to {MAX_BOOTSTRAP_REPLICATES}).",
        ge=MIN_BOOTSTRAP_REPLICATES, le=MAX_BOOTSTRAP_REPLICATES)
    # Choosing the model (etl/train.py trains each candidate, etl/select.py picks one and its threshold).
    candidates: Candidates = setting(
        "CANDIDATES", CANDIDATE_NAMES, "Comma-separated candidate models, each cross-validated on the training rows, "
        "simplest first (a tie in SELECTION_METRIC goes to the earlier one): " + described() + ".",
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
    gdrive_folder_id: str = setting("GDRIVE_FOLDER_ID", "", "Drive folder that receives one subfolder per run.",
                                    max_length=MAX_NAME_CHARS)
    google_credentials: Path = setting("GOOGLE_APPLICATION_CREDENTIALS", PROJECT_ROOT / "secrets" / "drive_sa.json",
                                       "Service-account key or authorized_user token file for Drive.")
    gdrive_impersonate: str = setting("GDRIVE_IMPERSONATE", "", "User to impersonate through domain-wide "
                                      "delegation (optional).", max_length=MAX_NAME_CHARS)
    gdrive_api_root: str = setting("GDRIVE_API_ROOT", "https://www.googleapis.com/", "Drive API root URL, "
                                   "http(s):// with a host (tests point it at a local fake).", redact.URL,
                                   max_length=MAX_URL_CHARS)
    alert_webhook_url: str = setting("ALERT_WEBHOOK_URL", "", "POSTed a JSON alert when a run fails (optional; an "
                                     "http(s):// URL with a host); shown as scheme://host only.", redact.ORIGIN,
                                     max_length=MAX_URL_CHARS)
    pushgateway_url: str = setting("PUSHGATEWAY_URL", "", "Prometheus Pushgateway for the pipeline's metrics "
                                   "(optional; an http(s):// URL with a host).", redact.URL, max_length=MAX_URL_CHARS)
    # Champion and challenger (etl/compare.py, etl/promote.py).
    promotion_metric: PromotionMetric = setting(
        "PROMOTION_METRIC", "roc_auc", "Test metric on which a run's model (the challenger) must be shown not worse "
        "than the champion to replace it: " + ", ".join(PROMOTION_METRICS) + " (brier_score: lower is better).")
    promotion_tolerance: float = setting(
        "PROMOTION_TOLERANCE", 0.01, "Non-inferiority margin: the challenger is promoted when the 95% interval of "
        "its paired difference from the champion on PROMOTION_METRIC (bootstrap over the same Ids) excludes being "
        "worse by more than this; negative: it must be shown that much better.", ge=-1, le=1)
    approval_required: bool = setting(
        "APPROVAL_REQUIRED", False, "Ask a person in the Airflow UI (or REST API) to approve each new champion "
        "before it is promoted (read when the DAG is parsed).")
    approval_timeout: float = setting(
        "APPROVAL_TIMEOUT", 1440.0, "Minutes the approval waits for an answer; no answer counts as a rejection "
        f"(1 to {MAX_APPROVAL_MINUTES}).", ge=1, le=MAX_APPROVAL_MINUTES)
    log_level: LogLevel = setting("LOG_LEVEL", "INFO", "DEBUG, INFO, WARNING or ERROR.")
    # Scoring new samples (etl/predict.py, etl/scoring.py) and their drift (etl/drift.py).
    predict_run: str = setting("PREDICT_RUN", "", "Published run (folder name under RESULTS_DIR) that scores "
                               "samples; empty: the champion (RESULTS_DIR/champion.json), else the newest run.",
                               max_length=MAX_NAME_CHARS)
    incoming_dir: Path = setting("INCOMING_DIR", PROJECT_ROOT / "data" / "incoming", "Where batches of samples "
                                 "(CSV files) are handed off to the scoring DAG: its watcher starts a run for each "
                                 "new one (read when the DAG is parsed).")
    processed_dir: Path = setting("PROCESSED_DIR", PROJECT_ROOT / "data" / "processed", "Where the scoring DAG "
                                  "moves a batch once its predictions are published (not inside INCOMING_DIR).")
    drift_psi_threshold: float = setting("DRIFT_PSI_THRESHOLD", 0.2, "A feature drifts when its population "
                                         "stability index against the training rows is above this and above what "
                                         "chance gives at the batch's size (0 < x <= "
                                         f"{MAX_PSI_THRESHOLD:g}).", gt=0, le=MAX_PSI_THRESHOLD)

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

    @field_validator(*PATH_FIELDS, mode="before")
    @classmethod
    def _not_empty(cls, value: Any) -> Any:
        """An empty path would be the project's root: refused, not guessed."""
        if isinstance(value, str) and not value.strip():
            raise ValueError("expected a path, got an empty value (it would mean the project's root)")
        return value

    @field_validator("*", mode="before")
    @classmethod
    def _printable(cls, value: Any) -> Any:
        """No control character (newline, tab, NUL...) or undecodable byte in a value, nor in an item of a list;
        defined after the other `before` validators, so that it sees the value before they do."""
        for item in value if isinstance(value, list | tuple) else (value,):
            if isinstance(item, str):
                check_printable(item)
        return value

    @field_validator(*PATH_FIELDS, "data_allowed_dirs")
    @classmethod
    def _inside_the_project(cls, value: Path | tuple[Path, ...], info: ValidationInfo) -> Path | tuple[Path, ...]:
        """Relative paths are relative to the project, wherever the command runs; each must be usable as what it
        names (a folder, or for BUNDLED_DATA_PATH and GOOGLE_APPLICATION_CREDENTIALS a file); a folder may not be
        the project's root or hold it."""
        want_folder = info.field_name not in FILE_FIELDS
        paths = tuple(usable_path(project_path(path), want_folder) for path in
                      (value if isinstance(value, tuple) else (value,)))
        for path in paths if want_folder else ():
            if PROJECT_ROOT.is_relative_to(resolved(path)):
                raise ValueError(f"expected a folder of its own, got {path}, which holds the whole project (its "
                                 ".env, secrets/ and code)")
        return paths if isinstance(value, tuple) else paths[0]

    @field_validator("gdrive_api_root", "alert_webhook_url", "pushgateway_url")
    @classmethod
    def _http_url(cls, value: str, info: ValidationInfo) -> str:
        """An http(s) URL with a host; the optional ones may be empty."""
        if value or info.field_name == "gdrive_api_root":
            check_http_url(value)
        return value

    @field_validator("data_sha256")
    @classmethod
    def _sha256(cls, value: str) -> str:
        if value and not re.fullmatch(r"[0-9a-fA-F]{64}", value):
            raise ValueError("expected 64 hexadecimal digits (a sha256), or empty")
        return value

    @field_validator("predict_run")
    @classmethod
    def _one_folder_name(cls, value: str) -> str:
        if value in (".", "..") or "/" in value or "\\" in value:
            raise ValueError("expected the name of one folder under RESULTS_DIR (no /, \\, . or ..)")
        return value

    @model_validator(mode="after")
    def _data_url_is_readable(self) -> Settings:
        try:
            check_data_url(self.data_url, self.data_allowed_dirs)
        except ValueError as exc:
            raise SettingError("DATA_URL", self.data_url, str(exc)) from None
        return self

    @model_validator(mode="after")
    def _state_folders_apart(self) -> Settings:
        check_apart({VARIABLES[name]: getattr(self, name) for name in STATE_FOLDERS})
        return self

    def public_dict(self, published: bool = False) -> dict[str, Any]:
        """The settings by variable as JSON-ready values for logs and `make settings`, secrets redacted; for a
        published file (`published`, the manifest) paths also made `portable`."""
        values = {variable: shown(variable, _to_json(getattr(self, name))) for name, variable in VARIABLES.items()}
        if not published:
            return values
        return {variable: ",".join(map(portable, value.split(","))) if name in PORTABLE_FIELDS and value else value
                for (name, variable), value in zip(VARIABLES.items(), values.values(), strict=True)}

    def __repr__(self) -> str:  # pydantic's repr would print the secrets
        return f"Settings({self.public_dict()})"

    __str__ = __repr__  # pydantic's str too


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
    try:
        path = path.expanduser()
    except RuntimeError:  # ~name of a user that does not exist
        raise ValueError(f"expected a path, but {path.parts[0]!r} names no user's home folder") from None
    return path if path.is_absolute() else PROJECT_ROOT / path


def usable_path(path: Path, want_folder: bool) -> Path:
    """`path` if it can be the folder (`want_folder`) or the file it is meant to be: it, or the nearest of its
    parents that exists, is a folder; for a file, `path` itself is not one."""
    for candidate in (path, *path.parents):
        try:
            mode = os.stat(candidate).st_mode
        except FileNotFoundError:
            continue
        except (OSError, ValueError) as exc:  # a parent that is a file, a name too long, no permission
            raise ValueError(f"expected a usable path: {getattr(exc, 'strerror', None) or exc}") from None
        if candidate == path and stat.S_ISDIR(mode) != want_folder:
            raise ValueError("expected a folder, got a file or device that exists" if want_folder
                             else "expected a file, got a folder")
        if candidate != path and not stat.S_ISDIR(mode):
            raise ValueError(f"expected a folder, but {candidate} is not one")
        return path
    return path


def check_apart(folders: dict[str, Path]) -> None:
    """Refuse two of `folders` (by variable) that are the same folder or one inside the other, naming both."""
    forms = {variable: {Path(os.path.normpath(path)), resolved(path)} for variable, path in folders.items()}
    for first, second in itertools.combinations(folders, 2):
        if forms[first] & forms[second]:
            raise SettingError(second, str(folders[second]), f"expected a folder apart from {first} "
                               f"({folders[first]}), got the same folder")
        for inner, outer in ((second, first), (first, second)):
            if any(path.is_relative_to(other) for path in forms[inner] for other in forms[outer]):
                raise SettingError(inner, str(folders[inner]), f"expected a folder apart from {outer} "
                                   f"({folders[outer]}), got one inside it")


def check_printable(text: str) -> None:
    """Refuse a control character or an undecodable byte in `text`, saying which and where."""
    for position, char in enumerate(text):
        if unicodedata.category(char) in UNPRINTABLE:
            raise ValueError(f"expected no control character, got {excerpt(char)!r} at position {position}")


def shown(variable: str, value: Any) -> Any:
    """`value` of the setting `variable` as it may be shown: redacted by the rule in the field's metadata."""
    rule = _REDACT_RULES.get(variable, "")
    return redact.redact_url(value, rule) if rule and isinstance(value, str) else value


def scrubbed(text: str, variable: str, value: str) -> str:
    """`text` (e.g. a library's error message) with no secret part of the setting's `value` left in it."""
    rule = _REDACT_RULES[variable]
    return redact.scrub(text, value, rule) if rule else text


def url_parts(url: str, schemes: tuple[str, ...]) -> SplitResult:
    """`url` split, if its scheme is one of `schemes` and its port (if any) a number; an http(s) URL also needs a
    host and no whitespace."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 (raises ValueError for a port that is not a number)
    except ValueError:
        parts = None
    if parts is None or parts.scheme.lower() not in schemes:
        named = [f"{scheme}://" for scheme in schemes]
        raise ValueError(f"expected an {', '.join(named[:-1])} or {named[-1]} URL")
    if parts.scheme.lower() in HTTP_SCHEMES and not parts.hostname:
        raise ValueError(f"expected a host after {parts.scheme}://")
    if parts.scheme.lower() in HTTP_SCHEMES and any(char.isspace() for char in url):
        raise ValueError("expected a URL without spaces")
    return parts


def check_http_url(url: str) -> None:
    """An http(s) URL with a host (a webhook, an API root, a Pushgateway)."""
    url_parts(url, HTTP_SCHEMES)


def check_data_url(url: str, allowed_dirs: tuple[Path, ...]) -> None:
    """DATA_URL's form: an http(s) URL with a host, or a file:// URL naming a path inside DATA_ALLOWED_DIRS (as
    written: etl/load.py checks it again with links resolved, and refuses secrets)."""
    parts = url_parts(url, DATA_URL_SCHEMES)
    if parts.scheme.lower() != "file":
        return
    if parts.netloc not in ("", "localhost") or not parts.path.startswith("/"):
        raise ValueError("expected file:///<absolute path> (no host)")
    if not any(Path(os.path.normpath(file_path(url))).is_relative_to(folder) for folder in folder_forms(allowed_dirs)):
        raise ValueError(f"expected a file inside DATA_ALLOWED_DIRS ({', '.join(map(str, allowed_dirs)) or 'empty'});"
                         " add its folder there to read it")


def per_run_data_url(value: Any, configured: str) -> Any:
    """What a run's `data_url` Param means: the configured DATA_URL, its credentials included, when the Param is
    that URL's redacted form (the Param's default); else the Param itself, refused when it carries credentials
    (user:password@, a query or a fragment): they come from the environment, never from a run's conf."""
    if not isinstance(value, str):
        return value  # pydantic says what is wrong with it
    if value == shown("DATA_URL", configured):
        return configured
    if redact.secret_parts(value):
        raise ConfigError(f"setting data_url={excerpt(shown('DATA_URL', value))!r} is invalid: a run's data_url "
                          "must carry no credentials (user:password@, ?query or #fragment); set them in DATA_URL "
                          "in the environment and trigger with its redacted form, the Param's default")
    return value


def portable(value: str) -> str:
    """A path or a file:// URL as a published file shows it: relative to the project when inside it
    (`data/BreastCancer.csv`), else `…/<its name>`: never an absolute path of the machine that wrote it."""
    path = file_path(value) if value.startswith("file:") else Path(value)
    if not path.is_absolute():
        return value
    return str(path.relative_to(PROJECT_ROOT)) if path.is_relative_to(PROJECT_ROOT) else f"…/{path.name}"


def _to_json(value: Any) -> Any:
    if isinstance(value, tuple):
        return ",".join(str(item) for item in value)
    return str(value) if isinstance(value, Path) else value


def config_error(error: ValidationError) -> ConfigError:
    """The first problem pydantic found, as a ConfigError naming the variable and quoting a short excerpt."""
    problem = error.errors()[0]
    cause = (problem.get("ctx") or {}).get("error")
    if isinstance(cause, SettingError):  # a model validator says which variable
        variable, value = cause.variable, cause.value
    else:
        field = str(problem["loc"][0]) if problem["loc"] else ""
        variable, value = VARIABLES.get(field, field), problem["input"]
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
    """The table of settings in docs/settings.md: variable, default (`empty` when it is empty), meaning."""
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


def dag_spec() -> dict[str, Any]:
    """What the DAG file reads of the settings when it is parsed (utils/dag_settings.py), as the JSON of
    utils/dag_settings.json: which settings are per-run Params, and for each setting it reads its variable,
    description, default as `.env` writes it, redaction rule and the JSON-schema keywords a Param checks."""
    schema = Settings.model_json_schema(by_alias=False)["properties"]
    return {"params": list(PER_RUN_SETTINGS), "settings": {name: {
        "variable": VARIABLES[name], "description": Settings.model_fields[name].description,
        "default": default_text(name), "redact": _REDACT_RULES[VARIABLES[name]],
        "schema": {key: value for key, value in schema[name].items() if key in PARAM_KEYWORDS}
        | PARAM_EXTRA_KEYWORDS.get(name, {})} for name in (*PER_RUN_SETTINGS, *PARSE_TIME_SETTINGS)}}


def main(argv: list[str]) -> int:
    """`python -m utils.config`: every setting's current value and meaning; `--markdown`: the docs' table;
    `--env-example`: the pipeline's part of `.env.example`; `--dag-spec`: utils/dag_settings.json. A setting that
    cannot be used: one line, exit 1."""
    if argv == ["--markdown"]:
        print(markdown_table())
        return 0
    if argv == ["--env-example"]:
        print(env_example())
        return 0
    if argv == ["--dag-spec"]:
        print(json.dumps(dag_spec(), indent=2, sort_keys=True, ensure_ascii=False))
        return 0
    try:
        current = load_settings().public_dict()
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for name, variable in VARIABLES.items():
        print(f"{variable}={current[variable]}\n    {Settings.model_fields[name].description}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
