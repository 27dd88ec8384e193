# The two commands a newcomer types: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
CHROMIUM := /usr/bin/chromium

.PHONY: run test setup clean

run: $(STAMP)
	$(BIN)/janusq run

test: $(STAMP) $(CHROMIUM)
	$(BIN)/pytest -q $(PYTEST_ARGS)

setup: $(STAMP)

# Reinstall only when the project's dependencies change.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $(STAMP)

# The web page's tests drive Debian's Chromium (tests/e2e/test_web_page.py); Playwright's own
# browser download cannot work here. Installed when missing (CI runs as root); never skipped.
$(CHROMIUM):
	export DEBIAN_FRONTEND=noninteractive; apt-get install -y -q chromium chromium-driver || \
	  { apt-get update -q && apt-get install -y -q chromium chromium-driver; } || \
	  { echo "make test needs Chromium: apt-get install chromium chromium-driver (as root)" >&2; exit 1; }
	test -x $(CHROMIUM)

clean:
	rm -rf $(VENV) var .pytest_cache
