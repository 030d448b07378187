# One entry point for people and CI: a local run and a CI run are the same run.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: venv test lint typecheck pytest demo proof bench lock clean

# Runtime dependencies exactly as the lock pins them (hash-checked, as on a server), then the package
# itself editable with its test tools.
$(STAMP): pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet --require-hashes -r requirements.lock
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

venv: $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check reconciler tests $(wildcard benchmarks)
	$(BIN)/ruff format --check reconciler tests $(wildcard benchmarks)

typecheck: $(STAMP)
	$(BIN)/mypy

# One pytest-xdist worker per core (PYTEST_WORKERS=0 runs in-process, e.g. to use a debugger);
# worksteal keeps both cores busy when the long end-to-end tests land on one worker.
PYTEST_WORKERS ?= auto
XDIST := -n $(PYTEST_WORKERS) --dist worksteal

pytest: $(STAMP)
	$(BIN)/pytest -q -m "not slow" $(XDIST)

test: lint typecheck pytest

demo: $(STAMP)
	$(BIN)/reconciler demo

# Everything, slow tests included; the model-based runs with 20 seeds of 30 steps, each seed printed
# (replay one with RECONCILER_MODEL_SEEDS=N RECONCILER_MODEL_STEPS=30 .venv/bin/pytest tests/test_random_runs.py).
proof: $(STAMP)
	RECONCILER_PROPERTY_EXAMPLES=300 $(BIN)/pytest -q $(XDIST) --deselect tests/test_random_runs.py
	RECONCILER_MODEL_RUNS=20 RECONCILER_MODEL_STEPS=30 $(BIN)/pytest -v tests/test_random_runs.py

bench: $(STAMP)
	$(BIN)/python -m benchmarks.run

# Re-pin the runtime dependencies after changing them in pyproject.toml (needs PyPI).
lock: $(STAMP)
	$(BIN)/pip install --quiet 'uv>=0.5,<1'
	$(BIN)/uv pip compile pyproject.toml --universal --python-version 3.11 --generate-hashes \
		--custom-compile-command "make lock" --output-file requirements.lock

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
