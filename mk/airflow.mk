# Airflow targets, included by the Makefile (`include mk/airflow.mk`); they use its `venv` target.
# Airflow's settings live in mk/airflow.env (shared with the tests); any of them can be overridden on the command
# line, e.g. `make standalone AIRFLOW__API__PORT=8081` (the API's base URL follows the host and port). The
# pipeline's own settings come from the environment and `.env`, as everywhere else.

include mk/airflow.env

AIRFLOW_HOME_DIR ?= $(CURDIR)/.airflow
AIRFLOW_DAG := breast_cancer_pipeline
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
	AIRFLOW__CORE__DAGS_FOLDER=$(CURDIR)/dags PATH=$(CURDIR)/$(VENV)/bin:$$PATH
AIRFLOW = $(AIRFLOW_ENV) $(AIRFLOW_BIN)
AIRFLOW_STOP_WAIT_SECONDS := 30
# Starts a command in its own process group with SIGINT handled: a shell starts background commands with SIGINT
# ignored, and Python (so Airflow) then never turns SIGINT into a clean shutdown.
AIRFLOW_DETACH = $(AIRFLOW_PYTHON) -c "import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); \
	os.setsid(); os.execv(sys.argv[1], sys.argv[1:])"

.PHONY: run airflow-db standalone standalone-stop airflow-trigger airflow-tasks airflow-runs FORCE

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
	@if [ -f $(AIRFLOW_PID) ] && kill -0 $$(cat $(AIRFLOW_PID)) 2>/dev/null; then \
		echo "Airflow is already running (pid $$(cat $(AIRFLOW_PID))); stop it with: make standalone-stop"; exit 1; fi
	@mkdir -p $(AIRFLOW_HOME_DIR)
	@$(AIRFLOW_ENV) $(AIRFLOW_DETACH) $(AIRFLOW_BIN) standalone > $(AIRFLOW_LOG) 2>&1 & echo $$! > $(AIRFLOW_PID)
	@echo "Airflow starting (pid $$(cat $(AIRFLOW_PID)), log $(AIRFLOW_LOG))..."
	@for second in $$(seq 120); do \
		if $(AIRFLOW_PYTHON) -c "import urllib.request; urllib.request.urlopen('$(AIRFLOW_URL)/api/v2/monitor/health', timeout=2)" 2>/dev/null \
			&& [ -f $(AIRFLOW_HOME_DIR)/simple_auth_manager_passwords.json.generated ]; then \
			echo "Airflow is up: $(AIRFLOW_URL)"; \
			$(AIRFLOW_PYTHON) -c "import json, sys; [print(f'Login: {user} / {password}') for user, password in json.load(open(sys.argv[1])).items()]" \
				$(AIRFLOW_HOME_DIR)/simple_auth_manager_passwords.json.generated; \
			echo "The DAG $(AIRFLOW_DAG) runs once by itself (schedule @once); trigger more with: make airflow-trigger"; \
			exit 0; fi; \
		if ! kill -0 $$(cat $(AIRFLOW_PID)) 2>/dev/null; then \
			tail -n 30 $(AIRFLOW_LOG); echo "Airflow exited during start-up (log above)"; exit 1; fi; \
		sleep 1; \
	done; echo "Airflow did not become healthy within 120 s; see $(AIRFLOW_LOG)"; exit 1

standalone-stop: ## Stop the background Airflow started by `make standalone`
	@if [ ! -f $(AIRFLOW_PID) ] || ! kill -0 $$(cat $(AIRFLOW_PID)) 2>/dev/null; then \
		echo "Airflow is not running"; rm -f $(AIRFLOW_PID); exit 0; fi
	@# SIGINT to the leader: `airflow standalone` then stops each component and waits for it (~7 s). SIGINT to
	@# the whole group instead can hang the scheduler and its executor workers; SIGTERM to the leader orphans them.
	@# Whatever of the group is still there after $(AIRFLOW_STOP_WAIT_SECONDS) s gets SIGTERM, then SIGKILL.
	@pid=$$(cat $(AIRFLOW_PID)); kill -INT $$pid; \
	for second in $$(seq $(AIRFLOW_STOP_WAIT_SECONDS)); do \
		if ! kill -0 -$$pid 2>/dev/null; then rm -f $(AIRFLOW_PID); echo "Airflow stopped"; exit 0; fi; sleep 1; \
	done; \
	echo "Airflow did not stop within $(AIRFLOW_STOP_WAIT_SECONDS) s: terminating process group $$pid"; \
	kill -TERM -$$pid 2>/dev/null; sleep 5; kill -KILL -$$pid 2>/dev/null; rm -f $(AIRFLOW_PID); exit 1

airflow-trigger: venv ## Trigger a pipeline run (CONF='{"model": "svm"}' sets Params); `make standalone` executes it
	$(AIRFLOW) dags trigger $(AIRFLOW_DAG) $(if $(CONF),--conf '$(CONF)')

airflow-tasks: venv ## List the DAG's tasks
	$(AIRFLOW) tasks list $(AIRFLOW_DAG)

airflow-runs: venv ## List the DAG's runs and their states
	$(AIRFLOW) dags list-runs $(AIRFLOW_DAG)
