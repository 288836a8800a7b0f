# One entry point for humans and CI. `make check` is exactly what CI runs (.ci/run).
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
DEB_PACKAGES := influxdb mosquitto mosquitto-clients snmp snmpd mbpoll curl prometheus-alertmanager docker-compose systemd poppler-utils

.PHONY: demo install install-twin install-test install-bench deb bench-deb lint typecheck test test-fast check bench clean

$(PY):
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

install: $(PY)
	$(PY) -m pip install -q -e .

# The digital twin's extra (numpy, amqtt): the demo and the benchmarks run the twin.
install-twin: $(PY)
	$(PY) -m pip install -q -e ".[twin]"

install-test: $(PY)
	$(PY) -m pip install -q -e ".[test]"

# The real servers the tests start (InfluxDB 1.x, Mosquitto, net-snmp tools, mbpoll,
# Prometheus Alertmanager).
deb:
	@missing=""; for b in influxd mosquitto snmpget mbpoll curl prometheus-alertmanager docker-compose systemd-analyze pdftotext pdftoppm; do command -v $$b >/dev/null || missing=1; done; \
	if [ -n "$$missing" ]; then \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $(DEB_PACKAGES) >/dev/null; \
	fi

demo: install-twin
	$(VENV)/bin/dcim demo

lint: install-test
	$(VENV)/bin/ruff check dcim collectors tests benchmarks dashboards tools
	$(VENV)/bin/ruff format --check dcim collectors tests benchmarks dashboards tools

typecheck: install-test
	$(VENV)/bin/mypy dcim collectors tools dashboards

# Tests marked `waits` spend minutes idle (Alertmanager down for five minutes): they run in
# a second pytest process beside the others, so the suite's wall time is not their sum.
# The others run in two worker processes (pytest-xdist), a test file per worker at a time
# (--dist loadfile: a module's shared fixture, a backfilled month or year, is built once):
# much of a test's time is real time spent waiting (live cadences, servers), and the two
# workers overlap it on the two cores.
test: deb install-test
	@$(PY) -m pytest -q -ra -p no:cacheprovider -m waits >.pytest-waits.log 2>&1 & waits=$$!; \
	$(PY) -m pytest -q -ra --durations=25 -n 2 --dist loadfile -m "not waits"; rc=$$?; \
	wait $$waits; rc_waits=$$?; \
	echo "--- tests marked waits (run beside the others) ---"; cat .pytest-waits.log; \
	test $$rc = 0 && test $$rc_waits = 0

# The tests without those marked slow (the long end-to-end runs): for a quick check while
# working; `make check` (CI) runs them all.
test-fast: deb install-test
	$(PY) -m pytest -q -ra -n 2 --dist loadfile -m "not slow"

check: lint typecheck test

# The peers the benchmarks measure the product against, on the same agents (not needed by
# the test suite): collectd's snmp plugin and prometheus-snmp-exporter.
BENCH_DEB_PACKAGES := collectd-core prometheus-snmp-exporter

bench-deb:
	@missing=""; for b in /usr/sbin/collectd /usr/bin/prometheus-snmp-exporter; do [ -x $$b ] || missing=1; done; \
	if [ -n "$$missing" ]; then \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $(BENCH_DEB_PACKAGES) >/dev/null; \
	fi

# The twin, and snmpsim with its recorded walks (the test extra) for the PDU case.
install-bench: $(PY)
	$(PY) -m pip install -q -e ".[twin,test]"

# Every benchmark runs even if one before it misses a target; the status says if any did.
BENCHMARKS := \
	"benchmarks/collect.py" \
	"benchmarks/ingest.py" \
	"benchmarks/demo_cadence.py" \
	"benchmarks/collect.py --redfish" \
	"benchmarks/kpi.py --days 30" \
	"benchmarks/dashboards.py --racks 6 --raw-hours 6"

bench: install-bench deb bench-deb
	@echo "load average: $$(cut -d' ' -f1-3 /proc/loadavg) on $$(nproc) cores"; fail=""; \
	for b in $(BENCHMARKS); do \
	  echo; echo "=== $$b"; $(PY) $$b || fail="$$fail; $$b"; \
	done; \
	echo; echo "load average: $$(cut -d' ' -f1-3 /proc/loadavg)"; \
	if [ -n "$$fail" ]; then echo "target missed or phase failed in:$${fail#;}"; exit 1; fi

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache build collectors/snmp/_fastber.*.so
