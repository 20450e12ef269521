# The two commands a newcomer needs:  make run  and  make test
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: run test test-fast lint setup bench bench-quick check-flows clean

run: setup                     ## install everything, then serve on the embedded Redis
	$(VENV)/bin/ivr serve

test: setup                    ## install everything (incl. test browser), then lint and run every test
	scripts/install-system-deps.sh --test
	$(PY) -m ruff check .
	# The quick tier on both cores (each worker its own Redis database), then the marked tiers: the
	# tests that stream audio in real time, run benchmarks or load the machine one after the other in
	# one worker (xdist group, tests/conftest.py), the rest (proxies, processes, Chromium) in the other.
	$(PY) -m pytest -q -n 2 -m "not slow and not speech and not browser and not bench" tests
	$(PY) -m pytest -q -n 2 --dist loadgroup -m "slow or speech or browser or bench" tests

test-fast: setup               ## the edit-test loop: no slow, speech-model, browser or benchmark tests
	$(PY) -m ruff check .
	$(PY) -m pytest -q -n 2 -m "not slow and not speech and not browser and not bench" tests

lint: setup
	$(PY) -m ruff check .

setup: $(STAMP)

$(STAMP): requirements.txt pyproject.toml scripts/install-system-deps.sh
	scripts/install-system-deps.sh
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt    # ivr itself (editable) with the test, bench and ko extras
	$(VENV)/bin/ivr models download en --optional   # English speech where the network allows; else keypad
	touch $(STAMP)

check-flows: setup
	$(VENV)/bin/ivr check-flows

bench: setup                   ## full benchmarks (several minutes); figures go to BENCHMARKS.md
	$(PY) -m bench.run_all

bench-quick: setup             ## smoke version of every benchmark, as CI runs it
	$(PY) -m bench.run_all --quick

clean:
	rm -rf $(VENV) var .pytest_cache
