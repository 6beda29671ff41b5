# The whole set-up on a fresh machine is `make demo` or `make test`.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
PYTEST_ARGS ?=

.PHONY: demo test test-spark test-cluster lint format check-java clean venv benchmark
# The suites whose results depend on the engine; CI runs them on the classic spark engine too.
ENGINE_SUITES := tests/test_io.py tests/test_ingest_delivery.py tests/test_ingest_generated.py \
  tests/test_ingest_pipeline.py tests/test_ingest_rules.py tests/test_cohort_build.py \
  tests/test_cohort_rules.py tests/test_study_pipeline.py tests/test_end_to_end.py \
  tests/test_generate.py tests/test_stats.py tests/test_persistence_pipeline.py \
  tests/test_cross_engine.py tests/test_engine_neutral.py tests/test_malformed_corpus.py \
  tests/test_line_numbers.py tests/test_incremental.py tests/test_use_over_time.py \
  tests/test_prescriber_summary.py

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
	  { echo "the spark engine needs Java 17: apt-get install openjdk-17-jre-headless (or set JAVA_HOME)"; exit 1; }

# The default suite, on the embedded engine (Sail): no Java needed. Tests that need classic
# Spark say in one line that they are skipped when there is no Java or no Delta JARs.
test: $(STAMP)
	$(BIN)/pytest $(PYTEST_ARGS)

# The engine-sensitive suites again on classic Spark with delta-spark (CI runs it).
test-spark: $(STAMP) check-java delta-jars
	RXCOHORT_ENGINE=spark $(BIN)/pytest $(ENGINE_SUITES) $(PYTEST_ARGS)

# The standalone-cluster test (a master and two workers on 127.0.0.1, spark-submit of the jobs);
# kept out of the default run for its few minutes, run by CI after `make test`.
test-cluster: $(STAMP) check-java delta-jars
	$(BIN)/pytest -m cluster $(PYTEST_ARGS)

demo: $(STAMP)
	$(BIN)/rxcohort demo

lint: $(STAMP)
	$(BIN)/ruff check src tests jobs benchmarks
	$(BIN)/ruff format --check src tests jobs benchmarks
	$(BIN)/lint-imports

format: $(STAMP)
	$(BIN)/ruff format src tests jobs benchmarks
	$(BIN)/ruff check --fix src tests jobs benchmarks

benchmark: $(STAMP)
	$(BIN)/python benchmarks/run.py

clean:
	rm -rf $(VENV) warehouse demo_delivery .pytest_cache

# The Delta Lake JARs of the classic `spark` engine, fetched by Maven here, at install time,
# so that no run downloads anything (no spark.jars.packages, no Ivy). They go to a directory of
# their own, with jars.txt (sha256sum format) written last: rxcohort.jars trusts only a
# directory whose jars.txt matches. Versions are in build/delta-jars/pom.xml. Override the
# directory with RXCOHORT_JARS_DIR (the same variable rxcohort reads at run time), Maven's
# options with MVN_ARGS (e.g. `-o` for an offline ~/.m2, `-s settings.xml` for a mirror).
.PHONY: delta-jars
RXCOHORT_JARS_DIR ?= $(VENV)/share/rxcohort/jars
DELTA_POM := build/delta-jars/pom.xml
DELTA_MANIFEST := $(RXCOHORT_JARS_DIR)/jars.txt
MVN ?= mvn
MVN_ARGS ?=

delta-jars: $(DELTA_MANIFEST)
	@cd '$(RXCOHORT_JARS_DIR)' && sha256sum --quiet --check jars.txt || \
	  { echo "the Delta JARs in $(RXCOHORT_JARS_DIR) do not match jars.txt: run make -B delta-jars"; exit 1; }
	@echo "Delta JARs: $$(wc -l < '$(DELTA_MANIFEST)') files in $(RXCOHORT_JARS_DIR)"

$(DELTA_MANIFEST): $(DELTA_POM)
	@command -v $(MVN) >/dev/null 2>&1 || \
	  { echo "make delta-jars needs Maven 3.6+: apt-get install maven (or set MVN=/path/to/mvn)"; exit 1; }
	@mkdir -p '$(RXCOHORT_JARS_DIR)'
	rm -f '$(RXCOHORT_JARS_DIR)'/*.jar '$(DELTA_MANIFEST)'
	$(MVN) -q -B -Dstyle.color=never $(MVN_ARGS) -f $(DELTA_POM) dependency:copy-dependencies \
	  -DincludeScope=runtime -DoutputDirectory='$(abspath $(RXCOHORT_JARS_DIR))'
	cd '$(RXCOHORT_JARS_DIR)' && LC_ALL=C sha256sum *.jar > jars.txt.tmp && mv jars.txt.tmp jars.txt

# The offline install kit for air-gapped servers (docs/offline.md):
# dist/rxcohort-offline-<version>.tar.gz with rxcohort's wheel, every runtime dependency as a
# wheel for CPython 3.11 on Linux x86_64 (glibc >= BUNDLE_GLIBC), the Delta JARs, conf/,
# cohorts/, expectations/, install.sh, README.txt and SHA256SUMS. Needs the network (PyPI or
# the mirror pip is configured for) and Maven, here; the kit then needs neither.
.PHONY: bundle test-bundle
BUNDLE_GLIBC ?= 2.28

bundle: $(STAMP) delta-jars
	PYTHON='$(BIN)/python' JARS_DIR='$(RXCOHORT_JARS_DIR)' GLIBC='$(BUNDLE_GLIBC)' \
	  build/offline/bundle.sh

# Installs the kit into a fresh venv with every package index unreachable and runs the
# reference study from it on sail and (with Java) spark; a few minutes.
test-bundle: bundle
	$(BIN)/pytest -m bundle $(PYTEST_ARGS)
