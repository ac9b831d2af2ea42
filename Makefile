# Two commands (see README.md):
#   make run        install requirements.lock into .venv and start the app on port 8501 (or the
#                   next free one; PORT=N to choose); the printed link carries that port
#   make test       system packages (apt as root), install requirements-dev.lock, a throwaway
#                   PostgreSQL, ruff and the whole test suite
# While editing:
#   make test-fast  the tests that need no browser, no PostgreSQL, no root and are not marked
#                   slow, on one pytest-xdist worker per core (target: under 90 s on an idle
#                   2-core machine; measured figures in bench/RESULTS.md)
#   make lock       refresh requirements.lock / requirements-dev.lock from the *.in files
PY := .venv/bin/python
PIP := .venv/bin/pip
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
LOCK_FLAGS := -q --strip-extras --no-emit-find-links --no-emit-index-url --no-emit-trusted-host
PYTEST_ARGS ?=  # e.g. make test PYTEST_ARGS=tests/db
FAST := not e2e and not postgres and not root and not slow

# torch first, pinned: a bare torch would pull a multi-GB CUDA build where the CPU one is wanted
.venv/.installed: requirements.lock
	[ -x $(PY) ] || python3 -m venv .venv
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -r requirements.lock
	touch $@

.venv/.installed-dev: .venv/.installed requirements-dev.lock
	$(PIP) install -q -r requirements-dev.lock
	touch $@

.PHONY: install install-dev run test test-fast lint lock screenshots
install: .venv/.installed
install-dev: .venv/.installed-dev

run: install
	PY=$(PY) bash scripts/run.sh

# ARENA_TEST_STRICT: the suite stops at once if PostgreSQL or Chromium is missing (no skips)
test:
	bash scripts/check-system.sh
	$(MAKE) --no-print-directory install-dev
	.venv/bin/ruff check .
	ARENA_TEST_STRICT=1 bash tests/db/start_postgres.sh --run $(PY) -m pytest -q $(PYTEST_ARGS)

test-fast: install-dev
	$(PY) -m pytest -q -n auto --dist loadfile -m "$(FAST)" $(PYTEST_ARGS)

lint: install-dev
	.venv/bin/ruff check . && .venv/bin/ruff format --check .

# The lock keeps the pins already in it where they still fit (delete it to take the newest).
# torch is recorded as the plain pin: the CPU wheel's local tag (+cpu) is not on PyPI.
lock: install-dev
	CUSTOM_COMPILE_COMMAND="make lock" .venv/bin/pip-compile $(LOCK_FLAGS) requirements.in -o requirements.lock
	CUSTOM_COMPILE_COMMAND="make lock" .venv/bin/pip-compile $(LOCK_FLAGS) requirements-dev.in -o requirements-dev.lock
	sed -i 's/^torch==\([0-9.]*\)+[a-z0-9]*$$/torch==\1/' requirements.lock requirements-dev.lock

# Refresh docs/screenshots/ (the README's pictures): the photo demo in Chromium.
screenshots: install-dev
	$(PY) scripts/screenshots.py
