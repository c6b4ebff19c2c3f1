"""Run the services of docker-compose.yml as local processes: the machinery of the stack smoke test.

docker-compose.yml is the source of truth: `docker-compose config` resolves it (anchors, env files,
interpolation) and each service runs its own command with its own environment and healthcheck. What Docker
would provide is replaced by a few generic rules (docs/stack-smoke.md lists them):

- hosts: every name of a service resolves to 127.0.0.1; inside a service, localhost is the service itself;
- ports: each (service, container port) gets a free loopback port; a URL without a port uses its scheme's
  default; `<X>_HOST=<service>` takes its container port from `<X>_PORT`;
- paths: a container path under a volume target maps into the volume's source (a read-only bind mount's host
  folder; a temporary folder for a writable bind mount, so that the test never writes into the working tree,
  and one per named volume); what the image's Dockerfile COPYs maps to its source in the build context; the
  rest of the image's writable folders map into a temporary copy per container;
- `$$` is compose's escape for `$`.

Images without a Debian build are replaced by stand-ins: PostgreSQL, Prometheus and the Pushgateway by Debian's
binaries, the statsd-exporter by tests/monitoring_support.py's emulation; what has none (Grafana) is not run.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path, PurePosixPath
from typing import Any, TypeVar

import yaml
from dotenv import dotenv_values
from selenium import webdriver
from selenium.common.exceptions import WebDriverException
from selenium.webdriver.chrome.service import Service as DriverService
from selenium.webdriver.common.by import By

from tests.support.monitoring_tools import StatsdExporter, StatsdMapping, require_tool
from tests.support.servers import free_port
from utils.config import PROJECT_ROOT

COMPOSE_FILE = PROJECT_ROOT / "docker-compose.yml"
LOOPBACK = "127.0.0.1"
SELF_HOSTS = frozenset({"localhost", "127.0.0.1", "0.0.0.0"})
DOCKER_HOST_NAME = "host.docker.internal"  # the machine running Docker, as containers reach it
DEFAULT_PORTS = {"http": 80, "https": 443, "postgresql": 5432, "postgres": 5432, "redis": 6379, "mysql": 3306}
T = TypeVar("T")


class StackError(RuntimeError):
    """The compose file or a native service did not behave as the smoke test expects."""


# --- the compose file -----------------------------------------------------------------------------------


def env_file_from_example(example: Path, target: Path, overrides: Mapping[str, str]) -> Path:
    """Write `example` to `target` with the values of `overrides` replacing (or appended to) its own."""
    lines, seen = [], set()
    for line in example.read_text(encoding="utf-8").splitlines():
        name = line.split("=", 1)[0].strip()
        if "=" in line and not line.lstrip().startswith("#") and name in overrides:
            line = f"{name}={overrides[name]}"
            seen.add(name)
        lines.append(line)
    lines += [f"{name}={value}" for name, value in overrides.items() if name not in seen]
    target.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return target


def resolve_compose(compose_file: Path, env_file: Path) -> dict[str, Any]:
    """`docker-compose config` of the file: anchors merged, env files read, variables interpolated.

    Runs with a minimal environment so that the developer's shell cannot change the result."""
    command = [require_tool("docker-compose"), "-f", str(compose_file), "--env-file", str(env_file), "config"]
    clean_env = {**{name: os.environ[name] for name in ("PATH", "HOME", "LANG") if name in os.environ},
                 "COMPOSE_ENV_FILE": str(env_file)}  # the containers' env_file: this .env, not the project's
    result = subprocess.run(command, capture_output=True, text=True, env=clean_env, cwd=compose_file.parent,
                            timeout=60, check=False)
    if result.returncode != 0:
        raise StackError(f"docker-compose config rejected {compose_file}: {result.stderr.strip()}")
    return yaml.safe_load(result.stdout)


@dataclass(frozen=True)
class Mount:
    """One volume entry: `source` is a host folder (bind) or a volume name (named); '' for anonymous."""

    source: str
    target: str
    bind: bool
    read_only: bool = False


@dataclass(frozen=True)
class Service:
    """The parts of a resolved compose service that the smoke test runs."""

    name: str
    image: str
    build_context: Path | None
    dockerfile: str
    build_args: dict[str, str]
    command: tuple[str, ...]
    entrypoint: tuple[str, ...] | None
    environment: dict[str, str]
    mounts: tuple[Mount, ...]
    healthcheck: tuple[str, ...]
    healthcheck_timeout: float
    container_ports: tuple[int, ...]
    published_ports: dict[int, int]  # host port -> container port
    depends_on: dict[str, str]  # service -> condition
    host_names: tuple[str, ...]
    working_dir: str
    stop_signal: str
    profiles: tuple[str, ...]


def as_argv(value: str | list[str] | None) -> tuple[str, ...] | None:
    """A compose command/entrypoint as an argument list (a string is split like a shell would)."""
    if value is None:
        return None
    return tuple(shlex.split(value)) if isinstance(value, str) else tuple(str(part) for part in value)


def parse_mount(entry: str | Mapping[str, Any]) -> Mount:
    """A short (`src:dst[:mode]`) or long (`{type, source, target}`) volume entry."""
    if isinstance(entry, Mapping):
        return Mount(str(entry.get("source") or ""), str(entry["target"]), entry.get("type") == "bind",
                     bool(entry.get("read_only")))
    parts = entry.split(":")
    if len(parts) == 1:
        return Mount("", parts[0], bind=False)
    return Mount(parts[0], parts[1], bind=parts[0].startswith(("/", ".", "~")),
                 read_only=len(parts) > 2 and "ro" in parts[2].split(","))


def parse_ports(entries: list[Any]) -> dict[int, int]:
    """host port -> container port of `ports:` entries that publish a fixed host port."""
    published = {}
    for entry in entries:
        if isinstance(entry, Mapping):
            if entry.get("published"):
                published[int(entry["published"])] = int(entry["target"])
            continue
        parts = str(entry).split("/")[0].split(":")
        if len(parts) >= 2 and parts[-2].isdigit():
            published[int(parts[-2])] = int(parts[-1])
    return published


