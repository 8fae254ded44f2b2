# openbell: `make demo` runs a simulated trading day, `make test` runs the tests.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
CHROMIUM := /usr/bin/chromium
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: venv demo test test-fast lint bench lock clean browser redis

venv: $(STAMP)

$(STAMP): requirements.txt pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -r requirements.txt
	$(PY) -m pip install -q --no-deps -e .
	@touch $(STAMP)

demo: $(STAMP) $(if $(findstring celery,$(ARGS)),redis)
	$(VENV)/bin/openbell demo $(ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check

# Debian's chromium for the Trading view's browser test (skipped when it cannot be installed).
browser: $(CHROMIUM)

$(CHROMIUM):
	-@command -v apt-get >/dev/null && $(SUDO) apt-get update -q \
	  && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q --no-install-recommends chromium \
	  || echo "chromium not installed: the browser test will be skipped"

# Debian's redis-server: Celery's broker for `openbell demo --executor celery` and the CeleryExecutor test.
REDIS := /usr/bin/redis-server
redis: $(REDIS)

$(REDIS):
	-@command -v apt-get >/dev/null && $(SUDO) apt-get update -q \
	  && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q --no-install-recommends redis-server \
	  || echo "redis-server not installed: the CeleryExecutor test will be skipped"

# Tests without Airflow run three at a time (they mostly wait on simulated clocks: about one core busy), the
# end-to-end tests two at a time (each a whole Airflow stack and a simulated day at up to 120x that keeps about
# half a core busy); in both, the slowest (marker `long`) first, so that the lanes end together. The end-to-end
# tests marked `alone` (the drill stage's four days at once, three accounts on Celery, Chromium, the demo's
# timed stop) then run one at a time.
test: $(STAMP) lint browser redis
	start=$$(date +%s) \
	&& $(VENV)/bin/pytest -p no:cacheprovider -m "not e2e" -n 3 $(PYTEST_ARGS) \
	&& $(VENV)/bin/pytest -p no:cacheprovider -m "e2e and not alone" -n 2 --durations=30 $(PYTEST_ARGS) \
	&& $(VENV)/bin/pytest -p no:cacheprovider -m "e2e and alone" --durations=30 $(PYTEST_ARGS) \
	&& echo "make test: every test passed in $$(( $$(date +%s) - start )) s"

test-fast: $(STAMP)
	$(VENV)/bin/pytest -p no:cacheprovider -m "not e2e" $(PYTEST_ARGS)

bench: $(STAMP)
	$(PY) -m bench $(ARGS)

lock: $(STAMP)
	@{ echo "# Pinned set, resolved together with apache-airflow 3.3.2 (Python 3.11)."; \
	   echo "# Regenerate with: make lock"; \
	   $(VENV)/bin/pip freeze --exclude-editable | grep -v '^openbell'; } > requirements.txt

clean:
	rm -rf $(VENV) .openbell
