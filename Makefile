# Two commands matter: `make run` (the local stack) and `make test`. Both install what they
# need first: a pinned uv under .tools/, then .venv from uv.lock.
SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

UV_VERSION := 0.13.8
PYTHON ?= python3
TOOLS := .tools
UV := $(TOOLS)/bin/uv
CHECKOV_ENV := $(TOOLS)/checkov
export UV_PYTHON_DOWNLOADS := never
export UV_PYTHON := $(shell command -v $(PYTHON))

.PHONY: help install install-checkov run test lint format bench bench-memory chaos clean

help:  ## list targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

$(UV):
	@echo "installing uv $(UV_VERSION) into $(TOOLS)/"
	@if $(PYTHON) -m pip --version >/dev/null 2>&1; then \
		$(PYTHON) -m pip install --quiet --disable-pip-version-check --target $(TOOLS) uv==$(UV_VERSION); \
	else \
		$(PYTHON) -m venv $(TOOLS)/venv && $(TOOLS)/venv/bin/pip install --quiet uv==$(UV_VERSION) \
		&& mkdir -p $(TOOLS)/bin && ln -sf ../venv/bin/uv $(UV); \
	fi

.venv/.synced: $(UV) uv.lock pyproject.toml
	$(UV) sync --frozen --all-extras --quiet
	@touch $@

install: .venv/.synced  ## create .venv from uv.lock

# checkov has a lock of its own (tools/checkov/uv.lock), kept out of the project's.
$(CHECKOV_ENV)/.synced: $(UV) tools/checkov/uv.lock tools/checkov/pyproject.toml
	UV_PROJECT_ENVIRONMENT=$(CURDIR)/$(CHECKOV_ENV) $(UV) sync --frozen --project tools/checkov --quiet
	@touch $@

install-checkov: $(CHECKOV_ENV)/.synced  ## create .tools/checkov/ (checkov for the infra/ tests)

run: install  ## run the local stack on http://127.0.0.1:8080 (Ctrl-C stops everything)
	exec .venv/bin/hookyard dev

test: install $(CHECKOV_ENV)/.synced  ## unit, integration and end-to-end tests against real PostgreSQL
	tools/ensure-chromium
	.venv/bin/pytest

lint: install  ## ruff format check, ruff lint, mypy --strict
	.venv/bin/ruff format --check .
	.venv/bin/ruff check .
	.venv/bin/mypy

format: install  ## apply ruff formatting and safe fixes
	.venv/bin/ruff format .
	.venv/bin/ruff check --fix .

EVENTS ?= 10000
chaos: install  ## the stack under faults, checked from outside (EVENTS=10000; exit 1 on any loss)
	.venv/bin/python -m tests.chaos.run --events $(EVENTS)

bench: install  ## benchmarks that print figures (no pass/fail on speed)
	.venv/bin/python -m tests.load.run

bench-memory: install  ## RSS of every process after 10,000 and 100,000 events (MEMORY_EVENTS)
	.venv/bin/python -m tests.load.bench_memory

clean:  ## remove the venv, tools and local data (stops nothing: make run already did)
	rm -rf .venv $(TOOLS) .hookyard .bench .pytest_cache .mypy_cache .ruff_cache
