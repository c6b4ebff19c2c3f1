"""Benchmark: the load step's memory against the size of what it downloads.

A CSV of BENCH_LOAD_MB MiB (default 50: the bundled rows repeated) is served by `python -m http.server` in its own
process; the load step (`execute_step`, as the DAG and the command line run it) downloads, checks, hashes and
writes it in a fresh interpreter, which reports its peak RSS before and after. The ratio (peak growth / body
size) must stay <= RATIO_GOAL: the body is held once, read in chunks and parsed as a stream. Exit status 1 when
the goal is missed.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from utils.config import BUNDLED_DATA

ROOT = Path(__file__).resolve().parent.parent
RATIO_GOAL = 1.5
MEASURE = """
import json, os, resource
from etl import load  # noqa: F401 (imported before measuring, as the step's code is)
from etl.pipeline import execute_step
from etl.run_folder import RunFolder
from etl.steps import STEP
from utils import telemetry  # noqa: F401
from utils.config import load_settings
settings = load_settings()
run = RunFolder.open(settings.runs_dir, os.environ["RUN_ID"])
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
summary = execute_step(STEP["load"], run, settings)
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"bytes": run.record("load")["bytes"], "rows": summary["rows"], "before_kib": before,
                  "after_kib": after}))
"""


def big_csv(folder: Path, mebibytes: int) -> Path:
    """A valid CSV of about `mebibytes` MiB: the bundled header, then its rows over and over."""
    header, *rows = BUNDLED_DATA.read_bytes().splitlines(keepends=True)
    block = b"".join(rows)
    path = folder / "big.csv"
    with open(path, "wb") as out:
        out.write(header)
        for _ in range(mebibytes * 1024 * 1024 // len(block) + 1):
            out.write(block)
    return path


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for(url: str, seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while True:
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise


def main() -> int:
    mebibytes = int(os.environ.get("BENCH_LOAD_MB", "50"))
    work = Path(tempfile.mkdtemp(prefix="bench-load-"))
    (work / "served").mkdir()
    size = big_csv(work / "served", mebibytes).stat().st_size
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1",
                               "--directory", str(work / "served")], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    try:
        url = f"http://127.0.0.1:{port}/big.csv"
        wait_for(f"http://127.0.0.1:{port}/")
        env = {**os.environ, "ENV_FILE": str(work / "none.env"), "DATA_URL": url,
               "RUNS_DIR": str(work / "runs"), "DATA_FALLBACK": "false", "DOWNLOAD_RETRIES": "0",
               "DOWNLOAD_TIMEOUT": "120", "PUSHGATEWAY_URL": "", "RUN_ID": "bench"}
        result = subprocess.run([sys.executable, "-c", MEASURE], env=env, cwd=ROOT, capture_output=True, text=True,
                                timeout=300, check=False)
    finally:
        server.terminate()
        server.wait(timeout=10)
    if result.returncode != 0:
        raise RuntimeError(f"load failed:\n{result.stderr[-3000:]}")
    report = json.loads(result.stdout.splitlines()[-1])
    growth = (report["after_kib"] - report["before_kib"]) * 1024
    ratio = growth / size
    verdict = "ok" if ratio <= RATIO_GOAL else "MISSED"
    print(f"load benchmark: {size / 2**20:.1f} MiB over HTTP ({report['rows']} rows); peak RSS "
          f"{report['before_kib'] / 1024:.0f} -> {report['after_kib'] / 1024:.0f} MiB; growth / body = "
          f"{ratio:.2f} (goal <= {RATIO_GOAL})  {verdict}")
    return 0 if verdict == "ok" else 1


if __name__ == "__main__":
    sys.exit(main())
