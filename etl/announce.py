"""Announce a batch (or a champion) to Airflow: `python -m etl.announce [--asset incoming|champion] [--note TEXT]`
posts an event of that Asset through the REST API (`POST /api/v2/assets/events`), which starts the scoring DAG.
For scripted use: a batch handed off into INCOMING_DIR needs no announcement (the Asset's watcher posts its event).

`make announce-batch` runs it inside the stack, `make standalone-announce-batch` next to `make standalone`. It
signs in with SimpleAuthManager's passwords file: AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE, else
`$AIRFLOW_HOME/simple_auth_manager_passwords.json.generated` (the first user); the API is AIRFLOW_API_URL, else
AIRFLOW__API__BASE_URL. Standard library only, so that it runs wherever Airflow's configuration is.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from etl import assets

ASSETS = {"incoming": assets.INCOMING_URI, "champion": assets.CHAMPION_URI}
GENERATED_PASSWORDS = "simple_auth_manager_passwords.json.generated"
TIMEOUT_SECONDS = 30.0


class AnnounceError(Exception):
    """The event could not be posted; the message says why."""


def request_json(url: str, payload: Any = None, token: str = "") -> Any:
    """The JSON answer of a GET (or a POST of `payload`); an HTTP error names the URL, status and a short body."""
    data = None if payload is None else json.dumps(payload).encode("utf-8")
    headers = {"Content-Type": "application/json", "Accept": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    try:
        with urllib.request.urlopen(urllib.request.Request(url, data=data, headers=headers),
                                    timeout=TIMEOUT_SECONDS) as response:
            return json.loads(response.read() or b"null")
    except urllib.error.HTTPError as exc:
        raise AnnounceError(f"{url} answered HTTP {exc.code}: {exc.read()[:200]!r}") from None
    except OSError as exc:
        raise AnnounceError(f"cannot reach {url}: {exc}; is Airflow running?") from None


def api_url(environ: dict[str, str]) -> str:
    """The API server's base URL, without a trailing slash."""
    url = environ.get("AIRFLOW_API_URL") or environ.get("AIRFLOW__API__BASE_URL") or "http://127.0.0.1:8080"
    return url.rstrip("/")


def login(environ: dict[str, str]) -> tuple[str, str]:
    """The first user and password of SimpleAuthManager's passwords file."""
    configured = environ.get("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE")
    path = Path(configured) if configured else Path(environ.get("AIRFLOW_HOME", "~/airflow")).expanduser() / \
        GENERATED_PASSWORDS
    try:
        users = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise AnnounceError(f"cannot read the Airflow login from {path}: {exc}") from None
    if not isinstance(users, dict) or not users:
        raise AnnounceError(f"{path} holds no user: expected {{\"<user>\": \"<password>\"}}")
    return next(iter(users.items()))


def asset_id(base: str, token: str, uri: str) -> int:
    """The id Airflow gave the Asset `uri` (it exists once a DAG that uses it was parsed)."""
    answer = request_json(f"{base}/api/v2/assets?{urllib.parse.urlencode({'uri_pattern': uri})}", token=token)
    for asset in answer.get("assets", []):
        if asset.get("uri") == uri:
            return int(asset["id"])
    raise AnnounceError(f"Airflow knows no Asset {uri}: has the DAG processor parsed the scoring DAG yet?")


def announce(asset: str, note: str, environ: dict[str, str]) -> dict[str, Any]:
    """Post one event of `asset` ("incoming" or "champion"); returns Airflow's answer."""
    base = api_url(environ)
    user, password = login(environ)
    token = request_json(f"{base}/auth/token", {"username": user, "password": password})["access_token"]
    extra = {"note": note} if note else {}
    return request_json(f"{base}/api/v2/assets/events",
                        {"asset_id": asset_id(base, token, ASSETS[asset]), "extra": extra}, token=token)


def main(argv: list[str] | None = None) -> int:
    """The command line: post the event and print its id, or one error line (exit status 1)."""
    parser = argparse.ArgumentParser(prog="python -m etl.announce", description=__doc__.splitlines()[0])
    parser.add_argument("--asset", choices=sorted(ASSETS), default="incoming", help="which Asset (default incoming)")
    parser.add_argument("--note", default="", help="a short note kept with the event (e.g. the batch's file name)")
    args = parser.parse_args(argv)
    try:
        event = announce(args.asset, args.note, dict(os.environ))
    except AnnounceError as exc:
        print(f"announce: {exc}", file=sys.stderr)
        return 1
    print(f"announced {ASSETS[args.asset]}: asset event {event.get('id')} at {event.get('timestamp')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
