#!/usr/bin/env bash
# The speed and memory benchmark (issue 6): pgcopy against the tools people use instead, on two
# throwaway PostgreSQL servers on this machine, with the goals the issue sets.
#
#   scripts/bench.sh [--scale S] [--runs N] [--parallel P] [--scale-check] [--no-dir-dump]
#
# It starts two clusters (scripts/lib/cluster.sh) set up for bulk loads but durable (fsync on),
# fills the source with `pgbench -i -s S --foreign-keys` plus a mixed-types table of about the
# same size, gives the destination the same schema, then runs each tool N times, round robin,
# emptying the destination in between and checking every result against the source:
#
#   pgcopy                   pgcopy copy --parallel P (which ANALYZEs each table after its load)
#   pgcopy --no-analyze      the same without the ANALYZE
#   psql pipe                per table `psql COPY TO STDOUT (FORMAT binary) | psql COPY FROM STDIN`,
#                            P tables at a time, foreign keys dropped before and added back after
#   pg_dump|pg_restore       pg_dump -Fc --data-only | pg_restore --data-only --disable-triggers
#   pg_dump -Fd -j|pg_restore -j   the same through a directory dump, P jobs each (--no-dir-dump
#                            leaves it out)
#
# Each run is measured with /usr/bin/time -v (wall time, client user+sys CPU, peak RSS of the
# largest client process), and the servers' CPU and the WAL the destination wrote are read
# around it. The report goes to stdout, progress to stderr.
#
# Environment (the flags win): BENCH_SCALE (20), BENCH_RUNS (3), BENCH_PARALLEL (4),
# BENCH_SCALE_CHECK=1, BENCH_DIR_DUMP=0, PGCOPY_BIN (else `cargo build --release` here),
# PG_BINDIR (see scripts/lib/cluster.sh), BENCH_KEEP=1 (keep the clusters' directory),
# BENCH_REUSE=1 (reuse the clusters, and the loaded source, in BENCH_DIR), BENCH_DIR (the
# directory; default a fresh temp dir, or ${TMPDIR:-/tmp}/pgcopy-bench with BENCH_KEEP or
# BENCH_REUSE).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
# shellcheck source=scripts/lib/cluster.sh
source scripts/lib/cluster.sh

usage() {
    sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"
}

scale=${BENCH_SCALE:-20}
runs=${BENCH_RUNS:-3}
parallel=${BENCH_PARALLEL:-4}
scale_check=${BENCH_SCALE_CHECK:-0}
dir_dump=${BENCH_DIR_DUMP:-1}
keep=${BENCH_KEEP:-0}
reuse=${BENCH_REUSE:-0}

while (($# > 0)); do
    case $1 in
        --scale) scale=${2:?--scale needs a value}; shift 2 ;;
        --scale=*) scale=${1#*=}; shift ;;
        --runs) runs=${2:?--runs needs a value}; shift 2 ;;
        --runs=*) runs=${1#*=}; shift ;;
        --parallel) parallel=${2:?--parallel needs a value}; shift 2 ;;
        --parallel=*) parallel=${1#*=}; shift ;;
        --scale-check) scale_check=1; shift ;;
        --no-dir-dump) dir_dump=0; shift ;;
        -h | --help) usage; exit 0 ;;
        *) echo "bench: unknown argument: $1 (see --help)" >&2; exit 2 ;;
    esac
