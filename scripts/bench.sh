#!/usr/bin/env bash
# The speed and memory benchmark (issues 6 and 13): pgcopy against the tools people use instead,
# on two throwaway PostgreSQL servers on this machine, with production's settings by default.
#
#   scripts/bench.sh [--scale S] [--runs N] [--parallel P] [--data mixed|one-table|both]
#                    [--wal-level replica|minimal] [--baseline BIN] [--no-pgcopydb]
#                    [--no-dir-dump] [--scale-check]
#
# It starts two clusters (scripts/lib/cluster.sh) that are durable (fsync on) and run
# wal_level=replica, as a server with replicas or WAL archiving does (--wal-level minimal: the
# most favourable setting for bulk loads instead). It fills the source with one or both data sets:
#
#   mixed        `pgbench -i -s S --foreign-keys` plus a mixed-types table of about the same size
#                (scale 20: about 700 MB)
#   one-table    one table with about 90% of the bytes (bigint primary key; int, ~100-byte text,
#                timestamptz and numeric columns; indexes on the timestamptz and on (int, text))
#                plus three small tables with foreign keys; about as big as the mixed set
#
# gives the destination the same schema, then per data set runs each tool N times, round robin,
# and checks every result against the source (per table row count and checksum, foreign keys,
# sequences). A comparison of two rows is the median of the rounds' ratios (two runs of one
# round see the same load on this shared machine), with their range. The rows:
#
#   pgcopy                   pgcopy copy --parallel P (which ANALYZEs each table after its load)
#   pgcopy --no-analyze      the same without the ANALYZE
#   pgcopy baseline          --baseline BIN with exactly pgcopy's arguments: is a change free?
#   pgcopy split / single    one-table only, when the binary has them: pgcopy with
#                            --split-tables-larger-than SIZE, SIZE cutting the big table into
#                            about 2 x P pieces, and with --no-split
#   psql pipe                per table `psql COPY TO STDOUT (FORMAT binary) | psql COPY FROM STDIN`,
#                            P tables at a time, foreign keys dropped before and added back after
#   pg_dump|pg_restore       pg_dump -Fc --data-only | pg_restore --data-only --disable-triggers
#   pg_dump -Fd -j|pg_restore -j   the same through a directory dump, P jobs each (--no-dir-dump
#                            leaves it out)
#   schema + pgcopy          into an empty database: pg_dump --schema-only | psql, then pgcopy
#                            (--no-split; on one-table also with the split SIZE)
#   pgcopydb clone           into an empty database, --table-jobs P --index-jobs P (on one-table
#                            also with --split-tables-larger-than SIZE). Installed with apt-get
#                            when missing and we are root; its rows are left out when it is not
#                            there, or with --no-pgcopydb.
#
# Each run is measured with /usr/bin/time -v (wall time, client user+sys CPU, peak RSS of the
# largest client process); the servers' CPU is read from /proc around it, and the WAL the
# destination wrote. Both servers log log_statement_stats for every statement, from which the
# report splits the server CPU by kind: source COPY TO STDOUT (readers), destination COPY FROM
# STDIN (writers), index builds, ANALYZE/VACUUM, other statements, backends outside statements,
# parallel workers and backend exits (they log nothing: the CPU of the processes that ended in
# the run minus what their statements logged), background processes. The report goes to stdout,
# progress to stderr. --scale-check then runs pgcopy again on the first data set at 4 x the
# scale, for the goals on peak memory and on how the time grows.
#
# Environment (the flags win): BENCH_SCALE (20), BENCH_RUNS (3), BENCH_PARALLEL (4), BENCH_DATA
# (both), BENCH_WAL_LEVEL (replica), PGCOPY_BASELINE, BENCH_PGCOPYDB=0, BENCH_SCALE_CHECK=1,
# BENCH_DIR_DUMP=0, PGCOPY_BIN (else `cargo build --release` here), PG_BINDIR (see
# scripts/lib/cluster.sh), BENCH_KEEP=1 (keep the clusters' directory), BENCH_REUSE=1 (reuse the
# clusters, and the loaded sources, in BENCH_DIR), BENCH_DIR (the directory; default a fresh temp
# dir, or ${TMPDIR:-/tmp}/pgcopy-bench with BENCH_KEEP or BENCH_REUSE).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
# shellcheck source=scripts/lib/cluster.sh disable=SC1091 # followed with shellcheck -x
source scripts/lib/cluster.sh

usage() {
    sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"
}

scale=${BENCH_SCALE:-20}
runs=${BENCH_RUNS:-3}
parallel=${BENCH_PARALLEL:-4}
data=${BENCH_DATA:-both}
wal_level=${BENCH_WAL_LEVEL:-replica}
baseline=${PGCOPY_BASELINE:-}
want_pgcopydb=${BENCH_PGCOPYDB:-1}
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
        --data) data=${2:?--data needs a value}; shift 2 ;;
        --data=*) data=${1#*=}; shift ;;
        --wal-level) wal_level=${2:?--wal-level needs a value}; shift 2 ;;
        --wal-level=*) wal_level=${1#*=}; shift ;;
        --baseline) baseline=${2:?--baseline needs a binary}; shift 2 ;;
        --baseline=*) baseline=${1#*=}; shift ;;
        --no-pgcopydb) want_pgcopydb=0; shift ;;
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
case $data in
    mixed) sets=(mixed) ;;
    one-table) sets=(one-table) ;;
    both) sets=(mixed one-table) ;;
    *) echo "bench: --data must be mixed, one-table or both, not '$data'" >&2; exit 2 ;;
esac
case $wal_level in
    replica | minimal) ;;
    *) echo "bench: --wal-level must be replica or minimal, not '$wal_level'" >&2; exit 2 ;;
esac

step() { printf '==> %s\n' "$*" >&2; }
die() {
    printf 'bench: %s\n' "$*" >&2
    exit 1
}

# --- what it needs -----------------------------------------------------------------------------

