# MOUSE — `make help` lists the targets.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
# torch comes first and on its own: on a CPU machine the pinned CPU wheel; a user with a CUDA build
# can pass TORCH='torch==X.Y.Z' or reuse a system torch with VENV_ARGS=--system-site-packages.
TORCH ?= torch==2.13.0
VENV_ARGS ?=
PYTEST_ARGS ?=
export HF_HUB_OFFLINE ?= 1
export WANDB_MODE ?= offline

.DEFAULT_GOAL := help
.PHONY: help setup test test-slow lint format bench bench-icrl bench-online train clean

help: ## list the targets
	@grep -hE '^[a-zA-Z0-9_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  make %-12s %s\n", $$1, $$2}'

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV_ARGS) $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install --quiet "$(TORCH)"
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $@

setup: $(VENV)/.installed ## create .venv and install MOUSE (editable) with dev extras

test: setup ## run the test suite (fast tests; what CI runs)
	$(PY) -m pytest -q $(PYTEST_ARGS)

test-slow: setup ## run the slow tests too
	$(PY) -m pytest -q -m "slow or not slow" $(PYTEST_ARGS)

lint: setup ## ruff lint and format check
	$(VENV)/bin/ruff check src tests scripts conf
	$(VENV)/bin/ruff format --check src tests scripts conf

format: setup ## apply ruff fixes and formatting
	$(VENV)/bin/ruff check --fix src tests scripts conf
	$(VENV)/bin/ruff format src tests scripts conf

STAMP := $(shell date +%Y-%m-%d_%H-%M-%S)
RUN ?= outputs/make-train/$(STAMP)
TRAIN_ARGS ?=
EVAL_ARGS ?= episodes=10 seeds=4

train: setup ## the default recipe: mouse-train, then mouse-eval on its checkpoint (table + plot)
	$(VENV)/bin/mouse-train hydra.run.dir=$(RUN) $(TRAIN_ARGS)
	$(VENV)/bin/mouse-eval checkpoint=$(RUN) hydra.run.dir=$(RUN)/eval-final $(EVAL_ARGS)

TASK ?= darkroom
# per-recipe bench settings (chosen by measurement, see README "Results")
BENCH_ICRL_darkroom ?= --steps 1800
BENCH_ICRL_keydoor ?= --steps 500 --num-tasks 256
bench-icrl: setup ## collect → train → eval on held-out tasks (TASK=darkroom|keydoor); ends with the icrl: line
	$(PY) scripts/bench_icrl.py --task $(TASK) $(BENCH_ICRL_$(TASK))

BENCH_ONLINE_ARGS ?=
bench-online: setup ## train online from scratch (TASK=bandit|darkroom) and evaluate beside reference policies; ends with the online: line
	$(PY) scripts/bench_online.py --task $(if $(filter command line environment,$(origin TASK)),$(TASK),bandit) $(BENCH_ONLINE_ARGS)

bench: setup ## model, loss and data benchmarks (print figures)
	$(PY) scripts/bench_model.py
	$(PY) scripts/bench_losses.py
	$(PY) scripts/bench_data.py

clean: ## remove build artefacts and caches (keeps .venv and outputs/)
	rm -rf build dist src/*.egg-info .pytest_cache .ruff_cache