def container_ports(spec: Mapping[str, Any], published: Mapping[int, int]) -> tuple[int, ...]:
    """Every container port a service declares (`ports:` and `expose:`)."""
    ports = set(published.values())
    for entry in spec.get("ports", []):
        target = entry.get("target") if isinstance(entry, Mapping) else str(entry).split("/")[0].split(":")[-1]
        ports.add(int(target))
    ports.update(int(str(entry).split("/")[0]) for entry in spec.get("expose", []))
    return tuple(sorted(ports))


def host_names(name: str, spec: Mapping[str, Any]) -> tuple[str, ...]:
    """The names other containers reach the service by: its name, hostname, container_name, aliases."""
    names = [name, spec.get("hostname"), spec.get("container_name")]
    networks = spec.get("networks") or {}
    for network in networks.values() if isinstance(networks, Mapping) else ():  # a list names networks only
        names += (network or {}).get("aliases", [])
    return tuple(dict.fromkeys(str(n) for n in names if n))


def parse_service(name: str, spec: Mapping[str, Any]) -> Service:
    """A Service from its resolved compose mapping."""
    build = spec.get("build")
    build = {"context": build} if isinstance(build, str) else (build or {})
    environment = spec.get("environment") or {}
    if isinstance(environment, list):
        environment = dict(item.split("=", 1) for item in environment if "=" in item)
    depends_on = spec.get("depends_on") or {}
    if isinstance(depends_on, list):
        depends_on = {other: "service_started" for other in depends_on}
    published = parse_ports(spec.get("ports", []))
    healthcheck = spec.get("healthcheck") or {}
    return Service(
        name=name, image=str(spec.get("image", "")),
        build_context=Path(build["context"]) if build.get("context") else None,
        dockerfile=str(build.get("dockerfile", "Dockerfile")),
        build_args={str(key): str(value) for key, value in (build.get("args") or {}).items()},
        command=as_argv(spec.get("command")) or (),
        entrypoint=as_argv(spec.get("entrypoint")),
        environment={key: str(value) for key, value in environment.items() if value is not None},
        mounts=tuple(parse_mount(entry) for entry in spec.get("volumes", [])),
        healthcheck=tuple(str(part) for part in healthcheck.get("test", [])),
        healthcheck_timeout=duration_seconds(str(healthcheck.get("timeout", "30s"))),
        container_ports=container_ports(spec, published), published_ports=published,
        depends_on={other: (cond or {}).get("condition", "service_started") if isinstance(cond, Mapping)
                    else "service_started" for other, cond in depends_on.items()},
        host_names=host_names(name, spec), working_dir=str(spec.get("working_dir", "")),
        stop_signal=str(spec.get("stop_signal", "")), profiles=tuple(spec.get("profiles", ())),
    )


def duration_seconds(text: str) -> float:
    """A compose duration (`1m30s`, `10s`, `500ms`) in seconds."""
    units = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001, "us": 1e-6}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|us|h|m|s)", text)
    if not parts or "".join(number + unit for number, unit in parts) != text:
        raise StackError(f"{text!r} is not a compose duration such as 30s or 1m30s")
    return sum(float(number) * units[unit] for number, unit in parts)


def parse_services(config: Mapping[str, Any], profiles: tuple[str, ...] = ()) -> dict[str, Service]:
    """The services of a resolved compose configuration that run with `profiles` active (a service without
    profiles always runs)."""
    services = {name: parse_service(name, spec) for name, spec in (config.get("services") or {}).items()}
    return {name: s for name, s in services.items() if not s.profiles or set(s.profiles) & set(profiles)}


def image_name(service: Service) -> str:
    """The image's repository name without registry, namespace or tag: `prom/pushgateway:v1` -> pushgateway."""
    return service.image.rsplit("/", 1)[-1].split(":", 1)[0].split("@", 1)[0]


def is_airflow_service(service: Service) -> bool:
    """Airflow services carry Airflow configuration (AIRFLOW__SECTION__KEY variables) in their environment."""
    return any(key.startswith("AIRFLOW__") for key in service.environment)


def one_shot_services(services: Mapping[str, Service]) -> set[str]:
    """Services others wait for to *complete* (the init step), rather than to be healthy or started."""
    return {other for service in services.values() for other, condition in service.depends_on.items()
            if condition == "service_completed_successfully"}


def start_order(services: Mapping[str, Service], names: set[str]) -> list[str]:
    """`names` ordered so that every service comes after the services it depends on."""
    ordered: list[str] = []

    def visit(name: str, path: tuple[str, ...]) -> None:
        if name in path:
            raise StackError(f"depends_on cycle: {' -> '.join((*path, name))}")
        if name in ordered:
            return
        for other in sorted(services[name].depends_on):
            if other in names:
                visit(other, (*path, name))
        ordered.append(name)

    for name in sorted(names):
        visit(name, ())
    return ordered


# --- the image ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Image:
    """What the service's image adds: its ENV, WORKDIR, ENTRYPOINT and COPY'd paths (container -> host)."""

    environment: dict[str, str] = field(default_factory=dict)
    working_dir: str = ""
    entrypoint: tuple[str, ...] = ()
    command: tuple[str, ...] = ()
    copies: dict[str, Path] = field(default_factory=dict)