# apt_install PACKAGE...: as root with apt-get, installs them (refreshing the package lists if
# the first try fails); false otherwise or when that fails.
apt_install() {
    [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null 2>&1 || return 1
    step "Installing $*: apt-get install -y $*"
    local apt=(env DEBIAN_FRONTEND=noninteractive apt-get)
    "${apt[@]}" install -y --no-install-recommends "$@" </dev/null >&2 ||
        { "${apt[@]}" update </dev/null >&2 &&
            "${apt[@]}" install -y --no-install-recommends "$@" </dev/null >&2; }
}

if [[ ! -x /usr/bin/time ]]; then
    apt_install time || die "/usr/bin/time (GNU time) is missing; install it: apt-get install time"
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
if [[ -n $baseline ]]; then
    [[ -x $baseline ]] || die "--baseline: no pgcopy binary at $baseline"
fi
copy_help=$("$pgcopy" help copy 2>&1 || "$pgcopy" copy --help 2>&1 || true)
has_no_analyze=0
if grep -q -- '--no-analyze' <<<"$copy_help"; then has_no_analyze=1; fi
has_split=0
if grep -q -- '--split-tables-larger-than' <<<"$copy_help" &&
    grep -q -- '--no-split' <<<"$copy_help"; then
    has_split=1
fi

pgcopydb=
if [[ $want_pgcopydb == 1 ]]; then
    if ! pgcopydb=$(command -v pgcopydb); then
        apt_install pgcopydb || true
        pgcopydb=$(command -v pgcopydb || true)
    fi
fi

# --- the clusters ------------------------------------------------------------------------------

# Durable: the lib's fsync=off, synchronous_commit=off and full_page_writes=off are put back to
# PostgreSQL's defaults (a later -c wins). wal_level=replica with max_wal_senders at its default is
# what a server with replicas or a WAL archive runs: every row goes to the WAL. minimal (which
# needs max_wal_senders=0) lets a COPY into a table truncated or created in the same transaction
# skip the WAL. Autovacuum is off so that the vacuum or analyze a load leaves due does not run
# into the next run's timing. log_statement_stats logs each statement's CPU (one "! system usage
# stats" entry per query, or per parse, bind and execute message); log_min_error_statement=log
# adds the statement's text to it, and the prefix the backend's PID and kind.
settings=(
    fsync=on synchronous_commit=on full_page_writes=on
    shared_buffers=256MB max_wal_size=4GB checkpoint_timeout=30min
    "wal_level=$wal_level" autovacuum=off
    log_statement_stats=on log_min_error_statement=log "log_line_prefix='%m [%p] %b: '"
)
if [[ $wal_level == minimal ]]; then settings+=(max_wal_senders=0); fi

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

# start_cluster NAME: reuses NAME's cluster in $WORKDIR when asked to and it exists (restarted
# with this run's settings, which may differ from the last run's), else makes a new one.
start_cluster() {
    local name=$1
    if [[ -f $WORKDIR/$name/data/PG_VERSION ]]; then
        [[ $reuse == 1 ]] || die "$WORKDIR/$name already holds a cluster: set BENCH_REUSE=1" \
            "to reuse it, or remove it"
        step "Reusing the $name cluster in $WORKDIR/$name (port $(cluster_port "$name"))"
        owned+=("$name")
        cluster_restart "$name" "${settings[@]}" ||
            die "could not start the $name cluster again; see $WORKDIR/$name/server.log"
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

postmaster_pid() {
    head -n 1 "$WORKDIR/$1/data/postmaster.pid"
}

# server_cpu_ticks NAME: clock ticks of CPU the cluster has used so far, as three numbers: its
# postmaster's own, that of the children it has reaped (cutime and cstime: backends and parallel
# workers that came and went) and that of its live children (checkpointer, walwriter, backends).
server_cpu_ticks() {
    local postmaster file line self=0 reaped=0 live=0
    local -a f
    postmaster=$(postmaster_pid "$1")
    for file in /proc/[0-9]*/stat; do
        { read -r line <"$file"; } 2>/dev/null || continue
        # Fields from the third (state) on; the command name before them may hold spaces.
        read -r -a f <<<"${line##*) }"
        if [[ $file == "/proc/$postmaster/stat" ]]; then
            self=$((f[11] + f[12]))
            reaped=$((f[13] + f[14]))
        elif [[ ${f[1]} == "$postmaster" ]]; then
            live=$((live + f[11] + f[12]))
        fi
    done
    echo "$self $reaped $live"
}
clock_ticks=$(getconf CLK_TCK)

# wait_idle NAME...: waits (up to 10 s) until the clusters have no client backend and no
# parallel worker left, not even one that has exited but is not reaped yet, so that CPU read
# before and after a run is all of its backends' or none of it.
wait_idle() {
    local name file line busy
    local -a f
    local -A postmasters=()
    for name in "$@"; do postmasters[$(postmaster_pid "$name")]=1; done
    for _ in $(seq 1 200); do
        busy=0
        for file in /proc/[0-9]*/stat; do
            { read -r line <"$file"; } 2>/dev/null || continue
            read -r -a f <<<"${line##*) }"
            [[ -n ${postmasters[${f[1]}]:-} ]] || continue
            if [[ ${f[0]} == Z ]]; then busy=1; break; fi
            line=$(tr '\0' ' ' <"${file%/stat}/cmdline" 2>/dev/null) || continue
            case $line in
                *'127.0.0.1('* | *'[local]'* | *'parallel worker'*) busy=1; break ;;
            esac
        done
        ((busy)) || return 0
        sleep 0.05
    done
    echo "bench: warning: $* still had client backends after 10 s" >&2
}

log_size() {
    stat -c %s "$WORKDIR/$1/server.log"
}

# statement_cpu NAME FROM TO: the statement statistics cluster NAME logged between byte offsets
# FROM and TO of its server.log, summed by kind. Prints "readers writers index analyze other
# statements backends count writer_max writer_min": seconds of CPU (user + system) of source
# COPY TO STDOUT, destination COPY FROM STDIN, index builds (CREATE INDEX, REINDEX, ALTER TABLE
# ... ADD a primary key, unique or exclusion constraint), ANALYZE and VACUUM, other statements,
# all statements, and all the backends that logged (each one's last "total": its whole CPU up
# to its last statement, connecting included), how many backends logged, and the most and least
# CPU one backend spent writing (0 0 if none wrote).
statement_cpu() {
    local log=$WORKDIR/$1/server.log from=$2 to=$3
    tail -c "+$((from + 1))" "$log" | head -c "$((to - from))" | awk '
        function flush(    s, k) {
            if (!active) return
            active = 0
            s = tolower(stmt)
            sub(/^[ \t]+/, "", s)
            if (s ~ /to stdout/) k = "readers"
            else if (s ~ /from stdin/) k = "writers"
            else if (s ~ /^(create (unique )?index|reindex)/ ||
                     (s ~ /^alter table/ && s ~ /(primary key|unique|exclude)/ &&
                      s !~ /foreign key/)) k = "index"
            else if (s ~ /^(analyze|vacuum)/) k = "analyze"
            else k = "other"
            cpu[k] += delta
            statements += delta
            last[pid] = total
            if (k == "writers") wrote[pid] += delta
        }
        /^[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9] / {
            section = ""
            if (!match($0, /\[[0-9]+\] /)) { flush(); next }
            p = substr($0, RSTART + 1, RLENGTH - 3)
            rest = substr($0, RSTART + RLENGTH)
            if (rest ~ /^client backend: LOG:  [A-Z ]*STATISTICS$/) {
                flush()
                active = 1; pid = p; delta = 0; total = 0; stmt = ""; section = "stats"
            } else if (active && p == pid && rest ~ /^client backend: DETAIL:  ! system usage/) {
                section = "detail"
            } else if (active && p == pid && index(rest, "client backend: STATEMENT:  ") == 1) {
                stmt = substr(rest, 29); section = "statement"
            } else {
                flush()
            }
            next
        }
        /^\t/ {
            if (section == "detail" && $4 == "user,") {
                if ($2 ~ /^\[/) { v = $2; sub(/^\[/, "", v); total = v + $5 }
                else delta = $2 + $5
            } else if (section == "statement") {
                line = $0; sub(/^\t/, "", line); stmt = stmt " " line
            }
            next
        }
        END {
            flush()
            for (p in last) { backends += last[p]; count++ }
            first = 1
            for (p in wrote) {
                if (first || wrote[p] > wmax) wmax = wrote[p]
                if (first || wrote[p] < wmin) wmin = wrote[p]
                first = 0
            }
            printf "%.4f %.4f %.4f %.4f %.4f %.4f %.4f %d %.4f %.4f\n", cpu["readers"],
                cpu["writers"], cpu["index"], cpu["analyze"], cpu["other"], statements,
                backends, count, wmax, wmin
        }'
}

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

# --- the data sets -----------------------------------------------------------------------------

# The database that holds SET at SCALE, on both clusters; the destination's empty twin that
# the rows copying into an empty database use is "<that>_clone".
db_of() {
    case $1 in
        mixed) echo "bench_s$2" ;;
        one-table) echo "bench_one_s$2" ;;
    esac
}

fill_mixed() {
    local url=$1 s=$2
    step "Filling the source: pgbench -i -s $s --foreign-keys"
    "$bindir/pgbench" -i -s "$s" -q --foreign-keys -d "$url" >"$tmp/logs/pgbench-s$s.log" 2>&1 ||
        {
            tail -n 20 "$tmp/logs/pgbench-s$s.log" >&2
            die "pgbench -i failed"
        }
    step "Adding the mixed-types table: $((s * 50000)) rows"
    psql_url "$url" >/dev/null <<SQL
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
SQL
}

# One big table (bench_events, about 90% of the bytes with its indexes) and three small ones.
fill_one_table() {
    local url=$1 s=$2
    local events=$((s * 75000)) customers=$((s * 1000)) orders=$((s * 30000))
    step "Filling the source: bench_events ($events rows) and three small tables"
    psql_url "$url" >/dev/null <<SQL
CREATE TABLE bench_customers (
    id         bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    name       text NOT NULL,
    email      text NOT NULL,
    created_at timestamptz NOT NULL
);
CREATE TABLE bench_products (
    id    int PRIMARY KEY,
    name  text NOT NULL,
    price numeric(10, 2) NOT NULL
);
CREATE TABLE bench_orders (
    id          bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    customer_id bigint NOT NULL REFERENCES bench_customers,
    product_id  int NOT NULL REFERENCES bench_products,
    quantity    int NOT NULL,
    ordered_at  timestamptz NOT NULL
);
CREATE INDEX ON bench_orders (customer_id);
CREATE TABLE bench_events (
    id          bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    account_id  int NOT NULL,
    note        text NOT NULL,
    happened_at timestamptz NOT NULL,
    amount      numeric(12, 2) NOT NULL
);
SELECT setseed(0.42);
INSERT INTO bench_customers (name, email, created_at)
SELECT 'customer ' || i, 'customer' || i || '@example.com',
       timestamptz '2020-01-01 00:00:00+00' + i * interval '1 hour'
FROM generate_series(1, $customers) AS i;
INSERT INTO bench_products (id, name, price)
SELECT i, 'product ' || i, round((random() * 500)::numeric, 2)
FROM generate_series(1, 1000) AS i;
INSERT INTO bench_orders (customer_id, product_id, quantity, ordered_at)
SELECT 1 + (random() * ($customers - 1))::bigint, 1 + (random() * 999)::int,
       1 + (random() * 9)::int,
       timestamptz '2024-01-01 00:00:00+00' + random() * interval '365 days'
FROM generate_series(1, $orders) AS i;
INSERT INTO bench_events (account_id, note, happened_at, amount)
SELECT (random() * 100000)::int,
       substr(repeat(md5(i::text), 4), 1, 90 + i % 21),
       timestamptz '2024-01-01 00:00:00+00' + random() * interval '365 days',
       round((random() * 100000)::numeric, 2)
FROM generate_series(1, $events) AS i;
CREATE INDEX bench_events_happened_at_idx ON bench_events (happened_at);
CREATE INDEX bench_events_account_note_idx ON bench_events (account_id, note);
SELECT setval(pg_get_serial_sequence('bench_customers', 'id'), $customers);
SELECT setval(pg_get_serial_sequence('bench_orders', 'id'), $orders);
SELECT setval(pg_get_serial_sequence('bench_events', 'id'), $events);
SQL
}

# load SET SCALE: (re)creates SET's database on both clusters: the source filled at SCALE,
# vacuumed and analyzed; the destination with the same schema and no rows. A reused source that
# already holds it (the database's comment records a finished load) is kept.
load() {
    local set=$1 s=$2 db src dst
    db=$(db_of "$set" "$s")
    src=$(cluster_url source "$db")
    dst=$(cluster_url dest "$db")
    local marker="pgcopy bench v2: $set loaded at scale $s"
    if [[ $(cluster_psql source postgres -At -c \
        "SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = '$db'") \
        == "$marker" ]]; then
        step "Reusing the source database $db ($set, scale $s)"
    else
        cluster_psql source postgres -c 'SET client_min_messages = warning' \
            -c "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db"
        case $set in
            mixed) fill_mixed "$src" "$s" ;;
            one-table) fill_one_table "$src" "$s" ;;
        esac
        psql_url "$src" -c 'VACUUM ANALYZE' -c 'CHECKPOINT' -c "COMMENT ON DATABASE $db IS '$marker'"
    fi
    step "Copying the schema to the destination: pg_dump --schema-only | psql"
    cluster_psql dest postgres -c 'SET client_min_messages = warning' \
        -c "DROP DATABASE IF EXISTS $db" -c "DROP DATABASE IF EXISTS ${db}_clone" \
        -c "CREATE DATABASE $db"
    "$BENCH_PG_DUMP" --schema-only --no-owner --no-privileges -d "$src" |
        psql_url "$dst" >/dev/null
    step "Fingerprinting the source"
    fingerprint "$src" >"$tmp/source-$db.txt"
}

