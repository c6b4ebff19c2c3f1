"""The stack test's machinery (tests/stack/, docs/stack-test.md): a real Docker engine, the stand-in images, and
the stack driven through the project's make targets by a non-root user.

No image registry can be reached from here, so each image docker-compose.yml names is replaced by a stand-in built
from Debian packages on a debootstrap base (tests/stack/images/, wired in by tests/stack/compose.override.yml).
Each stand-in carries the hash of its inputs in a label: a rerun with the same inputs builds nothing.
"""

from __future__ import annotations

import contextlib
import grp
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path

from etl.run_folder import short_run_id
from etl.steps import DAG_ID
from tests.support.airflow_api import AirflowApi
from tests.support.airflow_runs import env_file_values
from tests.support.processes import wait_until
from utils.config import PROJECT_ROOT, VARIABLES

STACK_TEST_DIR = PROJECT_ROOT / "tests" / "stack"
IMAGES_DIR = STACK_TEST_DIR / "images"
INPUTS_LABEL = "org.breast-cancer-pipeline.stack-test.inputs"
BASE_IMAGE = "stack-test-standin/debian:bookworm"
DEBIAN_MIRROR = "http://deb.debian.org/debian"
DEBOOTSTRAP_ARGS = ("--variant=minbase", "bookworm")
HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
# Where the base image keeps the build machine's CA bundle (pip inside the builds goes through the same route).
BASE_CA_PATH = "usr/local/share/stack-test/host-ca.crt"
ENGINE_START_SECONDS = 60
ENGINE_STOP_SECONDS = 30
BUILD_SECONDS = 900


class DockerError(Exception):
    """The engine or an image could not be had; the message says why."""


@dataclass(frozen=True)
class StandIn:
    """An image built from tests/stack/images/<folder>/Dockerfile on the debootstrap base."""

    name: str
    folder: str


STAND_INS = (StandIn("stack-test-standin/airflow:3.3.2", "airflow"),
             StandIn("stack-test-standin/postgres:15", "postgres"),
             StandIn("stack-test-standin/prometheus:2.42", "prometheus"),
             StandIn("stack-test-standin/redis:7.0", "redis"))


def docker_cli() -> str:
    """Debian's docker CLI when installed (BuildKit built in), else the one on PATH."""
    debian = Path("/usr/bin/docker")
    found = str(debian) if debian.exists() else shutil.which("docker")
    if found is None:
        raise DockerError("no docker CLI: `make system-deps` installs Debian's docker.io")
    return found


def docker(*args: str, timeout: float = 120, stdin: int | None = None) -> subprocess.CompletedProcess[str]:
    """Run `docker ARGS`; DockerError with its output when it fails."""
    command = [docker_cli(), *args]
    result = subprocess.run(command, stdin=stdin, capture_output=True, text=True, timeout=timeout,
                            env={**os.environ, "DOCKER_BUILDKIT": "0"})
    if result.returncode != 0:
        raise DockerError(f"`docker {' '.join(args[:2])}` failed ({result.returncode}):\n"
                          f"{(result.stdout + result.stderr)[-3000:]}")
    return result


def engine_answers() -> bool:
    """Whether a Docker engine answers on the default socket."""
    with contextlib.suppress(DockerError, subprocess.TimeoutExpired):
        docker("version", "--format", "{{.Server.Version}}", timeout=20)
        return True
    return False


def start_dockerd(log: Path) -> subprocess.Popen[bytes]:
    """dockerd in the background with the defaults, answering within ENGINE_START_SECONDS."""
    if os.geteuid() != 0:
        raise DockerError("no Docker engine answers and only root can start dockerd; start one, then rerun")
    if shutil.which("dockerd") is None:
        raise DockerError("no Docker engine answers and dockerd is not installed: `make system-deps` installs "
                          "Debian's docker.io")
    with log.open("wb") as output:
        process = subprocess.Popen(["dockerd"], stdout=output, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                   start_new_session=True)
    deadline = time.monotonic() + ENGINE_START_SECONDS
    while not engine_answers():
        if process.poll() is not None or time.monotonic() > deadline:
            stop_dockerd(process)
            tail = log.read_text(errors="replace")[-2000:]
            raise DockerError(f"dockerd did not answer within {ENGINE_START_SECONDS} s (exit code "
                              f"{process.returncode}); the end of its log ({log}):\n{tail}")
        time.sleep(0.5)
    return process


