#!/usr/bin/env bash
# What following costs (issue 19), against PostgreSQL's own subscription, on two throwaway
# servers with production's settings (fsync on, synchronous_commit on; the source at
# wal_level=logical, which following needs, the destination at replica).
#
#   scripts/bench-follow.sh [SCALE (10)] [SECONDS of backlog (10)] [RUNS (3)]
#
# The source is pgbench's database at SCALE (its history with REPLICA IDENTITY FULL, which
# pgcopy asks of a table without a key). Two destination databases start equal: one that
# `pgcopy copy --follow` copied into (then stopped), one that a plain copy filled and that a
# native subscription (`copy_data = false`, its own slot, created disabled) is attached to.
# Each round, for each workload (pgbench's TPC-B-like transactions, and insert-only ones),
# pgbench writes for SECONDS while neither follows: a backlog both slots hold. Then
#   pgcopy:  `pgcopy copy --follow --resume` until its slot confirms the source's position
#            after the backlog (it confirms only what the destination committed), then
#            stopped (Ctrl-C);
#   native:  ALTER SUBSCRIPTION … ENABLE until its slot confirms that position, then
#            DISABLE (the apply worker commits with synchronous_commit = off, a
#            subscription's default, and confirms once its WAL is flushed).
# Catch-up time includes starting up. Printed: the backlog's transactions, the median
# transactions per second of each and pgcopy ÷ native as the median of the rounds' own
# ratios with their range (the machine is shared and noisy). Then, once: the lag while
# pgbench writes at a fixed rate (-R) that both sustain, and cutover's downtime on an idle
# source (`pgcopy cutover` from start to exit), and one transaction of 1,000,000 rows:
# how long each takes from its commit until its slot confirms it, and whether the source
# streamed it (pgcopy from PostgreSQL 14 on) or spilled it to its own disk (the slot's
# pg_stat_replication_slots). pgcopydb is not run: Debian's 0.10, tried
# on the same kind of backlog (`stream setup --not-consistent` after a copy, `stream
# sentinel set apply`, `follow --resume --endpos`, wal2json on the source), streamed the
# backlog (7,797 pgbench transactions of 3 s) but never reached its end position (still
# running after 120 s) and left its destination different from the source (another
# sum(abalance)): there is no catch-up time to compare.
#
# PGCOPY_BIN (else `cargo build --release` here), PG_BINDIR (see scripts/lib/cluster.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib/cluster.sh
source scripts/lib/cluster.sh
scale=${1:-10}
seconds=${2:-10}
runs=${3:-3}

follower=
cleanup() {
    [[ -n $follower ]] && kill -9 "$follower" 2>/dev/null || true
    follow_pair_stop
}
trap cleanup EXIT
follow_pair "$scale"
settings=("${follow_settings[@]}")
for db in ours native; do
    cluster_psql dst postgres -c "CREATE DATABASE $db"
    cluster_psql dst "$db" -q <<<"$bench_schema" >/dev/null
done
insert_only=$WORKDIR/insert.sql
cat >"$insert_only" <<'EOF'
\set aid random(1, 100000 * :scale)
\set bid random(1, 1 * :scale)
\set tid random(1, 10 * :scale)
\set delta random(-5000, 5000)
INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES (:tid, :bid, :aid, :delta, CURRENT_TIMESTAMP);
EOF

