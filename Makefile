# Two commands for a fresh machine (python3 >= 3.10 with PyPI access; `make test` also runs npm once, for Azurite):
#   make demo   - the main job on the embedded default: local S3 server, sample data, LocalCluster
#   make test   - the test suite (what CI runs)
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: demo test bench install

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[test]"
	touch $@

install: $(VENV)/.installed

demo: install
	$(PY) -m dask_prefetch demo

test: install
	$(PY) -c "from dask_prefetch.testing.azurite import ensure_installed; ensure_installed()"  # npm, once per machine
	$(PY) -m pytest -q

bench: install
	$(PY) -m dask_prefetch bench
