# digest: `make run` sets up and serves the demo; `make test` runs the whole suite.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
HOST   ?= 127.0.0.1
PORT   ?= 5000

.PHONY: run test bench lint install install-test clean prod-demo

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(VENV)/.installed $@

install: $(VENV)/.installed
install-test: $(VENV)/.installed-test

run: install
	$(BIN)/digest init
	$(BIN)/digest ingest
	$(BIN)/digest build
	$(BIN)/digest serve --host $(HOST) --port $(PORT)

# The production layout on this machine: PostgreSQL + Redis on loopback, gunicorn,
# two `digest worker`, one `digest scheduler` (see docs/deployment.md). Ctrl+C stops it.
prod-demo: install
	bash deploy/prod-demo.sh

test: install-test
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# The delivery benchmark compares against Postfix's smtp-source/smtp-sink (Debian's postfix).
bench: install-test
	@command -v smtp-sink >/dev/null 2>&1 || [ "$$(id -u)" != 0 ] || \
	  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postfix >/dev/null; }
	$(BIN)/python -m bench

lint: install-test
	$(BIN)/ruff check digest tests bench config.py
	$(BIN)/ruff format --check digest tests bench config.py
	$(BIN)/mypy digest

clean:
	rm -rf $(VENV) instance/digest.db instance/outbox
