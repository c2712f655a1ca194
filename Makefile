# `make run` and `make test` work on a fresh machine: each creates .venv and installs the pinned
# requirements first (again only when a requirements file changes).
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PORT ?= 5000
SANDBOX_PORT ?= 8700

.PHONY: run test conformance browser lint format bench clean

$(STAMP): requirements.txt requirements-dev.txt
	test -x $(BIN)/python || python3 -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements.txt -r requirements-dev.txt
	touch $(STAMP)

# The whole service with the local Pluggy stand-in, on a new SQLite database of its own each run
# (instance/demo): the web service, the worker and the stand-in together, a demo user and item.
# Ctrl-C stops them all. `exec` so the demo itself is make's child: a SIGTERM make passes on, or one
# sent to that child, reaches the process that stops the others.
run: $(STAMP)
	PORT=$(PORT) SANDBOX_PORT=$(SANDBOX_PORT) exec $(BIN)/python -m sandbox.demo

# The whole suite; set TEST_DATABASE_URL to run it against PostgreSQL instead of SQLite.
test: $(STAMP)
	$(BIN)/python -m pytest

# The stand-in driven with Pluggy's official SDKs (conformance/): the Python SDK into .venv, the
# Node one with `npm ci` (each again only when its pins change), then both suites. Node.js and npm
# are required: without them, or when an install fails, the target fails.
CONFORMANCE_STAMP := $(VENV)/.conformance-installed
NODE_DIR := conformance/node
NODE_STAMP := $(NODE_DIR)/node_modules/.installed

$(CONFORMANCE_STAMP): $(STAMP) conformance/requirements.txt
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements.txt -r conformance/requirements.txt
	touch $(CONFORMANCE_STAMP)

$(NODE_STAMP): $(NODE_DIR)/package.json $(NODE_DIR)/package-lock.json
	@command -v node >/dev/null && command -v npm >/dev/null || { echo "make conformance: Node.js and npm are required" >&2; exit 1; }
	cd $(NODE_DIR) && npm ci --no-audit --no-fund
	touch $(NODE_STAMP)

conformance: $(CONFORMANCE_STAMP) $(NODE_STAMP)
	$(BIN)/python -m pytest conformance --tb=short

# The operator console in a real browser (browser/): Debian's chromium, headless, driven by Selenium
# through Debian's chromedriver (`apt-get install chromium chromium-driver`), over the real
# processes and the stand-in. Without them the suite fails, never skips. Writes the README's
# screenshot of the overview (docs/console-overview.png, or CONSOLE_SCREENSHOT=path).
browser: $(STAMP)
	$(BIN)/python -m pytest browser --tb=short

# Ruff (lint, import order, format check), mypy over the service's packages and import-linter's
# layer contracts (setup.cfg); `make format` rewrites.
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# Benchmarks (BENCHMARKS.md): SQLite, or BENCH_DATABASE_URL=postgresql+psycopg://... (a database of
# their own: they empty its tables). Prints a table; JSON in bench/results/.
bench: $(STAMP)
	$(BIN)/python -m bench $(if $(BENCH_DATABASE_URL),--database-url $(BENCH_DATABASE_URL))

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .mypy_cache
