"""What a failed run leaves behind and who hears about it.

The failing step's `on_failure_callback` records its error in the run's folder (`failure.json`); the
`failure_end` task reads it, marks the folder failed (`FAILED`, holding the alert and, once it is delivered, when
and where) and sends the alert: a log line always, and a JSON POST to ALERT_WEBHOOK_URL when it is set
({"text": ...} for Slack-style webhooks, plus structured fields). A failure is alerted once: a retry of
`failure_end` sends the alert again only when no earlier try delivered it. Nothing here imports Airflow, so it is
tested and reused without it.
"""

from __future__ import annotations

import dataclasses
import json
import urllib.error
import urllib.request
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from utils.config import check_http_url, scrubbed, shown
from utils.errors import PipelineError
from utils.files import read_json, write_json_atomic
from utils.logger import get_logger

FAILURE_FILE = "failure.json"
FAILED_MARKER = "FAILED"
WEBHOOK_TIMEOUT_SECONDS = 10.0
WEBHOOK = "ALERT_WEBHOOK_URL"  # its redaction rule (utils/config.py) shows scheme://host only
MAX_ERROR_CHARS = 2000  # chat webhooks reject huge messages; the full error stays in the task log
HISTORY_ERROR_CHARS = 300  # why the run is not in the history, in the alert: short, the task log has it whole
DELIVERED_AT, DELIVERED_TO = "delivered_at", "delivered_to"  # in FAILED, once the alert was delivered
FAILURE_FIELDS = ("dag_id", "run_id", "task_id", "failed_tasks", "error_type", "error", "log_url")  # one failure
log = get_logger("notify")


class AlertDeliveryError(PipelineError):
    """The alert webhook could not be reached or refused the alert."""

    transient = True


@dataclass(frozen=True)
class StepFailure:
    """Why one task of a run failed, as its failure callback saw it."""

    task_id: str
    error_type: str
    error: str
    try_number: int
    log_url: str


def record_failure(folder: Path, failure: StepFailure) -> Path:
    """Write the failure into the run's folder (atomically) for `failure_end` to read."""
    return write_json_atomic(folder / FAILURE_FILE, dataclasses.asdict(failure))


def read_failure(folder: Path) -> StepFailure | None:
    """The recorded failure of the run, or None when no callback recorded one (e.g. the worker was killed)."""
    path = folder / FAILURE_FILE
    return StepFailure(**read_json(path)) if path.is_file() else None


def clear_failure(folder: Path) -> None:
    """Forget an earlier failure of this run: a cleared step is running again."""
    for name in (FAILURE_FILE, FAILED_MARKER):
        (folder / name).unlink(missing_ok=True)


def build_alert(dag_id: str, run_id: str, failed_tasks: list[str], failure: StepFailure | None,
                folder: Path) -> dict[str, Any]:
    """The alert: a one-paragraph `text` for chat webhooks and the same facts as separate fields."""
    culprit = failure.task_id if failure else (failed_tasks[0] if failed_tasks else "unknown")
    reason = f"{failure.error_type}: {failure.error}" if failure else "no error was recorded; see the task log"
    reason = reason[:MAX_ERROR_CHARS]
    text = (f"{dag_id} run {run_id} FAILED at task {culprit}"
            + (f" (try {failure.try_number})" if failure else "") + f": {reason}"
            + (f"\nLog: {failure.log_url}" if failure and failure.log_url else "")
            + f"\nRun folder: {folder}")
    return {"text": text, "status": "failed", "dag_id": dag_id, "run_id": run_id, "task_id": culprit,
            "failed_tasks": failed_tasks, "error_type": failure.error_type if failure else "",
            "error": failure.error[:MAX_ERROR_CHARS] if failure else "",
            "log_url": failure.log_url if failure else "", "run_folder": str(folder)}


def not_in_history(alert: dict[str, Any], error: BaseException) -> dict[str, Any]:
    """The alert, also saying that the run could not be recorded in the history and why, shortly (at most
    HISTORY_ERROR_CHARS; the task log has the whole error)."""
    reason = " ".join(f"{type(error).__name__}: {error}".split())
    reason = reason[:HISTORY_ERROR_CHARS] + ("…" if len(reason) > HISTORY_ERROR_CHARS else "")
    return {**alert, "text": f"{alert['text']}\nNot recorded in the history: {reason}", "history_error": reason}


def mark_failed(folder: Path, alert: dict[str, Any]) -> Path:
    """Mark the run's folder as belonging to a failed run; the marker holds the alert."""
    return write_json_atomic(folder / FAILED_MARKER, alert)


