# keyward: `make dev` serves the worker locally; `make test` runs every test. Both install what is missing.
SHELL := bash
.SHELLFLAGS := -euo pipefail -c
ENV := source scripts/env.sh &&

.PHONY: setup dev test test-native test-wasm test-e2e test-console build lint fmt openapi bench fuzz

setup:
	@scripts/setup.sh

dev: setup
	@scripts/dev.sh

test: setup lint test-native test-wasm test-e2e test-console
	@echo "all tests passed"

lint:
	@$(ENV) cargo fmt --all -- --check
	@$(ENV) cargo clippy --all-targets --quiet -- -D warnings
	@$(ENV) cargo clippy --all-targets --quiet --target wasm32-unknown-unknown -- -D warnings
	@$(ENV) cargo clippy -p keyward-cli --all-targets --quiet -- -D warnings

# The Worker's tests (the root package), then the command-line client's (cli/, native only).
test-native:
	@$(ENV) cargo test
	@$(ENV) cargo test -p keyward-cli

test-wasm:
	@$(ENV) cargo test --target wasm32-unknown-unknown

build:
	@scripts/build.sh

test-e2e: build
	@$(ENV) node --test --test-concurrency=1 'e2e/*.test.mjs'

# The console: its types against the committed OpenAPI document, Biome, the size budget, then the
# browser tests (Playwright driving Debian's Chromium) against the built worker and the stand-in.
test-console: build
	@$(ENV) cd console && npm run --silent typecheck && npm run --silent lint && npm run --silent size
	@$(ENV) cd console && npx playwright test

fmt:
	@$(ENV) cargo fmt --all

# Rewrite src/api/openapi.json from the route table and the body types (src/api/doc); the native
# test tests/openapi.rs fails whenever the committed document differs from what they generate.
openapi:
	@$(ENV) KEYWARD_WRITE_OPENAPI=1 cargo test --quiet --test openapi the_committed_document_is_the_one_the_types_generate

# Load figures against the local runtime, written to bench/results.md (a few minutes).
bench: setup
	@scripts/bench.sh

# Coverage-guided fuzzing of the key parser and request bodies (FUZZ_SECONDS per target, default 60).
fuzz:
	@scripts/fuzz.sh $(FUZZ_SECONDS)
