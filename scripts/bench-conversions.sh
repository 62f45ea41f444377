#!/usr/bin/env bash
# What converted columns cost (issue 18): one table copied into a destination of the same
# types, and into one whose every column was widened (int → bigint twice, varchar(50) → text,
# numeric(12,2) → numeric(14,4), timestamp(0) → timestamp, json → jsonb), on two throwaway
# servers with production's settings (fsync on, wal_level=replica).
#
#   scripts/bench-conversions.sh [ROWS (2000000)] [RUNS (5)]
#
# Rows per round, round robin, each into a freshly truncated destination table:
#   pgcopy same types     pgcopy copy into the same types (binary)
#   pgcopy widened        pgcopy copy into the widened table (its choice: the source casts
#                         int, numeric, json in COPY (SELECT …) TO STDOUT (FORMAT binary); the
#                         rest go as they are)
#   pipe binary + cast    psql COPY (SELECT casts) TO STDOUT (FORMAT binary) | COPY FROM binary
#   pipe text             psql COPY TO STDOUT (text) | COPY FROM text: the destination parses
# and prints the median wall time of each, and each row ÷ "pgcopy same types" as the median of
# the rounds' own ratios with their range (the machine is shared and noisy). PGCOPY_BIN (else
# `cargo build --release` here), PG_BINDIR (see scripts/lib/cluster.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib/cluster.sh
source scripts/lib/cluster.sh
rows=${1:-2000000}
runs=${2:-5}

bench_pair

echo "==> filling $rows rows" >&2
cluster_psql src bench -c "
    CREATE SCHEMA same;
    CREATE TABLE same.t (id int PRIMARY KEY, n int, name varchar(50), amount numeric(12,2),
                    at timestamp(0), doc json);
    INSERT INTO same.t
    SELECT i, i % 1000, 'name ' || md5(i::text), i * 1.25,
           '2024-01-01'::timestamp + i * interval '1 s',
           json_build_object('i', i, 'tag', 'x' || (i % 50))
    FROM generate_series(1, $rows) i"
cluster_psql src bench -c "VACUUM ANALYZE same.t"
cluster_psql dst bench -c "
    CREATE SCHEMA same; CREATE SCHEMA wide;
    CREATE TABLE same.t (id int PRIMARY KEY, n int, name varchar(50), amount numeric(12,2),
                         at timestamp(0), doc json);
    CREATE TABLE wide.t (id bigint PRIMARY KEY, n bigint, name text, amount numeric(14,4),
                         at timestamp, doc jsonb)"
# pgcopy copies a table into the table of the same name: a second source database whose
# schema is called `wide`.
cluster_psql src postgres -c "CREATE DATABASE bench_wide TEMPLATE bench"
cluster_psql src bench_wide -c "ALTER SCHEMA same RENAME TO wide"

src_sock=(-h "$WORKDIR/src/sock" -p "$(cluster_port src)" -U postgres)
dst_sock=(-h "$WORKDIR/dst/sock" -p "$(cluster_port dst)" -U postgres)
psql_bin=$(pg_bindir)/psql

run_pgcopy() { # DB
    "$PGCOPY_BIN" copy --source "$(cluster_url src "$1")" --dest "$(cluster_url dst bench)" \
        --yes --no-progress --quiet --no-analyze
}
pipe() { # SELECT-OR-TABLE FORMAT TARGET
    "$psql_bin" -X -q "${src_sock[@]}" -d bench_wide -c "COPY $1 TO STDOUT (FORMAT $2)" |
        "$psql_bin" -X -q "${dst_sock[@]}" -d bench -c "COPY $3 FROM STDIN (FORMAT $2)"
}
timed() { # LABEL COMMAND...: prints LABEL SECONDS
    local label=$1 start end
    shift
    cluster_psql dst bench -c "TRUNCATE same.t, wide.t; CHECKPOINT"
    start=$(date +%s.%N)
    "$@"
    end=$(date +%s.%N)
    echo "$label $(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.3f", b - a }')"
}

casts="SELECT id::bigint, n::bigint, name, amount, at, doc::jsonb FROM wide.t"
results=$(mktemp)
for round in $(seq 1 "$runs"); do
    echo "==> round $round of $runs" >&2
    {
        timed same run_pgcopy bench
        timed widened run_pgcopy bench_wide
        timed cast pipe "($casts)" binary wide.t
        timed text pipe wide.t text wide.t
    } | sed "s/^/$round /" >>"$results"
    [[ $(cluster_psql dst bench -Atc "SELECT count(*) FROM wide.t") == "$rows" ]] ||
        { echo "the text pipe did not copy every row" >&2; exit 1; }
done

echo "converted columns: $rows rows, $runs rounds, fsync on, wal_level=replica, $(nproc) cores"
awk '
    { t[$2, $1] = $3; if (!($1 in seen)) { seen[$1] = 1; rounds[++n] = $1 } }
    function median(v, m,   i, j, s) {
        for (i = 1; i <= m; i++) for (j = i + 1; j <= m; j++) if (v[j] < v[i]) { s = v[i]; v[i] = v[j]; v[j] = s }
        return (m % 2) ? v[(m + 1) / 2] : (v[m / 2] + v[m / 2 + 1]) / 2
    }
    END {
        split("same widened cast text", order, " ")
        names["same"] = "pgcopy same types"; names["widened"] = "pgcopy widened"
        names["cast"] = "pipe binary + cast"; names["text"] = "pipe text"
        printf "%-20s %10s %22s\n", "row", "median s", "÷ pgcopy same types"
        for (k = 1; k <= 4; k++) {
            r = order[k]; lo = 1e9; hi = 0
            for (i = 1; i <= n; i++) {
                secs[i] = t[r, rounds[i]]; ratio[i] = secs[i] / t["same", rounds[i]]
                if (ratio[i] < lo) lo = ratio[i]; if (ratio[i] > hi) hi = ratio[i]
            }
            printf "%-20s %10.2f %8.2f (%.2f-%.2f)\n", names[r], median(secs, n), median(ratio, n), lo, hi
        }
    }' "$results"
rm -f "$results"