# empty_dest URL: what the runs into the existing schema start from: empty tables, and a
# checkpoint so that the last run's dirty pages are not written during this one.
empty_dest() {
    local url=$1 tables
    tables=$(psql_url "$url" -At -c "SELECT string_agg(t, ', ') FROM ($tables_sql) AS x (t)")
    psql_url "$url" -c "TRUNCATE $tables CASCADE" -c "CHECKPOINT"
}

# fresh_clone_db DB: what the runs into an empty database start from: DB's twin DB_clone on the
# destination, dropped and created again, then a checkpoint.
fresh_clone_db() {
    cluster_psql dest postgres -c 'SET client_min_messages = warning' \
        -c "DROP DATABASE IF EXISTS $1_clone" -c "CREATE DATABASE $1_clone" -c CHECKPOINT
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

# schema_then COMMAND...: into an empty database: the schema as pg_dump --schema-only | psql
# makes it, then COMMAND (pgcopy).
schema_then() {
    set -euo pipefail
    "$BENCH_PG_DUMP" --schema-only --no-owner --no-privileges -d "$BENCH_SRC" |
        "$BENCH_PSQL" -X -q -v ON_ERROR_STOP=1 -d "$BENCH_DST" >/dev/null
    "$@"
}
export -f pipe_table psql_pipe dump_restore dump_restore_dir schema_then
export BENCH_PARALLEL=$parallel BENCH_TMP=$tmp

# split_size: the piece size of the split rows, set once the one-table source is loaded: the
# big table's size (pg_table_size: heap, TOAST and maps) over 2 x P, in whole MiB rounded up.
split_mib=0

# tools_of SET: the rows of SET, in the order they run.
tools_of() {
    local -a t=(pgcopy)
    if ((has_no_analyze)); then t+=(pgcopy_no_analyze); fi
    if [[ -n $baseline ]]; then t+=(pgcopy_baseline); fi
    if [[ $1 == one-table ]] && ((has_split)); then t+=(pgcopy_split pgcopy_single); fi
    t+=(psql_pipe dump_restore)
    if [[ $dir_dump == 1 ]]; then t+=(dump_restore_dir); fi
    t+=(schema_pgcopy)
    if [[ $1 == one-table ]] && ((has_split)); then t+=(schema_pgcopy_split); fi
    if [[ -n $pgcopydb ]]; then
        t+=(pgcopydb)
        if [[ $1 == one-table ]]; then t+=(pgcopydb_split); fi
    fi
    echo "${t[@]}"
}

# Whether TOOL copies into an empty database (and so gets one, made afresh for each run).
into_empty() {
    [[ $1 == schema_pgcopy* || $1 == pgcopydb* ]]
}

label() {
    case $1 in
        pgcopy) echo "pgcopy" ;;
        pgcopy_no_analyze) echo "pgcopy --no-analyze" ;;
        pgcopy_baseline) echo "pgcopy baseline" ;;
        pgcopy_split) echo "pgcopy split (--split-tables-larger-than ${split_mib}MiB)" ;;
        pgcopy_single) echo "pgcopy single (--no-split)" ;;
        psql_pipe) echo "psql → psql (COPY binary)" ;;
        dump_restore) echo "pg_dump -Fc → pg_restore" ;;
        dump_restore_dir) echo "pg_dump -Fd -j $parallel → pg_restore -j $parallel" ;;
        schema_pgcopy)
            if ((has_split)); then
                echo "schema + pgcopy --no-split (empty db)"
            else
                echo "schema + pgcopy (empty db)"
            fi
            ;;
        schema_pgcopy_split) echo "schema + pgcopy split ${split_mib}MiB (empty db)" ;;
        pgcopydb) echo "pgcopydb clone (empty db)" ;;
        pgcopydb_split) echo "pgcopydb clone split ${split_mib}MB (empty db)" ;;
    esac
}

