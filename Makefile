# Two commands do everything on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: install run test lint bench chromium wrk clean

# One stamp per set of extras, redone when pyproject.toml changes: a venv that `make run`
# made (the runtime only) still gets the test extras on `make test`.
$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed-runtime: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	touch $@

# .installed-test or .installed-bench (the test extra includes bench: its smoke runs are tests).
$(VENV)/.installed-%: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[$*]'
	touch $@

# A developer's venv: everything the tests and benchmarks use.
install: $(VENV)/.installed-test

run: $(VENV)/.installed-runtime
	$(BIN)/chat db upgrade
	$(BIN)/chat serve

# The browser tests drive Debian's Chromium (never a downloaded build).
chromium:
	@test -x /usr/bin/chromium || { apt-get update && apt-get install -y chromium; }

# `chat bench http` loads the server with Debian's wrk.
wrk:
	@command -v wrk >/dev/null || { apt-get update && apt-get install -y wrk; }

lint: $(VENV)/.installed-test
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# Two workers: most tests wait on a server, Chromium or the network, not on a core.
# worksteal evens out the long tests (chaos, benchmarks' smoke runs, browser journeys).
# Then a representative subset again on the plain paths (CHAT_FAST_PATHS=0): posting,
# pages, history and streams without the hot statements, the HTML cache or our own
# stream serving (docs/testing.md). tests/test_fast_paths.py compares the two in the
# first run.
PLAIN_PATHS_TESTS := tests/test_messages.py tests/test_streams.py tests/test_replies.py \
	tests/test_unread.py tests/test_html_cache.py tests/test_hot_statements.py
test: lint chromium wrk
	$(BIN)/pytest -n 2 --dist worksteal
	CHAT_FAST_PATHS=0 $(BIN)/pytest -n 2 --dist worksteal $(PLAIN_PATHS_TESTS)

# Ready to run `chat bench SCENARIO` (docs/performance.md).
bench: $(VENV)/.installed-bench wrk
	@$(BIN)/chat bench --help | head -n 3

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache .ruff_cache
