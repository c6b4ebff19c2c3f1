"""The settings the DAG files read when they are parsed, without the settings model: the per-run ones the Params
show, APPROVAL_REQUIRED and APPROVAL_TIMEOUT (the approval task), DATA_ALLOWED_DIRS (data_url's pattern) and
INCOMING_DIR (the folder the scoring DAG's watcher lists).

The dag-processor parses the file every 30 seconds, and importing pydantic-settings and building the Settings model
cost more than the whole DAG (`make bench`). So their spec (variable, description, default, JSON schema) is
utils/dag_settings.json, generated from utils/config.py (`python -m utils.config --dag-spec`; a test keeps it
current), and their values come as `load_settings` takes them: the environment over `.env` (ENV_FILE) over the
default. Each is checked against its setting's JSON schema here, a bad one refused by name; every setting is checked
in full when a task loads them (utils/config.py).
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

from utils.data_url import PROJECT_ROOT, data_url_pattern
from utils.errors import ConfigError, excerpt
from utils.redact import redact_url

SPEC = json.loads(Path(__file__).with_name("dag_settings.json").read_text(encoding="utf-8"))
TRUE = {"1", "true", "t", "yes", "y", "on"}  # what pydantic reads as a boolean, case aside
FALSE = {"0", "false", "f", "no", "n", "off"}


def env_file_values() -> dict[str, str | None]:
    """The `.env` file's assignments (ENV_FILE, default `<project>/.env`); python-dotenv only when there is one."""
    path = Path(os.environ.get("ENV_FILE", PROJECT_ROOT / ".env"))
    if not path.is_file():
        return {}
    from dotenv import dotenv_values

    return dotenv_values(path, encoding="utf-8")


def raw_values() -> dict[str, str]:
    """Each parse-time setting's text, by field name: the environment's, else `.env`'s, else the default."""
    from_file = env_file_values()
    texts = {}
    for name, spec in SPEC["settings"].items():
        variable = spec["variable"]
        text = os.environ.get(variable, from_file.get(variable))
        texts[name] = spec["default"] if text is None else text
    return texts


def typed(text: str, schema: dict[str, Any]) -> Any:
    """`text` as the JSON value its schema's type asks for, as pydantic would read it; left as text when it is
    not one (the schema check then refuses it)."""
    kind = schema.get("type")
    if kind == "array":
        return [item.strip() for item in text.split(",") if item.strip()]
    if kind == "boolean":
        return True if text.strip().lower() in TRUE else False if text.strip().lower() in FALSE else text
    if kind == "number":
        try:
            number = float(text)
        except ValueError:
            return text
        return number if math.isfinite(number) else text
    return text


def checked(name: str, value: Any, schema: dict[str, Any], written: str | None = None) -> Any:
    """`value` of the setting `name` (as `written`, when it was text) if its JSON schema accepts it; else
    ConfigError naming the variable and quoting what was written, or the item of a list that is refused."""
    from jsonschema import exceptions, validators  # Airflow has imported it already: the Params use it

    # the schema is ours (generated): checking it against the meta-schema, as jsonschema.validate does, costs most
    error = exceptions.best_match(validators.validator_for(schema)(schema).iter_errors(value))
    if error is not None:
        shown = error.instance if isinstance(error.instance, str) else value if written is None else written
        raise ConfigError(f"setting {SPEC['settings'][name]['variable']}={excerpt(str(shown))!r} is invalid: "
                          f"{excerpt(error.message, 200)}")
    return value


def current() -> dict[str, Any]:
    """Each parse-time setting's checked value, by field name (DATA_URL redacted: it becomes a Param default)."""
    values = {}
    for name, text in raw_values().items():
        spec = SPEC["settings"][name]
        value = checked(name, typed(text, spec["schema"]), spec["schema"], text)
        values[name] = redact_url(value, spec["redact"]) if spec["redact"] else value
    return values


def param_specs(values: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The keyword arguments of each per-run setting's Param: its current value, its description and its JSON
    schema; data_url's also a pattern no wider than DATA_ALLOWED_DIRS that admits no credentials."""
    allowed = tuple(PROJECT_ROOT / Path(folder).expanduser() for folder in values["data_allowed_dirs"])
    extra = {"data_url": {"pattern": data_url_pattern(allowed)}}
    schemas = {name: {**SPEC["settings"][name]["schema"], **extra.get(name, {})} for name in SPEC["params"]}
    return {name: {"default": checked(name, values[name], schema),
                   "description": f"{SPEC['settings'][name]['variable']}: {SPEC['settings'][name]['description']}",
                   **schema} for name, schema in schemas.items()}
