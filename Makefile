# Two entry points for a fresh machine: `make demo` and `make test`.
# Both use .venv; `demo` installs what running needs, `test` adds the test tools.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
RUNTIME := $(VENV)/.installed-runtime
TESTDEPS := $(VENV)/.installed-test

.PHONY: demo test lint clean venv

$(BIN)/python:
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "need $(PYTHON) (Python 3.11) on PATH, or run: make PYTHON=python3 ..."; exit 2; }
	$(PYTHON) -m venv $(VENV)

$(RUNTIME): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet --disable-pip-version-check -e .
	@touch $@

$(TESTDEPS): pyproject.toml $(RUNTIME)
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[test]'
	@touch $@

venv: $(TESTDEPS)

demo: $(RUNTIME)
	$(BIN)/overheard run fixtures/scenarios/alexa-2018-misdelivery.toml --out runs/alexa-2018-misdelivery --demo

test: $(TESTDEPS)
	$(BIN)/ruff check backend simulator tests
	$(BIN)/python -m pytest -q

lint: $(TESTDEPS)
	$(BIN)/ruff check backend simulator tests

clean:
	rm -rf $(VENV) runs .pytest_cache
