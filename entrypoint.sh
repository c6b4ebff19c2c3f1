#!/usr/bin/env bash
# Entry point of the pipeline's Airflow image (Dockerfile; services in docker-compose.yml).
#
# With STACK_INIT=true (the airflow-init service) it prepares the stack once, before the other services start:
# checks the shared folders are writable, waits for the metadata database, migrates it and writes the admin
# login of Airflow's SimpleAuthManager. Every run is idempotent: a restart changes nothing that is in place.
# Then, in every service, it hands the command over to the official image's entry point (IMAGE_ENTRYPOINT),
# which runs `airflow <command>`; with IMAGE_ENTRYPOINT empty it runs the command as given.
#
# Every path and command comes from the environment (defaults: the container's), so the tests run this script
# outside Docker against a real Airflow on SQLite and PostgreSQL.
set -euo pipefail

AIRFLOW_BIN=${AIRFLOW_BIN:-airflow}
PYTHON=${PYTHON:-python}
IMAGE_ENTRYPOINT=${IMAGE_ENTRYPOINT-/entrypoint}
DB_WAIT_TIMEOUT=${DB_WAIT_TIMEOUT:-120}
DB_WAIT_INTERVAL=${DB_WAIT_INTERVAL:-3}
PASSWORDS_FILE=${AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE:-/opt/airflow/auth/passwords.json}
ADMIN_USERNAME=${AIRFLOW_ADMIN_USERNAME:-admin}
SHARED_FOLDERS=("${RUNS_DIR:-/opt/airflow/runs}" "${RESULTS_DIR:-/opt/airflow/results}")
PLACEHOLDER=change-me

say() {
  echo "entrypoint: $*"
}

fail() {
  echo "entrypoint: ERROR: $*" >&2
  exit 1
}

# A user id that is not in /etc/passwd (AIRFLOW_UID = the host's uid) gets an entry with the image user's home,
# where Airflow lives, as the official entry point does (its /etc/passwd is group-writable): airflow-init runs
# Airflow before handing over to it, and Airflow refuses to run as a user without a name.
name_unknown_user() {
  if ! whoami >/dev/null 2>&1; then
    export HOME="${AIRFLOW_USER_HOME_DIR:-/home/airflow}"
    if [[ -w /etc/passwd ]]; then
      echo "default:x:$(id -u):0:default user:${HOME}:/sbin/nologin" >>/etc/passwd
    fi
  fi
}

wait_for_database() {
  local deadline=$((SECONDS + DB_WAIT_TIMEOUT))
  local output
  say "waiting up to ${DB_WAIT_TIMEOUT}s for the metadata database"
  until output=$("${AIRFLOW_BIN}" db check 2>&1); do
    if ((SECONDS >= deadline)); then
      echo "${output}" >&2
      fail "the metadata database did not answer within ${DB_WAIT_TIMEOUT}s (DB_WAIT_TIMEOUT);" \
        "the last 'airflow db check' output is above"
    fi
    sleep "${DB_WAIT_INTERVAL}"
  done
  say "the metadata database answers"
}

check_admin_password() {
  if [[ "${AIRFLOW_ADMIN_PASSWORD:-}" == "${PLACEHOLDER}" ]]; then
    fail "AIRFLOW_ADMIN_PASSWORD is still the placeholder '${PLACEHOLDER}': set a password in .env" \
      "or leave it empty to have one generated"
  fi
}

check_shared_folders() {
  local folder
  for folder in "${SHARED_FOLDERS[@]}"; do
    mkdir -p "${folder}" 2>/dev/null || true
    if [[ ! -d "${folder}" || ! -w "${folder}" ]]; then
      fail "folder ${folder} is missing or not writable by uid $(id -u);" \
        "set AIRFLOW_UID in .env to the owner of the host folder (id -u) and run 'make up' again"
    fi
  done
}

# SimpleAuthManager reads {"user": "password"} from its passwords file (and needs it writable). The password is
# AIRFLOW_ADMIN_PASSWORD when set; otherwise the one already in the file is kept, or a new one is generated
# and printed this once. Written atomically, other users' entries kept.
write_admin_login() {
  mkdir -p "$(dirname "${PASSWORDS_FILE}")"
  ADMIN_USERNAME="${ADMIN_USERNAME}" PASSWORDS_FILE="${PASSWORDS_FILE}" "${PYTHON}" - <<'PY'
import json
import os
import secrets
import tempfile
from pathlib import Path

path = Path(os.environ["PASSWORDS_FILE"])
user = os.environ["ADMIN_USERNAME"]
wanted = os.environ.get("AIRFLOW_ADMIN_PASSWORD", "")
try:
    passwords = json.loads(path.read_text(encoding="utf-8") or "{}") if path.exists() else {}
except json.JSONDecodeError as error:
    raise SystemExit(f"entrypoint: ERROR: {path} is not valid JSON ({error}); delete it to start again")
if not isinstance(passwords, dict):
    raise SystemExit(f'entrypoint: ERROR: {path} must hold a JSON object {{"user": "password"}}')

if wanted:
    message = f"login '{user}': password from AIRFLOW_ADMIN_PASSWORD"
elif user in passwords:
    wanted, message = passwords[user], f"login '{user}': password kept from {path}"
else:
    wanted = secrets.token_urlsafe(12)
    message = f"login '{user}': generated password (shown once, kept in {path}): {wanted}"

if passwords.get(user) != wanted:
    passwords[user] = wanted
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    with os.fdopen(handle, "w", encoding="utf-8") as stream:
        json.dump(passwords, stream)
        stream.write("\n")
    os.chmod(temporary, 0o660)
    os.replace(temporary, path)
print(f"entrypoint: {message}")
PY
}

prepare_stack() {
  check_admin_password
  check_shared_folders
  wait_for_database
  say "migrating the metadata database"
  "${AIRFLOW_BIN}" db migrate
  write_admin_login
  say "the stack is prepared"
}

name_unknown_user
if [[ "${STACK_INIT:-false}" == "true" ]]; then
  prepare_stack
fi
if [[ -n "${IMAGE_ENTRYPOINT}" ]]; then
  exec "${IMAGE_ENTRYPOINT}" "$@"
fi
exec "$@"
