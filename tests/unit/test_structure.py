"""The shape of the code a newcomer relies on: a step knows its inputs, not the runner nor another step; the step
table and the DAG file import no step; scoring does not depend on a training step."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from etl.steps import STEPS
from utils.config import PROJECT_ROOT

STEP_MODULES = {f"etl.{step.name}" for step in STEPS}
RUNNER = {"etl.pipeline", "etl.airflow_tasks", "etl.__main__"}


def imported_modules(path: Path) -> set[str]:
    """Every module `path` imports, at the top or inside a function (`from etl import x` counts as etl.x)."""
    modules = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            modules |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            modules |= {node.module, *(f"{node.module}.{alias.name}" for alias in node.names)}
    return modules


def module_file(module: str) -> Path:
    return PROJECT_ROOT / (module.replace(".", "/") + ".py")


@pytest.mark.parametrize("module", sorted(STEP_MODULES))
def test_a_step_imports_neither_the_runner_nor_another_step(module):
    imported = imported_modules(module_file(module))
    assert not imported & RUNNER, f"{module} imports the runner: {sorted(imported & RUNNER)}"
    assert not imported & (STEP_MODULES - {module}), f"{module} imports a step: {imported & STEP_MODULES}"


@pytest.mark.parametrize("path", [PROJECT_ROOT / "etl" / "steps.py", PROJECT_ROOT / "etl" / "run_folder.py",
                                  *sorted((PROJECT_ROOT / "dags").glob("*.py"))], ids=lambda path: path.name)
def test_the_step_table_the_run_folder_and_the_dags_import_no_step(path):
    assert not imported_modules(path) & STEP_MODULES


@pytest.mark.parametrize("module", ["etl.predict", "etl.scoring"])
def test_scoring_depends_on_no_training_step(module):
    imported = imported_modules(module_file(module))
    assert not imported & STEP_MODULES, f"{module} imports a step: {imported & STEP_MODULES}"


def test_predict_reads_samples_through_the_data_contract():
    assert "etl.contract" in imported_modules(module_file("etl.predict"))
