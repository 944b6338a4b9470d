# Two commands on a fresh machine with Python 3.11+: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DEMO_DIR ?= runs/quickstart

.PHONY: demo test install clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

install: $(VENV)/.installed

## Train configs/quickstart.py on the embedded synthetic corpus, then sample from it.
demo: install
	$(BIN)/lm-jax-train --config=configs/quickstart.py --workdir=$(DEMO_DIR) --overwrite
	@echo "| a sample from the trained model:"
	$(BIN)/lm-jax-generate --workdir=$(DEMO_DIR) --words=60 --temperature=0.8

## Create the environment with test extras and run the tests, TEST_WORKERS processes at a time (pytest-xdist;
## a test file's tests stay in one process, so they share its module fixtures). The tests that compare with
## PyTorch skip without it (`.venv/bin/pip install torch` first to run them, as .ci/run does).
TEST_WORKERS ?= 2
test: install
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadfile --durations=10

clean:
	rm -rf $(VENV) runs
