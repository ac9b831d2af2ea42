# Two commands (see README.md):
#   make run    install into .venv and start the app on http://localhost:8501
#   make test   install into .venv (with dev tools) and run the whole test suite
PY := .venv/bin/python
PIP := .venv/bin/pip
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.venv/.installed: requirements.txt
	python3 -m venv .venv
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -r requirements.txt
	touch $@

.venv/.installed-dev: .venv/.installed requirements-dev.txt
	$(PIP) install -q -r requirements-dev.txt
	touch $@

.PHONY: install install-dev run test lint screenshots
install: .venv/.installed
install-dev: .venv/.installed-dev

run: install
	$(PY) -m db bootstrap
	.venv/bin/streamlit run app.py --server.headless true

test: install-dev
	.venv/bin/ruff check .
	$(PY) -m pytest -q

lint: install-dev
	.venv/bin/ruff check . && .venv/bin/ruff format --check .

# Refresh docs/screenshots/ (the README's pictures) from the browser tests.
screenshots: install-dev
	ARENA_SCREENSHOTS=1 $(PY) -m pytest -q tests/e2e/test_browser.py
