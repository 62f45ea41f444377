#!/usr/bin/env bash
# What `copy --follow`'s initial copy costs the source while it reads: the copy in one
# snapshot (pgcopy before issue 31, built from BASELINE_REF) against the chunked copy (this
# checkout), in one run, on the same data. Two throwaway servers with production's settings
# (fsync on; the source at wal_level=logical), pgbench's database at SCALE on the source —
# the mixed set: pgbench_accounts, the big keyed table (read in chunks), pgbench_history
# without a key (read whole), two small tables — and pgbench writing to it at RATE
# transactions per second throughout.
#
#   scripts/bench-snapshot-age.sh [SCALE (50)] [RATE (200)] [RUNS (3)]
#
# Each run, alternating the two builds, samples once a second from the source's own
# pg_stat_activity pgcopy's sessions (application_name pgcopy) that hold a snapshot
# (backend_xmin not null): the oldest one's age in transactions (age(backend_xmin)) and in
# seconds (now() - xact_start). Printed per build: the initial copy's time (start until the
# destination records its progress and no chunk is left to read), the largest of both ages,
# the rows the follower applied while the copy ran, and per second of it (from its
# --metrics-listen endpoint). Then, once per build: a follower
# killed (-9) half-way through its copy and resumed with --resume: the bytes read again
# (sent before the kill + sent by the resumed run - a whole copy's), from the endpoints.
#
# The vacuum horizon a snapshot holds back is the source's whole cluster's: every dead row
# newer than the oldest age printed here waits until that snapshot ends.
#
# PGCOPY_BIN (else `cargo build --release` here), BASELINE_BIN (else BASELINE_REF, default
# e8760bf, built in a worktree under the work directory), CHUNK (a --chunk-size for the
# chunked build), CHUNKED_OPTIONS (more options for it, e.g. "--indexes keep"),
# ONLY=accounts (the one big keyed table alone: both builds copy and follow
# pgbench_accounts only, which pgbench updates in every transaction), PG_BINDIR (see
# scripts/lib/cluster.sh).
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

if [[ -z ${BASELINE_BIN:-} ]]; then
    ref=${BASELINE_REF:-e8760bf}
    git worktree add --detach "$WORKDIR/baseline" "$ref" >&2
    (cd "$WORKDIR/baseline" && CARGO_TARGET_DIR=$WORKDIR/baseline-target \
        cargo build --release --locked >&2)
    BASELINE_BIN=$WORKDIR/baseline-target/release/pgcopy
    git worktree remove --force "$WORKDIR/baseline"
fi
chunked_args=()
[[ -n ${CHUNK:-} ]] && chunked_args=(--chunk-size "$CHUNK")
# shellcheck disable=SC2206 # words on purpose: options
[[ -n ${CHUNKED_OPTIONS:-} ]] && chunked_args+=($CHUNKED_OPTIONS)
both_args=()
data="the mixed set"
if [[ ${ONLY:-} == accounts ]]; then
    both_args=(--include-tables pgbench_accounts)
    data="pgbench_accounts alone"
fi

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

