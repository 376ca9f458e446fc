# The only commands a newcomer needs: `make run` and `make test`.
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: setup run test test-fast lint typecheck bench clean-state

setup:
	@scripts/setup

run: setup
	$(BIN)/isls up

lint: setup
	$(BIN)/ruff check .

typecheck: setup
	$(BIN)/mypy

# The unit tests alone (no server, no subprocess) on every core, a test file to a worker
# (its module fixtures built once): about half a minute on
# two, for the edit-test loop. `make test` runs everything.
test-fast: setup
	$(BIN)/python -m pytest -m unit -n auto --dist loadfile -q tests/unit

test: setup
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/lint-imports
	$(BIN)/python -m pytest

clean-state:
	rm -rf state