def stop_dockerd(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the dockerd this test started (it stops its containerd), SIGKILL after ENGINE_STOP_SECONDS."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(ENGINE_STOP_SECONDS)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


@contextlib.contextmanager
def docker_engine(log_dir: Path) -> Iterator[None]:
    """The engine that answers, or one started here and stopped by its PID at the end."""
    if engine_answers():
        yield
        return
    process = start_dockerd(log_dir / "dockerd.log")
    try:
        yield
    finally:
        stop_dockerd(process)


def inputs_hash(*parts: bytes) -> str:
    """sha256 of the parts, each length-prefixed."""
    digest = hashlib.sha256()
    for part in parts:
        digest.update(len(part).to_bytes(8, "big") + part)
    return digest.hexdigest()


def folder_contents(folder: Path) -> list[bytes]:
    """Each file of `folder` as its relative path, mode and bytes, in a stable order."""
    return [part for path in sorted(folder.rglob("*")) if path.is_file()
            for part in (str(path.relative_to(folder)).encode(), oct(path.stat().st_mode).encode(),
                         path.read_bytes())]


def built_hash(image: str) -> str | None:
    """The inputs label of a local image; None when there is no such image."""
    try:
        result = docker("image", "inspect", "--format", f'{{{{index .Config.Labels "{INPUTS_LABEL}"}}}}', image)
    except DockerError:
        return None
    return result.stdout.strip()


def base_hash() -> str:
    """The debootstrap base's inputs: the suite, mirror and variant, and the CA bundle copied in."""
    return inputs_hash(DEBIAN_MIRROR.encode(), *(arg.encode() for arg in DEBOOTSTRAP_ARGS),
                       HOST_CA_BUNDLE.read_bytes())


def build_base(wanted: str) -> None:
    """A minimal Debian root file system from debootstrap, imported as BASE_IMAGE with the inputs label."""
    if shutil.which("debootstrap") is None:
        raise DockerError("debootstrap is not installed: `make system-deps` installs it")
    with tempfile.TemporaryDirectory(prefix="stack-test-rootfs-") as root:
        result = subprocess.run(["debootstrap", *DEBOOTSTRAP_ARGS, root, DEBIAN_MIRROR], capture_output=True,
                                text=True, timeout=BUILD_SECONDS)
        if result.returncode != 0:
            raise DockerError(f"debootstrap failed ({result.returncode}):\n{(result.stdout + result.stderr)[-3000:]}")
        ca_copy = Path(root, BASE_CA_PATH)
        ca_copy.parent.mkdir(parents=True)
        shutil.copyfile(HOST_CA_BUNDLE, ca_copy)
        tar = subprocess.Popen(["tar", "-C", root, "-c", "."], stdout=subprocess.PIPE)
        try:
            docker("import", "--change", f"LABEL {INPUTS_LABEL}={wanted}", "--change", 'CMD ["/bin/bash"]', "-",
                   BASE_IMAGE, stdin=tar.stdout.fileno(), timeout=BUILD_SECONDS)
        finally:
            tar.stdout.close()
            tar.wait(60)


def build_stand_in(stand_in: StandIn, wanted: str) -> None:
    """docker build of the stand-in's folder on the base, labelled with its inputs hash."""
    docker("build", "--force-rm", "--label", f"{INPUTS_LABEL}={wanted}", "--build-arg", f"BASE_IMAGE={BASE_IMAGE}",
           "--tag", stand_in.name, str(IMAGES_DIR / stand_in.folder), timeout=BUILD_SECONDS)


def ensure_stand_ins() -> dict[str, str]:
    """Build the base and every stand-in whose inputs changed; image -> "cached" or "built in N s"."""
    report = {}
    base = base_hash()
    steps = [(BASE_IMAGE, base, lambda: build_base(base))]
    for stand_in in STAND_INS:
        wanted = inputs_hash(base.encode(), *folder_contents(IMAGES_DIR / stand_in.folder))
        steps.append((stand_in.name, wanted, lambda s=stand_in, w=wanted: build_stand_in(s, w)))
    for image, wanted, build in steps:
        if built_hash(image) == wanted:
            report[image] = "cached"
            continue
        began = time.monotonic()
        build()
        report[image] = f"built in {time.monotonic() - began:.0f} s"
    return report


# --- the stack, driven through the users' make targets ---------------------------------------------------------

PROJECT_NAME = "bcstacktest"
# A user of this machine who is neither root nor the image's uid 50000 runs `make up`, so AIRFLOW_UID = 4242.
USER_UID = 4242
CONTAINERS_SEE_HOST_AS = "host.docker.internal"  # extra_hosts: host-gateway in the override
COMPOSE_FILES = "docker-compose.yml tests/stack/compose.override.yml"
COMPOSE_V2 = PROJECT_ROOT / ".make" / "compose-v2" / "compose" / "docker-compose"
UP_WAIT_SECONDS = 420
RUN_SECONDS = 600
BAD_CSV = PROJECT_ROOT / "tests" / "data" / "bad_inputs" / "score_zero.csv"
MAKE_SECONDS = 600
CGROUP_MEMORY = Path("/sys/fs/cgroup/memory/docker")  # the engine's containers under cgroup v1 (docs/stack-test.md)


@dataclass
class HostServer:
    """An HTTP server on the Docker bridge's address of this machine, which the containers reach as
    host.docker.internal: it serves the bad CSV and records the alerts POSTed to /alert."""

    port: int = 0
    alerts: list[dict] = field(default_factory=list)

    def url(self, path: str) -> str:
        """The URL of `path` as the containers reach it."""
        return f"http://{CONTAINERS_SEE_HOST_AS}:{self.port}{path}"


def host_handler(state: HostServer) -> type[BaseHTTPRequestHandler]:
    """GET /score_zero.csv: the bad-input file; POST /alert: recorded."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body, status = (BAD_CSV.read_bytes(), 200) if self.path == f"/{BAD_CSV.name}" else (b"", 404)
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            state.alerts.append({"path": self.path, "body": json.loads(self.rfile.read(length) or b"{}")})
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:  # keep the test output clean
            pass

    return Handler


def project_files() -> list[Path]:
    """The working tree's files as a clone would have them plus uncommitted ones (git's ignores applied)."""
    listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"], cwd=PROJECT_ROOT,
                            capture_output=True, text=True, check=True, timeout=60).stdout
    return [Path(name) for name in listed.split("\0")
            if name and (PROJECT_ROOT / name).is_file() and not (PROJECT_ROOT / name).is_symlink()]


def copy_project(target: Path, uid: int) -> None:
    """The project, as a user's fresh clone owned by `uid`, with Compose v2 under .make/ as `make compose-v2`
    leaves it."""
    for relative in [*project_files(), COMPOSE_V2.relative_to(PROJECT_ROOT)]:
        destination = target / relative
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(PROJECT_ROOT / relative, destination)
    for path in [target, *target.rglob("*")]:
        os.chown(path, uid, uid)


def docker_group() -> int:
    """The group that may use the engine's socket (Debian's docker.io creates it)."""
    try:
        return grp.getgrnam("docker").gr_gid
    except KeyError:
        raise DockerError("there is no `docker` group, so only root can reach the engine: `make system-deps` "
                          "installs Debian's docker.io, which creates it") from None


@dataclass
class Stack:
    """docker-compose.yml with the test's override, run by a non-root user through the project's make targets in
    a copy of the project. The pipeline's settings go into that copy's .env, which the Airflow containers read
    (env_file), as a user sets them; Compose's own variables (project name, image, ports) come from the
    environment, as a user's shell would give them."""

    root: Path
    uid: int
    settings: dict[str, str]
    log_dir: Path
    up_flags: str = ""

    def make_variables(self) -> list[str]:
        """The make variables that point the targets at Compose v2, the override and `--pull never`."""
        return [f"COMPOSE={self.root / COMPOSE_V2.relative_to(PROJECT_ROOT)}", f"COMPOSE_FILES={COMPOSE_FILES}",
                f"COMPOSE_UP_FLAGS=--pull never --wait --wait-timeout {UP_WAIT_SECONDS} {self.up_flags}".strip()]

    def make(self, *arguments: str, timeout: float = MAKE_SECONDS) -> str:
        """`make ARGUMENTS` as the user (with the docker group); its output, or DockerError with it."""
        user = ["setpriv", f"--reuid={self.uid}", f"--regid={self.uid}", f"--groups={docker_group()}"]
        env = {"PATH": os.environ["PATH"], "HOME": str(self.root), "LANG": "C.UTF-8", **self.settings}
        began = time.monotonic()
        result = subprocess.run([*user, "make", "--no-print-directory", *arguments, *self.make_variables()],
                                cwd=self.root, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                                timeout=timeout)
        output = result.stdout + result.stderr
        name = "-".join(argument.split("=")[0] for argument in arguments)
        with (self.log_dir / f"make-{name}.log").open("a", encoding="utf-8") as log:
            log.write(f"$ make {' '.join(arguments)}  ({time.monotonic() - began:.1f} s, exit {result.returncode})\n"
                      f"{output}\n")
        if result.returncode != 0:
            raise DockerError(f"`make {' '.join(arguments)}` failed ({result.returncode}):\n{output[-4000:]}")
        return output

    def all_containers(self) -> list[dict[str, object]]:
        """Service, name, host name, ID, state, health, exit code and start time of each of the project's
        containers, stopped ones too."""
        ids = docker("ps", "--all", "--quiet", "--filter", f"label=com.docker.compose.project={PROJECT_NAME}").stdout
        if not ids.split():
            return []
        return [{"Service": facts["Config"]["Labels"]["com.docker.compose.service"], "Name": facts["Name"].lstrip("/"),
                 "Hostname": facts["Config"]["Hostname"], "ID": facts["Id"], "State": facts["State"]["Status"],
                 "ExitCode": facts["State"]["ExitCode"], "Health": facts["State"].get("Health", {}).get("Status"),
                 "StartedAt": facts["State"]["StartedAt"]}
                for facts in json.loads(docker("inspect", *ids.split()).stdout)]

    def containers(self) -> dict[str, dict[str, object]]:
        """service -> the facts of its container (for services that run one)."""
        return {str(facts.pop("Service")): facts for facts in self.all_containers()}

    def published_folders(self, run_id: str) -> list[str]:
        """The run's published folders in results/: `<start time>_<short run id>`."""
        return [path.name for path in (self.root / "results").glob(f"*_{short_run_id(run_id)}")]

    def memory_bytes(self) -> int:
        """The memory the project's running containers use now, as `docker stats` counts it (cgroup v1: usage
        less inactive page cache), summed; 0 for a container that is gone."""
        if not CGROUP_MEMORY.is_dir():
            raise DockerError(f"{CGROUP_MEMORY} is missing: the engine does not run on cgroup v1's memory hierarchy")
        total = 0
        for container in docker("ps", "--quiet", "--no-trunc", "--filter",
                                f"label=com.docker.compose.project={PROJECT_NAME}").stdout.split():
            group = CGROUP_MEMORY / container
            with contextlib.suppress(OSError, ValueError):
                stat = dict(line.split() for line in (group / "memory.stat").read_text().splitlines())
                total += int((group / "memory.usage_in_bytes").read_text()) - int(stat["total_inactive_file"])
        return total

    def leftovers(self) -> dict[str, list[str]]:
        """The project's containers, networks and volumes still in the engine."""
        label = f"label=com.docker.compose.project={PROJECT_NAME}"
        found = {kind: docker(kind, "ls", "--quiet", *(["--all"] if kind == "container" else []),
                              "--filter", label).stdout.split() for kind in ("container", "network", "volume")}
        return {kind: names for kind, names in found.items() if names}


