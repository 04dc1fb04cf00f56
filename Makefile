# Switchyard — the two commands are `make serve` and `make test`.
PYTHON ?= python3.11
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: setup test lint unit integration serve workers bootstrap bench clean

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

bootstrap: setup
	$(BIN)/switchyard bootstrap --days 7

bench: setup
	$(BIN)/python bench/worker_throughput.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
