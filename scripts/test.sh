#!/usr/bin/env bash
# The test command: gets the PostgreSQL server programs if they are missing, builds
# everything, then runs the unit tests and the integration tests, which start their own
# throwaway PostgreSQL servers (see tests/util/). Extra arguments go to the test binaries,
# e.g. `scripts/test.sh copies_generated_columns`. The cross-version tests need server builds
# of 12, 13 and 18: `scripts/fetch-postgres.sh 12 13 18` (.ci/run does it).
#
# The whole suite against other servers, source and destination apart:
#   PGCOPY_TEST_SOURCE_BINDIR=$(scripts/fetch-postgres.sh 17 | cut -d' ' -f2) \
#   PGCOPY_TEST_DEST_BINDIR=$(scripts/fetch-postgres.sh 13 | cut -d' ' -f2) scripts/test.sh
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib/cluster.sh
source scripts/lib/cluster.sh
ensure_postgres

cargo build --locked --all-targets
cargo test --locked -- --test-threads 4 "$@"
