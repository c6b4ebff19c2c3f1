"""What a run may read (file:// only inside DATA_ALLOWED_DIRS, never a secret) and what it may show (one redaction
rule): a whole in-process run with secrets in its settings leaves none of them in any file or log line."""

from __future__ import annotations

import copy
import json
import logging
import re
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace

import pytest

from etl import airflow_tasks, catalog
from etl.pipeline import execute_step, run_all
from etl.steps import STEP
from tests.support.data import BUNDLED_CSV, FAKE_KEY, fake_key, open_run
from tests.support.servers import Answer, free_port, scripted_server
from utils import redact
from utils.config import PROJECT_ROOT, Settings, shown
from utils.data_url import data_url_pattern
from utils.errors import ConfigError

SECRET_DATA_URL = "https://reader:pw-4b1d@example.org:8443/d/BreastCancer.csv?token=tok-77e1#frag-5c"
DATA_URL_SECRETS = ("reader", "pw-4b1d", "tok-77e1", "frag-5c")
WITH_CREDENTIALS = ["https://u:p@example.org/x.csv", "https://u@example.org/x.csv", "http://example.org/x?token=t",
                    "https://example.org/x.csv#t", "https://:p@example.org/x.csv"]


def run_load(settings: Settings) -> dict:
    """The load step for the run "test", as the runner executes it; its summary."""
    return execute_step(STEP["load"], open_run(settings), settings)


def data_written(runs_dir: Path) -> list[str]:
    """The files under `runs_dir` besides each run's lock and start (run.json, written before load's work)."""
    return sorted(str(path) for path in runs_dir.rglob("*")
                  if path.is_file() and path.name not in (catalog.LOCK, catalog.RUN_INFO))


# --- what a run may read ------------------------------------------------------------------------------------------

def test_a_file_inside_the_allowed_folders_is_read(make_settings, tmp_path):
    copy = tmp_path / "in" / "copy.csv"
    copy.parent.mkdir()
    copy.write_bytes(BUNDLED_CSV.read_bytes())
    settings = make_settings(data_url=copy.as_uri(), data_allowed_dirs=str(tmp_path / "in"))
    assert run_load(settings)["location"] == "…/copy.csv"  # no path of this machine in the record


@pytest.mark.parametrize("where", ["outside", "dotdot", "symlink", "prefix"])
def test_a_file_outside_the_allowed_folders_is_refused_after_resolving(make_settings, tmp_path, where):
    allowed = tmp_path / "data"
    allowed.mkdir()
    outside = tmp_path / "other" / "x.csv"
    outside.parent.mkdir()
    outside.write_bytes(BUNDLED_CSV.read_bytes())
    (allowed / "link.csv").symlink_to(outside)
    (tmp_path / "data-more").mkdir()
    (tmp_path / "data-more" / "x.csv").write_bytes(BUNDLED_CSV.read_bytes())
    url = {"outside": outside.as_uri(), "dotdot": f"file://{allowed}/../other/x.csv",
           "symlink": (allowed / "link.csv").as_uri(), "prefix": (tmp_path / "data-more" / "x.csv").as_uri()}[where]
    # the settings refuse a path outside as written, load also one that leads outside through a link
    with pytest.raises(ConfigError, match=f"DATA_URL=.*DATA_ALLOWED_DIRS \\({allowed}\\)"):
        run_load(make_settings(data_url=url, data_allowed_dirs=str(allowed)))  # DATA_FALLBACK=true
    assert data_written(tmp_path / "runs") == []


@pytest.mark.parametrize("which", ["project-secrets", "any-secrets-folder", "credentials-file"])
def test_a_secret_is_refused_even_when_its_folder_is_allowed(make_settings, tmp_path, which):
    key = {"project-secrets": PROJECT_ROOT / "secrets" / "drive_sa.json",
           "any-secrets-folder": tmp_path / "Secrets" / "drive_sa.json",
           "credentials-file": tmp_path / "keys" / "drive_sa.json"}[which]
    settings = make_settings(data_url=key.as_uri(), data_allowed_dirs=f"{tmp_path},{PROJECT_ROOT / 'secrets'}",
                             google_credentials=key)
    with pytest.raises(ConfigError, match=r"is refused: .* is a secret"):
        run_load(settings)
    assert data_written(settings.runs_dir) == []


def test_no_allowed_folder_means_no_file_url(make_settings):
    with pytest.raises(ConfigError, match=r"DATA_URL=.* inside DATA_ALLOWED_DIRS \(empty\)"):
        make_settings(data_allowed_dirs="")


