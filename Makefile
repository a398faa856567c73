# The two commands a new user needs: `make run` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Test processes in parallel (pytest-xdist; `worksteal` evens out the long tests at the
# end); every test has its own database and ports. `--durations` prints the slowest.
JOBS ?= 3

.PHONY: run test lint typecheck check install clean bytecode bridge-check screenshots

# The Node.js bridge of Baileys and whatsapp-web.js (docs/bridge.md): its own pinned
# dependencies, with the linter; no browser download (the tests drive Debian's chromium).
BRIDGE := src/openwa/engines/bridge/node

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# uv resolves and installs the same versions as pip in about a quarter of the time
# (measured on a 2-core machine with empty caches: 42 s against 166 s), which CI pays on
# every clean clone. It writes no bytecode unless asked, and where PYTHONDONTWRITEBYTECODE
# is set (as on our CI machines) Python never writes it either: every process would then
# compile every module it imports, 6 s for the server instead of 3 (the tests start
# servers and engine workers by the hundred). So bytecode is compiled once, here.
$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/pip install --quiet uv
	$(BIN)/uv pip install --quiet --compile-bytecode --python $(BIN)/python -e ".[dev]"
	touch $(STAMP)

# Our own sources' bytecode (an editable install leaves them out); only what changed
# is compiled again.
bytecode: $(STAMP)
	$(BIN)/python -m compileall -q src tests benchmarks

install: $(STAMP)

## Serve on embedded defaults: SQLite under ./data, local files, in-memory cache, mock engine.
run: $(STAMP) bytecode
	$(BIN)/openwa serve

## Lint, type-check and run every test (SQLite and PostgreSQL), the bridge's too.
test: $(STAMP) bytecode lint typecheck bridge-check
	$(BIN)/python -m pytest -n $(JOBS) --dist worksteal --durations=25

## A PNG of each dashboard page into docs/dashboard/ (mock engine, temporary data; needs
## Debian's chromium). Not part of `make test`: the tree stays clean.
screenshots: $(STAMP) bytecode
	$(BIN)/python -m tests.dashboard.screenshots docs/dashboard

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

$(BRIDGE)/node_modules/.installed: $(BRIDGE)/package-lock.json
	cd $(BRIDGE) && PUPPETEER_SKIP_DOWNLOAD=1 npm ci --no-audit --no-fund --no-progress
	touch $@

bridge-check: $(BRIDGE)/node_modules/.installed
	cd $(BRIDGE) && npx eslint . && npm test

typecheck: $(STAMP)
	$(BIN)/mypy

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
