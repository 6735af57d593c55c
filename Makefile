# feedwatch developer commands. `make demo` and `make test` are the two the README promises.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: demo test unit bench soak lint dashboards dashboards-check calendars calendars-check venv tools clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -e '.[test]'
	touch $@

venv: $(VENV)/.installed

# Real binaries the tests talk to (installed from Debian's packages when missing and root).
tools:
	scripts/ensure-tools.sh

demo: venv
	$(VENV)/bin/feedwatch demo

# Every test: unit, integration (loopback feeds, real Prometheus and Alertmanager), promtool, amtool.
test: venv tools
	$(PY) -m pytest -q

unit: venv
	$(PY) -m pytest -q tests/unit

bench: venv
	$(PY) -m bench

# Not in CI: 1 hour at 20,000 updates/s over 2,000 symbols, scraped every second; every update
# accounted for and memory flat (tests/soak.py). SOAK_ARGS=--duration 600 for a shorter run.
soak: venv
	$(PY) -m tests.soak $(SOAK_ARGS)

dashboards: venv
	$(PY) -m grafana.generate

dashboards-check: venv
	$(PY) -m grafana.generate --check

# Market calendars (exporter/markets.json and the generated time intervals of
# alertmanager/alertmanager.yml) from exchange_calendars, a test-extra dependency.
calendars: venv
	$(PY) scripts/generate-calendars.py

calendars-check: venv
	$(PY) scripts/generate-calendars.py --check

lint: venv
	$(PY) -m compileall -q exporter
	promtool check rules prometheus/rules/*.yml

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
