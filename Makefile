# mdco-onboarding — everything runs from a venv built from pyproject.toml (only python3 needed).
VENV ?= .venv
PYTHON ?= $(shell command -v python3.11 2>/dev/null || command -v python3)
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo test up down clean distclean

install: $(STAMP)

$(BIN)/python:
	@test -n "$(PYTHON)" || { echo "python3 not found: install Python 3.11+" >&2; exit 1; }
	$(PYTHON) -m venv $(VENV)

# Redone when pyproject.toml changes (the stamp is older), not on every run.
$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -e '.[test]'
	touch $@

demo: install
	$(BIN)/mdco demo

test: install
	$(BIN)/python -m pytest -q -p no:cacheprovider

up: install
	$(BIN)/mdco up

down:
	@if [ -x $(BIN)/mdco ]; then $(BIN)/mdco down; fi

clean: down
	rm -rf var build *.egg-info .pytest_cache .hypothesis
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV)
