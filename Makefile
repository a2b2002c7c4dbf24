# The project's commands. `make demo` runs the pipeline on embedded defaults; `make test`
# runs every test. Both set up what they need first (virtualenv, jars), idempotently.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP_PY := $(VENV)/.installed
STAMP_JARS := .jars/.fetched
COMPOSE_CHECK := .tools/compose-check
PYTEST_ARGS ?=

# Settings for every target: the environment, or a .env file beside this Makefile.
-include .env
# No usage telemetry from the bundled tools (MLflow reads both; docs/reliability.md).
MLFLOW_DISABLE_TELEMETRY ?= true
DO_NOT_TRACK ?= true
export

.PHONY: help setup up live down status lint test test-unit demo bench exchange ingest stream lock clean-data compose-check

help: ## List the targets.
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

setup: $(STAMP_PY) $(STAMP_JARS) $(COMPOSE_CHECK) ## Create .venv, fetch the jars, build the Compose checker (no-op when done).

# Packages are byte-compiled at install (30 s): with PYTHONDONTWRITEBYTECODE set, as on these machines,
# nothing writes .pyc later and every process (a Spark worker, an Airflow task) compiles its imports
# again (PySpark, pandas, scikit-learn, skops and MLflow: 7.7 s to import instead of 3.7 s).
$(STAMP_PY): requirements.txt requirements.lock pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade "pip==25.3" "setuptools==80.9.0" wheel
	$(PY) -m pip install --quiet -r requirements.txt -c requirements.lock
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e .
	@touch $@

$(STAMP_JARS): jvm/pom.xml jvm/spark/pom.xml jvm/kafka/pom.xml
	mvn -B -q -f jvm/pom.xml package
	@touch $@

# compose-go (Docker Compose v2's loader) from the Go module proxy, versions pinned by go.sum.
$(COMPOSE_CHECK): tools/compose-check/main.go tools/compose-check/go.mod tools/compose-check/go.sum
	cd tools/compose-check && GOFLAGS=-mod=readonly go build -trimpath -o $(CURDIR)/$(COMPOSE_CHECK) .

compose-check: $(COMPOSE_CHECK) ## Validate docker-compose.yml with a real Compose loader (no engine needed).
	$(COMPOSE_CHECK) -q docker-compose.yml && echo "docker-compose.yml: valid"

up: setup ## Start Kafka, MLflow and Airflow (each a no-op when it runs already).
	$(PY) -m volpipe.ops.services up

live: setup ## Start Kafka and the supervised live path: ingestor (COINBASE_WS_URL) and stream, restarted when they exit.
	$(PY) -m volpipe.ops.services up kafka stream ingestor

down: ## Stop every service the project started (ingestor and stream first, politely).
	@test -x $(PY) && $(PY) -m volpipe.ops.services down || true

status: setup ## Say which services run and where (live path: pid, uptime, restarts, stream lag).
	$(PY) -m volpipe.ops.services status

# mypy keeps its cache in .mypy_cache: 1-2 s when warm, about 25 s cold (docs/architecture.md).
lint: setup ## Check the code: ruff's lint rules and formatting, mypy's types; fails on any finding.
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy

test: setup lint ## Run `make lint`, then every test (unit, Spark, DAGs, integration with real services).
	$(PY) -m pytest $(PYTEST_ARGS)

test-unit: setup ## The quick tier: every test that needs no service, JVM or network (tests/README.md).
	$(PY) -m pytest -m "not integration and not spark" $(PYTEST_ARGS)

bench: setup ## Run every benchmark at full size (~70 min, idle machine) into bench/RESULTS.md (ARGS="--quick" for a smoke run).
	$(PY) bench/run_all.py $(ARGS)

exchange: setup ## Run the local exchange (synthetic market) on ws://127.0.0.1:8765.
	$(PY) -m ingest.exchange $(ARGS)

ingest: setup ## Run the ingestor (COINBASE_WS_URL picks the exchange).
	$(PY) -m ingest $(ARGS)

stream: setup ## Run the feature stream with spark-submit (Ctrl-C stops it; restarts resume).
	source $(VENV)/bin/activate && spark-submit $$(python -m volpipe.spark submit-args) spark_jobs/features_stream.py $(ARGS)

demo: setup ## The whole pipeline on embedded defaults, ingest to drift report (ARGS="--help" for knobs).
	$(PY) -m volpipe.ops.demo $(ARGS)

lock: setup ## Re-pin every transitive package into requirements.lock.
	{ echo "# Every package of the project virtualenv, pinned (pip freeze). Regenerate with \`make lock\`."; \
	  $(PY) -m pip freeze --exclude-editable | grep -v '^volpipe'; } > requirements.lock

clean-data: down ## Delete all runtime data under data/ (keeps data/README.md).
	find data -mindepth 1 -not -name README.md -delete
