# flowd: `make run` starts the daemon on config.example.toml; `make test` runs the whole suite.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: run test lint bench check clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# Reinstall only when the project's metadata changed.
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml $(VENV)/.installed
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

$(VENV)/.installed-bench: pyproject.toml $(VENV)/.installed
	$(BIN)/pip install --quiet -e '.[bench]'
	touch $@

run: $(VENV)/.installed
	$(BIN)/flowd run -c config.example.toml

check: $(VENV)/.installed
	$(BIN)/flowd check -c config.example.toml

# Azurite (the Azure Storage emulator) for the ADLS storage tests, pinned in package.json.
node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund
	touch $@

test: $(VENV)/.installed-test node_modules/.installed lint
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: $(VENV)/.installed-test
	$(BIN)/ruff check flowd tests benchmarks
	$(BIN)/mypy flowd

# Routing throughput and latency (vs organize), metadata and imaging (vs exiftool and ImageMagick),
# uploads to Azurite (vs the Azure SDK alone), FTP uploads (vs a bare pyftpdlib server), then a purge sweep
# over 100,000 files (vs find -delete and organize), and a 256-channel Color Factory import (vs its 2 s target).
bench: $(VENV)/.installed-bench node_modules/.installed
	$(BIN)/python benchmarks/run.py $(BENCH_ARGS)
	$(BIN)/python benchmarks/images.py $(IMAGES_ARGS)
	$(BIN)/python benchmarks/adls.py $(ADLS_ARGS)
	$(BIN)/python benchmarks/ftp.py $(FTP_ARGS)
	$(BIN)/python benchmarks/purge.py $(PURGE_ARGS)
	$(BIN)/python benchmarks/migrate.py $(MIGRATE_ARGS)

clean:
	rm -rf var .pytest_cache benchmarks/work
