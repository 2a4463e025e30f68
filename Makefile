# Two commands do all the set-up on a fresh machine:
#   make run   - install the server and start it on the bundled model (http://127.0.0.1:8080)
#   make test  - install everything (Python packages, Chromium, axe-core) and run the whole check suite
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
TFLITE_VENV := .venv-tflite
ARGS ?=

.PHONY: run test check fmt install install-run browser node-deps services tflite-env clean

$(VENV)/.run-installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[server]'
	touch $@

$(VENV)/.all-installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[server,convert,test,dev]'
	touch $(VENV)/.run-installed $@

# The tflite-runtime fallback needs numpy<2, so it gets a small environment of its own.
$(TFLITE_VENV)/.installed:
	test -x $(TFLITE_VENV)/bin/python || $(PYTHON) -m venv $(TFLITE_VENV)
	$(TFLITE_VENV)/bin/python -m pip install -q --upgrade pip
	$(TFLITE_VENV)/bin/python -m pip install -q 'numpy>=1.26,<2' 'tflite-runtime>=2.14,<3'
	touch $@

install-run: $(VENV)/.run-installed
install: $(VENV)/.all-installed $(TFLITE_VENV)/.installed browser node-deps services

browser:
	@command -v chromium >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; }

# axe-core (the page's accessibility check in tests/test_page.py), pinned in package-lock.json.
node-deps:
	@command -v npm >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm; }
	npm ci --no-audit --no-fund

# redis-server, nginx and openssl (a TLS Redis's test CA) for the multi-process tests (started
# and stopped by the tests)
services:
	@# Debian's packages start their own services on install; the tests start their own on free
	@# ports, so stop the ones the install just started (never a redis or nginx that was running).
	@command -v redis-server >/dev/null && command -v openssl >/dev/null && \
	  { command -v nginx >/dev/null || test -x /usr/sbin/nginx; } || \
	  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server nginx openssl && \
	    { service redis-server stop >/dev/null 2>&1; service nginx stop >/dev/null 2>&1; true; }; }

run: install-run
	$(PY) -m server $(ARGS)

test: install
	$(MAKE) check

check:
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy
	$(PY) -m pytest

fmt:
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

clean:
	rm -rf $(VENV) $(TFLITE_VENV) node_modules .mypy_cache .ruff_cache .pytest_cache
