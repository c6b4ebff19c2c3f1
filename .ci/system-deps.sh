#!/usr/bin/env bash
# Install the Debian tools that the tests run for real, when any is missing.
# Needs root (or sudo); otherwise prints what to install and leaves the decision to the user.
set -euo pipefail

# command on PATH -> Debian package that provides it
declare -A PACKAGES=(
  [promtool]=prometheus
  [prometheus]=prometheus
  [prometheus-pushgateway]=prometheus-pushgateway
  [docker-compose]=docker-compose
  [shellcheck]=shellcheck
  [pg_ctlcluster]=postgresql
  [chromium]=chromium
  [chromedriver]=chromium-driver
  [busybox]=busybox
  [curl]=curl
  [dockerd]=docker.io
  [debootstrap]=debootstrap
  [java]=default-jre-headless
)

missing=()
for command in "${!PACKAGES[@]}"; do
  command -v "$command" >/dev/null 2>&1 || missing+=("${PACKAGES[$command]}")
done
if [ "${#missing[@]}" -eq 0 ]; then
  echo "system-deps: all test tools are installed"
  exit 0
fi
mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)

if [ "$(id -u)" -eq 0 ]; then
  sudo=()
elif command -v sudo >/dev/null 2>&1; then
  sudo=(sudo)
else
  echo "system-deps: missing ${missing[*]}; install them with apt-get (tests that need them will be skipped)" >&2
  exit 0
fi
echo "system-deps: installing ${missing[*]}"
"${sudo[@]}" apt-get update -q
# --no-install-recommends: docker-compose would otherwise pull in the whole Docker engine
DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}"
