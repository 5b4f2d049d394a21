# The two commands of the README:  make demo  (install + start on embedded defaults)
#                                  make test  (install + lint + the whole test suite)
VENV ?= .venv
BIN := $(VENV)/bin
PYTHON ?= python3

.PHONY: demo test lint bench install

$(BIN)/callcenter: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

install: $(BIN)/callcenter

demo: install
	$(BIN)/callcenter demo

lint: install
	$(BIN)/ruff check .
	$(BIN)/mypy

test: lint
	$(BIN)/pytest

bench: install
	$(BIN)/python -m bench.ami_ingest
	$(BIN)/python -m bench.ami_ingest --scale
