# Breast-cancer pipeline on Apache Airflow 3.  `make help` lists every target.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
VENV_STAMP := $(VENV)/.installed

# local-% is a pattern rule, so it cannot be .PHONY (make skips implicit rules for phony targets).
.PHONY: help install-requirements venv system-deps local-test-all local-pipeline predict score gdrive-check settings test test-fast lint bench bench-scale clean-runs

help: ## List the targets with what they do
	@awk 'BEGIN {FS = ":.*## "} /^##@ / {printf "\n\033[1m%s\033[0m\n", substr($$0, 5)} \
		/^[a-zA-Z0-9_%-]+:.*## / {printf "  \033[36m%-26s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

##@ Set-up
$(VENV_STAMP): requirements.txt requirements-dev.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	$(PY) -m pip install --quiet --no-deps --editable .
	$(PY) -m pip check
	touch $@

venv: $(VENV_STAMP)

install-requirements: venv ## Create .venv and install the pinned requirements (runtime + tests)

system-deps: ## Install the Debian tools the tests use (Docker engine, Prometheus, PostgreSQL, Chromium, ...)
	@bash .ci/system-deps.sh

##@ The pipeline without Airflow (steps share RUN_ID, default "local")
# The steps, in order, from their one table (etl/steps.py: the host's Python reads it, it imports only the stdlib).
STEP_NAMES := $(shell python3 -c 'from etl.steps import STEPS; print(*(step.name for step in STEPS))')

local-%: venv ## One step without Airflow: local-<step> for each step of etl/steps.py, e.g. local-load
	$(PY) -m etl $*

local-test-all: venv ## Run the pipeline's steps one process each, in order (not the tests: see `make test`)
	@for step in $(STEP_NAMES); do echo "$(PY) -m etl $$step"; $(PY) -m etl $$step || exit 1; done

local-pipeline: venv ## All the steps in one process
	$(PY) -m etl.pipeline

predict: venv ## Score a CSV with the champion model (INPUT=path.csv, default the bundled file; OUTPUT=predictions.csv)
	$(PY) -m etl.predict "$(or $(INPUT),data/BreastCancer.csv)" --output "$(or $(OUTPUT),predictions.csv)"

score: venv ## Score the batches waiting in INCOMING_DIR once, as the scoring DAG does (hand-off: README, Scoring)
	$(PY) -m etl.scoring

gdrive-check: venv ## Check the Google Drive set-up (sign-in, folder, Shared Drive) without uploading
	$(PY) -m etl.gdrive_check

settings: venv ## Print every setting with its current value
	$(PY) -m utils.config

##@ Quality
# The stack suite waits on containers most of the time (health checks, heartbeats, retry delays): it runs beside
# the others, and its output follows theirs.
STACK_TEST_LOG = .make/stack-test.log

test: venv system-deps compose-v2 ## Run the whole test suite (installs what it needs first): what CI runs
	@mkdir -p .make; echo "tests/stack runs beside the other tests; its output follows theirs ($(STACK_TEST_LOG))"; \
	$(STACK_PYTEST) > $(STACK_TEST_LOG) 2>&1 & stack=$$!; status=0; \
	$(PY) -m pytest --ignore=tests/stack || status=$$?; \
	wait $$stack || status=$$?; cat $(STACK_TEST_LOG); exit $$status

test-fast: venv ## Only the unit tests (tests/unit: no servers, no Airflow run, about a minute)
	$(PY) -m pytest tests/unit

lint: venv ## ruff on the Python code, shellcheck on the shell scripts, hadolint on the Dockerfile
	$(PY) -m ruff check .
	$(VENV)/bin/hadolint Dockerfile
	shellcheck entrypoint.sh .ci/*.sh .ci/run tests/stack/images/*/entrypoint

bench: venv ## Time the pipeline (as processes, in one process, under Airflow) against baselines; load's memory; predict on 1M rows; at scale
	@pipeline=0; $(PY) bench/bench_load.py || pipeline=$$?; $(PY) bench/bench_pipeline.py || pipeline=$$?; \
		$(PY) bench/bench_predict.py || pipeline=$$?; $(PY) bench/bench_airflow.py || pipeline=$$?; \
		$(PY) bench/bench_scale.py && exit $$pipeline

bench-scale: venv ## Only the scale bench: each step and candidate on 10k, 100k, 1M generated rows (BENCH_SCALE_ROWS)
	$(PY) bench/bench_scale.py

.PHONY: seed-study
seed-study: venv ## The quality gate and the test metrics over SEED 0-19, on the bundled data and with 30% of its labels flipped (issue 21)
	$(PY) -m bench.seed_study

EXAMPLE_CHARTS := roc_curve precision_recall_curve confusion_matrix calibration_curve decision_curve
.PHONY: docs-images
docs-images: venv ## Redraw docs/img/example-*.png from a run of the current code (bundled data, defaults, RUN_ID=example)
	@example=$$(mktemp -d) && trap 'rm -rf "$$example"' EXIT && \
	ENV_FILE=$$example/none.env RUN_ID=example RUNS_DIR=$$example/runs RESULTS_DIR=$$example/results \
	INCOMING_DIR=$$example/incoming PROCESSED_DIR=$$example/processed STORAGE_BACKEND=local PUSHGATEWAY_URL= \
	ALERT_WEBHOOK_URL= DATA_URL=file://$(CURDIR)/data/BreastCancer.csv $(PY) -m etl.pipeline >/dev/null && \
	for chart in $(EXAMPLE_CHARTS); do \
		cp "$$example/results/latest/$$chart.png" "docs/img/example-$$(echo $$chart | tr _ -).png"; done

clean-runs: ## Delete the per-run working folders under data/runs/
	rm -rf data/runs

include mk/airflow.mk mk/stack.mk
