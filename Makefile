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

# The unit tests on every core (a minute of work in half of one), then the integration
# tests one at a time: they start servers and time faults, and share the two cores with
# them. Both must pass.
test: setup
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/lint-imports
	$(BIN)/python -m pytest -m unit -n auto --dist loadfile tests/unit
	$(BIN)/python -m pytest -m integration tests/integration

clean-state:
	rm -rf state
