# microdc-pipeline: the two set-up commands are `make demo` and `make test`.
# Both create the virtual environment and install everything they need by themselves.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# FinOps focus-validator pins numpy<2 and pandas<3 (pyarrow 26 needs numpy 2): its own venv.
FOCUS_VENV ?= .venv-focus
FOCUS_STAMP := $(FOCUS_VENV)/.installed
# dbt-duckdb 1.11 pins dbt-core<1.12, which downgrades python-dateutil and mypy: its own venv
# (sql/ runs unchanged under dbt; `microdc models build` does not need it). DuckDB as in .venv.
DBT_VENV ?= .venv-dbt
DBT_STAMP := $(DBT_VENV)/.installed
DBT := $(DBT_VENV)/bin/dbt
DBT_OUT ?= out

.PHONY: help install focus-env dbt-env dbt-build browser collect-deps browser-tests demo test unit e2e integration lint bench kafka-jars kafka-up kafka-down clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "microdc-pipeline needs Python 3.11+, found " + sys.version.split()[0] + ": run make PYTHON=python3.11 ...")'
	@echo "installing microdc-pipeline and its dependencies into $(VENV) (log: $(VENV)/install.log)"
	@$(PYTHON) -m venv $(VENV)
	@{ $(BIN)/python -m pip install --disable-pip-version-check --upgrade pip \
	  && $(BIN)/python -m pip install --disable-pip-version-check -e '.[dev]'; } \
	  > $(VENV)/install.log 2>&1 || { tail -n 40 $(VENV)/install.log; echo "pip install failed: see $(VENV)/install.log" >&2; exit 1; }
	@touch $@

install: $(STAMP) ## create .venv and install the package with its dev tools

$(FOCUS_STAMP):
	@echo "installing FinOps focus-validator into $(FOCUS_VENV) (log: $(FOCUS_VENV)/install.log)"
	@$(PYTHON) -m venv $(FOCUS_VENV)
	@$(FOCUS_VENV)/bin/python -m pip install --disable-pip-version-check 'focus-validator==1.0.0' 'multimethod<2' \
	  > $(FOCUS_VENV)/install.log 2>&1 || { tail -n 40 $(FOCUS_VENV)/install.log; echo "pip install failed: see $(FOCUS_VENV)/install.log" >&2; exit 1; }
	@touch $@

focus-env: $(FOCUS_STAMP) ## a separate venv with FinOps focus-validator (used by the FOCUS export tests)

$(DBT_STAMP):
	@echo "installing dbt-duckdb into $(DBT_VENV) (log: $(DBT_VENV)/install.log)"
	@$(PYTHON) -m venv $(DBT_VENV)
	@$(DBT_VENV)/bin/python -m pip install --disable-pip-version-check 'dbt-duckdb==1.11.1' 'dbt-core>=1.11,<1.12' 'duckdb==2.0.1' \
	  > $(DBT_VENV)/install.log 2>&1 || { tail -n 40 $(DBT_VENV)/install.log; echo "pip install failed: see $(DBT_VENV)/install.log" >&2; exit 1; }
	@touch $@

dbt-env: $(DBT_STAMP) ## a separate venv with dbt-duckdb (sql/ as a dbt project; used by the e2e dbt test)

dbt-build: $(DBT_STAMP) ## dbt build (models, schema and unit tests) over $(DBT_OUT)/lake into $(DBT_OUT)/warehouse.duckdb (run make demo first)
	@test -f $(DBT_OUT)/warehouse.duckdb || { echo "no $(DBT_OUT)/warehouse.duckdb (its dim_ tables are dbt's fleet source): run make demo, or microdc models dims --db $(DBT_OUT)/warehouse.duckdb" >&2; exit 1; }
	MICRODC_WAREHOUSE=$(DBT_OUT)/warehouse.duckdb MICRODC_LAKE=$(DBT_OUT)/lake DBT_SEND_ANONYMOUS_USAGE_STATS=false \
	  $(DBT) build --project-dir sql --profiles-dir sql --target-path $(CURDIR)/$(DBT_OUT)/dbt/target --log-path $(CURDIR)/$(DBT_OUT)/dbt/logs

