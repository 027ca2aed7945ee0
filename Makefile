# Two commands do everything on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: install run test lint chromium clean

install: $(STAMP)

# Re-installs only when pyproject.toml changes; `pip install -e` is idempotent anyway.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test,bench]'
	touch $(STAMP)

run: install
	$(BIN)/chat db upgrade
	$(BIN)/chat serve

# The browser tests drive Debian's Chromium (never a downloaded build).
chromium:
	@test -x /usr/bin/chromium || { apt-get update && apt-get install -y chromium; }

# Two workers: most tests wait on a server, Chromium or the network, not on a core.
# worksteal evens out the long tests (chaos, benchmarks' smoke runs, browser journeys).
test: install chromium
	$(BIN)/pytest -n 2 --dist worksteal

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check chat tests

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache .ruff_cache
