# callcenter: developer commands. `make setup` once, then `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin

.PHONY: setup test lint bench bench-smoke demo clean

setup: $(BIN)/callcenter
	@scripts/system-deps

$(BIN)/callcenter: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	@touch $@

test: setup
	$(BIN)/pytest -q

lint: setup
	$(BIN)/ruff check callcenter tests bench
	$(BIN)/mypy

# Full-size benchmarks (minutes each); figures and how to read them: docs/performance.md.
bench: setup
	@for b in bench/*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

# The small sizes the test suite runs, so no benchmark rots.
bench-smoke: setup
	$(BIN)/pytest -q tests/integration/test_bench_smoke.py

# The whole product against a simulated Asterisk: embedded PostgreSQL, demo CRM, example rules.
demo: setup
	$(BIN)/callcenter demo

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
