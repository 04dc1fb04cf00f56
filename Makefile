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

# For now: the simulated worker fleet from the catalog (the API arrives with the inference-API issue).
serve: setup
	$(BIN)/switchyard workers up

workers: serve

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

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
