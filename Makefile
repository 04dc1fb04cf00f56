# Switchyard — the two commands are `make serve` and `make test`.
PYTHON ?= python3.11
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: setup test lint unit integration serve workers bootstrap feature-tables train-router mlflow-ui bench clean

LOGS     ?= data/logs
MLRUNS   ?= mlruns

# Idempotent: reinstalls only when pyproject.toml changed.
setup: $(STAMP)
$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

test: lint
	$(BIN)/pytest

unit: setup
	$(BIN)/pytest tests/unit

integration: setup
	$(BIN)/pytest tests/integration

# On a fresh machine: bootstrap + train if no champion, materialize Feast, start workers and the API.
serve: setup
	$(BIN)/switchyard serve --all

workers: setup
	$(BIN)/switchyard workers up

# Simulated logs to learn from; skipped when a finished bootstrap is already there.
bootstrap: setup
	@if [ -f $(LOGS)/_SUCCESS ]; then echo "bootstrap: $(LOGS) already holds logs (rm -r $(LOGS) to redo)"; \
	else $(BIN)/switchyard bootstrap --days 7 --out $(LOGS); fi

feature-tables: bootstrap
	$(BIN)/switchyard feature-tables --logs $(LOGS)

# The nightly job: logs -> Feast -> LightGBM -> ONNX (+parity) -> eval -> MLflow registry (+gate).
train-router: bootstrap
	$(BIN)/switchyard train --logs $(LOGS) --mlruns $(MLRUNS)

mlflow-ui: setup
	$(BIN)/mlflow ui --backend-store-uri sqlite:///$(abspath $(MLRUNS))/mlflow.db --host 127.0.0.1 --port 5000

bench: setup
	$(BIN)/python bench/worker_throughput.py
	$(BIN)/python bench/router_scoring.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache

# Realistic simulated traffic through the gateway `make serve` runs, with a live table and the judge.
DEMO_RATE     ?= 10
DEMO_DURATION ?= 120
.PHONY: demo
demo: setup
	$(BIN)/switchyard demo --url http://127.0.0.1:8080 --keys .switchyard/tenant-keys.json --bootstrap $(LOGS) \
		--rate $(DEMO_RATE) --duration $(DEMO_DURATION)

# The gateway's added latency, throughput and router decision time on this machine.
.PHONY: bench-gateway
bench-gateway: setup
	$(BIN)/python bench/gateway_overhead.py
