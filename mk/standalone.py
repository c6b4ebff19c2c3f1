"""`make standalone` / `make standalone-stop`: `airflow standalone` in the background, started and stopped cleanly.

    python mk/standalone.py start AIRFLOW_BIN HOME URL LOG PIDFILE
    python mk/standalone.py stop PIDFILE WAIT_SECONDS

Standard library only. The caller (mk/airflow.mk) passes Airflow's settings in the environment.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

START_TIMEOUT_SECONDS = 120
PASSWORDS_FILE = "simple_auth_manager_passwords.json.generated"


def running(pid_file: Path) -> int | None:
    """The pid in `pid_file` when that process is alive."""
    try:
        pid = int(pid_file.read_text())
        os.kill(pid, 0)
    except (FileNotFoundError, ValueError, ProcessLookupError):
        return None
    return pid


def healthy(url: str) -> bool:
    """Whether the API server answers its health check."""
    try:
        with urllib.request.urlopen(f"{url}/api/v2/monitor/health", timeout=2):
            return True
    except OSError:
        return False


def start(airflow: str, home: Path, url: str, log: Path, pid_file: Path) -> int:
    """Start `airflow standalone` in its own process group, wait until it is healthy and print the login.

    SIGINT is set to its default in the child: a shell starts background commands with SIGINT ignored, and
    Airflow then never turns `make standalone-stop`'s SIGINT into a clean shutdown.
    """
    if pid := running(pid_file):
        print(f"Airflow is already running (pid {pid}); stop it with: make standalone-stop")
        return 1
    home.mkdir(parents=True, exist_ok=True)
    with open(log, "wb") as output:
        process = subprocess.Popen([airflow, "standalone"], stdout=output, stderr=subprocess.STDOUT,
                                   start_new_session=True,
                                   preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    pid_file.write_text(str(process.pid))
    print(f"Airflow starting (pid {process.pid}, log {log})...")
    passwords = home / PASSWORDS_FILE
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            print(log.read_text(errors="replace")[-3000:] + "\nAirflow exited during start-up (log above)")
            pid_file.unlink(missing_ok=True)
            return 1
        if healthy(url) and passwords.is_file():
            print(f"Airflow is up: {url}")
            for user, password in json.loads(passwords.read_text()).items():
                print(f"Login: {user} / {password}")
            return 0
        time.sleep(1)
    print(f"Airflow did not become healthy within {START_TIMEOUT_SECONDS} s; see {log}")
    return 1


def stop(pid_file: Path, wait_seconds: int) -> int:
    """SIGINT to the leader (`airflow standalone` then stops each component and waits for it); whatever of the
    group is still there after `wait_seconds` gets SIGTERM, then SIGKILL. SIGINT to the whole group can hang the
    scheduler's executor workers, and SIGTERM to the leader orphans them."""
    pid = running(pid_file)
    if pid is None:
        print("Airflow is not running")
        pid_file.unlink(missing_ok=True)
        return 0
    os.kill(pid, signal.SIGINT)
    for _ in range(wait_seconds):
        if not group_alive(pid):
            pid_file.unlink(missing_ok=True)
            print("Airflow stopped")
            return 0
        time.sleep(1)
    print(f"Airflow did not stop within {wait_seconds} s: terminating process group {pid}")
    for signal_number in (signal.SIGTERM, signal.SIGKILL):
        if group_alive(pid):
            os.killpg(pid, signal_number)
            time.sleep(5)
    pid_file.unlink(missing_ok=True)
    return 1


def group_alive(pid: int) -> bool:
    """Whether any process of the group `pid` leads is still there."""
    try:
        os.killpg(pid, 0)
    except ProcessLookupError:
        return False
    return True


def main(argv: list[str]) -> int:
    if argv[:1] == ["start"] and len(argv) == 6:
        return start(argv[1], Path(argv[2]), argv[3], Path(argv[4]), Path(argv[5]))
    if argv[:1] == ["stop"] and len(argv) == 3:
        return stop(Path(argv[1]), int(argv[2]))
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
