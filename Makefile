# Two commands for a new machine: `make run` (the copilot at http://127.0.0.1:8080) and `make test`.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: setup run test bench clean

setup: $(STAMP)

# torch first and pinned: the CPU wheel; an unpinned torch would pull several GB of CUDA packages
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --disable-pip-version-check -q "torch==2.13.0"
	$(PY) -m pip install --disable-pip-version-check -q -e ".[test]"
	touch $(STAMP)

run: setup
	$(VENV)/bin/copilot serve

test: setup
	$(PY) -m pytest -q -p no:cacheprovider tests

bench: setup
	$(PY) -m bench all

clean:
	rm -rf $(VENV) data .cache