done
for pair in "scale:$scale" "runs:$runs" "parallel:$parallel"; do
    if ! [[ ${pair#*:} =~ ^[1-9][0-9]*$ ]]; then
        echo "bench: --${pair%%:*} must be a positive whole number, not '${pair#*:}'" >&2
        exit 2
    fi
done

step() { printf '==> %s\n' "$*" >&2; }
die() {
    printf 'bench: %s\n' "$*" >&2
    exit 1
}

# --- what it needs -----------------------------------------------------------------------------

if [[ ! -x /usr/bin/time ]]; then
    if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null 2>&1; then
        step "Installing GNU time (/usr/bin/time): apt-get install -y time"
        DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends time \
            </dev/null >&2 ||
            die "could not install it; run: apt-get update && apt-get install -y time"
    else
        die "/usr/bin/time (GNU time) is missing; install it: apt-get install time"
    fi
fi
bindir=$(pg_bindir) || exit 1
for program in psql pgbench pg_dump pg_restore; do
    [[ -x $bindir/$program ]] || die "$bindir has no $program (apt-get install postgresql)"
done
export BENCH_PSQL=$bindir/psql BENCH_PG_DUMP=$bindir/pg_dump BENCH_PG_RESTORE=$bindir/pg_restore

if [[ -n ${PGCOPY_BIN:-} ]]; then
    pgcopy=$PGCOPY_BIN
else
    step "Building pgcopy: cargo build --release --locked"
    cargo build --release --locked >&2
    pgcopy=${CARGO_TARGET_DIR:-$root/target}/release/pgcopy
fi
[[ -x $pgcopy ]] || die "no pgcopy binary at $pgcopy"
has_no_analyze=0
if "$pgcopy" help copy 2>/dev/null | grep -q -- '--no-analyze'; then
    has_no_analyze=1
fi

# --- the clusters ------------------------------------------------------------------------------

# Bulk-load friendly but durable: the lib's fsync=off, synchronous_commit=off and
# full_page_writes=off are put back to PostgreSQL's defaults (a later -c wins). wal_level=minimal
# lets a COPY into a table truncated (or created) in the same transaction skip the WAL. Autovacuum
# is off so that the vacuum or analyze a load leaves due does not run into the next run's timing.
settings=(
    fsync=on synchronous_commit=on full_page_writes=on
    shared_buffers=256MB max_wal_size=4GB checkpoint_timeout=30min
    wal_level=minimal max_wal_senders=0 autovacuum=off
)

if [[ -n ${BENCH_DIR:-} || $reuse == 1 || $keep == 1 ]]; then
    WORKDIR=${BENCH_DIR:-${TMPDIR:-/tmp}/pgcopy-bench}
    if [[ ! -d $WORKDIR ]]; then
        mkdir -p "$WORKDIR"
        chmod 0755 "$WORKDIR"
        if [[ $(id -u) == 0 ]]; then chown postgres: "$WORKDIR"; fi
    fi
else
    WORKDIR=$(cluster_workdir)
fi
export WORKDIR
tmp=$WORKDIR/bench-run
rm -rf "$tmp"
mkdir -p "$tmp/logs"

# The clusters this run started or reused: the only ones teardown stops (and, unless kept,
# removes), so a BENCH_DIR that holds something else is never touched beyond bench-run/.
owned=()
teardown() {
    local status=$? name
    trap - EXIT INT TERM
    for name in "${owned[@]}"; do
        cluster_stop "$name" >/dev/null 2>&1 || true
    done
    if [[ $keep == 1 || $reuse == 1 ]]; then
        echo "bench: kept $WORKDIR (logs in $tmp/logs)" >&2
    else
        for name in "${owned[@]}"; do
            rm -rf "${WORKDIR:?}/$name"
        done
        rm -rf "$tmp"
        rmdir "$WORKDIR" 2>/dev/null || true
    fi
    exit "$status"
}
trap teardown EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# start_cluster NAME: reuses NAME's cluster in $WORKDIR when asked to and it exists (pg_ctl restart
# starts it again with the options it last ran with), else makes a new one.
start_cluster() {
    local name=$1
    if [[ -f $WORKDIR/$name/data/PG_VERSION ]]; then
        [[ $reuse == 1 ]] || die "$WORKDIR/$name already holds a cluster: set BENCH_REUSE=1" \
            "to reuse it, or remove it"
        step "Reusing the $name cluster in $WORKDIR/$name (port $(cluster_port "$name"))"
        owned+=("$name")
        local out
        if ! out=$(_cluster_pg pg_ctl -w -t 60 -D "$WORKDIR/$name/data" \
            -l "$WORKDIR/$name/server.log" restart 2>&1); then
            echo "$out" >&2
            die "could not start the $name cluster again; see $WORKDIR/$name/server.log"
        fi
        return
    fi
    local port
    port=$(free_port)
    while [[ -f $WORKDIR/source/port && $port == "$(cluster_port source)" ]]; do
        port=$(free_port)
    done
    step "Starting the $name cluster in $WORKDIR/$name on port $port"
    owned+=("$name")
    cluster_start "$name" "$port" "${settings[@]}"
}
start_cluster source
start_cluster dest

# --- helpers -----------------------------------------------------------------------------------

# psql_url URL [psql args...]: psql as the benchmarked tools connect, over TCP.
psql_url() {
    local url=$1
    shift
    "$BENCH_PSQL" -X -q -v ON_ERROR_STOP=1 -d "$url" "$@"
}

# server_cpu_ticks NAME: clock ticks of CPU the cluster has used so far: its postmaster, the
# children it has reaped (cutime and cstime, so backends that came and went in between count),
# and its live children (checkpointer, walwriter, backends).
server_cpu_ticks() {
    local postmaster file line
    local -a f
    local total=0
    postmaster=$(head -n 1 "$WORKDIR/$1/data/postmaster.pid")
    for file in /proc/[0-9]*/stat; do
        { read -r line <"$file"; } 2>/dev/null || continue
        # Fields from the third (state) on; the command name before them may hold spaces.
        read -r -a f <<<"${line##*) }"
        if [[ $file == "/proc/$postmaster/stat" ]]; then
            total=$((total + f[11] + f[12] + f[13] + f[14]))
        elif [[ ${f[1]} == "$postmaster" ]]; then
            total=$((total + f[11] + f[12]))
        fi
    done
    echo "$total"
}
clock_ticks=$(getconf CLK_TCK)

# user tables, largest first (the order pgcopy copies in too)
tables_sql="
    SELECT format('%I.%I', n.nspname, c.relname)
    FROM pg_class AS c
    JOIN pg_namespace AS n ON n.oid = c.relnamespace
    WHERE c.relkind = 'r'
      AND n.nspname NOT IN ('pg_catalog', 'information_schema')
      AND n.nspname NOT LIKE 'pg\\_%'
    ORDER BY pg_total_relation_size(c.oid) DESC, 1"
export BENCH_TABLES_SQL=$tables_sql

# fingerprint URL: per table its row count and an order-independent checksum (md5 of each row's
# text, summed as two 64-bit halves), then the foreign keys (and how many are validated) and the
# sequences: what must be the same on both sides after a copy.
fingerprint() {
    local url=$1
    psql_url "$url" -At <<SQL
SELECT format(
    \$q\$SELECT %L, count(*),
        coalesce(sum(('x' || substr(h, 1, 16))::bit(64)::bigint::numeric), 0),
        coalesce(sum(('x' || substr(h, 17, 16))::bit(64)::bigint::numeric), 0)
    FROM (SELECT md5(r::text) AS h FROM %s AS r) AS s\$q\$, t, t)
FROM ($tables_sql) AS tables (t)
ORDER BY 1
\gexec
SELECT 'foreign keys', count(*), count(*) FILTER (WHERE convalidated)
FROM pg_constraint WHERE contype = 'f';
SELECT format('%I.%I', schemaname, sequencename), last_value
FROM pg_sequences ORDER BY 1;
SQL
}

# --- the source and the destination ------------------------------------------------------------

# load DB SCALE: (re)creates DB on both clusters: the source with pgbench's tables and the mixed
# table at SCALE, analyzed; the destination with the same schema and no rows. A reused source
# that already holds DB at SCALE is kept (the database's comment records a finished load).
load() {
    local db=$1 s=$2 src dst
    src=$(cluster_url source "$db")
    dst=$(cluster_url dest "$db")
    local marker="pgcopy bench: loaded at scale $s"
    if [[ $(cluster_psql source postgres -At -c \
        "SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = '$db'") \
        == "$marker" ]]; then
        step "Reusing the source database $db (scale $s)"
    else
        step "Filling the source: pgbench -i -s $s --foreign-keys"
        cluster_psql source postgres -c 'SET client_min_messages = warning' \
            -c "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db"
        "$bindir/pgbench" -i -s "$s" -q --foreign-keys -d "$src" >"$tmp/logs/pgbench-$db.log" 2>&1 ||
            {
                tail -n 20 "$tmp/logs/pgbench-$db.log" >&2
                die "pgbench -i failed"
            }
        step "Adding the mixed-types table: $((s * 50000)) rows"
        psql_url "$src" >/dev/null <<SQL
CREATE TABLE bench_mixed (
    id          bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    amount      numeric(14, 4) NOT NULL,
    label       text,
    doc         jsonb,
    blob        bytea,
    happened_at timestamptz NOT NULL,
    uid         uuid NOT NULL,
    scores      int[]
);
SELECT setseed(0.42);
INSERT INTO bench_mixed (amount, label, doc, blob, happened_at, uid, scores)
SELECT
    round((random() * 1e9)::numeric, 4),
    CASE WHEN i % 10 = 0 THEN NULL ELSE 'row ' || i || ' ' || repeat('x', i % 40) END,
    jsonb_build_object('id', i, 'name', 'item ' || i, 'even', i % 2 = 0,
                       'price', round((random() * 1000)::numeric, 2),
                       'tags', jsonb_build_array('t' || i % 7, i % 13, null)),
    decode(md5(i::text) || md5((-i)::text), 'hex'),
    timestamptz '2024-01-01 00:00:00+00' + i * interval '1.5 seconds',
    md5(i::text)::uuid,
    ARRAY[i % 100, i % 10000, i]
FROM generate_series(1, $((s * 50000))) AS i;
SELECT setval(pg_get_serial_sequence('bench_mixed', 'id'), $((s * 50000)));
VACUUM ANALYZE;
CHECKPOINT;
COMMENT ON DATABASE $db IS '$marker';
SQL
    fi
    step "Copying the schema to the destination: pg_dump --schema-only | psql"
    cluster_psql dest postgres -c 'SET client_min_messages = warning' \
        -c "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db"
    "$BENCH_PG_DUMP" --schema-only --no-owner --no-privileges -d "$src" |
        psql_url "$dst" >/dev/null
    step "Fingerprinting the source"
    fingerprint "$src" >"$tmp/source-$db.txt"
}

# empty_dest URL: what every run starts from: empty tables, and a checkpoint so that the last
# run's dirty pages are not written during this one.
empty_dest() {
    local url=$1 tables
    tables=$(psql_url "$url" -At -c "SELECT string_agg(t, ', ') FROM ($tables_sql) AS x (t)")
    psql_url "$url" -c "TRUNCATE $tables CASCADE" -c "CHECKPOINT"
}

# --- the tools ---------------------------------------------------------------------------------

# The psql pipe for one table, as a careful shell user would write it: TRUNCATE and COPY FREEZE in
# one destination transaction (as pgcopy does), so that wal_level=minimal spares it the WAL too.
# shellcheck disable=SC2153 # BENCH_SRC and BENCH_DST come from run_tool, in the environment
pipe_table() {
    set -euo pipefail
    local table=$1
    "$BENCH_PSQL" -X -q -v ON_ERROR_STOP=1 -d "$BENCH_SRC" \
        -c "COPY $table TO STDOUT (FORMAT binary)" |
        "$BENCH_PSQL" -X -q -v ON_ERROR_STOP=1 -d "$BENCH_DST" -c 'BEGIN' \
            -c "TRUNCATE ONLY $table" -c "COPY $table FROM STDIN (FORMAT binary, FREEZE)" \
            -c 'COMMIT'
}

# The whole psql pipe: drop the destination's foreign keys (TRUNCATE refuses referenced tables,
# and pgcopy does the same), copy BENCH_PARALLEL tables at a time, set the sequences, add the
# keys back.
psql_pipe() {
    set -euo pipefail
    local psql=("$BENCH_PSQL" -X -q -v ON_ERROR_STOP=1)
    "${psql[@]}" -At -d "$BENCH_DST" -c "
        SELECT format('ALTER TABLE %I.%I ADD CONSTRAINT %I %s;',
                      n.nspname, c.relname, k.conname, pg_get_constraintdef(k.oid))
        FROM pg_constraint AS k
        JOIN pg_class AS c ON c.oid = k.conrelid
        JOIN pg_namespace AS n ON n.oid = c.relnamespace
        WHERE k.contype = 'f'" >"$BENCH_TMP/add-fks.sql"
    "${psql[@]}" -At -d "$BENCH_DST" -c "
        SELECT format('ALTER TABLE %s DROP CONSTRAINT %I;', k.conrelid::regclass, k.conname)
        FROM pg_constraint AS k WHERE k.contype = 'f'" | "${psql[@]}" -1 -d "$BENCH_DST"
    # shellcheck disable=SC2016 # $1 is the inner bash's
    "${psql[@]}" -At -d "$BENCH_SRC" -c "$BENCH_TABLES_SQL" |
        xargs -d '\n' -P "$BENCH_PARALLEL" -I '{}' bash -c 'pipe_table "$1"' pipe_table '{}'
    "${psql[@]}" -At -d "$BENCH_SRC" -c "
        SELECT format('SELECT setval(%L, %s);', format('%I.%I', schemaname, sequencename),
                      last_value)
        FROM pg_sequences WHERE last_value IS NOT NULL" | "${psql[@]}" -d "$BENCH_DST" >/dev/null
    "${psql[@]}" -1 -d "$BENCH_DST" -f "$BENCH_TMP/add-fks.sql"
}

dump_restore() {
    set -euo pipefail
    "$BENCH_PG_DUMP" -Fc --data-only -d "$BENCH_SRC" |
        "$BENCH_PG_RESTORE" --data-only --disable-triggers --exit-on-error -d "$BENCH_DST"
}

dump_restore_dir() {
    set -euo pipefail
    "$BENCH_PG_DUMP" -Fd -j "$BENCH_PARALLEL" --data-only -f "$BENCH_TMP/dump" -d "$BENCH_SRC"
    "$BENCH_PG_RESTORE" -j "$BENCH_PARALLEL" --data-only --disable-triggers --exit-on-error \
        -d "$BENCH_DST" "$BENCH_TMP/dump"
}
export -f pipe_table psql_pipe dump_restore dump_restore_dir
export BENCH_PARALLEL=$parallel BENCH_TMP=$tmp

tools=(pgcopy)
if ((has_no_analyze)); then tools+=(pgcopy_no_analyze); fi
tools+=(psql_pipe dump_restore)
if [[ $dir_dump == 1 ]]; then tools+=(dump_restore_dir); fi

label() {
    case $1 in
        pgcopy) echo "pgcopy" ;;
        pgcopy_no_analyze) echo "pgcopy --no-analyze" ;;
        psql_pipe) echo "psql → psql (COPY binary)" ;;
        dump_restore) echo "pg_dump -Fc → pg_restore" ;;
        dump_restore_dir) echo "pg_dump -Fd -j $parallel → pg_restore -j $parallel" ;;
    esac
}

