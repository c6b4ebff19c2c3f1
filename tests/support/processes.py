"""Processes the tests start on this machine (each in its own process group, stopped by PID even on failure), a
patient wait, and a throwaway PostgreSQL server from Debian's packages."""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from tests.support.monitoring_tools import require_tool

T = TypeVar("T")
LOOPBACK = "127.0.0.1"


class StackError(RuntimeError):
    """A process, a server or a wait did not behave as the test expects."""


# --- the compose file -----------------------------------------------------------------------------------


@dataclass
class Started:
    """A process started by a test, leader of its own process group."""

    name: str
    process: subprocess.Popen[bytes]
    log: Path
    stop_signal: signal.Signals = signal.SIGTERM

    def log_tail(self, lines: int = 40) -> str:
        """The last lines of its output, for error messages."""
        text = self.log.read_text(encoding="utf-8", errors="replace") if self.log.exists() else ""
        return "\n".join(text.splitlines()[-lines:])


class Processes:
    """Every process a test starts: each in its own process group, its output in `log_dir`, its
    environment tagged with a marker so that strays (grandchildren that left the group) can be found."""

    MARKER = "STACK_SMOKE_MARKER"

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.marker = f"test-processes-{os.getpid()}-{time.monotonic_ns()}"
        self.started: list[Started] = []
        log_dir.mkdir(parents=True, exist_ok=True)

    def tagged(self, env: Mapping[str, str]) -> dict[str, str]:
        """`env` with the marker added."""
        return {**env, self.MARKER: self.marker}

    def _log_path(self, name: str) -> Path:
        """A new log file for `name`: name.log, then name.2.log, ..."""
        count = len(list(self.log_dir.glob(f"{name}.log"))) + len(list(self.log_dir.glob(f"{name}.[0-9]*.log")))
        return self.log_dir / (f"{name}.log" if count == 0 else f"{name}.{count + 1}.log")

    def start(self, name: str, argv: list[str], env: Mapping[str, str], cwd: Path | None = None,
              user: str | None = None, stop_signal: signal.Signals = signal.SIGTERM,
              log: Path | None = None) -> Started:
        """Start `argv` in the background in a new process group; output to `log` (default: a new file)."""
        log = log or self._log_path(name)
        with log.open("wb") as output:
            process = subprocess.Popen(argv, env=self.tagged(env), cwd=cwd, stdout=output, stderr=subprocess.STDOUT,
                                       stdin=subprocess.DEVNULL, process_group=0, user=user)
        started = Started(name, process, log, stop_signal)
        self.started.append(started)
        return started

    def run(self, name: str, argv: list[str], env: Mapping[str, str], cwd: Path | None = None,
            user: str | None = None, timeout: float = 300.0,
            log: Path | None = None) -> subprocess.CompletedProcess[str]:
        """Run `argv` to completion in its own process group (killed on timeout); output in the log too."""
        started = self.start(name, argv, env, cwd, user, log=log)
        try:
            started.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise StackError(f"{name} ({shlex.join(argv)}) did not finish in {timeout:.0f} s:\n"
                             f"{started.log_tail()}") from None
        finally:
            self.stop(started, grace=5)
        output = started.log.read_text(encoding="utf-8", errors="replace")
        return subprocess.CompletedProcess(argv, started.process.returncode, output, "")

    def stop(self, *processes: Started, grace: float = 20.0) -> None:
        """Signal each whole group at once (its stop signal, then SIGKILL to those still alive after `grace`
        seconds) and reap the leaders."""
        for sig, wait in ((None, grace), (signal.SIGKILL, 5.0)):
            alive = [started for started in processes if group_alive(started.process.pid)]
            for started in alive:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(started.process.pid, sig or started.stop_signal)
            pgids = [started.process.pid for started in alive]
            wait_until(lambda pgids=pgids: not any(map(group_alive, pgids)), wait,
                       f"{', '.join(started.name for started in alive)} to exit", raise_on_timeout=False)
        for started in processes:
            with contextlib.suppress(subprocess.TimeoutExpired):
                started.process.wait(timeout=5)
            if started in self.started:
                self.started.remove(started)

    def stop_all(self) -> None:
        """Stop everything still running, the most recently started first."""
        for started in reversed(list(self.started)):
            self.stop(started)

    def strays(self) -> list[int]:
        """Live processes carrying this run's marker (e.g. task runners that made their own group)."""
        return marked_processes(self.MARKER, self.marker)

    def kill_strays(self) -> list[int]:
        """SIGKILL every process still carrying the marker; returns their ids."""
        strays = self.strays()
        for pid in strays:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        return strays


def group_alive(pgid: int) -> bool:
    """Whether any process of group `pgid` is still alive (zombies count as gone)."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return any(process_state(pid) not in {"Z", "X", None} for pid in processes_of_group(pgid))


def processes_of_group(pgid: int) -> list[int]:
    """The ids of the processes in group `pgid`, from /proc."""
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[2]) == pgid:
                members.append(int(stat.parent.name))
    return members


def process_state(pid: int) -> str | None:
    """The one-letter state of a process (R, S, Z...), None when it is gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return None


