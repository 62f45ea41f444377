#!/usr/bin/env bash
# What `copy --follow`'s initial copy costs the source while it reads (issue 31's baseline,
# and its measure once the copy is chunked): on two throwaway servers with production's
# settings (fsync on; the source at wal_level=logical), pgbench's database at SCALE on the
# source (pgbench_accounts is the big keyed table), pgbench writing to it at RATE
# transactions per second throughout, and `pgcopy copy --follow` copying it.
#
#   scripts/bench-snapshot-age.sh [SCALE (50)] [RATE (200)] [RUNS (3)]
#
# Each run samples, once a second, from the source's own pg_stat_activity, pgcopy's sessions
# (application_name pgcopy) that hold a snapshot (backend_xmin not null): the oldest one's
# age in transactions (age(backend_xmin)), and in seconds (now() - xact_start). Printed per
# run: the initial copy's time (start until the destination records its progress), the
# largest of both ages, and the rows per second the follower applied while the copy ran
# (today: none, it applies only after the copy), from its --metrics-listen endpoint. Then, once: a follower killed (-9) half-way
# through its copy and resumed with --resume: how much of the copy is read again (today all
# of it: the snapshot is gone with the session, and it starts over with a new slot).
#
# The medians and ranges of the runs are printed with the settings. The vacuum horizon a
# snapshot holds back is the source's whole cluster's: every dead row newer than the
# oldest age printed here waits for the copy to end.
#
# PGCOPY_BIN (else `cargo build --release` here), PG_BINDIR (see scripts/lib/cluster.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib/cluster.sh
source scripts/lib/cluster.sh
scale=${1:-50}
rate=${2:-200}
runs=${3:-3}

follower=
writers=
sampler=
cleanup() {
    for pid in "$follower" "$writers" "$sampler"; do
        [[ -n $pid ]] && kill -9 "$pid" 2>/dev/null || true
    done
    follow_pair_stop
}
trap cleanup EXIT
follow_pair "$scale"
settings=("${follow_settings[@]}")
size=$(cluster_psql src bench -Atc "SELECT pg_size_pretty(pg_database_size('bench'))")

# A fresh destination database for each run.
fresh_destination() {
    cluster_psql dst postgres -qc "DROP DATABASE IF EXISTS run WITH (FORCE)"
    cluster_psql dst postgres -qc "CREATE DATABASE run"
    cluster_psql dst run -q <<<"$bench_schema" >/dev/null
    dst_url=$(cluster_url dst run)
}

# Samples pgcopy's snapshots on the source every second into FILE: "xid-age seconds".
sample_snapshots() {
    while true; do
        cluster_psql src bench -Atc "
            SELECT coalesce(max(age(backend_xmin)), 0) || ' ' ||
                   coalesce(round(max(extract(epoch FROM now() - xact_start))::numeric, 1), 0)
            FROM pg_stat_activity
            WHERE application_name = 'pgcopy' AND backend_xmin IS NOT NULL" >>"$1" || true
        sleep 1
    done
}

following() {
    [[ $(cluster_psql dst run -Atc "SELECT (SELECT count(*) FROM pg_replication_origin)
              + (to_regclass('pgcopy.follow_progress') IS NOT NULL)::int") == 1 ]]
}

metrics_port=$(free_port)
start_follower() {
    "$PGCOPY_BIN" copy --source "$src_url" --dest "$dst_url" --yes --no-progress --quiet \
        --follow --metrics-listen "$metrics_port" "$@" &
    follower=$!
}

# Rows the follower has applied so far, as its endpoint says (0 before it follows).
applied_rows() {
    curl -fsS "http://127.0.0.1:$metrics_port/metrics" 2>/dev/null |
        awk '$1 == "pgcopy_follow_rows_total" { print $2; found = 1 } END { if (!found) print 0 }'
}

stop_follower() {
    kill -INT "$follower" 2>/dev/null || true
    wait "$follower" 2>/dev/null || true
    follower=
}

abandon() {
    "$PGCOPY_BIN" abandon --source "$src_url" --dest "$dst_url" --quiet >/dev/null 2>&1 || true
}

median() { sort -n | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
range() { sort -n | awk 'NR == 1 { lo = $1 } { hi = $1 } END { print lo "–" hi }'; }

"$bindir/pgbench" -n -c 4 -R "$rate" -T 100000 "${src_conn[@]}" bench >/dev/null 2>&1 &
writers=$!
results=$WORKDIR/results
: >"$results"
for ((run = 1; run <= runs; run++)); do
    fresh_destination
    samples=$WORKDIR/samples.$run
    : >"$samples"
    sample_snapshots "$samples" &
    sampler=$!
    history_before=$(cluster_psql src bench -Atc "SELECT count(*) FROM pgbench_history")
    started=$(date +%s.%N)
    start_follower
    until following; do
        kill -0 "$follower" 2>/dev/null || { echo "the follower ended during its copy" >&2; exit 1; }
        sleep 0.2
    done
    copied=$(date +%s.%N)
    # Rows the follower applied while it copied (before its copy ended, the changes since
    # its snapshot wait in the slot).
    applied_during=$(applied_rows)
    kill "$sampler" 2>/dev/null || true
    wait "$sampler" 2>/dev/null || true
    sampler=
    copy_s=$(awk -v a="$started" -v b="$copied" 'BEGIN { printf "%.1f", b - a }')
    max_age=$(awk '{ print $1 }' "$samples" | sort -n | tail -n 1)
    max_held=$(awk '{ print $2 }' "$samples" | sort -n | tail -n 1)
    echo "$copy_s ${max_age:-0} ${max_held:-0} $applied_during" >>"$results"
    printf 'run %d: initial copy %ss; oldest snapshot %s transactions, held %ss; applied during the copy: %s rows (history before: %s)\n' \
        "$run" "$copy_s" "${max_age:-0}" "${max_held:-0}" "$applied_during" "$history_before" >&2
    stop_follower
    abandon
done

# A follower killed half-way through its copy, then resumed.
fresh_destination
half=$(awk '{ print $1 }' "$results" | median | awk '{ printf "%.1f", $1 / 2 }')
start_follower
sleep "$half"
kill -9 "$follower"
wait "$follower" 2>/dev/null || true
follower=
started=$(date +%s.%N)
start_follower --resume
until following; do sleep 0.2; done
resumed_s=$(awk -v a="$started" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
stop_follower
abandon
kill "$writers" 2>/dev/null || true
wait "$writers" 2>/dev/null || true
writers=

cat <<EOF
pgcopy $("$PGCOPY_BIN" version | awk '{ print $2 }'), source: pgbench scale $scale ($size), pgbench -R $rate writing throughout
settings: ${settings[*]} wal_level=logical (source), replica (destination)
initial copy (s), median (range) of $runs:            $(awk '{ print $1 }' "$results" | median) ($(awk '{ print $1 }' "$results" | range))
oldest snapshot, age(backend_xmin) (transactions):   $(awk '{ print $2 }' "$results" | median) ($(awk '{ print $2 }' "$results" | range))
oldest snapshot held (s):                            $(awk '{ print $3 }' "$results" | median) ($(awk '{ print $3 }' "$results" | range))
rows applied while the copy ran:                     $(awk '{ print $4 }' "$results" | median)
killed (-9) after ${half}s of its copy, resumed:     ${resumed_s}s to copy again (the whole copy read again)
EOF
