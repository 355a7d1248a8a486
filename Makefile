# Two entry points: `make demo` (set up, compile the kernels, train on the demo corpus, print completions) and
# `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
CLLM := $(VENV)/bin/cllm
DEMO_MODEL := training_data/demo.cllm

.PHONY: setup setup-test demo test bench vscode base

# `setup` installs cllm alone (what the demo and the benchmarks run); `setup-test` adds the test extra (pytest,
# the LSP and HTTP clients, playwright: most of the virtual environment's size).
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e .
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed
	$(PY) -m pip install -q -e '.[test]'
	touch $@

setup: $(VENV)/.installed

setup-test: $(VENV)/.installed-test

demo: setup
	$(PY) training_data/fetch_demo.py
	$(CLLM) warmup
	$(CLLM) train training_data/brotli --out $(DEMO_MODEL) --time-budget 480
	$(PY) training_data/show_completions.py $(DEMO_MODEL)

test: setup-test vscode
	$(VENV)/bin/pytest -q

# The VS Code extension: install its pinned npm packages, type-check, unit-test and package dist/cllm.vsix with
# the project's wheel in it (bundled/, the server the extension installs for itself; its version is package.json's).
# Without npm it is skipped (and its end-to-end test with it), unless CLLM_REQUIRE_E2E=1 as in CI.
EXT := vscode-extension
$(EXT)/node_modules/.installed: $(EXT)/package-lock.json
	cd $(EXT) && npm ci --no-audit --no-fund --loglevel=error
	touch $@

vscode: setup
	@if command -v npm >/dev/null; then $(MAKE) --no-print-directory $(EXT)/node_modules/.installed \
		&& rm -rf $(EXT)/bundled && $(PY) -m pip wheel -q --no-deps . -w $(EXT)/bundled \
		&& cd $(EXT) && npm test && npm run --silent package; \
	elif [ "$$CLLM_REQUIRE_E2E" = 1 ]; then echo "npm is required to build the VS Code extension" >&2; exit 1; \
	else echo "npm not found: skipping the VS Code extension"; fi

# Every benchmark in benchmarks/, each printing its table (quality.py trains for 600 s; the whole run takes a while).
bench: setup-test
	$(PY) training_data/fetch_demo.py
	@for bench in benchmarks/*.py; do echo "== $$bench"; $(PY) $$bench || exit 1; done

# The base model shipped in the package (engine/train/shipped/): fetch the pinned corpus, pretrain, export
# (training_data/build_base.py; about 2 hours on 2 cores with its default budgets).
base: setup
	PATH=$(VENV)/bin:$$PATH $(PY) training_data/build_base.py