def marked_processes(variable: str, value: str) -> list[int]:
    """Live (non-zombie) processes whose environment has `variable=value`."""
    needle = f"{variable}={value}".encode()
    found = []
    for environ in Path("/proc").glob("[0-9]*/environ"):
        with contextlib.suppress(OSError):
            if needle in environ.read_bytes().split(b"\0"):
                pid = int(environ.parent.name)
                if process_state(pid) not in {"Z", "X", None}:
                    found.append(pid)
    return found


def wait_until(check: Callable[[], T], timeout: float, what: str, interval: float = 0.5,
               raise_on_timeout: bool = True, details: Callable[[], str] | None = None) -> T:
    """Call `check` until it returns a true value (returned) or `timeout` seconds pass (StackError)."""
    deadline = time.monotonic() + timeout
    last_error = ""
    result: T | None = None
    while True:
        try:
            result = check()
            if result:
                return result
        except (OSError, StackError, ValueError, KeyError) as exc:
            last_error = f"; last error: {exc}"
        if time.monotonic() >= deadline:
            if not raise_on_timeout:
                return result  # type: ignore[return-value]
            extra = f"\n{details()}" if details else ""
            raise StackError(f"timed out after {timeout:.0f} s waiting for {what}{last_error}{extra}")
        time.sleep(interval)


# --- native stand-ins for the images without Docker -----------------------------------------------------


POSTGRES_VERSIONS = Path("/usr/lib/postgresql")  # Debian keeps each major version's server tools apart


def postgres_bin() -> Path:
    """The server tools of the newest PostgreSQL installed (Debian: /usr/lib/postgresql/<major>/bin)."""
    found = sorted(POSTGRES_VERSIONS.glob("*/bin/postgres"), key=lambda path: int(path.parent.parent.name))
    return found[-1].parent if found else POSTGRES_VERSIONS / "missing" / "bin"


@dataclass(frozen=True)
class Database:
    """A running PostgreSQL: where it listens and who may log in."""

    port: int
    user: str
    password: str
    name: str
    server: Started


@contextlib.contextmanager
def postgres_server(processes: Processes, port: int, user: str, password: str, database: str) -> Iterator[Database]:
    """Debian's PostgreSQL on 127.0.0.1:`port` in a fresh cluster whose superuser is `user`; `database` created.

    As root the server runs as the `postgres` user (initdb refuses root), in a folder that user owns."""
    tools = postgres_bin()
    for tool in ("initdb", "postgres", "pg_isready", "createdb"):
        require_tool(str(tools / tool))
    os_user = "postgres" if os.geteuid() == 0 else None
    root = Path(tempfile.mkdtemp(prefix="test-pg-"))
    try:
        if os_user:
            shutil.chown(root, user=os_user)
        password_file = root / "password"
        password_file.write_text(password + "\n", encoding="utf-8")
        if os_user:
            shutil.chown(password_file, user=os_user)
        env = {"PATH": os.environ["PATH"], "LANG": "C.UTF-8"}
        initdb = processes.run("postgres-initdb", [str(tools / "initdb"), "-D", str(root / "data"), "-U", user,
                                                   f"--pwfile={password_file}", "-A", "scram-sha-256", "--no-sync",
                                                   "-E", "UTF8"], env, cwd=root, user=os_user, timeout=120)
        if initdb.returncode != 0:
            raise StackError(f"initdb failed:\n{initdb.stdout}")
        server = processes.start("postgres", [str(tools / "postgres"), "-D", str(root / "data"), "-p", str(port),
                                              "-c", f"listen_addresses={LOOPBACK}", "-c", "unix_socket_directories=",
                                              "-c", "fsync=off"], env, cwd=root, user=os_user,
                                 stop_signal=signal.SIGINT)  # the postgres image's STOPSIGNAL: fast shutdown
        ready = [str(tools / "pg_isready"), "-h", LOOPBACK, "-p", str(port), "-U", user]
        wait_until(lambda: subprocess.run(ready, capture_output=True, check=False).returncode == 0, 30,
                   "PostgreSQL to accept connections", details=server.log_tail)
        if database != "postgres":  # initdb makes only `postgres`; the postgres image creates POSTGRES_DB too
            created = subprocess.run([str(tools / "createdb"), "-h", LOOPBACK, "-p", str(port), "-U", user,
                                      database], env={**env, "PGPASSWORD": password}, capture_output=True, text=True,
                                     check=False)
            if created.returncode != 0:
                raise StackError(f"createdb {database} failed: {created.stderr}")
        try:
            yield Database(port, user, password, database, server)
        finally:
            processes.stop(server)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def killed_at(argv: list[str], kill_at: str, env: Mapping[str, str] | None = None,
              timeout: float = 60) -> tuple[list[str], int, str]:
    """Run `argv`, which prints what it is about to do one line at a time, and SIGKILL it as soon as it prints
    `kill_at` ("": let it finish); the lines it printed, its exit status and its stderr."""
    child = subprocess.Popen(argv, env=None if env is None else dict(env), stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    assert child.stdout is not None and child.stderr is not None
    lines = []
    for line in child.stdout:
        lines.append(line.strip())
        if kill_at and lines[-1] == kill_at:
            os.kill(child.pid, signal.SIGKILL)
            break
    returncode = child.wait(timeout=timeout)
    errors = child.stderr.read()
    child.stdout.close()
    child.stderr.close()
    return lines, returncode, errors
