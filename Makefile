# One entry point for humans and CI. `make check` is exactly what CI runs (.ci/run).
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
DEB_PACKAGES := influxdb mosquitto mosquitto-clients snmp snmpd mbpoll curl prometheus-alertmanager docker-compose systemd poppler-utils

.PHONY: demo install install-twin install-test deb lint typecheck test test-fast check bench clean

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
	@missing=""; for b in influxd mosquitto snmpget mbpoll curl prometheus-alertmanager docker-compose systemd-analyze pdftotext; do command -v $$b >/dev/null || missing=1; done; \
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
	$(VENV)/bin/mypy dcim collectors tools

test: deb install-test
	$(PY) -m pytest -q -ra --durations=25

# The tests without those marked slow (the long end-to-end runs): for a quick check while
# working; `make check` (CI) runs them all.
test-fast: deb install-test
	$(PY) -m pytest -q -ra -m "not slow"

check: lint typecheck test

bench: install-twin deb
	$(PY) benchmarks/demo_cadence.py
	$(PY) benchmarks/collect.py
	$(PY) benchmarks/collect.py --redfish
	$(PY) benchmarks/dashboards.py --racks 6 --raw-hours 6

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
