# The compose stack without Docker (docs/stack-smoke.md): docker-compose.yml's services as local processes, with
# PostgreSQL, Prometheus, the Pushgateway and headless Chromium from Debian. Included by the Makefile.

.PHONY: stack-smoke

stack-smoke: venv system-deps ## Run docker-compose.yml's services natively: two DAG runs, metrics, the UI in Chromium
	$(PY) -m pytest tests/stack/test_stack_smoke.py -v -s --durations=10