results=$tmp/results.txt
kinds=$tmp/kinds.txt
: >"$results"
: >"$kinds"

# run_tool SET TOOL RUN SCALE: one measured run of TOOL on SET at SCALE, into the emptied
# destination tables or a new empty database, checked against the source. Appends to $results
# "set scale tool run wall cpu rss_kib server_cpu wal_bytes checkpoint busy%" (busy: client and
# server CPU over the wall time of all the machine's cores), and to $kinds "set scale tool run"
# and the server CPU by kind in seconds: "readers writers index workers analyze other outside
# background total writer_max writer_min backends".
run_tool() {
    local set=$1 tool=$2 run=$3 s=$4
    local db src dst target log timing
    db=$(db_of "$set" "$s")
    src=$(cluster_url source "$db")
    dst=$(cluster_url dest "$db")
    target=$dst
    if into_empty "$tool"; then target=$(cluster_url dest "${db}_clone"); fi
    log=$tmp/logs/$set-$tool-s$s-$run.log
    timing=$tmp/logs/$set-$tool-s$s-$run.time
    local -a cmd common=(copy --source "$src" --dest "$target" --yes --no-progress
        --parallel "$parallel" --state-dir "$tmp/state")
    local -a pgcopydb_cmd=(env "PATH=$bindir:$PATH" "$pgcopydb" clone --source "$src"
        --target "$target" --table-jobs "$parallel" --index-jobs "$parallel"
        --dir "$tmp/pgcopydb")
    local -a no_split=()
    if ((has_split)); then no_split=(--no-split); fi
    case $tool in
        pgcopy) cmd=("$pgcopy" "${common[@]}") ;;
        pgcopy_baseline) cmd=("$baseline" "${common[@]}") ;;
        pgcopy_no_analyze) cmd=("$pgcopy" "${common[@]}" --no-analyze) ;;
        pgcopy_split)
            cmd=("$pgcopy" "${common[@]}" --split-tables-larger-than "${split_mib}MiB")
            ;;
        pgcopy_single) cmd=("$pgcopy" "${common[@]}" --no-split) ;;
        schema_pgcopy)
            cmd=(bash -c 'schema_then "$@"' schema_then "$pgcopy" "${common[@]}"
                "${no_split[@]}")
            ;;
        schema_pgcopy_split)
            cmd=(bash -c 'schema_then "$@"' schema_then "$pgcopy" "${common[@]}"
                --split-tables-larger-than "${split_mib}MiB")
            ;;
        pgcopydb) cmd=("${pgcopydb_cmd[@]}") ;;
        pgcopydb_split)
            cmd=("${pgcopydb_cmd[@]}" --split-tables-larger-than "${split_mib}MB")
            ;;
        *) cmd=(bash -c "$tool") ;;
    esac
    if into_empty "$tool"; then
        fresh_clone_db "$db"
    else
        empty_dest "$dst"
    fi
    rm -rf "$tmp/dump" "$tmp/pgcopydb"
    step "$set: $(label "$tool"), scale $s, run $run"
    local lsn name
    local -A cpu_before=() cpu_after=() log_from=() log_to=()
    lsn=$(psql_url "$dst" -At -c 'SELECT pg_current_wal_lsn()')
    wait_idle source dest
    for name in source dest; do
        log_from[$name]=$(log_size "$name")
        cpu_before[$name]=$(server_cpu_ticks "$name")
    done
    if ! BENCH_SRC=$src BENCH_DST=$target /usr/bin/time -v -o "$timing" "${cmd[@]}" \
        >"$log" 2>&1; then
        tail -n 30 "$log" >&2
        die "$(label "$tool") failed (exit status above; whole output in $log)"
    fi
    wait_idle source dest
    for name in source dest; do
        cpu_after[$name]=$(server_cpu_ticks "$name")
        log_to[$name]=$(log_size "$name")
    done
    local wal start end
    wal=$(psql_url "$dst" -At -c "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '$lsn')")
    # What the run left for later: dirty pages the next checkpoint must write and fsync (a COPY
    # that skipped the WAL has already synced its files at commit).
    start=$(date +%s%N)
    psql_url "$dst" -c CHECKPOINT
    end=$(date +%s%N)
    rm -rf "$tmp/dump" "$tmp/pgcopydb"
    fingerprint "$target" >"$tmp/dest.txt"
    if ! diff -u "$tmp/source-$db.txt" "$tmp/dest.txt" >"$tmp/diff.txt"; then
        cat "$tmp/diff.txt" >&2
        die "$set: $(label "$tool") run $run: the destination differs from the source (diff" \
            "above; the tool's output is in $log)"
    fi
    if into_empty "$tool"; then
        cluster_psql dest postgres -c "DROP DATABASE ${db}_clone"
    fi
    local server
    server=$(awk -v a="${cpu_after[source]} ${cpu_after[dest]}" \
        -v b="${cpu_before[source]} ${cpu_before[dest]}" 'BEGIN {
            n = split(a, x, " "); split(b, y, " ")
            for (i = 1; i <= n; i++) t += x[i] - y[i]
            print t
        }')
    awk -v set="$set" -v scale="$s" -v tool="$tool" -v run="$run" -v cores="$(nproc)" \
        -v server="$server" -v hz="$clock_ticks" -v wal="$wal" \
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
            printf "%s %s %s %s %.2f %.2f %d %.2f %.0f %.2f %.0f\n", set, scale, tool, run,
                wall, cpu, rss, server / hz, wal, ckpt / 1000, busy
        }' "$timing" >>"$results"
    # The server CPU by kind. Per cluster: ticks (self, reaped, live) before and after, and the
    # statements it logged; the processes that ended in the run (reaped) are the backends, whose
    # last logged total is nearly all of their CPU, and parallel workers, which log nothing.
    {
        echo "${cpu_before[source]} ${cpu_after[source]} $(statement_cpu source \
            "${log_from[source]}" "${log_to[source]}")"
        echo "${cpu_before[dest]} ${cpu_after[dest]} $(statement_cpu dest \
            "${log_from[dest]}" "${log_to[dest]}")"
    } | awk -v set="$set" -v scale="$s" -v tool="$tool" -v run="$run" -v hz="$clock_ticks" '
        # $1-$3 self, reaped, live before; $4-$6 after; $7.. readers writers index analyze
        # other statements backends count writer_max writer_min
        {
            background += ($4 - $1 + $6 - $3) / hz
            reaped += ($5 - $2) / hz
            readers += $7; writers += $8; index_ += $9; analyze += $10; other += $11
            statements += $12; backends += $13; count += $14
            if ($15 > wmax) wmax = $15
            if ($16 > 0 && (wmin == 0 || $16 < wmin)) wmin = $16
        }
        END {
            printf "%s %s %s %s %.3f %.3f %.3f %.3f %.3f %.3f %.3f %.3f %.3f %.3f %.3f %d\n",
                set, scale, tool, run, readers, writers, index_, reaped - backends, analyze,
                other, backends - statements, background, reaped + background, wmax, wmin,
                count
        }' >>"$kinds"
}