def dockerfile_instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of a Dockerfile, continuation lines joined and comments dropped."""
    joined = re.sub(r"\\\n", " ", "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#")))
    instructions = []
    for line in joined.splitlines():
        if line.strip():
            keyword, _, arguments = line.strip().partition(" ")
            instructions.append((keyword.upper(), arguments.strip()))
    return instructions


def env_assignments(arguments: str) -> dict[str, str]:
    """`ENV A=1 B="two words"` (or the legacy `ENV A 1`) as a mapping."""
    words = shlex.split(arguments)
    if words and "=" not in words[0]:
        return {words[0]: " ".join(words[1:])}
    return dict(word.split("=", 1) for word in words)


DOCKERFILE_VARIABLE = re.compile(r"\$(?:\{(?P<braced>\w+)(?::-(?P<default>[^}]*))?\}|(?P<plain>\w+))")


def expand(text: str, values: Mapping[str, str]) -> str:
    """Dockerfile variable substitution: `$NAME`, `${NAME}`, `${NAME:-default}`."""
    def value(match: re.Match[str]) -> str:
        name = match.group("braced") or match.group("plain")
        return values.get(name) or (match.group("default") or "")

    return DOCKERFILE_VARIABLE.sub(value, text)


def exec_form(arguments: str) -> tuple[str, ...]:
    """An ENTRYPOINT/CMD in JSON (exec) form, or the shell form run by /bin/sh -c."""
    if arguments.startswith("["):
        return tuple(json.loads(arguments))
    return ("/bin/sh", "-c", arguments)


def copy_sources(arguments: str, context: Path, working_dir: str) -> dict[str, Path]:
    """container path -> host path of a COPY/ADD from the build context (a `--from` stage copies nothing of
    ours). The whole context maps entry by entry, so that its destination stays the image's own folder."""
    words = shlex.split(arguments)
    if any(word.startswith("--from") for word in words):
        return {}
    *sources, destination = [word for word in words if not word.startswith("--")]
    target = PurePosixPath(working_dir or "/") / destination
    into_folder = destination.endswith("/") or len(sources) > 1
    copied: dict[str, Path] = {}
    for source in sources:
        host = (context / source).resolve()
        if host == context.resolve():
            copied.update({str(target / child.name): child for child in sorted(host.iterdir())})
        elif host.is_dir() or not into_folder:
            copied[str(target)] = host
        else:
            copied[str(target / host.name)] = host
    return copied


def read_image(service: Service, base: Image) -> Image:
    """The image of a service built from a Dockerfile in the build context, on top of `base`."""
    if service.build_context is None:
        return base
    dockerfile = service.build_context / service.dockerfile
    environment, working_dir = dict(base.environment), base.working_dir
    entrypoint, command, copies = base.entrypoint, base.command, dict(base.copies)
    build_args: dict[str, str] = {}
    for keyword, text in dockerfile_instructions(dockerfile.read_text(encoding="utf-8")):
        arguments = expand(text, {**build_args, **environment})
        if keyword == "ARG":
            name, _, default = text.partition("=")
            build_args[name] = service.build_args.get(name, default)
        elif keyword == "ENV":
            environment.update(env_assignments(arguments))
        elif keyword == "WORKDIR":
            working_dir = str(PurePosixPath(working_dir or "/") / arguments)
        elif keyword == "ENTRYPOINT":
            entrypoint, command = exec_form(arguments), ()  # a new ENTRYPOINT resets the base image's CMD
        elif keyword == "CMD":
            command = exec_form(arguments)
        elif keyword in {"COPY", "ADD"}:
            copies.update(copy_sources(arguments, service.build_context, working_dir))
    return Image(environment, working_dir, entrypoint, command, copies)


# --- host names, ports and paths ------------------------------------------------------------------------


@dataclass
class Network:
    """Where each service is reachable natively: its names resolve to 127.0.0.1 and each (service, container
    port) pair to its own loopback port, allocated the first time it is asked for."""

    host_owner: dict[str, str]  # host name -> service
    published: dict[int, tuple[str, int]]  # published host port -> (service, container port)
    declared: dict[str, tuple[int, ...]]  # service -> its container ports
    ports: dict[tuple[str, int], int] = field(default_factory=dict)

    @classmethod
    def of(cls, services: Mapping[str, Service]) -> Network:
        """The network of a compose project's services."""
        return cls(host_owner={host: s.name for s in services.values() for host in s.host_names},
                   published={host_port: (s.name, port) for s in services.values()
                              for host_port, port in s.published_ports.items()},
                   declared={s.name: s.container_ports for s in services.values()})

    def port(self, service: str, container_port: int) -> int:
        """The loopback port standing for `container_port` of `service`."""
        key = (service, container_port)
        if key not in self.ports:
            self.ports[key] = free_port()
        return self.ports[key]

    def assign(self, service: str, container_port: int, port: int) -> None:
        """Record a port already bound by a native stand-in (e.g. a UDP listener)."""
        self.ports[(service, container_port)] = port

    def service_at(self, host: str, port: int | None, own: str | None) -> tuple[str, int | None] | None:
        """(service, container port) that `host[:port]` reaches from inside service `own` (None: from the
        host), or None for an outside host. localhost is the service itself, unless the service does not declare
        that port and another service publishes it (a URL for the browser, such as a base URL)."""
        if host in self.host_owner:
            return self.host_owner[host], port
        if host not in SELF_HOSTS:
            return None
        if port is None or (own is not None and port in self.declared.get(own, ())):
            return (own, port) if own else None
        return self.published.get(port) or ((own, port) if own else None)


@dataclass(frozen=True)
class FileSystem:
    """Container path prefixes -> host folders, for one service (longest prefix wins)."""

    mapping: dict[str, Path]

    def host_path(self, container_path: str) -> str | None:
        """The host path of `container_path`, or None when no mapped folder contains it."""
        path = PurePosixPath(container_path)
        for prefix in sorted(self.mapping, key=len, reverse=True):
            if path == PurePosixPath(prefix) or PurePosixPath(prefix) in path.parents:
                return str(self.mapping[prefix] / path.relative_to(prefix))
        return None


URL = r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*)://(?P<auth>[^/\s?#'\"]*@)?(?P<host>[A-Za-z0-9_.-]*)(?::(?P<port>\d+))?" \
      r"(?P<path>/[^\s'\"]*)?"
HOST_PORT = r"(?<![\w.@/:-])(?P<bare_host>[A-Za-z][A-Za-z0-9_.-]*):(?P<bare_port>\d+)\b"
PATH = r"(?<![\w./~$-])(?P<file>/[^\s:;,'\"=]+)"
TOKENS = re.compile(f"{URL}|{HOST_PORT}|{PATH}")


