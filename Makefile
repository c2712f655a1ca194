# `make run` and `make test` work on a fresh machine: each creates .venv and installs the pinned
# requirements first (again only when a requirements file changes).
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
HOST ?= 127.0.0.1
PORT ?= 5000

.PHONY: run test clean

$(STAMP): requirements.txt requirements-dev.txt
	test -x $(BIN)/python || python3 -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements.txt -r requirements-dev.txt
	touch $(STAMP)

# The service on SQLite in the instance folder, in debug mode (a SECRET_KEY is generated there).
run: $(STAMP)
	FLASK_DEBUG=1 $(BIN)/flask db upgrade
	FLASK_DEBUG=1 $(BIN)/flask run --host $(HOST) --port $(PORT)

# The whole suite; set TEST_DATABASE_URL to run it against PostgreSQL instead of SQLite.
test: $(STAMP)
	$(BIN)/python -m pytest

clean:
	rm -rf $(VENV) .pytest_cache
