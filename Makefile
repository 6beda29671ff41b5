# The whole set-up on a fresh machine is `make demo` or `make test`.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
PYTEST_ARGS ?=

.PHONY: demo test test-cluster lint format check-java clean venv benchmark

venv: $(STAMP)

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 11) else 1)' || \
	  { echo "rxcohort needs Python 3.11 (found: $$($(PYTHON) --version 2>&1)); set PYTHON=/path/to/python3.11"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	@touch $(STAMP)

check-java:
	@command -v java >/dev/null 2>&1 || [ -x "$$JAVA_HOME/bin/java" ] || \
	  { echo "rxcohort needs Java 17 for Spark 4: apt-get install openjdk-17-jre-headless (or set JAVA_HOME)"; exit 1; }

test: $(STAMP) check-java
	$(BIN)/pytest $(PYTEST_ARGS)

# The standalone-cluster test (a master and two workers on 127.0.0.1, spark-submit of the jobs);
# kept out of the default run for its few minutes, run by CI after `make test`.
test-cluster: $(STAMP) check-java
	$(BIN)/pytest -m cluster $(PYTEST_ARGS)

demo: $(STAMP) check-java
	$(BIN)/rxcohort demo

lint: $(STAMP)
	$(BIN)/ruff check src tests jobs benchmarks
	$(BIN)/ruff format --check src tests jobs benchmarks

format: $(STAMP)
	$(BIN)/ruff format src tests jobs benchmarks
	$(BIN)/ruff check --fix src tests jobs benchmarks

benchmark: $(STAMP) check-java
	$(BIN)/python benchmarks/run.py

clean:
	rm -rf $(VENV) warehouse demo_delivery .pytest_cache
