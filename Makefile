# Every command of the project lives here. `make demo` and `make test` work on a fresh machine:
# they install what they need (Debian packages, a virtualenv, Python deps) before they run.

SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV    ?= .venv
PY      := $(VENV)/bin/python
PYTHON  ?= python3
STAMP   := $(VENV)/.deps-stamp
APT_PKGS := qemu-utils chromium
BENCH_DIR ?= .benchmarks

.PHONY: help
help:
	@echo "make demo    set up, then run the engine demo and the capacity plans (reports/)"
	@echo "make test    set up, then run every check (lint, types, Rust and Python tests)"
	@echo "make bench   run the benchmarks for real (pytest-benchmark JSON in $(BENCH_DIR))"
	@echo "make fuzz    run the fuzz targets for a set time"

# --- setup -----------------------------------------------------------------------------------
.PHONY: system-deps
system-deps:
	@missing=""; for p in $(APT_PKGS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		echo "installing Debian packages:$$missing"; \
		SUDO=""; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing; \
	fi

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "maturin>=1.7,<2"
	touch $(STAMP)

.PHONY: setup
setup: system-deps $(STAMP)

.PHONY: build-dev
build-dev: setup
	VIRTUAL_ENV=$(abspath $(VENV)) PATH=$(abspath $(VENV))/bin:$$PATH $(VENV)/bin/maturin develop --release -q --extras dev

# --- checks ----------------------------------------------------------------------------------
.PHONY: lint-rust
lint-rust:
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings

.PHONY: test-rust
test-rust:
	cargo test

.PHONY: lint-python
lint-python: build-dev
	$(VENV)/bin/ruff check python tests benches
	$(VENV)/bin/ruff format --check python tests benches
	$(VENV)/bin/mypy
	$(PY) -m mypy.stubtest vssim._engine

.PHONY: test-python
test-python: build-dev
	$(PY) -m pytest -q --benchmark-disable --basetemp=$(abspath .pytest-tmp)

.PHONY: test
test: setup lint-rust test-rust lint-python test-python

.PHONY: lint
lint: lint-rust lint-python

# --- running ---------------------------------------------------------------------------------
# The capacity plans of the 64-node examples at full size (4,000 VMs each), with the default
# sweep, on the estimate engine (`vssim plan`'s default: the expected counts in closed form; the
# exact engine would simulate ~15 billion guest writes per full backup). Each plan prints its
# headline table; the reports go to reports/. See README "Capacity planning" › "Two engines".
DEMO_PLAN_OPTS ?=
DEMO_PLANS    := examples/ws2012-64n-4000vm.toml examples/ws2008r2-64n-4000vm.toml

.PHONY: demo
demo: build-dev
	$(VENV)/bin/vssim demo
	@for s in $(DEMO_PLANS); do \
		echo; echo "== vssim plan $$s $(DEMO_PLAN_OPTS)"; \
		$(VENV)/bin/vssim plan $$s --out reports/$$(basename $$s .toml) $(DEMO_PLAN_OPTS) || exit 1; \
	done

.PHONY: bench
bench: build-dev
	mkdir -p $(BENCH_DIR)
	VSSIM_BENCH_FULL=1 $(PY) -m pytest benches -q --benchmark-only --benchmark-json=$(BENCH_DIR)/latest.json \
		--benchmark-autosave --benchmark-storage=file://$(BENCH_DIR)
	$(VENV)/bin/vssim bench-report $(BENCH_DIR)/latest.json --out $(BENCH_DIR)/report
	cargo bench -p vssim-engine
	# soaks: volume crash tests (kill -9 sessions) and random interleavings, far longer than in make test
	VSSIM_KILL_ROUNDS=10 VSSIM_KILL_SESSIONS=4 $(PY) -m pytest -q tests/test_volume.py -k kill
	PROPTEST_CASES=2000 cargo test -q -p vssim-engine --release volume::tests
	# materialized mode: the model against the real VHDX writer and real volumes, many more cases
	PROPTEST_CASES=300 cargo test -q -p vssim-engine --release workload::
	# hostile input (issue 15): mutated scenarios through the loader and short runs (a random
	# seed each time, printed), and materialized runs killed at many random instants
	VSSIM_SOAK_CASES=5000 VSSIM_SOAK_SEED=$${VSSIM_SOAK_SEED:-$$RANDOM} $(PY) -m pytest -q -s tests/test_scenario_soak.py
	VSSIM_KILL_ROUNDS=20 $(PY) -m pytest -q tests/test_hostile_inputs.py -k random_instant
	# VHDX safety: merges killed at 64 instants, 4 writers racing for 40 turns each, a power cut
	# at every write of a session and of a merge, and 20,000 damaged or forged files
	VSSIM_VHDX_MERGE_KILLS=64 VSSIM_VHDX_WRITER_ROUNDS=40 $(PY) -m pytest -q tests/test_hostile_vhdx.py -k "killed or concurrent"
	cargo test -q -p vssim-engine --release --test vhdx_powercut
	VSSIM_FUZZ_CASES=20000 cargo test -q --release -p vssim-engine --test vhdx damaged_files_never_panic
	# the estimate tier against the per-write engine at full size (the 1 % agreement table, the
	# drop-a-term check); `cargo test` runs smaller versions
	cargo test -q -p vssim-engine --release estimate:: -- --nocapture

FUZZ_SECONDS ?= 120
.PHONY: fuzz
# cargo-fuzz (libFuzzer) on nightly when it can be had; otherwise the same driver
# (vssim_engine::vhdx::fuzz) as a proptest loop with many cases on stable.
fuzz:
	@if cargo +nightly --version >/dev/null 2>&1 && \
	    { command -v cargo-fuzz >/dev/null 2>&1 || cargo install cargo-fuzz --locked; }; then \
		cd fuzz && cargo +nightly fuzz run --sanitizer none vhdx_open -- \
			-max_total_time=$(FUZZ_SECONDS) -max_len=600 -len_control=0; \
	else \
		echo "cargo-fuzz unavailable: running the proptest fuzz loop instead"; \
		VSSIM_FUZZ_CASES=$$(( $(FUZZ_SECONDS) * 200 )) cargo test --release -p vssim-engine \
			--test vhdx damaged_files_never_panic; \
	fi

.PHONY: format
format: setup
	cargo fmt --all
	$(VENV)/bin/ruff format python tests benches
	$(VENV)/bin/ruff check --fix python tests benches

.PHONY: clean
clean:
	rm -rf $(VENV) target $(BENCH_DIR)