results=$tmp/results.txt
: >"$results"

# run_tool TOOL RUN DB SCALE: one measured run of TOOL into the emptied destination, checked
# against the source; appends "scale tool run wall cpu rss_kib server_cpu wal_bytes checkpoint
# busy%" (busy: client and server CPU over the wall time of all the machine's cores).
run_tool() {
    local tool=$1 run=$2 db=$3 s=$4
    local src dst log timing
    src=$(cluster_url source "$db")
    dst=$(cluster_url dest "$db")
    log=$tmp/logs/$tool-s$s-$run.log
    timing=$tmp/logs/$tool-s$s-$run.time
    local -a cmd
    case $tool in
        pgcopy | pgcopy_no_analyze)
            cmd=("$pgcopy" copy --source "$src" --dest "$dst" --yes --no-progress
                --parallel "$parallel" --state-dir "$tmp/state")
            if [[ $tool == pgcopy_no_analyze ]]; then cmd+=(--no-analyze); fi
            ;;
        *) cmd=(bash -c "$tool") ;;
    esac
    empty_dest "$dst"
    rm -rf "$tmp/dump"
    step "$(label "$tool"), scale $s, run $run"
    local lsn cpu_before cpu_after
    lsn=$(psql_url "$dst" -At -c 'SELECT pg_current_wal_lsn()')
    cpu_before=$(($(server_cpu_ticks source) + $(server_cpu_ticks dest)))
    if ! BENCH_SRC=$src BENCH_DST=$dst /usr/bin/time -v -o "$timing" "${cmd[@]}" \
        >"$log" 2>&1; then
        tail -n 30 "$log" >&2
        die "$(label "$tool") failed (exit status above; whole output in $log)"
    fi
    cpu_after=$(($(server_cpu_ticks source) + $(server_cpu_ticks dest)))
    local wal start end
    wal=$(psql_url "$dst" -At -c "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '$lsn')")
    # What the run left for later: dirty pages the next checkpoint must write and fsync (a COPY
    # that skipped the WAL has already synced its files at commit).
    start=$(date +%s%N)
    psql_url "$dst" -c CHECKPOINT
    end=$(date +%s%N)
    rm -rf "$tmp/dump"
    fingerprint "$dst" >"$tmp/dest.txt"
    if ! diff -u "$tmp/source-$db.txt" "$tmp/dest.txt" >"$tmp/diff.txt"; then
        cat "$tmp/diff.txt" >&2
        die "$(label "$tool") run $run: the destination differs from the source (diff above;" \
            "the tool's output is in $log)"
    fi
    awk -v scale="$s" -v tool="$tool" -v run="$run" -v cores="$(nproc)" \
        -v server="$((cpu_after - cpu_before))" -v hz="$clock_ticks" -v wal="$wal" \
        -v ckpt="$(((end - start) / 1000000))" '
        /User time \(seconds\)/ { cpu += $NF }
        /System time \(seconds\)/ { cpu += $NF }
        /Maximum resident set size/ { rss = $NF }
        /Elapsed \(wall clock\)/ {
            n = split($NF, p, ":")
            wall = (n == 3) ? p[1] * 3600 + p[2] * 60 + p[3] : p[1] * 60 + p[2]
        }
        END {
            busy = (wall > 0) ? 100 * (cpu + server / hz) / (wall * cores) : 0
            printf "%s %s %s %.2f %.2f %d %.2f %.0f %.2f %.0f\n", scale, tool, run, wall, cpu, rss,
                server / hz, wal, ckpt / 1000, busy
        }' "$timing" >>"$results"
}