# Whether the follower's copy is over: every table done (its endpoint says so), the
# destination records its progress, and no chunk is left to read (the chunked follower
# records its progress from the start, and applies while the copy goes).
following() {
    local planned
    planned=$(metric 'pgcopy_tables{state="planned"}')
    [[ $planned != 0 && $(metric 'pgcopy_tables{state="done"}') == "$planned" ]] || return 1
    [[ $(cluster_psql dst run -Atc "SELECT (SELECT count(*) FROM pg_replication_origin)
              + (to_regclass('pgcopy.follow_progress') IS NOT NULL)::int") == 1 ]] || return 1
    [[ $(cluster_psql dst run -Atc "SELECT to_regclass('pgcopy.follow_chunks') IS NULL") == t ]] &&
        return 0
    [[ $(cluster_psql dst run -Atc \
        "SELECT count(*) FROM pgcopy.follow_chunks WHERE snapshot IS NULL") == 0 ]]
}

metrics_port=$(free_port)
# start_follower BIN [ARGS…]
start_follower() {
    local bin=$1
    shift
    "$bin" copy --source "$src_url" --dest "$dst_url" --yes --no-progress --quiet \
        --follow --metrics-listen "$metrics_port" "${both_args[@]}" "$@" &
    follower=$!
}

# A figure of the follower's endpoint (0 before it serves).
metric() {
    curl -fsS "http://127.0.0.1:$metrics_port/metrics" 2>/dev/null |
        awk -v name="$1" '$1 == name { print $2; found = 1 } END { if (!found) print 0 }'
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

# until_following: waits for the follower's copy to end; fails if it exits first.
until_following() {
    until following; do
        kill -0 "$follower" 2>/dev/null || { echo "the follower ended during its copy" >&2; exit 1; }
        sleep 0.2
    done
}

# One copy by BUILD (baseline or chunked): "seconds max-age max-held applied bytes".
measure() {
    local build=$1 bin=$2
    shift 2
    fresh_destination
    local samples=$WORKDIR/samples
    : >"$samples"
    sample_snapshots "$samples" &
    sampler=$!
    local started copied
    started=$(date +%s.%N)
    start_follower "$bin" "$@"
    until_following
    copied=$(date +%s.%N)
    local applied bytes
    applied=$(metric pgcopy_follow_rows_total)
    bytes=$(metric pgcopy_copy_bytes_total)
    kill "$sampler" 2>/dev/null || true
    wait "$sampler" 2>/dev/null || true
    sampler=
    local copy_s max_age max_held
    copy_s=$(awk -v a="$started" -v b="$copied" 'BEGIN { printf "%.1f", b - a }')
    max_age=$(awk '{ print $1 }' "$samples" | sort -n | tail -n 1)
    max_held=$(awk '{ print $2 }' "$samples" | sort -n | tail -n 1)
    local per_second
    per_second=$(awk -v r="$applied" -v s="$copy_s" 'BEGIN { printf "%.0f", r / s }')
    echo "$copy_s ${max_age:-0} ${max_held:-0} $applied $bytes $per_second" >>"$WORKDIR/results.$build"
    printf '%s: initial copy %ss; oldest snapshot %s transactions, held %ss; applied during the copy: %s rows (%s/s)\n' \
        "$build" "$copy_s" "${max_age:-0}" "${max_held:-0}" "$applied" "$per_second" >&2
    stop_follower
    abandon
}

# A follower of BUILD killed half-way through its copy, then resumed: "bytes-read-again".
killed() {
    local build=$1 bin=$2
    shift 2
    fresh_destination
    local half whole
    half=$(awk '{ print $1 }' "$WORKDIR/results.$build" | median | awk '{ printf "%.1f", $1 / 2 }')
    whole=$(awk '{ print $5 }' "$WORKDIR/results.$build" | median)
    start_follower "$bin" "$@"
    sleep "$half"
    local before again
    before=$(metric pgcopy_copy_bytes_total)
    kill -9 "$follower"
    wait "$follower" 2>/dev/null || true
    follower=
    start_follower "$bin" --resume "$@"
    until_following
    again=$(metric pgcopy_copy_bytes_total)
    stop_follower
    abandon
    awk -v b="$before" -v a="$again" -v w="$whole" 'BEGIN { d = b + a - w; printf "%d %d\n", (d < 0 ? 0 : d), b }'
}

mib() { awk '{ printf "%.1f MiB", $1 / 1048576 }'; }

"$bindir/pgbench" -n -c 4 -R "$rate" -T 100000 "${src_conn[@]}" bench >/dev/null 2>&1 &
writers=$!
for ((run = 1; run <= runs; run++)); do
    measure baseline "$BASELINE_BIN"
    measure chunked "$PGCOPY_BIN" "${chunked_args[@]}"
done
read -r baseline_again baseline_before < <(killed baseline "$BASELINE_BIN")
read -r chunked_again chunked_before < <(killed chunked "$PGCOPY_BIN" "${chunked_args[@]}")
kill "$writers" 2>/dev/null || true
wait "$writers" 2>/dev/null || true
writers=

column() { awk -v c="$1" '{ print $c }' "$WORKDIR/results.$2"; }
figure() { echo "$(column "$1" "$2" | median) ($(column "$1" "$2" | range))"; }
ratio=$(awk -v c="$(column 1 chunked | median)" -v b="$(column 1 baseline | median)" \
    'BEGIN { printf "%.2f", c / b }')
cat <<EOF
pgcopy $("$PGCOPY_BIN" version | awk '{ print $2 }') (chunked${CHUNK:+, --chunk-size $CHUNK}${CHUNKED_OPTIONS:+, $CHUNKED_OPTIONS}) against $("$BASELINE_BIN" version | awk '{ print $2 }') built from ${BASELINE_REF:-e8760bf} (one snapshot)
source: pgbench scale $scale ($size), $data, pgbench -R $rate writing throughout; medians (ranges) of $runs runs each, alternating
settings: ${settings[*]} wal_level=logical (source), replica (destination)
                                            one snapshot          chunked
initial copy (s):                           $(figure 1 baseline)    $(figure 1 chunked)    chunked/one snapshot: $ratio
oldest snapshot, age(backend_xmin) (xids):  $(figure 2 baseline)    $(figure 2 chunked)
oldest snapshot held (s):                   $(figure 3 baseline)    $(figure 3 chunked)
rows applied while the copy ran:            $(figure 4 baseline)    $(figure 4 chunked)
  per second of the copy:                   $(figure 6 baseline)    $(figure 6 chunked)
killed -9 half-way, then --resume, read again:
  one snapshot: $(echo "$baseline_again" | mib) of the $(echo "$baseline_before" | mib) sent before the kill
  chunked:      $(echo "$chunked_again" | mib) of the $(echo "$chunked_before" | mib) sent before the kill
EOF
