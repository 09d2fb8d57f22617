# Trunkline: `make run` starts the switch, `make test` runs the whole suite.
# Both set up everything they need on a fresh Debian 12 with Python 3.11.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
APT_PACKAGES := sip-tester postgresql

.PHONY: run test install install-dev system-deps lint typecheck importlint pytest bench clean

# Debian ships venv separately (python3-venv): install it when the first attempt fails.
$(BIN)/python:
	$(PYTHON) -m venv $(VENV) || { rm -rf $(VENV); $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq python3-venv && $(PYTHON) -m venv $(VENV); }
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(VENV)/.installed $@

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

## Start the switch: SQLite under var/, SIP on UDP+TCP 5060 and 6060, admin API on 127.0.0.1:8080.
run: install
	mkdir -p var
	$(BIN)/trunkline run $(if $(CONFIG),--config $(CONFIG))

## System packages the tests drive: SIPp and PostgreSQL (installed only when missing).
system-deps:
	@missing=""; \
	command -v sipp >/dev/null 2>&1 || missing="$$missing sip-tester"; \
	ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing="$$missing postgresql"; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing; \
	fi

lint: install-dev
	$(BIN)/ruff check .

typecheck: install-dev
	$(BIN)/mypy

importlint: install-dev
	$(BIN)/lint-imports

## pytest exits 5 when it collects nothing: that is not a failure of the suite.
pytest: install-dev system-deps
	$(BIN)/pytest -q $(PYTEST_ARGS); rc=$$?; if [ $$rc -eq 5 ]; then echo "pytest: no tests collected"; rc=0; fi; exit $$rc

test: system-deps install-dev lint typecheck importlint pytest

## The switch against sippy and Kamailio in one run (~25 min); figures go in docs/benchmarks.md.
bench: install-dev system-deps
	@command -v kamailio >/dev/null 2>&1 || { $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq kamailio; }
	$(BIN)/python -m benchmarks.bench_switch

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
