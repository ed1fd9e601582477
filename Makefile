# Two entry points for a fresh machine: `make demo` and `make test`.
# Both use .venv; `demo` installs what running needs, `test` adds the test tools.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
RUNTIME := $(VENV)/.installed-runtime
TESTDEPS := $(VENV)/.installed-test

.PHONY: demo test lint clean venv chromium

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

# The browser tests drive the system's Chromium (Debian package `chromium`).
chromium:
	@command -v chromium >/dev/null 2>&1 || { \
	  command -v apt-get >/dev/null 2>&1 || { echo "the browser tests need Chromium: install the package chromium"; exit 2; }; \
	  sudo=""; [ "$$(id -u)" = 0 ] || sudo="sudo"; \
	  echo "installing chromium (apt-get) for the browser tests"; \
	  $$sudo apt-get update -qq && $$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null \
	  || { echo "could not install chromium: run apt-get install chromium"; exit 2; }; }

test: $(TESTDEPS) chromium
	$(BIN)/ruff check backend simulator tests
	$(BIN)/python -m pytest -q

lint: $(TESTDEPS)
	$(BIN)/ruff check backend simulator tests

clean:
	rm -rf $(VENV) runs .pytest_cache