# stat_of FILE SET SCALE TOOL COLUMN median|max: over the runs in FILE.
stat_of() {
    awk -v set="$2" -v scale="$3" -v tool="$4" -v col="$5" \
        '$1 == set && $2 == scale && $3 == tool { print $col }' "$1" | sort -g | awk -v how="$6" '
        { v[NR] = $1 }
        END {
            if (NR == 0) { print "nan"; exit }
            if (how == "max") print v[NR]
            else if (NR % 2) print v[(NR + 1) / 2]
            else print (v[NR / 2] + v[NR / 2 + 1]) / 2
        }'
}

# --- the header --------------------------------------------------------------------------------

for set in "${sets[@]}"; do
    load "$set" "$scale"
done
if [[ " ${sets[*]} " == *" one-table "* ]]; then
    split_mib=$(psql_url "$(cluster_url source "$(db_of one-table "$scale")")" -At -c "
        SELECT ceil(pg_table_size('bench_events') / (2.0 * $parallel) / 1048576)::int")
fi

pg_version=$(cluster_psql source postgres -At -c 'SELECT version()')
cpu_model=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)
mem_total=$(awk '/^MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo)
# The settings in force, as the destination reports them (both clusters get the same).
in_force=$(cluster_psql dest postgres -At -c "
    SELECT string_agg(name || '=' || current_setting(name), ' ' ORDER BY o)
    FROM unnest(ARRAY['wal_level', 'max_wal_senders', 'fsync', 'synchronous_commit',
                      'full_page_writes', 'shared_buffers', 'max_wal_size',
                      'checkpoint_timeout', 'autovacuum', 'maintenance_work_mem',
                      'max_parallel_maintenance_workers', 'log_statement_stats'])
         WITH ORDINALITY AS s (name, o)" | fold -s -w 86 | sed 's/ *$//; 2,$s/^/            /')

cat <<EOF
# pgcopy benchmark ($(date -u '+%Y-%m-%d %H:%M UTC'))

machine     $(nproc) CPUs ($cpu_model), $mem_total RAM, $(uname -sr)
postgres    $pg_version
pgcopy      $("$pgcopy" --version) ($pgcopy)
EOF
if [[ -n $baseline ]]; then
    echo "baseline    $("$baseline" --version) ($baseline): row 'pgcopy baseline', same arguments"
fi
if ((has_split)); then
    echo "split       this pgcopy has --split-tables-larger-than and --no-split: rows 'pgcopy split'"
    echo "            and 'pgcopy single' on the one-table set"
else
    echo "split       this pgcopy has no --split-tables-larger-than / --no-split: the split rows"
    echo "            are left out"
fi
if [[ -n $pgcopydb ]]; then
    echo "pgcopydb    $("$pgcopydb" --version 2>&1 | sed -n 's/^\(pgcopydb version [^ ]*\).*/\1/p' |
        head -n 1) ($pgcopydb)"
elif [[ $want_pgcopydb == 1 ]]; then
    echo "pgcopydb    not installed and not installable here: its rows are left out"
else
    echo "pgcopydb    left out (--no-pgcopydb)"
fi
cat <<EOF
load avg    $(cut -d ' ' -f 1-3 /proc/loadavg) before the runs (other work on the machine skews the numbers)
parameters  --scale $scale --runs $runs --parallel $parallel --data $data --wal-level $wal_level;
            $runs run(s) of each tool, round robin within each data set
servers     both on this machine, over TCP on 127.0.0.1, with (as in force):
            $in_force
EOF
if [[ $wal_level == replica ]]; then
    cat <<EOF
wal         wal_level=replica is what a production server with replicas or a WAL archive runs
            (--wal-level minimal is the most favourable setting instead): every tool writes
            every row, and every index it builds, to the WAL; see "dest WAL".
EOF
else
    cat <<EOF
wal         wal_level=minimal (not production's: a server with replicas or a WAL archive runs
            replica) lets a COPY into a table truncated in the same transaction skip the WAL
            (its files are fsynced at commit instead). pgcopy (TRUNCATE + COPY FREEZE per
            table) and the psql pipe (written the same way) get that, and so do the rows into
            an empty database; pg_restore --data-only does not (it never truncates), so it
            writes every row to the WAL too: see "dest WAL".
EOF
fi
if ((has_no_analyze)); then
    echo "analyze     pgcopy ANALYZEs each copied table after its load, pgcopydb VACUUM ANALYZEs;"
    echo "            the other tools do not: 'pgcopy --no-analyze' is the like-for-like row"
else
    echo "analyze     this pgcopy has no --no-analyze; it runs no ANALYZE after a load"
fi
cat <<EOF
fairness    the psql pipe drops the destination's foreign keys, copies $parallel tables at a time
            and adds the keys back (validated), as pgcopy does; pg_restore --disable-triggers
            keeps the keys but neither checks nor validates them, and pg_dump -Fc compresses
            (its default). These rows start from emptied tables after a CHECKPOINT. The
            "(empty db)" rows start from a new empty database instead and make the schema
            too: pgcopydb clone against pg_dump --schema-only | psql followed by pgcopy.
measures    wall and client CPU (user+sys, all client processes) and peak RSS (the largest
            client process) from /usr/bin/time -v; server CPU of both clusters from /proc;
            dest WAL written; then CHECKPOINT = the time the checkpoint right after the run
            takes (writes the run left dirty; not in wall). Every run is checked: per table
            row count and checksum, foreign keys and sequences equal the source's.
server CPU  by kind, from each statement's log_statement_stats entry (getrusage of the backend
            around the statement) on both servers, summed per run: readers = source COPY TO
            STDOUT, writers = dest COPY FROM STDIN, index = CREATE INDEX, REINDEX and ALTER
            TABLE ADD PRIMARY KEY/UNIQUE, ANALYZE/VACUUM, other statements; outside = the
            backends' CPU outside statements (connecting, protocol); workers+exits = the CPU
            of the processes that ended in the run beyond their backends' last logged total:
            parallel workers of CREATE INDEX (which log no statistics) and each backend's exit
            (a few ms each); background = postmaster, checkpointer, walwriter, bgwriter.
            Together they are the server CPU of the first table.

