# The two commands a newcomer needs:  make run  and  make test
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
# Test tiers (markers in pyproject.toml): the quick tier, and the marked tiers as two groups, the
# tests that must run one at a time and the rest, which run beside them.
QUICK         := not slow and not speech and not browser and not bench and not load
ONE_AT_A_TIME := speech or bench or load
BESIDE        := (slow or browser) and not speech and not bench and not load

.PHONY: run test test-fast lint setup bench bench-quick check-flows clean

run: setup                     ## install everything, then serve on the embedded Redis
	$(VENV)/bin/ivr serve

test: setup                    ## install everything (incl. test browser), then lint and run every test
	scripts/install-system-deps.sh --test
	$(PY) -m ruff check .
	# The quick tier on both cores (each worker its own Redis database), then the marked tiers as two
	# processes at once: the tests that stream audio in real time, run benchmarks, load the machine or
	# hold a time bound (speech, bench, load) one after the other; beside them, on Redis database 13,
	# the rest (processes, proxies, Chromium), whose report is printed after.
	$(PY) -m pytest -q -n 2 -m "$(QUICK)" tests
	log=$$(mktemp); \
	IVR_TEST_REDIS_DB=13 $(PY) -m pytest -q -m "$(BESIDE)" tests > $$log 2>&1 & rest=$$!; \
	$(PY) -m pytest -q -m "$(ONE_AT_A_TIME)" tests; one_at_a_time=$$?; \
	wait $$rest; beside=$$?; echo "--- the marked tests that ran beside them:"; cat $$log; rm -f $$log; \
	test $$one_at_a_time -eq 0 && test $$beside -eq 0

test-fast: setup               ## the edit-test loop: no slow, speech-model, browser or benchmark tests
	$(PY) -m ruff check .
	$(PY) -m pytest -q -n 2 -m "$(QUICK)" tests

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
