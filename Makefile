# Two commands matter: `make demo` (set up, run the demo mesh) and `make test` (set up, pass the tests).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test lint bench clean browser

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/cosmolocal demo

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

# Chromium for the report's browser test (Debian package; Playwright never downloads a browser here).
browser:
	@command -v chromium >/dev/null || (apt-get update -qq && apt-get install -y -qq chromium) \
		|| echo "chromium could not be installed: the report's browser test will be skipped"

test: lint browser
	$(BIN)/pytest -q

bench: $(STAMP)
	$(BIN)/pytest benchmarks --benchmark-enable --benchmark-only -q

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .benchmarks
