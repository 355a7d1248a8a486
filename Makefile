# Two entry points: `make demo` (set up, train on the demo corpus, print completions) and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
CLLM := $(VENV)/bin/cllm
DEMO_MODEL := training_data/demo.cllm

.PHONY: setup demo test bench

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $@

setup: $(VENV)/.installed

demo: setup
	$(PY) training_data/fetch_demo.py
	$(CLLM) train training_data/brotli --out $(DEMO_MODEL) --time-budget 480
	$(PY) training_data/show_completions.py $(DEMO_MODEL)

test: setup
	$(VENV)/bin/pytest -q

bench: setup
	$(PY) benchmarks/train_throughput.py
	$(PY) benchmarks/completion_latency.py
