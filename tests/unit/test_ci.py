"""The CI entry points agree: `.ci/run` and the GitHub Actions workflow both run exactly the README's test
command, and the workflow is valid for GitHub (its published schema, vendored by check-jsonschema)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

from utils.config import PROJECT_ROOT

WORKFLOW = PROJECT_ROOT / ".github" / "workflows" / "ci.yml"
TEST_COMMAND = "make test"


def test_ci_run_calls_exactly_the_readme_test_command():
    commands = [line for line in (PROJECT_ROOT / ".ci" / "run").read_text().splitlines()
                if line and not line.startswith(("#", "set ", "cd "))]
    assert commands == [TEST_COMMAND]
    assert f"`{TEST_COMMAND}`" in (PROJECT_ROOT / "README.md").read_text()


def test_the_workflow_runs_the_same_command_on_a_clean_checkout():
    job = yaml.safe_load(WORKFLOW.read_text())["jobs"]["test"]
    steps = job["steps"]
    checkout = next(i for i, step in enumerate(steps) if step.get("uses", "").startswith("actions/checkout@"))
    assert [step["run"] for step in steps[checkout + 1:]] == [TEST_COMMAND]
    assert job["timeout-minutes"] <= 90


def test_the_workflow_is_valid_for_github():
    checker = Path(sys.executable).parent / "check-jsonschema"
    result = subprocess.run([str(checker), "--builtin-schema", "vendor.github-workflows", str(WORKFLOW)],
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
