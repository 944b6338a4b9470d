# Two commands on a fresh machine with Python 3.11+: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DEMO_DIR ?= runs/quickstart
GPU_WHEELS ?= gpu-wheels

.PHONY: demo test install clean gpu-wheels

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --no-compile -e '.[test]'
	touch $@

install: $(VENV)/.installed

## Train configs/quickstart.py on the embedded synthetic corpus, then sample from it.
demo: install
	$(BIN)/lm-jax-train --config=configs/quickstart.py --workdir=$(DEMO_DIR) --overwrite
	@echo "| a sample from the trained model:"
	$(BIN)/lm-jax-generate --workdir=$(DEMO_DIR) --words=60 --temperature=0.8

## Create the environment with test extras and run the tests (pyproject.toml: tests/ and the benchmarks' own),
## TEST_WORKERS processes at a time (pytest-xdist; a test file's tests stay in one process, so they share its
## module fixtures). The tests that compare with PyTorch skip without it (`.venv/bin/pip install torch` first to
## run them, as .ci/run does).
## PYTHONDONTWRITEBYTECODE is emptied for the run: the suite starts about 140 Python processes, and where the
## environment sets it (this project's machines do), each would compile jax's and torch's sources again (a fresh
## clone's suite: 749 s; with the bytecode that each first import writes: 594 s).
TEST_WORKERS ?= 2
test: install
	PYTHONDONTWRITEBYTECODE= $(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadfile --durations=25

## The wheels the GPU machine's image lacks (Python 3.12, no network there), for benchmarks/gpu/check.sh to carry:
## lm_jax's dependencies not in that image, pure Python, their own needs all in it (benchmarks/README.md).
gpu-wheels: | $(BIN)/python
	rm -rf $(GPU_WHEELS)
	$(BIN)/python -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
	  --platform manylinux_2_17_x86_64 --dest $(GPU_WHEELS) ml-collections==1.1.0 tensorboardX==2.6.5
	du -sh $(GPU_WHEELS)

clean:
	rm -rf $(VENV) runs
