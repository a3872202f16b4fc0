# aijobs: `make run` starts the system, `make test` runs every check. Both install first if needed.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install run test lint unit bench clean

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[sklearn,dev]'
	touch $(STAMP)

run: install
	$(BIN)/aijobs up

lint: install
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy

test: lint
	$(BIN)/pytest

unit: install
	$(BIN)/pytest tests/unit tests/contract

bench: install
	$(BIN)/python bench/bench_api.py
	$(BIN)/python bench/bench_list.py

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
