# The two commands of the README. Each creates (or reuses) .venv, installs the project into it with
# everything it needs, and registers the environment's Jupyter kernel for papermill.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed

.PHONY: book test lint clean

book: $(INSTALLED)
	$(BIN)/lpm run --params params/default.yaml

# The tests start with the lint: formatting and checks of the library, tests, benchmarks and notebooks.
test: lint
	$(BIN)/python -m pytest

lint: $(INSTALLED)
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .

$(INSTALLED): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e ".[test]"
	$(BIN)/python -m ipykernel install --sys-prefix --name lpm --display-name "Python (lpm)" >/dev/null
	touch $(INSTALLED)

clean:
	rm -rf _build book/_generated results
