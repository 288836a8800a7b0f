# One entry point for humans and CI. `make check` is exactly what CI runs (.ci/run).
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
DEB_PACKAGES := influxdb mosquitto mosquitto-clients snmp snmpd mbpoll prometheus-alertmanager

.PHONY: demo install install-test deb lint typecheck test check bench clean

$(PY):
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

install: $(PY)
	$(PY) -m pip install -q -e .

install-test: $(PY)
	$(PY) -m pip install -q -e ".[test]"

# The real servers the tests start (InfluxDB 1.x, Mosquitto, net-snmp tools, mbpoll,
# Prometheus Alertmanager).
deb:
	@missing=""; for b in influxd mosquitto snmpget mbpoll prometheus-alertmanager; do command -v $$b >/dev/null || missing=1; done; \
	if [ -n "$$missing" ]; then \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $(DEB_PACKAGES) >/dev/null; \
	fi

demo: install
	$(VENV)/bin/dcim demo

lint: install-test
	$(VENV)/bin/ruff check dcim collectors tests benchmarks dashboards
	$(VENV)/bin/ruff format --check dcim collectors tests benchmarks dashboards

typecheck: install-test
	$(VENV)/bin/mypy dcim collectors

test: deb install-test
	$(PY) -m pytest -q -ra

check: lint typecheck test

bench: install deb
	$(PY) benchmarks/demo_cadence.py
	$(PY) benchmarks/collect.py

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