EOF

# --- the runs and the report -------------------------------------------------------------------

# table SET SCALE TOOL...: the results of SET at SCALE, one row per tool.
table() {
    local set=$1 s=$2 tool
    shift 2
    printf '| %s (scale %s, runs: %s) | wall s | client CPU s | peak RSS MiB | server CPU s |' \
        "$set" "$s" "$runs"
    printf ' CPU busy %% | dest WAL MiB | CHECKPOINT after s |\n'
    echo '| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |'
    for tool in "$@"; do
        printf '| %s | %.2f | %.2f | %.1f | %.2f | %.0f | %.0f | %.2f |\n' "$(label "$tool")" \
            "$(stat_of "$results" "$set" "$s" "$tool" 5 median)" \
            "$(stat_of "$results" "$set" "$s" "$tool" 6 median)" \
            "$(awk -v k="$(stat_of "$results" "$set" "$s" "$tool" 7 max)" \
                'BEGIN { print k / 1024 }')" \
            "$(stat_of "$results" "$set" "$s" "$tool" 8 median)" \
            "$(stat_of "$results" "$set" "$s" "$tool" 11 median)" \
            "$(awk -v b="$(stat_of "$results" "$set" "$s" "$tool" 9 median)" \
                'BEGIN { print b / 1048576 }')" \
            "$(stat_of "$results" "$set" "$s" "$tool" 10 median)"
    done
    echo "(medians over the runs; peak RSS: the largest of any run. CPU busy: client + server"
    echo "CPU over wall time × $(nproc) cores.)"
    echo
}

