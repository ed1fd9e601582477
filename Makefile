# Two entry points for a fresh machine: `make demo` and `make test`.
# Both use .venv; `demo` installs what running needs, `test` adds the test tools.
# The newest python3.x on the PATH that runs and is 3.11 to 3.13 (then plain python3, if it is
# one of them; a version manager's shim for a version it does not provide does not count).
# `make PYTHON=...` chooses.
SUPPORTED := python3.13 python3.12 python3.11 python3
IS_SUPPORTED := -c 'import sys; sys.exit(not (3, 11) <= sys.version_info[:2] <= (3, 13))'
ifndef PYTHON
PYTHON := $(shell for p in $(SUPPORTED); do $$p $(IS_SUPPORTED) 2>/dev/null && { command -v $$p; break; }; done)
endif
VENV := .venv
BIN := $(VENV)/bin
RUNTIME := $(VENV)/.installed-runtime
TESTDEPS := $(VENV)/.installed-test

.PHONY: demo test lint clean venv chromium wheel-check

$(BIN)/python:
	@test -n "$(PYTHON)" || { echo "need Python 3.11, 3.12 or 3.13: none of $(SUPPORTED) on the PATH is one (or run: make PYTHON=/path/to/python3.x ...)"; exit 2; }
	@$(PYTHON) $(IS_SUPPORTED) 2>/dev/null || { echo "need Python 3.11, 3.12 or 3.13; $(PYTHON) is not one (run: make PYTHON=python3.13 ...)"; exit 2; }
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

# The wheel, installed into a fresh venv outside the checkout, plays a bundled scenario by
# name from an empty folder: the package data and the entry points are really in it.
wheel-check: | $(BIN)/python
	sh .ci/wheel-check "$(PYTHON)"

# mypy reads its scope (contract/, backend/ and simulator/, strict) from pyproject.toml.
test: $(TESTDEPS) chromium
	$(BIN)/ruff check backend contract simulator tests
	$(BIN)/mypy
	$(BIN)/python -m pytest -q

lint: $(TESTDEPS)
	$(BIN)/ruff check backend contract simulator tests
	$(BIN)/mypy

clean:
	rm -rf $(VENV) runs .pytest_cache
