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

pytest: $(STAMP)
	$(BIN)/pytest -q -m "not slow"

test: lint typecheck pytest

demo: $(STAMP)
	$(BIN)/reconciler demo

proof: $(STAMP)
	RECONCILER_PROPERTY_EXAMPLES=300 $(BIN)/pytest -q

bench: $(STAMP)
	$(BIN)/python -m benchmarks.run

# Re-pin the runtime dependencies after changing them in pyproject.toml (needs PyPI).
lock: $(STAMP)
	$(BIN)/pip install --quiet 'uv>=0.5,<1'
	$(BIN)/uv pip compile pyproject.toml --universal --python-version 3.11 --generate-hashes \
		--custom-compile-command "make lock" --output-file requirements.lock

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