# kinds_table SET SCALE TOOL...: the server CPU of SET at SCALE by kind, one row per tool.
kinds_table() {
    local set=$1 s=$2 tool col
    shift 2
    printf '| server CPU s, %s (medians) | readers | writers | index | workers+exits |' "$set"
    printf ' ANALYZE/VACUUM | other | outside | background | total | writer/backend max | min |'
    printf ' backends |\n'
    echo '| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |'
    for tool in "$@"; do
        printf '| %s |' "$(label "$tool")"
        for col in 5 6 7 8 9 10 11 12 13; do
            printf ' %.2f |' "$(stat_of "$kinds" "$set" "$s" "$tool" "$col" median)"
        done
        for col in 14 15; do
            printf ' %.3f |' "$(stat_of "$kinds" "$set" "$s" "$tool" "$col" median)"
        done
        printf ' %.0f |\n' "$(stat_of "$kinds" "$set" "$s" "$tool" 16 median)"
    done
    echo "(medians of each column over the runs, so the columns need not add up to the total"
    echo "exactly; writer/backend: the CPU of the busiest and the least busy destination backend"
    echo "that ran COPY FROM STDIN in one run, to see how even the pieces are.)"
    echo
}

# goal NAME VALUE GOAL: one row; VALUE <= GOAL is met.
goal() {
    awk -v name="$1" -v v="$2" -v g="$3" 'BEGIN {
        printf "| %s | %.3f | ≤ %s | %s |\n", name, v, g, (v <= g) ? "met" : "NOT met"
    }'
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.4f", (b > 0) ? a / b : 1e9 }'; }

# compare NAME SET TOOL OTHER COLUMN: one row without a goal: TOOL over OTHER, run by run (the
# two ran in the same round, minutes apart at most, so the machine's drift between rounds
# cancels out): the median of those ratios, their range, and the two medians.
compare() {
    local a b
    a=$(stat_of "$results" "$2" "$scale" "$3" "$5" median)
    b=$(stat_of "$results" "$2" "$scale" "$4" "$5" median)
    awk -v set="$2" -v scale="$scale" -v tool="$3" -v other="$4" -v col="$5" \
        '$1 == set && $2 == scale && $3 == tool { a[$4] = $col }
         $1 == set && $2 == scale && $3 == other { b[$4] = $col }
         END { for (run in a) if ((run in b) && b[run] > 0) print a[run] / b[run] }' \
        "$results" | sort -g | awk -v name="$1" -v a="$a" -v b="$b" '
        { r[NR] = $1 }
        END {
            if (NR == 0) { printf "| %s | nan | | |\n", name; exit }
            m = (NR % 2) ? r[(NR + 1) / 2] : (r[NR / 2] + r[NR / 2 + 1]) / 2
            printf "| %s | %.3f | (runs %.3f–%.3f; medians %.2f s ÷ %.2f s) | |\n", name, m,
                r[1], r[NR], a, b
        }'
}

# ratios SET TOOL...: the goals of issue 6 and the comparisons that SET's rows allow.
ratios() {
    local set=$1 tool name pipe_wall dump_wall pipe_cpu
    shift
    local have=" $* "
    echo "| ratio, $set (medians; without a goal: of the runs' ratios) | value | goal | |"
    echo '| --- | ---: | ---: | --- |'
    pipe_wall=$(stat_of "$results" "$set" "$scale" psql_pipe 5 median)
    dump_wall=$(stat_of "$results" "$set" "$scale" dump_restore 5 median)
    pipe_cpu=$(stat_of "$results" "$set" "$scale" psql_pipe 6 median)
    for tool in pgcopy pgcopy_no_analyze; do
        [[ $have == *" $tool "* ]] || continue
        name=$(label "$tool")
        goal "$name wall ÷ psql pipe wall" \
            "$(ratio "$(stat_of "$results" "$set" "$scale" "$tool" 5 median)" "$pipe_wall")" 0.65
        goal "$name wall ÷ pg_dump → pg_restore wall" \
            "$(ratio "$(stat_of "$results" "$set" "$scale" "$tool" 5 median)" "$dump_wall")" 0.45
        goal "$name CPU ÷ psql pipe client CPU" \
            "$(ratio "$(stat_of "$results" "$set" "$scale" "$tool" 6 median)" "$pipe_cpu")" 0.6
    done
    awk -v s="$(stat_of "$results" "$set" "$scale" pgcopy 7 max)" 'BEGIN {
        printf "| pgcopy peak RSS | %.1f MiB | ≤ 64 MiB | %s |\n", s / 1024,
            (s <= 65536) ? "met" : "NOT met"
    }'
    if [[ $have == *" pgcopy_baseline "* ]]; then
        compare "pgcopy client CPU ÷ baseline client CPU" "$set" pgcopy pgcopy_baseline 6
        compare "pgcopy wall ÷ baseline wall" "$set" pgcopy pgcopy_baseline 5
        compare "pgcopy server CPU ÷ baseline server CPU" "$set" pgcopy pgcopy_baseline 8
    fi
    if [[ $have == *" pgcopy_split "* ]]; then
        compare "pgcopy split wall ÷ pgcopy single wall" "$set" pgcopy_split pgcopy_single 5
        compare "pgcopy split server CPU ÷ pgcopy single server CPU" "$set" pgcopy_split \
            pgcopy_single 8
    fi
    if [[ $have == *" pgcopydb "* ]]; then
        compare "$(label schema_pgcopy) wall ÷ pgcopydb clone wall" "$set" schema_pgcopy \
            pgcopydb 5
        compare "$(label schema_pgcopy) client CPU ÷ pgcopydb clone client CPU" "$set" \
            schema_pgcopy pgcopydb 6
    fi
    if [[ $have == *" pgcopydb_split "* && $have == *" schema_pgcopy_split "* ]]; then
        compare "schema + pgcopy split wall ÷ pgcopydb clone split wall" "$set" \
            schema_pgcopy_split pgcopydb_split 5
        compare "schema + pgcopy split client CPU ÷ pgcopydb clone split client CPU" "$set" \
            schema_pgcopy_split pgcopydb_split 6
    fi
    echo
}

