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

.PHONY: setup browser demo test bench clean

$(BIN)/slacomp: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
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

# The dashboard's browser test needs Debian's chromium (installed here when missing and root).
browser:
	@[ -x /usr/bin/chromium ] || [ "$$(id -u)" != 0 ] || \
		{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }

test: setup browser
	$(BIN)/brownie test tests --network $(NETWORK)

bench: setup
	$(BIN)/python bench/gas.py
	$(BIN)/python bench/kpi.py
	$(BIN)/python bench/simulate.py
	$(BIN)/python bench/audit.py

clean:
	rm -rf build .solcx
