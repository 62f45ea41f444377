#!/usr/bin/env bash
# The one-command demo: two throwaway PostgreSQL servers, a source filled with pgbench's tables
# and a table of mixed types, the schema copied to the destination, then `pgcopy copy` and a
# row-count comparison of both sides. Everything is removed on exit.
#
#   scripts/demo.sh                      # builds the release binary first
#   PGCOPY_BIN=target/debug/pgcopy scripts/demo.sh   # uses an existing binary
#   DEMO_SCALE=1 scripts/demo.sh         # pgbench scale (default 10: one million accounts)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
# shellcheck source=scripts/lib/cluster.sh
source scripts/lib/cluster.sh
# Servers and the client programs the demo fills and checks the data with.
ensure_postgres --clients

scale=${DEMO_SCALE:-10}
db=demo

step() { printf '\n==> %s\n' "$*"; }

WORKDIR=$(cluster_workdir)
teardown() {
    cluster_stop source || true
    cluster_stop dest || true
    rm -rf "$WORKDIR"
}
trap teardown EXIT

step "Starting two PostgreSQL servers in $WORKDIR"
src_port=$(free_port)
dst_port=$(free_port)
while [[ $dst_port == "$src_port" ]]; do dst_port=$(free_port); done
cluster_start source "$src_port"
cluster_start dest "$dst_port"
cluster_psql source postgres -c "CREATE DATABASE $db"
cluster_psql dest postgres -c "CREATE DATABASE $db"
src_url=$(cluster_url source "$db")
dst_url=$(cluster_url dest "$db")
echo "source: $src_url"
echo "dest:   $dst_url"

step "Filling the source: pgbench -i -s $scale --foreign-keys"
"$(pg_bindir)/pgbench" -i -s "$scale" -q --foreign-keys \
    -h "$WORKDIR/source/sock" -p "$src_port" -U postgres "$db"

step "Adding a table of mixed types (50,000 rows)"
cluster_psql source "$db" <<'SQL'
CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');
CREATE TYPE point3 AS (x double precision, y double precision, z double precision);

CREATE TABLE mixed (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    amount      numeric(14, 4) NOT NULL,
    label       text,
    doc         jsonb,
    blob        bytea,
    happened_at timestamptz NOT NULL,
    uid         uuid NOT NULL DEFAULT gen_random_uuid(),
    scores      int[],
    tags        text[],
    feeling     mood,
    position    point3,
    amount_x2   numeric GENERATED ALWAYS AS (amount * 2) STORED
);

INSERT INTO mixed (amount, label, doc, blob, happened_at, scores, tags, feeling, position)
SELECT
    round((random() * 100000)::numeric, 4),
    CASE WHEN i % 10 = 0 THEN NULL ELSE 'row ' || i || E' with\ttab, "quotes" and \\ backslash' END,
    jsonb_build_object('i', i, 'even', i % 2 = 0, 'nested', jsonb_build_array(i, 'x', null)),
    decode(md5(i::text), 'hex'),
    timestamptz '2024-01-01 00:00:00+00' + i * interval '1 minute',
    ARRAY[i, i * 2, i * 3],
    ARRAY['tag' || (i % 7), 'ünïcödé', NULL],
    (ARRAY['sad', 'ok', 'happy']::mood[])[1 + i % 3],
    ROW(i / 3.0, -i, i * 0.5)::point3
FROM generate_series(1, 50000) AS i;
ANALYZE;
SQL

step "Copying the schema: pg_dump --schema-only | psql"
"$(pg_bindir)/pg_dump" --schema-only --no-owner --no-privileges \
    -h "$WORKDIR/source/sock" -p "$src_port" -U postgres "$db" |
    cluster_psql dest "$db" >/dev/null

if [[ -n ${PGCOPY_BIN:-} ]]; then
    pgcopy=$PGCOPY_BIN
else
    step "Building pgcopy: cargo build --release"
    cargo build --release --locked
    pgcopy=${CARGO_TARGET_DIR:-$root/target}/release/pgcopy
fi

step "pgcopy copy --source $src_url --dest $dst_url --yes --verify"
"$pgcopy" copy --source "$src_url" --dest "$dst_url" --yes --verify --state-dir "$WORKDIR/state"

step "Rows per table, source vs. destination"
tables=$(cluster_psql source "$db" -At -c "
    SELECT format('%I.%I', schemaname, tablename)
    FROM pg_tables
    WHERE schemaname NOT IN ('pg_catalog', 'information_schema')
    ORDER BY 1")
printf '%-32s %12s %12s  %s\n' table source dest ''
status=0
for table in $tables; do
    src_rows=$(cluster_psql source "$db" -At -c "SELECT count(*) FROM $table")
    dst_rows=$(cluster_psql dest "$db" -At -c "SELECT count(*) FROM $table")
    mark=ok
    if [[ $src_rows != "$dst_rows" ]]; then
        mark=DIFFERENT
        status=1
    fi
    printf '%-32s %12s %12s  %s\n' "$table" "$src_rows" "$dst_rows" "$mark"
done
exit "$status"