@dataclass(frozen=True)
class Rewriter:
    """Rewrites one service's strings from the container's view (names, ports, paths) to the host's."""

    network: Network
    files: FileSystem
    own: str | None = None

    def address(self, host: str, port: int | None, scheme: str = "") -> tuple[str, int | None] | None:
        """(127.0.0.1, loopback port) for a service's address or the Docker host's; None for an outside one."""
        if host == DOCKER_HOST_NAME:
            return LOOPBACK, port
        reached = self.network.service_at(host, port, self.own)
        if reached is None:
            return None
        service, container_port = reached
        container_port = container_port if container_port is not None else DEFAULT_PORTS.get(scheme.split("+")[0])
        if container_port is None:
            raise StackError(f"{scheme}://{host} has no port and {scheme!r} has no known default port")
        return LOOPBACK, self.network.port(service, container_port)

    def _token(self, match: re.Match[str]) -> str:
        text = match.group(0)
        if match.group("scheme"):
            scheme, host, port = match.group("scheme"), match.group("host"), match.group("port")
            path = match.group("path") or ""
            if scheme == "file":
                return f"file://{host}{self.files.host_path(path) or path}"
            address = self.address(host, int(port) if port else None, scheme) if host else None
            if address is None:
                return text
            return f"{scheme}://{match.group('auth') or ''}{address[0]}:{address[1]}{path}"
        if match.group("bare_host"):
            address = self.address(match.group("bare_host"), int(match.group("bare_port")))
            return text if address is None else f"{address[0]}:{address[1]}"
        return self.files.host_path(match.group("file")) or text

    def text(self, value: str) -> str:
        """A string with `$$` unescaped and its addresses (URLs, host:port) and container paths rewritten."""
        return TOKENS.sub(self._token, value.replace("$$", "$"))

    def environment(self, environment: Mapping[str, str]) -> dict[str, str]:
        """Every value rewritten; a `<X>HOST` variable naming a service becomes 127.0.0.1 and the `<X>PORT`
        beside it that service's loopback port."""
        rewritten = {key: self.text(value) for key, value in environment.items()}
        for key, value in environment.items():
            if key.endswith("HOST") and value in self.network.host_owner:
                rewritten[key] = LOOPBACK
                port_key = key.removesuffix("HOST") + "PORT"
                if environment.get(port_key, "").isdigit():
                    service = self.network.host_owner[value]
                    rewritten[port_key] = str(self.network.port(service, int(environment[port_key])))
        return rewritten

    def argv(self, argv: tuple[str, ...]) -> list[str]:
        """A command with every argument rewritten."""
        return [self.text(arg) for arg in argv]


def healthcheck_argv(test: tuple[str, ...], rewriter: Rewriter) -> list[str] | None:
    """The healthcheck as a command to run here: CMD as is, CMD-SHELL through /bin/sh -c; None for NONE/none."""
    if not test or test[0] == "NONE":
        return None
    if test[0] == "CMD":
        return rewriter.argv(test[1:])
    if test[0] == "CMD-SHELL":
        return ["/bin/sh", "-c", rewriter.text(" ".join(test[1:]))]
    raise StackError(f"healthcheck test must start with CMD, CMD-SHELL or NONE, got {test[0]!r}")


# --- processes -------------------------------------------------------------------------------------------


@dataclass
class Started:
    """A process started by the smoke test, leader of its own process group."""

    name: str
    process: subprocess.Popen[bytes]
    log: Path
    stop_signal: signal.Signals = signal.SIGTERM

    def log_tail(self, lines: int = 40) -> str:
        """The last lines of its output, for error messages."""
        text = self.log.read_text(encoding="utf-8", errors="replace") if self.log.exists() else ""
        return "\n".join(text.splitlines()[-lines:])


class Processes:
    """Every process the smoke test starts: each in its own process group, its output in `log_dir`, its
    environment tagged with a marker so that strays (grandchildren that left the group) can be found."""

    MARKER = "STACK_SMOKE_MARKER"

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.marker = f"stack-smoke-{os.getpid()}-{time.monotonic_ns()}"
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
    root = Path(tempfile.mkdtemp(prefix="stack-smoke-pg-"))
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


class StatsdListener:
    """A UDP socket on 127.0.0.1 recording the statsd packets a statsd-exporter would receive, and handing
    each packet to `on_packet` (its errors are kept in `errors`, not raised in the receiving thread)."""

    def __init__(self, on_packet: Callable[[str], None] | None = None) -> None:
        self.socket = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.socket.bind((LOOPBACK, 0))
        self.socket.settimeout(0.2)
        self.port: int = self.socket.getsockname()[1]
        self.lines: list[str] = []
        self.errors: list[str] = []
        self._on_packet = on_packet
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._receive, name="statsd-listener", daemon=True)

    def _receive(self) -> None:
        while not self._stop.is_set():
            try:
                packet = self.socket.recv(65535).decode("utf-8", errors="replace")
            except TimeoutError:
                continue
            self.lines += [line for line in packet.splitlines() if line]
            if self._on_packet:
                try:
                    self._on_packet(packet)
                except ValueError as exc:
                    self.errors.append(f"{packet!r}: {exc}")

    def names(self) -> set[str]:
        """The metric names received so far (`name:value|type` -> name)."""
        return {line.split(":", 1)[0] for line in list(self.lines)}

    def __enter__(self) -> StatsdListener:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.socket.close()


@contextlib.contextmanager
def text_server(port: int, render: Callable[[], str]) -> Iterator[str]:
    """An HTTP server on 127.0.0.1:`port` answering every GET with `render()` (a /metrics page); yields its URL."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = render().encode("utf-8")
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_HEAD = do_GET

        def log_message(self, format: str, *args: object) -> None:  # keep test output clean
            pass

    server = ThreadingHTTPServer((LOOPBACK, port), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, name=f"text-server-{port}", daemon=True)
    thread.start()
    try:
        yield f"http://{LOOPBACK}:{port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def http_json(url: str, payload: Any = None, headers: Mapping[str, str] | None = None,
              timeout: float = 30.0) -> Any:
    """JSON answer of a request (POST when `payload` is given); an HTTP error raises StackError with its body."""
    data = None if payload is None else json.dumps(payload).encode("utf-8")
    request = urllib.request.Request(url, data=data, headers={
        "Content-Type": "application/json", "Accept": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return json.loads(response.read() or b"null")
    except urllib.error.HTTPError as exc:
        raise StackError(f"{request.get_method()} {url} answered HTTP {exc.code}: {exc.read()[:500]!r}") from None


# --- the stack ------------------------------------------------------------------------------------------

# What the official apache/airflow image provides under the Dockerfile's FROM (its ENV, WORKDIR, ENTRYPOINT),
# and the folders of its filesystem that a container may write to (one private copy per container).
AIRFLOW_BASE_IMAGE = Image(environment={"AIRFLOW_HOME": "/opt/airflow", "AIRFLOW_USER_HOME_DIR": "/home/airflow",
                                        "HOME": "/home/airflow"},
                           working_dir="/opt/airflow", entrypoint=("/usr/bin/dumb-init", "--", "/entrypoint"))
IMAGE_WRITABLE_ROOTS = ("/opt/airflow", "/home/airflow")
BASE_ENTRYPOINT = "/entrypoint"
BASE_ENTRYPOINT_STAND_IN = """#!/bin/sh
# Native stand-in for the apache/airflow image's /entrypoint, its command dispatch only: `bash ...` and
# `python ...` run as given, anything else is an Airflow subcommand.
case "$1" in
  bash|python|airflow) exec "$@" ;;
  *) exec airflow "$@" ;;
