# Breast-cancer pipeline on Apache Airflow 3.  `make help` lists every target.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
VENV_STAMP := $(VENV)/.installed
export PYTHONPATH := $(CURDIR)

.PHONY: help install-requirements venv system-deps local-load local-preprocess local-train local-evaluate \
        local-upload local-test-all local-pipeline gdrive-check settings test lint bench clean-runs

help: ## List the targets with what they do
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z0-9_%-]+:.*## / {printf "  \033[36m%-22s\033[0m %s\n", $$1, $$2}' \
		$(MAKEFILE_LIST)

##@ Set-up
$(VENV_STAMP): requirements.txt requirements-dev.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	$(PY) -m pip check
	touch $@

venv: $(VENV_STAMP)

install-requirements: venv ## Create .venv and install the pinned requirements (runtime + tests)

system-deps: ## Install the Debian tools the tests use (Docker engine, Prometheus, PostgreSQL, Chromium, ...)
	@bash .ci/system-deps.sh

##@ The pipeline without Airflow (steps share RUN_ID, default "local")
local-load: venv ## Step 1: download the CSV (or fall back to data/BreastCancer.csv)
	$(PY) -m etl.load

local-preprocess: venv ## Step 2: validate, clean, split by Id into train/test
	$(PY) -m etl.preprocess

local-train: venv ## Step 3: fit the model pipeline, cross-validate, save model.joblib
	$(PY) -m etl.train

local-evaluate: venv ## Step 4: metrics, plots, report, quality gate
	$(PY) -m etl.evaluate

local-upload: venv ## Step 5: publish to results/ (and Google Drive when configured)
	$(PY) -m etl.upload

local-test-all: local-load local-preprocess local-train local-evaluate local-upload ## Run the five pipeline steps, one process each (not the tests: see `make test`)

local-pipeline: venv ## All five steps in one process
	$(PY) -m etl.pipeline

gdrive-check: venv ## Check the Google Drive set-up (sign-in, folder, Shared Drive) without uploading
	$(PY) -m etl.gdrive_check

settings: venv ## Print every setting with its current value
	$(PY) -m utils.config

##@ Quality
test: venv system-deps compose-v2 ## Run the whole test suite (installs what it needs first)
	$(PY) -m pytest

lint: venv ## ruff on the Python code, shellcheck on the shell scripts, hadolint on the Dockerfile
	$(PY) -m ruff check .
	$(VENV)/bin/hadolint Dockerfile
	shellcheck entrypoint.sh .ci/*.sh .ci/run tests/stack/images/*/entrypoint

bench: venv ## Time the pipeline (as processes, in one process, under Airflow) against baselines
	@pipeline=0; $(PY) bench/bench_pipeline.py || pipeline=$$?; $(PY) bench/bench_airflow.py && exit $$pipeline

clean-runs: ## Delete the per-run working folders under data/runs/
	rm -rf data/runs

include mk/airflow.mk mk/stack.mk mk/smoke.mk
