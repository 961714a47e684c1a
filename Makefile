PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# tfp_uq's C++ kernels (optional: without a compiler the layers use XLA-compiled draws).
NATIVE := $(VENV)/.native

.PHONY: demo test test-all lint format bench clean

$(STAMP): setup.cfg pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[test,plot,examples]"
	touch $(STAMP)

$(NATIVE): $(STAMP) tfp_uq/_native/posterior.cc
	$(VENV)/bin/tfp-uq build-native || echo "tfp-uq: C++ kernels not built; Bayesian layers use XLA-compiled draws"
	touch $(NATIVE)

demo: $(NATIVE)
	$(VENV)/bin/tfp-uq demo

# One pytest worker per core; a test file runs on one worker, so its module fixtures are built once.
# `make test` leaves out the tests marked slow (long statistical runs, subprocess backends); `make test-all` runs them too.
XDIST := -n auto --dist loadfile

test: $(NATIVE)
	$(PY) -m pytest -q $(XDIST) -m "not slow" $(PYTEST_ARGS)

test-all: $(NATIVE)
	$(PY) -m pytest -q $(XDIST) $(PYTEST_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/ruff check .

format: $(STAMP)
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

bench: $(NATIVE)
	$(PY) benchmarks/layers_speed.py

clean:
	rm -rf $(VENV) build *.egg-info tfp_uq/_native/_posterior-*.so
