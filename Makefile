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
# tests on two workers, a test file to a worker: most of their time is spent waiting on
# servers and on the faults they time (a soak of 60 s, an InfluxDB down for 30 s), so two
# at a time take 4.3 minutes where one at a time took 7.8 on two cores. Each file starts
# its own servers on free ports with its own data directories, so the two never meet.
# Both must pass.
test: setup
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/lint-imports
	$(BIN)/python -m pytest -m unit -n auto --dist loadfile tests/unit
	$(BIN)/python -m pytest -m integration -n 2 --dist loadfile tests/integration

clean-state:
	rm -rf state
