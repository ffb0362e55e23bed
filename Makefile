# The two commands of the README: `make demo` and `make test`. Both make .venv first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test lint bench clean browser

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(VENV)/.installed $@

demo: $(VENV)/.installed
	$(BIN)/synth demo --workdir demo

# Debian's chromium, for the browser tests (installed with apt-get when missing).
browser:
	bash .ci/ensure-browser

test: $(VENV)/.installed-dev browser
	$(BIN)/python -m pytest

# mypy: strict on synth/ (pyproject.toml); on the tests, only what they annotate.
MYPY_TESTS := --allow-untyped-defs --allow-untyped-calls --allow-incomplete-defs \
	--allow-any-generics --no-check-untyped-defs --no-warn-return-any --no-strict-equality \
	--disable-error-code annotation-unchecked

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/mypy tests $(MYPY_TESTS)

clean:
	rm -rf $(VENV) demo .pytest_cache
