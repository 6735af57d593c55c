# feedwatch developer commands. `make demo` and `make test` are the two the README promises.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: demo test unit compose-test bench fuzz soak lint dashboards dashboards-check kubernetes calendars calendars-check venv tools clean

# setup.py and the C extension too: the editable install compiles exporter/_fill.c in place.
$(VENV)/.installed: pyproject.toml setup.py exporter/_fill.c
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -e '.[test]'
	touch $@

venv: $(VENV)/.installed

# Real binaries the tests talk to (installed from Debian's packages when missing and root).
tools:
	scripts/ensure-tools.sh

# The whole pipeline: simulator, exporter, and Prometheus + Alertmanager with notifications printed.
# Installs Prometheus and Alertmanager from Debian when missing and root; otherwise it says what is
# missing and the demo runs without alerts (and says so too).
demo: venv
	-@scripts/ensure-tools.sh demo
	$(VENV)/bin/feedwatch demo

# Every test: unit, integration (loopback feeds, real Prometheus and Alertmanager), promtool, amtool.
# On TEST_WORKERS pytest-xdist workers: an integration file stays whole on one worker (its tests
# share a module's stack; tests/conftest.py groups them), unit tests are spread one by one. Most
# of the suite waits on real binaries, so two workers fit two cores; TEST_WORKERS=0 runs it in
# this one process. The slowest tests are listed last: the CI run must stay under 20 minutes.
TEST_WORKERS ?= 2
test: venv tools
	$(PY) -m pytest -q -n $(TEST_WORKERS) --durations=15

# docker-compose.yml on a real Docker engine with locally built stand-in images (root; installs
# docker.io, docker-compose and debootstrap when missing). tests/compose/run.py says what it does.
compose-test: venv
	$(PY) -m tests.compose.run

unit: venv
	$(PY) -m pytest -q tests/unit

bench: venv
	$(PY) -m bench

# The long fuzz run of the five adapters' handle(): FUZZ_CASES mutated frames each (a progress
# line every 5 s, then cases and escapes per adapter; tests/fuzz/__main__.py), then the
# hypothesis tests under their "long" profile. CI runs the same tests bounded (profile "ci").
FUZZ_CASES ?= 1000000
fuzz: venv tools
	$(PY) -m tests.fuzz --cases $(FUZZ_CASES)
	FEEDWATCH_FUZZ_PROFILE=long $(PY) -m pytest -q -p no:cacheprovider tests/fuzz

# Not in CI: 1 hour at 20,000 updates/s over 2,000 symbols, scraped every second; every update
# accounted for and memory flat (tests/soak.py). SOAK_ARGS=--duration 600 for a shorter run.
soak: venv
	$(PY) -m tests.soak $(SOAK_ARGS)

dashboards: venv
	$(PY) -m grafana.generate

dashboards-check: venv
	$(PY) -m grafana.generate --check

# deploy/kubernetes/prometheusrule.yaml from prometheus/rules/*.yml (after editing the rules).
kubernetes: venv
	$(PY) deploy/kubernetes/generate.py

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