# stat_of SCALE TOOL COLUMN median|max: over the runs in $results.
stat_of() {
    awk -v scale="$1" -v tool="$2" -v col="$3" '$1 == scale && $2 == tool { print $col }' \
        "$results" | sort -g | awk -v how="$4" '
        { v[NR] = $1 }
        END {
            if (NR == 0) { print "nan"; exit }
            if (how == "max") print v[NR]
            else if (NR % 2) print v[(NR + 1) / 2]
            else print (v[NR / 2] + v[NR / 2 + 1]) / 2
        }'
}

# --- the header --------------------------------------------------------------------------------

db=bench_s$scale
load "$db" "$scale"

pg_version=$(cluster_psql source postgres -At -c 'SELECT version()')
cpu_model=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)
mem_total=$(awk '/^MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo)
db_size=$(psql_url "$(cluster_url source "$db")" -At -c \
    'SELECT pg_size_pretty(pg_database_size(current_database()))')
# rows: from the source's fingerprint (table|rows|checksum|checksum), tables that have any
rows=$(awk -F '|' 'NF == 4 && $2 > 0 { sub(/^public\./, "", $1); printf "%s%s %s", sep, $1, $2; sep = ", " }' \
    "$tmp/source-$db.txt")

cat <<EOF
# pgcopy benchmark ($(date -u '+%Y-%m-%d %H:%M UTC'))

machine     $(nproc) CPUs ($cpu_model), $mem_total RAM, $(uname -sr)
postgres    $pg_version
pgcopy      $("$pgcopy" --version) ($pgcopy)
data        pgbench -i -s $scale --foreign-keys + bench_mixed: $db_size on disk
            rows: $rows
load avg    $(cut -d ' ' -f 1-3 /proc/loadavg) before the runs (other work on the machine skews the numbers)
parameters  --scale $scale --runs $runs --parallel $parallel; $runs run(s) of each tool, round robin
servers     both on this machine, over TCP on 127.0.0.1; durable (fsync on, full_page_writes on,
            synchronous_commit on) with shared_buffers=256MB max_wal_size=4GB
            checkpoint_timeout=30min wal_level=minimal max_wal_senders=0 autovacuum=off
wal         wal_level=minimal lets a COPY into a table truncated in the same transaction skip
            the WAL (its files are fsynced at commit instead). pgcopy (TRUNCATE + COPY FREEZE per
            table) and the psql pipe (written the same way) get that; pg_restore --data-only
            does not (it never truncates), so it writes every row to the WAL too: see "dest WAL".
EOF
if ((has_no_analyze)); then
    echo "analyze     pgcopy ANALYZEs each copied table after its load; the other tools do not:"
    echo "            'pgcopy --no-analyze' is the like-for-like row"
else
    echo "analyze     this pgcopy has no --no-analyze; it runs no ANALYZE after a load"
fi
cat <<EOF
fairness    the psql pipe drops the destination's foreign keys, copies $parallel tables at a time
            and adds the keys back (validated), as pgcopy does; pg_restore --disable-triggers
            keeps the keys but neither checks nor validates them, and pg_dump -Fc compresses
            (its default). Each run starts from emptied tables after a CHECKPOINT.
measures    wall and client CPU (user+sys, all client processes) and peak RSS (the largest
            client process) from /usr/bin/time -v; server CPU of both clusters from /proc;
            dest WAL written; then CHECKPOINT = the time the checkpoint right after the run
            takes (writes the run left dirty; not in wall). Every run is checked: per table
            row count and checksum, foreign keys and sequences equal the source's.

EOF

# --- the runs ----------------------------------------------------------------------------------

for ((run = 1; run <= runs; run++)); do
    for tool in "${tools[@]}"; do
        run_tool "$tool" "$run" "$db" "$scale"
    done
done

echo "load avg    $(cut -d ' ' -f 1-3 /proc/loadavg) after the runs"
echo

# table SCALE TOOL...: the results at SCALE, one row per tool.
table() {
    local s=$1 tool
    shift
    printf '| tool (scale %s, runs: %s) | wall s | client CPU s | peak RSS MiB | server CPU s |' \
        "$s" "$runs"
    printf ' CPU busy %% | dest WAL MiB | CHECKPOINT after s |\n'
    echo '| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |'
    for tool in "$@"; do
        printf '| %s | %.2f | %.2f | %.1f | %.2f | %.0f | %.0f | %.2f |\n' "$(label "$tool")" \
            "$(stat_of "$s" "$tool" 4 median)" "$(stat_of "$s" "$tool" 5 median)" \
            "$(awk -v k="$(stat_of "$s" "$tool" 6 max)" 'BEGIN { print k / 1024 }')" \
            "$(stat_of "$s" "$tool" 7 median)" "$(stat_of "$s" "$tool" 10 median)" \
            "$(awk -v b="$(stat_of "$s" "$tool" 8 median)" 'BEGIN { print b / 1048576 }')" \
            "$(stat_of "$s" "$tool" 9 median)"
    done
    echo "(medians over the runs; peak RSS: the largest of any run. CPU busy: client + server"
    echo "CPU over wall time × $(nproc) cores.)"
    echo
}
table "$scale" "${tools[@]}"

# --- the scale check ---------------------------------------------------------------------------

big=$((scale * 4))
if [[ $scale_check == 1 ]]; then
    big_db=bench_s$big
    step "Scale check: reloading the source at scale $big"
    # Make room: the small database is done with.
    if [[ $reuse != 1 ]]; then
        cluster_psql source postgres -c "DROP DATABASE $db"
    fi
    cluster_psql dest postgres -c "DROP DATABASE $db"
    load "$big_db" "$big"
    for ((run = 1; run <= runs; run++)); do
        run_tool pgcopy "$run" "$big_db" "$big"
    done
    table "$big" pgcopy
fi

# --- the goals ---------------------------------------------------------------------------------

# goal NAME VALUE GOAL: one row; VALUE <= GOAL is met.
goal() {
    awk -v name="$1" -v v="$2" -v g="$3" 'BEGIN {
        printf "| %s | %.3f | ≤ %s | %s |\n", name, v, g, (v <= g) ? "met" : "NOT met"
    }'
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.4f", (b > 0) ? a / b : 1e9 }'; }

echo '| goal (issue 6) | value | goal | |'
echo '| --- | ---: | ---: | --- |'
pipe_wall=$(stat_of "$scale" psql_pipe 4 median)
dump_wall=$(stat_of "$scale" dump_restore 4 median)
pipe_cpu=$(stat_of "$scale" psql_pipe 5 median)
variants=(pgcopy)
if ((has_no_analyze)); then variants+=(pgcopy_no_analyze); fi
for tool in "${variants[@]}"; do
    name=$(label "$tool")
    goal "$name wall ÷ psql pipe wall" \
        "$(ratio "$(stat_of "$scale" "$tool" 4 median)" "$pipe_wall")" 0.65
    goal "$name wall ÷ pg_dump → pg_restore wall" \
        "$(ratio "$(stat_of "$scale" "$tool" 4 median)" "$dump_wall")" 0.45
    goal "$name CPU ÷ psql pipe client CPU" \
        "$(ratio "$(stat_of "$scale" "$tool" 5 median)" "$pipe_cpu")" 0.6
done
rss_small=$(stat_of "$scale" pgcopy 6 max)
if [[ $scale_check == 1 ]]; then
    rss_big=$(stat_of "$big" pgcopy 6 max)
    # "The same at both": the larger scale's peak within 10% (or 2 MiB) of the smaller's.
    awk -v s="$rss_small" -v b="$rss_big" -v S="$scale" -v B="$big" 'BEGIN {
        same = (b <= s * 1.1 || b - s <= 2048)
        printf "| pgcopy peak RSS at scale %s and %s | %.1f and %.1f MiB | ≤ 64 MiB, the same at both | %s |\n",
            S, B, s / 1024, b / 1024, (s <= 65536 && b <= 65536 && same) ? "met" : "NOT met"
    }'
    goal "pgcopy wall at scale $big ÷ at scale $scale" \
        "$(ratio "$(stat_of "$big" pgcopy 4 median)" "$(stat_of "$scale" pgcopy 4 median)")" 4.2
else
    awk -v s="$rss_small" -v S="$scale" 'BEGIN {
        printf "| pgcopy peak RSS at scale %s (4×: --scale-check) | %.1f MiB | ≤ 64 MiB, the same at both | %s |\n",
            S, s / 1024, (s <= 65536) ? "met at this scale" : "NOT met"
    }'
    echo "| pgcopy wall at 4× scale ÷ at scale $scale | not measured | ≤ 4.2 | run with --scale-check |"
fi
