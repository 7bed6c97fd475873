# cotenant developer commands. `make demo` and `make test` work on a fresh machine.
SHELL := /bin/bash
VENV := .venv
BIN := $(VENV)/bin
PYTHON ?= python3

.PHONY: setup demo test lint bench clean

setup: $(VENV)/.installed node_modules/.installed

$(VENV)/.installed: pyproject.toml requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e ".[dev]"
	touch $@

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

demo: setup
	$(BIN)/cotenant up

lint: setup
	$(BIN)/ruff check .

test: setup
	$(BIN)/ruff check .
	$(BIN)/pytest

bench: setup
	for b in bench/*.py; do $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) node_modules .lab .azurite .devhost

# Debian packages the tests use: headless Chromium and its driver (the workloads' browser
# tests) and shellcheck (the guest agent's VM bootstrap scripts).
.PHONY: browser
browser:
	@if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null \
		|| ! command -v shellcheck >/dev/null; then \
		apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
			chromium chromium-driver shellcheck; \
	fi

test: browser

# Checkov (IaC security scan of bicep/) lives in its own venv: its dependencies clash with our
# pins. `make checkov` installs it and holds its findings to bicep/checkov-baseline.yaml;
# `make test` installs it too and runs the same gate in pytest (tests/bicep/test_checkov.py).
CHECKOV_VERSION := 3.3.30
CHECKOV_VENV := .venv-checkov

.PHONY: checkov clean-checkov

checkov: setup $(CHECKOV_VENV)/.installed
	$(BIN)/python -m tests.bicep.checkov_gate

$(CHECKOV_VENV)/.installed:
	$(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/pip install -q --upgrade pip
	$(CHECKOV_VENV)/bin/pip install -q checkov==$(CHECKOV_VERSION)
	touch $@

test: $(CHECKOV_VENV)/.installed

clean: clean-checkov

clean-checkov:
	rm -rf $(CHECKOV_VENV)