def test_the_param_pattern_is_no_wider_than_the_allowed_folders(tmp_path):
    odd = tmp_path / "dir with space+plus"
    pattern = re.compile(data_url_pattern((PROJECT_ROOT / "data", odd)))
    allowed = ["https://example.org/x.csv", "http://127.0.0.1:8/x", (PROJECT_ROOT / "data" / "x.csv").as_uri(),
               (odd / "x.csv").as_uri(), f"file://{odd}/x.csv"]
    refused = ["ftp://example.org/x.csv", "file:///etc/passwd", (PROJECT_ROOT / "secrets" / "drive_sa.json").as_uri(),
               f"file://{PROJECT_ROOT}/data/../secrets/drive_sa.json", f"file://{PROJECT_ROOT}/data/%2e%2e/x",
               f"file://{PROJECT_ROOT}/database/x.csv", f"file://{PROJECT_ROOT}/data", "HTTPS://x", " https://x",
               *WITH_CREDENTIALS, f"file://{PROJECT_ROOT}/data/x.csv?token=t", f"file://{PROJECT_ROOT}/data/x.csv#f"]
    assert [url for url in allowed if not pattern.search(url)] == []
    assert [url for url in refused if pattern.search(url)] == []
    only_web = re.compile(data_url_pattern(()))
    assert only_web.search("https://example.org/a@b/x.csv") and not only_web.search(allowed[2])
    assert [url for url in WITH_CREDENTIALS if only_web.search(url)] == []


def test_a_trigger_conf_changes_only_the_settings_declared_as_params(tmp_path):
    from dags.breast_cancer_pipeline import dag
    from utils.config import PER_RUN_SETTINGS

    assert set(dag.params) == set(PER_RUN_SETTINGS) and "data_allowed_dirs" not in PER_RUN_SETTINGS
    key = fake_key(tmp_path / "secrets")
    started = datetime(2030, 1, 1, tzinfo=UTC)
    conf = {"candidates": ["linear_svm"], "data_allowed_dirs": "/", "bundled_data_path": str(key),
            "google_credentials": "/x", "alert_webhook_url": "http://127.0.0.1:9/steal",
            "runs_dir": str(tmp_path)}  # as Airflow merges them
    settings = airflow_tasks.settings_for({"params": conf, "run_id": "r", "dag": dag,
                                           "dag_run": SimpleNamespace(logical_date=started, run_after=started)})
    defaults = Settings()
    assert settings.candidates == ("linear_svm",)
    assert (settings.data_allowed_dirs, settings.bundled_data_path, settings.google_credentials,
            settings.alert_webhook_url, settings.runs_dir) == (
        defaults.data_allowed_dirs, defaults.bundled_data_path, defaults.google_credentials,
        defaults.alert_webhook_url, defaults.runs_dir)


def task_context(dag, params: dict) -> dict:
    """What a task of `dag` gets from Airflow, for the settings: the run's Params (declared or not) and its start."""
    started = datetime(2030, 1, 1, tzinfo=UTC)
    return {"params": params, "run_id": "r", "dag": dag,
            "dag_run": SimpleNamespace(logical_date=started, run_after=started)}


@pytest.fixture(scope="module")
def secret_dag(tmp_path_factory):
    """The DAG as parsed with a DATA_URL carrying a user, a password, a token and a fragment."""
    from tests.unit.test_dag import parsed_dags

    dagbag = parsed_dags(tmp_path_factory, DATA_URL=SECRET_DATA_URL)
    assert dagbag.import_errors == {}
    return dagbag.dags["breast_cancer_pipeline"]


def test_the_dag_stores_and_shows_no_secret_of_data_url(secret_dag):
    from airflow.serialization.serialized_objects import DagSerialization

    serialized = json.dumps(DagSerialization.to_dict(secret_dag))  # what the metadata database and the UI get
    assert [secret for secret in DATA_URL_SECRETS if secret in serialized] == []
    param = secret_dag.params.get_param("data_url")
    assert param.value == "https://example.org:8443/d/BreastCancer.csv" == shown("DATA_URL", SECRET_DATA_URL)
    assert re.search(param.schema["pattern"], param.value)
    assert [secret for secret in DATA_URL_SECRETS if secret in json.dumps(param.dump())] == []


def test_a_run_with_the_default_data_url_reads_the_environments_full_url(secret_dag, monkeypatch):
    monkeypatch.setenv("DATA_URL", SECRET_DATA_URL)
    defaults = dict(secret_dag.params)  # what a trigger without conf gets: DATA_URL redacted...
    assert defaults["data_url"] == shown("DATA_URL", SECRET_DATA_URL)  # ...which the run reads with its credentials
    assert airflow_tasks.settings_for(task_context(secret_dag, defaults)).data_url == SECRET_DATA_URL
    other = "https://mirror.example.org/BreastCancer.csv"  # a run may name another source, without credentials
    assert airflow_tasks.settings_for(task_context(secret_dag, {**defaults, "data_url": other})).data_url == other


