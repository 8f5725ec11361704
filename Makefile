# Two commands do all the set-up: `make demo` and `make test` (see README).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export ANONYMIZED_TELEMETRY := False

.PHONY: install demo test test-fast lint deps check-install bench clean

TYPED := bot retrieval config newsbot prompts bench tests deploy

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# torch is pinned to the CPU build in pyproject.toml; install it first so nothing pulls a CUDA build.
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

install: $(VENV)/.installed

demo: install
	$(BIN)/newsbot ingest
	$(BIN)/newsbot ask "How many additional troops did Ash Carter announce for Iraq in July 2016?"

test: install
	$(BIN)/pytest -q

lint: install
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .
	$(BIN)/mypy $(TYPED)

# Every import of the product is a declared dependency, and every dependency is used ([tool.deptry] in pyproject.toml).
deps: install
	$(BIN)/deptry .

# A deployer's install: the wheel in a fresh venv with no extras ingests the samples and answers with a citation.
check-install:
	PYTHON=$(PYTHON) deploy/check-install.sh

# The quick loop: everything but the tests that load the embedding model (seconds, not minutes).
test-fast: install
	$(BIN)/pytest -q -m "not model"

bench: install
	$(BIN)/python bench/bench_ingest_ask.py

clean:
	rm -rf $(VENV) var .pytest_cache
