# Two entry points for a fresh machine: `make demo` and `make test` (both set up .venv first).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
export HF_HUB_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: setup demo test test-all clean

setup: $(VENV)/.installed

# torch first, pinned: the CPU build lies on local disk here; an unpinned torch pulls a multi-GB CUDA build.
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[test]'
	touch $@

demo: setup
	$(PY) mllm/pipeline/finetune.py config/demo/shapes_rec_tiny_llava.py

test: setup
	$(PY) -m pytest -q tests

clean:
	rm -rf exp .pytest_cache