@pytest.mark.parametrize("url", WITH_CREDENTIALS)
def test_a_run_whose_data_url_carries_credentials_is_refused_by_name(secret_dag, monkeypatch, url):
    from airflow.sdk.exceptions import ParamValidationError

    monkeypatch.setenv("DATA_URL", SECRET_DATA_URL)
    params = copy.deepcopy(secret_dag.params)
    with pytest.raises(ParamValidationError, match="data_url"):  # the Trigger form and the REST API refuse it...
        params["data_url"] = url
    with pytest.raises(ConfigError, match=r"^setting data_url=.* a run's data_url must carry no credentials") as error:
        airflow_tasks.settings_for(task_context(secret_dag, {**dict(secret_dag.params), "data_url": url}))
    assert "p@" not in str(error.value) and "token" not in str(error.value)  # ...and so does the task


# --- what a run may show ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("variable, value, expected", [
    ("ALERT_WEBHOOK_URL", "https://hooks.slack.com/services/T0/B0/XYZ?x=1", "https://hooks.slack.com"),
    ("ALERT_WEBHOOK_URL", "http://u:p@127.0.0.1:8080/bot123:ABC/send", "http://127.0.0.1:8080"),
    ("DATA_URL", "https://user:pw@example.org:8443/d/x.csv?token=t#f", "https://example.org:8443/d/x.csv"),
    ("DATA_URL", "file:///work/data/x.csv", "file:///work/data/x.csv"),
    ("PUSHGATEWAY_URL", "http://admin:hunter2@[::1]:9091/", "http://[::1]:9091/"),
    ("GDRIVE_API_ROOT", "https://www.googleapis.com/?key=abc", "https://www.googleapis.com/"),
    ("GDRIVE_FOLDER_ID", "a?b#c", "a?b#c"),  # a setting without a rule is shown as it is
    ("ALERT_WEBHOOK_URL", "", ""),
])
def test_one_rule_per_setting(variable, value, expected):
    assert shown(variable, value) == expected


def test_settings_never_print_their_secrets():
    settings = Settings(alert_webhook_url="https://hooks.example.org/T0/secret-path",
                        data_url="https://u:pw-123@example.org/x.csv?token=tok-456")
    for text in (repr(settings), str(settings), f"{settings}", str(settings.public_dict())):
        assert "secret-path" not in text and "pw-123" not in text and "tok-456" not in text
    assert settings.public_dict()["ALERT_WEBHOOK_URL"] == "https://hooks.example.org"


def test_scrub_hides_every_secret_part_of_a_url_in_foreign_text():
    url = "http://u:pw-123@example.org/hook/secret-path?token=tok-456"
    text = f"urlopen failed for {url}; password pw-123; token=tok-456; path /hook/secret-path"
    assert redact.scrub(text, url) == ("urlopen failed for http://example.org/hook/secret-path; password ***; ***; "
                                       "path /hook/secret-path")
    scrubbed = redact.scrub(text, url, redact.ORIGIN)
    assert "secret-path" not in scrubbed and "pw-123" not in scrubbed and "tok-456" not in scrubbed


def test_a_whole_run_with_secrets_in_its_settings_leaves_none_in_any_file_or_log(make_settings, tmp_path, caplog):
    key_file = fake_key(tmp_path / "secrets")
    secrets = [FAKE_KEY, "s3cret-pw", "tok-7f3e9", "T00000000/B00000000/hook-secret-path", "pg-pass-99"]
    caplog.set_level(logging.DEBUG, logger="pipeline")
    with scripted_server(Answer(body=BUNDLED_CSV.read_bytes())) as source:
        data_url = source.url.replace("http://", "http://reader:s3cret-pw@") + "?token=tok-7f3e9"
        settings = make_settings(data_url=data_url, google_credentials=key_file,
                                 alert_webhook_url=f"https://hooks.example.org/services/{secrets[3]}",
                                 pushgateway_url=f"http://pusher:pg-pass-99@127.0.0.1:{free_port()}/")
        run_all(open_run(settings, "secretive"), settings)
    assert source.requests[0]["path"].endswith("?token=tok-7f3e9")  # the secrets were used...
    written = [path for root in (settings.runs_dir, settings.results_dir) for path in root.rglob("*") if path.is_file()]
    assert {catalog.MANIFEST, catalog.LOAD_INFO, catalog.RAW} <= {path.name for path in written}
    leaks = [(str(path), secret) for path in written for secret in secrets if secret.encode() in path.read_bytes()]
    leaks += [("log", secret) for secret in secrets if secret in caplog.text]
    assert leaks == []  # ...and never written
    assert "hooks.example.org" in (settings.runs_dir / "secretive" / catalog.MANIFEST).read_text()
    assert "could not push metrics" in caplog.text  # the refused Pushgateway was reported, without its password
