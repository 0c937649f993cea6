# slacomp: the two commands are `make demo` (set up and run) and `make test` (set up and test).
# Each installs what it needs on a fresh machine: a Python venv, the npm toolchain, the solc shim.
SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(CURDIR)/$(VENV)/bin
SOLC_VERSION := 0.8.28
export SOLCX_BINARY_PATH := $(CURDIR)/.solcx
export PATH := $(CURDIR)/node_modules/.bin:$(BIN):$(PATH)
# NETWORK=ganache-cli runs the same suite against Ganache instead of Anvil.
NETWORK ?= development

.PHONY: setup system-deps demo lint test bench clean

$(BIN)/slacomp: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev,postgres]'
	touch $@

node_modules/.package-lock.json: package-lock.json
	npm ci --no-audit --no-fund
	touch $@

$(SOLCX_BINARY_PATH)/solc-v$(SOLC_VERSION): toolchain/solc.js node_modules/.package-lock.json
	mkdir -p $(SOLCX_BINARY_PATH)
	ln -sf $(CURDIR)/toolchain/solc.js $@

setup: $(BIN)/slacomp node_modules/.package-lock.json $(SOLCX_BINARY_PATH)/solc-v$(SOLC_VERSION)
	$(BIN)/brownie compile >/dev/null

demo: setup
	$(BIN)/slacomp demo $(DEMO_ARGS)

# Debian packages some tests need: chromium (the dashboard's browser test) and the PostgreSQL
# server binaries (the oracle's PostgreSQL path; the tests start a throwaway cluster). Installed
# when missing and root; without them those tests skip with the reason.
system-deps:
	@missing=""; [ -x /usr/bin/chromium ] || missing="chromium"; \
	ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing="$$missing postgresql"; \
	if [ -n "$$missing" ] && [ "$$(id -u)" = 0 ]; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; fi

# ruff (lint and import order) and mypy over oracle/, api/, slacomp/ (strict on oracle.core,
# .evidence, .telemetry, .chain and node.states);
# both configured in pyproject.toml.
lint: setup
	$(BIN)/ruff check .
	$(BIN)/mypy

test: setup system-deps lint
	$(BIN)/brownie test tests --network $(NETWORK)

bench: setup
	$(BIN)/python bench/gas.py
	$(BIN)/python bench/kpi.py
	$(BIN)/python bench/simulate.py
	$(BIN)/python bench/audit.py

clean:
	rm -rf build .solcx
