# FMU Gateway: `make run` serves the gateway on embedded defaults, `make test` runs everything.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
HOST ?= 127.0.0.1
PORT ?= 8000
STAMP := $(VENV)/.installed

.PHONY: help install bwrap run worker sample test lint contract bench build clean

help:
	@echo "make run       install, migrate, create the dev user, serve on $(HOST):$(PORT)"
	@echo "make worker    a worker process executing runs from FMU_GATEWAY_BROKER_URL (Redis)"
	@echo "make test      the whole test suite (unit + end to end through a real server)"
	@echo "make lint      ruff + mypy"
	@echo "make contract  regenerate shared-specs/api_contract.yaml from the app"
	@echo "make bench     gateway vs raw FMPy on the same FMU"
	@echo "make build     the runner, API/worker and SDK images, offline (IMAGES=\"runner api sdk\")"

$(STAMP): private-api/pyproject.toml private-api/requirements.txt private-api/requirements-dev.txt open-sdk/pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -r private-api/requirements-dev.txt
	$(PIP) install -q --no-deps -e private-api -e open-sdk
	@touch $@

install: $(STAMP) bwrap

# The default sandbox needs bubblewrap; install it when we can, else say how.
bwrap:
	@command -v bwrap >/dev/null || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    (apt-get install -y -qq bubblewrap >/dev/null 2>&1 || (apt-get update -qq && apt-get install -y -qq bubblewrap)); \
	  else \
	    echo "bubblewrap (bwrap) is not installed: 'sudo apt-get install bubblewrap', or run with FMU_GATEWAY_SANDBOX=process"; \
	  fi; }

sample: $(STAMP)
	@$(PY) private-api/tests/fmus/build.py var/samples VanDerPol Feedthrough >/dev/null
	@echo "sample FMUs in var/samples/"

run: install sample
	@$(VENV)/bin/fmu-gateway-admin migrate
	@key=$$($(VENV)/bin/fmu-gateway-admin ensure-dev-user --key-file var/dev-api-key | tail -n 1); \
	  echo "dev API key (also in var/dev-api-key): $$key"
	HOST=$(HOST) PORT=$(PORT) $(VENV)/bin/fmu-gateway-admin serve

# Executes runs from the broker; the API then only enqueues (set FMU_GATEWAY_BROKER_URL for both).
worker: install
	$(VENV)/bin/fmu-gateway-admin worker

test: install
	$(PY) -m pytest -c private-api/pyproject.toml --rootdir . private-api/tests $(wildcard open-sdk/tests) $(PYTEST_ARGS)

# Images for the docker sandbox and deployments; needs a Docker engine (see docs/deployment.md).
IMAGES ?= runner api sdk
build: $(STAMP)
	PYTHON=$(PY) bash deploy/images/build.sh $(IMAGES)

lint: $(STAMP)
	$(VENV)/bin/ruff check private-api open-sdk bench
	cd private-api && ../$(VENV)/bin/mypy app
	cd open-sdk && ../$(VENV)/bin/mypy fmu_gateway_sdk

contract: $(STAMP)
	$(PY) -m app.contract > shared-specs/api_contract.yaml

bench: install sample
	$(PY) bench/bench_runs.py
	$(PY) bench/bench_sweeps.py

clean:
	rm -rf var $(VENV)
