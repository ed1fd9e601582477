# Two entry points for a fresh machine: `make demo` and `make test`.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint clean venv

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "need $(PYTHON) (Python 3.11) on PATH, or run: make PYTHON=python3 ..."; exit 2; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	@touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(BIN)/overheard run fixtures/scenarios/alexa-2018-misdelivery.toml --out runs/alexa-2018-misdelivery --demo

test: $(STAMP)
	$(BIN)/ruff check backend simulator tests
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check backend simulator tests

clean:
	rm -rf $(VENV) runs .pytest_cache
