# The two commands that set everything up on a fresh machine:
#   make run    - create .venv, install ltbench, get Fashion-MNIST, run the quick suite, print the leaderboard
#   make test   - the same setup, then the test suite
#   make test-unit - only the fast tests (not marked `integration`), in seconds
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
SUITE  ?= quick
# pytest worker processes for `make test`: most of the suite's time is integration tests waiting on Ray's
# start-up, sleeps and leases, so two workers overlap that waiting even on two cores (measured on fresh
# clones here: 9 min 46 s with two, 14 min 37 s with one). TEST_WORKERS=0 runs every test in one process.
TEST_WORKERS ?= 2

.PHONY: run test test-unit lint data install clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP)

data: install
	$(BIN)/ltbench data fetch fashion-mnist-lt

run: data
	$(BIN)/ltbench run $(SUITE)

test: data
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist worksteal

test-unit: install
	$(BIN)/python -m pytest -q -m "not integration"

lint: install
	$(BIN)/ruff check harness methods tests notebooks
	$(BIN)/ruff format --check harness methods tests notebooks

clean:
	rm -rf $(VENV) results/mlflow.db results/mlartifacts
