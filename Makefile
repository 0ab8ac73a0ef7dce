# pg-migration developer entry points. Everything works from a fresh clone without manual steps
# (CI=true, no stdin): `make test` creates the venv, starts the local PostgreSQL servers and runs pytest.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= $(shell command -v python3.11 2>/dev/null || command -v python3)
VENV   := .venv
VPY    := $(VENV)/bin/python
STAMP  := $(VENV)/.make-venv.stamp
PIP_FLAGS := --disable-pip-version-check --no-input --quiet

.PHONY: help venv pg demo test test-slow lint bench stack clean-local

help:
	@echo "make venv         create/update .venv (requirements-dev.txt pinned by constraints.txt)"
	@echo "make pg           start the local PostgreSQL servers (source 25432, target 25433, pg18 25434)"
	@echo "make demo         load the demo warehouse and run the migration DAG (scripts/demo.py)"
	@echo "make test         run the test suite (pytest -q)"
	@echo "make test-slow    run the slow tests and all 20 SIGKILL seeds (pytest -q -m 'slow or kill')"
	@echo "make lint         ruff check ., ruff format --check . and lint-imports (the import contracts)"
	@echo "make bench        run the benchmark (bench/run.py)"
	@echo "make stack        local Airflow (bin/airflow standalone, UI on :8080)"
	@echo "make clean-local  stop the local servers and delete .local/ (data, Airflow home)"

venv: $(STAMP)
	@# The glue (dags/) and the plugin (plugins/) importable in the venv, as Airflow has them: `lint-imports`
	@# (the import contracts in pyproject.toml) finds all three root packages from a plain shell.
	@printf '%s\n' "$(CURDIR)/dags" "$(CURDIR)/plugins" > "$$("$(VPY)" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/pg_migration_roots.pth"

# Re-installs only when a requirement file is newer than the stamp.
$(STAMP): requirements.txt requirements-dev.txt constraints.txt
	@if [ ! -x "$(VPY)" ]; then \
		echo "creating $(VENV) with $(PYTHON)"; \
		"$(PYTHON)" -m venv "$(VENV)"; \
	fi
	"$(VPY)" -m pip install $(PIP_FLAGS) -r requirements-dev.txt -c constraints.txt
	@touch "$@"

pg: venv
	"$(VPY)" scripts/localpg.py up --pg18

demo: venv pg
	"$(VPY)" scripts/demo.py

test: venv pg
	"$(VPY)" -m pytest -q

test-slow: venv pg
	@# the image-tree test (tests/aws/test_image_tree.py) builds with mmdebstrap (root; Debian's package)
	@command -v mmdebstrap >/dev/null 2>&1 || [ "$$(id -u)" != 0 ] || apt-get install -y -q mmdebstrap >/dev/null
	"$(VPY)" -m pytest -q -m "slow or kill"

lint: venv
	"$(VENV)/bin/ruff" check .
	"$(VENV)/bin/ruff" format --check .
	PYTHONPATH=.:dags:plugins "$(VENV)/bin/lint-imports"

bench: venv pg
	"$(VPY)" bench/run.py

stack: venv pg
	bin/airflow standalone

clean-local:
	@if [ -x "$(VPY)" ] && [ -d .local/pg ]; then "$(VPY)" scripts/localpg.py down --all; fi
	rm -rf .local
