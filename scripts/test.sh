#!/usr/bin/env bash
# The test command: builds everything, then runs the unit tests and the integration tests, which
# start their own throwaway PostgreSQL servers (see tests/util/mod.rs). Extra arguments go to
# the test binaries, e.g. `scripts/test.sh copies_generated_columns`.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --locked --all-targets
cargo test --locked -- --test-threads 4 "$@"
