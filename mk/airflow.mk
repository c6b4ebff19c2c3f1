# Airflow targets, included by the Makefile (`include mk/airflow.mk`); they use its `venv` target.
# Airflow's settings live in mk/airflow.env (shared with the tests); any of them can be overridden on the command
# line, e.g. `make standalone AIRFLOW__API__PORT=8081` (the API's base URL follows the host and port). The
# pipeline's own settings come from the environment and `.env`, as everywhere else.

include mk/airflow.env

AIRFLOW_HOME_DIR ?= $(CURDIR)/.airflow
# The DAG id is etl/steps.py's (read with the host's Python: that module imports nothing outside the stdlib).
AIRFLOW_DAG := $(shell cd $(CURDIR) && python3 -c 'from etl.steps import DAG_ID; print(DAG_ID)')
AIRFLOW_BIN := $(CURDIR)/$(VENV)/bin/airflow
AIRFLOW_PYTHON := $(CURDIR)/$(PY)
AIRFLOW_DB_STAMP := $(AIRFLOW_HOME_DIR)/.migrated
AIRFLOW_PID := $(AIRFLOW_HOME_DIR)/standalone.pid
AIRFLOW_LOG := $(AIRFLOW_HOME_DIR)/standalone.log
AIRFLOW_URL = http://$(AIRFLOW__API__HOST):$(AIRFLOW__API__PORT)
AIRFLOW__API__BASE_URL = $(AIRFLOW_URL)/
AIRFLOW_SETTING_NAMES := $(shell sed -n 's/^\(AIRFLOW__[A-Z_]*\)=.*/\1/p' mk/airflow.env)
# PATH: `airflow standalone` starts its components as `airflow ...` subprocesses
AIRFLOW_ENV = env $(foreach name,$(AIRFLOW_SETTING_NAMES),$(name)=$($(name))) AIRFLOW_HOME=$(AIRFLOW_HOME_DIR) \
	AIRFLOW__CORE__DAGS_FOLDER=$(CURDIR)/dags AIRFLOW__CORE__PLUGINS_FOLDER=$(CURDIR)/plugins PATH=$(CURDIR)/$(VENV)/bin:$$PATH
AIRFLOW = $(AIRFLOW_ENV) $(AIRFLOW_BIN)
AIRFLOW_STOP_WAIT_SECONDS := 30

.PHONY: run airflow-db standalone standalone-stop standalone-dag-start standalone-announce-batch standalone-dag-task-list standalone-dag-runs FORCE

##@ Airflow (embedded: SQLite in .airflow/, this project's DAGs)

run: $(AIRFLOW_DB_STAMP) ## Run the whole pipeline once with Airflow (`airflow dags test`) and show where the results are
	@echo "airflow dags test $(AIRFLOW_DAG)  (AIRFLOW_HOME=$(AIRFLOW_HOME_DIR))"
	@$(AIRFLOW) dags test $(AIRFLOW_DAG)
	@results=$$($(AIRFLOW_PYTHON) -c "from utils.config import load_settings; print(load_settings().results_dir)"); \
	echo; echo "Published run: $$(readlink -f $$results/latest)"; \
	echo "  model:   $$results/latest/model.joblib"; \
	echo "  metrics: $$results/latest/metrics.json"; \
	echo "  report:  $$results/latest/report.md"

airflow-db: $(AIRFLOW_DB_STAMP) ## Create or upgrade Airflow's SQLite database in .airflow/

# Migrated once, again after the virtualenv changes (a new Airflow may bring migrations) or when the database
# file is gone; not on every `make run`.
$(AIRFLOW_DB_STAMP): $(VENV_STAMP) $(if $(wildcard $(AIRFLOW_HOME_DIR)/airflow.db),,FORCE)
	@mkdir -p $(AIRFLOW_HOME_DIR)
	@$(AIRFLOW) db migrate > $(AIRFLOW_HOME_DIR)/migrate.log 2>&1 || \
		{ cat $(AIRFLOW_HOME_DIR)/migrate.log; echo "airflow db migrate failed (log above)"; exit 1; }
	@touch $@

FORCE:

standalone: venv ## Start Airflow (UI on 127.0.0.1:8080, scheduler, this project's DAGs) in the background
	@$(AIRFLOW_ENV) $(AIRFLOW_PYTHON) mk/standalone.py start $(AIRFLOW_BIN) $(AIRFLOW_HOME_DIR) $(AIRFLOW_URL) \
		$(AIRFLOW_LOG) $(AIRFLOW_PID)
	@echo "The DAG $(AIRFLOW_DAG) runs once by itself (schedule @once); trigger more with: make standalone-dag-start"

standalone-stop: ## Stop the background Airflow started by `make standalone`
	@$(AIRFLOW_PYTHON) mk/standalone.py stop $(AIRFLOW_PID) $(AIRFLOW_STOP_WAIT_SECONDS)

standalone-dag-start: venv ## Trigger a run in `make standalone` (CONF='{"candidates": ["linear_svm"]}' sets Params), like dag-start
	$(AIRFLOW) dags trigger $(AIRFLOW_DAG) $(if $(CONF),--conf '$(CONF)')

standalone-announce-batch: venv ## Announce the CSV files put in INCOMING_DIR to `make standalone`, like announce-batch
	$(AIRFLOW_ENV) AIRFLOW_API_URL=$(AIRFLOW_URL) $(AIRFLOW_PYTHON) -m etl.announce $(if $(NOTE),--note '$(NOTE)')

standalone-dag-task-list: venv ## List the DAG's tasks, like dag-task-list
	$(AIRFLOW) tasks list $(AIRFLOW_DAG)

standalone-dag-runs: venv ## List the DAG's runs and their states, like dag-runs (ARGS='--output json' for JSON)
	$(AIRFLOW) dags list-runs $(AIRFLOW_DAG) $(ARGS)