esac
"""
INIT_WRAPPERS = frozenset({"dumb-init", "tini"})  # PID-1 reapers: a process group does their job here
# Where Airflow components listen: (port setting, host setting or None, Airflow's default port).
AIRFLOW_LISTENERS = (
    ("AIRFLOW__API__PORT", "AIRFLOW__API__HOST", 8080),
    ("AIRFLOW__SCHEDULER__SCHEDULER_HEALTH_CHECK_SERVER_PORT",
     "AIRFLOW__SCHEDULER__SCHEDULER_HEALTH_CHECK_SERVER_HOST", 8974),
    ("AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT", None, 8793),
    ("AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT", None, 8794),
)
# Images replaced by a Debian binary: image name -> (binary, the port its --web.listen-address defaults to).
PROMETHEUS_TOOLS = {"prometheus": ("/usr/bin/prometheus", 9090),
                    "pushgateway": ("/usr/bin/prometheus-pushgateway", 9091)}
# The prom/* images are built on BusyBox: their healthchecks' `wget --spider` is BusyBox's, which sends a GET (GNU
# wget sends a HEAD, which the Pushgateway answers with 405).
BUSYBOX_IMAGE_PREFIX = "prom/"
BUSYBOX = "/usr/bin/busybox"
STATSD_EXPORTER = "statsd-exporter"  # no package: tests/monitoring_support.py's StatsdExporter stands in
STATSD_UDP_FLAG, STATSD_UDP_DEFAULT = "--statsd.listen-udp", 9125
STATSD_WEB_DEFAULT = 9102
WEB_LISTEN_FLAG = "--web.listen-address"  # the prom/* servers' HTTP address
STATSD_MAPPING_FLAG = "--statsd.mapping-config"
PROMETHEUS_CONFIG_FLAG = "--config.file"
POLL_SECONDS = 1.0


def stop_signal(service: Service) -> signal.Signals:
    """The signal `docker compose stop` sends the service: its stop_signal, SIGTERM by default."""
    return signal.Signals[service.stop_signal] if service.stop_signal else signal.SIGTERM


def strip_init_wrapper(argv: tuple[str, ...]) -> tuple[str, ...]:
    """`dumb-init -- cmd ...` -> `cmd ...`."""
    if argv and PurePosixPath(argv[0]).name in INIT_WRAPPERS:
        return argv[argv.index("--") + 1:] if "--" in argv else argv[1:]
    return argv


def runnable(argv: list[str]) -> list[str]:
    """`argv` with a script that lacks the executable bit (COPY --chmod sets it in the image) run through the
    interpreter named on its #! line."""
    script = Path(argv[0])
    if not script.is_file() or os.access(script, os.X_OK):
        return argv
    first_line = script.read_text(encoding="utf-8", errors="replace").splitlines()[0]
    if not first_line.startswith("#!"):
        raise StackError(f"{script} is neither executable nor a #! script")
    return [*shlex.split(first_line[2:]), *argv]


def flag_value(argv: tuple[str, ...], flag: str) -> str | None:
    """The value of `--flag=value` or `--flag value` in `argv`."""
    for index, arg in enumerate(argv):
        if arg.startswith(f"{flag}="):
            return arg.split("=", 1)[1]
        if arg == flag and index + 1 < len(argv):
            return argv[index + 1]
    return None


def listen_port(address: str | None, default: int) -> int:
    """The port of a listen address such as `:9125`, `0.0.0.0:9091` (default when not given)."""
    return int(address.rsplit(":", 1)[1]) if address and ":" in address else default


def link_into(root: Path, container_path: str, host: Path) -> None:
    """Make `root/<container_path>` a symlink to `host`, unless that would write outside `root` (a path inside
    an earlier link into the repository)."""
    root.mkdir(parents=True, exist_ok=True)
    link = root / container_path.lstrip("/")
    existing = next(parent for parent in (link.parent, *link.parent.parents) if parent.exists())
    if not existing.resolve().is_relative_to(root.resolve()):
        return
    link.parent.mkdir(parents=True, exist_ok=True)
    if link.is_symlink():
        link.unlink()
    elif link.exists():
        shutil.rmtree(link) if link.is_dir() else link.unlink()
    link.symlink_to(host)


def rewrite_prometheus_config(container_path: str, target: Path, rewriter: Rewriter) -> Path:
    """A copy of the Prometheus configuration at `container_path` with its scrape targets rewritten and its rule
    files as host paths (relative ones are relative to the configuration's folder, which the copy is not in)."""
    config = yaml.safe_load(Path(rewriter.text(container_path)).read_text(encoding="utf-8"))
    folder = PurePosixPath(container_path).parent

    def walk(node: Any) -> Any:
        if isinstance(node, dict):
            return {key: [rewriter.text(str(t)) for t in value] if key == "targets" else walk(value)
                    for key, value in node.items()}
        return [walk(item) for item in node] if isinstance(node, list) else node

    config = walk(config)
    config["rule_files"] = [rewriter.text(str(folder / rule)) for rule in config.get("rule_files", [])]
    target.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return target


