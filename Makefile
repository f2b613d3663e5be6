# The two front-door commands (see README.md): `make run` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# The shared data sets beside a checkout, when present; otherwise data sets are downloaded.
MLF_DATASETS_DIR ?= $(if $(wildcard ../shared/datasets),$(abspath ../shared/datasets),)
export MLF_DATASETS_DIR

.PHONY: run test lint install clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet torch==2.13.0  # the CPU build; see the embeddings extra
	$(BIN)/python -m pip install --quiet -e '.[dev,airflow,embeddings]'
	touch $@

install: $(BIN)/.installed  ## create the virtualenv; install mlfactory, dev tools, Airflow, embeddings

run: $(BIN)/.installed  ## set up, then run the advertising pipeline on the embedded default
	$(BIN)/mlfactory run advertising

lint: $(BIN)/.installed  ## ruff and the house rules (import-linter contracts)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

test: lint  ## set up, lint, then the whole suite (SQLite and PostgreSQL variants)
	$(BIN)/pytest; status=$$?; \
	if [ $$status -eq 5 ]; then echo "pytest collected no tests"; exit 1; fi; exit $$status

clean:
	rm -rf $(VENV) .mlfactory .pytest_cache .ruff_cache
