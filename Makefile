# Two commands on a fresh machine: `make run` and `make test`.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# kiteconnect 5.2.2 pins autobahn==19.11.2, which daphne 4.2 cannot use, so it is
# installed without its dependencies; requirements.txt explains and lists its real needs.
KITECONNECT := kiteconnect==5.2.2
WEB_HOST ?= 127.0.0.1
WEB_PORT ?= 8000

.PHONY: install run test bench lint format clean

install: $(STAMP) .env

# A development checkout runs in DEBUG with generated secrets (see trading_site/settings.py).
# Never overwritten; on a server, put real settings here or in the environment instead.
.env:
	@printf '# Local settings for this checkout (git-ignored). See .env.example for every variable.\nDEBUG=1\n' > .env

$(STAMP): requirements.txt Makefile
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt
	$(BIN)/python -m pip install --quiet --no-deps $(KITECONNECT)
	@touch $(STAMP)

# The demo desk on its defaults: SQLite in var/, Redis on localhost, DEBUG on.
run: export DEBUG ?= 1
run: export WEB_HOST := $(WEB_HOST)
run: export WEB_PORT := $(WEB_PORT)
run: install
	@$(BIN)/python -m trading_site.preflight
	$(BIN)/python manage.py migrate --noinput
	$(BIN)/python manage.py load_demo
	@echo
	@echo "  Options desk: http://$(WEB_HOST):$(WEB_PORT)/   (admin: /admin/)"
	@echo "  Log in as demo / demo. Ctrl-C stops every process."
	@echo
	$(BIN)/honcho start -f Procfile

# The browser tests drive Debian's Chromium: installed here when missing and this is root with
# apt-get; otherwise this stops with the command to run (tests/browser/chromium.py).
test: install
	@$(BIN)/python -m tests.browser.chromium
	$(BIN)/python -m pytest

bench: install
	$(BIN)/python -m tests.benchmarks

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

clean:
	rm -rf $(VENV) staticfiles .pytest_cache .ruff_cache