# describe SET: what SET's source holds.
describe() {
    local set=$1 db url size rows
    db=$(db_of "$set" "$scale")
    url=$(cluster_url source "$db")
    size=$(psql_url "$url" -At -c 'SELECT pg_size_pretty(pg_database_size(current_database()))')
    # rows: from the source's fingerprint (table|rows|checksum|checksum), tables that have any
    rows=$(awk -F '|' 'NF == 4 && $2 > 0 { sub(/^public\./, "", $1); printf "%s%s %s", sep, $1, $2; sep = ", " }' \
        "$tmp/source-$db.txt" | fold -s -w 86 | sed 's/ *$//; 2,$s/^/            /')
    echo "## Data set: $set"
    echo
    case $set in
        mixed)
            echo "data        pgbench -i -s $scale --foreign-keys + bench_mixed: $size on disk"
            ;;
        one-table)
            echo "data        bench_events and three small tables: $size on disk"
            psql_url "$url" -At -c "
                SELECT format('            bench_events: %s of table, %s with its 3 indexes,'
                              || E' %s%% of the tables and indexes;\n'
                              || '            split size (for 2 x %s pieces) %sMiB', 
                    pg_size_pretty(pg_table_size('bench_events')),
                    pg_size_pretty(pg_total_relation_size('bench_events')),
                    round(100.0 * pg_total_relation_size('bench_events') / sum(
                        pg_total_relation_size(c.oid))),
                    $parallel, $split_mib)
                FROM pg_class AS c
                JOIN pg_namespace AS n ON n.oid = c.relnamespace
                WHERE c.relkind = 'r' AND n.nspname = 'public'"
            ;;
    esac
    echo "rows        $rows"
    echo
}

for set in "${sets[@]}"; do
    read -r -a set_tools <<<"$(tools_of "$set")"
    for ((run = 1; run <= runs; run++)); do
        for tool in "${set_tools[@]}"; do
            run_tool "$set" "$tool" "$run" "$scale"
        done
    done
    describe "$set"
    table "$set" "$scale" "${set_tools[@]}"
    kinds_table "$set" "$scale" "${set_tools[@]}"
    ratios "$set" "${set_tools[@]}"
done

echo "load avg    $(cut -d ' ' -f 1-3 /proc/loadavg) after the runs"
echo

# --- the scale check ---------------------------------------------------------------------------

big=$((scale * 4))
check_set=${sets[0]}
echo "| goal (issue 6), $check_set | value | goal | |"
echo '| --- | ---: | ---: | --- |'
rss_small=$(stat_of "$results" "$check_set" "$scale" pgcopy 7 max)
if [[ $scale_check == 1 ]]; then
    step "Scale check: reloading the $check_set source at scale $big"
    # Make room: the small databases are done with.
    for set in "${sets[@]}"; do
        if [[ $reuse != 1 ]]; then
            cluster_psql source postgres -c "DROP DATABASE $(db_of "$set" "$scale")"
        fi
        cluster_psql dest postgres -c "DROP DATABASE $(db_of "$set" "$scale")"
    done
    load "$check_set" "$big"
    for ((run = 1; run <= runs; run++)); do
        run_tool "$check_set" pgcopy "$run" "$big"
    done
    rss_big=$(stat_of "$results" "$check_set" "$big" pgcopy 7 max)
    # "The same at both": the larger scale's peak within 10% (or 2 MiB) of the smaller's.
    awk -v s="$rss_small" -v b="$rss_big" -v S="$scale" -v B="$big" 'BEGIN {
        same = (b <= s * 1.1 || b - s <= 2048)
        printf "| pgcopy peak RSS at scale %s and %s | %.1f and %.1f MiB | ≤ 64 MiB, the same at both | %s |\n",
            S, B, s / 1024, b / 1024, (s <= 65536 && b <= 65536 && same) ? "met" : "NOT met"
    }'
    goal "pgcopy wall at scale $big ÷ at scale $scale" \
        "$(ratio "$(stat_of "$results" "$check_set" "$big" pgcopy 5 median)" \
            "$(stat_of "$results" "$check_set" "$scale" pgcopy 5 median)")" 4.2
    echo
    table "$check_set" "$big" pgcopy
else
    awk -v s="$rss_small" -v S="$scale" 'BEGIN {
        printf "| pgcopy peak RSS at scale %s (4×: --scale-check) | %.1f MiB | ≤ 64 MiB, the same at both | %s |\n",
            S, s / 1024, (s <= 65536) ? "met at this scale" : "NOT met"
    }'
    echo "| pgcopy wall at 4× scale ÷ at scale $scale | not measured | ≤ 4.2 | run with --scale-check |"
fi
