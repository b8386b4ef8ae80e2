# Two commands for a new machine: `make run` (the copilot at http://127.0.0.1:8080) and `make test`.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
# test processes: each test file runs whole on one (module fixtures stay shared); the tests wait more than they compute
TEST_WORKERS ?= 2
# -q, and no setuptools notices about the editable install: one line of progress per step
PIP    := PYTHONWARNINGS=ignore::UserWarning $(PY) -m pip --disable-pip-version-check -q
# `run` needs the product only (no torch); `test` adds the test tools and the st extra (torch)
RUN_STAMP  := $(VENV)/.installed-run
TEST_STAMP := $(VENV)/.installed-test

.PHONY: setup setup-test run test bench clean sample-embeddings lock chromium

setup: $(RUN_STAMP)

setup-test: $(TEST_STAMP)

$(PY):
	@echo "==> creating $(VENV) ($(PYTHON) -m venv)"
	@$(PYTHON) -m venv $(VENV)
	@$(PY) -m pip install -q --disable-pip-version-check --upgrade pip

# the dependencies come from lock files with hashes (`make lock` rewrites them from pyproject.toml): a package
# whose file does not match its recorded hash is refused; then the project itself, without dependencies
$(RUN_STAMP): pyproject.toml requirements.lock | $(PY)
	@echo "==> installing sales-copilot and its locked dependencies into $(VENV) (no torch; about a minute the first time)"
	@$(PIP) install --require-hashes -r requirements.lock
	@$(PIP) install --no-deps -e .
	@$(PY) -m pip check -q >/dev/null || { echo "requirements.lock misses a dependency of pyproject.toml: run make lock"; exit 1; }
	@touch $@

# torch pinned in the lock: the CPU wheel (2.13.0+cpu); an unpinned torch would pull several GB of CUDA packages
$(TEST_STAMP): pyproject.toml requirements-test.lock | $(PY)
	@echo "==> installing the test tools and the st extra into $(VENV) (locked, CPU torch 2.13.0)"
	@$(PIP) install --require-hashes -r requirements-test.lock
	@$(PIP) install --no-deps -e .
	@$(PY) -m pip check -q >/dev/null || { echo "requirements-test.lock misses a dependency of pyproject.toml: run make lock"; exit 1; }
	@$(MAKE) --no-print-directory chromium
	@touch $@ $(RUN_STAMP)

# the browser tests drive Debian's chromium (Playwright's own browser download does not work offline); a test
# that finds no /usr/bin/chromium skips and says so
chromium:
	@test -x /usr/bin/chromium || { echo "==> installing Debian's chromium for the browser tests"; \
		(apt-get install -y -q chromium >/dev/null 2>&1 || (apt-get update -q >/dev/null 2>&1 && apt-get install -y -q chromium >/dev/null 2>&1)) \
		|| echo "chromium could not be installed (not root, or no package registry): the browser tests will skip"; }
	@fc-list :lang=zh 2>/dev/null | grep -q . || { echo "==> installing CJK and emoji fonts (screenshots of Chinese pages)"; \
		(apt-get install -y -q fonts-noto-cjk fonts-noto-color-emoji >/dev/null 2>&1 || (apt-get update -q >/dev/null 2>&1 && \
		apt-get install -y -q fonts-noto-cjk fonts-noto-color-emoji >/dev/null 2>&1)) || echo "no CJK fonts: screenshots show boxes for Chinese"; }

# after changing the dependencies in pyproject.toml: pin every package with its hashes
lock: | $(PY)
	@$(PIP) install pip-tools
	$(VENV)/bin/pip-compile -q --generate-hashes --strip-extras --no-emit-index-url --no-emit-find-links --allow-unsafe \
		-o requirements.lock pyproject.toml
	$(VENV)/bin/pip-compile -q --generate-hashes --strip-extras --no-emit-index-url --no-emit-find-links --allow-unsafe \
		--extra test --extra st -c requirements.lock -o requirements-test.lock pyproject.toml

run: setup
	@echo "==> starting the copilot (the first start loads the sample users and knowledge; Ctrl-C stops it)"
	@COPILOT_DEMO=true $(VENV)/bin/copilot serve

# the import rules (contracts in pyproject.toml), the linter, then every test
test: setup-test
	@echo "==> import contracts (lint-imports) and ruff"
	@$(VENV)/bin/lint-imports --no-cache | tail -n 3
	@$(VENV)/bin/ruff check .
	$(PY) -m pytest -q -p no:cacheprovider --durations=15 -n $(TEST_WORKERS) --dist loadfile tests

# after changing the sample knowledge: rewrite the vectors a first start copies instead of running the model
sample-embeddings: setup
	$(PY) -c "from bot.app import write_sample_embeddings; from bot.settings import Settings; print(write_sample_embeddings(Settings()))"

bench: setup-test
	$(PY) -m bench all

clean:
	rm -rf $(VENV) data .cache