def delivered_before(folder: Path, alert: dict[str, Any]) -> dict[str, Any] | None:
    """The marker of an earlier try that delivered this failure's alert (the same FAILURE_FIELDS), else None; an
    unreadable marker counts as undelivered: the alert goes again rather than nowhere."""
    path = folder / FAILED_MARKER
    try:
        marked = read_json(path) if path.is_file() else None
    except (PipelineError, OSError) as exc:
        log.warning("%s cannot be read (%s): the alert is sent as if never delivered", path, exc)
        return None
    if not isinstance(marked, dict) or not marked.get(DELIVERED_AT):
        return None
    return marked if all(marked.get(field) == alert.get(field) for field in FAILURE_FIELDS) else None


def alert_once(folder: Path, alert: dict[str, Any], webhook_url: str) -> bool:
    """Send the alert of this failure unless an earlier try delivered it, and mark the folder failed: the marker
    holds the alert and, once delivered, when and where. An undelivered alert is sent again on every try (what
    failure_end's retries are for); a delivered one never twice. Whether it was sent now."""
    earlier = delivered_before(folder, alert)
    if earlier is not None:
        log.info("the alert of this failure was delivered at %s to %s (the run's %s marker): not sent again",
                 earlier[DELIVERED_AT], earlier.get(DELIVERED_TO, "?"), FAILED_MARKER)
        return False
    delivered: dict[str, str] = {}
    try:
        send_alert(alert, webhook_url)
        delivered = {DELIVERED_AT: datetime.now(UTC).replace(microsecond=0).isoformat(),
                     DELIVERED_TO: shown(WEBHOOK, webhook_url) if webhook_url else "the task log"}
    except Exception as exc:
        if alert.get("history_error"):  # raised instead of the history's error: it goes on beside it
            exc.add_note(f"The run is not in the history either: {alert['history_error']}")
        raise
    finally:
        mark_failed(folder, {**alert, **delivered})
    return True


def post_webhook(url: str, alert: dict[str, Any], timeout: float = WEBHOOK_TIMEOUT_SECONDS) -> int:
    """POST `alert` as JSON to the http(s) URL `url`; returns the HTTP status or raises AlertDeliveryError (also
    for a URL of another scheme, which would never reach a person: file:// would be 'delivered' to nobody)."""
    try:
        check_http_url(url)
        request = urllib.request.Request(url, data=json.dumps(alert).encode("utf-8"), method="POST",
                                         headers={"Content-Type": "application/json"})
    except ValueError as exc:
        raise AlertDeliveryError(f"alert webhook {shown(WEBHOOK, url)} is unusable: {exc}; set {WEBHOOK} to "
                                 "an http(s):// URL") from None
    try:
        with http_only_opener().open(request, timeout=timeout) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        raise AlertDeliveryError(f"alert webhook {shown(WEBHOOK, url)} answered HTTP {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, TimeoutError, OSError, ValueError) as exc:  # ValueError: http.client.InvalidURL
        reason = scrubbed(str(getattr(exc, "reason", exc)), WEBHOOK, url)
        raise AlertDeliveryError(f"alert webhook {shown(WEBHOOK, url)} could not be reached: {reason}") from None


def http_only_opener() -> urllib.request.OpenerDirector:
    """urllib's opener without its file://, ftp:// and data: handlers: a redirect there is refused, not followed."""
    opener = urllib.request.OpenerDirector()
    for handler in (urllib.request.ProxyHandler(), urllib.request.UnknownHandler(), urllib.request.HTTPHandler(),
                    urllib.request.HTTPSHandler(), urllib.request.HTTPDefaultErrorHandler(),
                    urllib.request.HTTPRedirectHandler(), urllib.request.HTTPErrorProcessor()):
        opener.add_handler(handler)
    return opener


def send_alert(alert: dict[str, Any], webhook_url: str) -> None:
    """Log the alert; POST it when a webhook is configured. A failed POST is logged and raised, so the task
    that sends it fails visibly instead of hiding an alert nobody received."""
    log.error("%s", alert["text"])
    if not webhook_url:
        log.info("ALERT_WEBHOOK_URL is not set: the alert went to this log only")
        return
    try:
        status = post_webhook(webhook_url, alert)
    except AlertDeliveryError as exc:
        log.error("%s; the alert was NOT delivered (it is in this log and in the run's %s file)",
                  exc, FAILED_MARKER)
        raise
    log.info("alert delivered to %s (HTTP %d)", shown(WEBHOOK, webhook_url), status)
