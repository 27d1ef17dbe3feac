# harness: one command to set up and run the CPU demo, one to run the tests.
#   make demo    set up (venv, pinned packages, offline models) and run jobs/demo.yaml on this machine
#   make test    set up, check lint/format/types/import contracts, start the local SLURM cluster, run the whole test suite
# On a GPU cluster: make install TORCH_INDEX=https://download.pytorch.org/whl/cu126 ; make matrix MATRIX=jobs/thesis.yaml

SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
HARNESS := $(VENV)/bin/harness
MATRIX ?= jobs/demo.yaml
PYTEST_ARGS ?=
# torch is installed first and pinned: an unpinned install of peft/bitsandbytes would pull a CUDA build.
TORCH_INDEX ?=
TORCH_SPEC ?= torch==2.13.0
export HF_HUB_OFFLINE ?= 1
export HF_DATASETS_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false

.PHONY: install lint format demo test browser test-fast bench matrix plan status collect report ui slurm-up slurm-down gpu-check gpu-bench device-wheels clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml constraints.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX)) "$(TORCH_SPEC)"
	$(PY) -m pip install -q -c constraints.txt -e '.[test]'
	$(HARNESS) prefetch --model minilm-l6 --model smollm2-135m --model tiny-t5 --model tiny-llama --model tiny-bert
	touch $@

demo: install
	$(HARNESS) plan jobs/demo.yaml --no-scripts
	$(HARNESS) matrix jobs/demo.yaml --executor local --wait
	$(HARNESS) collect jobs/demo.yaml
	$(HARNESS) report jobs/demo.yaml

slurm-up:
	bash slurm/up.sh

slurm-down:
	bash slurm/down.sh

# Two steps: the suite, then the container tests (they build the CPU image: about 8 minutes
# cold, under a minute with the caches in /var/cache/harness-docker) with their own time budget.
# pytest exits 5 when it collects no test: that is not a failure.
CONTAINER_TEST_BUDGET_S ?= 1500
# Debian's headless Chromium, for the tests that render what a person looks at (report.html)
browser:
	@command -v chromium >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
	  apt-get install -y -qq --no-install-recommends chromium >/dev/null; }

# Seconds, before the tests: ruff (lint, format), mypy on harness/, the import contracts
# (architecture.ini: the layer order, no cycles). `make format` applies ruff's fixes and format.
lint: install
	@start=$$SECONDS; \
	$(VENV)/bin/ruff check harness tests bench scripts && \
	$(VENV)/bin/ruff format --check harness tests bench scripts && \
	$(VENV)/bin/mypy && \
	{ contracts=$$($(VENV)/bin/lint-imports --no-cache architecture.ini 2>&1) || { echo "$$contracts"; exit 1; }; } && \
	echo "$$contracts" | grep -E "KEPT|BROKEN|Contracts:" && \
	echo "lint, format, types and import contracts: $$((SECONDS - start)) s"

format: install
	$(VENV)/bin/ruff check --fix harness tests bench scripts
	$(VENV)/bin/ruff format harness tests bench scripts

test: install lint slurm-up browser
	set -a; source $${HARNESS_SLURM_DIR:-/tmp/harness-slurm}/env.sh; set +a; \
	$(PY) -m pytest -q -p no:cacheprovider --durations=15 -m "not docker" $(PYTEST_ARGS); core=$$?; \
	if [ $$core -eq 5 ]; then echo "pytest collected no tests"; core=0; fi; \
	echo "== container tests: CPU image, a smoke cell inside it on the local SLURM cluster =="; \
	start=$$SECONDS; timeout $(CONTAINER_TEST_BUDGET_S) $(PY) -m pytest -q -p no:cacheprovider -m docker $(PYTEST_ARGS); \
	containers=$$?; echo "container tests took $$((SECONDS - start)) s"; \
	if [ $$containers -eq 5 ]; then echo "pytest collected no container tests"; containers=0; fi; \
	exit $$(( core != 0 || containers != 0 ))

test-fast: install
	$(PY) -m pytest -q -m "not slurm" $(PYTEST_ARGS); rc=$$?; [ $$rc -eq 5 ] && rc=0; exit $$rc

# bench_plan: warm `harness plan` of the thesis grid and of 500 cells x 20 methods (target < 1 s)
# bench_parity: the harness (its defaults, and the bare loop's settings) against bench/bare_loop.py, 3 seeds
# each: nine runs of 2-4 minutes on two cores
bench: install
	$(PY) bench/bench_train.py
	$(PY) bench/bench_plan.py
	$(PY) bench/bench_matrix.py
	$(PY) bench/bench_parity.py

plan: install
	$(HARNESS) plan $(MATRIX)

matrix: install
	$(HARNESS) matrix $(MATRIX)

status:
	$(HARNESS) status $(MATRIX)

collect:
	$(HARNESS) collect $(MATRIX)

report:
	$(HARNESS) report $(MATRIX)

# The MLflow UI on localhost against the matrix's tracking store.
# The matrix's runs view (metrics as columns) once `harness collect` has run; the URL is printed first
ui:
	@echo "MLflow UI: http://127.0.0.1:$${PORT:-5000}/$$($(HARNESS) ui-path $(MATRIX))"
	$(VENV)/bin/mlflow ui --host 127.0.0.1 --port $${PORT:-5000} --backend-store-uri "$$($(HARNESS) tracking-uri $(MATRIX))"

# One prepared script for a machine with a GPU (see scripts/gpu_check.py).
gpu-check: install
	$(PY) scripts/gpu_check.py

# Memory and speed of LoRA, QLoRA and full fine-tuning on Llama-3.2-3B's shape (scripts/gpu_bench.py).
gpu-bench: install
	mkdir -p bench/results && $(PY) scripts/gpu_bench.py --out bench/results/gpu-bench-$$(date +%Y%m%d).json

# Wheels for a GPU machine that reaches no package index (scripts/device/gpu-check.sh runs there).
device-wheels: install
	bash scripts/device/fetch-wheels.sh

clean:
	rm -rf outputs

# ---- containers (README, "Containers") -------------------------------------------------
# make container                      Docker image $(IMAGE):$(TAG) for GPU nodes (needs internet: a login node)
# make container VARIANT=cpu TAG=cpu  CPU image, offline (private dockerd, debootstrap base, host wheelhouse)
# make sif                            Apptainer image $(SIF) from the Docker image $(IMAGE):$(TAG)
IMAGE ?= harness
VARIANT ?= gpu
TAG ?= $(VARIANT)
SIF ?= harness.sif
# Debian's client builds with BuildKit; a newer client first on the PATH may lack buildx
DOCKER ?= $(shell test -x /usr/bin/docker && echo /usr/bin/docker || echo docker)
CONTAINER_BUILD_ARGS ?=

.PHONY: container sif

container:
	if [ "$(VARIANT)" = cpu ]; then IMAGE=$(IMAGE) TAG=$(TAG) bash containers/ci-build.sh; else \
	DOCKER_BUILDKIT=1 $(DOCKER) build -f containers/Dockerfile --build-arg VARIANT=$(VARIANT) \
	  --build-arg GIT_COMMIT=$$(git rev-parse HEAD 2>/dev/null || echo unknown) --build-arg IMAGE_REF=$(IMAGE):$(TAG) \
	  $(CONTAINER_BUILD_ARGS) -t $(IMAGE):$(TAG) . ; fi

sif:
	apptainer build --build-arg FROM=$(IMAGE):$(TAG) $(SIF) containers/harness.def
	sha256sum $(SIF)