browser: ## Debian's chromium for the browser tests (apt-get as root, else sudo)
	@command -v $${MICRODC_CHROMIUM:-chromium} >/dev/null 2>&1 || { \
	  echo "installing Debian's chromium for the browser tests"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium >/dev/null; }
	@command -v $${MICRODC_CHROMIUM:-chromium} >/dev/null 2>&1 || { echo "no chromium: install Debian's chromium package or set MICRODC_CHROMIUM=/path/to/chromium" >&2; exit 1; }

# Real telemetry programs the collector tests run on loopback (Debian packages).
COLLECT_PACKAGES := prometheus-node-exporter prometheus ipmitool openipmi gcc libc6-dev nginx logrotate
COLLECT_BINARIES := /usr/bin/prometheus-node-exporter /usr/bin/prometheus /usr/bin/ipmitool /usr/bin/ipmi_sim /usr/bin/gcc /usr/sbin/nginx /usr/sbin/logrotate
collect-deps: ## Debian's node_exporter, prometheus, ipmitool, ipmi_sim, nginx and logrotate for the collector tests (apt-get as root, else sudo)
	@missing=""; for b in $(COLLECT_BINARIES); do [ -x $$b ] || missing=1; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian's $(COLLECT_PACKAGES) for the collector tests"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $(COLLECT_PACKAGES) >/dev/null; fi
	@for b in $(COLLECT_BINARIES); do [ -x $$b ] || { echo "no $$b: apt-get install $(COLLECT_PACKAGES)" >&2; exit 1; }; done

demo: $(STAMP) ## run the pipeline on the embedded default (no Kafka needed)
	@$(BIN)/microdc demo

kafka-jars: $(STAMP) ## fetch Apache Kafka 4.x jars from Maven Central (cached)
	$(BIN)/python -c 'from pipeline.localkafka import ensure_jars; print("kafka jars:", ensure_jars(quiet=False))'

lint: $(STAMP) ## ruff and mypy --strict
	$(BIN)/ruff check pipeline tests bench
	$(BIN)/mypy

test: $(STAMP) $(FOCUS_STAMP) $(DBT_STAMP) kafka-jars browser collect-deps lint ## lint, then the whole suite against a real Kafka broker it starts itself
	$(BIN)/pytest

unit: $(STAMP) ## unit tests: in-process only (no broker, browser, subprocess or socket)
	$(BIN)/pytest tests/unit -m 'not slow and not browser'

e2e: $(STAMP) $(FOCUS_STAMP) $(DBT_STAMP) collect-deps ## end to end through subprocesses: a built wheel, the CLI, focus-validator, dbt
	$(BIN)/pytest tests/e2e tests/unit -m slow

browser-tests: $(STAMP) browser ## the tests that drive headless Chromium
	$(BIN)/pytest -m browser

integration: $(STAMP) kafka-jars ## integration tests only (real broker)
	$(BIN)/pytest tests/integration

bench: $(STAMP) kafka-jars ## benchmarks against a real broker; prints tables
	$(BIN)/python bench/bench_kafka.py
	$(BIN)/python bench/bench_worker.py
	$(BIN)/python bench/bench_land.py
	$(BIN)/python bench/bench_models.py
	$(BIN)/python bench/bench_demo.py
	$(BIN)/python bench/bench_hostile.py
	$(BIN)/python bench/bench_latency.py
	$(BIN)/python bench/bench_partitioners.py
	$(BIN)/python bench/bench_collect.py
	$(BIN)/python bench/bench_requests.py

kafka-up: $(STAMP) kafka-jars ## start a local KRaft broker on 127.0.0.1 (prints its address)
	$(BIN)/microdc kafka up

kafka-down: $(STAMP) ## stop the local broker
	$(BIN)/microdc kafka down

clean: ## remove build and run artefacts (not the venv)
	rm -rf out .pytest_cache .mypy_cache .ruff_cache build *.egg-info
