#!/usr/bin/env bash
# A follower watched by a real Prometheus (Debian's prometheus package): two throwaway
# servers, pgbench's database on the source, `pgcopy copy --follow --metrics-listen` into
# the destination, and a Prometheus scraping it every second. pgbench writes for SECONDS;
# then the script asks Prometheus (its HTTP API, as a dashboard or an alert rule would)
# for the follower's lag, once a second, until the lag has been 0 for a few seconds, and
# cuts over. Printed: what Prometheus answered over time, and a verdict.
#
#   scripts/prometheus-follow.sh [SCALE (5)] [SECONDS of writes (15)] [CLIENTS (4)]
#
# PGCOPY_BIN (else `cargo build --release` here), PG_BINDIR (see scripts/lib/cluster.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib/cluster.sh
source scripts/lib/cluster.sh
scale=${1:-5}
seconds=${2:-15}
clients=${3:-4}

command -v prometheus >/dev/null || {
    echo "prometheus is missing: apt-get install prometheus" >&2
    exit 1
}
follower=
prom=
cleanup() {
    [[ -n $follower ]] && kill -9 "$follower" 2>/dev/null || true
    [[ -n $prom ]] && kill "$prom" 2>/dev/null || true
    follow_pair_stop
}
trap cleanup EXIT
follow_pair "$scale"
cluster_psql dst postgres -qc "CREATE DATABASE bench"
cluster_psql dst bench -q <<<"$bench_schema" >/dev/null

metrics_port=$(free_port)
prom_port=$(free_port)
mkdir -p "$WORKDIR/prometheus"
cat >"$WORKDIR/prometheus/prometheus.yml" <<EOF
global:
  scrape_interval: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: pgcopy
    static_configs:
      - targets: ['127.0.0.1:$metrics_port']
EOF
# As root, Prometheus runs as its package's user, which must own its data directory.
prom_cmd=(prometheus --config.file="$WORKDIR/prometheus/prometheus.yml"
    --storage.tsdb.path="$WORKDIR/prometheus/data" --web.listen-address="127.0.0.1:$prom_port")
if [[ $(id -u) == 0 ]] && id prometheus >/dev/null 2>&1; then
    chown -R prometheus "$WORKDIR/prometheus"
    chmod o+x "$WORKDIR"
    runuser -u prometheus -- "${prom_cmd[@]}" >"$WORKDIR/prometheus.log" 2>&1 &
else
    "${prom_cmd[@]}" >"$WORKDIR/prometheus.log" 2>&1 &
fi
prom=$!

dst_url=$(cluster_url dst bench)
echo "==> pgcopy copy --follow --metrics-listen $metrics_port" >&2
"$PGCOPY_BIN" copy --source "$src_url" --dest "$dst_url" --yes --no-progress \
    --follow --metrics-listen "$metrics_port" --log-format json --progress-interval 5 \
    2>"$WORKDIR/follower.log" &
follower=$!
until [[ $(cluster_psql dst bench -Atc "SELECT count(*) FROM pg_replication_origin") == 1 ]]; do
    kill -0 "$follower" 2>/dev/null || { cat "$WORKDIR/follower.log" >&2; exit 1; }
    sleep 0.2
done

# What Prometheus holds now for an instant query: the value, or "-" while it has none.
query() {
    curl -fsS --get "http://127.0.0.1:$prom_port/api/v1/query" --data-urlencode "query=$1" |
        python3 -c 'import json,sys; r=json.load(sys.stdin)["data"]["result"]; print(r[0]["value"][1] if r else "-")'
}
until [[ $(query 'up{job="pgcopy"}') == 1 ]]; do sleep 0.5; done

echo "==> pgbench: $clients clients for ${seconds}s, then idle" >&2
"$bindir/pgbench" -n -c "$clients" -T "$seconds" "${src_conn[@]}" bench >/dev/null 2>&1 &
writers=$!
printf '%8s  %14s  %10s  %14s  %12s\n' seconds lag_bytes lag_seconds applied_tx tx_per_s
zero=0
t0=$(date +%s.%N)
for ((t = 1; t <= seconds + 120; t++)); do
    sleep 1
    lag=$(query 'pgcopy_follow_lag_bytes')
    printf '%8.1f  %14s  %10s  %14s  %12s\n' \
        "$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { print b - a }')" \
        "$lag" "$(query 'pgcopy_follow_lag_seconds')" \
        "$(query 'pgcopy_follow_transactions_total')" \
        "$(query 'rate(pgcopy_follow_transactions_total[5s])')"
    if ! kill -0 "$writers" 2>/dev/null && [[ $lag == 0 ]]; then
        zero=$((zero + 1))
        ((zero < 3)) || break
    else
        zero=0
    fi
done
wait "$writers" || true
if ((zero >= 3)); then
    echo "the follower's lag, as Prometheus scraped it, fell to 0 once the writers stopped"
else
    echo "the lag did not reach 0 within two minutes of the writers stopping" >&2
    exit 1
fi
"$PGCOPY_BIN" cutover --source "$src_url" --dest "$dst_url" >&2
wait "$follower"
follower=
echo "cut over; the follower's last log line:"
tail -n 1 "$WORKDIR/follower.log"