class NativeStack:
    """The services of a compose file as local processes, started in dependency order like `docker compose up
    --wait`; services with no native stand-in (e.g. Grafana) are listed in `not_run` with the reason."""

    def __init__(self, compose_file: Path, env_file: Path, work: Path, venv_bin: Path,
                 extra_env: Mapping[str, str] | None = None) -> None:
        self.project = compose_file.parent
        profiles = tuple(p for p in (dotenv_values(env_file).get("COMPOSE_PROFILES") or "").split(",") if p)
        self.services = parse_services(resolve_compose(compose_file, env_file), profiles)
        self.network = Network.of(self.services)
        self.work, self.venv_bin = work, venv_bin
        self.extra_env = dict(extra_env or {})
        self.processes = Processes(work / "logs")
        self.resources = contextlib.ExitStack()
        self.state: dict[str, str] = {}  # service -> started | healthy | completed | not run
        self.running: dict[str, Started] = {}
        self.not_run: dict[str, str] = {}
        self.one_shot_runs: dict[str, list[subprocess.CompletedProcess[str]]] = {}
        self.timeline: dict[str, float] = {}  # service -> seconds after `up` began when it was ready
        self.statsd: StatsdListener | None = None
        self.exporter: StatsdExporter | None = None
        self.database: Database | None = None
        self._hostname = ""
        self._files: dict[str, FileSystem] = {}
        self._images: dict[str, Image] = {}

    # what each service sees

    def image(self, service: Service) -> Image:
        """The service's image: the project's Dockerfile on top of the official Airflow image."""
        if service.name not in self._images:
            self._images[service.name] = read_image(service, AIRFLOW_BASE_IMAGE) if is_airflow_service(service) \
                else Image()
        return self._images[service.name]

    def mount_source(self, service: Service, mount: Mount) -> Path:
        """A read-only bind mount is the host folder itself; a writable one gets an empty temporary folder (the
        test must not write into the working tree); a named volume one temporary folder shared by its users."""
        if mount.bind and mount.read_only:
            return Path(mount.source)
        if mount.bind:
            source = Path(mount.source)
            relative = source.relative_to(self.project) if source.is_relative_to(self.project) else source
            folder = self.work / "binds" / str(relative).lstrip("/")
        else:
            folder = self.work / "volumes" / (mount.source or f"{service.name}{mount.target.replace('/', '-')}")
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    def files(self, service: Service) -> FileSystem:
        """Container paths of `service` -> host paths: its mounts, its image's COPY'd files, and a private
        copy of the image's writable folders (a symlink tree, so that a folder holding copies and mounts
        exists as one folder)."""
        if service.name not in self._files:
            self._files[service.name] = self._build_files(service)
        return self._files[service.name]

    def _build_files(self, service: Service) -> FileSystem:
        image = self.image(service)
        root = self.work / "containers" / service.name
        mapping = {folder: root / folder.lstrip("/") for folder in IMAGE_WRITABLE_ROOTS} \
            if is_airflow_service(service) else {}
        for folder in mapping.values():
            folder.mkdir(parents=True, exist_ok=True)
        if is_airflow_service(service):
            stand_in = root / BASE_ENTRYPOINT.lstrip("/")
            stand_in.write_text(BASE_ENTRYPOINT_STAND_IN, encoding="utf-8")
            stand_in.chmod(0o755)
            mapping[BASE_ENTRYPOINT] = stand_in
        sources = {**image.copies, **{m.target: self.mount_source(service, m) for m in service.mounts}}
        for container_path, host in sources.items():
            link_into(root, container_path, host)
        mapping.update(sources)
        return FileSystem(mapping)

    def rewriter(self, service: Service | None) -> Rewriter:
        """Rewrites strings as seen from inside `service` (None: from the host, e.g. a browser)."""
        return Rewriter(self.network, self.files(service) if service else FileSystem({}),
                        service.name if service else None)

    def host_view(self, value: str) -> str:
        """A URL as the user on the host would open it (published ports)."""
        return self.rewriter(None).text(value)

    def hostname(self) -> str:
        """The host's name as Airflow records it for its jobs (a container's HOSTNAME is its own name)."""
        if not self._hostname:
            probe = subprocess.run([str(self.venv_bin / "python"), "-c",
                                    "from airflow.utils.net import getfqdn; print(getfqdn())"],
                                   capture_output=True, text=True, check=True, timeout=120,
                                   env={"PATH": os.environ["PATH"], "AIRFLOW_HOME": str(self.work / "probe")})
            self._hostname = probe.stdout.strip().splitlines()[-1]
        return self._hostname

    def base_environment(self) -> dict[str, str]:
        """What every native process gets from the host: tools first from the venv, a UTF-8 locale."""
        return {"PATH": f"{self.venv_bin}:/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8"}

    def environment(self, service: Service) -> dict[str, str]:
        """The service's environment as its native process gets it: image ENV under compose's, rewritten;
        Airflow's listeners on their loopback ports; the container's HOSTNAME."""
        rewriter = self.rewriter(service)
        env = {**self.base_environment(), **rewriter.environment({**self.image(service).environment,
                                                                   **service.environment})}
        if is_airflow_service(service):
            for port_setting, host_setting, default in AIRFLOW_LISTENERS:
                container_port = int(service.environment.get(port_setting, default))
                env[port_setting] = str(self.network.port(service.name, container_port))
                if host_setting:
                    env[host_setting] = LOOPBACK
            env["IMAGE_ENTRYPOINT"] = str(rewriter.files.host_path(BASE_ENTRYPOINT))
            env["HOSTNAME"] = self.hostname()
            env.update(self.extra_env)
        return env

    def command(self, service: Service) -> list[str]:
        """The service's entrypoint + command as a native command line."""
        image = self.image(service)
        entrypoint = service.entrypoint if service.entrypoint is not None else image.entrypoint
        argv = strip_init_wrapper((*entrypoint, *(service.command or image.command)))
        return runnable(self.rewriter(service).argv(argv))

    def working_dir(self, service: Service) -> Path:
        """The native folder of the container's working directory."""
        container_dir = service.working_dir or self.image(service).working_dir or "/"
        return Path(self.files(service).host_path(container_dir) or self.work)

    # starting

    def start_airflow(self, service: Service) -> None:
        """Start (or, for a one-shot service, run to completion) the service's own command."""
        if service.name in one_shot_services(self.services):
            self.run_one_shot(service.name)
            return
        self.running[service.name] = self.processes.start(
            service.name, self.command(service), self.environment(service), cwd=self.working_dir(service),
            stop_signal=stop_signal(service))

    def run_one_shot(self, name: str, timeout: float = 600.0) -> subprocess.CompletedProcess[str]:
        """Run a one-shot service (the init step) to completion; it must exit 0."""
        service = self.services[name]
        runs = self.one_shot_runs.setdefault(name, [])
        result = self.processes.run(name, self.command(service), self.environment(service),
                                    cwd=self.working_dir(service), timeout=timeout)
        runs.append(result)
        if result.returncode != 0:
            raise StackError(f"{name} (run {len(runs)}) exited with {result.returncode}:\n{result.stdout[-5000:]}")
        self.state[name] = "completed"
        return result

    def start_postgres(self, service: Service) -> None:
        """Debian's PostgreSQL with the login and database of the postgres image's POSTGRES_* variables."""
        env = service.environment
        user = env.get("POSTGRES_USER", "postgres")
        self.database = self.resources.enter_context(postgres_server(
            self.processes, self.network.port(service.name, 5432), user, env["POSTGRES_PASSWORD"],
            env.get("POSTGRES_DB") or user))
        self.running[service.name] = self.database.server

    def start_statsd_exporter(self, service: Service) -> None:
        """The exporter's stand-in with the service's mapping file: statsd packets in on its UDP port, the
        mapped series out on its web port's /metrics."""
        mapping = flag_value(service.command, STATSD_MAPPING_FLAG)
        if mapping is None:
            raise StackError(f"{service.name}: the command has no {STATSD_MAPPING_FLAG}")
        exporter = StatsdExporter(StatsdMapping.load(Path(self.rewriter(service).text(mapping))))
        lock = threading.Lock()  # packets arrive on the listener's thread, scrapes on the server's

        def feed(packet: str) -> None:
            with lock:
                exporter.feed([packet])

        def exposition() -> str:
            with lock:
                return exporter.exposition()

        self.exporter = exporter
        self.statsd = self.resources.enter_context(StatsdListener(on_packet=feed))
        udp_port = listen_port(flag_value(service.command, STATSD_UDP_FLAG), STATSD_UDP_DEFAULT)
        self.network.assign(service.name, udp_port, self.statsd.port)
        web_port = listen_port(flag_value(service.command, WEB_LISTEN_FLAG), STATSD_WEB_DEFAULT)
        self.resources.enter_context(text_server(self.network.port(service.name, web_port), exposition))

    def start_prometheus_tool(self, service: Service, binary: str, default_port: int) -> None:
        """The Debian build of a prom/* image, with the compose command's flags rewritten."""
        require_tool(binary)
        rewriter = self.rewriter(service)
        native = []
        for arg in service.command:
            if arg.startswith(f"{PROMETHEUS_CONFIG_FLAG}="):
                config = rewrite_prometheus_config(arg.split("=", 1)[1], self.work / f"{service.name}.yml", rewriter)
                native.append(f"{PROMETHEUS_CONFIG_FLAG}={config}")
            elif not arg.startswith(WEB_LISTEN_FLAG):
                native.append(rewriter.text(arg))
        port = self.network.port(service.name, listen_port(flag_value(service.command, WEB_LISTEN_FLAG),
                                                           default_port))
        native.append(f"--web.listen-address={LOOPBACK}:{port}")
        self.running[service.name] = self.processes.start(service.name, [binary, *native], self.base_environment(),
                                                          cwd=self.work, stop_signal=stop_signal(service))

    def start(self, name: str) -> None:
        """Start one service with its native stand-in."""
        service = self.services[name]
        kind = image_name(service)
        if is_airflow_service(service):
            self.start_airflow(service)
        elif kind == "postgres":
            self.start_postgres(service)
        elif kind == STATSD_EXPORTER:
            self.start_statsd_exporter(service)
        elif kind in PROMETHEUS_TOOLS:
            self.start_prometheus_tool(service, *PROMETHEUS_TOOLS[kind])
        else:
            self.not_run[name] = f"no native stand-in for image {service.image}"
            self.state[name] = "not run"
            return
        self.state.setdefault(name, "started")

    # health

    def busybox_bin(self) -> str:
        """A folder whose `wget` is BusyBox's (BusyBox runs the applet its link is named after)."""
        folder = self.work / "busybox-bin"
        if not folder.exists():
            folder.mkdir()
            (folder / "wget").symlink_to(require_tool(BUSYBOX))
        return str(folder)

    def healthcheck_environment(self, service: Service) -> dict[str, str]:
        """The environment healthchecks run with: the container's; BusyBox tools first for BusyBox-based
        images; for PostgreSQL libpq's defaults pointing at the server (inside its container they reach it
        through the default socket)."""
        env = self.environment(service)
        if service.image.startswith(BUSYBOX_IMAGE_PREFIX):
            env["PATH"] = f"{self.busybox_bin()}:{env['PATH']}"
        if image_name(service) == "postgres" and self.database:
            env.update(PGHOST=LOOPBACK, PGPORT=str(self.database.port))
        return env

    def healthy(self, name: str) -> bool:
        """Whether the service's own healthcheck passes now (no healthcheck: started is healthy)."""
        service = self.services[name]
        argv = healthcheck_argv(service.healthcheck, self.rewriter(service))
        if argv is None:
            return True
        log = self.processes.log_dir / f"{name}.healthcheck.log"
        try:
            result = self.processes.run(f"{name}-healthcheck", argv, self.healthcheck_environment(service),
                                        cwd=self.working_dir(service), timeout=service.healthcheck_timeout, log=log)
        except StackError:
            return False
        return result.returncode == 0

    def can_start(self, name: str) -> bool:
        """Whether every dependency has reached its depends_on condition (a service that cannot run here
        counts as ready)."""
        reached = {"service_started": {"started", "healthy", "completed", "not run"},
                   "service_healthy": {"healthy", "not run"},
                   "service_completed_successfully": {"completed", "not run"}}
        return all(self.state.get(other) in reached[condition]
                   for other, condition in self.services[name].depends_on.items() if other in self.services)

    def check_running(self) -> None:
        """Fail when a long-running service has exited."""
        for name, started in self.running.items():
            if started.process.poll() is not None:
                raise StackError(f"service {name} exited with {started.process.returncode}:\n{started.log_tail()}")

    def up(self, timeout: float = 300.0) -> None:
        """Start every service once its dependencies are ready; return when all are healthy or completed."""
        waiting = start_order(self.services, set(self.services))
        began = time.monotonic()
        deadline = began + timeout
        while True:
            for name in [name for name in waiting if self.can_start(name)]:
                waiting.remove(name)
                self.start(name)
                self.timeline.setdefault(name, round(time.monotonic() - began, 1))
            self.check_running()
            for name in [name for name, state in self.state.items() if state == "started"]:
                if self.healthy(name):
                    self.state[name] = "healthy"
                    self.timeline[name] = round(time.monotonic() - began, 1)
            if not waiting and "started" not in self.state.values():
                return
            if time.monotonic() > deadline:
                pending = {name: self.state.get(name, "waiting") for name in self.services
                           if self.state.get(name) not in {"healthy", "completed", "not run"}}
                tails = "\n".join(f"--- {n}:\n{self.running[n].log_tail(15)}" for n in pending if n in self.running)
                raise StackError(f"the stack was not up after {timeout:.0f} s: {pending}\n{tails}")
            time.sleep(POLL_SECONDS)

    def down(self) -> list[int]:
        """Stop the Airflow services together, then the rest (the most recently started first), release the
        stand-ins, kill strays; returns the ids of the strays that had to be killed."""
        try:
            self.processes.stop(*(started for name, started in self.running.items()
                                  if is_airflow_service(self.services[name])))
            self.processes.stop_all()
        finally:
            self.resources.close()
        return self.processes.kill_strays()