@contextlib.contextmanager
def tmpfs_mounted(folder: Path, size_mb: int, uid: int) -> Iterator[Path]:
    """A tmpfs of `size_mb` MiB on `folder` (created), owned by `uid`: a small disk of its own; unmounted at the
    end, and an error when it cannot be (something still holds it)."""
    if os.geteuid() != 0:
        raise DockerError(f"mounting a {size_mb} MiB tmpfs on {folder} needs root")
    folder.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_mb}m,uid={uid},gid={uid},mode=0755", "tmpfs",
                    str(folder)], check=True, capture_output=True, timeout=30)
    try:
        yield folder
    finally:
        result = subprocess.run(["umount", str(folder)], capture_output=True, text=True, timeout=60)
        if result.returncode != 0:
            raise DockerError(f"could not unmount the tmpfs on {folder}: {result.stderr.strip()}")


def mounted_under(folder: Path) -> list[str]:
    """The mount points at or below `folder` (from /proc/self/mounts)."""
    points = [line.split()[1] for line in Path("/proc/self/mounts").read_text().splitlines()]
    return [point for point in points if point == str(folder) or point.startswith(f"{folder}/")]


@contextlib.contextmanager
def running_stack(settings: dict[str, str], log_dir: Path, up_flags: str = "",
                  results_disk_mb: int | None = None) -> Iterator[Stack]:
    """`make up` from fresh volumes in a copy of the project owned by USER_UID, with `results/` on a tmpfs of
    `results_disk_mb` MiB when asked; at the end every service's last log lines go to `log_dir`, then `make clean`,
    the tmpfs is unmounted, and nothing of the project may be left in the engine or mounted."""
    with tempfile.TemporaryDirectory(prefix="stack-test-project-") as folder, contextlib.ExitStack() as mounts:
        root = Path(folder)
        root.chmod(0o755)
        copy_project(root, USER_UID)
        if results_disk_mb:
            mounts.enter_context(tmpfs_mounted(root / "results", results_disk_mb, USER_UID))
        stack = Stack(root, USER_UID, settings, log_dir, up_flags)
        try:
            stack.make("env")
            pipeline = [f"{name}={value}" for name, value in settings.items() if name in VARIABLES.values()]
            with (root / ".env").open("a", encoding="utf-8") as dotenv:
                dotenv.write("\n".join(["# the stack test's pipeline settings", *pipeline]) + "\n")
            stack.make("clean")  # fresh volumes, whatever an interrupted earlier run left
            began = time.monotonic()
            stack.make("up")
            print(f"\nstack test: make up {time.monotonic() - began:.0f} s; logs in {log_dir}")
            yield stack
        finally:
            stack.make("logs", "LOGS_FOLLOW=", timeout=120)
            stack.make("clean")
            mounts.close()
            leftovers = {**stack.leftovers(), **({"mounts": mounted_under(root)} if mounted_under(root) else {})}
            if leftovers:
                raise DockerError(f"the stack test left things in the engine or mounted: {leftovers}")


def stack_api(stack: Stack) -> AirflowApi:
    """The REST API on its published port, with the admin login `make up` generated into .env."""
    dotenv = env_file_values(stack.root / ".env")
    return AirflowApi(f"http://127.0.0.1:{stack.settings['AIRFLOW_API_PORT']}", dotenv["AIRFLOW_ADMIN_USERNAME"],
                      dotenv["AIRFLOW_ADMIN_PASSWORD"])


def finished(api: AirflowApi, run_id: str) -> dict:
    """The run once finished, with its task states."""
    run = api.wait_for_run(DAG_ID, run_id, RUN_SECONDS)
    return {**run, "tasks": api.task_states(DAG_ID, run_id)}


def triggered_run(api: AirflowApi, conf: dict) -> dict:
    """A run triggered over the REST API with `conf` as its Params, once finished."""
    wait_until(lambda: api.call(f"/api/v2/dags/{DAG_ID}")["dag_id"], 120, f"{DAG_ID} to be parsed")
    return finished(api, api.trigger(DAG_ID, conf))
