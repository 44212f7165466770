# The two commands of the README: `make demo` and `make test`.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: setup demo demo-smollm2 test lint crd bench clean

setup:
	bash scripts/setup.sh

demo: setup
	bash scripts/demo.sh

# SmolLM2-135M-Instruct through all four stages on CPU (docs/smollm2/: report and wall time).
demo-smollm2: setup
	bash scripts/smollm2.sh

# The toy model the trainer tests share (cached under .cache/ by version) is built before
# pytest, so that no test's timeout pays for its few minutes on a slow machine.
test: setup
	$(VENV)/bin/ruff check .
	$(PY) -c "import os; from polya_trainer.toy import TOY_VERSION as v, build_toy_model as b; \
	  b(os.path.join(os.environ.get('POLYA_TEST_CACHE', '.cache'), f'toy-model-v{v}'))"
	$(PY) -m pytest -q -rs --durations=25

lint: setup
	$(VENV)/bin/ruff check .

crd:
	$(PY) -m polya_trainer.cli crd > manifests/crd.yaml
	cp manifests/crd.yaml charts/polyarun/crds/polyaruns.polya.dev.yaml
	$(PY) -c "from polya_trainer.crd import config_reference; print(config_reference(), end='')" > docs/configuration.md

bench: setup
	bash bench/run.sh

clean:
	rm -rf $(VENV) .venv-* .pytest_cache polya-runs

# The GPU machine's check (bench/gpu_check.py; docs/performance.md, "GPU check"): under the
# python3 that holds a CUDA torch, not the venv; WHEELS=DIR installs carried wheels first
# (offline). Writes bench/results/gpu-check.json; exits non-zero naming the first failure.
.PHONY: gpu-check
GPU_PYTHON ?= python3
gpu-check:
	$(GPU_PYTHON) bench/gpu_check.py $(if $(WHEELS),--wheels $(WHEELS)) $(GPU_CHECK_ARGS)
