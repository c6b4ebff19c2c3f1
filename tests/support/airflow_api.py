"""Airflow 3's REST API as the tests use it: JSON over HTTP with a SimpleAuthManager login."""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from tests.support.processes import StackError, wait_until


def http_json(url: str, payload: Any = None, headers: Mapping[str, str] | None = None,
              timeout: float = 30.0, method: str | None = None) -> Any:
    """JSON answer of a request (POST when `payload` is given, unless `method` says otherwise); an HTTP error
    raises StackError with its body."""
    data = None if payload is None else json.dumps(payload).encode("utf-8")
    request = urllib.request.Request(url, data=data, method=method, headers={
        "Content-Type": "application/json", "Accept": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return json.loads(response.read() or b"null")
    except urllib.error.HTTPError as exc:
        raise StackError(f"{request.get_method()} {url} answered HTTP {exc.code}: {exc.read()[:500]!r}") from None


FINISHED_RUN_STATES = frozenset({"success", "failed"})
MAPPED_STATE_ORDER = ("running", "failed", "up_for_retry", "queued", "scheduled")  # how instances combine


@dataclass
class AirflowApi:
    """Airflow 3's REST API with a SimpleAuthManager login (a JWT from POST /auth/token)."""

    base_url: str
    username: str
    password: str
    _token: str = ""

    def token(self) -> str:
        """A bearer token for the login, asked for once."""
        if not self._token:
            answer = http_json(f"{self.base_url}/auth/token", {"username": self.username, "password": self.password})
            self._token = answer["access_token"]
        return self._token

    def call(self, path: str, payload: Any = None, method: str | None = None) -> Any:
        """The JSON answer of `path` (POST when `payload` is given, unless `method` says otherwise)."""
        return http_json(f"{self.base_url}{path}", payload, {"Authorization": f"Bearer {self.token()}"},
                         method=method)

    def run_path(self, dag_id: str, run_id: str = "") -> str:
        """/api/v2/dags/<dag_id>/dagRuns[/<run_id>] with the run id quoted (it holds ':' and '+')."""
        suffix = f"/{urllib.parse.quote(run_id, safe='')}" if run_id else ""
        return f"/api/v2/dags/{urllib.parse.quote(dag_id)}/dagRuns{suffix}"

    def trigger(self, dag_id: str, conf: Mapping[str, Any] | None = None) -> str:
        """Trigger a manual run now (logical_date null, as Airflow 3 requires); returns its run id."""
        return self.call(self.run_path(dag_id), {"logical_date": None, "conf": dict(conf or {})})["dag_run_id"]

    def runs(self, dag_id: str) -> list[dict[str, Any]]:
        """Every run of the DAG, oldest first."""
        return self.call(f"{self.run_path(dag_id)}?order_by=run_after&limit=100")["dag_runs"]

    def wait_for_run(self, dag_id: str, run_id: str, timeout: float) -> dict[str, Any]:
        """The run once it has finished (success or failed)."""
        def finished() -> dict[str, Any] | None:
            run = self.call(self.run_path(dag_id, run_id))
            return run if run["state"] in FINISHED_RUN_STATES else None

        return wait_until(finished, timeout, f"run {run_id} of {dag_id} to finish", interval=2.0)

    def task_states(self, dag_id: str, run_id: str) -> dict[str, str]:
        """task id -> state of the run's task instances; a mapped task's instances (train: one per candidate) as
        one state: the one they share, else the first of MAPPED_STATE_ORDER any of them is in."""
        answer = self.call(f"{self.run_path(dag_id, run_id)}/taskInstances?limit=100")
        states: dict[str, set[str]] = {}
        for ti in answer["task_instances"]:
            states.setdefault(ti["task_id"], set()).add(ti["state"])
        return {task: found.pop() if len(found) == 1 else next(
            (state for state in MAPPED_STATE_ORDER if state in found), "mixed") for task, found in states.items()}

    def task_log(self, dag_id: str, run_id: str, task_id: str, try_number: int = 1) -> str:
        """The text of one try of a task instance's log, as the UI shows it."""
        answer = self.call(f"{self.run_path(dag_id, run_id)}/taskInstances/{urllib.parse.quote(task_id)}/logs/"
                           f"{try_number}?full_content=true")
        content = answer["content"]
        return "\n".join(json.dumps(line) for line in content) if isinstance(content, list) else str(content)