# --- Airflow's REST API -----------------------------------------------------------------------------------

FINISHED_RUN_STATES = frozenset({"success", "failed"})


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

    def call(self, path: str, payload: Any = None) -> Any:
        """The JSON answer of `path` (POST when `payload` is given)."""
        return http_json(f"{self.base_url}{path}", payload, {"Authorization": f"Bearer {self.token()}"})

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
        """task id -> state of the run's task instances."""
        answer = self.call(f"{self.run_path(dag_id, run_id)}/taskInstances?limit=100")
        return {ti["task_id"]: ti["state"] for ti in answer["task_instances"]}


# --- the browser -----------------------------------------------------------------------------------------


CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic",
                  "--no-first-run", "--disable-background-networking", "--disable-component-update",
                  "--disable-sync", "--window-size=1600,1000")


@contextlib.contextmanager
def chromium(processes: Processes, profile: Path) -> Iterator[webdriver.Chrome]:
    """Headless Debian Chromium driven by Debian's chromedriver, with a new empty profile; quit on exit. Naming
    the driver in the Service makes Selenium skip Selenium Manager, which would otherwise download one."""
    require_tool(CHROMIUM)
    require_tool(CHROMEDRIVER)
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={profile}"):
        options.add_argument(flag)
    env = processes.tagged({"PATH": os.environ["PATH"], "HOME": str(profile)})
    service = DriverService(CHROMEDRIVER, log_output=str(processes.log_dir / "chromedriver.log"), env=env)
    driver = webdriver.Chrome(service=service, options=options)
    try:
        driver.set_page_load_timeout(60)
        yield driver
    finally:
        driver.quit()


