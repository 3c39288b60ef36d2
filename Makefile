# The README's two commands: `make run` and `make test`. Both do their own set-up.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
RUN_DIR := .run

.PHONY: run test venv system-deps bench clean

# Debian's packages behind the tests: promtool (prometheus), amtool and the Alertmanager binary
# (prometheus-alertmanager).
DEBIAN_PACKAGES := prometheus prometheus-alertmanager
system-deps:
	@if ! command -v promtool >/dev/null || ! command -v amtool >/dev/null \
	    || ! command -v prometheus-alertmanager >/dev/null; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $(DEBIAN_PACKAGES); \
	  else \
	    echo "missing Debian packages: run 'sudo apt-get install $(DEBIAN_PACKAGES)' (or make test as root)" >&2; exit 1; \
	  fi; \
	fi

$(BIN)/activate:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: $(BIN)/activate pyproject.toml
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test,run]'
	touch $@

venv: $(VENV)/.installed

test: system-deps venv
	$(BIN)/pytest -q

run: venv
	@mkdir -p $(RUN_DIR)/logs
	@echo "opsmon is starting (Ctrl-C stops everything):"
	@echo "  demo app    http://127.0.0.1:8080/stats"
	@echo "  exporter    http://127.0.0.1:9877/metrics   http://127.0.0.1:9877/health"
	@echo "  backups     http://127.0.0.1:9878/metrics   (opsmon-backup --config.file opsmon.yml list)"
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/honcho start -f Procfile

bench: venv
	$(BIN)/python bench/exporter_bench.py
	$(BIN)/python bench/backup_bench.py

clean:
	rm -rf $(RUN_DIR)
