#!/usr/bin/env bash
# What masking costs (issue 20): one table with a rule on every text column, copied plain,
# masked by the source's rules, and masked by pgcopy's keyed rules, on two throwaway servers
# with production's settings (fsync on, wal_level=replica).
#
#   scripts/bench-masking.sh [ROWS (1000000)] [RUNS (5)]
#
# The table: customer (id int, email text, first_name text, last_name text, phone
# varchar(20), city text, note text, score int, ref int, account bigint, tag smallint).
# Per round, round robin, each into the freshly truncated destination table:
#   plain          pgcopy copy, no rules: the binary COPY as it is
#   source rules   --rules with sql, fixed, null and noise on the text columns (and score):
#                  the source evaluates them in COPY (SELECT …) TO STDOUT (FORMAT binary)
#   keyed rules    --rules with email, name, hash, phone and scramble: pgcopy applies them
#                  to the binary stream under PGCOPY_MASK_KEY, the key kept from both servers
#   integer hash   --rules with hash on the four integer columns (score, ref, account, tag):
#                  a keyed permutation of each type's values (an HMAC before; run the
#                  script with an older PGCOPY_BIN to compare the two)
# and prints the median wall time of each, and each ÷ plain as the median of the rounds'
# own ratios with their range (the machine is shared and noisy), with pgcopy's own CPU
# time (user + system) and peak memory from /usr/bin/time. pgsync and Greenmask, the
# anchors the issue names, are not run: neither is packaged for this machine.
# PGCOPY_BIN (else `cargo build --release` here), PG_BINDIR (see scripts/lib/cluster.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib/cluster.sh
source scripts/lib/cluster.sh
# shellcheck source=scripts/lib/timing.sh
source scripts/lib/timing.sh
rows=${1:-1000000}
runs=${2:-5}

bench_pair

echo "==> filling $rows rows" >&2
schema="CREATE TABLE customer (id int PRIMARY KEY, email text, first_name text,
             last_name text, phone varchar(20), city text, note text, score int, ref int,
             account bigint, tag smallint)"
cluster_psql src bench -c "$schema"
cluster_psql dst bench -c "$schema"
cluster_psql src bench -c "
    INSERT INTO customer
    SELECT i, 'person' || i || '@corp.example.com', 'First' || (i % 5000),
           'Last' || (i % 7919), '+44 20 7946 ' || lpad((i % 10000)::text, 4, '0'),
           'City ' || (i % 300), 'note ' || md5(i::text), i % 1000, (i * 7) % 1000003,
           i::bigint * 1000003, (i % 30000)::smallint
    FROM generate_series(1, $rows) i"
cluster_psql src bench -c "VACUUM ANALYZE customer"

source_rules=$WORKDIR/source.toml
cat >"$source_rules" <<'RULES'
[mask."public.customer"]
email = { rule = "sql", expr = "'user' || id || '@example.invalid'" }
first_name = { rule = "fixed", value = "Jane" }
last_name = { rule = "fixed", value = "Doe" }
phone = "null"
city = { rule = "sql", expr = "'City ' || (id % 50)" }
note = { rule = "sql", expr = "md5(note)" }
score = { rule = "noise", range = 10 }
RULES
keyed_rules=$WORKDIR/keyed.toml
cat >"$keyed_rules" <<'RULES'
[mask."public.customer"]
email = "email"
first_name = "name"
last_name = "hash"
phone = "phone"
city = "scramble"
note = "hash"
RULES
integer_rules=$WORKDIR/integers.toml
cat >"$integer_rules" <<'RULES'
[mask."public.customer"]
score = "hash"
ref = "hash"
account = "hash"
tag = "hash"
RULES
export PGCOPY_MASK_KEY=benchmark-key-0123456789abcdef

copy=("$PGCOPY_BIN" copy --source "$(cluster_url src bench)" --dest "$(cluster_url dst bench)"
    --yes --no-progress --quiet --no-analyze)
reset="cluster_psql dst bench -q -c 'TRUNCATE customer; CHECKPOINT'"

results=$(mktemp)
for round in $(seq 1 "$runs"); do
    echo "==> round $round of $runs" >&2
    {
        timed_run plain "$reset" "${copy[@]}"
        timed_run source "$reset" "${copy[@]}" --rules "$source_rules"
        timed_run integers "$reset" "${copy[@]}" --rules "$integer_rules"
        timed_run keyed "$reset" "${copy[@]}" --rules "$keyed_rules"
    } | sed "s/^/$round /" >>"$results"
    [[ $(cluster_psql dst bench -Atc "SELECT count(*) FROM customer
                                       WHERE email LIKE '%@example.invalid'") == "$rows" ]] ||
        { echo "the keyed copy did not mask every email" >&2; exit 1; }
done

echo "masking: $rows rows, 6 text columns masked (keyed, source) or 4 integer ones" \
    "(integer hash), $runs rounds, fsync on, wal_level=replica," \
    "$(nproc) cores"
summarize_rounds "$results" plain plain=plain source=source_rules keyed=keyed_rules \
    integers=integer_hash
rm -f "$results"