def page_text(driver: webdriver.Chrome) -> str:
    """The visible text of the page's body."""
    return driver.find_element(By.TAG_NAME, "body").text


def wait_for_page(driver: webdriver.Chrome, check: Callable[[webdriver.Chrome], T], what: str,
                  timeout: float = 60.0) -> T:
    """Poll the page until `check(driver)` is true (the UI renders after the HTML has loaded)."""
    def attempt() -> T | None:
        try:
            return check(driver)
        except WebDriverException:
            return None

    return wait_until(attempt, timeout, what, details=lambda: f"page {driver.current_url}:\n{page_text(driver)[:2000]}")


def ui_login(driver: webdriver.Chrome, base_url: str, username: str, password: str) -> None:
    """Open the UI and sign in through SimpleAuthManager's login form."""
    driver.get(f"{base_url}/")
    wait_for_page(driver, lambda d: d.find_elements(By.NAME, "username"), "the login form")
    driver.find_element(By.NAME, "username").send_keys(username)
    driver.find_element(By.NAME, "password").send_keys(password)
    driver.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    wait_for_page(driver, lambda d: "/auth/login" not in d.current_url and "Dags" in page_text(d), "the home page")


def open_run(driver: webdriver.Chrome, base_url: str, dag_id: str, run_id: str, shows: tuple[str, ...]) -> str:
    """Open a DAG run's page and wait until its text shows every string of `shows`; returns the text."""
    driver.get(f"{base_url}/dags/{urllib.parse.quote(dag_id)}/runs/{urllib.parse.quote(run_id, safe='')}")

    def showing(d: webdriver.Chrome) -> str | None:
        text = page_text(d)
        return text if all(part in text for part in shows) else None

    return wait_for_page(driver, showing, f"the page of run {run_id} to show {shows}")


def graph_nodes(driver: webdriver.Chrome, count: int) -> dict[str, str]:
    """Switch the run's page to the graph view; task id -> the text of its node, once `count` nodes show."""
    driver.find_element(By.CSS_SELECTOR, "button[aria-label^='Show Graph']").click()

    def nodes(d: webdriver.Chrome) -> dict[str, str] | None:
        found = {node.get_attribute("data-id"): node.text for node in d.find_elements(By.CSS_SELECTOR,
                                                                                       ".react-flow__node")}
        return found if len(found) == count and all(found.values()) else None

    return wait_for_page(driver, nodes, f"the graph to show {count} tasks")