ours_url=$(cluster_url dst ours)
slot_sql() { # NAME-PATTERN: how far behind the source's WAL the slot confirmed, in bytes
    cluster_psql src bench -Atc "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn)
                                   FROM pg_replication_slots WHERE slot_name LIKE '$1'"
}
wait_confirmed() { # NAME-PATTERN TARGET-LSN
    until [[ $(cluster_psql src bench -Atc "SELECT confirmed_flush_lsn >= '$2'
                  FROM pg_replication_slots WHERE slot_name LIKE '$1'") == t ]]; do
        sleep 0.05
    done
}
follow_in_background() { # pgcopy copy --follow [--resume], its pid in $follower
    "$PGCOPY_BIN" copy --source "$src_url" --dest "$ours_url" --yes --no-progress --quiet \
        --follow "$@" &
    follower=$!
}
stop_follower() {
    kill -INT "$follower"
    wait "$follower" || true
    follower=
}
now() { date +%s.%N; }

echo "==> copying, then the native subscription" >&2
follow_in_background
until [[ $(cluster_psql dst ours -Atc "SELECT count(*) FROM pg_replication_origin") == 1 ]]; do
    sleep 0.2
done
stop_follower
"$PGCOPY_BIN" copy --source "$src_url" --dest "$(cluster_url dst native)" --yes --no-progress \
    --quiet
cluster_psql src bench -c "CREATE PUBLICATION native FOR TABLE pgbench_accounts,
                               pgbench_branches, pgbench_tellers, pgbench_history" \
    -c "SELECT pg_create_logical_replication_slot('native', 'pgoutput')" >/dev/null
cluster_psql dst native -c "CREATE SUBSCRIPTION native
    CONNECTION 'host=$WORKDIR/src/sock port=$(cluster_port src) dbname=bench user=postgres'
    PUBLICATION native
    WITH (create_slot = false, slot_name = 'native', copy_data = false, enabled = false)"

results=$(mktemp)
for round in $(seq 1 "$runs"); do
    for workload in tpcb insert; do
        echo "==> round $round of $runs: $workload backlog of ${seconds}s" >&2
        args=(-n -c 2 -T "$seconds")
        [[ $workload == insert ]] && args+=(-f "$insert_only")
        transactions=$("$bindir/pgbench" "${args[@]}" "${src_conn[@]}" bench 2>/dev/null |
            awk '/number of transactions actually processed/ { print $NF }' | cut -d/ -f1)
        target=$(cluster_psql src bench -Atc "SELECT pg_current_wal_lsn()")

        start=$(now)
        follow_in_background --resume
        wait_confirmed 'pgcopy_follow_%' "$target"
        ours=$(awk -v a="$start" -v b="$(now)" 'BEGIN { printf "%.3f", b - a }')
        stop_follower

        start=$(now)
        cluster_psql dst native -qc "ALTER SUBSCRIPTION native ENABLE"
        wait_confirmed native "$target"
        theirs=$(awk -v a="$start" -v b="$(now)" 'BEGIN { printf "%.3f", b - a }')
        cluster_psql dst native -qc "ALTER SUBSCRIPTION native DISABLE"
        until [[ $(cluster_psql src bench -Atc "SELECT active FROM pg_replication_slots
                                                 WHERE slot_name = 'native'") == f ]]; do
            sleep 0.05
        done
        echo "$workload $round $transactions $ours $theirs" >>"$results"
    done
done
[[ $(cluster_psql dst ours -Atc "SELECT sum(abalance) FROM pgbench_accounts") == \
    $(cluster_psql src bench -Atc "SELECT sum(abalance) FROM pgbench_accounts") ]] ||
    { echo "pgcopy's destination differs from the source" >&2; exit 1; }

# One transaction of 1,000,000 rows, applied by each while the source is otherwise idle:
# from its commit until the slot confirms it, and what the source did with it meanwhile
# (its slot's statistics: streamed to the follower as it ran, or spilled to its own disk).
big_sql="INSERT INTO pgbench_history (tid, bid, aid, delta, mtime)
             SELECT 1, 1, i, 0, now() FROM generate_series(1, 1000000) i"
slot_stats() { # NAME-PATTERN: streamed, spilled transactions and spilled bytes so far
    cluster_psql src bench -Atc "SELECT stream_txns || ' ' || spill_txns || ' ' || spill_bytes
                                   FROM pg_stat_replication_slots WHERE slot_name LIKE '$1'"
}
big_transaction() { # NAME-PATTERN: "seconds streamed spilled spilled-MiB"
    local before after start target
    wait_confirmed "$1" "$(cluster_psql src bench -Atc "SELECT pg_current_wal_lsn()")"
    before=$(slot_stats "$1")
    cluster_psql src bench -qc "$big_sql"
    start=$(now)
    target=$(cluster_psql src bench -Atc "SELECT pg_current_wal_lsn()")
    wait_confirmed "$1" "$target"
    after=$(slot_stats "$1")
    awk -v a="$start" -v b="$(now)" -v x="$before" -v y="$after" 'BEGIN {
        split(x, p, " "); split(y, q, " ")
        printf "%.2f %d %d %.0f\n", b - a, q[1] - p[1], q[2] - p[2], (q[3] - p[3]) / 1048576 }'
}
echo "==> one transaction of 1,000,000 rows, applied by each" >&2
follow_in_background --resume
read -r big_ours_s big_ours_streamed big_ours_spilled big_ours_mib < <(big_transaction 'pgcopy_follow_%')
stop_follower
cluster_psql dst native -qc "ALTER SUBSCRIPTION native ENABLE"
read -r big_native_s big_native_streamed big_native_spilled big_native_mib < <(big_transaction native)
cluster_psql dst native -qc "ALTER SUBSCRIPTION native DISABLE"

echo "==> steady state: pgbench -R 500 for 20s while pgcopy follows" >&2
follow_in_background --resume
wait_confirmed 'pgcopy_follow_%' "$(cluster_psql src bench -Atc "SELECT pg_current_wal_lsn()")"
"$bindir/pgbench" -n -c 2 -T 20 -R 500 "${src_conn[@]}" bench >/dev/null 2>&1 &
writer=$!
lags=$(mktemp)
while kill -0 "$writer" 2>/dev/null; do
    slot_sql 'pgcopy_follow_%' >>"$lags"
    sleep 0.5
done
wait "$writer"
sleep 2
echo "==> cutover on an idle source" >&2
start=$(now)
"$PGCOPY_BIN" cutover --source "$src_url" --dest "$ours_url" --quiet
downtime=$(awk -v a="$start" -v b="$(now)" 'BEGIN { printf "%.2f", b - a }')
wait "$follower"
follower=

echo "following: pgbench scale $scale, ${seconds}s backlogs, $runs rounds, fsync on," \
    "synchronous_commit on, source wal_level=logical, $(nproc) cores"
awk '
    function median(v, m,   i, j, s) {
        for (i = 1; i <= m; i++) for (j = i + 1; j <= m; j++) if (v[j] < v[i]) { s = v[i]; v[i] = v[j]; v[j] = s }
        return (m % 2) ? v[(m + 1) / 2] : (v[m / 2] + v[m / 2 + 1]) / 2
    }
    { n[$1]++; k = n[$1]; tx[$1, k] = $3; a[$1, k] = $3 / $4; b[$1, k] = $3 / $5 }
    END {
        printf "%-12s %12s %14s %14s %22s\n", "backlog", "transactions", "pgcopy tx/s", "native tx/s", "pgcopy ÷ native"
        split("tpcb insert", order, " ")
        for (w = 1; w <= 2; w++) {
            r = order[w]; m = n[r]; lo = 1e9; hi = 0
            for (i = 1; i <= m; i++) {
                t[i] = tx[r, i]; x[i] = a[r, i]; y[i] = b[r, i]; q[i] = x[i] / y[i]
                if (q[i] < lo) lo = q[i]; if (q[i] > hi) hi = q[i]
            }
            printf "%-12s %12d %14.0f %14.0f %8.2f (%.2f-%.2f)\n", r, median(t, m), median(x, m), median(y, m), median(q, m), lo, hi
        }
    }' "$results"
sort -n "$lags" | awk '{ v[NR] = $1 } END {
    printf "steady state at 500 tx/s: lag median %d bytes, max %d bytes (%d samples)\n", v[int((NR + 1) / 2)], v[NR], NR }'
echo "one transaction of 1,000,000 rows, from its commit until confirmed:" \
    "pgcopy ${big_ours_s}s ($big_ours_streamed streamed, $big_ours_spilled spilled," \
    "${big_ours_mib} MiB spilled on the source), native ${big_native_s}s" \
    "($big_native_streamed streamed, $big_native_spilled spilled, ${big_native_mib} MiB spilled)"
echo "cutover on an idle source: ${downtime}s from start to exit"
rm -f "$results" "$lags"
