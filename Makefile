# FMU Gateway: `make run` serves the gateway on embedded defaults, `make test` runs everything.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
HOST ?= 127.0.0.1
PORT ?= 8000
STAMP := $(VENV)/.installed

.PHONY: help install bwrap run worker sample test fuzz lint contract bench load build deploy clean

help:
	@echo "make run       install, migrate, create the dev user, serve on $(HOST):$(PORT)"
	@echo "make worker    a worker process executing runs from FMU_GATEWAY_BROKER_URL (Redis)"
	@echo "make test      the whole test suite (unit + end to end through a real server)"
	@echo "make fuzz      contract fuzzing (schemathesis) of a real gateway, longer than in make test"
	@echo "make lint      ruff + mypy"
	@echo "make contract  regenerate shared-specs/api_contract.yaml from the app"
	@echo "make bench     gateway vs raw FMPy on the same FMU"
	@echo "make load      load test on loopback (embedded, then PostgreSQL + Redis + 2 workers) and books checks"
	@echo "make build     the runner, API/worker and SDK images, offline (IMAGES=\"runner api sdk\")"
	@echo "make deploy    print the deployment steps; TARGET=compose|ecs|vercel performs one (docs/deployment.md)"

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
	@echo "web console: http://$(HOST):$(PORT)/console"
	HOST=$(HOST) PORT=$(PORT) $(VENV)/bin/fmu-gateway-admin serve

# Executes runs from the broker; the API then only enqueues (set FMU_GATEWAY_BROKER_URL for both).
worker: install
	$(VENV)/bin/fmu-gateway-admin worker

test: install
	$(PY) -m pytest -c private-api/pyproject.toml --rootdir . private-api/tests $(wildcard open-sdk/tests) $(PYTEST_ARGS)

# The contract fuzzing of `make test`, with many more examples per operation (FUZZ_EXAMPLES, FUZZ_SEED).
FUZZ_EXAMPLES ?= 200
FUZZ_SEED ?= $(shell date +%s)
fuzz: install
	FMU_GATEWAY_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) FMU_GATEWAY_FUZZ_SEED=$(FUZZ_SEED) \
	  $(PY) -m pytest -c private-api/pyproject.toml --rootdir . private-api/tests/api/test_contract_fuzz.py $(PYTEST_ARGS)

# Images for the docker sandbox and deployments; needs a Docker engine (see docs/deployment.md).
IMAGES ?= runner api sdk
build: $(STAMP)
	PYTHON=$(PY) bash deploy/images/build.sh $(IMAGES)

lint: $(STAMP)
	$(VENV)/bin/ruff check private-api open-sdk bench deploy
	cd private-api && ../$(VENV)/bin/mypy app ../deploy/render_ecs.py
	cd open-sdk && ../$(VENV)/bin/mypy fmu_gateway_sdk

contract: $(STAMP)
	$(PY) -m app.contract > shared-specs/api_contract.yaml

bench: install sample
	$(PY) bench/bench_runs.py --fmu VanDerPol --concurrent 30
	$(PY) bench/bench_runs.py --fmu MassSpringSystem --concurrent 200
	$(PY) bench/bench_sandbox.py --fmu MassSpringSystem
	$(PY) bench/bench_sweeps.py --samples 1000
	$(PY) bench/bench_memory.py --runs 10000

# 20 clients of 4 tenants for 60 s per mode on 127.0.0.1, then every run final and the books balanced (docs/operations.md).
load: install sample
	$(PY) bench/load.py --mode embedded cluster

# Safe by default: without TARGET it only prints the steps of docs/deployment.md.
TARGET ?=
COMPOSE = $(shell docker compose version >/dev/null 2>&1 && echo "docker compose" || (command -v docker-compose >/dev/null && echo docker-compose))
IMAGE_TAG ?= latest
ECS_OUT := build/ecs

deploy:
ifeq ($(TARGET),)
	@echo "Deployment steps (docs/deployment.md); 'make deploy TARGET=...' performs the marked ones."
	@echo ""
	@echo "Images (offline, from a wheelhouse):"
	@echo "  make build                                    fmu-gateway-api, fmu-gateway-runner, fmu-gateway-sdk"
	@echo ""
	@echo "One host, Docker Compose                        [TARGET=compose]"
	@echo "  cp deploy/.env.example deploy/.env             then fill in the secrets"
	@echo "  docker compose -f deploy/docker-compose.yml up -d"
	@echo "  docker compose -f deploy/docker-compose.yml ps  every service healthy, migrate and s3-bucket exited 0"
	@echo ""
	@echo "AWS ECS (AWS_ACCOUNT_ID, AWS_REGION, IMAGE_REGISTRY, IMAGE_TAG, DOCKER_GID set; docker logged in to the registry)"
	@echo "  docker tag + docker push fmu-gateway-api and fmu-gateway-runner to IMAGE_REGISTRY   [TARGET=ecs]"
	@echo "  python3 deploy/render_ecs.py $(ECS_OUT)                                              [TARGET=ecs]"
	@echo "  aws ecs register-task-definition --cli-input-json file://$(ECS_OUT)/<family>.json   [TARGET=ecs]"
	@echo "  aws ecs run-task ... fmu-gateway-api with command [\"migrate\"]   once per release"
	@echo "  aws ecs update-service ... fmu-gateway-api, fmu-gateway-worker    to the new revisions"
	@echo ""
	@echo "Documentation site on Vercel                    [TARGET=vercel]"
	@echo "  npm ci --prefix deploy                         the pinned Vercel CLI"
	@echo "  deploy/node_modules/.bin/vercel deploy --prod --local-config deploy/vercel_config.json"
else ifeq ($(TARGET),compose)
	@test -n "$(COMPOSE)" || { echo "no 'docker compose' or 'docker-compose' here"; exit 1; }
	@test -f deploy/.env || { echo "deploy/.env is missing: cp deploy/.env.example deploy/.env and fill it in"; exit 1; }
	$(COMPOSE) -f deploy/docker-compose.yml up -d
	$(COMPOSE) -f deploy/docker-compose.yml ps
else ifeq ($(TARGET),ecs)
	@command -v aws >/dev/null || { echo "the aws CLI is not installed"; exit 1; }
	@test -n "$(IMAGE_REGISTRY)" || { echo "set IMAGE_REGISTRY (and AWS_ACCOUNT_ID, AWS_REGION, IMAGE_TAG, DOCKER_GID)"; exit 1; }
	for image in fmu-gateway-api fmu-gateway-runner; do \
	  docker tag $$image:latest $(IMAGE_REGISTRY)/$$image:$(IMAGE_TAG) && \
	  docker push $(IMAGE_REGISTRY)/$$image:$(IMAGE_TAG) || exit 1; \
	done
	set -o pipefail; IMAGE_TAG=$(IMAGE_TAG) $(PYTHON) deploy/render_ecs.py $(ECS_OUT) | while read -r file; do \
	  aws ecs register-task-definition --cli-input-json "file://$$file" \
	    --query 'taskDefinition.taskDefinitionArn' --output text || exit 1; \
	done
else ifeq ($(TARGET),vercel)
	@test -x deploy/node_modules/.bin/vercel || { echo "the Vercel CLI: npm ci --prefix deploy"; exit 1; }
	deploy/node_modules/.bin/vercel deploy --prod --local-config deploy/vercel_config.json
else
	@echo "unknown TARGET=$(TARGET) (compose, ecs or vercel)"; exit 1
endif

clean:
	rm -rf var $(VENV)
