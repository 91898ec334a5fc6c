# `make demo` and `make test` work on a fresh clone: they create .venv on first use.
VENV ?= .venv
BIN := $(VENV)/bin
PYTHON ?= python3
# `make demo PORT=8010` serves the demo on another port (the mail sink keeps 1025 unless SMTP_PORT=…).
PORT ?= 8000
SMTP_PORT ?= 1025
STAMP := $(VENV)/.installed
# The suite runs on this many workers (each with its own databases); `make test WORKERS=1` runs
# it in one process.
WORKERS ?= 2

.PHONY: demo test lint check bench venv clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	@touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(BIN)/lifeline demo --port $(PORT) --smtp-port $(SMTP_PORT)

# Coverage of src/lifeline, including the `lifeline serve`, worker and MCP processes the tests
# start; below the floor in pyproject.toml ([tool.coverage.report] fail_under) the run fails.
test: $(STAMP)
	$(BIN)/pytest -n $(WORKERS) --cov --cov-report=term

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

check: lint test

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache lifeline.db* .demo-mail .artifacts .coverage .coverage.*
