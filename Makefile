# The README's two commands: `make run` and `make test`. Both do their own set-up.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
RUN_DIR := .run

.PHONY: run test test-fast lint venv run-deps test-deps native-configs bench clean

# Debian's packages: Prometheus and Alertmanager for the stack and its tests (promtool, amtool and
# the binaries), and for the tests also the browser the console's test drives. Each is installed
# when its command is missing and we are root; otherwise make says what to install. The services
# the packages start on their own (Prometheus on 9090, Alertmanager on 9093, VictoriaMetrics on
# 8428) are stopped and disabled: the stack runs its own, on those ports.
RUN_PACKAGES := prometheus:promtool prometheus-alertmanager:amtool prometheus-alertmanager:prometheus-alertmanager
TEST_PACKAGES := $(RUN_PACKAGES) victoria-metrics:victoria-metrics chromium:chromium chromium-driver:chromedriver

define install-missing
	@missing=$$(for pair in $(1); do command -v $${pair#*:} >/dev/null || echo $${pair%%:*}; done | sort -u); \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	    if [ -d /run/systemd/system ]; then for unit in $$missing; do systemctl disable --now $$unit >/dev/null 2>&1 || true; done; fi; \
	  else \
	    echo "missing Debian packages: run 'sudo apt-get install" $$missing"' (or make as root)" >&2; exit 1; \
	  fi; \
	fi
endef

run-deps:
	$(call install-missing,$(RUN_PACKAGES) $(if $(LONG_TERM),victoria-metrics:victoria-metrics))

test-deps:
	$(call install-missing,$(TEST_PACKAGES))

$(BIN)/activate:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: $(BIN)/activate pyproject.toml
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test,run]'
	touch $@

venv: $(VENV)/.installed

# Everything, as CI runs it: the lint first, then every tier (tests/unit, tests/integration, tests/e2e).
test: test-deps venv lint
	$(BIN)/pytest -q

# The inner loop: the unit tier only (no process, no network), in under two minutes.
test-fast: venv
	$(BIN)/pytest -q tests/unit

# Settings in pyproject.toml: ruff over the whole tree, mypy over opsmon/, exporter/ and backup_jobs/.
lint: venv
	$(BIN)/ruff check .
	$(BIN)/mypy

# The native stack: `opsmon render` writes the demo's config (opsmon.yml, its stack: section) under .run/,
# with one Procfile (Grafana only when it is installed).
# One setting each, in .env (as docker compose reads it) or on make's command line: the URLs people reach
# the stack by, rendered into the rules' dashboard links and the heartbeat receiver (the renderer reads
# them from the environment), and into Prometheus's and Alertmanager's --web.external-url by the Procfile
# (honcho reads .env too).
-include .env
HEARTBEAT_URL = $(or $(OPSMON_HEARTBEAT_URL),http://127.0.0.1:8081/webhook/heartbeat)
# The long-term store: OPSMON_LONG_TERM=1 starts VictoriaMetrics (13 months) and remote-writes to it.
LONG_TERM = $(filter 1,$(OPSMON_LONG_TERM))

native-configs:
	@mkdir -p $(RUN_DIR)/logs
	@OPSMON_GRAFANA_URL='$(OPSMON_GRAFANA_URL)' OPSMON_HEARTBEAT_URL='$(OPSMON_HEARTBEAT_URL)' \
	  OPSMON_LONG_TERM='$(LONG_TERM)' $(BIN)/opsmon --config.file opsmon.yml render --out $(RUN_DIR) >/dev/null
	@cp Procfile $(RUN_DIR)/Procfile
	@if [ -n "$(LONG_TERM)" ]; then \
	  echo "victoriametrics: exec victoria-metrics -storageDataPath=$(RUN_DIR)/victoria-metrics -retentionPeriod=13 -httpListenAddr=127.0.0.1:8428" >> $(RUN_DIR)/Procfile; \
	fi
	@if command -v grafana-server >/dev/null; then \
	  echo "grafana: exec env GF_PATHS_PROVISIONING=$(RUN_DIR)/grafana/provisioning GF_PATHS_DATA=$(RUN_DIR)/grafana/data grafana-server --homepath /usr/share/grafana" >> $(RUN_DIR)/Procfile; \
	fi

run: run-deps venv native-configs
	@echo "opsmon is starting (Ctrl-C stops everything; data under $(RUN_DIR)/):"
	@echo "  demo app       http://127.0.0.1:8080/stats"
	@echo "  exporter       http://127.0.0.1:9877/metrics   http://127.0.0.1:9877/health"
	@echo "  backups        http://127.0.0.1:9878/ (console; admin password printed once below)   /metrics"
	@echo "  Prometheus     http://127.0.0.1:9090/targets   http://127.0.0.1:9090/alerts"
	@echo "  Alertmanager   http://127.0.0.1:9093"
	@echo "  pager (stand-in) http://127.0.0.1:8081/   (heartbeat: $(HEARTBEAT_URL))"
	@echo "  mail (SMTP sink) http://127.0.0.1:8025"
	@if [ -n "$(LONG_TERM)" ]; then echo "  VictoriaMetrics http://127.0.0.1:8428/vmui   (13 months of every sample)"; fi
	@if command -v grafana-server >/dev/null; then echo "  Grafana        http://127.0.0.1:3000"; \
	else echo "  Grafana is not packaged for Debian: 'docker compose up -d' runs it (or put grafana-server on PATH)"; fi
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/honcho start -f $(RUN_DIR)/Procfile -d $(CURDIR)

bench: venv
	$(BIN)/python bench/exporter_bench.py
	$(BIN)/python bench/backup_bench.py
	$(BIN)/python bench/logs_bench.py
	$(BIN)/python bench/fleet_bench.py

# Faults injected into the real commands (kill -9, a full disk, a flaky S3, Litestream killed, load),
# each run checked after: not part of make test. Root (it mounts a tmpfs); about 10 minutes on 2 cores.
# Shorter: make chaos CHAOS_FLAGS="--runs 24 --minutes 5".
.PHONY: chaos
chaos: venv
	$(BIN)/python bench/chaos.py $(CHAOS_FLAGS)

# The whole native stack under .soak/ for DURATION (default 30m; the measured run is 3h) under
# traffic, faults and scaled schedules, sampled and judged: not part of make test. Stop `make run` first.
.PHONY: soak
soak: run-deps venv
	rm -rf .soak   # each soak starts from an empty kit, as a new install would
	$(MAKE) --no-print-directory native-configs RUN_DIR=.soak
	$(BIN)/python bench/soak.py --duration $(or $(DURATION),30m) $(SOAK_FLAGS)

# Wheels of the kit (opsmon: the three commands) and of the app's library (opsmon-instrument, whose only
# dependency is prometheus-client) in dist/: `pip install dist/opsmon_instrument-*.whl` in the app's environment.
# No sdists: the library's package is the repository's opsmon/instrument, outside instrument/, which an sdist
# of instrument/ cannot hold.
.PHONY: dist
dist: venv
	rm -rf dist
	$(BIN)/pip wheel -q --no-deps -w dist . ./instrument

clean:
	rm -rf $(RUN_DIR)
