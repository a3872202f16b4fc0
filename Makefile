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
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[sklearn,pytorch,tensorflow,redis,dev]'
	touch $(STAMP)

run: install
	$(BIN)/aijobs up

lint: install
	$(BIN)/ruff check src tests bench scripts
	$(BIN)/ruff format --check src tests bench scripts
	$(BIN)/mypy

test: lint
	$(BIN)/pytest -n 2 --dist loadgroup --cov --cov-report=term --durations=30
	@if command -v node >/dev/null 2>&1 && node -e 'process.exit(Number(process.versions.node.split(".")[0] < 18))'; then \
		cd clients/js && node --test; \
	else \
		echo "make test: Node.js >= 18 not found: skipping the JavaScript SDK tests (clients/js)"; \
	fi

unit: install
	$(BIN)/pytest tests/unit tests/contract

# bench_peers.py (the other Python queues, ~6 minutes; it runs bench_rtt_floor.py too) is not
# here: it builds the peers' virtual environments from PyPI and rewrites bench/results.
bench: install
	$(BIN)/python bench/bench_api.py
	$(BIN)/python bench/bench_list.py
	$(BIN)/python bench/bench_torch.py
	$(BIN)/python bench/bench_keras.py
	$(BIN)/python bench/bench_redis.py
	$(BIN)/python bench/soak.py --store sqlite
	$(BIN)/python bench/soak.py --store redis

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache .hypothesis .coverage .coverage.* htmlcov
