"""The credentials file (GOOGLE_APPLICATION_CREDENTIALS), read locally into credentials ready for Drive.

The file is one of three kinds, told apart by its JSON "type":
- "service_account": a service-account key. Service accounts created since April 2025 own no Drive storage, so
  GDRIVE_FOLDER_ID must be on a Shared Drive where the account is a member (Content manager);
- "service_account" with GDRIVE_IMPERSONATE=user@domain: domain-wide delegation (Google Workspace); the files
  belong to that user;
- "authorized_user": an OAuth refresh token of a person's account (the way for personal Gmail accounts).
docs/google-drive.md walks through setting up each one.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from google.auth.credentials import Credentials
from google.oauth2 import credentials as user_credentials

from etl.publishers.gdrive.compat import ServiceAccountCredentials
from utils.config import Settings
from utils.errors import ConfigError

# The full `drive` scope, not `drive.file`: drive.file only reaches files this app created, or that a person
# opened with it through the Google Picker. GDRIVE_FOLDER_ID is a folder a person made in the Drive UI and
# shared with the account, so under drive.file files.get on it answers 404 notFound. The pipeline still only
# writes inside that folder; domain-wide delegation must authorize this same scope in the Admin console.
SCOPES = ("https://www.googleapis.com/auth/drive",)


@dataclass(frozen=True)
class DriveIdentity:
    """Credentials ready for Drive, and words for error messages: who they act as and which file they came from."""

    credentials: Credentials
    kind: str
    who: str
    source: Path


def read_credentials_info(path: Path) -> dict[str, Any]:
    """The JSON of the credentials file, or ConfigError saying what is wrong with it."""
    if not path.is_file():
        raise ConfigError(f"GOOGLE_APPLICATION_CREDENTIALS={path} does not exist: put the service-account key or "
                          "the OAuth token file there (docs/google-drive.md), or set STORAGE_BACKEND=local")
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"GOOGLE_APPLICATION_CREDENTIALS={path} cannot be read: {exc.strerror}") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"GOOGLE_APPLICATION_CREDENTIALS={path} is not a JSON credentials file: {exc}") from None
    if not isinstance(info, dict):
        raise ConfigError(f"GOOGLE_APPLICATION_CREDENTIALS={path} holds JSON but not a credentials object")
    return info


def credentials_kind(info: dict[str, Any], path: Path) -> str:
    """"service_account" or "authorized_user"; a token saved by google-auth-oauthlib has no "type" of its own."""
    kind = info.get("type") or ("authorized_user" if "refresh_token" in info else "")
    if kind in ("service_account", "authorized_user"):
        return kind
    if "installed" in info or "web" in info:
        raise ConfigError(f"{path} is an OAuth client secret, not a token: use it once to create an "
                          "'authorized_user' token file (docs/google-drive.md, 'OAuth user token')")
    raise ConfigError(f"{path} has credentials type {kind or '(none)'!r}; expected 'service_account' (a key) or "
                      "'authorized_user' (an OAuth token)")


def load_identity(path: Path, impersonate: str = "") -> DriveIdentity:
    """Credentials for Drive from the file at `path`, acting as `impersonate` when set (domain-wide delegation)."""
    info = read_credentials_info(path)
    kind = credentials_kind(info, path)
    try:
        if kind == "service_account":
            return service_account_identity(info, path, impersonate)
        if impersonate:
            raise ConfigError(f"GDRIVE_IMPERSONATE={impersonate} needs a service-account key, but {path} is an "
                              "OAuth user token: unset GDRIVE_IMPERSONATE or use a key with domain-wide delegation")
        return user_identity(info, path)
    except ValueError as exc:
        raise ConfigError(f"{path} is not a usable {kind} file: {exc}") from None


def service_account_identity(info: dict[str, Any], path: Path, impersonate: str) -> DriveIdentity:
    """The key's service account, or the user it impersonates through domain-wide delegation."""
    credentials = ServiceAccountCredentials.from_service_account_info(info, scopes=SCOPES)
    if not impersonate:
        return DriveIdentity(credentials, "service_account", f"service account {credentials.service_account_email}",
                             path)
    return DriveIdentity(credentials.with_subject(impersonate), "delegated",
                         f"{impersonate} (through service account {credentials.service_account_email})", path)


def user_identity(info: dict[str, Any], path: Path) -> DriveIdentity:
    """The Google account of an OAuth user token."""
    credentials = user_credentials.Credentials.from_authorized_user_info(info, scopes=SCOPES)
    if info.get("token_uri"):
        # google-auth always uses Google's token endpoint for user tokens; the file's own token_uri wins here,
        # as it does for service-account keys (tests point it at a fake).
        credentials = credentials.with_token_uri(info["token_uri"])
    who = f"the Google account of the OAuth token {path.name}" + (f" ({info['account']})"
                                                                   if info.get("account") else "")
    return DriveIdentity(credentials, "authorized_user", who, path)


def identity_from_settings(settings: Settings) -> DriveIdentity:
    """The credentials GOOGLE_APPLICATION_CREDENTIALS and GDRIVE_IMPERSONATE describe (read locally, no request)."""
    return load_identity(settings.google_credentials, settings.gdrive_impersonate.strip())
