# One Makefile is the gate: CI runs exactly `make test`. Every target installs what it needs itself.
SHELL := /bin/bash
.DEFAULT_GOAL := help
UV_VERSION := 0.13.9
TOOLS := .tools
UV := $(TOOLS)/bin/uv
VENV := .venv
PY := $(VENV)/bin/python
export UV_PYTHON_DOWNLOADS := never
export PYTHONPATH := $(CURDIR)/layers/common/python:$(CURDIR)
# glibc gives each new thread its own malloc arena (up to 8 per core); moto server, the emulator and the local
# gateway start a thread per request, and freed memory stays in each arena: a full test run's process grew to
# 13-19 GB (OOM-killed). Two arenas: test_pay_now.py alone went from 1.86 GB to 0.45 GB, no slower.
export MALLOC_ARENA_MAX := 2

PHONY_EXTRA := invoice op bench
.PHONY: help install run test lint typecheck unit integration infra e2e browser browser-tools layer synth clean $(PHONY_EXTRA)

help:
	@echo "make run   - the whole product on localhost (moto server, SolusVM emulator, pages)"
	@echo "make test  - every check and test (lint, types, unit, integration, infra, browser)"
	@echo "make invoice DATE=2022-11-01 [DRY_RUN=1] - invoice a month on the running local stack"
	@echo "make op PAYLOAD='{\"account\": 2}' [NOW=...] - send any operator payload to it (see README, Operating)"
	@echo "make bench [WORKERS=\"1 5 20\"] [ACCOUNTS=1000] - invoicing throughput in a model of AWS"

$(UV):
	python3 -m venv $(TOOLS)
	$(TOOLS)/bin/pip install --quiet uv==$(UV_VERSION)

$(VENV)/.synced: $(UV) pyproject.toml uv.lock
	$(UV) sync --frozen --quiet
	@touch $@

install: $(VENV)/.synced

# The Lambda layer for arm64 / Python 3.14, from the same lock file, with no Docker: wheels only. This
# machine's __pycache__ (its own Python's) goes; infra/bytecode.mjs writes Lambda's, with Pyodide's CPython of
# the same minor version (infra/components/functions.py's runtime), as /opt/python/... on Lambda.
LAMBDA_PYTHON := 3.14
LAYER := build/layer
LAYER_SOURCES := $(shell find layers/common/python -type f -not -path '*/__pycache__/*')
$(LAYER)/.built: $(UV) uv.lock $(LAYER_SOURCES) node_modules/.installed infra/bytecode.mjs
	rm -rf $(LAYER) && mkdir -p $(LAYER)/python
	$(UV) export --frozen --no-dev --no-hashes --no-emit-project --quiet -o build/requirements.txt
	$(UV) pip install --quiet --target $(LAYER)/python --python-platform aarch64-manylinux_2_28 \
	  --python-version $(LAMBDA_PYTHON) --only-binary :all: -r build/requirements.txt
	cp -r layers/common/python/postpay $(LAYER)/python/
	find $(LAYER) -name __pycache__ -type d -prune -exec rm -rf {} +
	node infra/bytecode.mjs $(LAYER)/python /opt/python $(LAMBDA_PYTHON)
	@touch $@

layer: $(LAYER)/.built

synth: install layer
	npx --yes aws-cdk@2 synth --quiet

# Debian's chromium (browser tests), poppler-utils (pdftotext reads the invoice PDFs in the tests), and a
# Java runtime for vnu-jar (the HTML validator).
browser:
	@command -v chromium >/dev/null && command -v pdftotext >/dev/null && command -v java >/dev/null || { \
	  echo "installing Debian's chromium, poppler-utils and a Java runtime for the browser and PDF tests"; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq \
	    chromium poppler-utils default-jre-headless >/dev/null; }

# From package-lock.json: Pyodide for the layer's bytecode, axe-core and vnu-jar for the accessibility and HTML
# checks of the browser tests.
node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	@touch $@

browser-tools: node_modules/.installed

run: install
	$(PY) -m local.run

# The operator's override against `make run`: make invoice DATE=2022-11-01 [DRY_RUN=1] [NOW=2026-12-01T00:05:00Z]
# or any operator payload: make invoice PAYLOAD='{"rebill": {"client": 2, "period": "2022-10"}}' [NOW=...]
# PAYLOAD, DATE and NOW reach local/invoice.py through the environment, as typed (quotes, apostrophes, $
# and backticks included): never pasted into the recipe's shell line.
override PAYLOAD := $(value PAYLOAD)
override DATE := $(value DATE)
override NOW := $(value NOW)
invoice op: export PAYLOAD := $(PAYLOAD)
invoice op: export DATE := $(DATE)
invoice op: export NOW := $(NOW)
invoice op: export DRY_RUN := $(DRY_RUN)

invoice: install
	@test -n "$$DATE$$PAYLOAD" || { echo "usage: make invoice DATE=YYYY-MM-DD [DRY_RUN=1] [NOW=ISO-8601 time]" \
		"| make invoice PAYLOAD='<operator payload, JSON>' [NOW=ISO-8601 time]"; exit 2; }
	$(PY) -m local.invoice --from-env

# Any operator payload against `make run` (whatever its ports: it reads make run's state file):
# make op PAYLOAD='{"listInvoices": {"status": "unpaid"}}' [NOW=2026-12-01T00:05:00Z]
op: install
	@test -n "$$PAYLOAD" || { echo "usage: make op PAYLOAD='<operator payload, JSON>' [NOW=ISO-8601 time]" \
		"(payloads: README, Operating)"; exit 2; }
	@DATE= DRY_RUN= $(PY) -m local.invoice --from-env

# Invoicing throughput in a model of AWS (bench/invoicing.py): ACCOUNTS=1000, WORKERS="1 5 20" by default;
# LATENCY="dynamodb=8,transaction=15,ses=40,sqs=10,solusvm=80,parameters=10" (ms) overrides the modelled round
# trips; DILATION=10 how many times longer requests really wait (half the workers by default). Exits 1 when a
# run at 20 workers misses a goal (README, Speed and scale).
bench: install
	$(PY) -m bench.invoicing --accounts $(or $(ACCOUNTS),1000) --workers $(or $(WORKERS),1 5 20) \
	  $(if $(LATENCY),--latency "$(LATENCY)") $(if $(DILATION),--dilation $(DILATION))

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: install
	$(VENV)/bin/mypy

unit: install
	$(PY) -m pytest tests/unit -q

integration: install browser
	$(PY) -m pytest tests/integration -q

infra: install layer
	$(PY) -m pytest tests/infra -q

e2e: install browser browser-tools
	$(PY) -m pytest tests/e2e -q

test: install layer browser browser-tools lint typecheck
	$(PY) -m pytest -q

clean:
	rm -rf $(VENV) $(TOOLS) cdk.out .pytest_cache .mypy_cache .ruff_cache node_modules
